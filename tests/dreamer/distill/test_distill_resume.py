"""`dreamer distill --resume` for the score trainers (dmd / diff_instruct / sds): an interrupted run, resumed, ends
bit-identical to an uninterrupted one (generator, fake score, optimizers, EMA, GAN heads, RNG), also after SIGKILLs
during checkpoint writes."""
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from dreamer.common.checkpoints import KILL_ENV, load_checkpoint
from dreamer.common.errors import CheckpointError
from dreamer.common.teacher_source import DEFAULT_TEACHER
from dreamer.common.world import world_of
from dreamer.common.config import ConfigError
from dreamer.distill.loop import distill
from dreamer.distill.recipe import DistillConfig
from guidance import DiffusersTeacher
from compare import same

REPO = Path(__file__).resolve().parents[3]


def _cfg(tiny_sd_dir, **kw):
    base = dict(method="dmd", steps=4, batch=2, fake_updates=2, lr_gen=1e-3, lr_fake=1e-3, cfg_scale=3.0,
                prompts=["a red cube", "a blue sphere"], timesteps=[999, 499], threads=1, log_every=1, save_every=2,
                teacher=str(tiny_sd_dir))
    return DistillConfig(**{**base, **kw})


def _state(out: Path) -> dict:
    sd = load_checkpoint(out / "checkpoint.pt")
    sd.pop("run")                                              # wall-clock bookkeeping
    return sd


def _log(out: Path) -> list[str]:
    import json
    return [json.dumps({k: v for k, v in json.loads(line).items() if k != "time_s"})
            for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method,extra", [("dmd", dict(ema_decay=0.5, regression_weight=0.25, regression_pairs=1,
                                                       regression_ddim_steps=2, fake_fresh_batches=True,
                                                       gan={"weight": 1.0}, data_size=8)),
                                          ("diff_instruct", {}), ("sds", {})])
def test_resume_in_process_is_bit_identical(tiny_sd_dir, tmp_path, method, extra):
    torch.set_num_threads(1)
    teacher = DiffusersTeacher.from_pretrained(tiny_sd_dir)
    from dreamer.common.config import from_dict, to_dict
    cfg = from_dict(DistillConfig, {**to_dict(_cfg(tiny_sd_dir, method=method)), **extra})
    shapes = world_of(DEFAULT_TEACHER)                         # the GAN's real data: shapes renders
    full = distill(cfg, tmp_path / "full", teacher=teacher, log=lambda s: None, world=shapes)
    short = from_dict(DistillConfig, {**to_dict(cfg), "steps": 2})
    distill(short, tmp_path / "split", teacher=teacher, log=lambda s: None, world=shapes)
    resumed = distill(cfg, tmp_path / "split", teacher=teacher, log=lambda s: None, resume=True, world=shapes)
    assert same(_state(tmp_path / "full"), _state(tmp_path / "split"))
    assert all(torch.equal(a, b) for a, b in zip(full.params, resumed.params))
    assert _log(tmp_path / "full") == _log(tmp_path / "split")
    with pytest.raises(CheckpointError, match=r"different config: 'lr_gen' \(saved"):
        distill(from_dict(DistillConfig, {**to_dict(cfg), "lr_gen": 1.0}), tmp_path / "split", teacher=teacher,
                resume=True)


def test_resume_refuses_other_trainers(tiny_sd_dir, tmp_path):
    with pytest.raises(ConfigError, match="--resume supports"):
        distill(_cfg(tiny_sd_dir, method="kd"), tmp_path, teacher=object(), resume=True)


# --------------------------------------------------------------------------------------------- SIGKILL, CLI
ARGS = ["distill", "--config", "distill-dmd", "steps=6", "save_every=2", "batch=2", "fake_updates=2",
        "regression_weight=0", "rollout_regression_weight=0", "timesteps=[999,499]", "threads=1", "log_every=1",
        'prompts=["a red cube","a blue sphere"]', "cfg_scale=3.0", "lr_gen=1e-3", "lr_fake=1e-3"]
# (kill point, checkpoint step left on disk, stale .tmp left): the first kill hits save #2 (step 4) of a fresh
# run, the second save #1 of the resumed run (step 4 again); then a plain --resume finishes.
CHAIN = [("mid-tmp@2", 2, True), ("after-rename@1", 4, False)]


def _run(out: Path, teacher: Path, *extra: str, kill: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO)}
    env.pop(KILL_ENV, None)
    if kill:
        env[KILL_ENV] = kill
    return subprocess.run([sys.executable, "-m", "dreamer.cli", *ARGS, "--teacher", str(teacher), "--out", str(out),
                           *extra], check=False, env=env, capture_output=True, text=True, timeout=300)


def _chain(out: Path, teacher: Path) -> dict:
    stages = []
    for i, (kill, _, _) in enumerate(CHAIN):
        proc = _run(out, teacher, *(["--resume"] if i else []), kill=kill)
        stages.append((proc.returncode, load_checkpoint(out / "checkpoint.pt")["step"],
                       (out / "checkpoint.pt.tmp").exists(), proc.stderr[-2000:]))
    return {"stages": stages, "resumed": _run(out, teacher, "--resume")}


def test_sigkill_during_distill_checkpointing_then_resume_is_bit_identical(tiny_sd_dir, tmp_path):
    with ThreadPoolExecutor(2) as pool:
        ref = pool.submit(_run, tmp_path / "ref", tiny_sd_dir)
        chain = pool.submit(_chain, tmp_path / "chain", tiny_sd_dir).result()
        ref = ref.result()
    assert ref.returncode == 0, ref.stderr[-2000:]
    for (rc, on_disk, stale, err), (kill, step, tmp) in zip(chain["stages"], CHAIN):
        assert rc == -signal.SIGKILL, (kill, err)
        assert (on_disk, stale) == (step, tmp), kill
    assert chain["resumed"].returncode == 0, chain["resumed"].stderr[-2000:]
    assert load_checkpoint(tmp_path / "ref" / "checkpoint.pt")["step"] == 6
    assert same(_state(tmp_path / "ref"), _state(tmp_path / "chain"))
    assert _log(tmp_path / "ref") == _log(tmp_path / "chain")


def test_cli_resume_needs_a_run(tiny_sd_dir, tmp_path):
    proc = _run(tmp_path / "none", tiny_sd_dir, "--resume")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "holds no distillation run" in proc.stderr
