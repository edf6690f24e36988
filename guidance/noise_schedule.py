"""Noise-schedule maths in one place (as diffusers' schedulers): abar_t, SNR, x_t / x0 / eps / v conversions and
training targets, timestep grids and draws, the DDIM / re-noising step and the weightings over t (w(t), Min-SNR,
truncated SNR, native). Everything takes `alphas_cumprod` [T] or abar_t itself."""
from __future__ import annotations

from typing import Literal, get_args

import torch

from .shard import randn_rows


def ddpm_alphas_cumprod(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Linear-beta DDPM schedule (Ho et al. 2020): abar_t = prod_{s<=t} (1 - beta_s), [T] float64."""
    return torch.cumprod(1 - torch.linspace(beta_start, beta_end, T, dtype=torch.float64), 0)


Weighting = Literal["sds", "uniform", "snr_inv"]   # the kinds of `weighting` (w(t) of an un-normalised method)


def snr(abar: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio SNR_t = abar_t / (1 - abar_t) = a_t^2 / s_t^2 (Kingma et al. 2021), elementwise."""
    return abar / (1 - abar)


def inv_snr(abar: torch.Tensor) -> torch.Tensor:
    """1 / SNR_t computed as (1 - abar_t) / abar_t: sigma_t^2 of the equivalent VE process (Karras et al. 2022)."""
    return (1 - abar) / abar


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(like).view(-1, *([1] * (like.dim() - 1)))


def alpha_sigma(t: torch.Tensor, alphas_cumprod: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(a_t, s_t) = (sqrt(abar_t), sqrt(1 - abar_t)) broadcast to `like`; t < 0 stands for clean data (a=1, s=0)."""
    abar = alphas_cumprod.to(like.device)[t.clamp(min=0)].to(like)
    abar = torch.where(t.to(like.device) < 0, torch.ones_like(abar), abar).view(-1, *[1] * (like.dim() - 1))
    return abar.sqrt(), (1 - abar).sqrt()


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Forward process x_t = a_t x0 + s_t eps (Ho et al. 2020, eq. 4); x0, noise [B,...], t [B]."""
    abar = alphas_cumprod.to(x0.device)[t]
    return _bcast(abar.sqrt(), x0) * x0 + _bcast((1 - abar).sqrt(), x0) * noise


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Tweedie / DDIM estimate x0_hat = (x_t - s_t eps) / a_t (Song et al. 2021, eq. 12)."""
    abar = alphas_cumprod.to(x_t.device)[t]
    return (x_t - _bcast((1 - abar).sqrt(), x_t) * eps) / _bcast(abar.sqrt(), x_t)


def eps_from_output(out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor,
                    prediction_type: str) -> torch.Tensor:
    """Convert an eps / v / x0 prediction to eps (Salimans & Ho 2022, eq. for v: eps = s_t x_t + a_t v)."""
    abar = alphas_cumprod.to(x_t.device, torch.float32)[t].view(-1, *([1] * (x_t.dim() - 1)))
    a, s = abar.sqrt().to(out.dtype), (1 - abar).sqrt().to(out.dtype)
    if prediction_type == "epsilon":
        return out
    if prediction_type == "v_prediction":
        return s * x_t + a * out
    if prediction_type == "sample":
        return (x_t - a * out) / s
    raise ValueError(f"unsupported prediction_type {prediction_type!r} (epsilon, v_prediction, sample)")


def renoise(x: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, alphas_cumprod: torch.Tensor,
            generator: torch.Generator | None = None, ddim: bool = False) -> torch.Tensor:
    """One sampler step x_t -> x_{t'} = a' x0_hat + s' n: n = eps_hat = (x_t - a x0_hat) / s (DDIM, Song et al. 2021,
    eq. 12, eta = 0) or fresh N(0, I) (multistep consistency sampling, Song et al. 2023, Alg. 1); t' < 0 -> x0_hat."""
    if ddim:
        a, s = alpha_sigma(t, alphas_cumprod, x)
        noise = (x - a * x0) / s
    else:
        noise = randn_rows(x.shape, generator, x.dtype).to(x.device)   # data parallel: this rank's rows
    a2, s2 = alpha_sigma(t_next, alphas_cumprod, x)
    return a2 * x0 + s2 * noise


def uniform_timesteps(n: int, T: int = 1000) -> list[int]:
    """n trailing-spaced timesteps round(T (n - i) / n) - 1 (diffusers "trailing"): 4 -> [999, 749, 499, 249],
    50 -> [999, 979, ..., 19]; uniform_timesteps(2n)[::2] == uniform_timesteps(n) (progressive halving)."""
    if not 1 <= n <= T:
        raise ValueError(f"number of steps must be in [1, {T}], got {n}")
    return [int(T * (n - i) / n + 0.5) - 1 for i in range(n)]


def check_timesteps(ts: list[int] | tuple[int, ...], T: int = 1000) -> None:
    """Timesteps must be non-empty, strictly decreasing integers in [0, T)."""
    if not ts:
        raise ValueError("timesteps must not be empty")
    if any(not 0 <= t < T for t in ts) or any(a <= b for a, b in zip(ts, ts[1:])):
        raise ValueError(f"timesteps must be strictly decreasing in [0, {T}), got {list(ts)}")


def sample_timesteps(batch: int, t_min: float, t_max: float, T: int, generator: torch.Generator | None = None,
                     device="cpu") -> torch.Tensor:
    """Integer t ~ U{round(t_min T), ..., min(round(t_max T), T - 1)}, both ends inclusive (DreamFusion's
    [0.02, 0.98] -> U[20, 980]); [B] long. (Until 2026-12-01 the upper end was exclusive: seeded runs changed.)"""
    lo = int(round(t_min * T))
    hi = max(min(int(round(t_max * T)), T - 1), lo)
    return torch.randint(lo, hi + 1, (batch,), generator=generator).to(device)


def sample_timesteps_lognormal(batch: int, t_min: float, t_max: float, alphas_cumprod: torch.Tensor,
                               mean: float = -1.2, std: float = 1.2, generator: torch.Generator | None = None,
                               device="cpu") -> torch.Tensor:
    """EDM's training draw ln sigma ~ N(mean, std^2) (Karras et al. 2022, sec. 5), mapped to the VP step with the
    nearest sigma_t = sqrt((1 - abar_t) / abar_t) and clamped to the inclusive range of sample_timesteps; [B] long."""
    T = len(alphas_cumprod)
    sig_t = inv_snr(alphas_cumprod.double()).sqrt()                                     # [T] increasing
    sigma = (torch.randn(batch, generator=generator, dtype=torch.float64) * std + mean).exp()
    i = torch.searchsorted(sig_t, sigma).clamp(1, T - 1)
    t = torch.where((sigma - sig_t[i - 1]).abs() <= (sig_t[i] - sigma).abs(), i - 1, i)
    lo = int(round(t_min * T))
    return t.clamp(lo, max(min(int(round(t_max * T)), T - 1), lo)).long().to(device)


def weighting(kind: Weighting, alphas_cumprod: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """w(t) [B]: "sds" = 1 - abar_t (DreamFusion), "uniform" = 1, "snr_inv" = sqrt(1 - abar)/sqrt(abar) (x0 units)."""
    abar = alphas_cumprod.to(t.device)[t]
    if kind == "sds":
        return 1 - abar
    if kind == "uniform":
        return torch.ones_like(abar)
    if kind == "snr_inv":
        return inv_snr(abar).sqrt()
    raise ValueError(f"unknown weighting {kind!r} ({', '.join(get_args(Weighting))})")


def native_weight(prediction_type: str, abar: torch.Tensor) -> torch.Tensor:
    """Per-sample weight [B] that turns an eps-space MSE into the teacher's own output-space MSE:
    epsilon 1, v_prediction 1 / abar (= SNR + 1 in x-space, Salimans & Ho 2022 sec. 4), sample SNR."""
    if prediction_type == "epsilon":
        return torch.ones_like(abar)
    if prediction_type == "v_prediction":
        return 1.0 / abar
    return snr(abar)


def min_snr_weight(abar: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma: min(SNR, gamma) / SNR per sample [B] (Hang et al. 2023, eq. 5, eps-prediction form)."""
    r = snr(abar)
    return r.clamp(max=gamma) / r


def truncated_snr_weight(abar: torch.Tensor) -> torch.Tensor:
    """max(SNR, 1) per sample [B]: the truncated SNR weighting of an x0-space loss (Salimans & Ho 2022, sec. 4)."""
    return snr(abar).clamp(min=1.0)


def prediction_target(prediction_type: str, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                      alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """What a denoiser of `prediction_type` is trained to output for x_t = add_noise(x0, noise, t): epsilon -> noise,
    v_prediction -> v = a_t noise - s_t x0 (Salimans & Ho 2022, sec. 4), sample -> x0."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        abar = alphas_cumprod.to(x0.device)[t]
        return _bcast(abar.sqrt(), x0) * noise - _bcast((1 - abar).sqrt(), x0) * x0
    if prediction_type == "sample":
        return x0
    raise ValueError(f"unsupported prediction_type {prediction_type!r} (epsilon, v_prediction, sample)")
