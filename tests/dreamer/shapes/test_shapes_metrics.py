"""3D / image metrics: exact identities, concentric-sphere closed forms, winding-number inside test."""
import math

import numpy as np
import pytest
import torch
import trimesh

from dreamer.shapes.metrics import (bbox_diagonal, chamfer_distance, colour_error, inside_grid, mesh_report,
                                    volumetric_iou, volumetric_iou_sdf, winding_number)
from dreamer.shapes.world import COLOURS, SPHERE_R, ShapeSpec, gt_mesh

torch.set_num_threads(1)
S = 1.2  # scale of the outer concentric sphere


def _sphere(r):
    return trimesh.creation.icosphere(subdivisions=4, radius=r)


def test_self_is_exact():
    """Same mesh + same seed -> identical samples -> Chamfer exactly 0; same grid -> IoU exactly 1."""
    for shape in ("cube", "cone"):
        m = gt_mesh(shape)
        assert chamfer_distance(m, m, n=5000) == 0.0
        assert volumetric_iou(m, m, res=24) == 1.0


def test_chamfer_concentric_spheres():
    """Every point of one sphere is |s-1| r from the other: symmetric mean-NN distance = |s-1| r.

    Tolerance 2%: finite sampling adds ~E[rho^2]/(2d) ~ 1% (rho = gap to the nearest sample on the other
    sphere, n = 20000), and the icosphere facets sag by < 3e-4.
    """
    a, b = _sphere(S * SPHERE_R), _sphere(SPHERE_R)
    expected = (S - 1) * SPHERE_R / bbox_diagonal(b)
    assert chamfer_distance(a, b) == pytest.approx(expected, rel=0.02)
    assert chamfer_distance(b, a) == pytest.approx(expected * bbox_diagonal(b) / bbox_diagonal(a), rel=0.02)


def test_iou_concentric_spheres():
    """IoU of nested spheres = (r/rs)^3 = 1/s^3; at res 32 voxel partial-volume errors are < 2% of the volume."""
    iou = volumetric_iou(_sphere(S * SPHERE_R), _sphere(SPHERE_R), res=32)
    assert iou == pytest.approx(1 / S ** 3, rel=0.02)
    assert volumetric_iou_sdf(_sphere(S * SPHERE_R), "sphere", res=32) == pytest.approx(1 / S ** 3, rel=0.02)
    assert volumetric_iou_sdf(gt_mesh("cube"), "cube", res=32) > 0.99


def test_winding_number_cube():
    cube = gt_mesh("cube")  # half size 0.38
    rng = np.random.default_rng(0)
    inside = rng.uniform(-0.37, 0.37, (200, 3))
    outside = rng.uniform(-1, 1, (2000, 3))
    outside = outside[np.abs(outside).max(1) > 0.39]
    w_in = winding_number(inside, cube.vertices, cube.faces)
    w_out = winding_number(outside, cube.vertices, cube.faces)
    assert torch.allclose(w_in, torch.ones_like(w_in), atol=1e-4)
    assert w_out.abs().max().item() < 1e-4
    w_flip = winding_number(inside, cube.vertices, cube.faces[:, ::-1])  # reversed orientation -> -1
    assert torch.allclose(w_flip, -torch.ones_like(w_flip), atol=1e-4)
    w_half = winding_number(inside, cube.vertices, cube.faces[:6])  # open mesh: fractional, not +-1
    assert ((w_half > 0.01) & (w_half < 0.99)).all()


def _marching_cubes_blob():
    """A watertight marching-cubes mesh of a lumpy blob (the kind of mesh export produces)."""
    from skimage.measure import marching_cubes

    ax = np.linspace(-1, 1, 40)
    x, y, z = np.meshgrid(ax, ax, ax, indexing="ij")
    f = np.sqrt(x ** 2 + (1.4 * y) ** 2 + z ** 2) - 0.5 - 0.12 * np.sin(5 * x) * np.cos(4 * z)
    v, faces, _, _ = marching_cubes(f, 0.0, spacing=(ax[1] - ax[0],) * 3)
    return trimesh.Trimesh(v - 1.0, faces)  # SDF negative inside: skimage winds these faces outward


def test_accelerated_occupancy_matches_brute_force():
    """Ray parity and the band + connected-component shortcut both equal the winding number at every voxel
    on watertight meshes (box faces parallel to the rays, a pyramid, a torus, a marching-cubes blob)."""
    torus = trimesh.creation.torus(major_radius=0.34, minor_radius=0.15, major_sections=24, minor_sections=12)
    lo, hi = np.full(3, -0.55), np.full(3, 0.55)
    for mesh in (torus, gt_mesh("cube"), gt_mesh("pyramid"), _marching_cubes_blob()):
        assert mesh.is_watertight
        exact = inside_grid(mesh, lo, hi, 24, method="exact")
        assert 0 < exact.sum() < exact.size
        for method in ("parity", "band", "auto"):
            assert np.array_equal(inside_grid(mesh, lo, hi, 24, method=method), exact), method


def _coloured(shape, rgb):
    m = gt_mesh(shape)
    rgba = np.append(np.round(np.asarray(rgb) * 255), 255).astype(np.uint8)
    m.visual.vertex_colors = np.tile(rgba, (len(m.vertices), 1))
    return m


def test_colour_error():
    spec = ShapeSpec("sphere", "red")
    q = math.sqrt(3) * 0.5 / 255  # uint8 quantisation of the vertex colours
    assert colour_error(_coloured("sphere", spec.rgb), spec, n=2000) <= q
    err = colour_error(_coloured("sphere", COLOURS["blue"]), spec, n=2000)
    assert err == pytest.approx(np.linalg.norm(np.subtract(COLOURS["blue"], spec.rgb)), abs=q)
    with pytest.raises(ValueError):
        colour_error(gt_mesh("sphere"), spec)


def test_mesh_report_gt():
    spec = ShapeSpec("cube", "green")
    r = mesh_report(_coloured("cube", spec.rgb), spec, res=24, n=2000)
    assert r["chamfer"] == 0.0 and r["iou"] > 0.99 and r["colour_error"] < 0.01
    assert mesh_report(gt_mesh("cube"), spec, res=16, n=500)["colour_error"] is None


def test_nearest_colour_and_report_flag():
    import numpy as np
    import trimesh

    from dreamer.shapes.metrics import mesh_report, nearest_colour
    from dreamer.shapes.world import COLOURS, ShapeSpec, gt_mesh

    m = gt_mesh("cube")

    def painted(rgb):
        vc = np.concatenate([np.tile((np.asarray(rgb) * 255).round(), (len(m.vertices), 1)),
                             np.full((len(m.vertices), 1), 255)], 1)
        return trimesh.Trimesh(m.vertices, m.faces, vertex_colors=vc.astype(np.uint8), process=False)

    for name, rgb in COLOURS.items():
        for shade in (0.4, 0.6, 0.8, 1.0):  # any GT shading level still reads as its own colour
            assert nearest_colour(painted(shade * np.asarray(rgb))) == name, (name, shade)
    assert nearest_colour(painted((0.9, 0.0, 0.0))) == "red"      # orange whose green died reads as red
    assert nearest_colour(painted((0.1, 0.9, 0.05))) == "green"   # yellow whose red died reads as green
    assert nearest_colour(painted((0.15, 0.15, 0.15))) != "yellow"
    mc = painted(0.8 * np.asarray(COLOURS["orange"]))
    rep = mesh_report(mc, ShapeSpec("cube", "orange"), res=16, n=2000)
    assert rep["colour_correct"] is True and rep["chamfer"] < 1e-3 and rep["iou"] > 0.9


def test_catalogue_prompts_cycle_view_suffixes():
    from dreamer.shapes.world import catalogue_prompts, parse_prompt

    specs, prompts = catalogue_prompts(4)
    views = ("front view", "side view", "back view", "overhead view")
    assert len(specs) == 144 and prompts[:4] == [f"{specs[0].prompt}, {v}" for v in views]
    assert all(parse_prompt(p) == s for s, p in zip(specs, prompts))
