"""The new user's path through the real CLI: recipes shipped in the package, the teacher's vocabulary (shown,
checked, normalised), progress on stderr for slow phases (--quiet silences it), `dreamer recipes` / --version /
help texts, the shipped generator and its captioned square grid, train_seconds over sittings, and error messages
that name the real problem."""
import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dreamer.cli import main

REPO = Path(__file__).resolve().parents[2]
TINY = ["train.steps=2", "train.preview_every=0", "train.checkpoint_every=0", "camera.resolution=16",
        "camera.batch=1", "gaussians.n_init=100", "train.threads=1"]
TINY_EXPORT = ["export.mesh_resolution=32", "export.turntable_frames=2", "export.turntable_resolution=16"]


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# ----------------------------------------------------------------------------------------------- recipes ship inside
def test_recipes_are_package_data():
    from dreamer.common.config import CONFIG_DIR, available_configs

    pkg = REPO / "dreamer"
    assert CONFIG_DIR.resolve() == (pkg / "configs").resolve() and len(available_configs(CONFIG_DIR)) >= 20
    assert (REPO / "configs").resolve() == CONFIG_DIR.resolve()          # ./configs is the link, not a copy
    toml = (REPO / "pyproject.toml").read_text()
    assert '"configs/*.yaml"' in toml and '"assets/**/*"' in toml


def test_wheel_holds_recipes_teacher_and_generator(tmp_path):
    """The built wheel (what `pip install .` installs) carries every recipe and asset the CLI reads."""
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path), str(REPO)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = tmp_path.glob("dreamer-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    for y in (REPO / "dreamer" / "configs").glob("*.yaml"):
        assert f"dreamer/configs/{y.name}" in names
    for f in ("assets/shapes-teacher/teacher.json", "assets/shapes-teacher/unet/diffusion_pytorch_model.safetensors",
              "assets/shapes-consistency-lora/generator.json",
              "assets/shapes-consistency-lora/pytorch_lora_weights.safetensors", "assets/report/viewer.js"):
        assert f"dreamer/{f}" in names, f
    # what a run needs (the world, the strict test, the evaluator) and no training-only code (tools/, beside scripts/)
    assert {"dreamer/shapes/world.py", "dreamer/shapes/strict.py", "dreamer/shapes/evaluator.py"} <= names
    assert not [n for n in names if n.split("/")[0] in ("tools", "tests", "scripts")
                or n.rpartition("/")[2] in ("negatives.py", "negative_shapes.py", "evaluator_data.py", "sdf_render.py",
                                             "teacher_spec.py")]


def test_ci_runs_the_readme_tests_and_the_wheel_check():
    ci = (REPO / ".ci" / "run").read_text()
    assert 'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest -q' in ci
    assert ".ci/wheel_smoke" in ci
    smoke = (REPO / ".ci" / "wheel_smoke").read_text()
    for piece in ("pip wheel", "TRAINING_ONLY", "venv --system-site-packages", "dreamer.__file__", 'cd "$tmp"',
                  "generate"):
        assert piece in smoke, piece


# ----------------------------------------------------------------------------------------------- vocabulary
@pytest.mark.parametrize("prompt, canonical", [
    ("a red cube", "a red cube"), ("A Red Cube!", "a red cube"), ("a red cubes", "a red cube"),
    ("red cubes", "a red cube"), ("an orange cone.", "a orange cone"), ("the blue tori", "a blue torus"),
    ("a red cube, front view", "a red cube, front view"),
    ("A purple Pyramid , OVERHEAD view", "a purple pyramid, overhead view"),
    ("a cat", None), ("a wooden chair", None), ("a red box", None), ("2 red cubes", None),
    ("a red cube on a table", None),
    ("a cube", None), ("red", None), ("", None), ("a red cube, top view", None),
])
def test_vocabulary_normalises_or_refuses(prompt, canonical):
    from dreamer.common.vocabulary import vocabulary_of
    from dreamer.common.teacher_source import DEFAULT_TEACHER

    assert vocabulary_of(DEFAULT_TEACHER).normalise(prompt) == canonical


def test_embedded_teacher_declares_the_shapes_world():
    """teacher.json's vocabulary is exactly the shapes world's catalogue; loaded teachers expose it."""
    from dreamer.common.view_prompts import VIEW_SUFFIXES
    from dreamer.common.teacher_source import DEFAULT_TEACHER, load_teacher
    from dreamer.common.vocabulary import vocabulary_of
    from dreamer.shapes.world import COLOUR_NAMES, SHAPES, catalogue

    vocab = vocabulary_of(DEFAULT_TEACHER)
    assert vocab.shapes == SHAPES and vocab.colours == COLOUR_NAMES and vocab.views == VIEW_SUFFIXES
    assert sorted(vocab.prompts()) == sorted(s.prompt for s in catalogue())
    assert load_teacher(None).vocabulary == vocab


def test_custom_teacher_without_vocabulary_takes_any_prompt(tiny_sd_dir):
    from dreamer.common.teacher_source import load_teacher
    from dreamer.common.vocabulary import check_prompt_vocabulary, vocabulary_of

    assert vocabulary_of(tiny_sd_dir) is None and load_teacher(str(tiny_sd_dir)).vocabulary is None
    assert check_prompt_vocabulary("a cat", vocabulary_of(tiny_sd_dir)) == "a cat"


@pytest.mark.parametrize("prompt", ["a cat", "a wooden chair", "a red box"])
def test_cli_refuses_a_prompt_the_teacher_does_not_know(prompt, tmp_path, capsys):
    assert main(["generate", prompt, "--out", str(tmp_path / "r")]) == 2
    err = _err_line(capsys)
    assert err.startswith(f"dreamer: error: the embedded teacher does not know '{prompt}'")
    assert "cube, sphere, cylinder, cone, torus, pyramid" in err and "red, green, blue, yellow, purple, orange" in err
    assert "--allow-unknown-prompt" in err and not (tmp_path / "r").exists()
    assert main(["sample", prompt, "--out", str(tmp_path / "s.png")]) == 2
    assert "does not know" in _err_line(capsys) and not (tmp_path / "s.png").exists()


def test_cli_normalises_then_resumes_accumulating_train_seconds(tmp_path, capsys):
    """'A Red Cube!' runs as 'a red cube'; a second sitting (--resume) adds its seconds to train_seconds."""
    out = tmp_path / "r"
    assert main(["generate", "A Red Cube!", "--out", str(out), "--no-export", *TINY]) == 0
    assert "prompt: a red cube\n" in (out / "config.yaml").read_text()
    first = json.loads((out / "timing.json").read_text())
    assert first["sittings"] == 1 and first["train_seconds"] == first["seconds_this_sitting"] > 0
    err = capsys.readouterr().err
    assert re.search(r"loading teacher \.\.\. done \(\d+\.\d s\)", err) and "generate: 100%" in err
    assert main(["generate", "a red cubes", "--out", str(out), "--resume", "--no-export", "--quiet", *TINY,
                 "train.steps=4"]) == 0
    assert capsys.readouterr().err == ""                                  # --quiet: no progress at all
    second = json.loads((out / "timing.json").read_text())
    assert second["sittings"] == 2 and second["steps"] == 4
    assert second["train_seconds"] == pytest.approx(first["train_seconds"] + second["seconds_this_sitting"], abs=0.05)


def test_cli_unknown_prompt_allowed_says_why_evaluation_was_skipped(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["generate", "a cat", "--allow-unknown-prompt", "--out", str(out), *TINY, *TINY_EXPORT]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["prompt"] == "a cat" and "chamfer" not in metrics
    assert metrics["evaluation_skipped"].startswith("prompt is not a shapes-world prompt")
    cap = capsys.readouterr()
    assert "  evaluation skipped: prompt is not a shapes-world prompt" in cap.out
    for name in ("loading teacher", "exporting mesh", "writing video", "evaluating against ground truth",
                 "writing report"):
        assert re.search(rf"{name} \.\.\. done \(\d+\.\d s\)", cap.err), name
    assert main(["export", str(out), "export.evaluate=false"]) == 0     # export prints its metrics too
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"done: {out}/report.html") and "train_seconds=" in lines[1]
    assert lines[-1] == "  evaluation skipped: export.evaluate is false"


# ----------------------------------------------------------------------------------------------- recipes, help, version
def test_recipes_table(capsys):
    from dreamer.common.config import CONFIG_DIR, available_configs, load_config_dict

    assert main(["recipes"]) == 0
    rows = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.strip()}
    for name in available_configs(CONFIG_DIR):
        assert name in rows, name
    # the time column is each recipe's `# time:` line up to its note, as scripts/write_figures.py writes it from
    # the results files (tests/test_figures.py checks those lines)
    spec = importlib.util.spec_from_file_location("write_figures", REPO / "scripts" / "write_figures.py")
    wf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wf)

    def shown(name):
        line = wf.time_line(REPO, name, load_config_dict(name, CONFIG_DIR))
        return re.escape(line.removeprefix("# time: ").split(" (")[0])
    for name, head, summary in (("gaussians-sds", r"generate\s+gaussians/sds", r"Gaussian splats \+ SDS"),
                                ("nerf-vsd", r"generate\s+nerf/vsd", r"Hash-grid NeRF \+ VSD"),
                                ("distill-consistency-lora", r"distill\s+consistency", "LCM-LoRA")):
        assert re.match(rf"{name}\s+{head}\s+{shown(name)}\s+{summary}", rows[name]), rows[name]
    assert re.match(r"distill-dmd-sd15\s+distill\s+dmd\s+GPU only", rows["distill-dmd-sd15"])


def test_version_and_help_texts(capsys):
    from dreamer import __version__
    from dreamer.distill.trainers import TRAINERS

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"dreamer {__version__}"
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(m in text for m in TRAINERS) and "distill-consistency-lora" in text and "gaussians-sds" not in text
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "gaussians-sds" in text and "nerf-vsd" in text and "distill-dmd" not in text
    assert "cube, sphere, cylinder, cone, torus, pyramid" in text and "--allow-unknown-prompt" in text
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "dreamer recipes" in " ".join(capsys.readouterr().out.split())


# ----------------------------------------------------------------------------------------------- messages
def test_messages_name_the_real_problem(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate"])
    err = _err_line(capsys)
    assert e.value.code == 2 and "required: prompt;" in err and "overrides" not in err
    assert main(["generate", "a red cube", "--config", "distill-dmd", "--out", str(tmp_path / "a")]) == 2
    assert "'distill-dmd' is a distillation (dreamer distill) recipe" in _err_line(capsys)
    assert main(["distill", "--config", "gaussians-sds", "--out", str(tmp_path / "b")]) == 2
    assert "'gaussians-sds' is a text-to-3D (dreamer generate) recipe" in _err_line(capsys)
    missing = tmp_path / "nope.yaml"
    assert main(["generate", "a red cube", "--config", str(missing), "--out", str(tmp_path / "c")]) == 2
    assert _err_line(capsys) == f"dreamer: error: config file {missing} not found"
    assert main(["distill", "--out", str(tmp_path / "d"), "train.steps=5"]) == 2
    assert _err_line(capsys) == "dreamer: error: unknown key 'train.steps' (did you mean 'steps'?)"
    assert main(["distill", "--out", str(tmp_path / "d"), "zzzz=5"]) == 2
    err = _err_line(capsys)
    assert "unknown key 'zzzz' (valid keys at the top level: " in err and "did you mean" not in err
    assert not any(tmp_path.iterdir())


def test_unknown_key_suggests_only_real_keys():
    from dreamer.common.config import ConfigError, dotted_keys
    from dreamer.distill.recipe import DistillConfig, load_distill_config

    keys = set(dotted_keys(DistillConfig))
    assert {"steps", "guidance.t_min", "consistency.ema", "gan.weight"} <= keys and "t_min" not in keys
    for override, hint in [("stpes=3", "'steps'"), ("consistency.em=0.5", "'consistency.ema'"),
                           ("gan.weigth=1", "'gan.weight'")]:
        with pytest.raises(ConfigError, match=f"did you mean {hint}"):
            load_distill_config("distill-dmd", [override])


# ----------------------------------------------------------------------------------------------- progress helper
def test_phase_prints_to_stderr_unless_quiet(capsys):
    from dreamer.common import progress

    progress.configure(quiet=False)
    assert progress.run_phase("adding", lambda a, b: a + b, 2, 3) == 5
    cap = capsys.readouterr()
    assert cap.out == "" and re.fullmatch(r"adding \.\.\. done \(\d+\.\d s\)\n", cap.err)
    with pytest.raises(ZeroDivisionError), progress.phase("dividing"):
        1 / 0
    assert re.fullmatch(r"dividing \.\.\. failed \(\d+\.\d s\)\n", capsys.readouterr().err)
    progress.configure(quiet=True)
    with progress.phase("quiet"):
        pass
    assert list(progress.bar(range(3), desc="quiet bar")) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    progress.configure(quiet=False)


def test_distill_shows_pairs_and_a_training_bar(tiny_sd_dir, tmp_path, capsys):
    """Regression pairs get a bar; training gets a bar with ETA and losses on stderr instead of JSON on stdout;
    generator.json records train_seconds and seconds_this_sitting."""
    out = tmp_path / "d"
    assert main(["distill", "--teacher", str(tiny_sd_dir), "--out", str(out), "steps=3", "batch=2",
                 "regression_weight=0.25", "regression_pairs=1", "regression_ddim_steps=2",
                 "prompts=[a red cube, a blue cone]", "resolution=16"]) == 0
    cap = capsys.readouterr()
    assert "teacher DDIM-2 pairs: 100%" in cap.err and "2/2" in cap.err
    assert "distill dmd: 100%" in cap.err and "3/3" in cap.err and "loss" in cap.err
    assert cap.out.strip().splitlines() == [f"done: {out}/generator (sample with: dreamer sample PROMPT "
                                            f"--generator {out}/generator --steps 1)"]
    meta = json.loads((out / "generator" / "generator.json").read_text())
    assert meta["train_seconds"] > 0 and meta["seconds_this_sitting"] == meta["train_seconds"]
    assert len((out / "log.jsonl").read_text().splitlines()) == 3


# ----------------------------------------------------------------------------------------------- shipped generator
def test_shipped_generator_is_small_safetensors_with_a_card():
    from dreamer.distill.generator import SHIPPED_GENERATOR, check_generator_folder

    meta = check_generator_folder(SHIPPED_GENERATOR)
    assert meta["teacher"] == "embedded" and meta["lora_rank"] > 0
    files = [p for p in SHIPPED_GENERATOR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 8e6
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    card = (SHIPPED_GENERATOR / "MODEL_CARD.md").read_text()
    assert "dreamer distill --config distill-consistency-lora" in card and "bench_distill.py" in card


def test_sample_writes_a_captioned_square_grid_from_the_shipped_generator(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "s.png"
    assert main(["sample", "A Red Cube!", "-n", "9", "--out", str(out)]) == 0
    assert "9 samples of 'a red cube'" in capsys.readouterr().out
    img = np.asarray(Image.open(out).convert("RGB"))
    grid = 3 * (32 + 2) + 2                                                 # 3 x 3 tiles of 32 px, 2 px padding
    k = -(-256 // grid)
    assert img.shape[1] == grid * k and img.shape[0] > grid * k            # square grid under a caption strip
    strip = img[: img.shape[0] - grid * k]
    assert (strip == 255).all(axis=2).mean() > 0.8 and (strip < 100).all(axis=2).any()   # white, with dark text
    tiles = img[-grid * k:]
    assert tiles.std() > 10                                                 # images, not a blank grid


def test_caption_and_square_grid_helpers():
    from dreamer.common.media import image_grid, square_nrow, with_caption

    assert [square_nrow(n) for n in (1, 2, 4, 9, 10, 16, 17)] == [1, 2, 2, 3, 4, 4, 5]
    g = image_grid(np.zeros((16, 3, 8, 8), np.float32), nrow=square_nrow(16))
    assert g.shape == (4 * 10 + 2, 4 * 10 + 2, 3)
    c = with_caption(g, "x" * 500, min_width=84)
    assert c.shape[1] == 84 and c.shape[0] > 84 and (c[-84:] == g.repeat(2, 0).repeat(2, 1)).all()


def test_tiny_teacher_does_not_truncate_view_prompts(tiny_sd_dir):
    from dreamer.common.view_prompts import truncation_message
    from dreamer.common.teacher_source import load_teacher
    from dreamer.common.teacher_source import DEFAULT_TEACHER
    from dreamer.common.world import world_of
    from dreamer.distill.trainers.toolkit import default_prompts

    assert truncation_message(load_teacher(str(tiny_sd_dir)), default_prompts(world_of(DEFAULT_TEACHER))) is None
