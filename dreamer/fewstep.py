"""Few-step sampling shared by the distilled generator (DMD2) and the teacher's DDIM baseline.

A step maps x_t to x0_hat = denoise(x_t, t); between steps x0_hat is re-noised to the next timestep, with fresh
noise (DMD2, Yin et al. 2024b, sec. 4.3) or with the implied eps_hat (DDIM, Song et al. 2021, eq. 12, eta = 0).
"""
from __future__ import annotations

from typing import Callable

import torch

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t [B,...], t [B]) -> x0_hat [B,...]
DEFAULT_TIMESTEPS = (999, 749, 499, 249)


def uniform_timesteps(n: int, T: int = 1000) -> list[int]:
    """n trailing-spaced timesteps round(T (n - i) / n) - 1 (diffusers "trailing"): 4 -> [999, 749, 499, 249],
    50 -> [999, 979, ..., 19]; uniform_timesteps(2n)[::2] == uniform_timesteps(n) (progressive halving)."""
    if not 1 <= n <= T:
        raise ValueError(f"number of steps must be in [1, {T}], got {n}")
    return [int(T * (n - i) / n + 0.5) - 1 for i in range(n)]


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


def alpha_sigma(t: torch.Tensor, alphas_cumprod: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(a_t, s_t) broadcast to `like`; t < 0 stands for clean data (a = 1, s = 0)."""
    abar = alphas_cumprod.to(like.device)[t.clamp(min=0)].to(like)
    abar = torch.where(t.to(like.device) < 0, torch.ones_like(abar), abar).view(-1, *[1] * (like.dim() - 1))
    return abar.sqrt(), (1 - abar).sqrt()


def renoise(x: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, alphas_cumprod: torch.Tensor,
            generator: torch.Generator | None = None, ddim: bool = False) -> torch.Tensor:
    """One sampler step x_t -> x_{t'} = a' x0_hat + s' n: n = eps_hat = (x_t - a x0_hat) / s (DDIM, Song et al. 2021,
    eq. 12, eta = 0) or fresh N(0, I) (multistep consistency sampling, Song et al. 2023, Alg. 1); t' < 0 -> x0_hat."""
    if ddim:
        a, s = alpha_sigma(t, alphas_cumprod, x)
        noise = (x - a * x0) / s
    else:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    a2, s2 = alpha_sigma(t_next, alphas_cumprod, x)
    return a2 * x0 + s2 * noise


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
