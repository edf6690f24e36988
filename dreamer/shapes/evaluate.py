"""One evaluation of an exported mesh against the shapes world, shared by `dreamer generate` (metrics.json),
`dreamer evaluate` and the benchmarks: the strict 3D report (`strict.strict_report`, which decides `right`) plus the
shapes evaluator's accuracy and PSNR on renders of the mesh itself (the file a user gets)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

import renderers as R

from .render import render_shapes
from .strict import load_mesh_file, strict_report, strict_summary
from .world import COLOUR_NAMES, SHAPES, ShapeSpec, parse_prompt

EVAL_VIEWS = 8          # turntable views scored by the evaluator
EVAL_ELEVATION, EVAL_DISTANCE, EVAL_FOV = 20.0, 2.1, 42.0
MESH_FILES = ("mesh.ply", "mesh.glb", "mesh.obj")   # what a run folder is scored by, first found


def eval_cameras(resolution: int) -> R.Cameras:
    """The EVAL_VIEWS turntable cameras every view-based figure uses."""
    return R.turntable_cameras(EVAL_VIEWS, elevation=EVAL_ELEVATION, distance=EVAL_DISTANCE, fov=EVAL_FOV,
                               width=resolution, height=resolution)


def gt_views(spec: ShapeSpec, resolution: int = 32) -> torch.Tensor:
    """Ground-truth renders rgb [EVAL_VIEWS,3,res,res] from eval_cameras."""
    cams = eval_cameras(resolution)
    return render_shapes([spec] * EVAL_VIEWS, cams.elevation, cams.azimuth, cams.distance,
                         torch.full((EVAL_VIEWS,), EVAL_FOV), resolution)[0]


def mesh_views(mesh, resolution: int = 32, supersample: int = 2) -> torch.Tensor:
    """Renders of the mesh itself rgb [EVAL_VIEWS,3,res,res], supersampled as the ground-truth renderer is."""
    rgb = R.render_trimesh(mesh, eval_cameras(resolution * supersample))["rgb"].float()
    return torch.nn.functional.avg_pool2d(rgb, supersample) if supersample > 1 else rgb


def view_scores(images: torch.Tensor, spec: ShapeSpec, gt: torch.Tensor, evaluator) -> dict:
    """Evaluator accuracy (a rejected view counts as wrong) and PSNR vs ground truth of EVAL_VIEWS renders."""
    return {"accuracy": float(evaluator.prompt_accuracy(images, [spec] * len(images))), "psnr": R.psnr(images, gt)}


def evaluate_mesh(mesh, spec: ShapeSpec, resolution: int = 32, n: int = 20000, evaluator=None) -> dict:
    """strict_report + the evaluator's 8-view accuracy and PSNR on renders of the mesh (prompt_accuracy_8_views,
    psnr_8_views). JSON-serialisable."""
    from .evaluator import ShapesEvaluator

    rep = strict_report(mesh, spec, n=n)
    ev = evaluator if evaluator is not None else ShapesEvaluator.load()
    s = view_scores(mesh_views(mesh, resolution), spec, gt_views(spec, resolution), ev)
    rep.update(prompt_accuracy_8_views=s["accuracy"], psnr_8_views=s["psnr"])
    return rep


def resolve_target(path: str | Path, prompt: str | None) -> tuple[Path, ShapeSpec]:
    """A mesh file or a run folder (its mesh and, unless given, its prompt) -> (mesh file, catalogue spec)."""
    path = Path(path)
    if path.is_dir():
        found = next((path / f for f in MESH_FILES if (path / f).is_file()), None)
        if found is None:
            raise FileNotFoundError(f"{path} holds no exported mesh ({', '.join(MESH_FILES)})")
        if prompt is None and (path / "config.yaml").is_file():
            import yaml

            prompt = (yaml.safe_load((path / "config.yaml").read_text()) or {}).get("prompt")
        path = found
    elif not path.is_file():
        raise FileNotFoundError(f"no such mesh file or run folder: {path}")
    if not prompt:
        raise ValueError("give --prompt (a mesh file carries no prompt)")
    spec = parse_prompt(prompt)
    if spec is None:
        raise ValueError(f"{prompt!r} is not a shapes-world prompt (one of {', '.join(SHAPES)} and one of "
                         f"{', '.join(COLOUR_NAMES)}); only those have ground truth")
    return path, spec


def evaluate_path(path: str | Path, prompt: str | None = None, n: int = 20000) -> dict:
    """`dreamer evaluate`: the report of a mesh file or run folder, with the file and prompt it scored."""
    mesh_file, spec = resolve_target(path, prompt)
    return {"file": str(mesh_file), "prompt": spec.prompt, **evaluate_mesh(load_mesh_file(mesh_file), spec, n=n)}


def report_text(rep: dict) -> str:
    """The human-readable form `dreamer evaluate` prints."""
    head = f"{rep['file']} as {rep['prompt']!r}: {'RIGHT' if rep['right'] else 'WRONG'}"
    views = f"8-view evaluator accuracy on mesh renders {rep['prompt_accuracy_8_views']:.3f}, " \
            f"PSNR {rep['psnr_8_views']:.2f} dB"
    return "\n".join([head, strict_summary(rep), views])


def report_json(rep: dict) -> str:
    return json.dumps(rep, indent=2, allow_nan=False)
