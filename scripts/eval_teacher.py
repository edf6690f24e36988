"""Evaluate the embedded teacher: DDIM-50 prompt accuracy over the catalogue, Fréchet distance to GT renders,
offline load time (fresh interpreter, HF_HUB_OFFLINE=1) and batched-CFG forward cost.  Prints JSON.

    python scripts/eval_teacher.py [--teacher DIR] [--n-per-prompt 4] [--steps 50]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

LOAD_SNIPPET = ("import time; t=time.perf_counter(); from dreamer.common.teacher_source import load_teacher; "
                "T=load_teacher({src!r}); T.encode_prompt(['a red cube']); print(time.perf_counter()-t)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default=None)
    ap.add_argument("--n-per-prompt", type=int, default=4)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--cfg", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from dreamer.distill.trainers.toolkit import ddim_sample, teacher_clip
    from dreamer.shapes.evaluator import ShapesEvaluator, diversity, frechet_distance
    from dreamer.shapes.render import random_views, render_shapes
    from dreamer.shapes.world import catalogue_prompts
    from dreamer.common.teacher_source import load_teacher, teacher_name
    from guidance import Prompts, teacher_cfg

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    load_s = [float(subprocess.run([sys.executable, "-c", LOAD_SNIPPET.format(src=args.teacher)], env=env,
                                   capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
              for _ in range(2)]
    teacher = load_teacher(args.teacher)
    res = teacher.unet.config.sample_size
    scale = teacher.default_cfg if args.cfg is None else args.cfg
    x = torch.randn(1, 3, res, res)
    p1 = Prompts(teacher.encode_prompt(["a red cube"]), teacher.encode_prompt([""]))
    fwd = []
    with torch.no_grad():
        for i in range(12):
            t0 = time.perf_counter()
            teacher_cfg(teacher, x, torch.tensor([500]), p1, scale)
            if i >= 2:
                fwd.append(time.perf_counter() - t0)

    specs, texts = catalogue_prompts(args.n_per_prompt)  # view-suffixed, as the teacher was trained
    g = torch.Generator().manual_seed(args.seed)
    z = torch.randn(len(specs), 3, res, res, generator=g)
    cond, uncond = teacher.encode_prompt(texts), teacher.encode_prompt([""] * len(specs))
    t0 = time.perf_counter()
    imgs = torch.cat([teacher.decode(ddim_sample(teacher, cond[i:i + 72], uncond[i:i + 72], scale, args.steps,
                                                 z[i:i + 72], teacher_clip(teacher)))
                      for i in range(0, len(specs), 72)])
    sample_s = time.perf_counter() - t0
    ev = ShapesEvaluator.load()
    v = random_views(len(specs), torch.Generator().manual_seed(args.seed + 1))
    gt, _ = render_shapes(specs, v["elev"], v["azim"], v["dist"], v["fov"], res)
    f_s, f_gt = ev.features(imgs), ev.features(gt)
    sh, co = ev.classify(imgs)
    out = {
        "teacher": teacher_name(args.teacher), "samples": len(specs), "ddim_steps": args.steps, "cfg": scale,
        "prompt_accuracy": ev.prompt_accuracy(imgs, specs), "gt_prompt_accuracy": ev.prompt_accuracy(gt, specs),
        "frechet_samples_vs_gt": frechet_distance(f_s, f_gt),
        "diversity_samples": diversity(f_s, [s.prompt for s in specs]),
        "diversity_gt": diversity(f_gt, [s.prompt for s in specs]),
        "load_seconds_offline": load_s, "cfg_forward_b1_ms": 1000 * statistics.median(fwd),
        "sampling_seconds": round(sample_s, 1), "threads": args.threads,
    }
    print(json.dumps(out, indent=2))
    if os.environ.get("EVAL_GRID"):
        from dreamer.common.media import image_grid, save_png

        save_png(image_grid(imgs[:: args.n_per_prompt], nrow=6), os.environ["EVAL_GRID"])


if __name__ == "__main__":
    main()
