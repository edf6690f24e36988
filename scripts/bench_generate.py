"""Text-to-3D benchmark on the shapes world: each recipe on each prompt (and training seed), quality vs ground truth,
the success rate with its 95 % interval.  Prints JSON.

    python scripts/bench_generate.py [--recipes gaussians-sds nerf-sds ...] [--prompts "a red cube" ... | --all]
                                     [--seeds N | --seed-list 0 3 5] [--out runs/bench] [--resume]
                                     [key=value overrides applied to every recipe]
Prompts: the 12 default prompts (6 shapes x 6 colours, each colour twice) or --all 36 catalogue objects; seeds:
train.seed 0..N-1 (--seeds) or the listed ones (default: the recipe's own seed). Runs go to OUT/RECIPE/PROMPT[/seed-S];
--resume skips runs whose metrics.json exists (and continues an interrupted one from its checkpoint), so a long
benchmark can be continued in another session; --report-only trains nothing: it summarises the finished runs and
lists the missing ones (a benchmark still running, e.g. in other processes); --judge-glb also scores each run's
textured, cleaned mesh.glb with the strict test (glb_right / glb_reasons per row, glb_success per recipe), beside
the verdict on mesh.ply that metrics.json carries. Per run (the JSON's "runs"): recipe, prompt, seed, loop / total
seconds and every metric of metrics.json (Chamfer as a fraction of the GT bbox diagonal, IoU, colour error, PSNR and
prompt accuracy of 8 views, the strict `right` flag and its `reasons`). Per recipe: the success rate (`right`) with
its Wilson interval (several seeds: pooled counts, min-max over seeds; null with a note when metrics.json has no
`right`), the old fractions, the fractions with the right shape (nearest primitive) and the right genus, the medians
(F@2%, IoU, Chamfer, ...), and the slowest run's loop / total time. --cost-steps N adds `step_cost` per recipe
(scripts/step_cost.py): seconds per step in the teacher's forward, the render's forward, the backward and the rest,
over steps 5 .. 5+N of a separate run of the first prompt, and the ratio to the floor (one CFG teacher forward plus
one render forward and backward).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from dreamer.cli import _Parser
from dreamer.common.errors import DreamerError, one_line
from dreamer.common.preflight import slug
from dreamer.shapes.benchmark import success_rate
from dreamer.shapes.stats import rate
from dreamer.shapes.strict import load_mesh_file, strict_report
from dreamer.shapes.world import catalogue, parse_prompt
from dreamer.text_to_3d.loop import generate
from dreamer.text_to_3d.outputs import export_run
from dreamer.text_to_3d.recipe import load_generate_config

DEFAULT_PROMPTS = ["a red cube", "a blue sphere", "a green cylinder", "a yellow cone", "a purple torus",
                   "an orange pyramid", "a blue cube", "a green sphere", "a red cylinder", "a purple cone",
                   "a yellow torus", "a red pyramid"]
KEYS = ("train_seconds", "chamfer", "fscore_2pct", "iou", "colour_error", "psnr_8_views", "prompt_accuracy_8_views")
ROW = "bench_row.json"  # the row as this script recorded it (total_seconds included), beside metrics.json


def parse_args(argv=None):
    ap = _Parser(prog="bench_generate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", nargs="+", default=["gaussians-sds"])
    ap.add_argument("--prompts", nargs="+", default=None, help="default: the 12 benchmark prompts")
    ap.add_argument("--all", action="store_true", help="all 36 catalogue prompts")
    ap.add_argument("--seeds", type=int, default=None, help="train.seed 0..N-1")
    ap.add_argument("--seed-list", type=int, nargs="+", default=None, help="these train.seed values")
    ap.add_argument("--resume", action="store_true", help="skip runs whose metrics.json exists; continue the rest")
    ap.add_argument("--judge-glb", action="store_true", help="also score every run's mesh.glb with the strict test")
    ap.add_argument("--report-only", action="store_true",
                    help="train nothing: summarise the runs that have a metrics.json, list the others as missing")
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cost-steps", type=int, default=0,
                    help="> 0: per recipe, time this many loop steps of a separate run (first prompt and seed) and "
                         "report the per-step cost breakdown and its ratio to the floor (summary's step_cost)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    if args.all and args.prompts:
        ap.error("--all and --prompts: give one")
    if args.seeds is not None and args.seed_list is not None:
        ap.error("--seeds and --seed-list: give one")
    if args.cost_steps < 0 or (args.cost_steps and args.report_only):
        ap.error("--cost-steps must be >= 0, and --report-only trains nothing (no --cost-steps)")
    if (args.seeds is not None and args.seeds < 1) or any(s < 0 for s in args.seed_list or []):
        ap.error("--seeds must be >= 1 and --seed-list values >= 0")
    if any(o.split("=")[0].strip() == "train.seed" for o in args.overrides) and (args.seeds or args.seed_list):
        ap.error("train.seed=... and --seeds / --seed-list: give one")
    odd = [p for p in (args.prompts or []) + args.recipes if "=" in p]
    if odd:
        ap.error(f"{odd[0]!r} looks like a key=value override swallowed by --prompts / --recipes; put overrides "
                 f"before those flags")
    args.prompts = [s.prompt for s in catalogue()] if args.all else (args.prompts or DEFAULT_PROMPTS)
    args.seed_values = (list(range(args.seeds)) if args.seeds else args.seed_list) or [None]  # None: the recipe's
    return args


def plan(args) -> list[tuple[str, str, object, Path, object]]:
    """(recipe, prompt, seed, run folder, config) for every run, all configs checked before anything runs."""
    jobs = []
    for recipe in args.recipes:
        for prompt in args.prompts:
            for seed in args.seed_values:
                extra = [] if seed is None else [f"train.seed={seed}"]
                config = load_generate_config(recipe, prompt, None, ["train.preview_every=0"] + args.overrides + extra)
                out = Path(args.out) / recipe / slug(prompt) / ("" if seed is None else f"seed-{seed}")
                if (out / "metrics.json").is_file() and not (args.resume or args.report_only):
                    raise DreamerError(f"{out} already holds results; pass --resume to keep them (runs with a "
                                       f"metrics.json are skipped) or choose another --out")
                jobs.append((recipe, prompt, seed, out, config))
    return jobs


def make_row(recipe: str, prompt: str, config, m: dict, total: float | None, how: str) -> dict:
    """One run's row: what it was, its times, and every metric of its metrics.json (not the file list)."""
    return {"recipe": recipe, "prompt": prompt, "seed": config.train.seed, "steps": m.get("steps"),
            "total_seconds": total, "run": how, **{k: v for k, v in m.items() if k not in ("files", "prompt")}}


def run_one(recipe, prompt, seed, out: Path, config, resume: bool) -> dict:
    if resume and (out / "metrics.json").is_file():  # metrics.json may be newer (`dreamer export`) than ROW
        total = json.loads((out / ROW).read_text()).get("total_seconds") if (out / ROW).is_file() else None
        return make_row(recipe, prompt, config, json.loads((out / "metrics.json").read_text()), total,
                        "skipped (done before)")
    cont = resume and (out / "checkpoint.pt").is_file()
    t0 = time.time()
    run = generate(config, out, resume=cont, progress=False)
    m = export_run(run, out)
    row = make_row(recipe, prompt, config, m, round(time.time() - t0, 1), "continued" if cont else "ran")
    (out / ROW).write_text(json.dumps(row, indent=2))
    return row


def judge_glb(glb: Path, prompt: str) -> dict:
    """The strict verdict on a run's textured mesh.glb (what a user opens first): glb_right, glb_reasons, glb_genus."""
    if not glb.is_file():
        return {"glb_right": False, "glb_reasons": ["no mesh.glb"]}
    rep = strict_report(load_mesh_file(glb), parse_prompt(prompt))
    return {"glb_right": rep["right"], "glb_reasons": rep["reasons"], "glb_genus": rep["genus"]}


def _median(rows, k):
    vals = [r[k] for r in rows if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)]
    return statistics.median(vals) if vals else None


def summarise(rows: list[dict]) -> dict:
    """Per recipe: success rate (strict `right`) with its interval, the old fractions (with intervals) and medians."""
    n = len(rows)
    s, note = success_rate(rows)
    med = {"runs": n, "success": s, **({"success_note": note} if note else {})}
    if rows and all("glb_right" in r for r in rows):
        med["glb_success"] = success_rate(rows, "glb_right")[0]
    med.update({k: _median(rows, k) for k in KEYS + ("total_seconds",)})
    for k, src in (("max_train_seconds", "train_seconds"), ("max_total_seconds", "total_seconds")):
        vals = [r[src] for r in rows if r.get(src) is not None]
        med[k] = max(vals) if vals else None
    fractions = {"colour_correct": [bool(r.get("colour_correct")) for r in rows],
                 "chamfer_le_0.05": [r.get("chamfer") is not None and r["chamfer"] <= 0.05 for r in rows]}
    fractions["chamfer_le_0.05_and_colour"] = [a and b for a, b in zip(*fractions.values())]
    fractions.update({k: [bool(r.get(k)) for r in rows] for k in ("shape_correct", "topology_correct")})
    for k, flags in fractions.items():
        med[f"{k}_fraction"] = sum(flags) / n
        med[k] = rate(sum(flags), n)
    return med


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        jobs = plan(args)
        rows, missing = [], []
        for recipe, prompt, seed, out, config in jobs:
            if args.report_only and not (out / "metrics.json").is_file():
                missing.append({"recipe": recipe, "prompt": prompt, "seed": seed})
                continue
            rows.append(run_one(recipe, prompt, seed, out, config, args.resume or args.report_only))
            if args.judge_glb:
                rows[-1].update(judge_glb(out / "mesh.glb", prompt))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    except (DreamerError, ValueError, OSError) as e:
        print(f"dreamer: error: {one_line(e)}", file=sys.stderr)
        return 2
    summary = {r: summarise([x for x in rows if x["recipe"] == r]) for r in args.recipes
               if any(x["recipe"] == r for x in rows)}
    if args.cost_steps:
        from step_cost import step_cost
        for recipe in args.recipes:
            config = next(c for r, _, _, _, c in jobs if r == recipe)
            summary.setdefault(recipe, {})["step_cost"] = step_cost(config, args.cost_steps)
    print(json.dumps({"threads": args.threads, "overrides": args.overrides, "prompts": args.prompts,
                      "seeds": args.seed_values, "interval": "95 % Wilson score", "summary": summary,
                      **({"missing": missing} if args.report_only else {}), "runs": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
