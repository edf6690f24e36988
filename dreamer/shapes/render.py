"""Ground-truth renders of the shapes world by batched sphere tracing (white background)."""
from __future__ import annotations

import math

import torch

from renderers.cameras import orbit_cameras, rays_from_cameras
from renderers.shading import AMBIENT, camera_key_light

from .world import SHAPES, ShapeSpec, sdf

BOUND_R = 0.8  # every primitive lies inside this sphere


def sphere_trace(f, o: torch.Tensor, d: torch.Tensor, iters: int = 40,
                 step: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Sphere-trace rays o, d [...,3] against the SDF f(points [...,3]) -> [...] inside the bounding sphere of radius
    BOUND_R; returns the hit mask [...] and hit points [...,3]."""
    b = (o * d).sum(-1)
    c = (o * o).sum(-1) - BOUND_R ** 2
    disc = b * b - c
    t = (-b - disc.clamp(min=0).sqrt()).clamp(min=0)
    t_far = -b + disc.clamp(min=0).sqrt()
    alive = disc > 0
    hit = torch.zeros_like(alive)
    for _ in range(iters):
        dist = f(o + t[..., None] * d)
        hit = hit | (alive & (dist < 1e-3))
        t = torch.where(alive & ~hit, t + dist.clamp(min=0) * step + 1e-4, t)
        alive = alive & (t < t_far)
    return hit, o + t[..., None] * d


def _normals(shape: str, p: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    offs = torch.eye(3) * eps
    g = torch.stack([sdf(shape, p + offs[i]) - sdf(shape, p - offs[i]) for i in range(3)], -1)
    return g / g.norm(dim=-1, keepdim=True).clamp(min=1e-8)


def render_shapes(specs: list[ShapeSpec], elev, azim, dist, fov_deg, res: int = 32,
                  supersample: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Render one view per spec: rgb [B,3,res,res] in [0,1] and alpha mask [B,1,res,res]."""
    B = len(specs)
    as_t = lambda v: torch.as_tensor(v, dtype=torch.float32).expand(B).clone()  # noqa: E731
    hi = res * supersample
    cams = orbit_cameras(as_t(elev), as_t(azim), as_t(dist), as_t(fov_deg), hi, hi)
    _, dirs = rays_from_cameras(cams)                                       # [B,hi,hi,3]
    eye = cams.c2w[:, :3, 3]
    rgb = torch.ones(B, hi, hi, 3)
    mask = torch.zeros(B, hi, hi)
    light = camera_key_light(cams.c2w)
    for shape in SHAPES:
        idx = [i for i, s in enumerate(specs) if s.shape == shape]
        if not idx:
            continue
        ii = torch.tensor(idx)
        o = eye[ii][:, None, None].expand(-1, hi, hi, 3).reshape(-1, 3)
        d = dirs[ii].reshape(-1, 3)
        hit, p = sphere_trace(lambda q: sdf(shape, q), o, d)
        n = _normals(shape, p)
        lam = (n * light[ii].repeat_interleave(hi * hi, 0)).sum(-1).clamp(min=0)
        shade = (AMBIENT + (1 - AMBIENT) * lam)[:, None]
        base = torch.tensor([specs[i].rgb for i in idx]).repeat_interleave(hi * hi, 0)
        col = torch.where(hit[:, None], (base * shade).clamp(0, 1), torch.ones_like(base))
        rgb[ii] = col.reshape(len(idx), hi, hi, 3)
        mask[ii] = hit.float().reshape(len(idx), hi, hi)
    rgb = rgb.permute(0, 3, 1, 2)
    mask = mask[:, None]
    if supersample > 1:
        rgb = torch.nn.functional.avg_pool2d(rgb, supersample)
        mask = torch.nn.functional.avg_pool2d(mask, supersample)
    return rgb, mask


def random_views(n: int, generator: torch.Generator, elev_range=(-10.0, 80.0), azim_range=(-180.0, 180.0),
                 dist_range=(1.9, 2.3), fov_range=(40.0, 45.0)) -> dict[str, torch.Tensor]:
    """Random orbit cameras (degrees); elevation sampled uniformly on the sphere band."""
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=generator)  # noqa: E731
    s0, s1 = math.sin(math.radians(elev_range[0])), math.sin(math.radians(elev_range[1]))
    elev = torch.rad2deg(torch.asin(u(s0, s1)))
    return {"elev": elev, "azim": u(*azim_range), "dist": u(*dist_range), "fov": u(*fov_range)}
