"""Data parallelism over torch.distributed: every rank draws the *global* batch's random rows from the same seeded
stream and keeps its own slice, so world ranks x batch b train exactly as one process with batch world * b (the
generators of all ranks stay in step); gradients are averaged in `optim.guarded_step`.

Active only when a process group is initialised with world size > 1 (dreamer's `distill` under torchrun); alone,
`rows(draw, n)` is `draw(n)` and nothing changes.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group; (0, 1) when there is none."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rows(draw: Callable[[int], T], n: int) -> T:
    """draw(n * world)[rank * n:(rank + 1) * n]: this rank's n rows of the global batch's draw (draw(n) alone)."""
    r, w = rank_world()
    if w == 1:
        return draw(n)
    return draw(n * w)[r * n:(r + 1) * n]


def randn_rows(shape, generator: torch.Generator | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """torch.randn(shape) [n,...] as this rank's rows of the global batch's draw."""
    return rows(lambda m: torch.randn((m, *shape[1:]), generator=generator, dtype=dtype), shape[0])


def randint_rows(high: int, n: int, generator: torch.Generator | None = None, low: int = 0) -> torch.Tensor:
    """torch.randint(low, high, (n,)) as this rank's rows of the global batch's draw."""
    return rows(lambda m: torch.randint(low, high, (m,), generator=generator), n)


def map_chunks(fn: Callable[[int, int], torch.Tensor], n: int, chunk: int,
               device: torch.device | str | None = None) -> torch.Tensor:
    """torch.cat([fn(i, min(i + chunk, n)) for i in range(0, n, chunk)]) along dim 0, with the chunks dealt round
    robin over the ranks and gathered (all_gather_object) so every rank holds the whole result: each chunk is
    computed exactly as one process computes it, by one rank. Alone: the plain loop. device: where the result goes
    (a rank that computed no chunk cannot know it otherwise)."""
    r, w = rank_world()
    starts = list(range(0, n, chunk))
    mine = {i: fn(i, min(i + chunk, n)) for i in starts[r::w]}
    if w == 1:
        return torch.cat([mine[i] for i in starts])
    parts: list[dict | None] = [None] * w
    torch.distributed.all_gather_object(parts, {i: t.detach().cpu() for i, t in mine.items()})
    merged = {i: t for p in parts for i, t in p.items()}
    return torch.cat([merged[i] for i in starts]).to(device if device is not None else "cpu")
