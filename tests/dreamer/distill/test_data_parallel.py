"""Data-parallel distillation under torchrun (gloo, 2 CPU processes): 2 ranks x batch b train exactly as one process
with batch 2b on the same data: DMD, DMD + GAN and ADD end to end on the tiny SD teacher, every regression trainer
on the exact toy teacher; rank 0 alone writes the run folder."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from dp_configs import TOY_METHODS, distill_cfg, dmd_cfg, record_first_gradients, toy_cfg, toy_teacher
from toy_models import quiet_run

from dreamer.distill.generator import load_generator
from dreamer.distill.loop import distill
from dreamer.distill.trainers import TRAINERS

ROOT = Path(__file__).resolve().parents[3]


def _launch(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(ROOT / "tests" / "dp_worker.py"), *args], env=env, capture_output=True, text=True,
                          timeout=600)


def _torchrun(*args: str) -> None:
    r = _launch(*args)
    assert r.returncode == 0, r.stderr[-3000:]


def _gloo_abort(r: subprocess.CompletedProcess) -> bool:
    """A rank killed by SIGABRT from C++ std::terminate with no exception in flight (no Python error): seen once
    in CI (stop 26, mid-run in the toy launch), 0 times in 40 launches here."""
    return "terminate called without an active exception" in r.stderr and "SIGABRT" in r.stderr


def _ranks(result: Path, method: str) -> list[list[torch.Tensor]]:
    return [torch.load(f"{result}.{method}.rank{r}.pt") for r in (0, 1)]


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    assert len(a) == len(b) and all(x.shape == y.shape for x, y in zip(a, b))
    return max((x.float() - y.float()).abs().max().item() for x, y in zip(a, b))


def adam_step_bound(betas: tuple[float, float], t: int) -> float:
    """Largest |m_hat_t| / sqrt(v_hat_t) over all gradient sequences (Kingma & Ba 2015, Alg. 1; Cauchy-Schwarz on
    m_t = (1-b1) sum_k b1^k g_(t-k) against v_t = (1-b2) sum_k b2^k g_(t-k)^2): Adam's step t moves an entry by
    at most lr times this, whatever the gradients (beta1 = 0: sqrt((1 - b2^t) / (1 - b2)))."""
    b1, b2 = betas
    return (1 - b1) / (1 - b1 ** t) * ((1 - b2 ** t) / (1 - b2) * sum((b1 * b1 / b2) ** k for k in range(t))) ** 0.5


def _rel(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> float:
    """||a - b|| / ||b - c|| (flattened parameter vectors)."""
    return float((a - b).norm() / (b - c).norm())


def test_dmd_two_ranks_of_batch_1_equal_one_process_of_batch_2(tiny_sd_dir, tmp_path):
    """2 ranks x batch 1 against one process of batch 2, float32, 3 DMD steps; why each check holds for any float32
    summation order (CPU, BLAS build, thread count):
    - the ranks agree bit for bit: they all-reduce the same sums and run the same kernels on one machine;
    - the first gradients of each optimizer (fake score, generator) agree to <= 1e-5 of their largest entry: same
      data, same parameters, only the order of float32 sums differs (the float64 twin below pins the rest);
    - after 3 steps no entry differs by more than 2 lr sum_t B_t (adam_step_bound: Adam's step is bounded whatever
      the gradients; weight decay only shrinks a difference). Rounding can do that much: Adam's first step is
      lr g / (|g| + eps), so an entry whose gradient cancels to ~1e-7 takes either sign, and the later steps then
      see slightly different parameters. No entry-by-entry bound tighter than Adam's exists, so none is asserted;
    - the flipped entries are those with near-cancelling gradients, a thin slice: as a whole the DP generator sits
      within 10 % (L2) of the update one process made, while a process that saw other data (batch 1) sits more
      than 50 % of it away (seen: 0.3 % against 148 %; 0.004 % and 0.11 % of entries past 1e-5 on two CPUs). A 10 %
      miss needs rounding to carry a hundredth of the update's energy: that is other data, not another order."""
    torch.set_num_threads(1)
    config = dmd_cfg(tiny_sd_dir, 2)
    step = torch.optim.AdamW.step
    try:
        firsts = record_first_gradients()
        ref = distill(config, tmp_path / "one", log=lambda s: None)
    finally:
        torch.optim.AdamW.step = step
    half = distill(dmd_cfg(tiny_sd_dir, 1), tmp_path / "half", log=lambda s: None)
    _torchrun("distill", "dmd", str(tiny_sd_dir), str(tmp_path / "dp"), "1", str(tmp_path / "dmd"))
    g0, g1 = (torch.load(f"{tmp_path / 'dmd'}.grads{r}.pt") for r in (0, 1))
    assert len(firsts) == len(g0) == 2                     # the fake score's first update, the generator's
    for ref_g, dp_g, other in zip(firsts, g0, g1):
        assert _max_diff(dp_g, other) == 0.0
        scale = max(g.abs().max().item() for g in ref_g)
        assert scale > 0 and _max_diff(dp_g, ref_g) <= 1e-5 * scale, (_max_diff(dp_g, ref_g), scale)
    r0, r1 = _ranks(tmp_path / "dmd", "dmd")
    assert _max_diff(r0, r1) == 0.0                       # the ranks stay in step exactly
    flat = lambda ps: torch.cat([p.detach().double().flatten() for p in ps])
    dp, one, other, init = flat(r0), flat(ref.params), flat(half.params), flat(make_initial(tiny_sd_dir))
    reach = config.lr_gen * sum(adam_step_bound(config.adam_betas, t) for t in range(1, config.steps + 1))
    ulps = config.steps * 2.0 ** -23 * float(init.abs().max() + reach)  # float32 rounding of p - lr u, each step
    assert float((one - init).abs().max()) <= reach + ulps  # each run moves an entry by at most Adam's reach
    assert float((dp - one).abs().max()) <= 2 * (reach + ulps), float((dp - one).abs().max())
    assert _rel(dp, one, init) < 0.1 and _rel(other, one, init) > 0.5, (_rel(dp, one, init), _rel(other, one, init))
    assert ((one - init).abs() > 5e-4).double().mean() > 0.5           # while most entries moved by more than 5e-4
    saved = load_generator(tmp_path / "dp" / "generator")  # rank 0 wrote the generator, the log once
    assert _max_diff(list(saved.unet.parameters()), r0) == 0.0
    lines = (tmp_path / "dp" / "log.jsonl").read_text().splitlines()
    assert [json.loads(s)["step"] for s in lines] == [1, 2, 3]


def test_dmd_in_float64_two_ranks_end_where_one_process_of_twice_the_batch_ends(tiny_sd_dir, tmp_path):
    """The same 3 DMD steps in float64 (teacher, generator, fake score): summation order now moves gradients by
    ~1e-16 instead of ~1e-7, no near-cancelling entry flips Adam's sign, and every generator entry agrees with one
    process of batch 2 to <= 1e-5: what differs in float32 is rounding, not data or sharding."""
    torch.set_num_threads(1)
    ref = distill(distill_cfg("dmd64", tiny_sd_dir, 2), tmp_path / "one", log=lambda s: None)
    _torchrun("distill", "dmd64", str(tiny_sd_dir), str(tmp_path / "dp"), "1", str(tmp_path / "r"))
    r0, r1 = _ranks(tmp_path / "r", "dmd64")
    assert all(p.dtype == torch.float64 for p in r0) and _max_diff(r0, r1) == 0.0
    assert _max_diff(r0, ref.params) <= 1e-5, _max_diff(r0, ref.params)
    moved = torch.cat([(a - b).abs().flatten() for a, b in zip(ref.params, make_initial(tiny_sd_dir))])
    assert (moved > 5e-4).float().mean() > 0.5           # while most entries moved by more than 5e-4
    half = distill(distill_cfg("dmd64", tiny_sd_dir, 1), tmp_path / "half", log=lambda s: None)
    assert _max_diff(r0, half.params) > 1e-4             # and one process of batch 1 ends elsewhere


def test_dmd_data_parallel_resume_under_the_same_world_size(tiny_sd_dir, tmp_path):
    """2 ranks: 2 steps, then --resume to 3 (all ranks read OUT/checkpoint.pt, rank 0 wrote it) = 3 steps in one
    go, bit for bit; the log has each step once."""
    torch.set_num_threads(1)
    _torchrun("distill", "dmd", str(tiny_sd_dir), str(tmp_path / "full"), "1", str(tmp_path / "full"), "3")
    _torchrun("distill", "dmd", str(tiny_sd_dir), str(tmp_path / "split"), "1", str(tmp_path / "a"), "2")
    _torchrun("distill", "dmd", str(tiny_sd_dir), str(tmp_path / "split"), "1", str(tmp_path / "b"), "3", "resume")
    full, resumed = _ranks(tmp_path / "full", "dmd"), _ranks(tmp_path / "b", "dmd")
    assert all(_max_diff(f, r) == 0.0 for f, r in zip(full, resumed))
    assert _max_diff(_ranks(tmp_path / "a", "dmd")[0], full[0]) > 0      # the split run did stop after 2 steps
    lines = (tmp_path / "split" / "log.jsonl").read_text().splitlines()
    assert [json.loads(s)["step"] for s in lines] == [1, 2, 3]


def make_initial(tiny_sd_dir):
    """The generator's initial parameters (init_state's copy of the teacher's UNet)."""
    from guidance import DiffusersTeacher

    from dreamer.distill.trainers.score import init_state

    return init_state(DiffusersTeacher.from_pretrained(tiny_sd_dir), dmd_cfg(tiny_sd_dir, 2)).gen.params


@pytest.fixture(scope="module")
def toy_ranks(tmp_path_factory) -> Path:
    """One torchrun launch: every trainer of TOY_METHODS with 2 ranks of batch 4 (tests/dp_worker.py toy)."""
    d = tmp_path_factory.mktemp("dp_toy")
    r = _launch("toy", str(d / "out"), "4", str(d / "r"))
    if r.returncode != 0 and _gloo_abort(r):            # one fresh launch (new folders) after that abort, no more
        r = _launch("toy", str(d / "out2"), "4", str(d / "r"))
    assert r.returncode == 0, r.stderr[-3000:]
    return d / "r"


def test_map_chunks_deals_chunks_over_the_ranks_and_every_rank_gets_all(toy_ranks):
    """guidance.map_chunks (the regression pairs, the data pool's encodings, reflow's ODE pairs): 4 chunks of
    10 rows dealt to 2 ranks, each rank ends with all 10 in order."""
    for r in (0, 1):
        assert torch.equal(torch.load(f"{toy_ranks}.map_chunks.rank{r}.pt"), torch.arange(10) * 1.5)


@pytest.mark.parametrize("method", TOY_METHODS)
def test_regression_trainer_two_ranks_equal_one_process_of_twice_the_batch(method, toy_ranks, tmp_path):
    """Through the shared path (guidance.shard's row draws, guarded_step's all-reduce): 2 ranks of batch 4 end where
    one process of batch 8 ends (<= 1e-5), and not where one process of batch 4 ends (the ranks saw different
    rows)."""
    torch.set_num_threads(1)
    config = toy_cfg(method, 8)
    ref = TRAINERS[method](toy_teacher(method), config, quiet_run(tmp_path / "one", config))
    r0, r1 = _ranks(toy_ranks, method)
    assert _max_diff(r0, r1) == 0.0
    assert _max_diff(r0, ref.params) <= 1e-5, _max_diff(r0, ref.params)
    config = toy_cfg(method, 4)
    half = TRAINERS[method](toy_teacher(method), config, quiet_run(tmp_path / "h", config))
    assert _max_diff(r0, half.params) > 1e-4


@pytest.mark.parametrize("name", ["add", "dmd_gan"])
def test_adversarial_two_ranks_take_the_steps_of_one_process(name, tiny_sd_dir, tmp_path):
    """ADD and DMD + GAN (a discriminator step beside the generator's) on the tiny SD teacher: each optimizer's first
    gradients (discriminator, generator; DMD: fake score too) equal those of one process with batch 2 up to float32
    summation order, and the ranks stay in step exactly."""
    torch.set_num_threads(1)
    step = torch.optim.AdamW.step
    try:
        firsts = record_first_gradients()
        distill(distill_cfg(name, tiny_sd_dir, 2), tmp_path / "one", log=lambda s: None)
    finally:
        torch.optim.AdamW.step = step
    _torchrun("distill", name, str(tiny_sd_dir), str(tmp_path / "dp"), "1", str(tmp_path / "r"))
    g0, g1 = (torch.load(f"{tmp_path / 'r'}.grads{r}.pt") for r in (0, 1))
    assert len(firsts) == len(g0) == (3 if name == "dmd_gan" else 2)
    for ref_g, dp_g, other in zip(firsts, g0, g1):
        assert _max_diff(dp_g, other) == 0.0
        scale = max(g.abs().max().item() for g in ref_g)
        assert scale > 0 and _max_diff(dp_g, ref_g) <= 1e-5 * scale, (_max_diff(dp_g, ref_g), scale)
    r0, r1 = _ranks(tmp_path / "r", name)
    assert _max_diff(r0, r1) == 0.0


def test_fsdp_two_ranks_shard_the_gradients_of_one_process_of_twice_the_batch(tiny_sd_dir, tmp_path):
    """fsdp: true (float64, EMA): each rank's first gradients are its dim-0 shards (about half the entries) of one
    process's batch-2 gradients, for the fake score and the generator; the final generator (EMA weights, gathered
    from the shards) equals that process's to <= 1e-5, and rank 0's saved folder holds exactly those weights."""
    torch.set_num_threads(1)
    step = torch.optim.AdamW.step
    try:
        firsts = record_first_gradients()
        ref = distill(distill_cfg("dmd64_fsdp", tiny_sd_dir, 2), tmp_path / "one", log=lambda s: None)
    finally:
        torch.optim.AdamW.step = step
    _torchrun("distill", "dmd64_fsdp", str(tiny_sd_dir), str(tmp_path / "dp"), "1", str(tmp_path / "r"))
    g0, g1 = (torch.load(f"{tmp_path / 'r'}.grads{r}.pt") for r in (0, 1))
    assert len(firsts) == len(g0) == len(g1) == 2          # the fake score's first update, the generator's
    for ref_g, a, b in zip(firsts, g0, g1):
        full = sum(g.numel() for g in ref_g)
        assert 0.4 * full < sum(g.numel() for g in a) < 0.6 * full
        joined = [torch.cat([x, y]) for x, y in zip(a, b)]
        scale = max(g.abs().max().item() for g in ref_g)
        assert scale > 0 and _max_diff(joined, ref_g) <= 1e-10 * scale, (_max_diff(joined, ref_g), scale)
    r0, r1 = _ranks(tmp_path / "r", "dmd64_fsdp")
    assert _max_diff(r0, r1) == 0.0 and _max_diff(r0, ref.params) <= 1e-5, _max_diff(r0, ref.params)
    saved = load_generator(tmp_path / "dp" / "generator", dtype=torch.float64)
    assert _max_diff(list(saved.unet.parameters()), r0) == 0.0


def test_fsdp_resume_under_the_same_world_size(tiny_sd_dir, tmp_path):
    """fsdp: true, 2 ranks: 2 steps, then --resume to 3 (full weights and Adam moments in OUT/checkpoint.pt, each
    rank loads its shards) = 3 steps in one go, bit for bit."""
    torch.set_num_threads(1)
    _torchrun("distill", "dmd_fsdp", str(tiny_sd_dir), str(tmp_path / "full"), "1", str(tmp_path / "full"), "3")
    _torchrun("distill", "dmd_fsdp", str(tiny_sd_dir), str(tmp_path / "split"), "1", str(tmp_path / "a"), "2")
    _torchrun("distill", "dmd_fsdp", str(tiny_sd_dir), str(tmp_path / "split"), "1", str(tmp_path / "b"), "3",
              "resume")
    full, resumed = _ranks(tmp_path / "full", "dmd_fsdp"), _ranks(tmp_path / "b", "dmd_fsdp")
    assert all(_max_diff(f, r) == 0.0 for f, r in zip(full, resumed))
    assert _max_diff(_ranks(tmp_path / "a", "dmd_fsdp")[0], full[0]) > 0
