"""Named ramps over training steps (t_max annealing, CFG multiplier, learning rates)."""
from __future__ import annotations

import math
from dataclasses import dataclass


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
