"""Progress on stderr for every slow phase: `phase(name)` prints "name ... done (x.x s)"; `bar(...)` is a live tqdm
bar on a terminal and, anywhere else (a file, a pipe, CI), a plain line at every tenth of the total or after
LINE_EVERY_S seconds without one (phase, step/total, rate, ETA); `configure(quiet=True)` (the CLI's --quiet)
silences all of it. Results always go to stdout, progress never does."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
_STATE = {"quiet": False}
LINE_EVERY_S = 30.0          # off a terminal: a line at least this often while steps advance (besides every 10 %)


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
        initial: int = 0, disable: bool = False, file=None):
    """A progress bar on `file` (stderr): tqdm on a terminal (rate, ETA; set_postfix for losses), LineProgress
    elsewhere; off when quiet or `disable`."""
    file = sys.stderr if file is None else file
    off = _STATE["quiet"] or disable
    if not off and getattr(file, "isatty", lambda: False)():
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, total=total, unit=unit, initial=initial, file=file, dynamic_ncols=True,
                    leave=True)
    return LineProgress(iterable, desc=desc, total=total, unit=unit, initial=initial, disable=off, file=file)


def _clock_text(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class LineProgress:
    """tqdm's interface (iterate, update, set_postfix, close, `with`) as plain lines for logs: one when n crosses
    each tenth of the total, or when every_s seconds passed since the last line, and one at close if n moved
    since; at most 11 lines plus one per every_s seconds. `clock` is injectable (tests)."""

    def __init__(self, iterable: Iterable | None = None, desc: str = "", total: int | None = None,
                 unit: str = "it", initial: int = 0, disable: bool = False, file=None,
                 every_s: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.iterable, self.desc, self.unit, self.disable = iterable, desc, unit, disable
        if total is None and hasattr(iterable, "__len__"):
            total = initial + len(iterable)
        self.total, self.n, self.initial, self.postfix = total, initial, initial, ""
        self.file, self.clock = sys.stderr if file is None else file, clock
        self.every_s = LINE_EVERY_S if every_s is None else every_s
        self.start = self.last_t = clock()
        self.last_n, self.closed = initial, False
        self.tenth = self._tenth(initial)

    def _tenth(self, n: int) -> int:
        return min(10, 10 * n // self.total) if self.total else 0

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.total or 0

    def update(self, k: int = 1) -> None:
        self.n += k
        tenth, now = self._tenth(self.n), self.clock()
        if tenth > self.tenth or (self.n > self.last_n and now - self.last_t >= self.every_s):
            self.tenth = max(self.tenth, tenth)
            self._line(now)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed and self.n != self.last_n:
            self._line(self.clock())
        self.closed = True

    def _line(self, now: float) -> None:
        self.last_t, self.last_n = now, self.n
        if self.disable:
            return
        done, spent = self.n - self.initial, now - self.start
        rate = done / spent if spent > 0 and done > 0 else None
        parts = [f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"]
        if self.total:
            parts[0] = f"{100 * self.n // self.total:3d}% " + parts[0]
        parts.append(f"{rate:.3g} {self.unit}/s" if rate else f"? {self.unit}/s")
        parts.append(f"elapsed {_clock_text(spent)}")
        if self.total:
            left = max(0, self.total - self.n)
            parts.append(f"ETA {_clock_text(left / rate)}" if rate else ("ETA 0:00" if not left else "ETA ?"))
        if self.postfix:
            parts.append(self.postfix)
        print(f"{self.desc}: " + ", ".join(parts) if self.desc else ", ".join(parts), file=self.file, flush=True)
