"""User-facing failures and warnings: the CLI prints their message as one line (errors exit with code 2)."""
from __future__ import annotations

import warnings
from collections.abc import Callable


class DreamerError(Exception):
    """A failure the user can fix (bad file, bad folder, unusable run); the message is one line."""


class CheckpointError(DreamerError):
    """A checkpoint that cannot be used: missing, corrupt, truncated, not weights-only, or from another run."""


class TeacherError(DreamerError):
    """A teacher that cannot be found or loaded."""


class OutputError(DreamerError):
    """An output location that cannot be written, or that would overwrite earlier results."""


class NumericalFault(DreamerError):
    """Too many consecutive steps with a non-finite loss or gradient."""


class DreamerWarning(UserWarning):
    """Something the user should know that does not stop the run (truncated prompt, skipped step)."""


def one_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name."""
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return lines[0] if lines else type(e).__name__


def warn_skipped(bad, limit: int, step: int, what: str, kept: Callable[[], str]) -> None:
    """After a skipped update (bad: guidance.BadSteps): one warning; `limit` in a row raise NumericalFault naming
    what was kept (kept() is called only then)."""
    warnings.warn(f"step {step}: non-finite loss or gradient, {what} skipped ({bad.streak} in a row, limit {limit})",
                  DreamerWarning, stacklevel=3)
    if bad.streak >= limit:
        raise NumericalFault(f"stopped at step {step}: {bad.streak} consecutive steps with a non-finite loss or "
                             f"gradient ({len(bad.skipped)} skipped in all); {kept()}")
