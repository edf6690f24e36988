"""Vertex colours baked from renders: what the scene shows, not what its interior holds.

A density-weighted colour query (renderers.gaussians_color) also averages splats that no view ever sees (an
opaque object's inside keeps its early colours, since no gradient reaches it). Baking instead gives each vertex
the mean rendered colour over the views where it is visible: in front of the camera, facing it, and not behind
the rendered surface (its depth within `tol` of the render's expected depth), weighted by the facing cosine.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import renderers as R

from .scenes import FINAL_STEP


def bake_cameras(n_azim: int = 8, elevations=(-20.0, 20.0, 60.0), distance: float = 2.1, fov: float = 42.0,
                 res: int = 96) -> R.Cameras:
    """Orbit cameras on a grid of azimuths x elevations (degrees) around the origin."""
    az = torch.arange(n_azim, dtype=torch.float32) * (360.0 / n_azim) - 180.0
    el = torch.tensor(elevations, dtype=torch.float32)
    E, A = torch.meshgrid(el, az, indexing="ij")
    full = lambda v: torch.full((E.numel(),), float(v))  # noqa: E731
    return R.orbit_cameras(E.reshape(-1), A.reshape(-1), full(distance), full(fov), res, res)


class SharedRenders:
    """A scene whose no-grad renders are kept per camera (rgb / alpha / depth only), so the export's steps that
    look from the same views (level search and tunnel check: 24 views at 48 px; vertex and texture bake: 24 at
    96 px) render each once. Everything else is the wrapped scene's."""

    def __init__(self, scene):
        self._scene, self._memo = scene, {}

    def __getattr__(self, name):
        return getattr(self._scene, name)

    def render(self, cams: R.Cameras, step: int, generator: torch.Generator | None = None) -> dict:
        if generator is not None or torch.is_grad_enabled():
            return self._scene.render(cams, step, generator)
        key = (step, cams.width, cams.height, *(t.cpu().numpy().tobytes() for t in (cams.c2w, cams.fx, cams.fy,
                                                                                   cams.cx, cams.cy)))
        if key not in self._memo:
            out = self._scene.render(cams, step)
            self._memo[key] = {k: out[k] for k in ("rgb", "alpha", "depth")}
        return self._memo[key]


def project(cams: R.Cameras, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """World points [P,3] -> pixel coords [B,P,2] (x right, y down), camera z (forward) [B,P], ray distance [B,P]."""
    eye = cams.c2w[:, :3, 3]                                                     # [B,3]
    rel = points[None] - eye[:, None]                                            # [B,P,3]
    cam = torch.einsum("bji,bpj->bpi", cams.c2w[:, :3, :3], rel)                 # R^T rel: OpenGL camera frame
    z = -cam[..., 2]
    u = cams.cx[:, None] + cams.fx[:, None] * cam[..., 0] / z.clamp_min(1e-6)
    v = cams.cy[:, None] - cams.fy[:, None] * cam[..., 1] / z.clamp_min(1e-6)
    return torch.stack([u, v], -1), z, rel.norm(dim=-1)


def bake_vertex_colors(scene, vertices: np.ndarray, normals: np.ndarray, cams: R.Cameras | None = None,
                       tol: float = 0.06) -> tuple[np.ndarray, np.ndarray]:
    """-> rgb [V,3] in [0,1] (cosine-weighted mean over the views that see each vertex) and seen [V] bool.

    `scene.render` must return rgb / alpha / depth [B,*,H,W]; `scene.depth_kind` says whether its depth is the
    camera z ("z", splats) or the distance along the ray ("ray", volume rendering).
    """
    cams = bake_cameras() if cams is None else cams
    pts = torch.tensor(np.asarray(vertices), dtype=torch.float32)                        # [V,3]
    nrm = F.normalize(torch.tensor(np.asarray(normals), dtype=torch.float32), dim=-1)    # [V,3]
    acc, wsum = torch.zeros(len(pts), 3), torch.zeros(len(pts))
    for i in range(len(cams)):
        cam = cams[i]
        with torch.no_grad():
            out = scene.render(cam, FINAL_STEP)
        uv, z, dist = project(cam, pts)                                          # [1,V,2], [1,V], [1,V]
        grid = torch.stack([uv[..., 0] / cam.width, uv[..., 1] / cam.height], -1) * 2 - 1  # [1,V,2]
        sample = lambda img: F.grid_sample(img, grid[:, :, None], align_corners=False)[0, :, :, 0]  # noqa: E731
        rgb, alpha, depth = sample(out["rgb"].clamp(0, 1)), sample(out["alpha"])[0], sample(out["depth"])[0]
        own = z[0] if getattr(scene, "depth_kind", "z") == "z" else dist[0]
        to_cam = F.normalize(cam.c2w[0, :3, 3][None] - pts, dim=-1)
        cos = (nrm * to_cam).sum(-1)
        ok = (z[0] > 0) & (grid[0].abs() <= 1).all(-1) & (cos > 0.1) & (alpha > 0.5) & (own <= depth + tol)
        w = torch.where(ok, cos, torch.zeros_like(cos))
        acc += w[:, None] * rgb.T
        wsum += w
    seen = wsum > 0
    rgb = acc / wsum.clamp_min(1e-12)[:, None]
    return rgb.clamp(0, 1).numpy(), seen.numpy()
