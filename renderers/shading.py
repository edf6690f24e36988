"""Deferred Lambertian shading of a render from its own depth map, for any renderer (splats or NeRF).

A view-independent colour cannot show a flat face turning away from a light, so a cube and a sphere of one colour
differ only at the silhouette. Shading the render the way a teacher's training images were lit (DreamFusion, Poole
et al. 2022, §3.1: c = albedo * (ambient + (1 - ambient) max(0, n.l)), after the warm-up threestudio draws albedo,
diffuse or textureless per step) gives the guidance a gradient on the surface's orientation. Here n is taken from
the render's depth (the normal of the back-projected depth map, as in 2DGS's depth-normal, Huang et al. 2024, §4.2),
so one function serves every renderer and the gradient reaches the geometry through the depth.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .cameras import Cameras, rays_from_cameras

MODES = ("albedo", "lambertian", "textureless")
AMBIENT = 0.35  # the shapes world's image model: albedo * (AMBIENT + (1 - AMBIENT) max(0, n.l))


def camera_key_light(c2w: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
    """The key light [B,3], unit, fixed to the camera from its upper left so every view is lit: -forward + 0.6 up
    - 0.4 right of c2w [B,4,4]; offset [B,2] adds (up, right) components (relit images, jittered lights)."""
    right, up, fwd = c2w[:, :3, 0], c2w[:, :3, 1], -c2w[:, :3, 2]
    w_up, w_right = (0.6, -0.4) if offset is None else (0.6 + offset[:, :1], -0.4 + offset[:, 1:])
    d = -fwd + w_up * up + w_right * right
    return d / d.norm(dim=-1, keepdim=True).clamp(min=1e-8)


def depth_points(depth: torch.Tensor, cams: Cameras, kind: str, rays=None) -> torch.Tensor:
    """World points [B,H,W,3] of a depth map [B,1,H,W]: kind "z" (camera z, as splats render it) or "ray"
    (distance along the unit ray, as a NeRF renders it). rays: rays_from_cameras(cams), if already at hand."""
    o, d = rays_from_cameras(cams) if rays is None else rays               # [B,H,W,3] each, d unit
    t = depth[:, 0, ..., None]                                              # [B,H,W,1]
    if kind == "z":
        fwd = -cams.c2w[:, None, None, :3, 2]                               # [B,1,1,3] the camera's viewing axis
        t = t / (d * fwd).sum(-1, keepdim=True)                            # z -> distance along the ray
    elif kind != "ray":
        raise ValueError(f"depth kind must be 'z' or 'ray', not {kind!r}")
    return o + d * t


def _diff(p: torch.Tensor, dim: int) -> torch.Tensor:
    """Central difference of p along dim (one-sided at both ends): the same shape as p."""
    n = p.shape[dim]
    nxt = torch.cat([p.narrow(dim, 1, n - 1), p.narrow(dim, n - 1, 1)], dim)
    prv = torch.cat([p.narrow(dim, 0, 1), p.narrow(dim, 0, n - 1)], dim)
    return nxt - prv


def depth_normals(depth: torch.Tensor, cams: Cameras, kind: str) -> torch.Tensor:
    """Unit world normals [B,3,H,W] of a depth map [B,1,H,W], facing the camera: the cross product of the
    back-projected points' image-space derivatives. Exact (up to rounding) wherever the depth is a plane."""
    rays = rays_from_cameras(cams)
    p = depth_points(depth, cams, kind, rays)                               # [B,H,W,3]
    n = torch.cross(_diff(p, 1), _diff(p, 2), dim=-1)                       # d/dy x d/dx
    d = rays[1]
    n = n * -torch.sign((n * d).sum(-1, keepdim=True)).detach()            # towards the camera: n.d <= 0
    return F.normalize(n, dim=-1, eps=1e-12).permute(0, 3, 1, 2)


def shade(rgb: torch.Tensor, alpha: torch.Tensor, normals: torch.Tensor, light: torch.Tensor,
          background: torch.Tensor, mode: str = "lambertian", ambient: float = 0.35) -> torch.Tensor:
    """Relight a render composited over `background` [3]: rgb [B,3,H,W], alpha [B,1,H,W], normals [B,3,H,W],
    light [B,3] (unit, towards the light) -> rgb [B,3,H,W]. lambertian: albedo * (ambient + (1 - ambient)
    max(0, n.l)); textureless: the same with albedo 1; albedo: rgb unchanged."""
    if mode == "albedo":
        return rgb
    if mode not in MODES:
        raise ValueError(f"shading must be one of {MODES}, not {mode!r}")
    bg = background.view(1, -1, 1, 1).to(rgb)
    behind = (1 - alpha) * bg                                               # [B,3,H,W]
    fg = rgb - behind if mode == "lambertian" else alpha.expand_as(rgb)    # premultiplied albedo
    lam = (normals * light[:, :, None, None]).sum(1, keepdim=True).clamp_min(0)
    return fg * (ambient + (1 - ambient) * lam) + behind


def relight(out: dict, cams: Cameras, kind: str, light: torch.Tensor, background: torch.Tensor,
            mode: str = "lambertian", ambient: float = 0.35) -> torch.Tensor:
    """shade() of a render dict (rgb, alpha, depth [B,*,H,W], depth normalised by alpha): where alpha is low the
    depth is blended towards the camera's distance to the origin, so silhouettes bend away and no division by a
    small alpha reaches the gradient."""
    alpha = out["alpha"]
    far = cams.c2w[:, :3, 3].norm(dim=-1).view(-1, 1, 1, 1).detach()
    depth = out["depth"] * alpha + (1 - alpha) * far
    return shade(out["rgb"], alpha, depth_normals(depth, cams, kind), light, background, mode, ambient)
