"""Numeric fault detection shared by the generate and distill loops."""
from __future__ import annotations

import torch


def finite_step(loss: torch.Tensor, params, guidance=None) -> bool:
    """The loss, every existing gradient of `params` and the guidance's raw score terms are finite (one sync).

    The raw terms matter because guidance.losses maps a NaN score difference to a zero gradient (nan_to_num),
    which would otherwise let a NaN teacher pass as a quiet zero-gradient step.
    """
    checks = [torch.isfinite(loss).all()] + [torch.isfinite(p.grad).all() for p in params if p.grad is not None]
    if guidance is not None:
        terms = (getattr(guidance, k, None) for k in ("eps_cfg", "eps_baseline", "w"))
        checks += [torch.isfinite(t).all() for t in terms if torch.is_tensor(t)]
    return bool(torch.stack(checks).all())


def optimizer_params(optimizers) -> list[torch.Tensor]:
    """Every parameter the optimizers update."""
    return [p for o in optimizers for g in o.param_groups for p in g["params"]]
