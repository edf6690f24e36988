"""Oracle ceiling: fit each recipe's representation straight to ground-truth renders, export it, judge it strictly.

    python scripts/oracle_ceiling.py [--recipes gaussians-sds nerf-sds] [--prompts "a red cube" ... | --all]
                                     [--steps N] [--target albedo|shaded] [--surfaces density fusion]
                                     [--guide-steps N] [--out runs/oracle] [--resume]
                                     [key=value overrides applied to every recipe]

No teacher is involved: the scene of the recipe (its renderer, initialisation, optimizer, densification, camera
distribution, batch and resolution) is optimised for the recipe's steps on the photometric loss
1000 * (MSE(rgb, GT rgb) + MSE(alpha, GT alpha)) against the shapes world's exact renders from the same cameras, then
exported with the recipe's export (text_to_3d.outputs.export_meshes) and judged by the strict test on mesh.ply (and on
the textured mesh.glb). This bounds what guidance can reach with that representation and export: a recipe cannot be
right where its oracle is not. --target albedo fits the unshaded GT (what an albedo renderer can match exactly);
shaded fits the world's lit renders (what the teacher saw) with the scene relit the same way (renderers.shading:
Lambertian from the rendered depth's normals, the world's key light). --guide-steps N is a fixed-point test of the
guidance: after the fit, the recipe's own guided loop (dreamer.text_to_3d.loop.SceneRun, steps 0..N-1 of its
schedules, overrides applied) runs from the fitted scene, which is exported and judged again (guided_* fields): a
guidance under which the right object does not stay right cannot end right from any start. Prints JSON: per recipe
and export surface, per run and in all (success with its Wilson interval, median F@2% / IoU, seconds).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import renderers as R
from dreamer.cli import _Parser
from dreamer.common.preflight import slug
from dreamer.shapes.render import render_shapes
from renderers.shading import AMBIENT, camera_key_light
from dreamer.shapes.stats import rate
from dreamer.shapes.strict import load_mesh_file, strict_report
from dreamer.shapes.world import catalogue, parse_prompt
from dreamer.text_to_3d.loop import SceneRun
from dreamer.text_to_3d.outputs import export_meshes
from dreamer.text_to_3d.recipe import load_generate_config
from dreamer.text_to_3d.scenes import SCENES

DEFAULT_PROMPTS = ["a red cube", "a red sphere", "a red cylinder", "a red cone", "a red torus", "a red pyramid"]


def gt_target(spec, cams: R.Cameras, shaded: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """GT rgb [B,3,H,W] and alpha [B,1,H,W] from the scene's cameras (albedo: the GT mask painted in spec.rgb)."""
    fov = torch.rad2deg(2 * torch.atan(0.5 * cams.width / cams.fx))           # [B] degrees
    rgb, alpha = render_shapes([spec] * len(cams), cams.elevation, cams.azimuth, cams.distance, fov, res=cams.width)
    if not shaded:
        col = torch.tensor(spec.rgb).view(1, 3, 1, 1)
        rgb = alpha * col + (1 - alpha)           # white background, flat albedo
    return rgb, alpha


def fit(config, spec, steps: int, shaded: bool) -> tuple[object, float]:
    """Optimise the recipe's scene on the photometric loss -> (scene, seconds)."""
    torch.manual_seed(config.train.seed)
    g = torch.Generator().manual_seed(config.train.seed)
    scene = SCENES[config.renderer](getattr(config, config.renderer), g, "cpu")
    cam = config.camera
    t0 = time.perf_counter()
    for i in range(steps):
        cams = R.sample_orbit_cameras(cam.batch, cam.elev_range, cam.azim_range, cam.dist_range, cam.fov_range,
                                      cam.resolution, cam.resolution, g)
        if shaded:                                # the world's image model: Lambertian under its key light
            out = scene.render(cams, i, g, shading="lambertian", light=camera_key_light(cams.c2w), ambient=AMBIENT)
        else:
            out = scene.render(cams, i, g)
        rgb, alpha = gt_target(spec, cams, shaded)
        loss = 1000 * (torch.nn.functional.mse_loss(out["rgb"], rgb) + torch.nn.functional.mse_loss(out["alpha"], alpha))
        for o in scene.optimizers:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in scene.optimizers:
            o.step()
        scene.post_step(i, cams, g)
    return scene, time.perf_counter() - t0


def judge(config, scene, spec, out: Path) -> dict:
    """Export the fitted scene with config's export into out and judge mesh.ply (and mesh.glb) strictly."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    mesh, level, files, _ = export_meshes(config, scene, out)
    row = {"surface": config.export.surface, "export_seconds": round(time.perf_counter() - t0, 2), "level": level}
    if mesh is None:
        row.update(right=False, reasons=[files.get("mesh_error", "no mesh")])
        return row
    rep = strict_report(mesh, spec)
    row.update({k: rep.get(k) for k in ("right", "reasons", "fscore_2pct", "iou", "nearest_shape", "genus",
                                        "scale_error", "floater_share", "extents_ratio")})
    if (out / "mesh.glb").is_file():
        g = strict_report(load_mesh_file(out / "mesh.glb"), spec)
        row.update(glb_right=g["right"], glb_reasons=g["reasons"], glb_iou=g.get("iou"))
    return row


def guide(config, scene, steps: int) -> tuple[object, float]:
    """Run config's guided loop for `steps` steps from `scene` (its optimizer state kept) -> (scene, seconds)."""
    run = SceneRun(dataclasses.replace(config, train=dataclasses.replace(config.train, steps=steps)))
    run.scene = scene
    run.base_lrs = [[pg["lr"] for pg in o.param_groups] for o in scene.optimizers]
    t0 = time.perf_counter()
    for _ in range(steps):
        run.step()
    return run.scene, time.perf_counter() - t0


GUIDED_KEYS = ("right", "reasons", "fscore_2pct", "iou", "nearest_shape", "genus", "scale_error", "extents_ratio")


def one_run(recipe: str, prompt: str, args, overrides: list[str]) -> dict[str, dict]:
    """-> {surface: row}: one fit, exported and judged with each of args.surfaces (the recipe's own when empty)."""
    out = Path(args.out) / recipe / slug(prompt)
    row_path = out / "oracle_rows.json"
    if args.resume and row_path.is_file():
        rows = json.loads(row_path.read_text())
        done = all(s in rows for s in args.surfaces or rows)
        if done and all(r.get("guide_steps", 0) == args.guide_steps for r in rows.values()):
            return rows
    config = load_generate_config(recipe, prompt=prompt, overrides=overrides)
    spec = parse_prompt(prompt)
    steps = args.steps or config.train.steps
    torch.set_num_threads(args.threads)
    scene, fit_s = fit(config, spec, steps, args.target == "shaded")
    rows = {}
    for surface in args.surfaces or [config.export.surface]:
        c = dataclasses.replace(config, export=dataclasses.replace(config.export, surface=surface))
        row = {"recipe": recipe, "prompt": prompt, "steps": steps, "fit_seconds": round(fit_s, 2),
               **judge(c, scene, spec, out / surface)}
        rows[surface] = row
    if args.guide_steps:
        scene, guide_s = guide(config, scene, args.guide_steps)
        for surface, row in rows.items():
            c = dataclasses.replace(config, export=dataclasses.replace(config.export, surface=surface))
            g = judge(c, scene, spec, out / f"{surface}-guided")
            row.update(guide_steps=args.guide_steps, guide_seconds=round(guide_s, 2),
                       **{f"guided_{k}": g.get(k) for k in GUIDED_KEYS})
    for surface, row in rows.items():
        print(f"{recipe} {prompt} [{surface}]: right={row['right']} F={row.get('fscore_2pct')} IoU={row.get('iou')} "
              f"genus={row.get('genus')} {row.get('reasons')} ({fit_s:.0f}+{row['export_seconds']:.0f} s)"
              + (f"; guided: right={row['guided_right']} nearest={row['guided_nearest_shape']} "
                 f"F={row['guided_fscore_2pct']} {row['guided_reasons']}" if args.guide_steps else ""),
              file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    row_path.write_text(json.dumps(rows, default=float))
    return rows


def summary(rows: list[dict]) -> dict:
    def med(k):
        v = [r[k] for r in rows if r.get(k) is not None]
        return statistics.median(v) if v else None
    n_right = sum(bool(r["right"]) for r in rows)
    n_guided = sum(bool(r.get("guided_right")) for r in rows)
    return {"n": len(rows), "right": n_right, "success": rate(n_right, len(rows)),
            "glb_right": sum(bool(r.get("glb_right")) for r in rows), "median_fscore_2pct": med("fscore_2pct"),
            "median_iou": med("iou"), "median_fit_seconds": med("fit_seconds"), "max_fit_seconds":
            max(r["fit_seconds"] for r in rows) if rows else None, "steps": rows[0]["steps"] if rows else None,
            **({"guided_right": n_guided, "guided_success": rate(n_guided, len(rows)),
                "guided_median_fscore_2pct": med("guided_fscore_2pct"), "guide_steps": rows[0]["guide_steps"]}
               if rows and rows[0].get("guide_steps") else {})}


def main(argv=None) -> int:
    ap = _Parser(prog="oracle_ceiling.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", nargs="+", default=["gaussians-sds", "nerf-sds"])
    ap.add_argument("--prompts", nargs="+", default=None, help="default: the six shapes in red")
    ap.add_argument("--all", action="store_true", help="all 36 catalogue prompts")
    ap.add_argument("--steps", type=int, default=0, help="0 = the recipe's train.steps")
    ap.add_argument("--target", choices=("albedo", "shaded"), default="albedo")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/oracle")
    ap.add_argument("--surfaces", nargs="+", choices=("density", "fusion"), default=None,
                    help="export each fit with each of these (default: the recipe's export.surface)")
    ap.add_argument("--guide-steps", type=int, default=0,
                    help="then run the recipe's guided loop this many steps from the fit and judge again (0 = off)")
    ap.add_argument("--resume", action="store_true", help="reuse rows already written (oracle_row.json)")
    ap.add_argument("overrides", nargs="*", help="key=value applied to every recipe")
    args = ap.parse_args(argv)
    prompts = [s.prompt for s in catalogue()] if args.all else (args.prompts or DEFAULT_PROMPTS)
    bad = [p for p in prompts if parse_prompt(p) is None]
    if bad:
        ap.error(f"not a shapes-world prompt: {bad[0]!r}")
    result = {"target": args.target, "overrides": args.overrides, "recipes": {}}
    for recipe in args.recipes:
        fits = [one_run(recipe, p, args, args.overrides) for p in prompts]
        result["recipes"][recipe] = {s: {**summary([f[s] for f in fits]), "runs": [f[s] for f in fits]}
                                     for s in fits[0]}
    print(json.dumps(result, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
