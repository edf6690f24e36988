"""Shapes world: primitives x colours with exact ground truth (SDF + mesh) and prompts.

World frame: Y up, objects centred at the origin and fitting in [-0.5, 0.5]^3.
Orbit camera at (elevation e, azimuth a, distance d) sits at
d * (cos e sin a, sin e, cos e cos a) looking at the origin; azimuth 0 is the "front".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..common.view_prompts import VIEW_SUFFIXES

SHAPES = ("cube", "sphere", "cylinder", "cone", "torus", "pyramid")
COLOURS = {
    "red": (0.86, 0.10, 0.10),
    "green": (0.10, 0.66, 0.16),
    "blue": (0.10, 0.22, 0.88),
    "yellow": (0.96, 0.84, 0.08),
    "purple": (0.56, 0.16, 0.76),
    "orange": (1.00, 0.50, 0.05),
}
COLOUR_NAMES = tuple(COLOURS)

# Sizes (all shapes are symmetric about the Y axis, so only elevation changes their look).
CUBE_HALF = 0.38
SPHERE_R = 0.48
CYL_R, CYL_HALF_H = 0.38, 0.45
CONE_R, CONE_HALF_H = 0.48, 0.48
TORUS_R, TORUS_r = 0.34, 0.15
PYR_HALF, PYR_HALF_H = 0.45, 0.42


@dataclass(frozen=True)
class ShapeSpec:
    """One catalogue entry: a primitive and a colour."""

    shape: str
    colour: str

    @property
    def prompt(self) -> str:
        return f"a {self.colour} {self.shape}"

    @property
    def rgb(self) -> tuple[float, float, float]:
        return COLOURS[self.colour]


def catalogue() -> list[ShapeSpec]:
    """All shape x colour combinations, in a fixed order."""
    return [ShapeSpec(s, c) for s in SHAPES for c in COLOUR_NAMES]


def parse_prompt(prompt: str) -> ShapeSpec | None:
    """Find the catalogue entry named in a prompt ("a red cube, side view"), or None."""
    words = prompt.lower().replace(",", " ").split()
    shape = next((s for s in SHAPES if s in words), None)
    colour = next((c for c in COLOUR_NAMES if c in words), None)
    return ShapeSpec(shape, colour) if shape and colour else None


def catalogue_prompts(n_per_prompt: int = 1) -> tuple[list[ShapeSpec], list[str]]:
    """Every catalogue entry n times, with view suffixes cycling front/side/back/overhead (the teacher's prompts)."""
    specs = [s for s in catalogue() for _ in range(n_per_prompt)]
    return specs, [f"{s.prompt}, {VIEW_SUFFIXES[i % len(VIEW_SUFFIXES)]}" for i, s in enumerate(specs)]


# ---------------------------------------------------------------- SDFs (p: [..., 3] -> [...])

def _len2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(a * a + b * b)


def sdf(shape: str, p: torch.Tensor) -> torch.Tensor:
    """Signed distance (exact for cube/sphere/cylinder/torus; a conservative bound for cone/pyramid)."""
    x, y, z = p.unbind(-1)
    if shape == "sphere":
        return p.norm(dim=-1) - SPHERE_R
    if shape == "cube":
        q = p.abs() - CUBE_HALF
        return q.clamp(min=0).norm(dim=-1) + q.amax(-1).clamp(max=0)
    rad = _len2(x, z)
    if shape == "cylinder":
        dx, dy = rad - CYL_R, y.abs() - CYL_HALF_H
        return torch.maximum(dx, dy).clamp(max=0) + _len2(dx.clamp(min=0), dy.clamp(min=0))
    if shape == "torus":
        return _len2(rad - TORUS_R, y) - TORUS_r
    if shape == "cone":  # intersection of the side half-space (in (r, y)) and the base plane
        n = torch.tensor([2 * CONE_HALF_H, CONE_R], dtype=p.dtype, device=p.device)
        n = n / n.norm()
        side = n[0] * rad + n[1] * (y - CONE_HALF_H)
        return torch.maximum(side, -(y + CONE_HALF_H))
    if shape == "pyramid":  # four slanted faces and the base
        h = 2 * PYR_HALF_H
        nrm = math.hypot(h, PYR_HALF)
        top = y - PYR_HALF_H
        faces = [(h * c + PYR_HALF * top) / nrm for c in (x, -x, z, -z)]
        return torch.stack(faces + [-(y + PYR_HALF_H)], -1).amax(-1)
    raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")


def gt_mesh(shape: str):
    """Ground-truth triangle mesh (trimesh.Trimesh) of a primitive, Y up, centred."""
    import trimesh

    y_up = trimesh.transformations.rotation_matrix(-math.pi / 2, [1, 0, 0])  # +Z -> +Y
    if shape == "sphere":
        return trimesh.creation.icosphere(subdivisions=4, radius=SPHERE_R)
    if shape == "cube":
        return trimesh.creation.box(extents=[2 * CUBE_HALF] * 3)
    if shape == "cylinder":
        m = trimesh.creation.cylinder(radius=CYL_R, height=2 * CYL_HALF_H, sections=96)
    elif shape == "cone":
        m = trimesh.creation.cone(radius=CONE_R, height=2 * CONE_HALF_H, sections=96)
        m.apply_translation([0, 0, -CONE_HALF_H])
    elif shape == "torus":
        m = trimesh.creation.torus(major_radius=TORUS_R, minor_radius=TORUS_r,
                                   major_sections=96, minor_sections=48)
    elif shape == "pyramid":
        pts = np.array([[s * PYR_HALF, t * PYR_HALF, -PYR_HALF_H] for s in (-1, 1) for t in (-1, 1)]
                       + [[0, 0, PYR_HALF_H]])
        m = trimesh.convex.convex_hull(pts)
    else:
        raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    m.apply_transform(y_up)
    return m
