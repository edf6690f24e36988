"""Random shapes outside the catalogue for the evaluator's negatives: 3D solids (as SDFs) and 2D filled shapes.

    f, rot = solid(name, n, g, fwd)        # SdfFn of n random instances, rotations [n,3,3]
    inside = shape2d(kind, x, y, size, ang, aux)
"""
from __future__ import annotations

import math

import torch

from .sdf_render import SdfFn, unit

TRAIN_SOLIDS = ("ellipsoid", "capsule", "bumpy", "bar", "plate", "star")
HELD_OUT_SOLIDS = ("jack", "dumbbell", "snowman", "arch")


def uniform(g: torch.Generator, *shape, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """Uniform samples in [lo, hi) of the given shape from generator g."""
    return lo + (hi - lo) * torch.rand(*shape, generator=g)


def _frame(axis: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Rotations [n,3,3] (columns = local x, y, z in world) whose local x is `axis`, random roll."""
    v = unit(torch.randn(axis.shape, generator=g))
    y = unit(v - (v * axis).sum(-1, keepdim=True) * axis)
    z = torch.cross(axis, y, dim=-1)
    return torch.stack([axis, y, z], -1)


def _axis_near_plane(fwd: torch.Tensor, g: torch.Generator, max_deg: float = 30.0,
                     min_tilt_deg: float = 0.0) -> torch.Tensor:
    """Unit axes within max_deg of the image plane (so elongated shapes look elongated), their image-plane
    direction at least min_tilt_deg from the horizontal (a level capsule or ellipsoid looks like a torus seen
    edge-on, which is a catalogue view)."""
    right = unit(torch.cross(torch.tensor([0.0, 1.0, 0.0]).expand_as(fwd), -fwd, dim=-1))
    up = torch.cross(-fwd, right, dim=-1)
    th = torch.deg2rad(uniform(g, len(fwd), lo=min_tilt_deg, hi=180.0 - min_tilt_deg))[:, None]
    perp = torch.cos(th) * right + torch.sin(th) * up
    b = torch.deg2rad(uniform(g, len(fwd), lo=-max_deg, hi=max_deg))[:, None]
    return unit(torch.cos(b) * perp + torch.sin(b) * fwd)


def _axis_near_view(fwd: torch.Tensor, g: torch.Generator, lo_deg: float = 0.0, hi_deg: float = 40.0) -> torch.Tensor:
    """Unit axes at lo..hi degrees from the view direction (so flat shapes show their outline)."""
    u = torch.randn(fwd.shape, generator=g)
    perp = unit(u - (u * fwd).sum(-1, keepdim=True) * fwd)
    c = torch.deg2rad(uniform(g, len(fwd), lo=lo_deg, hi=hi_deg))[:, None]
    sign = torch.where(uniform(g, len(fwd), 1) < 0.5, -1.0, 1.0)
    return unit(sign * torch.cos(c) * fwd + torch.sin(c) * perp)


# ------------------------------------------------------------------------------------------ solids

def _box(q: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    d = q.abs() - half
    return d.clamp(min=0).norm(dim=-1) + d.amax(-1).clamp(max=0)


def _capsule_x(q: torch.Tensor, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    x = q[..., 0] - q[..., 0].clamp(-h, h)
    return torch.sqrt(x * x + q[..., 1] ** 2 + q[..., 2] ** 2) - r


def _star2d(x: torch.Tensor, y: torch.Tensor, r: torch.Tensor, n: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Signed distance to an n-pointed star of outer radius r and sharpness m in [2, n] (Quilez)."""
    an, en = math.pi / n, math.pi / m
    acs_x, acs_y, ecs_x, ecs_y = torch.cos(an), torch.sin(an), torch.cos(en), torch.sin(en)
    bn = torch.remainder(torch.atan2(x, y), 2 * an) - an
    ln = torch.sqrt(x * x + y * y)
    px, py = ln * torch.cos(bn) - r * acs_x, ln * torch.sin(bn).abs() - r * acs_y
    k = (-(px * ecs_x + py * ecs_y)).clamp(min=0)
    k = torch.minimum(k, r * acs_y / ecs_y)
    px, py = px + ecs_x * k, py + ecs_y * k
    return torch.sqrt(px * px + py * py) * torch.sign(px)


def _extrude(d2: torch.Tensor, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    wx, wy = d2, z.abs() - h
    return torch.maximum(wx, wy).clamp(max=0) + torch.sqrt(wx.clamp(min=0) ** 2 + wy.clamp(min=0) ** 2)


def solid(name: str, n: int, g: torch.Generator, fwd: torch.Tensor) -> tuple[SdfFn, torch.Tensor]:
    """An SdfFn for n random instances of one out-of-catalogue solid, and their rotations [n,3,3]."""
    U = lambda lo, hi, *s: uniform(g, n, *s, lo=lo, hi=hi)  # noqa: E731
    if name == "ellipsoid":
        rad = torch.stack([U(0.45, 0.6), U(0.16, 0.28), U(0.16, 0.32)], -1)
        rot = _frame(_axis_near_plane(fwd, g, min_tilt_deg=25.0), g)

        def local(q, i):
            r = rad[i][:, None]
            k0 = (q / r).norm(dim=-1)
            k1 = (q / (r * r)).norm(dim=-1).clamp(min=1e-6)
            return k0 * (k0 - 1) / k1
    elif name == "capsule":
        r, h = U(0.12, 0.2), U(0.25, 0.38)
        rot = _frame(_axis_near_plane(fwd, g, min_tilt_deg=25.0), g)

        def local(q, i):
            return _capsule_x(q, h[i][:, None], r[i][:, None])
    elif name == "bumpy":
        r0, rb = U(0.27, 0.34), U(0.13, 0.19)
        dirs = unit(torch.randn(n, 6, 3, generator=g))
        rot = torch.eye(3).expand(n, 3, 3)

        def local(q, i):
            d = q.norm(dim=-1) - r0[i][:, None]
            cen = dirs[i] * r0[i][:, None, None]                                          # [b,6,3]
            db = (q[:, :, None] - cen[:, None]).norm(dim=-1) - rb[i][:, None, None]       # [b,P,6]
            return torch.minimum(d, db.amin(-1))
    elif name == "bar":
        half = torch.stack([U(0.45, 0.58), U(0.08, 0.18), U(0.08, 0.18)], -1)
        rot = _frame(_axis_near_plane(fwd, g), g)

        def local(q, i):
            return _box(q, half[i][:, None])
    elif name == "plate":
        half = torch.stack([U(0.45, 0.55), U(0.22, 0.32), U(0.04, 0.08)], -1)
        z = _axis_near_view(fwd, g, 25.0, 65.0)
        rot = _frame(unit(torch.cross(z, torch.randn(n, 3, generator=g), dim=-1)), g)
        rot = torch.stack([rot[..., 0], torch.cross(z, rot[..., 0], dim=-1), z], -1)

        def local(q, i):
            return _box(q, half[i][:, None])
    elif name == "star":
        r, h = U(0.45, 0.56), U(0.07, 0.16)
        pts = torch.where(uniform(g, n) < 0.5, 5.0, 6.0)
        m = 2 + (pts - 2) * U(0.25, 0.6)
        z = _axis_near_view(fwd, g, 0.0, 40.0)
        rot = _frame(unit(torch.cross(z, torch.randn(n, 3, generator=g), dim=-1)), g)
        rot = torch.stack([rot[..., 0], torch.cross(z, rot[..., 0], dim=-1), z], -1)

        def local(q, i):
            d2 = _star2d(q[..., 0], q[..., 1], r[i][:, None], pts[i][:, None], m[i][:, None])
            return _extrude(d2, q[..., 2], h[i][:, None])
    elif name == "jack":
        L, t = U(0.4, 0.55), U(0.06, 0.11)
        rot = _frame(unit(torch.randn(n, 3, generator=g)), g)

        def local(q, i):
            a, b = L[i][:, None, None], t[i][:, None, None]
            halves = [torch.cat([a, b, b], -1), torch.cat([b, a, b], -1), torch.cat([b, b, a], -1)]
            return torch.stack([_box(q, hh) for hh in halves], -1).amin(-1)
    elif name == "dumbbell":
        rb, rr = U(0.16, 0.23), U(0.045, 0.08)
        rot = _frame(_axis_near_plane(fwd, g), g)

        def local(q, i):
            c = (0.58 - rb[i])[:, None]
            balls = torch.minimum((q - torch.stack([c, 0 * c, 0 * c], -1)).norm(dim=-1),
                                  (q + torch.stack([c, 0 * c, 0 * c], -1)).norm(dim=-1)) - rb[i][:, None]
            return torch.minimum(balls, _capsule_x(q, c, rr[i][:, None]))
    elif name == "snowman":
        r1, r2 = U(0.25, 0.32), U(0.14, 0.2)
        gap = (r1 + r2) * U(0.8, 0.95)
        c1 = -(gap + r2 - r1) / 2  # big ball centre, so that the pair is centred
        rot = _frame(_axis_near_plane(fwd, g), g)

        def local(q, i):
            o1 = torch.stack([c1[i], 0 * c1[i], 0 * c1[i]], -1)[:, None]
            o2 = torch.stack([c1[i] + gap[i], 0 * c1[i], 0 * c1[i]], -1)[:, None]
            return torch.minimum((q - o1).norm(dim=-1) - r1[i][:, None], (q - o2).norm(dim=-1) - r2[i][:, None])
    elif name == "arch":
        t, w, ih = U(0.08, 0.16), U(0.16, 0.24), U(0.25, 0.35)
        z = _axis_near_view(fwd, g, 0.0, 40.0)
        rot = _frame(unit(torch.cross(z, torch.randn(n, 3, generator=g), dim=-1)), g)
        rot = torch.stack([rot[..., 0], torch.cross(z, rot[..., 0], dim=-1), z], -1)

        def local(q, i):
            outer = torch.stack([0.45 + 0 * t[i], 0.42 + 0 * t[i], t[i]], -1)[:, None]
            inner = torch.stack([w[i], ih[i], t[i] + 0.1], -1)[:, None]
            shift = torch.stack([0 * t[i], 0.42 - ih[i] + 0.01, 0 * t[i]], -1)[:, None]
            return torch.maximum(_box(q, outer), -_box(q - shift, inner))
    else:
        raise ValueError(f"unknown solid {name!r}")

    def f(p: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        q = torch.einsum("bpj,bjk->bpk", p, rot[idx])  # world -> local: R^T p (row-vector form p R)
        return local(q, idx)

    return f, rot


# ------------------------------------------------------------------------------------------ 2D drawing

def pixel_grid(n: int, res: int, ss: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Supersampled pixel-centre coordinates in [-1,1] (y up), each [1,res*ss,res*ss]."""
    t = (torch.arange(res * ss) + 0.5) / (res * ss) * 2 - 1
    y, x = torch.meshgrid(-t, t, indexing="ij")
    return x[None], y[None]


def _regular_polygon(u: torch.Tensor, v: torch.Tensor, sides: int, apothem: torch.Tensor) -> torch.Tensor:
    """Inside mask of a regular polygon: every edge normal at angle 2 pi k / sides, at distance `apothem`."""
    inside = torch.ones_like(u, dtype=torch.bool)
    for k in range(sides):
        a = 2 * math.pi * k / sides
        inside &= (u * math.cos(a) + v * math.sin(a)) <= apothem
    return inside


def shape2d(kind: str, x: torch.Tensor, y: torch.Tensor, size: torch.Tensor, ang: torch.Tensor,
             aux: torch.Tensor) -> torch.Tensor:
    """Inside mask [n,H,W] of a 2D shape (already centred coordinates x, y [n,H,W]); size, ang, aux [n,1,1]."""
    c, s = torch.cos(ang), torch.sin(ang)
    u, v = c * x + s * y, -s * x + c * y
    if kind == "disc":
        return u * u + v * v <= size ** 2
    if kind == "square":
        return torch.maximum(u.abs(), v.abs()) <= size * 0.8
    if kind == "triangle":
        return _regular_polygon(u, v, 3, size * 0.5)
    if kind == "ellipse":
        return (u / size) ** 2 + (v / (size * aux)) ** 2 <= 1
    if kind == "hexagon":
        return _regular_polygon(u, v, 6, size * 0.87)
    if kind == "star":
        return _star2d(u, v, size, torch.tensor(5.0), torch.tensor(2.5)) <= 0
    if kind == "ring":
        r2 = u * u + v * v
        return (r2 <= size ** 2) & (r2 >= (size * aux) ** 2)
    raise ValueError(kind)
