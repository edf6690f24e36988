"""Strict 3D test: GT, 1% jitter and turned cubes / pyramids pass; wrong primitives, x1.25, filled torus, floaters, wrong colour fail."""
import itertools
import json

import numpy as np
import pytest
import torch
import trimesh

from dreamer.shapes import strict
from dreamer.shapes.metrics import chamfer_distance, winding_number
from dreamer.shapes.strict_calibration import (filled_torus, jittered, marching_cubes_sdf, painted, scaled,
                                             with_floater)
from dreamer.shapes.world import COLOUR_NAMES, COLOURS, SHAPES, ShapeSpec, gt_mesh, sdf

torch.set_num_threads(1)
N = 4000  # surface samples per side (the GT dense reference is REF_N regardless)


def _spec(shape: str) -> ShapeSpec:
    return ShapeSpec(shape, COLOUR_NAMES[SHAPES.index(shape)])


def _gt(shape: str):
    return painted(gt_mesh(shape), _spec(shape).rgb)


def _kinds(rep: dict) -> set:
    return {r.split(":")[0] for r in rep["reasons"]}


@pytest.mark.parametrize("shape", SHAPES)
def test_gt_mesh_is_right(shape):
    rep = strict.strict_report(_gt(shape), _spec(shape), n=N)
    assert rep["right"] and rep["reasons"] == [], rep["reasons"]
    assert rep["nearest_shape"] == shape and rep["shape_margin"] > 0
    assert rep["fscore_1pct"] > 0.99 and rep["iou"] > 0.99 and rep["scale_error"] < 0.02
    assert rep["genus"] == (1 if shape == "torus" else 0) and rep["watertight"] and rep["components"] == 1
    assert rep["colour_correct"] and rep["colour_error"] < 0.01
    json.dumps(rep, allow_nan=False)  # plain JSON types only


def test_chamfer_matches_metrics():
    """The cached per-shape Chamfer is the same number metrics.chamfer_distance computes."""
    mesh = jittered(gt_mesh("cone"), 0.01, seed=3)
    rep = strict.strict_report(mesh, _spec("cone"), n=N)
    assert rep["chamfer_all"]["cone"] == pytest.approx(chamfer_distance(mesh, gt_mesh("cone"), n=N), rel=1e-9)
    # a four-fold candidate is scored at its own best yaw: the same number for the mesh turned by that yaw
    # (float64 rotation of the vertices: relative error ~1e-14)
    yaw = strict.best_yaw(strict.sample_surface(mesh, N, 0)[0], "pyramid", N, 0)
    turned = strict.turned_mesh(mesh, yaw)
    assert rep["chamfer_all"]["pyramid"] == pytest.approx(chamfer_distance(turned, gt_mesh("pyramid"), n=N), rel=1e-9)


@pytest.mark.parametrize("shape", strict.FOUR_FOLD)
@pytest.mark.parametrize("deg", [10.0, 30.0, 45.0, -20.0])
def test_four_fold_gt_turned_about_the_vertical_is_right(shape, deg):
    """The world shows every object at uniform azimuth: a turned cube / pyramid is as right as the GT one, and the
    yaw found undoes the turn (mod 90 degrees) to within the search's 0.25-degree step."""
    rep = strict.strict_report(strict.turned_mesh(_gt(shape), deg), _spec(shape), n=N)
    assert rep["right"], rep["reasons"]
    off = (rep["yaw_deg"] + deg + 45.0) % 90.0 - 45.0
    assert abs(off) <= 0.25 and -45.0 <= rep["yaw_deg"] < 45.0


def test_round_primitives_are_never_turned():
    mesh = strict.turned_mesh(_gt("cylinder"), 30.0)
    assert strict.best_yaw(strict.sample_surface(mesh, N, 0)[0], "cylinder", N, 0) == 0.0
    assert strict.strict_report(mesh, _spec("cylinder"), n=N)["yaw_deg"] == 0.0


@pytest.mark.parametrize("a,b", list(itertools.permutations(SHAPES, 2)))
def test_perfect_wrong_primitive_fails(a, b):
    rep = strict.strict_report(_gt(a), ShapeSpec(b, _spec(a).colour), n=N)
    assert not rep["right"] and "shape" in _kinds(rep), rep["reasons"]
    assert rep["nearest_shape"] == a and rep["shape_margin"] < 0


@pytest.mark.parametrize("shape", SHAPES)
def test_one_percent_jitter_is_right(shape):
    rep = strict.strict_report(painted(jittered(gt_mesh(shape), 0.01, seed=7), _spec(shape).rgb),
                               _spec(shape), n=N)
    assert rep["right"], rep["reasons"]


@pytest.mark.parametrize("shape", ["torus", "cone"])
def test_marching_cubes_export_of_gt_is_right(shape):
    """A mesh as export.extract_mesh would make it from the exact SDF (96^3 over [-1,1]^3) passes."""
    mesh = marching_cubes_sdf(lambda p: sdf(shape, p))
    rep = strict.strict_report(painted(mesh, _spec(shape).rgb), _spec(shape), n=N)
    assert rep["right"] and rep["watertight"], rep["reasons"]


@pytest.mark.parametrize("shape", SHAPES)
def test_scaled_by_1_25_fails_on_scale(shape):
    rep = strict.strict_report(scaled(_gt(shape), 1.25), _spec(shape), n=N)
    assert not rep["right"] and "scale" in _kinds(rep), rep["reasons"]
    assert rep["spread_ratio"] == pytest.approx([1.25] * 3, rel=0.02)


def test_filled_torus_fails_on_topology():
    mesh = filled_torus()
    assert mesh.is_watertight and winding_number(np.zeros((1, 3)), mesh.vertices, mesh.faces)[0] > 0.99  # filled
    rep = strict.strict_report(painted(mesh, _spec("torus").rgb), _spec("torus"), n=N)
    assert rep["genus"] == 0 and rep["gt_genus"] == 1
    assert not rep["right"] and "topology" in _kinds(rep), rep["reasons"]


@pytest.mark.parametrize("shape", ["cube", "torus"])
def test_floater_of_five_percent_volume_fails(shape):
    mesh = with_floater(_gt(shape), 0.05)
    rep = strict.strict_report(mesh, _spec(shape), n=N)
    assert rep["components"] == 2 and rep["floaters"] == 1 and rep["floater_measure"] == "volume"
    assert rep["floater_share"] == pytest.approx(0.05 / 1.05, rel=0.03)  # icosphere facets: volume ~1% low
    assert not rep["right"] and "floaters" in _kinds(rep), rep["reasons"]


def test_wrong_colour_fails_and_uncoloured_is_not_judged():
    spec = ShapeSpec("sphere", "red")
    rep = strict.strict_report(painted(gt_mesh("sphere"), COLOURS["blue"]), spec, n=N)
    assert not rep["right"] and _kinds(rep) == {"colour"} and rep["nearest_colour"] == "blue"
    bare = strict.strict_report(gt_mesh("sphere"), spec, n=N)
    assert bare["right"] and bare["coloured"] is False and bare["colour_correct"] is None
    assert any("colour not judged" in x for x in bare["notes"])


def test_topology_of_open_meshes():
    """Genus from chi and boundary loops: a cube missing one side (2 triangles) is a disc; a torus stays 1."""
    cube = gt_mesh("cube")
    top = np.argsort(cube.triangles_center[:, 1])[-2:]                   # the two +Y triangles
    open_cube = trimesh.Trimesh(cube.vertices, np.delete(cube.faces, top, 0), process=False)
    t = strict.topology(open_cube)
    assert not t["watertight"] and t["boundary_loops"] == 1 and t["euler"] == 1 and t["genus"] == 0
    assert t["floater_measure"] == "area"
    torus = gt_mesh("torus")
    # a GLB-like copy with every face's vertices unshared still reads as one closed genus-1 component
    soup = trimesh.Trimesh(torus.vertices[torus.faces].reshape(-1, 3), np.arange(3 * len(torus.faces)).reshape(-1, 3),
                           process=False)
    t = strict.topology(soup)
    assert t["components"] == 1 and t["watertight"] and t["genus"] == 1


def test_summary_and_empty_mesh():
    rep = strict.strict_report(scaled(_gt("cube"), 1.25), _spec("cube"), n=N)
    text = strict.strict_summary(rep)
    assert text.splitlines()[0].endswith("WRONG") and "scale:" in text and "F@2%" in text
    empty = strict.strict_report(trimesh.Trimesh(), _spec("cube"), n=N)
    assert empty["right"] is False and empty["reasons"] == ["empty mesh"]
    assert "WRONG" in strict.strict_summary(empty)


@pytest.mark.parametrize("ext", ["ply", "glb", "obj"])
def test_evaluate_mesh_file(tmp_path, ext):
    path = tmp_path / f"mesh.{ext}"
    _gt("cylinder").export(path)
    rep = strict.evaluate_mesh_file(path, f"a {_spec('cylinder').colour} cylinder, side view", n=N)
    assert rep["right"] and rep["shape"] == "cylinder", rep["reasons"]
    assert rep["coloured"] and rep["colour_correct"] is True
    wrong = strict.evaluate_mesh_file(path, "a red cylinder", n=N)
    assert [r.split(":")[0] for r in wrong["reasons"]] == ["colour"]


def test_evaluate_mesh_file_errors(tmp_path):
    with pytest.raises(ValueError, match="not a shapes-world prompt"):
        strict.evaluate_mesh_file(tmp_path / "x.ply", "a photo of a cat")
    with pytest.raises(ValueError, match="not found"):
        strict.evaluate_mesh_file(tmp_path / "missing.glb", "a red cube")
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"not a mesh at all")
    with pytest.raises(ValueError, match="bad.glb"):
        strict.evaluate_mesh_file(bad, "a red cube")
