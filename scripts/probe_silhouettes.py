"""Silhouette probe: do the teacher's own 2D samples carry the named primitive's outline?  Prints JSON.

    python scripts/probe_silhouettes.py [--prompts "a red cube" ...] [--n 16] [--cfg 1 3] [--steps 50]
                                        [--bank 300] [--seed 0] [--threads 2] [--teacher DIR]

Each prompt is sampled n times with DDIM (eta 0) from seeded noise, with the view suffixes the teacher was trained on
cycling front/side/back/overhead.  A sample's silhouette is the set of pixels whose darkest channel departs from the
white background by more than --threshold; its best IoU against a primitive is the maximum over a bank of GT
silhouettes of that primitive in the prompt's colour (`bank` random views from the teacher's training view
distribution, lit as the world renders them, cut by the same rule).
The sample is "nearest" the primitive with the highest best IoU.  If the teacher names the right primitive here but a
guided 3D run does not, the shape is lost in the 3D optimisation, not in the teacher.
"""
from __future__ import annotations

import argparse
import json
import torch

from dreamer.cli import _Parser
from dreamer.shapes.render import random_views, render_shapes
from dreamer.shapes.world import SHAPES, ShapeSpec, parse_prompt

DEFAULT_PROMPTS = [f"a red {s}" for s in SHAPES]


def silhouettes(rgb: torch.Tensor, threshold: float = 0.25) -> torch.Tensor:
    """Foreground masks [B,H,W] bool of images rgb [B,3,H,W] in [0,1] on a white background."""
    return (1.0 - rgb.clamp(0, 1)).amax(1) > threshold


def best_iou(masks: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Max IoU of each mask [N,H,W] over a bank [M,H,W] (both bool) -> [N]; an empty pair scores 0."""
    a, b = masks.flatten(1).float(), bank.flatten(1).float()                 # [N,P], [M,P]
    inter = a @ b.T                                                           # [N,M]
    union = a.sum(1, keepdim=True) + b.sum(1)[None] - inter                  # 0 only where inter is 0
    return (inter / union.clamp(min=1)).amax(1)


def gt_bank(colour: str, res: int, n: int, seed: int, threshold: float = 0.25) -> dict[str, torch.Tensor]:
    """GT silhouettes [n,res,res] bool of every primitive in `colour` from the same n random views, cut from the
    world's lit renders with the samples' own rule (`silhouettes`), so a GT image and its bank entry agree exactly."""
    v = random_views(n, torch.Generator().manual_seed(seed))
    return {shape: silhouettes(render_shapes([ShapeSpec(shape, colour)] * n, v["elev"], v["azim"], v["dist"],
                                             v["fov"], res)[0], threshold) for shape in SHAPES}


def nearest(masks: torch.Tensor, bank: dict[str, torch.Tensor]) -> tuple[list[str], dict[str, torch.Tensor]]:
    """The primitive with the highest best IoU per mask, and the best IoUs [N] per primitive."""
    ious = {s: best_iou(masks, b) for s, b in bank.items()}
    table = torch.stack([ious[s] for s in bank], 1)                           # [N,S]
    names = list(bank)
    return [names[i] for i in table.argmax(1).tolist()], ious


def summarise(prompt_shape: str, names: list[str], ious: dict[str, torch.Tensor]) -> dict:
    """Counts of nearest primitives and median best IoU per primitive for one prompt's samples."""
    return {"n": len(names), "right": sum(n == prompt_shape for n in names),
            "nearest": {s: names.count(s) for s in SHAPES if names.count(s)},
            "median_best_iou": {s: round(float(v.median()), 3) for s, v in ious.items()}}


def parse_args(argv=None) -> argparse.Namespace:
    ap = _Parser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", nargs="+", default=DEFAULT_PROMPTS)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--cfg", type=float, nargs="+", default=[1.0, 3.0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--bank", type=int, default=300)
    ap.add_argument("--threshold", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--teacher", default=None)
    a = ap.parse_args(argv)
    bad = [p for p in a.prompts if parse_prompt(p) is None]
    if bad:
        ap.error(f"not a shapes-world prompt: {bad[0]!r} (name a primitive and a colour, e.g. 'a red cube')")
    if a.n < 1 or a.steps < 1 or a.bank < 1 or not 0 < a.threshold < 1:
        ap.error("--n, --steps and --bank must be >= 1 and --threshold in (0, 1)")
    return a


def main(argv=None) -> None:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    from dreamer.common.view_prompts import VIEW_SUFFIXES
    from dreamer.common.teacher_source import load_teacher, teacher_name
    from dreamer.distill.trainers.toolkit import ddim_sample, teacher_clip

    teacher = load_teacher(a.teacher)
    c, res = teacher.unet.config.in_channels, teacher.unet.config.sample_size    # latent teachers: decoded larger
    uncond = teacher.encode_prompt([""] * a.n)
    rows, banks = [], {}                           # banks: one per colour (and decoded size), shared by its prompts
    for prompt in a.prompts:
        spec = parse_prompt(prompt)
        texts = [f"{prompt}, {VIEW_SUFFIXES[i % len(VIEW_SUFFIXES)]}" for i in range(a.n)]
        cond = teacher.encode_prompt(texts)
        for scale in a.cfg:
            z = torch.randn(a.n, c, res, res, generator=torch.Generator().manual_seed(a.seed))
            imgs = teacher.decode(ddim_sample(teacher, cond, uncond, scale, a.steps, z, teacher_clip(teacher)))
            key = (spec.colour, imgs.shape[-1])
            if key not in banks:
                banks[key] = gt_bank(spec.colour, imgs.shape[-1], a.bank, a.seed + 1, a.threshold)
            names, ious = nearest(silhouettes(imgs, a.threshold), banks[key])
            rows.append({"prompt": prompt, "cfg": scale, **summarise(spec.shape, names, ious)})
    print(json.dumps({"teacher": teacher_name(a.teacher), "ddim_steps": a.steps, "bank_views": a.bank,
                      "threshold": a.threshold, "seed": a.seed, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
