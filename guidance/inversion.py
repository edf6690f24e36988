"""DDIM inversion (Song et al. 2021, eq. 12 run from data towards noise) and the inversion paths of ISM (Liang et al.
2024, LucidDreamer) and SDI (Lukoianov et al. 2024). Pure functions of an eps function, x and timesteps."""
from __future__ import annotations

import math

import torch

from .noise_schedule import alpha_sigma, uniform_timesteps
from .shard import randn_rows


def ddim_move(x: torch.Tensor, eps: torch.Tensor, t_from: torch.Tensor, t_to: torch.Tensor,
              alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """One deterministic DDIM step between two noise levels (Song et al. 2021, eq. 12, eta = 0), either way:
    x' = a' x0_hat + s' eps with x0_hat = (x - s eps) / a; x, eps [B,...], t [B]; t < 0 is clean data (a 1, s 0)."""
    a, s = alpha_sigma(t_from, alphas_cumprod, x)
    a2, s2 = alpha_sigma(t_to, alphas_cumprod, x)
    return a2 * (x - s * eps) / a + s2 * eps


def ddim_sigma(t_from: torch.Tensor, t_to: torch.Tensor, alphas_cumprod: torch.Tensor,
               like: torch.Tensor) -> torch.Tensor:
    """DDIM's eta = 1 noise scale between the levels t_from (cleaner) and t_to (Song et al. 2021, eq. 16):
    sqrt((1 - abar_from) / (1 - abar_to) * (1 - abar_to / abar_from)); 0 from clean data. Broadcast to `like`."""
    a, s = alpha_sigma(t_from, alphas_cumprod, like)
    a2, s2 = alpha_sigma(t_to, alphas_cumprod, like)
    return (s * s / (s2 * s2) * (1 - a2 * a2 / (a * a))).clamp(min=0).sqrt()


def ddim_invert(eps_fn, x: torch.Tensor, path: list[torch.Tensor], alphas_cumprod: torch.Tensor, eta: float = 0.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Carry x [B,...] at noise level path[0] [B] up through path[1], ..., path[-1] by DDIM steps with
    eps_fn(x, t) evaluated at each step's start (clean data: at t = 0). A sample whose level does not change keeps x;
    a step none of the batch takes makes no eps_fn call. eta > 0 adds eta * ddim_sigma * N(0, I) per step (SDI)."""
    for t_a, t_b in zip(path[:-1], path[1:]):
        moves = t_b != t_a                                                         # [B]
        if not bool(moves.any()):
            continue
        eps = eps_fn(x, t_a.clamp(min=0))
        nxt = ddim_move(x, eps, t_a, t_b, alphas_cumprod)
        if eta > 0:
            nxt = nxt + eta * ddim_sigma(t_a, t_b, alphas_cumprod, x) * randn_rows(x.shape, generator, x.dtype).to(x)
        x = torch.where(moves.view(-1, *[1] * (x.dim() - 1)), nxt, x)
    return x


def ism_interval(start: int, end: int, t_max_now: float, t_max_start: float, t_max_end: float) -> int:
    """ISM's interval delta_T annealed with the step's t_max: `start` at t_max_start, `end` at t_max_end and below.
    LucidDreamer's code moves both by one warm-up rate r: t_max = end + r (start - end), delta_T = end +
    ceil(r (start - end)); so delta_T follows the loop's linear t_max ramp exactly."""
    span = t_max_start - t_max_end
    r = 0.0 if span <= 0 else min(max((t_max_now - t_max_end) / span, 0.0), 1.0)
    return end + math.ceil(round(r * (start - end), 9))     # round: a ramp's float noise never adds a step


def ism_path(s: torch.Tensor, step: int, n_steps: int) -> list[torch.Tensor]:
    """LucidDreamer's x_s inversion levels: from max(s - step n_steps, 0) up by `step` (at most n_steps steps), the
    last one landing on s; s [B] long. (Its code noises x0 to the first level with the step's fresh noise.)"""
    start = (s - step * n_steps).clamp(min=0)
    return [start] + [torch.minimum(start + k * step, s) for k in range(1, n_steps + 1)]


def sdi_path(t: torch.Tensor, n_steps: int, T: int) -> list[torch.Tensor]:
    """SDI's inversion levels: clean data (-1), then the n-step DDIM grid (trailing spacing, uniform_timesteps) below
    each sample's t, then t itself; t [B] long. (The authors' code also ends a random 0..T/n steps past t.)"""
    grid = sorted(uniform_timesteps(n_steps, T))
    return [torch.full_like(t, -1)] + [torch.clamp(torch.full_like(t, g), max=t) for g in grid] + [t]
