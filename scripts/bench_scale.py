"""Throughput of 1 vs 2 workers on this machine: `dreamer generate --prompts` (prompts/hour, tiny settings) and
data-parallel `dreamer distill` under torchrun (steps/s at the same global batch), and the scaling ratios.

    python scripts/bench_scale.py [--prompts 6] [--distill-steps 8] [--batch 4] [--out runs/bench_scale]

JSON on stdout. Generate: wall time from the workers' start to the last one's exit (each worker imports torch and
loads the teacher: a fixed cost per process). Distill: steps/s between the first and the last logged step (log.jsonl
time_s), so the start-up and the teacher's regression pairs (none here) are left out; 1 process of batch 2b vs
2 ranks (gloo) of batch b. On a machine with fewer cores than workers x threads the workers share the cores, so
the ratio there measures the sharing, not the scaling (the JSON records os.cpu_count()).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAPES = ["cube", "sphere", "torus", "cone", "cylinder", "pyramid"]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
TINY = ["train.steps=20", "camera.resolution=16", "camera.batch=1", "gaussians.n_init=200", "train.threads=1",
        "export.evaluate=false", "export.textured=false", "export.mesh_resolution=24", "export.turntable_frames=4",
        "export.turntable_resolution=32", "train.preview_every=0", "--quiet"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def bench_generate(n: int, workers: int, out: Path) -> dict:
    """n prompts over `workers` CLI processes sharing one manifest; prompts/hour from the wall time."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    prompts = out.parent / f"{out.name}.txt"
    prompts.write_text("\n".join(f"a {COLOURS[i % 6]} {SHAPES[(i // 6 + i) % 6]}" for i in range(n)) + "\n")
    cmd = [sys.executable, "-m", "dreamer", "generate", "--prompts", str(prompts), "--out", str(out), *TINY]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(workers)]
    errs = [p.communicate()[1] for p in procs]
    wall = time.perf_counter() - t0
    if any(p.returncode for p in procs):
        raise SystemExit(f"bench_scale: generate failed: {errs[-1][-500:]}")
    rows = json.loads((out / "manifest.json").read_text())["prompts"]
    done = sum(r["status"] == "done" for r in rows)
    return {"workers": workers, "prompts": done, "wall_s": round(wall, 2),
            "prompts_per_hour": round(3600 * done / wall, 1),
            "mean_seconds_per_prompt_in_worker": round(sum(r["seconds"] for r in rows) / len(rows), 2)}


def bench_distill(steps: int, global_batch: int, workers: int, out: Path) -> dict:
    """DMD on the embedded teacher (no regression pairs), `workers` ranks of batch global_batch / workers."""
    shutil.rmtree(out, ignore_errors=True)
    args = ["--config", "distill-dmd", "--out", str(out), "--quiet", f"steps={steps}",
            f"batch={global_batch // workers}", "threads=1", "regression_weight=0", "rollout_regression_weight=0",
            "log_every=1"]
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(workers)]
              if workers > 1 else [sys.executable])
    t0 = time.perf_counter()
    r = subprocess.run([*launch, "-m", "dreamer", "distill", *args], env=_env(), cwd=ROOT, capture_output=True,
                       text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"bench_scale: distill failed: {r.stderr[-800:]}")
    log = [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]
    span = log[-1]["time_s"] - log[0]["time_s"]
    return {"workers": workers, "batch_per_worker": global_batch // workers, "global_batch": global_batch,
            "steps": len(log), "wall_s": round(wall, 2),
            "steps_per_s": round((len(log) - 1) / span, 4) if span > 0 else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--distill-steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4, help="global distillation batch (even)")
    ap.add_argument("--out", default="runs/bench_scale")
    a = ap.parse_args()
    root = Path(a.out)
    g = [bench_generate(a.prompts, w, root / f"generate_{w}") for w in (1, 2)]
    d = [bench_distill(a.distill_steps, a.batch, w, root / f"distill_{w}") for w in (1, 2)]
    ratio = (lambda k, rows: round(rows[1][k] / rows[0][k], 3) if rows[0][k] and rows[1][k] else None)
    print(json.dumps({
        "cpu_count": os.cpu_count(),
        "note": (f"{os.cpu_count()} CPU cores: with 2 workers x 1 thread on a 2-core machine (shared with other "
                 f"load) the workers share the cores; the ratio is the sharing, not the scaling of a larger machine"),
        "generate": g, "generate_scaling": ratio("prompts_per_hour", g),
        "distill": d, "distill_scaling": ratio("steps_per_s", d),
    }, indent=1))


if __name__ == "__main__":
    main()
