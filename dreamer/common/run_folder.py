"""The run folder both applications keep (text_to_3d's SceneRun, distill's DistillRun): the --resume config check,
the guarded optimizer step with its skipped-update record and warnings, checkpoint.pt (atomic, numbered writes;
weights-only reads), training time over sittings, and log.jsonl.

State is passed explicitly: `check_resume` / `resume_checkpoint` are functions of a folder and a config, `StepGuard`
holds the skipped-update record, `RunFolder` the folder's path, clock and save count.
"""
from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from guidance import BadSteps, guarded_step

from .checkpoints import atomic_save, load_checkpoint
from .config import ConfigError, RenamedKeysError, flatten, load_yaml, renamed_list, to_dict
from .errors import CheckpointError, DreamerWarning, NumericalFault

CHECKPOINT = "checkpoint.pt"     # OUT/checkpoint.pt: a resumable run's state
CONFIG = "config.yaml"           # OUT/config.yaml: the resolved recipe the run was made with
LOG = "log.jsonl"                # OUT/log.jsonl: one JSON line per logged step


# ----------------------------------------------------------------------------------------------- --resume
def _free(key: str, free: tuple[str, ...]) -> bool:
    """`key` is one of `free`: named exactly, or under a free section ('export.')."""
    return any(key == f or (f.endswith(".") and key.startswith(f)) for f in free)


def config_difference(saved, now, free: tuple[str, ...] = (), nulls: dict | None = None) -> str | None:
    """The first dotted key (sorted, outside `free`) whose value differs, as "'key' (saved X, now Y)"; None if none.
    nulls: {key: value} of keys whose null means that value (e.g. shading.ambient: null = the world's 0.35), so a
    folder that wrote the value out and a config that leaves it null are the same run."""
    a, b = flatten(to_dict(saved)), flatten(to_dict(now))
    for d in (a, b):
        d.update({k: v for k, v in (nulls or {}).items() if k in d and d[k] is None})
    key = next((k for k in sorted(set(a) | set(b)) if not _free(k, free) and a.get(k) != b.get(k)), None)
    return None if key is None else f"'{key}' (saved {a.get(key)!r}, now {b.get(key)!r})"


def check_resume(out: str | Path, now, free: tuple[str, ...], nulls: dict | None = None) -> None:
    """--resume: OUT/config.yaml must exist and equal `now` (a config dataclass) up to `free` (and `nulls`,
    config_difference); else one line."""
    out = Path(out)
    if not (out / CONFIG).is_file():
        raise CheckpointError(f"--resume: {out} holds no run to continue (no {CONFIG})")
    try:
        saved = load_yaml(type(now), out / CONFIG)
    except RenamedKeysError as e:
        raise older_run(out, e) from None
    except ConfigError as e:
        raise CheckpointError(f"--resume: cannot read {out / CONFIG}: {e}") from None
    diff = config_difference(saved, now, free, nulls)
    if diff:
        raise CheckpointError(f"--resume: {out} was made with a different config: {diff}; resume with the same "
                              f"config and overrides or choose another --out")


def older_run(out: str | Path, e: RenamedKeysError) -> CheckpointError:
    """The one line of a --resume of a run folder whose config.yaml an older dreamer wrote (renamed keys)."""
    return CheckpointError(f"--resume: {out} was made by an older dreamer: its {CONFIG} has renamed keys "
                           f"({renamed_list(e.renamed)}); rename them in {Path(out) / CONFIG} to resume")


def resume_checkpoint(out: str | Path, now, free: tuple[str, ...], required: tuple[str, ...] = (),
                      missing_ok: bool = False, nulls: dict | None = None) -> dict | None:
    """check_resume, then OUT/checkpoint.pt (weights-only, with the `required` keys); missing_ok: none yet -> None."""
    check_resume(out, now, free, nulls)
    path = Path(out) / CHECKPOINT
    if missing_ok and not path.is_file():
        warnings.warn(f"--resume: no {CHECKPOINT} in {out} yet; starting from step 0", DreamerWarning, stacklevel=3)
        return None
    return load_checkpoint(path, required)


# ----------------------------------------------------------------------------------------------- the guarded step
def nothing_kept() -> str:
    """What a stopped run without a folder keeps."""
    return "nothing had been saved yet"


@dataclass
class StepGuard(BadSteps):
    """guidance.guarded_step with its bookkeeping: a skipped update (non-finite loss / gradient) is recorded in
    `skipped` / `streak`, warned about, and `limit` in a row stop the run (NumericalFault naming what kept() says)."""

    limit: int = 20                  # consecutive skipped updates that stop the run (max_bad_steps)
    what: str = "update"             # what the warning calls a skipped update
    kept: Callable[[], str] = field(default=nothing_kept, repr=False, compare=False)  # called only when stopping

    def step(self, index: int, loss, optimizers, max_norm: float = 0.0, guidance=None, params=None,
             shown: int | None = None) -> float | None:
        """One guarded update, recorded as `index` (warned about as step `shown`, default index); its norm or None."""
        norm = guarded_step(loss, optimizers, max_norm, guidance=guidance, params=params)
        if self.record(index, norm):
            self.warn(index if shown is None else shown)
        return norm

    def warn(self, step: int) -> None:
        """After a skipped update: one warning; the `limit`-th in a row raises a one-line NumericalFault."""
        warnings.warn(f"step {step}: non-finite loss or gradient, {self.what} skipped ({self.streak} in a row, "
                      f"limit {self.limit})", DreamerWarning, stacklevel=4)
        if self.streak >= self.limit:
            raise NumericalFault(f"stopped at step {step}: {self.streak} consecutive steps with a non-finite loss or "
                                 f"gradient ({len(self.skipped)} skipped in all); {self.kept()}")

    def restore(self, skipped, streak) -> None:
        """Continue a checkpoint's record."""
        self.skipped, self.streak = list(skipped), int(streak)


# ----------------------------------------------------------------------------------------------- the folder
@dataclass(eq=False)
class RunFolder:
    """One run's folder: checkpoint.pt, log.jsonl, the guarded step (`bad`) and the training clock over sittings;
    out None: a run in memory (nothing written); main False (a data-parallel rank other than 0): nothing written."""

    out: Path | None = None
    bad: StepGuard = field(default_factory=StepGuard)
    main: bool = True
    seconds_before: float = 0.0              # training seconds of earlier sittings (--resume)
    sittings: int = 0                        # earlier sittings
    sitting_start: float | None = None       # time.perf_counter() when this sitting's training began
    saves: int = 0                           # checkpoint writes (numbers them for the crash-test hook)

    def __post_init__(self):
        self.out = None if self.out is None else Path(self.out)

    def start_sitting(self) -> None:
        """This sitting's training starts now."""
        self.sitting_start = time.perf_counter()

    @property
    def seconds_this_sitting(self) -> float:
        return 0.0 if self.sitting_start is None else time.perf_counter() - self.sitting_start

    @property
    def train_seconds(self) -> float:
        """Training time over every sitting of this run (up to now)."""
        return self.seconds_before + self.seconds_this_sitting

    def timing(self) -> dict:
        """train_seconds, seconds_this_sitting (read once, so the first sitting's are equal) and sittings so far."""
        now = self.seconds_this_sitting
        return {"train_seconds": self.seconds_before + now, "seconds_this_sitting": now,
                "sittings": self.sittings + (self.sitting_start is not None)}

    def continue_clock(self, seconds: float, sittings: int = 1) -> None:
        """Resume: earlier sittings took `seconds` in all."""
        self.seconds_before, self.sittings = float(seconds), int(sittings)

    @property
    def checkpoint(self) -> Path:
        return self.out / CHECKPOINT

    def save_checkpoint(self, sd: dict) -> Path:
        """OUT/checkpoint.pt atomically (checkpoints.atomic_save: the old or the new complete file), main rank only."""
        self.saves += 1
        return atomic_save(sd, self.checkpoint, self.saves) if self.main else self.checkpoint

    def append_log(self, record: dict) -> None:
        """One JSON line onto OUT/log.jsonl (main rank only)."""
        if self.main:
            with open(self.out / LOG, "a") as f:
                f.write(json.dumps(record) + "\n")

    def cut_log(self, lines: int) -> None:
        """Resume: OUT/log.jsonl back to its first `lines` lines (those the checkpoint had seen)."""
        log = self.out / LOG
        kept = log.read_text().splitlines(keepends=True)[:lines] if log.is_file() else []
        if self.main:
            log.write_text("".join(kept))
