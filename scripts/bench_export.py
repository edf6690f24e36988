"""Textured-export benchmark: export gap, face count, topology and export seconds per asset.  Prints JSON.

    python scripts/bench_export.py --runs runs/a runs/b ...          # existing run folders (checkpoint + config)
    python scripts/bench_export.py --recipes gaussians-sds nerf-sds --prompts "a red cube" ... [--out runs/bx]
                                   [--threads 2] [export.key=value ...]     # trains what is missing, then exports
Per run: the export `dreamer generate` runs (outputs.export_meshes: the vertex-coloured marching-cubes mesh, level
from the renders, vertex bake; then texture.export_textured: tunnel closing, clean-up, decimation, xatlas, texture
bake; the 24 bake views rendered once), timed as a whole (wall and this process's CPU seconds: on a shared machine
the CPU time is the one to compare) and its textured part alone (textured_export_seconds, wall);
export_gap_psnr (textured mesh vs the scene's renders, 8 views at 64 px), export_gap_db (PSNR of the scene vs GT
minus PSNR of the textured mesh vs GT, same views), faces and genus before / after, watertightness.
Per renderer: medians, the slowest export, n.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from dreamer.common.checkpoints import load_checkpoint
from dreamer.common.preflight import slug
from dreamer.text_to_3d.loop import CKPT, CKPT_KEYS, SceneRun, generate
from dreamer.text_to_3d.mesh_clean import topology
from dreamer.text_to_3d.outputs import export_meshes
from dreamer.text_to_3d.recipe import load_generate_config

KEYS = ("export_gap_psnr", "export_gap_db", "textured_psnr_vs_gt", "scene_psnr_vs_gt", "textured_colour_error_vs_gt",
        "raw_faces", "textured_faces", "raw_genus", "genus", "export_seconds", "textured_export_seconds",
        "export_cpu_seconds")


def load_run(run_dir: Path, overrides: list[str]) -> SceneRun:
    """A finished run folder -> SceneRun with its weights (config.yaml + checkpoint.pt; export.* may be overridden)."""
    config = load_generate_config(run_dir / "config.yaml", None, None, overrides)
    run = SceneRun(config)
    run.load_state_dict(load_checkpoint(run_dir / CKPT, CKPT_KEYS))
    return run


def bench_one(run_dir: Path, overrides: list[str]) -> dict:
    """Export one run into run_dir/bench_export/ and measure it."""
    run = load_run(run_dir, overrides)
    config, scene = run.config, run.scene.to("cpu")
    out = run_dir / "bench_export"
    out.mkdir(exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    mesh, level, files, m = export_meshes(config, scene, out, run.world)  # what `dreamer generate` / `export` run
    t1, c1 = time.perf_counter(), time.process_time()
    if "texture_error" in files or "mesh_error" in files:
        raise RuntimeError(f"{run_dir}: {files.get('texture_error') or files['mesh_error']}")
    raw = topology(mesh)
    return {"run": str(run_dir), "renderer": config.renderer, "prompt": config.prompt, "raw_faces": len(mesh.faces),
            "raw_genus": raw["genus"], "raw_watertight": raw["watertight"], **m,
            "vertex_color_export_seconds": round(m["export_seconds"] - m["textured_export_seconds"], 2),
            "export_seconds": round(t1 - t0, 2), "export_cpu_seconds": round(c1 - c0, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="*", default=[])
    ap.add_argument("--recipes", nargs="*", default=[])
    ap.add_argument("--prompts", nargs="+", default=["a red cube", "a blue torus", "a green sphere"])
    ap.add_argument("--out", default="runs/bench_export")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("overrides", nargs="*", help="export.key=value applied to every export")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dirs = [Path(d) for d in args.runs]
    for recipe in args.recipes:  # train what is missing (no export)
        for prompt in args.prompts:
            d = Path(args.out) / recipe / slug(prompt)
            if not (d / CKPT).is_file():
                generate(load_generate_config(recipe, prompt, None, ["train.preview_every=0",
                                                                      f"train.threads={args.threads}"]), d,
                         progress=False)
            dirs.append(d)
    rows = []
    for d in dirs:
        row = bench_one(d, args.overrides)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    summary = {}
    for renderer in sorted({r["renderer"] for r in rows}):
        rs = [r for r in rows if r["renderer"] == renderer]
        med = {k: statistics.median([r[k] for r in rs if r.get(k) is not None]) for k in KEYS
               if any(r.get(k) is not None for r in rs)}
        summary[renderer] = {"n": len(rs), **med, "max_export_seconds": max(r["export_seconds"] for r in rs),
                             "max_export_cpu_seconds": max(r["export_cpu_seconds"] for r in rs),
                             "watertight": sum(bool(r["watertight"]) for r in rs)}
    print(json.dumps({"threads": args.threads, "overrides": args.overrides, "summary": summary, "runs": rows},
                     indent=2))


if __name__ == "__main__":
    main()
