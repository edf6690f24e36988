"""User-facing failures and warnings: the CLI prints their message as one line (errors exit with code 2)."""
from __future__ import annotations


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

