"""The benchmark scripts' command lines: bad input is one `dreamer: error:` line and exit code 2; bench_generate
refuses to overwrite results and, with --resume, reports finished runs without running them again."""
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("argv", [["--repeats", "2", "--n-per-prompt", "3"], ["--objects", "37"],
                                  ["--repeats", "0"], ["--fd-boot", "1"], ["--label", "x"]])
def test_bench_distill_bad_input(argv, capsys):
    with pytest.raises(SystemExit) as e:
        _load("bench_distill").parse_args(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("dreamer: error:") and "\n" not in err


def test_bench_distill_layouts():
    m = _load("bench_distill")
    a = m.parse_args([])
    assert (a.per_object, a.objects, a.seed_z, a.seed_noise) == (28, 36, 0, 0)
    a = m.parse_args(["--n-per-prompt", "4", "--seed", "3"])
    assert (a.per_object, a.seed_z, a.seed_noise) == (4, 3, 3)


def _row(label, steps, seed, k, n=100, **kw):
    return {"method": f"{label}-{steps}", "label": label, "steps": steps, "train_seed": seed, "correct": k, "n": n,
            "accuracy": k / n, "fd": 10.0 + k, "diversity": 1.0, "sec_per_image": 0.1, "train_seconds": 60.0,
            "saw_gt_renders": False, "trainer": "dmd", "sampler": "renoise", "pooled": False, **kw}


def test_bench_distill_pools_rows_of_one_label_from_separate_runs():
    """Rows of one label and step count (training seeds, measured in separate runs) are renamed per seed and
    followed by one pooled row on the pooled counts; a lone generator's rows stay as they are."""
    m = _load("bench_distill")
    rows = m.with_pooled([_row("teacher", 50, None, 90), _row("dmd", 1, 0, 50), _row("kd", 1, 0, 40),
                          _row("dmd", 1, 1, 70), _row("dmd", 2, 0, 60)])
    names = [r["method"] for r in rows]
    assert names == ["teacher-50", "dmd-s0-1", "dmd-s1-1", "dmd-1", "kd-1", "dmd-2"]
    pooled = rows[3]
    assert pooled["pooled"] and (pooled["correct"], pooled["n"]) == (120, 200) and pooled["accuracy"] == 0.6
    assert (pooled["accuracy_min"], pooled["accuracy_max"]) == (0.5, 0.7) and pooled["accuracy_lo"] < 0.6


def test_bench_distill_rows_from_files_must_share_the_settings(tmp_path):
    m = _load("bench_distill")
    settings = {"n_images": 1008, "objects": 36, "images_per_object": 28, "seed_z": 0, "seed_noise": 0, "cfg": 3.0,
                "fd_boot": 200}
    good, bad, junk = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "junk.json"
    good.write_text(json.dumps({**settings, "rows": [_row("dmd", 1, 0, 50), {"pooled": True, "method": "x"}]}))
    bad.write_text(json.dumps({**settings, "seed_noise": 1, "rows": [_row("dmd", 1, 0, 50)]}))
    junk.write_text("not json")
    args = type("A", (), {"settings": settings, "rows": [str(good)]})()
    rows = m.saved_rows(args)
    assert [r["method"] for r in rows] == ["dmd-1"] and rows[0]["from_file"] == str(good)
    for path, why in ((bad, "seed_noise 1 vs 0"), (junk, "not a bench_distill JSON")):
        args.rows = [str(path)]
        with pytest.raises(ValueError, match=why):
            m.saved_rows(args)


@pytest.mark.parametrize("argv", [["--all", "--prompts", "a red cube"], ["--seeds", "2", "--seed-list", "1"],
                                  ["--seeds", "0"], ["--prompts", "a red cube", "train.steps=5"],
                                  ["--prompts", "a red cube", "--", "train.stepz=5"]])
def test_bench_generate_bad_input(argv, capsys):
    m = _load("bench_generate")
    with pytest.raises(SystemExit) as e:
        rc = m.main(argv)
        raise SystemExit(rc)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("dreamer: error:") and "\n" not in err


def test_bench_generate_seeds_and_prompts():
    m = _load("bench_generate")
    a = m.parse_args(["--all", "--seeds", "3"])
    assert len(a.prompts) == 36 and a.seed_values == [0, 1, 2]
    assert m.parse_args([]).prompts == m.DEFAULT_PROMPTS and m.parse_args([]).seed_values == [None]


def test_bench_generate_refuses_results_and_resumes_them(tmp_path, capsys):
    m = _load("bench_generate")
    run = tmp_path / "gaussians-sds" / "a-red-cube" / "seed-0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"prompt": "a red cube", "steps": 5, "chamfer": 0.03,
                                                  "colour_correct": True, "train_seconds": 2.0, "files": {}}))
    argv = ["--out", str(tmp_path), "--seeds", "1", "train.steps=5", "--prompts", "a red cube"]
    assert m.main(argv) == 2
    assert "already holds results" in capsys.readouterr().err
    assert m.main(argv + ["--resume"]) == 0                       # nothing to run: the row comes from metrics.json
    out = json.loads(capsys.readouterr().out)
    (row,) = out["runs"]
    assert (row["seed"], row["run"], row["chamfer"], row["total_seconds"]) == (0, "skipped (done before)", 0.03, None)
    s = out["summary"]["gaussians-sds"]
    assert s["success"] is None and "no 'right'" in s["success_note"]
    assert s["chamfer_le_0.05_and_colour"]["k"] == 1
    (run / "metrics.json").write_text(json.dumps({"prompt": "a red cube", "right": False, "reasons": ["x"]}))
    assert m.main(argv + ["--resume"]) == 0
    s = json.loads(capsys.readouterr().out)["summary"]["gaussians-sds"]
    assert (s["success"]["k"], s["success"]["n"]) == (0, 1) and s["success"]["hi"] == pytest.approx(0.7935, abs=1e-4)


def test_bench_generate_report_only_summarises_finished_runs_and_lists_missing(tmp_path, capsys):
    """--report-only trains nothing: a run without metrics.json is listed as missing, not started."""
    m = _load("bench_generate")
    run = tmp_path / "gaussians-sds" / "a-red-cube" / "seed-0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"prompt": "a red cube", "right": True, "reasons": [],
                                                  "shape_correct": True, "topology_correct": False,
                                                  "fscore_2pct": 0.8}))
    argv = ["--out", str(tmp_path), "--seeds", "2", "--prompts", "a red cube", "a blue torus", "--report-only"]
    assert m.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(r["prompt"], r["seed"]) for r in out["runs"]] == [("a red cube", 0)]
    assert len(out["missing"]) == 3 and {"recipe": "gaussians-sds", "prompt": "a blue torus", "seed": 1} in out["missing"]
    summary = out["summary"]["gaussians-sds"]
    assert summary["success"]["k"] == 1 and summary["fscore_2pct"] == 0.8
    assert summary["shape_correct"]["k"] == 1 and summary["topology_correct"]["k"] == 0
    assert not (tmp_path / "gaussians-sds" / "a-red-cube" / "seed-1").exists()   # nothing was started


def test_bench_generate_judge_glb_scores_the_textured_mesh(tmp_path, capsys):
    """--judge-glb: the strict test on each run's mesh.glb (here the exact GT torus written as a GLB: right; a run
    without a GLB: not right, said why)."""
    import trimesh

    from dreamer.shapes.world import gt_mesh

    m = _load("bench_generate")
    for slug_, has_glb in (("a-green-torus", True), ("a-red-cube", False)):
        run = tmp_path / "gaussians-sds" / slug_ / "seed-0"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"right": False, "reasons": ["x"]}))
        if has_glb:
            mesh = gt_mesh("torus")
            mesh.visual.vertex_colors = [20, 200, 20, 255]
            (run / "mesh.glb").write_bytes(trimesh.exchange.gltf.export_glb(mesh))
    argv = ["--out", str(tmp_path), "--seeds", "1", "--prompts", "a green torus", "a red cube", "--report-only",
            "--judge-glb"]
    assert m.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    torus, cube = out["runs"]
    assert torus["glb_right"] is True and torus["glb_genus"] == 1, torus["glb_reasons"]
    assert cube["glb_right"] is False and cube["glb_reasons"] == ["no mesh.glb"]
    assert out["summary"]["gaussians-sds"]["glb_success"]["k"] == 1


@pytest.mark.parametrize("argv", [["--methods", "sds", "sdss"], ["--batch", "0"], ["--t", "1000"]])
def test_bench_guidance_bad_input(argv, capsys):
    with pytest.raises(SystemExit) as e:
        _load("bench_guidance").parse_args(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("dreamer: error:") and "\n" not in err


def test_bench_guidance_rows_count_each_methods_teacher_forwards(tiny_sd_dir, capsys):
    """Every row's step cost is stated vs SDS with its UNet images per rendered image, counted at t = 500: SDS /
    CSD 2 (cond + uncond), NFSD and CSD's negative term +1, Perp-Neg +2 views, ISM (delta_T 80: s = 420) 3
    unconditional inversion steps 0 -> 200 -> 400 -> 420 + eps(x_s) + 2, SDI 6 inversion steps (clean -> 99 -> ... ->
    499 -> 500) at 2 each + 2."""
    m = _load("bench_guidance")
    res = m.main(["--teacher", str(tiny_sd_dir), "--repeats", "1", "--threads", "1", "--methods", *m.ROWS])
    capsys.readouterr()
    expected = {"sds": 2, "nfsd": 3, "csd": 2, "csd_negative": 3, "ism": 6, "sdi": 14, "sds_perp_neg": 4, "vsd": 2,
                "vsd_separate_pass": 2}
    assert {k: res[f"{k}_teacher_forwards"] for k in m.ROWS} == expected
    for k in m.ROWS:
        assert res[f"{k}_extra_forwards_vs_sds"] == expected[k] - 2 and res[f"{k}_vs_sds"] > 0
    assert res["sds_vs_sds"] == 1.0


@pytest.mark.parametrize("method,images", [("sds", 2), ("nfsd", 3)])
def test_step_cost_parts_fit_inside_the_step_and_count_the_teacher(method, images):
    """The three timed parts are disjoint intervals inside the timed steps, so `rest` >= 0; the teacher's UNet sees
    `images` x batch images per step (SDS: cond + uncond; NFSD above its switch: + the negative prompt)."""
    import sys

    sys.path.insert(0, str(SCRIPTS))
    from dreamer.text_to_3d.recipe import load_generate_config

    m = _load("step_cost")
    config = load_generate_config("gaussians-sds", "a red cube", None,
                                  [f"guidance.method={method}", "guidance.t_min=0.5", "camera.resolution=16",
                                   "camera.batch=2", "gaussians.n_init=200", "train.threads=1"])
    c = m.step_cost(config, steps=3, warmup=1)
    parts = ("teacher_forward_s", "render_forward_s", "backward_s")
    assert all(c[k] > 0 for k in parts) and c["rest_s"] >= 0
    assert c["step_s"] == pytest.approx(sum(c[k] for k in parts) + c["rest_s"], rel=1e-12)
    assert c["teacher_images_per_step"] == images * 2 and c["floor_s"] > 0 and c["ratio_to_floor"] > 0
    assert c["lora_decoder_images_per_step"] == 0


def test_step_cost_sees_vsds_split_unet_passes():
    """VSD runs the teacher as split halves (guidance.unet_split), not through unet.forward: its CFG pass still
    counts 2 x batch full images per step (more on steps whose camera drop takes a separate update), and its LoRA
    decoder passes are counted apart."""
    import sys

    sys.path.insert(0, str(SCRIPTS))
    from dreamer.text_to_3d.recipe import load_generate_config

    m = _load("step_cost")
    config = load_generate_config("gaussians-vsd", "a red cube", None,
                                  ["camera.resolution=16", "camera.batch=2", "gaussians.n_init=200", "train.threads=1"])
    c = m.step_cost(config, steps=3, warmup=1)
    assert c["teacher_images_per_step"] >= 4 and c["lora_decoder_images_per_step"] >= 2 and c["rest_s"] >= 0


def test_scale_gradient_is_the_derivative_along_a_global_scale():
    """scale_derivative (chain rule: sum dL/dmeans * means + sum dL/dlog_scales) equals autograd's dL/ds through
    means * s and log_scales + log s at s = 1 on the same draw, to float32 summation error (terms x eps x sum|term|)."""
    import math
    import sys

    import torch

    sys.path.insert(0, str(SCRIPTS))
    from dreamer.text_to_3d.loop import SceneRun
    from dreamer.text_to_3d.recipe import load_generate_config

    import renderers as R

    m = _load("scale_gradient")
    config = load_generate_config("gaussians-sds", "a red cube", None,
                                  ["camera.resolution=16", "camera.batch=2", "gaussians.n_init=200"])
    run = SceneRun(config)
    c = config.camera
    cams = R.sample_orbit_cameras(2, c.elev_range, c.azim_range, c.dist_range, c.fov_range, 16, 16,
                                  torch.Generator().manual_seed(3))
    got = m.scale_derivative(run, cams, config.guidance, torch.Generator().manual_seed(5), shaded=False)
    p = run.scene.params
    terms = torch.cat([(p.means.grad * p.means.detach()).flatten(), p.log_scales.grad.flatten()])
    m0, ls0 = p.means.detach().clone(), p.log_scales.detach().clone()
    s = torch.ones((), requires_grad=True)
    p.means, p.log_scales = m0 * s, ls0 + torch.log(s)
    g = torch.Generator().manual_seed(5)
    out = run.scene.render(cams, m.FINAL_STEP, g)
    loss = m.score_distillation_step(run.teacher, run.to_teacher(out["rgb"]), run.prompts_for(cams),
                                     config.guidance, g).loss
    (want,) = torch.autograd.grad(loss, s)
    bound = len(terms) * torch.finfo(torch.float32).eps * float(terms.abs().sum())
    assert got != 0 and math.isfinite(got) and abs(got - float(want)) <= bound


def test_probe_silhouettes_iou_is_exact_on_constructed_masks():
    """best_iou: |A & B| / |A | B| maximised over the bank, exactly (small integer counts); an empty pair scores 0."""
    import torch

    m = _load("probe_silhouettes")
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, :2, :2] = True                                   # 4 pixels
    bank = torch.zeros(3, 4, 4, dtype=torch.bool)
    bank[0, :2, :1] = True                                # 2 of them: IoU 2/4
    bank[1, :2, :3] = True                                # 6 covering them: IoU 4/6
    got = m.best_iou(a, bank)
    assert torch.equal(got, torch.tensor([4.0, 0.0]) / torch.tensor([6.0, 1.0]))


def test_probe_silhouettes_names_a_gt_render_by_its_own_primitive():
    """A GT render whose view is in the bank is its own primitive at IoU 1.  For blue (red channel 0.10 x shade <=
    0.10) at 2x supersampling the cut 1 - min channel > 0.25 is exactly coverage >= 1/2: a pixel's departure lies in
    [0.9 a, a) for coverage a in {0, 1/4, ..., 1}.  A blank image has no silhouette."""
    import torch

    from dreamer.shapes.render import render_shapes
    from dreamer.shapes.world import SHAPES, ShapeSpec

    m = _load("probe_silhouettes")
    bank = m.gt_bank("blue", 16, 3, seed=4)
    v = m.random_views(3, torch.Generator().manual_seed(4))
    specs = [ShapeSpec(s, "blue") for s in SHAPES]
    rgb, alpha = render_shapes(specs, v["elev"][1], v["azim"][1], v["dist"][1], v["fov"][1], 16)
    masks = m.silhouettes(rgb)
    assert torch.equal(masks, alpha[:, 0] >= 0.5) and masks.any(dim=(1, 2)).all()
    names, ious = m.nearest(masks, bank)
    assert names == list(SHAPES) and all(float(ious[s][i]) == 1.0 for i, s in enumerate(SHAPES))
    assert not m.silhouettes(torch.ones(1, 3, 16, 16)).any()


@pytest.mark.parametrize("argv", [["--prompts", "a red teapot"], ["--n", "0"], ["--threshold", "1.5"]])
def test_probe_silhouettes_bad_input(argv, capsys):
    with pytest.raises(SystemExit) as e:
        _load("probe_silhouettes").parse_args(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("dreamer: error:") and "\n" not in err
