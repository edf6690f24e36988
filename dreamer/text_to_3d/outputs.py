"""Run outputs: mesh (GLB/OBJ/PLY), 3DGS .ply, turntable mp4/gif, metrics vs the teacher's world's ground truth
(dreamer.common.world; none: metrics.json says why), HTML report."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

import renderers as R

from ..common.errors import one_line
from ..common.media import write_video
from ..common.progress import run_phase
from ..common.teacher_source import teacher_name
from .bake import SharedRenders, bake_cameras, bake_vertex_colors
from .export import extract_mesh, fill_enclosed, save_mesh
from .fusion import fuse_renders
from .report import write_report
from .scenes import FINAL_STEP
from .silhouette import silhouette_threshold
from .texture import export_textured


@torch.no_grad()
def render_views(scene, cams: R.Cameras) -> torch.Tensor:
    """rgb [N,3,H,W] of a scene from cameras, one at a time (no grad)."""
    return torch.cat([scene.render(cams[i:i + 1], FINAL_STEP)["rgb"].clamp(0, 1) for i in range(len(cams))])


def evaluate_against_ground_truth(world, prompt: str, mesh, scene, resolution: int = 32,
                                  teacher: str | None = None) -> dict:
    """The teacher's world's evaluation of the exported mesh (GroundTruth.evaluate; the shapes world: the strict
    report, `right`, `reasons`, Chamfer, F-scores, IoU, scale, topology, colour, and the evaluator's 8-view accuracy
    / PSNR on renders of the mesh, the same two figures on renders of the scene as scene_*). No world, or no ground
    truth for the prompt: {"evaluation_skipped": why}."""
    if world is None:
        return {"evaluation_skipped": f"teacher {teacher_name(teacher)} has no world: no ground truth"}
    truth = world.ground_truth(prompt)
    if truth is None:
        return {"evaluation_skipped": f"prompt is not {world.prompt_kind}"}
    return truth.evaluate(mesh, lambda cams: render_views(scene, cams), resolution)


def export_grid(config, scene) -> tuple[np.ndarray, float]:
    """-> (grid [R,R,R], level): the field whose `level` set is the exported surface. fusion: the TSDF of the renders'
    depth and coverage (text_to_3d.fusion); density: the scene's density, at the level matched to the renders'
    silhouettes (threshold_from_renders) or the scene's fixed level, enclosed voxels filled."""
    res = config.export.mesh_resolution
    ex = config.export
    if ex.surface == "fusion":
        cams = bake_cameras(res=ex.fusion_resolution or config.camera.resolution)
        return fuse_renders(scene, res, cams=cams, transmittance=ex.fusion_transmittance)
    grid, level = scene.density_grid(res), scene.export_threshold
    if config.export.threshold_from_renders:
        cams = bake_cameras(res=48)
        with torch.no_grad():
            alpha = torch.cat([scene.render(cams[i], FINAL_STEP)["alpha"][:, 0] for i in range(len(cams))])
        level, _ = silhouette_threshold(grid, 1.0, cams, alpha)
    return fill_enclosed(grid, level), level


def export_mesh(config, scene, grid_level: tuple[np.ndarray, float] | None = None):
    """-> (vertex-coloured mesh, level, grid): marching cubes of export_grid, colours baked from renders unless
    export.bake_colors is off (then the scene's field colours, which also colour the vertices no bake view sees)."""
    grid, level = export_grid(config, scene) if grid_level is None else grid_level
    bake = config.export.bake_colors
    mesh = extract_mesh(scene.density_fn, None if bake else scene.color_fn, bound=1.0, res=len(grid),
                        threshold=level, grid=grid)
    if bake:
        rgb, seen = bake_vertex_colors(scene, mesh.vertices, mesh.vertex_normals)     # [V,3], [V]
        if not seen.all():                                                            # the field for the rest
            with torch.no_grad():
                rgb[~seen] = scene.color_fn(torch.as_tensor(mesh.vertices[~seen], dtype=torch.float32)).clamp(0, 1).numpy()
        mesh.visual.vertex_colors = np.concatenate([(rgb * 255).round().astype(np.uint8),
                                                    np.full((len(rgb), 1), 255, np.uint8)], 1)   # [V,4] RGBA
    return mesh, level, grid


def export_meshes(config, scene, out_dir: Path, world=None) -> tuple:
    """Marching cubes, vertex-coloured mesh.ply, then the textured mesh.glb / mesh.obj (texture.export_textured),
    the 24 bake views rendered once for every step (SharedRenders). -> (mesh or None, level, {file key: name},
    metrics incl. export_seconds); an empty field gives files["mesh_error"], not an exception. world: the teacher's
    (SceneRun.world), whose ground truth for config.prompt adds the textured mesh's figures vs GT (export.evaluate)."""
    truth = world.ground_truth(config.prompt) if world is not None and config.export.evaluate else None
    files: dict[str, str] = {}
    mesh, level, metrics = None, None, {}
    shared = SharedRenders(scene)
    t0 = time.perf_counter()
    try:
        mesh, level, grid = run_phase("exporting mesh", export_mesh, config, shared)
        files.update({k: str(v.name) for k, v in save_mesh(mesh, out_dir, "mesh").items()})
        tex_files, metrics = export_textured(shared, mesh, out_dir, config.export, level, truth, grid=grid)
        files.update(tex_files)  # the textured mesh.glb / mesh.obj replace the vertex-coloured ones
        metrics["export_seconds"] = time.perf_counter() - t0     # marching cubes to the written GLB / OBJ / PLY
    except Exception as e:  # an empty field must not lose the rest of the outputs
        files["mesh_error"] = str(e)
    return mesh, level, files, metrics


def export_run(run, out_dir: str | Path) -> dict:
    """Write every output of a finished (or resumed) run into out_dir; returns the metrics dict."""
    from ..common.media import image_grid, save_png

    out_dir = Path(out_dir)
    config, scene = run.config, run.scene.to("cpu")  # export (marching cubes, bake, video, metrics) runs on the CPU
    mesh, level, files, tex_metrics = export_meshes(config, scene, out_dir, run.world)
    if scene.kind == "gaussians":
        R.save_3dgs_ply(out_dir / "gaussians.ply", scene.params.detach())
        files["gaussians_ply"] = "gaussians.ply"
    ex = config.export
    cams = R.turntable_cameras(ex.turntable_frames, ex.turntable_elevation, 2.1, 42.0, ex.turntable_resolution,
                               ex.turntable_resolution)
    frames = run_phase("rendering turntable", render_views, scene, cams)
    frames = (frames.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    try:
        run_phase("writing video", write_video, list(frames), out_dir / "turntable.mp4", out_dir / "turntable.gif",
                  fps=12)
        files.update(video="turntable.mp4", gif="turntable.gif")
    except (ImportError, OSError, RuntimeError) as e:  # e.g. no ffmpeg: keep the other outputs
        files["video_error"] = one_line(e)
    save_png(image_grid(torch.from_numpy(frames[:: max(1, len(frames) // 8)][:8]).permute(0, 3, 1, 2) / 255.0, nrow=8),
             out_dir / "views.png")
    timing = json.loads((out_dir / "timing.json").read_text()) if (out_dir / "timing.json").exists() else {}
    metrics = {"prompt": config.prompt, "renderer": config.renderer, "method": config.guidance.method, **timing,
               "final_loss": run.history["loss"][-1] if run.history["loss"] else None}
    if mesh is not None:
        metrics.update(vertices=len(mesh.vertices), faces=len(mesh.faces), export_threshold=level, **tex_metrics)
    if ex.evaluate:
        metrics.update(run_phase("evaluating against ground truth", evaluate_against_ground_truth, run.world,
                                 config.prompt, mesh, scene, teacher=config.teacher))
    else:
        metrics["evaluation_skipped"] = "export.evaluate is false"
    metrics["files"] = files
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    previews = sorted(out_dir.glob("preview_*.png"))[-6:] + [out_dir / "views.png"]
    run_phase("writing report", write_report, out_dir, f"dreamer: {config.prompt}",
              {k: v for k, v in metrics.items() if k != "files"}, {k: v for k, v in run.history.items() if v},
              previews, out_dir / "turntable.gif", out_dir / "mesh.glb" if "glb" in files else None)
    return metrics
