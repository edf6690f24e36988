"""Bad input through the real CLI (subprocesses): exit code 2, one stderr line, no traceback, nothing written.

Also: untrusted files (pickle checkpoints with a `__reduce__` payload), names derived from prompts, and the
truncated-prompt warning.
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from dreamer.cli import main
from dreamer.text_to_3d.recipe import load_generate_config
from dreamer.common.config import dump_yaml
from dreamer.common.preflight import SLUG_MAX, slug
from dreamer.common.teacher_source import DEFAULT_TEACHER

REPO = Path(__file__).resolve().parents[2]
TINY = ["train.steps=2", "train.preview_every=0", "train.checkpoint_every=0", "camera.resolution=16",
        "camera.batch=1", "gaussians.n_init=100", "train.threads=1"]
NOT_WRITABLE = "/sys/dreamer-test/run"  # sysfs refuses new files even to root (chmod does not stop root)

# id -> (argv after `dreamer`, words the one error line must contain). {case}: this case's folder (the cwd);
# {prev}: a folder holding an earlier run; {broken}: a teacher copy with truncated weights.
CASES = {
    "empty-prompt": (["generate", "", "--out", "{case}/new"], "empty prompt"),
    "whitespace-prompt": (["generate", "  \t ", "--out", "{case}/new"], "empty prompt"),
    "unknown-key": (["generate", "a red cube", "--out", "{case}/new", "guidance.cfg_scal=3"],
                    "did you mean 'guidance.cfg_scale'"),
    "wrong-type": (["generate", "a red cube", "--out", "{case}/new", "train.steps=many"],
                   "'train.steps' must be an int"),
    "negative-steps": (["generate", "a red cube", "--out", "{case}/new", "train.steps=-5"],
                       "'train.steps' must be >= 1"),
    "nan-guidance": (["generate", "a red cube", "--out", "{case}/new", "guidance.cfg_scale=nan"], "finite"),
    "resolution": (["generate", "a red cube", "--out", "{case}/new", "camera.resolution=20"], "multiple of 8"),
    "missing-teacher": (["generate", "a red cube", "--out", "{case}/new", "--teacher", "{case}/no-teacher"],
                        "does not exist"),
    "hub-offline": (["generate", "a red cube", "--out", "{case}/new", "--teacher", "nobody/not-cached"],
                    "not in the local Hugging Face cache and HF_HUB_OFFLINE=1"),
    "truncated-weights": (["generate", "a red cube", "--out", "{case}/new", "--teacher", "{broken}"],
                          "diffusion_pytorch_model.safetensors is truncated"),
    "file-in-the-way": (["generate", "a red cube", "--out", "{case}/a-file"], "is a file"),
    "under-a-file": (["generate", "a red cube", "--out", "{case}/a-file/run"], "is a file, not a folder"),
    "not-writable": (["generate", "a red cube", "--out", NOT_WRITABLE], "not writable"),
    "existing-run": (["generate", "a red cube", "--out", "{prev}", *TINY], "already holds a run"),
    "resume-other-config": (["generate", "a red cube", "--out", "{prev}", "--resume", *TINY, "guidance.cfg_scale=7"],
                            "different config: 'guidance.cfg_scale' (saved 20.0, now 7.0)"),
    "resume-nothing": (["generate", "a red cube", "--out", "{case}/new", "--resume"], "holds no run to continue"),
    "export-truncated-ckpt": (["export", "{prev}"], "corrupt or truncated"),
    "distill-negative": (["distill", "--out", "{case}/new", "steps=-1"], "'steps' must be positive"),
    "distill-existing": (["distill", "--out", "{prev}"], "already holds a distillation run"),
    "sample-empty-prompt": (["sample", " ", "--generator", "{case}/no-gen", "--out", "{case}/s.png"], "empty prompt"),
    "sample-no-generator": (["sample", "a red cube", "--generator", "{case}/no-gen", "--out", "{case}/s.png"],
                            "not a generator folder"),
    "sample-bad-n": (["sample", "a red cube", "--generator", "{case}/no-gen", "-n", "0"], "-n must be >= 1"),
    "argparse-type": (["sample", "a red cube", "--generator", "g", "-n", "lots"], "invalid int value"),
}


def _tree(root: Path) -> dict[str, str]:
    """Every file and folder under root -> content hash (folders: 'dir')."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def _env(root: Path) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "HF_HOME": str(root / "hf-home"), "PYTHONPATH": str(REPO)}


def run_cli(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dreamer.cli", *args], check=False, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def make_prev_run(folder: Path, ckpt_bytes: bytes) -> None:
    """An earlier run's results: the config the TINY overrides give, a checkpoint, metrics and a mesh."""
    dump_yaml(load_generate_config("gaussians-sds", "a red cube", None, TINY), folder / "config.yaml")
    (folder / "checkpoint.pt").write_bytes(ckpt_bytes)
    (folder / "metrics.json").write_text('{"chamfer": 0.01}')
    (folder / "mesh.glb").write_bytes(b"glTF-earlier-result")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """Run every CASES entry concurrently (2 at a time); id -> (process, tree before, tree after)."""
    root = tmp_path_factory.mktemp("bad_input")
    broken = root / "broken-teacher"
    shutil.copytree(DEFAULT_TEACHER, broken)
    w = broken / "unet" / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    buf = root / "full.pt"
    torch.save({"step": 2, "scene": {"x": torch.zeros(1000)}}, buf)
    jobs = {}
    for cid, (args, _) in CASES.items():
        case = root / cid
        (case / "prev").mkdir(parents=True)
        make_prev_run(case / "prev", buf.read_bytes()[:700])  # truncated checkpoint (export case)
        (case / "a-file").write_text("not a folder")
        argv = [a.format(case=case, prev=case / "prev", broken=broken) for a in args]
        jobs[cid] = (argv, case)

    def one(cid):
        argv, case = jobs[cid]
        before = _tree(case)
        proc = run_cli(argv, case, _env(root))
        return cid, (proc, before, _tree(case))

    with ThreadPoolExecutor(2) as pool:
        out = dict(pool.map(one, CASES))
    assert not Path(NOT_WRITABLE).exists()
    return out


@pytest.mark.parametrize("cid", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(table, cid):
    proc, before, after = table[cid]
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines[0].startswith("dreamer: error: ") and CASES[cid][1] in lines[0], lines[0]
    assert proc.stdout == ""
    assert after == before  # the earlier run (prev/) and everything else untouched; nothing created


class Payload:
    """A pickle that runs code when loaded: creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "MARKER"
    run = tmp_path / "run"
    run.mkdir()
    dump_yaml(load_generate_config("gaussians-sds", "a red cube", None, TINY), run / "config.yaml")
    torch.save({"step": 3, "gen": Payload(marker), "scene": {}, "history": {}}, run / "checkpoint.pt")
    gen = tmp_path / "gen"  # a generator folder whose only UNet weights are a pickle
    shutil.copytree(DEFAULT_TEACHER / "unet", gen / "unet", ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save({"w": Payload(marker)}, gen / "unet" / "diffusion_pytorch_model.bin")
    (gen / "generator.json").write_text('{"prediction_type": "v_prediction", "timesteps": [999]}')
    before = _tree(tmp_path)
    argvs = [["generate", "a red cube", "--out", str(run), "--resume", *TINY], ["export", str(run)],
             ["sample", "a red cube", "--generator", str(gen), "--out", str(tmp_path / "s.png")]]
    with ThreadPoolExecutor(2) as pool:
        procs = list(pool.map(lambda a: run_cli(a, tmp_path, _env(tmp_path)), argvs))
    for p in procs:
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert "refusing to load" in procs[0].stderr and "refusing to load" in procs[1].stderr
    assert "only safetensors weights are loaded" in procs[2].stderr
    assert not marker.exists() and _tree(tmp_path) == before
    torch.load(run / "checkpoint.pt", weights_only=False)  # control: the payload is live when trusted
    assert marker.read_text() == "pwned"


def test_no_unsafe_loading_in_the_code():
    """Every torch.load passes weights_only=True; nothing trusts remote code."""
    for folder in ("dreamer", "guidance", "renderers", "scripts", "tools"):
        for f in (REPO / folder).rglob("*.py"):
            src = f.read_text()
            for call in re.findall(r"torch\.load\([^\n]*", src):
                assert "weights_only=True" in call, (f, call)
            assert not re.search(r"trust_remote_code\s*=\s*True", src), f


@pytest.mark.parametrize("text", ["../../etc/passwd", "a/b\\c..d", "\x00\x1b[31mred\ncube\t", "", "  ", "..",
                                  "é" * 200, "CON", "a" * 500, "🙂 a 🙂 cube", "nul"])
def test_slug_is_a_safe_bounded_name(text):
    s = slug(text)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", s) and len(s) <= SLUG_MAX
    assert s not in ("con", "nul") and ".." not in s and "/" not in s
    runs = Path("runs").resolve()
    assert (runs / f"{s}-gaussians-sds").resolve().parent == runs


def test_long_prompt_warns_once_and_runs(tmp_path, capsys):
    prompt = "a red cube " + "with a very long and detailed description " * 3
    rc = main(["generate", prompt, "--out", str(tmp_path / "r"), "--quiet", "--no-export", "--allow-unknown-prompt",
               *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 0 and len(err) == 1, err
    assert err[0].startswith("dreamer: warning: prompt truncated to 16 tokens"), err
    assert (tmp_path / "r" / "checkpoint.pt").is_file()


def test_video_failure_keeps_the_other_outputs(tmp_path, monkeypatch, capsys):
    """No ffmpeg (or any video-writer failure) costs the turntable only: mesh, views, metrics, report are written,
    and the closing lines name the files written and the video that was not."""
    import json

    import dreamer.text_to_3d.outputs as outputs

    def no_ffmpeg(*a, **k):
        raise ImportError("The `FFMPEG` plugin is not installed.")
    monkeypatch.setattr(outputs, "write_video", no_ffmpeg)
    out = tmp_path / "r"
    rc = main(["generate", "a red cube", "--out", str(out), "--quiet", *TINY, "export.evaluate=false",
               "export.mesh_resolution=32", "export.turntable_frames=2", "export.turntable_resolution=16"])
    files = json.loads((out / "metrics.json").read_text())["files"]
    assert rc == 0 and "FFMPEG" in files["video_error"] and "video" not in files
    assert (out / "views.png").is_file() and (out / "report.html").is_file() and (out / "gaussians.ply").is_file()
    lines = capsys.readouterr().out.splitlines()
    done, why = lines[-4:-2]                      # then the metrics line and "evaluation skipped: ..."
    assert lines[-1] == "  evaluation skipped: export.evaluate is false"
    assert done.startswith("done: ") and "gaussians.ply" in done and "mp4" not in done
    assert why.startswith("  not written (video): ") and "FFMPEG" in why
