"""Pure functions of the one idea: grad = w(t) * (eps_teacher_cfg - eps_baseline), loss = 0.5||x - sg(x - grad)||^2 / B."""
from __future__ import annotations

import torch


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(like).view(-1, *([1] * (like.dim() - 1)))


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Forward process x_t = a_t x0 + s_t eps (Ho et al. 2020, eq. 4); x0, noise [B,...], t [B]."""
    abar = alphas_cumprod.to(x0.device)[t]
    return _bcast(abar.sqrt(), x0) * x0 + _bcast((1 - abar).sqrt(), x0) * noise


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Tweedie / DDIM estimate x0_hat = (x_t - s_t eps) / a_t."""
    abar = alphas_cumprod.to(x_t.device)[t]
    return (x_t - _bcast((1 - abar).sqrt(), x_t) * eps) / _bcast(abar.sqrt(), x_t)


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
