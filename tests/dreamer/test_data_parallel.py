"""Data-parallel distillation under torchrun (gloo, 2 CPU processes): 2 ranks x batch b train exactly as one process
with batch 2b on the same data (DMD end to end on the tiny SD teacher; noise_lora on the exact toy teacher), rank 0
alone writes the run folder, and unsupported trainers refuse a world size > 1."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from dp_configs import dmd_cfg, noise_lora_cfg, record_first_gradients
from toy_models import quiet_run, toy_setup

from dreamer.common.config import ConfigError
from dreamer.distill.generator import load_generator
from dreamer.distill.loop import check_data_parallel, distill
from dreamer.distill.recipe import DistillConfig
from dreamer.distill.trainers import noise_lora

ROOT = Path(__file__).resolve().parents[2]


def _torchrun(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(ROOT / "tests" / "dp_worker.py"), *args], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


def _ranks(result: Path) -> list[list[torch.Tensor]]:
    return [torch.load(f"{result}.rank{r}.pt") for r in (0, 1)]


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    assert len(a) == len(b) and all(x.shape == y.shape for x, y in zip(a, b))
    return max((x.float() - y.float()).abs().max().item() for x, y in zip(a, b))


def test_dmd_two_ranks_of_batch_1_equal_one_process_of_batch_2(tiny_sd_dir, tmp_path):
    """The gradients each optimizer (fake score, generator) steps on first are those of one process with batch 2 up
    to float32 summation order (<= 1e-5 of their largest entry); the generators after 3 steps agree to <= 1e-5 in
    all but a few entries: Adam's first update is lr * g / (|g| + eps), so an entry whose gradient cancels to ~1e-7
    changes sign with the summation order (measured: 9 of 203k entries differ by more than 1e-5, at most 1.1e-4,
    lr 1e-3, while 67% of the entries moved by more than 5e-4). The ranks agree exactly, rank 0 alone writes the run
    folder."""
    torch.set_num_threads(1)
    step = torch.optim.AdamW.step
    try:
        firsts = record_first_gradients()
        ref = distill(dmd_cfg(tiny_sd_dir, 2), tmp_path / "one", log=lambda s: None)
    finally:
        torch.optim.AdamW.step = step
    _torchrun("dmd", str(tiny_sd_dir), str(tmp_path / "dp"), "1", str(tmp_path / "dmd"))
    g0, g1 = (torch.load(f"{tmp_path / 'dmd'}.grads{r}.pt") for r in (0, 1))
    assert len(firsts) == len(g0) == 2                     # the fake score's first update, the generator's
    for ref_g, dp_g, other in zip(firsts, g0, g1):
        assert _max_diff(dp_g, other) == 0.0
        scale = max(g.abs().max().item() for g in ref_g)
        assert scale > 0 and _max_diff(dp_g, ref_g) <= 1e-5 * scale, (_max_diff(dp_g, ref_g), scale)
    r0, r1 = _ranks(tmp_path / "dmd")
    assert _max_diff(r0, r1) == 0.0                       # the ranks stay in step exactly
    diff = torch.cat([(a - b).abs().flatten() for a, b in zip(r0, ref.params)])
    moved = torch.cat([(a - b).abs().flatten() for a, b in zip(ref.params, make_initial(tiny_sd_dir))])
    assert (diff > 1e-5).float().mean() < 1e-4 and diff.max() < 1e-3, ((diff > 1e-5).sum(), diff.max())
    assert (moved > 5e-4).float().mean() > 0.5           # while most entries moved by more than 5e-4
    saved = load_generator(tmp_path / "dp" / "generator")  # rank 0 wrote the generator, the log once
    assert _max_diff(list(saved.unet.parameters()), r0) == 0.0
    lines = (tmp_path / "dp" / "log.jsonl").read_text().splitlines()
    assert [json.loads(s)["step"] for s in lines] == [1, 2, 3]


def make_initial(tiny_sd_dir):
    """The generator's initial parameters (init_state's copy of the teacher's UNet)."""
    from guidance import DiffusersTeacher

    from dreamer.distill.trainers.score import init_state

    return init_state(DiffusersTeacher.from_pretrained(tiny_sd_dir), dmd_cfg(tiny_sd_dir, 2)).gen.params


def test_noise_lora_two_ranks_equal_one_process_of_twice_the_batch(tmp_path):
    torch.set_num_threads(1)
    cfg = noise_lora_cfg(8)
    ref = noise_lora.train(toy_setup(default_cfg=2.5), cfg, quiet_run(tmp_path / "one", cfg))
    _torchrun("noise_lora", "-", str(tmp_path / "dp"), "4", str(tmp_path / "nl"))
    r0, r1 = _ranks(tmp_path / "nl")
    assert _max_diff(r0, r1) == 0.0
    assert _max_diff(r0, ref.params) <= 1e-5, _max_diff(r0, ref.params)
    assert ref.unet.alpha.abs().max() > 1e-2              # trained (20 Adam steps at lr 0.05)
    cfg = noise_lora_cfg(4)
    half = noise_lora.train(toy_setup(default_cfg=2.5), cfg, quiet_run(tmp_path / "h", cfg))
    assert _max_diff(r0, half.params) > 1e-4              # and it is not the same as one process of batch b


@pytest.mark.parametrize("kw", [dict(method="consistency"), dict(method="dmd", gan={"weight": 0.1})])
def test_unsupported_trainers_refuse_a_world_size_above_one(kw):
    from dreamer.common.config import from_dict

    cfg = from_dict(DistillConfig, kw)
    with pytest.raises(ConfigError, match="data-parallel distillation"):
        check_data_parallel(cfg, 2)
    check_data_parallel(cfg, 1)
