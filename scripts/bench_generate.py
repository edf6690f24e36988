"""Text-to-3D benchmark on the shapes world: each recipe on each prompt, quality vs ground truth.  Prints JSON.

    python scripts/bench_generate.py [--recipes gaussians-sds nerf-sds ...] [--prompts "a red cube" ...]
                                     [--out runs/bench] [key=value overrides applied to every recipe]
Per run: loop wall time, total time (loop + export + evaluation), steps, Chamfer (fraction of GT bbox diagonal),
IoU, colour error, PSNR of 8 views vs GT renders, prompt accuracy of 8 views (shapes evaluator); per recipe: medians
and the slowest run's loop / total time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from dreamer.common.preflight import slug
from dreamer.text_to_3d.recipe import load_generate_config
from dreamer.text_to_3d.loop import generate
from dreamer.text_to_3d.outputs import export_run

DEFAULT_PROMPTS = ["a red cube", "a blue sphere", "a green cylinder", "a yellow cone", "a purple torus",
                   "an orange pyramid", "a blue cube", "a green sphere", "a red cylinder", "a purple cone",
                   "a yellow torus", "a red pyramid"]
KEYS = ("train_seconds", "chamfer", "iou", "colour_error", "psnr_8_views", "prompt_accuracy_8_views")
FLAGS = ("colour_correct",)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", nargs="+", default=["gaussians-sds"])
    ap.add_argument("--prompts", nargs="+", default=DEFAULT_PROMPTS)
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results, summary = [], {}
    for recipe in args.recipes:
        rows = []
        for prompt in args.prompts:
            cfg = load_generate_config(recipe, prompt, None, ["train.preview_every=0"] + args.overrides)
            out = Path(args.out) / f"{recipe}" / slug(prompt)
            t0 = time.time()
            run = generate(cfg, out, progress=False)
            m = export_run(run, out)
            m["total_seconds"] = round(time.time() - t0, 1)
            row = {"recipe": recipe, "prompt": prompt, "steps": m.get("steps"), "total_seconds": m["total_seconds"],
                   **{k: m.get(k) for k in KEYS + FLAGS}}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        med = {k: statistics.median([r[k] for r in rows if r[k] is not None]) for k in KEYS
               if any(r[k] is not None for r in rows)}
        med["max_train_seconds"] = max(r["train_seconds"] for r in rows)
        med["max_total_seconds"] = max(r["total_seconds"] for r in rows)
        med["total_seconds"] = statistics.median(r["total_seconds"] for r in rows)
        med["colour_correct_fraction"] = sum(bool(r["colour_correct"]) for r in rows) / len(rows)
        med["chamfer_le_0.05_and_colour_fraction"] = sum((r["chamfer"] or 1) <= 0.05 and bool(r["colour_correct"])
                                                         for r in rows) / len(rows)
        med["chamfer_le_0.05_fraction"] = sum((r["chamfer"] or 1) <= 0.05 for r in rows) / len(rows)
        summary[recipe] = med
        results += rows
    print(json.dumps({"threads": args.threads, "overrides": args.overrides, "median": summary, "runs": results},
                     indent=2))


if __name__ == "__main__":
    main()
