"""Random draws made on the generator's own device and then moved, so one CPU torch.Generator drives a CPU or a
CUDA run alike (same numbers on both; torch refuses a CPU generator for a CUDA draw)."""
from __future__ import annotations

import torch


def _draw(fn, shape, generator, device, dtype) -> torch.Tensor:
    where = generator.device if generator is not None else device
    return fn(*shape, generator=generator, device=where, dtype=dtype).to(device)


def rand(*shape: int, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    """U[0,1) of `shape` on `device`, drawn from `generator` on its own device."""
    return _draw(torch.rand, shape, generator, device, dtype)


def randn(*shape: int, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    """N(0,1) of `shape` on `device`, drawn from `generator` on its own device."""
    return _draw(torch.randn, shape, generator, device, dtype)
