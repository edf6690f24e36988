"""Export threshold from the renders: the density level set whose silhouettes match what the scene shows.

A fixed density threshold is arbitrary: a low one wraps the mesh around faint fringes that no render shows (the
mesh grows well past the visible object), a high one erodes it. A level set's silhouette from a camera is the set
of rays whose maximum density exceeds the level, so one pass of per-ray maxima over the density grid scores every
candidate level at once against the rendered coverage (alpha > 0.5); the best IoU wins.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import renderers as R


def ray_max_density(grid: np.ndarray, bound: float, cams: R.Cameras, n_samples: int = 128) -> torch.Tensor:
    """Max over each pixel ray of the trilinear density on linspace(-bound, bound, res)^3 -> [B,H,W]."""
    vol = torch.as_tensor(np.ascontiguousarray(grid), dtype=torch.float32)[None, None]  # [1,1,X,Y,Z]
    o, d = R.rays_from_cameras(cams)                                                   # [B,H,W,3]
    dist = o.norm(dim=-1, keepdim=True)
    r = bound * 3 ** 0.5
    t = torch.linspace(0.0, 1.0, n_samples)                                            # [S]
    ts = (dist - r) + 2 * r * t                                                        # [B,H,W,S]
    pts = o[..., None, :] + ts[..., None] * d[..., None, :]                            # [B,H,W,S,3]
    # grid_sample wants (x, y, z) = (last, middle, first) volume axes; ours are indexed [x, y, z].
    coords = (pts.flip(-1) / bound).reshape(1, -1, 1, 1, 3)
    vals = F.grid_sample(vol, coords, align_corners=True, padding_mode="zeros")        # [1,1,P,1,1]
    return vals.reshape(*pts.shape[:-1]).amax(-1)


def silhouette_threshold(grid: np.ndarray, bound: float, cams: R.Cameras, alpha: torch.Tensor,
                         n_candidates: int = 64) -> tuple[float, float]:
    """-> (level, IoU): the density level whose silhouettes best match `alpha` [B,H,W] > 0.5 (log-spaced sweep)."""
    peak = ray_max_density(grid, bound, cams)                                          # [B,H,W]
    seen = alpha > 0.5
    hi = float(peak.max())
    if hi <= 0 or not bool(seen.any()):
        raise ValueError("empty field or empty renders: no silhouette to match")
    levels = torch.logspace(np.log10(hi) - 3, np.log10(hi), n_candidates + 1)[:-1]     # [K], below the peak
    inside = peak[None] > levels.view(-1, 1, 1, 1)                                     # [K,B,H,W]
    inter = (inside & seen).flatten(1).sum(1).float()
    union = (inside | seen).flatten(1).sum(1).float()
    iou = inter / union
    k = int(iou.argmax())
    return float(levels[k]), float(iou[k])
