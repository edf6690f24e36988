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


def perp_component(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a - (<a, b> / ||b||^2) b per sample (inner products over all but the batch dim); a where b = 0."""
    dot = (a * b).flatten(1).sum(1)
    nb2 = b.pow(2).flatten(1).sum(1)
    coef = torch.where(nb2 > 0, dot / torch.where(nb2 > 0, nb2, torch.ones_like(nb2)), torch.zeros_like(dot))
    return a - _bcast(coef, a) * b


def perp_neg_combine(eps_uncond: torch.Tensor, eps_pos: torch.Tensor, eps_negs: list[torch.Tensor],
                     weights: torch.Tensor, scale: float) -> torch.Tensor:
    """Perp-Neg (Armandpour et al. 2023): eps_u + s (d_pos - sum_k w_k perp(d_neg_k, d_pos)), d = eps - eps_u, w [B,K]
    >= 0; the negatives scale with s as in the authors' Stable-DreamFusion code (paper's w_neg = s w here)."""
    d_pos = eps_pos - eps_uncond
    out = d_pos
    for k, e in enumerate(eps_negs):
        out = out - _bcast(weights[:, k], d_pos) * perp_component(e - eps_uncond, d_pos)
    return eps_uncond + scale * out
