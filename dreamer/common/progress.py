"""Progress on stderr for every slow phase: `phase(name)` prints "name ... done (x.x s)", `bar(...)` is a tqdm bar;
`configure(quiet=True)` (the CLI's --quiet) silences both. Results always go to stdout, progress never does."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
_STATE = {"quiet": False}


def configure(quiet: bool = False) -> None:
    """Set once per command by the CLI (--quiet)."""
    _STATE["quiet"] = bool(quiet)


def is_quiet() -> bool:
    return _STATE["quiet"]


@contextmanager
def phase(name: str):
    """'name ... ' on stderr before the block, 'done (x.x s)' after it (or 'failed (x.x s)' if it raises)."""
    if _STATE["quiet"]:
        yield
        return
    print(f"{name} ...", end=" ", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        yield
    except BaseException:
        print(f"failed ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
        raise
    print(f"done ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)


def run_phase(name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs) inside phase(name)."""
    with phase(name):
        return fn(*args, **kwargs)


def bar(iterable: Iterable[T] | None = None, desc: str = "", total: int | None = None, unit: str = "it",
        initial: int = 0):
    """A tqdm bar on stderr (rate, ETA; set_postfix for losses), disabled when quiet."""
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, initial=initial, disable=_STATE["quiet"],
                file=sys.stderr, dynamic_ncols=True, leave=True)
