"""The text-to-3D loop on the tiny offline SD pipeline: recipes validate and run, resume is exact, CLI errors."""
import pytest
import torch

from dreamer.cli import main
from dreamer.text_to_3d.recipe import load_generate_config
from dreamer.text_to_3d.loop import generate
from guidance import DiffusersTeacher

SD_RECIPES = ["sd21-nerf-sds", "sd21-nerf-vsd", "sd21-gaussians-sds"]
CPU = ["device=cpu", "teacher_dtype=float32", "train.preview_every=0", "train.checkpoint_every=0"]


@pytest.mark.parametrize("recipe", SD_RECIPES)
def test_sd_recipes_validate_and_run_on_the_tiny_pipeline(recipe, tiny_sd_dir, tmp_path):
    tiny = CPU + ["train.steps=2", "camera.resolution=16", "camera.batch=1", "nerf.n_samples=8",
                  "nerf.levels=4", "nerf.log2_table_size=10", "gaussians.n_init=200", "export.evaluate=false"]
    config = load_generate_config(recipe, "a red cube", str(tiny_sd_dir), tiny)
    full = load_generate_config(recipe, "a red cube", None, [])
    assert full.teacher == "stabilityai/stable-diffusion-2-1-base" and full.train.steps >= 1200
    run = generate(config, tmp_path / recipe, progress=False)
    assert run.step_i == 2 and all(torch.isfinite(torch.tensor(v)).all() for v in run.history["loss"])


def _params(run):
    if run.scene.kind == "gaussians":
        return [p.detach() for p in run.scene.params.parameters()]
    return [p.detach() for p in run.scene.field.parameters()]


@pytest.fixture
def one_thread():
    """CPU float accumulation (e.g. the hash grid's scatter-add backward) is order-dependent across threads."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("recipe", ["gaussians-sds", "gaussians-vsd", "nerf-sds"])
def test_resume_gives_the_same_final_parameters(recipe, tiny_sd_dir, tmp_path, one_thread):
    over = CPU + ["train.steps=6", "train.checkpoint_every=3", "camera.resolution=16", "gaussians.n_init=300",
                  "gaussians.densify_from=2", "gaussians.densify_every=2", "gaussians.grow_grad2d=0.0",
                  "nerf.n_samples=8", "nerf.levels=4", "nerf.log2_table_size=10", "nerf.occupancy_every=2"]
    config = load_generate_config(recipe, "a red cube", str(tiny_sd_dir), over)
    full = generate(config, tmp_path / "full", progress=False, teacher=DiffusersTeacher.from_pretrained(tiny_sd_dir))
    generate(config, tmp_path / "split", progress=False, stop_after=3,
             teacher=DiffusersTeacher.from_pretrained(tiny_sd_dir))
    resumed = generate(config, tmp_path / "split", resume=True, progress=False,
                       teacher=DiffusersTeacher.from_pretrained(tiny_sd_dir))
    a, b = _params(full), _params(resumed)
    assert len(a) == len(b) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b))
    assert full.history == resumed.history


def test_a_folder_that_wrote_the_worlds_ambient_out_resumes(tiny_sd_dir, tmp_path, one_thread):
    """A run folder from before `shading.ambient: null` (the world's) wrote 0.35 out: it resumes under today's
    config; one with another ambient is refused in one line."""
    import yaml

    from dreamer.common.errors import CheckpointError
    from dreamer.common.world import DEFAULT_SHADING

    config = load_generate_config("gaussians-sds", "a red cube", str(tiny_sd_dir),
                                  CPU + ["train.steps=2", "camera.resolution=16", "gaussians.n_init=200"])
    assert config.shading.ambient is None
    out = tmp_path / "old"
    generate(config, out, progress=False, stop_after=1, teacher=DiffusersTeacher.from_pretrained(tiny_sd_dir))
    for ambient, ok in ((DEFAULT_SHADING.ambient, True), (0.5, False)):
        saved = yaml.safe_load((out / "config.yaml").read_text())
        saved["shading"]["ambient"] = ambient
        (out / "config.yaml").write_text(yaml.safe_dump(saved))
        if ok:
            run = generate(config, out, resume=True, progress=False, stop_after=2,
                           teacher=DiffusersTeacher.from_pretrained(tiny_sd_dir))
            assert run.step_i == 2
        else:
            with pytest.raises(CheckpointError, match="'shading.ambient' \\(saved 0.5, now 0.35\\)"):
                generate(config, out, resume=True, progress=False,
                         teacher=DiffusersTeacher.from_pretrained(tiny_sd_dir))


def test_cli_bad_input_is_one_line_and_nonzero(tmp_path, capsys):
    assert main(["generate", "a red cube", "--out", str(tmp_path / "r"), "guidance.cfg_scal=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "dreamer: error: unknown key 'guidance.cfg_scal' (did you mean 'guidance.cfg_scale'?)"
    assert main(["generate", "a red cube", "--config", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["generate", "a cube", "--teacher", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["export", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_cli_distill_then_sample(tiny_sd_dir, tmp_path):
    out = tmp_path / "d"
    assert main(["distill", "--teacher", str(tiny_sd_dir), "--out", str(out), "steps=2", "batch=2",
                 "regression_weight=0", "prompts=[a red cube, a blue cone]", "resolution=16", "save_every=0"]) == 0
    assert (out / "generator" / "unet" / "config.json").is_file()
    assert main(["sample", "a red cube", "--generator", str(out / "generator"), "--steps", "2", "-n", "2",
                 "--out", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").stat().st_size > 0


def test_cfg_mult_ramp_scales_the_guidance_scale_per_step(tiny_sd_dir, tmp_path, monkeypatch):
    import dreamer.text_to_3d.loop as G

    seen = []
    real = G.score_distillation_step

    def spy(teacher, x0, prompts, config, *a, **kw):
        seen.append(config.cfg_scale)
        return real(teacher, x0, prompts, config, *a, **kw)

    monkeypatch.setattr(G, "score_distillation_step", spy)
    over = CPU + ["train.steps=5", "camera.resolution=16", "camera.batch=1", "gaussians.n_init=100",
                  "export.evaluate=false", "guidance.cfg_scale=10",
                  "train.cfg_mult={kind: linear, start: 1.0, end: 0.2, begin: 1, until: 3}"]
    generate(load_generate_config("gaussians-sds", "a red cube", str(tiny_sd_dir), over), tmp_path / "r", progress=False)
    assert seen == pytest.approx([10.0, 10.0, 6.0, 2.0, 2.0])



def test_metrics_json_carries_the_strict_verdict(tmp_path, capsys):
    """Every shapes-world run is judged on its exported mesh: `right`, its reasons, the strict fields, the
    evaluator on mesh renders and (separately) on scene renders; the closing lines say the verdict."""
    import json

    out = tmp_path / "r"
    rc = main(["generate", "a red cube", "--out", str(out), "--quiet", "train.steps=2", "train.preview_every=0",
               "camera.resolution=16", "camera.batch=1", "gaussians.n_init=100", "train.threads=1",
               "export.mesh_resolution=32", "export.turntable_frames=2", "export.turntable_resolution=16"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert isinstance(m["right"], bool) and (m["right"] or m["reasons"])
    for k in ("shape_correct", "fscore_2pct", "iou", "scale_error", "genus", "floater_share",
              "prompt_accuracy_8_views", "psnr_8_views", "scene_prompt_accuracy_8_views", "scene_psnr_8_views"):
        assert k in m, k
    assert "right (strict ground-truth test): " in capsys.readouterr().out
