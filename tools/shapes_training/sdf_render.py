"""A batched sphere tracer for signed-distance functions, shaded like the ground-truth renders.

    rgb, alpha = render_sdf(f, rgb [n,3], views, res)      # f(points [b,P,3], image idx [b]) -> dist [b,P]

Used for the evaluator's negatives (shapes outside the catalogue) and its relit catalogue renders.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from dreamer.shapes.render import sphere_trace
from renderers.shading import AMBIENT, camera_key_light
from dreamer.shapes.world import SHAPES, ShapeSpec, sdf as world_sdf
from renderers.cameras import orbit_cameras, rays_from_cameras

SdfFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (points [b,P,3], image idx [b]) -> dist [b,P]


def unit(x: torch.Tensor) -> torch.Tensor:
    """x [...,3] scaled to unit length along the last axis (zero vectors stay ~0)."""
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-8)


def render_sdf(f: SdfFn, rgb: torch.Tensor, views: dict[str, torch.Tensor], res: int = 32, supersample: int = 2,
               ambient: float | torch.Tensor = AMBIENT, light_offset: torch.Tensor | None = None,
               chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Render f (SdfFn, per-image parameters looked up by idx) in colours rgb [n,3] from views: rgb, alpha.

    Shading as the GT renderer (albedo * (ambient + (1 - ambient) * lambert), light from the camera's upper left);
    light_offset [n,2] adds (up, right) components to the light, ambient may be a tensor [n].
    """
    n = len(rgb)
    hi = res * supersample
    amb = torch.as_tensor(ambient, dtype=torch.float32).expand(n)
    out_rgb, out_mask = torch.ones(n, 3, hi, hi), torch.zeros(n, 1, hi, hi)
    for s in range(0, n, chunk):
        ii = torch.arange(s, min(n, s + chunk))
        cams = orbit_cameras(views["elev"][ii], views["azim"][ii], views["dist"][ii], views["fov"][ii], hi, hi)
        o, d = rays_from_cameras(cams)
        o, d = o.reshape(len(ii), -1, 3), d.reshape(len(ii), -1, 3)
        hit, p = sphere_trace(lambda q: f(q, ii), o, d, iters=64, step=0.9)
        eps = 1e-3
        nrm = unit(torch.stack([f(p + e, ii) - f(p - e, ii) for e in torch.eye(3) * eps], -1))
        light = camera_key_light(cams.c2w, None if light_offset is None else light_offset[ii])
        lam = (nrm * light[:, None]).sum(-1).clamp(min=0)
        shade = amb[ii, None] + (1 - amb[ii, None]) * lam                                       # [b,P]
        col = torch.where(hit[..., None], (rgb[ii, None] * shade[..., None]).clamp(0, 1), torch.ones(()))
        out_rgb[ii] = col.reshape(len(ii), hi, hi, 3).permute(0, 3, 1, 2)
        out_mask[ii] = hit.float().reshape(len(ii), 1, hi, hi)
    if supersample > 1:
        out_rgb, out_mask = F.avg_pool2d(out_rgb, supersample), F.avg_pool2d(out_mask, supersample)
    return out_rgb, out_mask


def render_catalogue(specs: Sequence[ShapeSpec], views: dict[str, torch.Tensor], res: int = 32,
                     rgb: torch.Tensor | None = None, ambient: float | torch.Tensor = AMBIENT,
                     light_offset: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Catalogue shapes through this module's tracer, optionally recoloured (rgb [n,3]) or relit."""
    rgb = torch.tensor([s.rgb for s in specs]) if rgb is None else rgb
    shape_id = torch.tensor([SHAPES.index(s.shape) for s in specs])

    def f(p: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        out = torch.empty(p.shape[:-1])
        for k, name in enumerate(SHAPES):
            m = shape_id[idx] == k
            if m.any():
                out[m] = world_sdf(name, p[m])
        return out

    return render_sdf(f, rgb, views, res, ambient=ambient, light_offset=light_offset)
