"""Mesh export from a density field: marching cubes + vertex colours -> GLB / OBJ / PLY."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import trimesh

DensityFn = Callable[[torch.Tensor], torch.Tensor]  # points [P,3] -> density [P]
ColorFn = Callable[[torch.Tensor], torch.Tensor]  # points [P,3] -> rgb [P,3] in [0,1]


class ExportError(RuntimeError):
    """Mesh extraction / export failed (one-line message)."""


@torch.no_grad()
def _eval_chunked(fn: Callable, points: torch.Tensor, chunk: int) -> torch.Tensor:
    """Apply `fn` to points [P,3] in chunks; returns the concatenated float CPU result."""
    outs = [fn(points[i:i + chunk]).detach().float().cpu() for i in range(0, points.shape[0], chunk)]
    return torch.cat(outs, dim=0) if outs else torch.zeros(0)


def density_grid(density_fn: DensityFn, bound: float = 1.0, res: int = 96, chunk: int = 65536,
                 device: str | torch.device = "cpu") -> np.ndarray:
    """Sample density on a res^3 grid over [-bound, bound]^3 -> [res,res,res] float32 (index order x,y,z)."""
    axis = torch.linspace(-bound, bound, res, device=device)  # [R]
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)  # [R,R,R,3]
    sigma = _eval_chunked(density_fn, grid.reshape(-1, 3), chunk)  # [R^3]
    if sigma.numel() != res ** 3:
        raise ExportError(f"density_fn returned {sigma.numel()} values for {res ** 3} points (expected shape [P])")
    return sigma.reshape(res, res, res).numpy().astype(np.float32)


def fill_enclosed(grid: np.ndarray, level: float) -> np.ndarray:
    """Raise every voxel that the `level` set encloses to >= 2 * level: an opaque object is seen only at its
    surface, so splats (and often a NeRF's density) form a shell; marching cubes of the filled grid is the solid.
    grid [R,R,R] -> [R,R,R]; cavities open to the outside (a torus's hole) stay empty."""
    from scipy.ndimage import binary_fill_holes

    filled = binary_fill_holes(grid > level)  # [R,R,R] bool
    out = grid.copy()
    out[filled] = np.maximum(out[filled], 2 * level)
    return out


def _largest_component(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Keep only the connected component with the most faces."""
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))  # [F]
    if labels.size == 0 or labels.max() == 0:
        return mesh
    keep = labels == np.bincount(labels).argmax()  # [F] bool
    mesh = mesh.copy()
    mesh.update_faces(keep)
    mesh.remove_unreferenced_vertices()
    return mesh


def extract_mesh(density_fn: DensityFn, color_fn: ColorFn | None = None, bound: float = 1.0, res: int = 96,
                 threshold: float = 10.0, chunk: int = 65536, keep_largest: bool = True,
                 device: str | torch.device = "cpu", grid: np.ndarray | None = None) -> trimesh.Trimesh:
    """Marching-cubes the `threshold` level set of `density_fn` in [-bound,bound]^3 into a vertex-coloured mesh.

    `grid` [res,res,res] may carry the density already sampled on linspace(-bound, bound, res)^3.
    """
    from skimage.measure import marching_cubes

    if res < 2:
        raise ExportError(f"mesh resolution must be >= 2, got {res}")
    sigma = density_grid(density_fn, bound, res, chunk, device) if grid is None else np.asarray(grid, np.float32)
    if not np.isfinite(sigma).all():
        raise ExportError("density field contains NaN/inf values; cannot extract a mesh")
    lo, hi = float(sigma.min()), float(sigma.max())
    if not lo < threshold < hi:
        raise ExportError(f"no surface at threshold {threshold:g}: density range on the grid is "
                          f"[{lo:.4g}, {hi:.4g}] (empty or saturated field; try another --threshold)")
    spacing = 2.0 * bound / (res - 1)
    verts, faces, _, _ = marching_cubes(sigma, level=threshold, spacing=(spacing,) * 3)  # [V,3], [F,3]
    verts = verts - bound  # grid index space -> world coordinates
    faces = faces[:, ::-1]  # skimage winds inward for "dense inside"; flip so normals point outward
    mesh = trimesh.Trimesh(vertices=verts.astype(np.float64), faces=faces.astype(np.int64), process=True)
    if keep_largest:
        mesh = _largest_component(mesh)
    if len(mesh.faces) == 0:
        raise ExportError(f"marching cubes at threshold {threshold:g} produced no faces")
    if color_fn is not None:
        pts = torch.as_tensor(mesh.vertices, dtype=torch.float32, device=device)  # [V,3]
        rgb = _eval_chunked(color_fn, pts, chunk).reshape(-1, 3).clamp(0, 1)  # [V,3]
        rgb8 = (rgb.numpy() * 255.0).round().astype(np.uint8)
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.concatenate(
            [rgb8, np.full((len(rgb8), 1), 255, np.uint8)], axis=1))  # [V,4] RGBA
    return mesh


def save_mesh(mesh: trimesh.Trimesh, out_dir: str | Path, stem: str = "mesh") -> dict[str, Path]:
    """Write `stem`.glb / .obj / .ply (vertex colours kept) into out_dir; returns {'glb','obj','ply'} paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{stem}.{ext}" for ext in ("glb", "obj", "ply")}
    try:
        paths["glb"].write_bytes(trimesh.exchange.gltf.export_glb(mesh, include_normals=True))
        paths["obj"].write_text(trimesh.exchange.obj.export_obj(
            mesh, include_normals=False, include_color=True, include_texture=False))
        paths["ply"].write_bytes(trimesh.exchange.ply.export_ply(mesh, encoding="binary", vertex_normal=False))
    except OSError as e:
        raise ExportError(f"cannot write mesh files to {out_dir}: {e.strerror}") from None
    return paths
