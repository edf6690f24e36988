"""Teacher DDIM (50 and 1/2/4 steps) vs distilled generators (1/2/4 steps) on the shapes world, timed in one run.

    python scripts/bench_distill.py [--generator runs/dmd --label dmd]... [--n-per-prompt 4] [--seed 0]

Any number of --generator DIR [--label NAME] pairs (DIR: a generator folder or a `dreamer distill` run folder; the
label defaults to the run folder's name); every row uses the same noise z and the same prompts. Each generator
samples with its own recorded sampler (DDIM or re-noising) and guidance. JSON on stdout; a markdown table on
stderr. Metrics: time/image, speedup vs teacher-50, prompt accuracy (shapes evaluator), Frechet distance to GT
renders (evaluator features), per-prompt diversity, accuracy retention vs teacher-50, training wall time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from dreamer.distill.trainers.common import ddim_sample, teacher_clip
from dreamer.distill.generator import generator_folder, load_generator, sample_latents
from dreamer.shapes.evaluator import ShapesEvaluator, diversity, frechet_distance
from dreamer.shapes.render import random_views, render_shapes
from dreamer.shapes.world import catalogue_prompts
from dreamer.common.teacher_source import load_teacher


def _batched(fn, z: torch.Tensor, cond: torch.Tensor, chunk: int) -> torch.Tensor:
    return torch.cat([fn(z[i:i + chunk], cond[i:i + chunk]) for i in range(0, len(z), chunk)])


def generator_dir(path: str) -> tuple[Path, str]:
    """(generator folder, default label) for a generator folder or a run folder holding generator/."""
    folder = generator_folder(path)
    return folder, (folder.parent.name if folder.name == "generator" else folder.name)


def run_method(sample_fn, z, cond, decode, chunk) -> tuple[torch.Tensor, float]:
    """rgb [N,3,H,W] and seconds per image."""
    t0 = time.perf_counter()
    with torch.no_grad():
        rgb = decode(_batched(sample_fn, z, cond, chunk)).float().clamp(0, 1).cpu()  # .cpu() waits for the GPU
    return rgb, (time.perf_counter() - t0) / len(z)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default=None, help="teacher folder (default: the embedded shapes teacher)")
    ap.add_argument("--generator", action="append", default=[],
                    help="generator or run folder (repeatable; rows share noise and prompts)")
    ap.add_argument("--label", action="append", default=[], help="label per --generator, in order (default: folder)")
    ap.add_argument("--n-per-prompt", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cfg", type=float, default=None, help="teacher CFG (default: the teacher's)")
    ap.add_argument("--teacher-steps", type=int, nargs="*", default=[50, 1, 2, 4])
    ap.add_argument("--gen-steps", type=int, nargs="*", default=[1, 2, 4])
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu | cuda (teacher and generators; the evaluator stays on CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.device != "cpu" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: CUDA is not available on this machine")

    teacher = load_teacher(args.teacher, device=args.device)
    evaluator = ShapesEvaluator.load()
    specs, prompts = catalogue_prompts(args.n_per_prompt)  # view-suffixed, as the teacher was trained
    cond = teacher.encode_prompt(prompts)                                     # [N,L,D]
    uncond = teacher.encode_prompt([""])
    res = teacher.unet.config.sample_size
    g = torch.Generator().manual_seed(args.seed)
    z = torch.randn(len(specs), teacher.unet.config.in_channels, res, res, generator=g).to(args.device)  # shared
    v = random_views(len(specs), torch.Generator().manual_seed(args.seed + 1))
    gt, _ = render_shapes(specs, v["elev"], v["azim"], v["dist"], v["fov"], res * (8 if teacher.vae else 1))
    gt_feats = evaluator.features(gt)
    scale = teacher.default_cfg if args.cfg is None else args.cfg
    clip = teacher_clip(teacher)

    if len(args.label) > len(args.generator):
        ap.error("more --label than --generator")
    runs = []
    for n in args.teacher_steps:
        fn = lambda zz, cc, n=n: ddim_sample(teacher, cc, uncond.expand(len(cc), -1, -1), scale, n, zz, clip)
        runs.append((f"teacher-ddim-{n}", n, fn, {"trainer": "teacher", "sampler": "ddim"}))
    labels = args.label + [None] * (len(args.generator) - len(args.label))
    for path, label in zip(args.generator, labels):
        folder, default = generator_dir(path)
        gen = load_generator(folder, device=args.device)
        info = {"trainer": gen.meta.get("method"), "sampler": gen.sampler,
                "train_seconds": gen.meta.get("train_seconds"), "generator": str(folder)}
        for n in args.gen_steps:
            fn = lambda zz, cc, gen=gen, n=n: sample_latents(gen, cc, zz, n, torch.Generator().manual_seed(args.seed))
            runs.append((f"{label or default}-{n}", n, fn, info))

    objects = [s.prompt for s in specs]  # diversity within one catalogue object (its samples span view suffixes)
    rows = []
    for name, steps, fn, info in runs:
        rgb, sec = run_method(fn, z, cond, teacher.decode, args.chunk)
        feats = evaluator.features(rgb)
        rows.append({"method": name, "steps": steps, "sec_per_image": sec,
                     "accuracy": evaluator.prompt_accuracy(rgb, specs), "fd": frechet_distance(feats, gt_feats),
                     "diversity": diversity(feats, objects), **info})
        print(f"{name}: {json.dumps(rows[-1])}", file=sys.stderr)
    ref = next((r for r in rows if r["method"] == "teacher-ddim-50"), rows[0])
    for r in rows:
        r["speedup"] = ref["sec_per_image"] / r["sec_per_image"]
        r["retention"] = r["accuracy"] / ref["accuracy"] if ref["accuracy"] > 0 else float("nan")
    gt_div = diversity(gt_feats, objects)
    out = {"n_images": len(specs), "seed": args.seed, "cfg": scale, "device": str(z.device), "reference": ref["method"],
           "gt_diversity": gt_div, "gt_accuracy": evaluator.prompt_accuracy(gt, specs), "rows": rows}
    print(json.dumps(out, indent=2))
    print("| method | steps | s/img | speedup | accuracy | retention | FD | diversity | train min |", file=sys.stderr)
    print("|---|---|---|---|---|---|---|---|---|", file=sys.stderr)
    for r in rows:
        train = f"{r['train_seconds'] / 60:.1f}" if r.get("train_seconds") else "-"
        print(f"| {r['method']} | {r['steps']} | {r['sec_per_image']:.4f} | {r['speedup']:.1f}x | "
              f"{r['accuracy']:.3f} | {r['retention']:.3f} | {r['fd']:.2f} | {r['diversity']:.3f} | {train} |",
              file=sys.stderr)


if __name__ == "__main__":
    main()
