"""A Stable-Diffusion-family UNet2DConditionModel run as two halves: encoder (time embedding, conv_in, down blocks,
mid block) and decoder (up blocks, output head).

VSD's LoRA score adapts only the decoder (and its camera embedding enters only the decoder), so
eps_lora(x_t, t, y, c) = Dec_lora(Enc_teacher(x_t, t, y), emb(t) + cam(c), y): the teacher's own CFG pass already
computes Enc_teacher for the conditional half, and the LoRA pass (forward and backward) runs the decoder alone.
decode(unet, encode(unet, x, t, y)) equals unet(x, t, y) (tests/guidance/test_unet_split.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .teachers import split_cond


@dataclass
class Encoded:
    """Encoder output: h [B,C,h,w] (mid block), skips (conv_in and every down-block residual),
    emb [B,D] time embedding, cond [B,L,D] the text states the decoder cross-attends to."""

    h: torch.Tensor
    skips: tuple[torch.Tensor, ...]
    emb: torch.Tensor
    cond: torch.Tensor
    upsample_size: bool = False      # input size not a multiple of the total upsampling factor

    def take(self, index: slice) -> "Encoded":
        """The rows `index` of every tensor, detached (the encoder has no trainable part here)."""
        return Encoded(self.h[index].detach(), tuple(s[index].detach() for s in self.skips),
                       self.emb[index].detach(), self.cond[index].detach(), self.upsample_size)


def supports_split(unet) -> str | None:
    """None if encode/decode reproduce this UNet's forward; else the config feature they do not handle."""
    c = unet.config
    if c.get("addition_embed_type") not in (None, "text_time"):
        return f"addition_embed_type={c.get('addition_embed_type')!r}"
    for key, ok in (("encoder_hid_dim_type", None), ("time_cond_proj_dim", None),
                    ("time_embedding_act_fn", None), ("class_embeddings_concat", False),
                    ("center_input_sample", False)):
        if c.get(key, ok) != ok:
            return f"{key}={c.get(key)!r}"
    if getattr(unet, "encoder_hid_proj", None) is not None:
        return "encoder_hid_proj"
    return None


def _with_text(block) -> bool:
    return getattr(block, "has_cross_attention", False)


def time_embedding(unet, x: torch.Tensor, t: torch.Tensor, added: dict | None = None) -> torch.Tensor:
    """emb(t) [B,D], plus SDXL's add_embedding([pooled text, Fourier(time ids)]) for text_time UNets (as diffusers)."""
    emb = unet.time_embedding(unet.get_time_embed(sample=x, timestep=t).to(x.dtype), None)
    if added:
        ids = unet.add_time_proj(added["time_ids"].flatten()).reshape(x.shape[0], -1)
        emb = emb + unet.add_embedding(torch.cat([added["text_embeds"], ids.to(emb.dtype)], -1).to(emb.dtype))
    return emb


def encode(unet, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> Encoded:
    """The encoder half on x [B,C,h,w], t [B], cond [B,L,D] (SDXL-class: packed, teachers.pack_cond)."""
    cond, extra = split_cond(unet, cond)
    emb = time_embedding(unet, x, t, extra.get("added_cond_kwargs"))             # [B,D]
    h = unet.conv_in(x)
    skips = (h,)
    for block in unet.down_blocks:
        if _with_text(block):
            h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=cond)
        else:
            h, res = block(hidden_states=h, temb=emb)
        skips += res
    if unet.mid_block is not None:
        h = unet.mid_block(h, emb, encoder_hidden_states=cond) if _with_text(unet.mid_block) \
            else unet.mid_block(h, emb)
    factor = 2 ** unet.num_upsamplers
    return Encoded(h, skips, emb, cond, any(d % factor for d in x.shape[-2:]))


def decode(unet, enc: Encoded, emb: torch.Tensor | None = None) -> torch.Tensor:
    """The decoder half -> the UNet's raw output [B,C,h,w]; emb overrides enc.emb (e.g. plus a camera)."""
    emb = enc.emb if emb is None else emb
    h, skips = enc.h, enc.skips
    for i, block in enumerate(unet.up_blocks):
        n = len(block.resnets)
        res, skips = skips[-n:], skips[:-n]
        size = skips[-1].shape[2:] if enc.upsample_size and i < len(unet.up_blocks) - 1 else None
        if _with_text(block):
            h = block(hidden_states=h, temb=emb, res_hidden_states_tuple=res, encoder_hidden_states=enc.cond,
                      upsample_size=size)
        else:
            h = block(hidden_states=h, temb=emb, res_hidden_states_tuple=res, upsample_size=size)
    if unet.conv_norm_out is not None:
        h = unet.conv_act(unet.conv_norm_out(h))
    return unet.conv_out(h)
