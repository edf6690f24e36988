"""Teacher DDIM (50 and 1/2/4 steps) vs distilled generators (1/2/4 steps) on the shapes world, timed in one run,
every rate with its 95 % interval.

    python scripts/bench_distill.py [--generator runs/dmd --label dmd]... [--repeats 7] [--objects 36]
                                    [--seed-z 0] [--seed-noise 0] [--fd-boot 200]

Images: every catalogue object (36, or --objects K spread over shapes and colours) x the 4 view-suffixed prompts x
--repeats (default 7: 1,008 images per row; --n-per-prompt N keeps the old layout of N images per object). Every row
uses the same initial noise z (--seed-z) and prompts; few-step samplers that re-noise draw that noise from
--seed-noise, one stream per row. Any number of --generator DIR [--label NAME] (DIR: a generator or `dreamer distill`
run folder; label default: the run folder's name); one label on several generators (training seeds) gives a row
per seed and a pooled row (mean accuracy, Wilson interval on the pooled counts, min-max over seeds). --rows JSON...
adds the rows of earlier runs with the same images, seeds and CFG (e.g. one run per generator as each finishes
training, merged at the end; pooling is the same), each marked with its file: its s/img was timed in that run.
Metrics: time/image, speedup vs teacher-50 (rows timed in its run only), prompt accuracy (shapes evaluator) with its
Wilson interval, Frechet distance to GT renders (evaluator features) with a percentile-bootstrap interval (both
image sets resampled within each object, --fd-boot draws, shifted by the bootstrap's bias estimate: resampling alone
inflates FD), per-object diversity, accuracy retention vs teacher-50, whether the rate differs from teacher-50's
beyond both intervals, saw_gt_renders (training used GT shapes-world renders), training time. JSON on stdout; a markdown table on stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from threadpoolctl import threadpool_limits

from dreamer.cli import _Parser
from dreamer.common.errors import DreamerError, one_line
from dreamer.common.teacher_source import load_teacher
from dreamer.distill.generator import generator_folder, load_generator, sample_latents
from dreamer.distill.trainers.toolkit import ddim_sample, teacher_clip
from dreamer.shapes.benchmark import (benchmark_objects, benchmark_prompts, group_labels, pool_rows, run_files,
                                      saw_gt_renders)
from dreamer.shapes.evaluator import ShapesEvaluator, diversity, frechet_distance, prompt_correct
from dreamer.shapes.render import random_views, render_shapes
from dreamer.shapes.stats import bootstrap_interval, rate, rates_differ


def _batched(fn, z: torch.Tensor, cond: torch.Tensor, chunk: int) -> torch.Tensor:
    return torch.cat([fn(z[i:i + chunk], cond[i:i + chunk]) for i in range(0, len(z), chunk)])


def generator_dir(path: str):
    """(generator folder, default label) for a generator folder or a run folder holding generator/."""
    folder = generator_folder(path)
    return folder, (folder.parent.name if folder.name == "generator" else folder.name)


def run_method(sample_fn, z, cond, decode, chunk) -> tuple[torch.Tensor, float]:
    """rgb [N,3,H,W] and seconds per image."""
    t0 = time.perf_counter()
    with torch.no_grad():
        rgb = decode(_batched(sample_fn, z, cond, chunk)).float().clamp(0, 1).cpu()  # .cpu() waits for the GPU
    return rgb, (time.perf_counter() - t0) / len(z)


def parse_args(argv=None):
    ap = _Parser(prog="bench_distill.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default=None, help="teacher folder (default: the embedded shapes teacher)")
    ap.add_argument("--generator", action="append", default=[],
                    help="generator or run folder (repeatable; rows share noise and prompts)")
    ap.add_argument("--label", action="append", default=[],
                    help="label per --generator, in order (default: folder); repeat a label to pool seeds")
    ap.add_argument("--repeats", type=int, default=None, help="images per object and view suffix (default 7)")
    ap.add_argument("--objects", type=int, default=36, help="catalogue objects (default all 36)")
    ap.add_argument("--n-per-prompt", type=int, default=None, help="old layout: N images per object (not --repeats)")
    ap.add_argument("--seed-z", type=int, default=0, help="initial noise z (the same for every row)")
    ap.add_argument("--seed-noise", type=int, default=0, help="re-noising noise of few-step samplers")
    ap.add_argument("--seed", type=int, default=None, help="sets both --seed-z and --seed-noise")
    ap.add_argument("--fd-boot", type=int, default=200, help="bootstrap draws for the FD interval")
    ap.add_argument("--cfg", type=float, default=None, help="teacher CFG (default: the teacher's)")
    ap.add_argument("--teacher-steps", type=int, nargs="*", default=[50, 1, 2, 4])
    ap.add_argument("--rows", nargs="*", default=[], metavar="JSON",
                    help="add the rows of earlier runs' JSON (same images, seeds and CFG), e.g. one file per generator")
    ap.add_argument("--gen-steps", type=int, nargs="*", default=[1, 2, 4])
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu | cuda (teacher and generators; the evaluator stays on CPU)")
    args = ap.parse_args(argv)
    if args.seed is not None:
        args.seed_z = args.seed_noise = args.seed
    if args.n_per_prompt is not None and args.repeats is not None:
        ap.error("--n-per-prompt and --repeats are two layouts; give one")
    repeats = 7 if args.repeats is None else args.repeats
    args.per_object = args.n_per_prompt if args.n_per_prompt is not None else 4 * repeats
    if args.per_object < 1 or not 1 <= args.objects <= 36 or args.chunk < 1 or args.threads < 1:
        ap.error("--repeats / --n-per-prompt, --chunk, --threads must be >= 1 and --objects in 1..36")
    if args.fd_boot < 2:
        ap.error(f"--fd-boot must be >= 2, got {args.fd_boot}")
    if len(args.label) > len(args.generator):
        ap.error("more --label than --generator")
    if args.device != "cpu" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: CUDA is not available on this machine")
    return args


def generator_runs(args):
    """(label, [(gen, folder, info)]) per label, in first-seen order; info: what the rows record."""
    labels = args.label + [None] * (len(args.generator) - len(args.label))
    loaded = []
    for path, label in zip(args.generator, labels):
        folder, default = generator_dir(path)
        gen = load_generator(folder, device=args.device)
        config, _ = run_files(folder)
        saw, why = saw_gt_renders(folder)
        loaded.append((label or default, gen, {
            "trainer": gen.meta.get("method"), "sampler": gen.sampler, "train_seconds": gen.meta.get("train_seconds"),
            "generator": str(folder), "train_seed": config.get("seed"), "saw_gt_renders": saw, "saw_gt_why": why}))
    return [(label, [loaded[i][1:] for i in idx]) for label, idx in group_labels([x[0] for x in loaded]).items()]


def score(name, rgb, sec, evaluator, specs, gt_feats, objects, args) -> dict:
    feats = evaluator.features(rgb)
    acc = rate(int(prompt_correct(evaluator, rgb, specs).sum()), len(specs))
    fd_lo, fd_hi = bootstrap_interval(frechet_distance, feats, gt_feats, n_boot=args.fd_boot, seed=args.seed_z,
                                      strata=objects, debias=True)  # within each object; shifted by the bias
    return {"method": name, "sec_per_image": sec, "accuracy": acc["rate"], "accuracy_lo": acc["lo"],
            "accuracy_hi": acc["hi"], "correct": acc["k"], "n": acc["n"], "fd": frechet_distance(feats, gt_feats),
            "fd_lo": fd_lo, "fd_hi": fd_hi, "diversity": diversity(feats, objects)}


def _ci(lo, hi, digits):
    return "" if lo is None else f" [{lo:.{digits}f}, {hi:.{digits}f}]"


SETTINGS = ("n_images", "objects", "images_per_object", "seed_z", "seed_noise", "cfg", "fd_boot")


def saved_rows(args) -> list[dict]:
    """The measured (not pooled) rows of earlier runs' JSON (--rows), which must share this run's images, noise,
    CFG and bootstrap settings; each keeps its file in `from_file` (its s/img was timed in that run)."""
    out = []
    for path in args.rows:
        try:
            d = json.loads(open(path).read())
            theirs, ours = {k: d[k] for k in SETTINGS}, {k: args.settings[k] for k in SETTINGS}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"--rows {path}: not a bench_distill JSON ({one_line(e)})") from None
        diff = ", ".join(f"{k} {theirs[k]} vs {ours[k]}" for k in SETTINGS if theirs[k] != ours[k])
        if diff:
            raise ValueError(f"--rows {path}: made with other settings ({diff})")
        out += [{**r, "from_file": str(path)} for r in d["rows"] if not r.get("pooled")]
    return out


def with_pooled(rows: list[dict]) -> list[dict]:
    """Rows of one label and step count from several generators (training seeds) are renamed LABEL-s<seed>-N
    (or -g<j> when seeds repeat) and followed by their pooled row (shapes.benchmark.pool_rows)."""
    groups: dict = {}
    for r in rows:
        if r.get("label") != "teacher":
            groups.setdefault((r["label"], r["steps"]), []).append(r)
    out = [r for r in rows if r.get("label") == "teacher"]
    for (label, n), members in groups.items():
        seeds = [r.get("train_seed") for r in members]
        unique = None not in seeds and len(set(seeds)) == len(seeds)
        if len(members) > 1:
            for j, r in enumerate(members):
                r["method"] = f"{label}-{f's{seeds[j]}' if unique else f'g{j}'}-{n}"
        out += members + ([pool_rows(label, n, members)] if len(members) > 1 else [])
    return out


def print_table(rows) -> None:
    print("| method | steps | s/img | speedup | accuracy [95 % CI] | retention | FD [95 % CI] | diversity | saw GT | "
          "train min |", file=sys.stderr)
    print("|---|---|---|---|---|---|---|---|---|---|", file=sys.stderr)
    for r in rows:
        train = f"{r['train_seconds'] / 60:.1f}" if r.get("train_seconds") else "-"
        acc = f"{r['accuracy']:.3f}{_ci(r['accuracy_lo'], r['accuracy_hi'], 3)}"
        if r.get("pooled"):
            acc += f" (seeds {r['accuracy_min']:.3f}-{r['accuracy_max']:.3f})"
        fd = f"{r['fd']:.2f}{_ci(r['fd_lo'], r['fd_hi'], 2)}"
        if r.get("pooled"):
            fd += f" (seeds {r['fd_min']:.2f}-{r['fd_max']:.2f})"
        mark = "*" if r.get("differs_from_reference") else ""
        speed = "-" if r.get("speedup") is None else f"{r['speedup']:.1f}x"
        saw = {True: "yes", False: "no", None: "?"}[r.get("saw_gt_renders")]
        print(f"| {r['method']} | {r['steps']} | {r['sec_per_image']:.4f} | {speed} | {acc}{mark} | "
              f"{r['retention']:.3f} | {fd} | {r['diversity']:.3f} | {saw} | {train} |", file=sys.stderr)
    print("(* accuracy interval does not overlap the reference's; speedup only for rows timed in the reference's "
          "run)", file=sys.stderr)


def bench(args) -> dict:
    torch.set_num_threads(args.threads)
    teacher = load_teacher(args.teacher, device=args.device)
    evaluator = ShapesEvaluator.load()
    specs, prompts = benchmark_prompts(benchmark_objects(args.objects), args.per_object)
    cond = teacher.encode_prompt(prompts)                                     # [N,L,D]
    uncond = teacher.encode_prompt([""])
    res = teacher.unet.config.sample_size
    g = torch.Generator().manual_seed(args.seed_z)
    z = torch.randn(len(specs), teacher.unet.config.in_channels, res, res, generator=g).to(args.device)  # shared
    v = random_views(len(specs), torch.Generator().manual_seed(args.seed_z + 1))
    gt, _ = render_shapes(specs, v["elev"], v["azim"], v["dist"], v["fov"], res * (8 if teacher.vae else 1))
    gt_feats = evaluator.features(gt)
    scale = teacher.default_cfg if args.cfg is None else args.cfg
    args.settings = {"n_images": len(specs), "objects": args.objects, "images_per_object": args.per_object,
                     "seed_z": args.seed_z, "seed_noise": args.seed_noise, "cfg": scale, "fd_boot": args.fd_boot}
    clip = teacher_clip(teacher)
    objects = [s.prompt for s in specs]  # diversity within one catalogue object (its samples span view suffixes)

    def measure(name, fn, info, steps):
        rgb, sec = run_method(fn, z, cond, teacher.decode, args.chunk)
        row = {**score(name, rgb, sec, evaluator, specs, gt_feats, objects, args), "steps": steps, **info}
        print(f"{name}: {json.dumps(row)}", file=sys.stderr, flush=True)
        return row

    rows = []
    for n in args.teacher_steps:
        fn = lambda zz, cc, n=n: ddim_sample(teacher, cc, uncond.expand(len(cc), -1, -1), scale, n, zz, clip)
        rows.append(measure(f"teacher-ddim-{n}", fn, {"label": "teacher", "trainer": "teacher", "sampler": "ddim",
                                                       "saw_gt_renders": False, "pooled": False,
                                                       "saw_gt_why": "teacher: no distillation"}, n))
    for label, members in generator_runs(args):
        for n in args.gen_steps:
            for gen, info in members:
                noise = torch.Generator().manual_seed(args.seed_noise)  # one stream per row, across its chunks
                fn = lambda zz, cc, gen=gen, n=n, noise=noise: sample_latents(gen, cc, zz, n, noise)
                rows.append(measure(f"{label}-{n}", fn, {"label": label, "pooled": False, **info}, n))
    rows = with_pooled(rows + saved_rows(args))
    if not rows:
        raise ValueError("nothing to measure: no --teacher-steps, --generator or --rows")
    ref = next((r for r in rows if r["method"] == "teacher-ddim-50"), rows[0])
    ref_rate = {"lo": ref["accuracy_lo"], "hi": ref["accuracy_hi"]}
    for r in rows:
        same_run = r.get("from_file") == ref.get("from_file") and not r.get("pooled")  # timed side by side
        r["speedup"] = ref["sec_per_image"] / r["sec_per_image"] if same_run else None
        r["retention"] = r["accuracy"] / ref["accuracy"] if ref["accuracy"] > 0 else float("nan")
        r["differs_from_reference"] = rates_differ({"lo": r["accuracy_lo"], "hi": r["accuracy_hi"]}, ref_rate)
    gt_acc = rate(int(prompt_correct(evaluator, gt, specs).sum()), len(specs))
    return {"n_images": len(specs), "objects": args.objects, "images_per_object": args.per_object,
            "seed_z": args.seed_z, "seed_noise": args.seed_noise, "chunk": args.chunk, "cfg": scale,
            "device": str(z.device), "reference": ref["method"], "fd_boot": args.fd_boot,
            "intervals": "95 %: Wilson score (accuracy; pooled rows: pooled counts); FD: percentile bootstrap, "
                         f"{args.fd_boot} draws, both image sets resampled within each object, shifted by the "
                         "bootstrap's bias estimate",
            "gt_diversity": diversity(gt_feats, objects), "gt_accuracy": gt_acc["rate"],
            "gt_accuracy_lo": gt_acc["lo"], "gt_accuracy_hi": gt_acc["hi"], "rows": rows}


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        with threadpool_limits(limits=args.threads):  # numpy BLAS too: FD 15-30x faster on a busy CPU
            out = bench(args)
    except (DreamerError, ValueError, OSError) as e:
        print(f"dreamer: error: {one_line(e)}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2))
    print_table(out["rows"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
