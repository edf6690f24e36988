"""Soak test: many short generations in one process (Python API); resident memory must stay within a bound.

    OMP_NUM_THREADS=1 python scripts/soak_generate.py [--runs 50] [--steps 10] [--bound-mb 16] [--no-export]

One teacher is loaded once and shared by every run (as a long-lived service would); each run builds its own
scene, optimiser and run folder (in a temp dir, deleted afterwards), checkpoints atomically every 5 steps and, unless
--no-export, exports mesh / turntable / report (with the ground-truth metrics on every 5th run: they cost more than
the run). RSS is read after each run, after gc.collect() (psutil if installed, else VmRSS from /proc/self/status).

RSS after a run swings by ~100-200 MB (allocator pools are kept or returned at the allocator's whim), so growth is
measured on the floor: min RSS of the last half of the measured runs minus min RSS of the first half, the measured
runs being the last 40 (the first ones fill pools, lazy imports and caches). Prints JSON; exits 1 if that growth
exceeds --bound-mb. The least-squares slope over the measured runs (MB/run) is reported too.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = ["a red cube", "a blue sphere", "a green cylinder", "a yellow cone", "a purple torus"]


def rss_mb() -> float:
    """Resident set size of this process in MiB."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2 ** 20
    except ImportError:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("cannot read resident memory (no psutil, no /proc)") from None


def slope(ys: list[float]) -> float:
    """Least-squares slope of ys against 0..n-1."""
    n = len(ys)
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((i - mx) * (y - my) for i, y in enumerate(ys)) / max(sum((i - mx) ** 2 for i in range(n)), 1e-9)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--bound-mb", type=float, default=16.0, help="allowed RSS floor growth over the last 40 runs")
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--leak-mb", type=float, default=0.0, help="self-check: deliberately keep this much per run")
    args = ap.parse_args()

    import torch

    from dreamer.text_to_3d.recipe import load_generate_config
    from dreamer.text_to_3d.loop import generate
    from dreamer.text_to_3d.outputs import export_run
    from dreamer.common.teacher_source import load_teacher

    torch.set_num_threads(1)
    start = rss_mb()
    teacher = load_teacher()
    over = [f"train.steps={args.steps}", "train.checkpoint_every=5", "train.preview_every=0", "train.threads=1",
            "camera.resolution=16", "camera.batch=1", "gaussians.n_init=200", "export.mesh_resolution=24",
            "export.turntable_frames=4", "export.turntable_resolution=32"]
    rss, t0, leaked = [], time.time(), []
    for i in range(args.runs):
        extra = [f"train.seed={i}", f"export.evaluate={str(i % 5 == 0).lower()}"]
        config = load_generate_config("gaussians-sds", PROMPTS[i % len(PROMPTS)], None, over + extra)
        with tempfile.TemporaryDirectory(prefix="soak-") as out:
            run = generate(config, out, progress=False, teacher=teacher)
            if not args.no_export:
                export_run(run, out)
        leaked.append(torch.ones(int(args.leak_mb * 2 ** 18)))  # float32: 2^18 per MiB
        del run
        gc.collect()
        rss.append(round(rss_mb(), 1))
    tail = rss[-40:] if len(rss) > 40 else rss[len(rss) // 5:]
    half = len(tail) // 2
    growth = round(min(tail[half:]) - min(tail[:half]), 1)
    report = {"runs": args.runs, "steps": args.steps, "export": not args.no_export, "seconds": round(time.time() - t0),
              "rss_mb": {"start": round(start, 1), "after_first": rss[0], "max": max(rss), "final": rss[-1],
                         "floor_growth_last_40": growth, "slope_per_run_last_40": round(slope(tail), 3),
                         "bound": args.bound_mb}, "per_run": rss}
    print(json.dumps(report))
    return 0 if growth <= args.bound_mb else 1


if __name__ == "__main__":
    sys.exit(main())
