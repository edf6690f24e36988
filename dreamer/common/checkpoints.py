"""Checkpoint files: atomic writes (temp file + fsync + rename), weights-only loads, and a crash-test hook.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts; loading uses
`torch.load(weights_only=True)`, so a pickle that would run code (a `__reduce__` payload) is refused unexecuted.
"""
from __future__ import annotations

import os
import signal
import warnings
from pathlib import Path

import torch

from .errors import CheckpointError, one_line

KILL_ENV = "DREAMER_KILL_AT"   # test hook: "<point>@<n>" SIGKILLs the process at that point of the n-th save
KILL_POINTS = ("before-tmp", "mid-tmp", "after-tmp", "after-rename")


def _kill_requested(point: str, n: int) -> bool:
    """True when DREAMER_KILL_AT names this point of the n-th save (crash-safety tests only)."""
    return os.environ.get(KILL_ENV, "") == f"{point}@{n}"


def _kill_if(point: str, n: int) -> None:
    """SIGKILL this process (no cleanup, no atexit) when the test hook asks for it here."""
    if _kill_requested(point, n):
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort; not every filesystem supports it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: dict, path: str | Path, n: int = 0) -> Path:
    """torch.save to `path` via `path.tmp` + fsync + rename: `path` is always the old or the new complete file.

    `n` numbers the save for the DREAMER_KILL_AT hook.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    _kill_if("before-tmp", n)
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        if _kill_requested("mid-tmp", n):  # simulate dying half-way through the write
            f.truncate(os.fstat(f.fileno()).st_size // 2)
            f.flush()
            _kill_if("mid-tmp", n)
        os.fsync(f.fileno())
    _kill_if("after-tmp", n)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    _kill_if("after-rename", n)
    return path


def load_checkpoint(path: str | Path, required: tuple[str, ...] = ()) -> dict:
    """Weights-only load of a checkpoint dict; any problem becomes a one-line CheckpointError."""
    import pickle

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about foreign pickle protocols before refusing them
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"refusing to load {path}: it holds pickled Python objects, not just weights "
                              f"(only weights-only checkpoints are accepted; nothing in it was executed)") from None
    except Exception as e:  # noqa: BLE001 -- truncated zip, garbage bytes, empty file: all mean unusable
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({one_line(e)})") from None
    if not isinstance(sd, dict) or any(k not in sd for k in required):
        raise CheckpointError(f"{path} is not a dreamer checkpoint (expected keys: {', '.join(required)})")
    return sd
