"""Exponential moving averages of weights (theta_ema <- decay theta_ema + (1 - decay) theta), shared by the
distillation trainers (the score trainers' generator EMA, consistency distillation's target) and the embedded
teacher's training script."""
from __future__ import annotations

import torch


@torch.no_grad()
def ema_lerp_(ema: list[torch.Tensor], online: list[torch.Tensor], decay: float) -> None:
    """theta_ema <- decay theta_ema + (1 - decay) theta, in place, pairwise over two tensor lists."""
    if ema:
        torch._foreach_lerp_(ema, [p.detach() for p in online], 1 - decay)


def ema_update(target: torch.nn.Module, online: torch.nn.Module, decay: float) -> None:
    """ema_lerp_ over the online model's trainable parameters (matched by name)."""
    src = dict(online.named_parameters())
    pairs = [(p, src[n]) for n, p in target.named_parameters() if n in src and src[n].requires_grad]
    ema_lerp_([p for p, _ in pairs], [q for _, q in pairs], decay)
