"""Per-step cost of every guidance method relative to one bare batched-CFG teacher forward and to SDS, with the
teacher forwards each step makes (images through the UNet per rendered image, counted, not assumed).

    python scripts/bench_guidance.py [--teacher PATH] [--batch 1] [--repeats 20] [--methods sds ism ...]
                                                                                          -> JSON on stdout
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from guidance import DiffusersTeacher, GuidanceConfig, LoraScore, Prompts, score_distillation_step, teacher_cfg

# row name -> (guidance method, CFG scale, extra GuidanceConfig settings); SDS at threestudio's CFG 100, the
# others at their papers' nominal 7.5. ProlificDreamer's separate LoRA draw and the opt-in extras get own rows.
ROWS = {
    "sds": ("sds", 100.0, {}),
    "nfsd": ("nfsd", 7.5, {}),
    "csd": ("csd", 7.5, {}),
    "csd_negative": ("csd", 7.5, {"csd_negative_scale": 1.0}),
    "ism": ("ism", 7.5, {}),
    "sdi": ("sdi", 7.5, {}),
    "sds_perp_neg": ("sds", 100.0, {"cfg_mode": "perp_neg"}),
    "vsd": ("vsd", 7.5, {}),
    "vsd_separate_pass": ("vsd", 7.5, {"aux_shared_pass": False}),
}


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


class _Counting:
    """The teacher with a tally of images through eps (each row of a batched pass counts once)."""

    def __init__(self, teacher):
        self.teacher, self.rows = teacher, 0

    def __getattr__(self, name):
        return getattr(self.teacher, name)

    def eps(self, x_t, t, cond, **kw):
        self.rows += x_t.shape[0]
        return self.teacher.eps(x_t, t, cond, **kw)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench_guidance.py")
    ap.add_argument("--teacher", default=None, help="teacher folder (default: the embedded shapes teacher)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--t", type=int, default=500, help="the one timestep every call uses (same work per call)")
    ap.add_argument("--methods", nargs="+", default=list(ROWS), help=f"rows to time (sds always): {', '.join(ROWS)}")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: process CPU time (robust to other jobs on a shared machine; use with --threads 1)")
    a = ap.parse_args(argv)
    bad = [m for m in a.methods if m not in ROWS]
    if bad or a.batch < 1 or a.repeats < 1 or a.threads < 1 or not 0 < a.t < 1000:
        why = (f"unknown row {bad[0]!r} (choose from {', '.join(ROWS)})" if bad
               else "--batch, --repeats and --threads must be >= 1 and --t in 1..999")
        print(f"dreamer: error: {why}", file=sys.stderr)
        raise SystemExit(2)
    a.methods = ["sds"] + [m for m in a.methods if m != "sds"]
    return a


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from dreamer.common.view_prompts import perp_neg_embeddings
    from dreamer.common.teacher_source import DEFAULT_TEACHER

    teacher = DiffusersTeacher.from_pretrained(args.teacher or DEFAULT_TEACHER)
    B = args.batch
    g = torch.Generator().manual_seed(0)
    size = teacher.unet.config.sample_size * teacher.vae_scale_factor
    rgb = torch.rand(B, 3, size, size, generator=g)
    _, views, weights = perp_neg_embeddings(teacher.encode_prompt, "a red cube", [45.0] * B)
    prompts = Prompts(teacher.encode_prompt(["a red cube, front view"] * B), teacher.encode_prompt([""] * B),
                      teacher.encode_prompt([GuidanceConfig().negative_prompt] * B), views=views, view_weights=weights)
    cam = torch.randn(B, 16, generator=g)
    lora = LoraScore(teacher)
    x0 = teacher.encode(rgb).detach()
    t = torch.full((B,), args.t)  # fixed t: every call does the same work (NFSD's extra pass is batched at any t)
    t_frac = args.t / teacher.num_train_timesteps
    counting = _Counting(teacher)

    def bare():
        with torch.no_grad():
            teacher_cfg(teacher, x0, t, prompts, 7.5)

    def step(name, tch=teacher):
        # the step both loops run (t, noise, teacher pass(es), grad, LoRA update for VSD), at one fixed t
        method, scale, extra = ROWS[name]
        config = GuidanceConfig(method=method, cfg_scale=scale, t_min=t_frac, t_max=t_frac, **extra)

        def run():
            x = x0.clone().requires_grad_(True)
            out = score_distillation_step(tch, x, prompts, config, g, aux=lora if method == "vsd" else None,
                                          **({"camera": cam} if method == "vsd" else {}))
            out.loss.backward()
        return run

    forwards = {}
    for name in args.methods:                 # one untimed step each through the counting teacher
        counting.rows = 0
        step(name, counting)()
        forwards[name] = counting.rows / B
    times = _time_interleaved({"bare": bare, **{name: step(name) for name in args.methods}}, args.repeats,
                              time.perf_counter if args.clock == "wall" else time.process_time)
    base, sds = times["bare"], times["sds"]
    res = {"teacher": str(args.teacher or DEFAULT_TEACHER), "batch": B, "threads": args.threads, "t": args.t,
           "clock": args.clock, "repeats": args.repeats, "bare_cfg_forward_s": base,
           "teacher_forwards_note": "UNet images per rendered image per step (VSD's LoRA passes not counted)"}
    for name in args.methods:
        res[f"{name}_step_s"] = times[name]
        res[f"{name}_vs_bare"] = times[name] / base
        res[f"{name}_vs_sds"] = times[name] / sds
        res[f"{name}_teacher_forwards"] = forwards[name]
        res[f"{name}_extra_forwards_vs_sds"] = forwards[name] - forwards["sds"]
    res["targets"] = {"sds_vs_bare_max": 1.10, "vsd_vs_sds_max": 2.2}
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
