"""Cheap checks run before any heavy import: prompts, names derived from prompts, and output locations."""
from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from pathlib import Path

from .errors import OutputError

SLUG_MAX = 48
# Files whose presence means a folder already holds results that must not be overwritten.
RUN_MARKERS = ("checkpoint.pt", "config.yaml", "metrics.json", "timing.json")
DISTILL_MARKERS = ("config.yaml", "log.jsonl", "generator")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def slug(text: str, max_len: int = SLUG_MAX) -> str:
    """A safe file/folder name from free text: [a-z0-9-] only, no '..' or '/', no control chars, bounded, non-empty."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    s = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    s = s[:max_len].rstrip("-") or "run"
    return f"run-{s}"[:max_len] if s in _WINDOWS_RESERVED else s


def check_prompt(prompt: str, what: str = "prompt") -> str:
    """Reject an empty / whitespace-only prompt."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"empty {what}: give a text prompt, e.g. \"a red cube\"")
    return prompt


def _existing_ancestor(path: Path) -> Path:
    """The nearest existing path at or above `path` (a file there means something is in the way)."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable(path: str | Path, is_file: bool = False) -> Path:
    """`path` (a folder, or with is_file a file) can be created or written; nothing is created here."""
    path = Path(path).expanduser()
    if path.exists() and is_file and path.is_dir():
        raise OutputError(f"output {path} is a folder; give a file name, e.g. {path / 'out.png'}")
    if path.exists() and not is_file and not path.is_dir():
        raise OutputError(f"output folder {path} exists and is a file; remove it or choose another --out")
    base = _existing_ancestor(path.parent if is_file else path)
    if not base.is_dir():
        raise OutputError(f"cannot create {path}: {base} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".dreamer-write-test-", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"output location {path} is not writable ({base}: {e.strerror or e})") from None
    return path


def holds_results(folder: str | Path, markers: tuple[str, ...] = RUN_MARKERS) -> list[str]:
    """Names of the result files/folders that `folder` already holds."""
    folder = Path(folder)
    return [m for m in markers if (folder / m).exists()] if folder.is_dir() else []


def check_run_folder(out: str | Path, resume: bool) -> Path:
    """`generate --out`: writable; a folder holding a run needs --resume; --resume needs a run to continue."""
    out = check_writable(out)
    found = holds_results(out)
    if found and not resume:
        raise OutputError(f"{out} already holds a run ({', '.join(found)}); continue it with --resume "
                          f"or choose another --out")
    if resume and "config.yaml" not in found:
        raise OutputError(f"--resume: {out} holds no run to continue (no config.yaml); drop --resume to start one")
    return out


def check_distill_folder(out: str | Path, resume: bool = False) -> Path:
    """`distill --out`: writable and not already holding a distillation run (--resume: holding one to continue)."""
    out = check_writable(out)
    found = holds_results(out, DISTILL_MARKERS)
    if resume:
        if "config.yaml" not in found or not (out / "checkpoint.pt").is_file():
            raise OutputError(f"--resume: {out} holds no distillation run to continue (needs config.yaml and "
                              f"checkpoint.pt); drop --resume to start one")
        return out
    if found:
        raise OutputError(f"{out} already holds a distillation run ({', '.join(found)}); choose another --out")
    return out
