"""Surface from renders: truncated signed-distance fusion of the scene's rendered depth and coverage.

A level set of a splat mixture (or of a NeRF's raw density) is not the surface the renders show: an opaque object is
seen only at its skin, so its density holds interior sheets and thin spots that marching cubes turns into tunnels,
and no single level fits every part. Fusing what the renders show instead (Curless & Levoy 1996, "A volumetric
method for building complex models from range images"; the projective TSDF of KinectFusion, Newcombe et al. 2011)
gives one closed surface at the zero crossing: every voxel gets, from each view that sees it, the signed distance
d = depth - own depth along the view (clamped to [-mu, mu]); a pixel the render leaves uncovered (alpha < 0.5) says
"free space" (+mu) for every voxel on its ray; voxels more than mu behind the rendered surface get no vote from
that view. Voxels no view votes on are inside when some view saw them occluded, outside otherwise.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import renderers as R

from .bake import bake_cameras, project
from .scenes import FINAL_STEP


@torch.no_grad()
def fuse_renders(scene, res: int, bound: float = 1.0, cams: R.Cameras | None = None, trunc_voxels: float = 3.0,
                 transmittance: float = 0.5, chunk: int = 1 << 18) -> tuple[np.ndarray, float]:
    """-> (grid [res,res,res] on linspace(-bound, bound, res)^3 (x,y,z), level): grid = mu - tsdf in [0, 2 mu], so
    larger is inside like a density and the surface is the `level` = mu set (export's fill / closing work as is).

    `scene.render(cams[i], step)` gives alpha / depth [1,1,H,W]; `scene.depth_kind` "z" (camera z) or "ray". A scene
    with `surface_depth(cams, transmittance)` gives the depth where each view's transmittance falls to
    `transmittance` (a translucent cloud's expected depth lies inside it, its entry is where it starts to hide)."""
    cams = bake_cameras() if cams is None else cams
    mu = trunc_voxels * 2 * bound / (res - 1)
    axis = torch.linspace(-bound, bound, res)
    pts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)    # [P,3]
    num, wsum = torch.zeros(len(pts)), torch.zeros(len(pts))
    occluded = torch.zeros(len(pts), dtype=torch.bool)
    for i in range(len(cams)):
        cam = cams[i]
        out = scene.render(cam, FINAL_STEP)
        alpha = out["alpha"][:, :1].float()                                                # [1,1,H,W]
        depth = (scene.surface_depth(cam, transmittance) if hasattr(scene, "surface_depth")
                 else out["depth"][:, :1]).float()
        for s in range(0, len(pts), chunk):
            p = pts[s:s + chunk]
            uv, z, dist = project(cam, p)                                                  # [1,P,2], [1,P], [1,P]
            g = torch.stack([uv[..., 0] / cam.width, uv[..., 1] / cam.height], -1) * 2 - 1   # [1,P,2]
            a = F.grid_sample(alpha, g[:, :, None], mode="bilinear", align_corners=False)[0, 0, :, 0]   # [P]
            d = F.grid_sample(depth, g[:, :, None], mode="nearest", align_corners=False)[0, 0, :, 0]    # [P]
            own = z[0] if getattr(scene, "depth_kind", "z") == "z" else dist[0]
            seen = (z[0] > 0) & (g[0].abs() <= 1).all(-1)
            free = seen & (a < 0.5)
            sdf = (d - own).clamp(max=mu)
            hit = seen & ~free & (sdf >= -mu)
            num[s:s + chunk] += torch.where(free, mu, 0.0) + torch.where(hit, sdf, 0.0)
            wsum[s:s + chunk] += (free | hit).float()
            occluded[s:s + chunk] |= seen & ~free & (sdf < -mu)
    tsdf = torch.where(wsum > 0, num / wsum.clamp_min(1), torch.where(occluded, -mu, mu))
    return (mu - tsdf).reshape(res, res, res).numpy().astype(np.float32), float(mu)
