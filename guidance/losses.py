"""Pure functions of the one idea: grad = w(t) * (eps_teacher_cfg - eps_baseline), loss = 0.5||x - sg(x - grad)||^2 / B."""
from __future__ import annotations

import torch

from .noise_schedule import _bcast


def cfg_combine(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance, diffusers convention (Ho & Salimans 2022): eps_u + s (eps_c - eps_u)."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def score_distillation_grad(w: torch.Tensor, eps_cfg: torch.Tensor, eps_baseline: torch.Tensor,
                            clip: float = 0.0) -> torch.Tensor:
    """grad_x0 = w(t) (eps_cfg - eps_baseline) (DreamFusion eq. 3 and its relatives), optionally clamped to +-clip."""
    grad = _bcast(w, eps_cfg) * (eps_cfg - eps_baseline)
    grad = torch.nan_to_num(grad)
    return grad.clamp(-clip, clip) if clip > 0 else grad


def target_loss(x0: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """0.5 ||x0 - sg(x0 - grad)||^2 / B, whose gradient w.r.t. x0 is exactly grad / B."""
    target = (x0 - grad).detach()
    return 0.5 * (x0 - target).pow(2).sum() / x0.shape[0]
