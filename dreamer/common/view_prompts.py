"""Prompt helpers of both applications: view-dependent suffixes (DreamFusion sec. 3.2), Perp-Neg's interpolated view
prompts and weighted negative views, and a warning when the teacher's text encoder will truncate a prompt."""
from __future__ import annotations

import math
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


def perp_neg_views(azimuth_deg: float, weight: float = 2.0, front_decay: float = 2.0,
                   side_decay: float = 10.0) -> tuple[str, str, float, tuple[tuple[str, float], ...]]:
    """Perp-Neg's view prompts for one camera (Armandpour et al. 2023, text-to-3D; weights of the authors'
    Stable-DreamFusion integration): (view a, view b, r, ((negative view, weight >= 0), ...)). The positive prompt is
    r * emb(a) + (1 - r) * emb(b) between the two nearest of front / side / back (azimuth 0 = front, as view_suffix);
    each negative view's weight decays with how close the camera is to it (elevation is not used)."""
    a = abs((azimuth_deg + 180.0) % 360.0 - 180.0)
    if a < 90.0:                                   # front (r = 1) .. side (r = 0)
        r = 1.0 - a / 90.0
        w_front = 0.0 if r > 0.8 else weight * math.exp(-r * front_decay)
        w_side = 0.0 if r < 0.2 else weight * math.exp(-(1.0 - r) * side_decay)
        return "front view", "side view", r, (("front view", w_front), ("side view", w_side))
    r = 1.0 - (a - 90.0) / 90.0                    # side (r = 1) .. back (r = 0)
    w_side = 0.0 if r > 0.8 else weight * math.exp(-r * side_decay) / 2.0
    return "side view", "back view", r, (("side view", w_side), ("front view", weight))


def perp_neg_embeddings(encode, prompt: str, azimuths, weight: float = 2.0, front_decay: float = 2.0,
                        side_decay: float = 10.0):
    """(cond [B,L,D], views [B,K,L,D], view_weights [B,K]) for guidance.Prompts with cfg_mode perp_neg; encode:
    list[str] -> [N,L,D] (a teacher's encode_prompt); azimuths in degrees, one per camera."""
    import torch          # here, not at the top: the rest of this module (the CLI's vocabulary) needs no torch

    names = ("front view", "side view", "back view")
    emb = dict(zip(names, encode([f"{prompt}, {v}" for v in names])))
    cond, views, weights = [], [], []
    for az in azimuths:
        va, vb, r, negs = perp_neg_views(float(az), weight, front_decay, side_decay)
        cond.append(r * emb[va] + (1.0 - r) * emb[vb])
        views.append(torch.stack([emb[v] for v, _ in negs]))
        weights.append([w for _, w in negs])
    return torch.stack(cond), torch.stack(views), torch.tensor(weights, dtype=cond[0].dtype, device=cond[0].device)
