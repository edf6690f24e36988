"""Does the guidance want a right object larger? The expected SDS gradient along a global scale of the oracle fit.

    python scripts/scale_gradient.py [--prompts "a red cube" ...] [--draws 100] [--cfg 1 3 20] [--t-max 0.98 0.2]
                                     [--recipe gaussians-sds] [--target albedo|shaded] [--threads 1]

The recipe's Gaussian scene is fitted to the shapes world's GT renders (scripts/oracle_ceiling.py `fit`: the oracle,
right by the strict test). With s multiplying every mean and every Gaussian scale, dL/ds at s = 1 is
sum(dL/dmeans * means) + sum(dL/dlog_scales) (chain rule), L the guidance loss of one draw (the recipe's cameras,
t ~ U[t_min, t_max], noise). Per CFG scale and t_max: its mean over --draws draws and the standard error. dL/ds < 0:
the guidance's own expected pull on the right object is outward (it inflates it); > 0: inward. Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # oracle_ceiling beside this file
import renderers as R  # noqa: E402
from dreamer.cli import _Parser  # noqa: E402
from dreamer.shapes.world import parse_prompt  # noqa: E402
from dreamer.text_to_3d.loop import SceneRun  # noqa: E402
from dreamer.text_to_3d.recipe import load_generate_config  # noqa: E402
from dreamer.text_to_3d.scenes import FINAL_STEP  # noqa: E402
from guidance import score_distillation_step  # noqa: E402
from oracle_ceiling import fit  # noqa: E402
from renderers.shading import AMBIENT, camera_key_light  # noqa: E402


def scale_derivative(run: SceneRun, cams: R.Cameras, gcfg, g: torch.Generator, shaded: bool) -> float:
    """dL/ds at s = 1 for one draw of the guidance loss on run.scene's render from cams (Gaussian scenes)."""
    p = run.scene.params
    p.means.grad = p.log_scales.grad = None
    kw = {"shading": "lambertian", "light": camera_key_light(cams.c2w), "ambient": AMBIENT} if shaded else {}
    out = run.scene.render(cams, FINAL_STEP, g, **kw)
    loss = score_distillation_step(run.teacher, run.to_teacher(out["rgb"]), run.prompts_for(cams), gcfg, g).loss
    loss.backward()
    return float((p.means.grad * p.means.detach()).sum() + p.log_scales.grad.sum())


def probe(recipe: str, prompt: str, draws: int, cfgs, t_maxes, shaded: bool) -> dict:
    config = load_generate_config(recipe, prompt, None, [])
    if config.renderer != "gaussians":
        raise SystemExit(f"dreamer: error: {recipe} renders {config.renderer}; the scale probe needs Gaussian splats")
    run = SceneRun(config)
    run.scene = fit(config, parse_prompt(prompt), config.train.steps, shaded)[0]
    row = {"recipe": recipe, "prompt": prompt, "draws": draws, "target": "shaded" if shaded else "albedo"}
    c = config.camera
    for s in cfgs:
        for t_max in t_maxes:
            g = torch.Generator().manual_seed(1)
            gcfg = replace(config.guidance, cfg_scale=s, t_max=t_max)
            vals = [scale_derivative(run, R.sample_orbit_cameras(c.batch, c.elev_range, c.azim_range, c.dist_range,
                                                                  c.fov_range, c.resolution, c.resolution, g),
                                     gcfg, g, shaded) for _ in range(draws)]
            m = sum(vals) / draws
            se = math.sqrt(sum((v - m) ** 2 for v in vals) / (draws - 1) / draws) if draws > 1 else None
            row[f"cfg{s:g}_tmax{t_max:g}"] = {"dL_ds": m, "se": se}
    return row


def main(argv=None) -> int:
    ap = _Parser(prog="scale_gradient.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="gaussians-sds")
    ap.add_argument("--prompts", nargs="+", default=["a red cube", "a red sphere"])
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--cfg", type=float, nargs="+", default=[1.0, 3.0, 20.0])
    ap.add_argument("--t-max", type=float, nargs="+", default=[0.98, 0.2])
    ap.add_argument("--target", choices=("albedo", "shaded"), default="albedo")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.draws < 2 or any(not 0 < t <= 1 for t in args.t_max) or any(s <= 0 for s in args.cfg):
        ap.error("--draws must be >= 2, --t-max in (0, 1], --cfg > 0")
    bad = [p for p in args.prompts if parse_prompt(p) is None]
    if bad:
        ap.error(f"not a shapes-world prompt: {bad[0]!r}")
    torch.set_num_threads(args.threads)
    rows = [probe(args.recipe, p, args.draws, args.cfg, args.t_max, args.target == "shaded") for p in args.prompts]
    print(json.dumps({"rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
