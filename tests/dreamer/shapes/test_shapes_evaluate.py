"""One evaluation for runs, `dreamer evaluate` and benchmarks: strict report + evaluator on renders of the mesh."""
import json

import pytest
import torch

from dreamer.cli import main
from dreamer.shapes.evaluate import evaluate_mesh, evaluate_path, gt_views, mesh_views
from dreamer.shapes.strict_calibration import painted
from dreamer.shapes.world import ShapeSpec, gt_mesh

N = 4000


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def blue_torus(tmp_path_factory):
    """The GT torus painted blue, as a PLY file (what `dreamer generate` exports)."""
    path = tmp_path_factory.mktemp("mesh") / "torus.ply"
    painted(gt_mesh("torus"), ShapeSpec("torus", "blue").rgb).export(path)
    return path


def test_mesh_renders_of_ground_truth_match_the_ground_truth_renders():
    spec = ShapeSpec("cone", "orange")
    rgb = mesh_views(painted(gt_mesh("cone"), spec.rgb))
    assert rgb.shape == (8, 3, 32, 32)
    mse = (rgb - gt_views(spec)).square().mean().item()
    assert mse < 3e-3, mse                       # the exact rasterizer vs the sphere tracer; a blank image: ~0.1


def test_ground_truth_is_right_and_a_wrong_primitive_is_not():
    spec = ShapeSpec("cylinder", "green")
    rep = evaluate_mesh(painted(gt_mesh("cylinder"), spec.rgb), spec, n=N)
    assert rep["right"] and rep["reasons"] == [] and rep["prompt_accuracy_8_views"] >= 7 / 8
    wrong = evaluate_mesh(painted(gt_mesh("cylinder"), spec.rgb), ShapeSpec("cube", "green"), n=N)
    assert not wrong["right"] and any(r.startswith("shape:") for r in wrong["reasons"])
    assert wrong["prompt_accuracy_8_views"] <= 1 / 8  # the evaluator sees a cylinder, not a cube


def test_evaluate_command_text_and_json(blue_torus, capsys):
    assert main(["evaluate", str(blue_torus), "--prompt", "a blue torus"]) == 0
    out = capsys.readouterr().out
    assert "as 'a blue torus': RIGHT" in out and "genus 1 (GT 1)" in out
    assert main(["evaluate", str(blue_torus), "--prompt", "a blue sphere", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["right"] is False and rep["nearest_shape"] == "torus"
    assert "topology: genus 1, expected 0" in rep["reasons"]


def test_a_run_folder_is_scored_by_its_mesh_and_prompt(blue_torus, tmp_path):
    (tmp_path / "mesh.ply").write_bytes(blue_torus.read_bytes())
    (tmp_path / "config.yaml").write_text("prompt: a blue torus\nrenderer: gaussians\n")
    rep = evaluate_path(tmp_path, n=N)
    assert rep["prompt"] == "a blue torus" and rep["right"] and rep["file"].endswith("mesh.ply")


@pytest.mark.parametrize("args, msg", [
    (["/nonexistent/mesh.ply", "--prompt", "a red cube"], "no such mesh file or run folder"),
    (["{torus}"], "give --prompt"),
    (["{torus}", "--prompt", "a wooden chair"], "is not a shapes-world prompt"),
    (["{empty}", "--prompt", "a red cube"], "holds no exported mesh"),
])
def test_evaluate_bad_input_is_one_line_exit_2(args, msg, blue_torus, tmp_path, capsys):
    args = [a.format(torus=blue_torus, empty=tmp_path) for a in args]
    assert main(["evaluate", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dreamer: error:") and msg in err[0], err
