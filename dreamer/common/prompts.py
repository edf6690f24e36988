"""Prompt helpers of both applications: view-dependent suffixes (DreamFusion sec. 3.2) and a warning when the
teacher's text encoder will truncate a prompt."""
from __future__ import annotations

import warnings

from .errors import DreamerWarning


def token_count(teacher, text: str) -> int | None:
    """Tokens (with special tokens) the teacher's text encoder sees for `text`; None if it has no tokenizer."""
    tok = getattr(getattr(teacher, "text", None), "tokenizer", None)
    if tok is None:
        return None
    return len(tok(text, truncation=False, verbose=False)["input_ids"])


def truncation_message(teacher, texts: list[str], what: str = "prompt") -> str | None:
    """One line naming the longest text the encoder truncates (and what survives), or None if none is cut."""
    limit = getattr(getattr(teacher, "text", None), "max_length", None)
    counts = [(token_count(teacher, t), t) for t in dict.fromkeys(texts)]
    over = [(n, t) for n, t in counts if n is not None and limit is not None and n > limit]
    if not over:
        return None
    n, text = max(over)
    tok = teacher.text.tokenizer
    kept = tok.decode(tok(text, truncation=True, max_length=limit)["input_ids"], skip_special_tokens=True)
    more = f" ({len(over)} texts affected)" if len(over) > 1 else ""
    return (f"{what} truncated to {limit} tokens (the text encoder's limit; {text!r} has {n}): "
            f"the teacher sees {kept!r}{more}")


def warn_if_truncated(teacher, texts: list[str], what: str = "prompt") -> str | None:
    """Issue a DreamerWarning when the text encoder will truncate any of `texts`; returns the message."""
    msg = truncation_message(teacher, texts, what)
    if msg:
        warnings.warn(msg, DreamerWarning, stacklevel=2)
    return msg


def view_suffix(elevation_deg: float, azimuth_deg: float) -> str:
    """DreamFusion view-dependent prompt suffix from a camera."""
    if elevation_deg > 60.0:
        return "overhead view"
    a = (azimuth_deg + 180.0) % 360.0 - 180.0
    if abs(a) < 45.0:
        return "front view"
    if abs(a) > 135.0:
        return "back view"
    return "side view"


def view_prompt(prompt: str, elevation_deg: float, azimuth_deg: float) -> str:
    return f"{prompt}, {view_suffix(elevation_deg, azimuth_deg)}"


VIEW_SUFFIXES = ("front view", "side view", "back view", "overhead view")
