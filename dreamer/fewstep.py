"""Few-step sampling shared by the distilled generator (DMD2) and the teacher's DDIM baseline.

A step maps x_t to x0_hat = denoise(x_t, t); between steps x0_hat is re-noised to the next timestep, with fresh
noise (DMD2, Yin et al. 2024b, sec. 4.3) or with the implied eps_hat (DDIM, Song et al. 2021, eq. 12, eta = 0).
"""
from __future__ import annotations

from typing import Callable

import torch

from guidance.losses import add_noise

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t [B,...], t [B]) -> x0_hat [B,...]
DEFAULT_TIMESTEPS = (999, 749, 499, 249)


def uniform_timesteps(n: int, T: int = 1000) -> list[int]:
    """n trailing-spaced timesteps T-1, T-1-T//n, ... (4 -> [999, 749, 499, 249]; 50 -> [999, 979, ..., 19])."""
    if not 1 <= n <= T:
        raise ValueError(f"number of steps must be in [1, {T}], got {n}")
    return [T - 1 - i * (T // n) for i in range(n)]


def step_schedule(n: int, trained: list[int] | tuple[int, ...] | None = None, T: int = 1000) -> list[int]:
    """Timesteps for an n-step run: an even subset of the trained ones when n divides them (4 -> 2 -> 1), else uniform."""
    trained = list(trained or [])
    if trained and n <= len(trained) and len(trained) % n == 0:
        return trained[:: len(trained) // n]
    return uniform_timesteps(n, T)


def check_timesteps(ts: list[int] | tuple[int, ...], T: int = 1000) -> None:
    """Timesteps must be non-empty, strictly decreasing integers in [0, T)."""
    if not ts:
        raise ValueError("timesteps must not be empty")
    if any(not 0 <= t < T for t in ts) or any(a <= b for a, b in zip(ts, ts[1:])):
        raise ValueError(f"timesteps must be strictly decreasing in [0, {T}), got {list(ts)}")


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
        t_next = _full(timesteps[i + 1], x)
        if ddim:
            abar = alphas_cumprod.to(x.device)[t].view(-1, *[1] * (x.dim() - 1)).to(x)
            noise = (x - abar.sqrt() * x0) / (1 - abar).sqrt()          # eps_hat implied by x0_hat
        else:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x = add_noise(x0, noise, t_next, alphas_cumprod)
    return x
