"""SIGKILL a running `dreamer generate` at points of its checkpoint write, resume, compare bit for bit."""
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from dreamer.common.checkpoints import KILL_ENV, atomic_save, load_checkpoint
from dreamer.common.errors import CheckpointError
from compare import same

REPO = Path(__file__).resolve().parents[3]
# 6 steps, a checkpoint every 2 (saves #1-#3 at steps 2, 4, 6; #4 is the final save); densification on, so
# the Gaussian count and the densify statistics must survive the round trip too. One thread: bit-reproducible.
ARGS = ["generate", "a red cube", "--quiet", "--no-export", "train.steps=6", "train.checkpoint_every=2",
        "train.preview_every=0", "train.threads=1", "camera.resolution=16", "camera.batch=1", "gaussians.n_init=200",
        "gaussians.densify_from=2", "gaussians.densify_every=2", "gaussians.grow_grad2d=0.0"]
# Two chains of crashes, each then finished with a plain --resume. A stage is (kill point, the checkpoint step
# left on disk, whether a stale .tmp is left). The first kill hits save #2 (step 4) of a fresh run; the second hits
# save #1 of the resumed run (step 4 again), so every point is hit and a run survives two crashes in a row.
CHAINS = {"A": [("before-tmp@2", 2, False), ("after-tmp@1", 2, True)],
          "B": [("mid-tmp@2", 2, True), ("after-rename@1", 4, False)]}


def _run(out: Path, *extra: str, kill: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO)}
    env.pop(KILL_ENV, None)
    if kill:
        env[KILL_ENV] = kill
    return subprocess.run([sys.executable, "-m", "dreamer.cli", *ARGS, "--out", str(out), *extra], check=False,
                          env=env, capture_output=True, text=True, timeout=180)


def _chain(name: str, root: Path) -> dict:
    """Run the chain's kills (each a --resume of the last), then resume to the end."""
    out, stages = root / name, []
    for i, (kill, _, _) in enumerate(CHAINS[name]):
        proc = _run(out, *(["--resume"] if i else []), kill=kill)
        stages.append((proc.returncode, load_checkpoint(out / "checkpoint.pt")["step"],
                       (out / "checkpoint.pt.tmp").exists(), proc.stderr[-2000:]))
    return {"stages": stages, "resumed": _run(out, "--resume"), "final": load_checkpoint(out / "checkpoint.pt")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The uninterrupted reference and both crash chains, two processes at a time."""
    root = tmp_path_factory.mktemp("crash")
    with ThreadPoolExecutor(2) as pool:
        ref = pool.submit(_run, root / "ref")
        chains = {c: pool.submit(_chain, c, root) for c in CHAINS}
        ref = ref.result()
        assert ref.returncode == 0, ref.stderr[-2000:]
        return load_checkpoint(root / "ref" / "checkpoint.pt"), {c: f.result() for c, f in chains.items()}


@pytest.mark.parametrize("chain", list(CHAINS))
def test_sigkill_during_checkpointing_then_resume_is_bit_identical(runs, chain):
    ref, chains = runs
    r = chains[chain]
    for (rc, on_disk, stale_tmp, err), (kill, want_step, want_tmp) in zip(r["stages"], CHAINS[chain]):
        assert rc == -signal.SIGKILL, (kill, err)
        assert (on_disk, stale_tmp) == (want_step, want_tmp), kill  # lost: only the steps since the checkpoint
    assert r["resumed"].returncode == 0, r["resumed"].stderr[-2000:]
    assert r["final"]["step"] == ref["step"] == 6
    assert same(r["final"]["scene"], ref["scene"])  # parameters, optimizer moments, densify statistics
    assert same(r["final"]["gen"], ref["gen"]) and r["final"]["history"] == ref["history"]


def test_atomic_save_leaves_the_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"step": 1, "w": torch.ones(3)}, path)
    with pytest.raises(Exception):
        atomic_save({"step": 2, "w": lambda: 0}, path)  # unpicklable: torch.save fails half-way
    assert load_checkpoint(path)["step"] == 1
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
