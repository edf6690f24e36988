"""Few-step sampling shared by the distilled generator (DMD2) and the teacher's DDIM baseline (the per-step maths,
re-noising and timestep grids, is guidance.noise_schedule).

A step maps x_t to x0_hat = denoise(x_t, t); between steps x0_hat is re-noised to the next timestep, with fresh
noise (DMD2, Yin et al. 2024b, sec. 4.3) or with the implied eps_hat (DDIM, Song et al. 2021, eq. 12, eta = 0).
"""
from __future__ import annotations

from typing import Callable

import torch

from guidance.noise_schedule import renoise, uniform_timesteps

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t [B,...], t [B]) -> x0_hat [B,...]
DEFAULT_TIMESTEPS = (999, 749, 499, 249)


def step_schedule(n: int, trained: list[int] | tuple[int, ...] | None = None, T: int = 1000) -> list[int]:
    """Timesteps for an n-step run: an even subset of the trained ones when n divides them (4 -> 2 -> 1), else uniform."""
    trained = list(trained or [])
    if trained and n <= len(trained) and len(trained) % n == 0:
        return trained[:: len(trained) // n]
    return uniform_timesteps(n, T)


def _full(t: int, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)


def rollout(denoise: Denoise, z: torch.Tensor, timesteps: list[int], alphas_cumprod: torch.Tensor,
            generator: torch.Generator | None = None, ddim: bool = False, until: int | None = None,
            clip: float | None = None) -> torch.Tensor:
    """Run the multistep sampler from z ~ N(0, I) at timesteps[0].

    Returns x0 after the last step, or (until=k) the input x_{t_k} of step k, i.e. the student's own earlier
    steps (DMD2 backward simulation). Re-noising: x_{t_{i+1}} = a x0_hat + s * (fresh eps | eps_hat if ddim).
    `clip` clamps x0_hat to [-clip, clip] before re-noising (diffusers' clip_sample).
    """
    stop = len(timesteps) if until is None else until
    x = z
    for i in range(stop):
        t = _full(timesteps[i], x)
        x0 = denoise(x, t)
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
        if i + 1 == len(timesteps):
            return x0
        x = renoise(x, x0, t, _full(timesteps[i + 1], x), alphas_cumprod, generator, ddim)
    return x
