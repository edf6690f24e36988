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
from dreamer.distill.recipe import DistillConfig, distill_guidance
from guidance import DiffusersTeacher
from compare import same

REPO = Path(__file__).resolve().parents[3]


def _cfg(tiny_sd_dir, **kw):
    base = dict(method="dmd", steps=4, batch=2, lr_gen=1e-3, guidance=distill_guidance(aux_updates=2, aux_lr=1e-3,
                                                                                 cfg_scale=3.0),
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
                                                       regression_ddim_steps=2, aux_fresh_batches=True,
                                                       gan={"weight": 1.0}, data_size=8)),
                                          ("diff_instruct", {}), ("sds", {})])
def test_resume_in_process_is_bit_identical(tiny_sd_dir, tmp_path, method, extra):
    torch.set_num_threads(1)
    teacher = DiffusersTeacher.from_pretrained(tiny_sd_dir)
    from dreamer.common.config import from_dict, to_dict
    config = from_dict(DistillConfig, {**to_dict(_cfg(tiny_sd_dir, method=method)), **extra})
    shapes = world_of(DEFAULT_TEACHER)                         # the GAN's real data: shapes renders
    full = distill(config, tmp_path / "full", teacher=teacher, log=lambda s: None, world=shapes)
    short = from_dict(DistillConfig, {**to_dict(config), "steps": 2})
    distill(short, tmp_path / "split", teacher=teacher, log=lambda s: None, world=shapes)
    resumed = distill(config, tmp_path / "split", teacher=teacher, log=lambda s: None, resume=True, world=shapes)
    assert same(_state(tmp_path / "full"), _state(tmp_path / "split"))
    assert all(torch.equal(a, b) for a, b in zip(full.params, resumed.params))
    assert _log(tmp_path / "full") == _log(tmp_path / "split")
    with pytest.raises(CheckpointError, match=r"different config: 'lr_gen' \(saved"):
        distill(from_dict(DistillConfig, {**to_dict(config), "lr_gen": 1.0}), tmp_path / "split", teacher=teacher,
                resume=True)


def test_resume_refuses_other_trainers(tiny_sd_dir, tmp_path):
    with pytest.raises(ConfigError, match="--resume supports"):
        distill(_cfg(tiny_sd_dir, method="kd"), tmp_path, teacher=object(), resume=True)


# --------------------------------------------------------------------------------------------- SIGKILL, CLI
ARGS = ["distill", "--config", "distill-dmd", "steps=6", "save_every=2", "batch=2", "guidance.aux_updates=2",
        "regression_weight=0", "rollout_regression_weight=0", "timesteps=[999,499]", "threads=1", "log_every=1",
        'prompts=["a red cube","a blue sphere"]', "guidance.cfg_scale=3.0", "lr_gen=1e-3", "guidance.aux_lr=1e-3"]
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


def _older_run(out: Path) -> Path:
    """A run folder as an older dreamer wrote it: config.yaml with the flat keys DistillConfig.RENAMED_KEYS names."""
    import yaml

    from dreamer.common.config import to_dict
    from dreamer.distill.recipe import RENAMED_KEYS, load_distill_config

    data = to_dict(load_distill_config("distill-dmd"))
    g = data.pop("guidance")
    for old, new in RENAMED_KEYS.items():
        data[old] = g[new.split(".", 1)[1]] if new.startswith("guidance.") else data.pop(new)
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (out / "checkpoint.pt").write_bytes(b"")
    (out / "log.jsonl").write_text("")
    return out


def test_resume_of_a_run_an_older_dreamer_made_names_the_renamed_keys(tmp_path, capsys):
    """--resume of a run folder with the flat keys of before `guidance:` was nested: one line naming the run as an
    older dreamer's and each renamed key, with or without --config; checked before any teacher is loaded."""
    from dreamer.cli import main

    out = _older_run(tmp_path / "old")
    for extra in ([], ["--config", "distill-dmd"]):
        assert main(["distill", "--out", str(out), "--resume", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--resume: {out} was made by an older dreamer" in err, err
        assert "'fake_updates' is now 'guidance.aux_updates'" in err and "'lr_fake' is now 'guidance.aux_lr'" in err
        assert "'fake_fresh_batches' is now 'aux_fresh_batches'" in err
        assert "'cfg_scale' is now 'guidance.cfg_scale'" in err
