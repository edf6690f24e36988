"""Per-step cost of SDS / NFSD / VSD relative to one bare batched-CFG teacher forward on the same inputs.

    python scripts/bench_guidance.py [--teacher PATH] [--batch 1] [--repeats 20]   -> JSON on stdout
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from guidance import DiffusersTeacher, GuidanceConfig, LoraScore, Prompts, guidance_step, teacher_cfg


def _time(fn, repeats: int) -> float:
    fn()
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default=None, help="teacher folder (default: the embedded shapes teacher)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from dreamer.teachers import DEFAULT_TEACHER

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

    def bare():
        with torch.no_grad():
            teacher_cfg(teacher, x0, t, prompts, 7.5)

    def step(method, scale):
        cfg = GuidanceConfig(method=method, cfg_scale=scale)

        def run():
            x = x0.clone().requires_grad_(True)
            n = torch.randn(x.shape, generator=g)
            out = guidance_step(teacher, x, prompts, t, n, cfg, aux=lora if method == "vsd" else None, camera=cam)
            out.loss.backward()
            if method == "vsd":
                lora.train_step(x.detach(), prompts.cond, camera=cam, generator=g)
        return run

    base = _time(bare, args.repeats)
    res_ = {"teacher": str(args.teacher or DEFAULT_TEACHER), "batch": B, "threads": args.threads,
            "bare_cfg_forward_s": base}
    for m, s in (("sds", 100.0), ("nfsd", 7.5), ("vsd", 7.5)):
        res_[f"{m}_step_s"] = _time(step(m, s), args.repeats)
        res_[f"{m}_vs_bare"] = res_[f"{m}_step_s"] / base
    res_["vsd_vs_sds"] = res_["vsd_step_s"] / res_["sds_step_s"]
    res_["targets"] = {"sds_vs_bare_max": 1.10, "vsd_vs_sds_max": 2.2}
    print(json.dumps(res_, indent=2))


if __name__ == "__main__":
    main()
