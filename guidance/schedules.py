"""Named ramps (for t_max annealing, learning rates, resolution), timestep sampling and weightings w(t)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Ramp:
    """value(step): `start` until `begin`, then moves to `end` by `until` along `kind`.

    kind: constant | linear | cosine | sqrt | step (jump to `end` at `begin`, ProlificDreamer's t_max 0.98 -> 0.5).
    """

    kind: str = "constant"
    start: float = 1.0
    end: float = 1.0
    begin: int = 0
    until: int = 1

    def __call__(self, step: int) -> float:
        if self.kind == "constant":
            return self.start
        if self.kind == "step":
            return self.end if step >= self.begin else self.start
        f = min(max((step - self.begin) / max(self.until - self.begin, 1), 0.0), 1.0)
        if self.kind == "linear":
            pass
        elif self.kind == "cosine":
            f = 0.5 * (1 - math.cos(math.pi * f))
        elif self.kind == "sqrt":
            f = math.sqrt(f)
        else:
            raise ValueError(f"unknown ramp kind {self.kind!r} (constant, linear, cosine, sqrt, step)")
        return self.start + (self.end - self.start) * f


def sample_timesteps(batch: int, t_min: float, t_max: float, T: int, generator: torch.Generator | None = None,
                     device="cpu") -> torch.Tensor:
    """Integer t ~ U[t_min*T, t_max*T] (DreamFusion uses [0.02, 0.98]); [B] long."""
    lo, hi = int(round(t_min * T)), max(int(round(t_max * T)), int(round(t_min * T)) + 1)
    return torch.randint(lo, hi, (batch,), generator=generator).to(device)


def weighting(kind: str, alphas_cumprod: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """w(t) [B]: "sds" = 1 - abar_t (DreamFusion), "uniform" = 1, "snr_inv" = sqrt(1 - abar)/sqrt(abar) (x0 units)."""
    abar = alphas_cumprod.to(t.device)[t]
    if kind == "sds":
        return 1 - abar
    if kind == "uniform":
        return torch.ones_like(abar)
    if kind == "snr_inv":
        return ((1 - abar) / abar).sqrt()
    raise ValueError(f"unknown weighting {kind!r} (sds, uniform, snr_inv)")
