"""Textured export: clean + decimated mesh, xatlas UV atlas, base-colour texture baked from renders of the scene
(the visibility test of bake.py, per texel), dilated across seams; written as a PBR GLB and OBJ + MTL + PNG.

UVs follow glTF: u right, v down, (0, 0) the texture image's top-left corner (the OBJ gets vt = (u, 1 - v)).
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh

import renderers as R
from renderers.metrics import psnr

from ..common.errors import one_line
from .bake import bake_cameras, bake_vertex_colors
from .scenes import FINAL_STEP
from .export import extract_mesh, fill_enclosed
from .gltf import write_textured_glb, write_textured_obj
from .mesh_clean import clean_mesh, close_tunnels, topology

GAP_VIEWS = 8


@dataclass
class TexturedMesh:
    """Welded geometry with a UV atlas: vertices [V,3], faces [F,3], vertex normals [V,3], face_uvs [F,3,2],
    texture [S,S,3] float in [0,1]; the glTF split (seam vertices duplicated) is vmap [V'] / uv [V',2] / uv_faces."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    face_uvs: np.ndarray
    vmap: np.ndarray
    uv: np.ndarray
    uv_faces: np.ndarray
    texture: np.ndarray | None = None


def unwrap(mesh: trimesh.Trimesh, texture_size: int, padding: int = 2) -> TexturedMesh:
    """xatlas charts + packing (Young et al., xatlas) into a square atlas of about texture_size texels."""
    import xatlas

    def generate(texels_per_unit: float):
        atlas = xatlas.Atlas()
        atlas.add_mesh(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.uint32))
        pack = xatlas.PackOptions()
        pack.resolution, pack.padding, pack.bilinear = int(texture_size), int(padding), True
        pack.texels_per_unit = texels_per_unit
        atlas.generate(xatlas.ChartOptions(), pack)
        return atlas

    # texel density for ~55 % atlas use; xatlas's own estimate overshoots the size, so shrink until it fits
    tpu = (texture_size - 2 * padding) * float(np.sqrt(0.55 / max(mesh.area, 1e-12)))
    atlas = generate(tpu)
    for _ in range(8):
        side = max(atlas.width, atlas.height)
        if side <= texture_size and atlas.atlas_count == 1:
            break
        tpu *= min(0.95, (texture_size - 2 * padding) / side)
        atlas = generate(tpu)
    if atlas.atlas_count != 1:
        raise RuntimeError(f"xatlas packed {atlas.atlas_count} atlases; expected one")
    vmap, uv_faces, uv = atlas[0]                                     # [V'], [F,3], [V',2] in [0,1]
    faces = vmap[uv_faces].astype(np.int64)                           # xatlas keeps the input face order
    return TexturedMesh(np.asarray(mesh.vertices, np.float64), faces, np.asarray(mesh.vertex_normals, np.float64),
                        uv[uv_faces].astype(np.float64), vmap.astype(np.int64), uv.astype(np.float64),
                        uv_faces.astype(np.int64))


def rasterize_uv(face_uvs: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Texel centres ((i + 0.5) / size) inside UV triangles face_uvs [F,3,2] -> face id [S,S] (-1 none) and
    barycentrics [S,S,3] (a texel on a shared edge goes to one of its faces)."""
    tri = torch.as_tensor(face_uvs, dtype=torch.float64) * size - 0.5            # [F,3,2] in texel-index units
    lo = torch.ceil(tri.amin(1)).clamp_min(0).long()
    hi = torch.floor(tri.amax(1)).clamp_max(size - 1).long()
    span = (hi - lo + 1).clamp_min(0)                                            # [F,2]
    cnt = span[:, 0] * span[:, 1]
    k = torch.repeat_interleave(torch.arange(len(tri)), cnt)                     # [P] face per candidate texel
    off = torch.arange(len(k)) - torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)
    px, py = lo[k, 0] + off % span[k, 0], lo[k, 1] + off // span[k, 0]
    a, b, c = tri[k, 0], tri[k, 1], tri[k, 2]
    p = torch.stack([px, py], -1).double()
    cross = lambda u, v: u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]                   # noqa: E731
    area = cross(b - a, c - a)
    w = torch.stack([cross(c - b, p - b), cross(a - c, p - c), cross(b - a, p - a)], -1) / area[:, None]
    ok = (w >= -1e-9).all(-1) & (area.abs() > 1e-18)
    fid = np.full((size, size), -1, np.int64)
    bary = np.zeros((size, size, 3))
    fid[py[ok].numpy(), px[ok].numpy()] = k[ok].numpy()
    bary[py[ok].numpy(), px[ok].numpy()] = w[ok].numpy()
    return fid, bary


def dilate(texture: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Every invalid texel takes the colour of its nearest valid texel (seams and padding sample chart colours)."""
    from scipy.ndimage import distance_transform_edt

    if valid.all() or not valid.any():
        return texture
    _, (iy, ix) = distance_transform_edt(~valid, return_indices=True)
    return texture[iy, ix]


def bake_texture(scene, tm: TexturedMesh, size: int, cams: R.Cameras | None = None) -> tuple[np.ndarray, float]:
    """Base colour [S,S,3] from renders of the scene (per texel: cosine-weighted mean over the views that see its
    surface point, bake.py); texels no view sees take the scene's colour field; then seam dilation.
    -> (texture, fraction of covered texels seen by some view)."""
    fid, bary = rasterize_uv(tm.face_uvs, size)
    inside = fid >= 0
    f, w = fid[inside], bary[inside]                                              # [T], [T,3]
    pts = (w[:, :, None] * tm.vertices[tm.faces[f]]).sum(1)                        # [T,3]
    nrm = (w[:, :, None] * tm.normals[tm.faces[f]]).sum(1)
    rgb, seen = bake_vertex_colors(scene, pts, nrm, cams if cams is not None else bake_cameras(res=96))
    if not seen.all() and hasattr(scene, "color_fn"):
        with torch.no_grad():
            rgb[~seen] = scene.color_fn(torch.as_tensor(pts[~seen], dtype=torch.float32)).clamp(0, 1).numpy()
    tex = np.ones((size, size, 3))
    tex[inside] = rgb
    return dilate(tex, inside), float(seen.mean()) if len(seen) else 0.0


def render_textured(tm: TexturedMesh, cams: R.Cameras, shading: str = "none") -> dict:
    """Rasterize the textured mesh (renderers.mesh, bilinear UV lookup) -> rgb [N,3,H,W], alpha, ..."""
    return R.rasterize_mesh(torch.as_tensor(tm.vertices), torch.as_tensor(tm.faces), None, cams, shading=shading,
                            texture=torch.as_tensor(tm.texture).permute(2, 0, 1), face_uvs=torch.as_tensor(tm.face_uvs))


def gap_cameras(res: int) -> R.Cameras:
    """The 8 evaluation views of outputs.py (elevation 20, distance 2.1, fov 42) at `res` pixels."""
    return R.turntable_cameras(GAP_VIEWS, elevation=20.0, distance=2.1, fov=42.0, width=res, height=res)


def textured_metrics(scene, tm: TexturedMesh, truth=None, res: int = 64) -> dict:
    """Export gap (PSNR of textured-mesh renders vs scene renders, same cameras) and, given the prompt's ground truth
    (dreamer.common.world.GroundTruth), PSNR of the textured mesh and of the scene vs its GT renders, their
    difference (export_gap_db: dB lost by exporting) and the textured mesh's mean colour error vs GT (L1 per channel
    over pixels both cover)."""
    cams = gap_cameras(res)
    mesh_rgb = render_textured(tm, cams)["rgb"]
    with torch.no_grad():
        scene_rgb = torch.cat([scene.render(cams[i:i + 1], FINAL_STEP)["rgb"].clamp(0, 1) for i in range(len(cams))])
    out = {"export_gap_psnr": psnr(mesh_rgb, scene_rgb)}   # the textured mesh against what it was baked from
    if truth is not None:
        gt, gt_alpha = truth.render(cams.elevation, cams.azimuth, cams.distance, torch.full((len(cams),), 42.0),
                                    res)
        both = (render_textured(tm, cams)["alpha"][:, 0] > 0.5) & (gt_alpha.reshape(len(cams), res, res) > 0.5)
        diff = (mesh_rgb - gt).abs().permute(0, 2, 3, 1)[both]                # [P,3]
        out.update(textured_psnr_vs_gt=psnr(mesh_rgb, gt), scene_psnr_vs_gt=psnr(scene_rgb, gt),
                   textured_colour_error_vs_gt=float(diff.mean()) if len(diff) else None)
        out["export_gap_db"] = out["scene_psnr_vs_gt"] - out["textured_psnr_vs_gt"]  # dB lost by exporting
    return out


def in_silhouettes(scene, res: int, cams: R.Cameras | None = None):
    """-> allowed(idx [K,3]) -> [K] bool: grid voxels (linspace(-1, 1, res)^3) that no view sees through
    (rendered alpha >= 0.5 wherever they project), so sealing a tunnel never fills an opening the renders show
    (a torus's hole seen from above)."""
    from .bake import project

    cams = bake_cameras(res=48) if cams is None else cams
    with torch.no_grad():
        alpha = torch.cat([scene.render(cams[i], FINAL_STEP)["alpha"] for i in range(len(cams))])   # [B,1,h,w]

    def allowed(idx: np.ndarray) -> np.ndarray:
        pts = torch.as_tensor(idx, dtype=torch.float32) * (2.0 / (res - 1)) - 1.0                     # [K,3]
        uv, z, _ = project(cams, pts)                                                                 # [B,K,2]
        grid = torch.stack([uv[..., 0] / cams.width, uv[..., 1] / cams.height], -1) * 2 - 1
        a = torch.nn.functional.grid_sample(alpha, grid[:, :, None], align_corners=False)[:, 0, :, 0]  # [B,K]
        framed = (z > 0) & (grid.abs() <= 1).all(-1)
        return (~framed | (a >= 0.5)).all(0).numpy()
    return allowed


def textured_mesh(scene, mesh: trimesh.Trimesh, level: float | None, ex,
                  grid: np.ndarray | None = None) -> tuple[trimesh.Trimesh, TexturedMesh]:
    """The export pipeline after marching cubes: tunnels sealed in the grid that was meshed (default: the scene's
    density grid) and re-extracted (when the level is known), floaters / small holes / face budget (mesh_clean),
    xatlas atlas, baked texture."""
    if level is not None and ex.close_radius > 0:
        grid = scene.density_grid(ex.mesh_resolution) if grid is None else grid
        grid = close_tunnels(grid, level, ex.close_radius, in_silhouettes(scene, len(grid)))
        mesh = extract_mesh(None, None, bound=1.0, res=ex.mesh_resolution, threshold=level,
                            grid=fill_enclosed(grid, level), keep_largest=False)
    mesh = clean_mesh(mesh, ex.faces, ex.min_component, ex.max_hole_edges)
    tm = unwrap(mesh, ex.texture_size)
    tm.texture, _ = bake_texture(scene, tm, ex.texture_size)
    return mesh, tm


def export_textured(scene, mesh: trimesh.Trimesh, out_dir: str | Path, ex, level: float | None = None,
                    truth=None, grid: np.ndarray | None = None) -> tuple[dict[str, str], dict]:
    """Write mesh.glb (PBR, baseColorTexture, metallic 0, roughness 1), mesh.obj + mesh.mtl + mesh_texture.png and
    optionally mesh_vertex_colors.glb; -> ({file key: name}, metrics). ex: recipe.ExportConfig; truth: the prompt's
    GroundTruth (textured_metrics), None for none."""
    from PIL import Image

    if not ex.textured:
        return {}, {}
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    try:
        clean, tm = textured_mesh(scene, mesh, level, ex, grid)
    except Exception as e:  # keep the vertex-coloured files, say why there is no texture
        return {"texture_error": one_line(e)}, {}
    png = io.BytesIO()
    Image.fromarray((tm.texture * 255).round().astype(np.uint8)).save(png, format="PNG")
    (out_dir / "mesh_texture.png").write_bytes(png.getvalue())
    write_textured_glb(out_dir / "mesh.glb", tm.vertices[tm.vmap], tm.normals[tm.vmap], tm.uv, tm.uv_faces,
                       png.getvalue())
    write_textured_obj(out_dir / "mesh.obj", tm.vertices, tm.uv, tm.faces, tm.uv_faces, "mesh_texture.png")
    files = {"glb": "mesh.glb", "obj": "mesh.obj", "mtl": "mesh.mtl", "texture": "mesh_texture.png"}
    if ex.vertex_color_glb:
        (out_dir / "mesh_vertex_colors.glb").write_bytes(trimesh.exchange.gltf.export_glb(mesh, include_normals=True))
        files["vertex_color_glb"] = "mesh_vertex_colors.glb"
    seconds = time.perf_counter() - t0
    topo = topology(clean)
    metrics = {"textured_faces": len(clean.faces), "textured_vertices": len(clean.vertices),
               "watertight": topo["watertight"], "genus": topo["genus"], "boundary_loops": topo["boundary_loops"],
               "texture_size": ex.texture_size, "textured_export_seconds": seconds,
               **textured_metrics(scene, tm, truth if ex.evaluate else None)}
    return files, metrics
