"""Per-step cost of SDS / NFSD / VSD relative to one bare batched-CFG teacher forward on the same inputs.

    python scripts/bench_guidance.py [--teacher PATH] [--batch 1] [--repeats 20]   -> JSON on stdout
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from guidance import DiffusersTeacher, GuidanceConfig, LoraScore, Prompts, score_distillation_step, teacher_cfg


def _time_interleaved(fns: dict, repeats: int, clock) -> dict[str, float]:
    """Median seconds per call of each fn, calls interleaved round-robin so background load hits all alike."""
    for fn in fns.values():
        fn()
        fn()
    ts = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = clock()
            fn()
            ts[k].append(clock() - t0)
    return {k: statistics.median(v) for k, v in ts.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default=None, help="teacher folder (default: the embedded shapes teacher)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: process CPU time (robust to other jobs on a shared machine; use with --threads 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from dreamer.common.teacher_source import DEFAULT_TEACHER

    teacher = DiffusersTeacher.from_pretrained(args.teacher or DEFAULT_TEACHER)
    B, res = args.batch, teacher.unet.config.sample_size
    g = torch.Generator().manual_seed(0)
    size = res * teacher.vae_scale_factor
    rgb = torch.rand(B, 3, size, size, generator=g)
    prompts = Prompts(teacher.encode_prompt(["a red cube, front view"] * B), teacher.encode_prompt([""] * B),
                      teacher.encode_prompt([GuidanceConfig().negative_prompt] * B))
    cam = torch.randn(B, 16, generator=g)
    lora = LoraScore(teacher)
    x0 = teacher.encode(rgb).detach()
    t = torch.full((B,), 500)  # fixed t: every call does the same work (NFSD's extra pass is batched at any t)
    t_frac = 500 / teacher.num_train_timesteps

    def bare():
        with torch.no_grad():
            teacher_cfg(teacher, x0, t, prompts, 7.5)

    def step(method, scale, **extra):
        # the step both loops run (t, noise, teacher pass(es), grad, LoRA update for VSD), at one fixed t
        cfg = GuidanceConfig(method=method, cfg_scale=scale, t_min=t_frac, t_max=t_frac, **extra)

        def run():
            x = x0.clone().requires_grad_(True)
            out = score_distillation_step(teacher, x, prompts, cfg, g, aux=lora if method == "vsd" else None,
                                          **({"camera": cam} if method == "vsd" else {}))
            out.loss.backward()
        return run

    rows = (("sds", 100.0, {}), ("nfsd", 7.5, {}), ("vsd", 7.5, {}),
            ("vsd_separate_pass", 7.5, {"aux_shared_pass": False}))  # ProlificDreamer's separate LoRA draw
    times = _time_interleaved({"bare": bare, **{name: step(name.split("_")[0], s, **extra)
                                                for name, s, extra in rows}}, args.repeats,
                              time.perf_counter if args.clock == "wall" else time.process_time)
    base = times["bare"]
    res_ = {"teacher": str(args.teacher or DEFAULT_TEACHER), "batch": B, "threads": args.threads,
            "clock": args.clock, "bare_cfg_forward_s": base}
    for name, _, _ in rows:
        res_[f"{name}_step_s"] = times[name]
        res_[f"{name}_vs_bare"] = times[name] / base
    res_["vsd_vs_sds"] = res_["vsd_step_s"] / res_["sds_step_s"]
    res_["vsd_separate_pass_vs_sds"] = res_["vsd_separate_pass_step_s"] / res_["sds_step_s"]
    res_["targets"] = {"sds_vs_bare_max": 1.10, "vsd_vs_sds_max": 2.2}
    print(json.dumps(res_, indent=2))


if __name__ == "__main__":
    main()
