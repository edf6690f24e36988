"""Shapes world: GT meshes agree with the SDFs, renders are deterministic, prompts and views parse."""
import math

import numpy as np
import pytest
import torch

from dreamer.common.view_prompts import view_prompt, view_suffix
from dreamer.shapes.render import random_views, render_shapes
from renderers.shading import camera_key_light
from dreamer.shapes.world import COLOUR_NAMES, SHAPES, SPHERE_R, ShapeSpec, catalogue, gt_mesh, parse_prompt, sdf
from renderers.cameras import orbit_cameras

EXACT = ("cube", "sphere", "cylinder", "torus")


@pytest.mark.parametrize("shape", SHAPES)
def test_gt_mesh_on_sdf_zero_level(shape):
    m = gt_mesh(shape)
    assert m.is_watertight and m.is_volume
    v = torch.from_numpy(np.array(m.vertices, dtype=np.float64))
    assert sdf(shape, v).abs().max().item() < 1e-3  # vertices lie on the surface (also for the bounds)
    # Points just outside / inside along the face normals have the right sign (facet sag is < 5e-4).
    c = torch.from_numpy(np.array(m.triangles_center, dtype=np.float64))
    n = torch.from_numpy(np.array(m.face_normals, dtype=np.float64))
    eps = 5e-3
    assert (sdf(shape, c + eps * n) > 0).all()
    assert (sdf(shape, c - eps * n) < 0).all()
    if shape in EXACT:  # exact SDFs: the offset points are at distance ~eps
        out = sdf(shape, c + eps * n)
        assert (out - eps).abs().max().item() < 1e-3


def test_mesh_fits_unit_box():
    for shape in SHAPES:
        assert abs(gt_mesh(shape).bounds).max() <= 0.5 + 1e-9


def _views(seed, n):
    return random_views(n, torch.Generator().manual_seed(seed))


def _render(specs, seed):
    v = _views(seed, len(specs))
    return render_shapes(specs, v["elev"], v["azim"], v["dist"], v["fov"])


def test_render_deterministic_for_seed():
    specs = catalogue()[:12]
    a = _render(specs, 3)
    b = _render(specs, 3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (12, 3, 32, 32) and a[0].min() >= 0 and a[0].max() <= 1
    c = _render(specs, 4)
    assert not torch.equal(a[0], c[0])


def test_random_views_ranges():
    v = _views(0, 500)
    assert v["elev"].min() >= -10 and v["elev"].max() <= 80
    assert v["azim"].abs().max() <= 180 and v["dist"].min() >= 1.9 and v["fov"].max() <= 45


def test_prompts_and_parse():
    cat = catalogue()
    assert len(cat) == len(set(cat)) == len(SHAPES) * len(COLOUR_NAMES) == 36
    assert ShapeSpec("cube", "red").prompt == "a red cube"
    for s in cat:
        assert parse_prompt(s.prompt) == s
        assert parse_prompt(view_prompt(s.prompt, 10.0, 170.0)) == s
    assert parse_prompt("A Blue Torus, overhead view") == ShapeSpec("torus", "blue")
    assert parse_prompt("a cat") is None and parse_prompt("a red thing") is None


@pytest.mark.parametrize("elev,azim,expected", [
    (0, 0, "front view"), (0, 44.9, "front view"), (0, 45, "side view"), (0, -90, "side view"),
    (0, 135, "side view"), (0, 135.1, "back view"), (0, 180, "back view"), (0, -170, "back view"),
    (0, 360, "front view"), (60, 0, "front view"), (61, 180, "overhead view"), (85, 90, "overhead view"),
])
def test_view_suffix(elev, azim, expected):
    assert view_suffix(elev, azim) == expected
    assert view_prompt("a red cube", elev, azim) == f"a red cube, {expected}"


@pytest.mark.parametrize("elev,azim,dist,fov,res", [(0, 0, 2.0, 40, 32), (30, 77, 2.2, 45, 32),
                                                  (75, -140, 1.9, 42, 32), (-10, 10, 2.1, 43, 64)])
def test_sphere_silhouette_area(elev, azim, dist, fov, res):
    """A sphere seen from distance d subtends half-angle asin(r/d): image radius tan(.)/tan(fov/2) * res/2."""
    _, mask = render_shapes([ShapeSpec("sphere", "red")], elev, azim, dist, fov, res=res)
    r_px = math.tan(math.asin(SPHERE_R / dist)) / math.tan(math.radians(fov) / 2) * res / 2
    area = mask.sum().item()  # fractional coverage from supersampling
    assert area == pytest.approx(math.pi * r_px ** 2, rel=0.03)


def test_key_light_in_the_camera_frame():
    # The GT light is -forward + 0.6 up - 0.4 right of each camera (upper left, towards the scene), unit length;
    # an offset (up, right) moves those two components, and a zero offset is the plain light bit for bit.
    cams = orbit_cameras(torch.tensor([10.0, 60.0, -20.0]), torch.tensor([0.0, 135.0, 250.0]),
                         torch.tensor([2.5, 3.0, 2.0]), torch.tensor([40.0, 40.0, 50.0]), 8, 8)
    R = cams.c2w[:, :3, :3]                                       # columns: right, up, back (= -forward)
    local = torch.einsum("bji,bj->bi", R, camera_key_light(cams.c2w))    # the light in (right, up, back) coordinates
    assert torch.allclose(local, torch.tensor([-0.4, 0.6, 1.0]).expand(3, 3) / math.sqrt(1.52), atol=1e-6)
    assert torch.equal(camera_key_light(cams.c2w, torch.zeros(3, 2)), camera_key_light(cams.c2w))
    moved = torch.einsum("bji,bj->bi", R, camera_key_light(cams.c2w, torch.tensor([[0.4, 0.4]] * 3)))
    assert torch.allclose(moved, torch.tensor([0.0, 1.0, 1.0]).expand(3, 3) / math.sqrt(2.0), atol=1e-6)
