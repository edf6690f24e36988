"""3D metrics against shapes-world ground truth: Chamfer, volumetric IoU, colour error (PSNR: renderers.metrics).

Inside tests use the generalised winding number (solid-angle sum over triangles, in torch), so no
rtree/embree is needed; the GT side of `volumetric_iou_sdf` uses the exact SDF sign from world.py.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

from .world import ShapeSpec, gt_mesh, sdf


def bbox_diagonal(mesh) -> float:
    """Length of the axis-aligned bounding-box diagonal of a mesh."""
    lo, hi = mesh.bounds
    return float(np.linalg.norm(hi - lo))


def sample_surface(mesh, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform surface samples: points [n,3] and their face indices [n] (deterministic for a seed)."""
    import trimesh

    pts, fid = trimesh.sample.sample_surface(mesh, n, seed=seed)
    return np.asarray(pts, dtype=np.float64), np.asarray(fid)


def chamfer_distance(mesh_a, mesh_b, n: int = 20000, seed: int = 0) -> float:
    """Symmetric Chamfer: mean of the two mean nearest-neighbour distances, / bbox diagonal of mesh_b (GT)."""
    if len(mesh_a.faces) == 0:
        return float("inf")
    pa, _ = sample_surface(mesh_a, n, seed)
    pb, _ = sample_surface(mesh_b, n, seed)
    d_ab = cKDTree(pb).query(pa)[0]  # [n]
    d_ba = cKDTree(pa).query(pb)[0]  # [n]
    return float(0.5 * (d_ab.mean() + d_ba.mean()) / bbox_diagonal(mesh_b))


# ---------------------------------------------------------------- generalised winding number

def winding_number(points, vertices, faces, chunk_pairs: int = 2_000_000,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Generalised winding number [P] of a triangle soup at points [P,3] (1 inside, 0 outside a closed mesh).

    Sum over triangles of the signed solid angle (Van Oosterom & Strackee) / 4 pi, chunked over points.
    Every per-pair term is a polynomial in p, so it is evaluated with matmuls against per-face constants:
    det[a,b,c] = det[v0,v1,v2] - p.(v0xv1 + v1xv2 + v2xv0), |a|^2 = |p|^2 - 2 p.v0 + |v0|^2,
    a.b = |p|^2 - p.(v0+v1) + v0.v1 (a, b, c = v0-p, v1-p, v2-p). Coordinates are centred first.
    """
    V = torch.as_tensor(np.asarray(vertices), dtype=torch.float64)
    p = torch.as_tensor(np.asarray(points), dtype=torch.float64).reshape(-1, 3)
    out = torch.zeros(len(p), dtype=torch.float64)
    if len(faces) == 0 or len(p) == 0:
        return out
    centre = V.mean(0)
    V, p = V - centre, p - centre
    v0, v1, v2 = V[torch.as_tensor(np.ascontiguousarray(faces), dtype=torch.long)].unbind(1)  # [F,3] each
    nf = len(v0)
    det = (v0 * torch.linalg.cross(v1, v2, dim=-1)).sum(-1).to(dtype)                # [F]
    nrm = torch.linalg.cross(v0, v1, dim=-1) + torch.linalg.cross(v1, v2, dim=-1) + torch.linalg.cross(v2, v0, dim=-1)
    M = torch.cat([v0, v1, v2, nrm], 0).T.to(dtype)                                 # [3,4F]
    n0, n1, n2 = [(v * v).sum(-1).to(dtype) for v in (v0, v1, v2)]                  # [F]
    d01, d12, d20 = [(x * y).sum(-1).to(dtype) for x, y in ((v0, v1), (v1, v2), (v2, v0))]
    step = max(1, chunk_pairs // nf)
    for i in range(0, len(p), step):
        q = p[i:i + step].to(dtype)                                                 # [C,3]
        pp = (q * q).sum(-1, keepdim=True)                                          # [C,1]
        p0, p1, p2, pn = (q @ M).split(nf, 1)                                       # [C,F] each
        la = (pp - 2 * p0 + n0).clamp_min(0).sqrt()
        lb = (pp - 2 * p1 + n1).clamp_min(0).sqrt()
        lc = (pp - 2 * p2 + n2).clamp_min(0).sqrt()
        den = la * lb * lc + (pp - p0 - p1 + d01) * lc + (pp - p1 - p2 + d12) * la + (pp - p2 - p0 + d20) * lb
        out[i:i + step] = (torch.atan2(det - pn, den).sum(-1) / (2 * math.pi)).double()
    return out


def _grid(lo: np.ndarray, hi: np.ndarray, res: int) -> tuple[np.ndarray, np.ndarray]:
    """Voxel centres [res^3,3] of a box (x-major) and the voxel size per axis [3]."""
    size = (hi - lo) / res
    axes = [lo[k] + (np.arange(res) + 0.5) * size[k] for k in range(3)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return pts, size


def inside_grid_parity(mesh, lo: np.ndarray, hi: np.ndarray, res: int) -> np.ndarray:
    """Occupancy [res,res,res] of a watertight mesh by ray parity: one +z ray per (x, y) voxel column, and a
    voxel centre is inside iff an odd number of surface crossings lie below it (exact for closed meshes; the
    columns are shifted by ~1e-6 voxel so that rays never pass exactly through edges or vertices)."""
    _, size = _grid(lo, hi, res)
    tri = np.asarray(mesh.vertices, dtype=np.float64)[np.asarray(mesh.faces)]          # [F,3,3]
    col = (tri[..., :2] - lo[:2]) / size[:2] - 0.5 - np.array([1.3e-6, 0.7e-6])       # column units [F,3,2]
    c0 = np.clip(np.ceil(col.min(1)), 0, res).astype(np.int64)                         # [F,2]
    c1 = np.clip(np.floor(col.max(1)), -1, res - 1).astype(np.int64)
    nx, ny = np.maximum(c1[:, 0] - c0[:, 0] + 1, 0), np.maximum(c1[:, 1] - c0[:, 1] + 1, 0)
    f = np.repeat(np.arange(len(tri)), nx * ny)                                        # candidate (face, column)
    local = np.arange(len(f)) - np.repeat(np.cumsum(nx * ny) - nx * ny, nx * ny)
    i, j = c0[f, 0] + local % nx[f], c0[f, 1] + local // nx[f]
    a, b, c = col[f, 0], col[f, 1], col[f, 2]                                          # [M,2] each
    p = np.stack([i, j], -1).astype(np.float64)
    cross = lambda u, v, q: (v[:, 0] - u[:, 0]) * (q[:, 1] - u[:, 1]) - (v[:, 1] - u[:, 1]) * (q[:, 0] - u[:, 0])  # noqa: E731
    w0, w1, w2 = cross(b, c, p), cross(c, a, p), cross(a, b, p)                        # edge functions [M]
    hit = ((w0 > 0) & (w1 > 0) & (w2 > 0)) | ((w0 < 0) & (w1 < 0) & (w2 < 0))
    area = (w0 + w1 + w2)[hit]
    z = (w0[hit] * tri[f[hit], 0, 2] + w1[hit] * tri[f[hit], 1, 2] + w2[hit] * tri[f[hit], 2, 2]) / area
    k = np.clip(np.ceil((z - lo[2]) / size[2] - 0.5), 0, res).astype(np.int64)         # first centre above z
    counts = np.zeros((res, res, res + 1), dtype=np.int64)
    np.add.at(counts, (i[hit], j[hit], k), 1)
    return (np.cumsum(counts, axis=2)[..., :res] % 2) == 1


def inside_grid(mesh, lo: np.ndarray, hi: np.ndarray, res: int, method: str = "auto") -> np.ndarray:
    """Boolean occupancy [res,res,res] of a mesh on a voxel grid (winding number > 0.5).

    method: "exact" evaluates the winding number at every voxel; "parity" is inside_grid_parity (watertight
    meshes only); "band" is the shortcut below; "auto" = parity for a watertight mesh, else band. In the band
    method the winding number is evaluated exactly only in a band of voxels near the surface
    (distance bounded below through a surface point set of spacing <= voxel size); each connected
    component of far voxels cannot cross the surface and takes the value at one of its voxels. This is
    exact for closed meshes; for open meshes the far field is approximated per component.
    """
    if method == "auto":
        method = "parity" if mesh.is_watertight else "band"
    if method == "parity":
        return inside_grid_parity(mesh, lo, hi, res)
    pts, size = _grid(lo, hi, res)
    if method == "exact":
        return (winding_number(pts, mesh.vertices, mesh.faces) > 0.5).numpy().reshape(res, res, res)
    import trimesh

    h = float(size.max())
    dense, _ = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, max_edge=h / 2, max_iter=20)
    # Every surface point is within h/2 of a dense vertex (edges <= h/2), so a far voxel (d > h) is at
    # true distance > h/2 from the surface, and the segment to an axis neighbour (length <= h) stays
    # within h/2 of one of its ends: two adjacent far voxels are never separated by the surface.
    d = cKDTree(dense).query(pts, distance_upper_bound=1.01 * h)[0]  # inf beyond the bound
    far = (d > h).reshape(res, res, res)
    labels, n_comp = ndimage.label(far)
    occ = np.zeros((res, res, res), dtype=bool)
    band = ~far
    if band.any():
        occ[band] = (winding_number(pts[band.reshape(-1)], mesh.vertices, mesh.faces) > 0.5).numpy()
    if n_comp:
        flat = labels.reshape(-1)
        first = ndimage.minimum_position(np.arange(flat.size).reshape(res, res, res), labels,
                                         index=np.arange(1, n_comp + 1))
        reps = np.array([np.ravel_multi_index(f, (res, res, res)) for f in first])
        w = winding_number(pts[reps], mesh.vertices, mesh.faces).numpy() > 0.5  # [n_comp]
        comp_in = np.concatenate([[False], w])
        occ |= comp_in[labels] & far
    return occ


def _union_box(boxes: list[np.ndarray], pad: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    lo = np.min([b[0] for b in boxes], 0)
    hi = np.max([b[1] for b in boxes], 0)
    m = pad * (hi - lo).max()
    return lo - m, hi + m


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def volumetric_iou(mesh_a, mesh_b, res: int = 64) -> float:
    """IoU of the solids of two meshes on a common res^3 grid covering both bounding boxes."""
    if len(mesh_a.faces) == 0:
        return 0.0
    lo, hi = _union_box([np.asarray(mesh_a.bounds), np.asarray(mesh_b.bounds)])
    return _iou(inside_grid(mesh_a, lo, hi, res), inside_grid(mesh_b, lo, hi, res))


def volumetric_iou_sdf(mesh, shape: str, res: int = 64) -> float:
    """IoU of a mesh's solid vs the exact GT solid of a primitive (SDF < 0), on a common res^3 grid."""
    if len(mesh.faces) == 0:
        return 0.0
    gt_box = np.asarray(gt_mesh(shape).bounds)
    lo, hi = _union_box([np.asarray(mesh.bounds), gt_box])
    pts, _ = _grid(lo, hi, res)
    gt = (sdf(shape, torch.as_tensor(pts, dtype=torch.float64)) < 0).numpy().reshape(res, res, res)
    return _iou(inside_grid(mesh, lo, hi, res), gt)


# ---------------------------------------------------------------- colour and images

def surface_colours(mesh, n: int = 20000, seed: int = 0) -> np.ndarray:
    """RGB in [0,1] [n,3] at area-uniform surface samples (barycentric vertex colours, or face colours)."""
    import trimesh

    visual = mesh.visual
    if visual.kind == "texture":
        visual = visual.to_color()
    if visual.kind not in ("vertex", "face"):
        raise ValueError("mesh has no vertex or face colours")
    pts, fid = sample_surface(mesh, n, seed)
    if visual.kind == "face":
        return np.asarray(visual.face_colors, dtype=np.float64)[fid, :3] / 255.0
    vc = np.asarray(visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0  # [V,3]
    tri = mesh.faces[fid]                                                  # [n,3]
    bary = trimesh.triangles.points_to_barycentric(mesh.vertices[tri], pts)  # [n,3]
    bary = np.nan_to_num(np.clip(bary, 0, 1))
    bary = bary / np.clip(bary.sum(1, keepdims=True), 1e-12, None)
    return (bary[:, :, None] * vc[tri]).sum(1)


def colour_error(mesh, spec: ShapeSpec, n: int = 20000, seed: int = 0) -> float:
    """Mean RGB L2 distance between the mesh's surface colours and the GT albedo spec.rgb."""
    cols = surface_colours(mesh, n, seed)
    return float(np.linalg.norm(cols - np.asarray(spec.rgb)[None], axis=1).mean())


def nearest_colour(mesh, n: int = 20000, seed: int = 0) -> str:
    """Catalogue colour nearest to the median surface colour, up to GT shading: "correct colour" = this matches.

    GT renders show albedo * s with s in [AMBIENT, 1] (render.py), and a reconstruction without lighting bakes
    that shading into its colours; so the distance to a colour is min over such s of ||median - s * albedo||.
    """
    from renderers.shading import AMBIENT
    from .world import COLOURS

    med = np.median(surface_colours(mesh, n, seed), axis=0)

    def dist(rgb) -> float:
        a = np.asarray(rgb)
        s = float(np.clip(med @ a / (a @ a), AMBIENT, 1.0))  # least-squares shading, within the GT range
        return float(np.linalg.norm(med - s * a))

    return min(COLOURS, key=lambda c: dist(COLOURS[c]))


def mesh_report(mesh, spec: ShapeSpec, res: int = 64, n: int = 20000) -> dict:
    """Chamfer (vs gt_mesh), volumetric IoU (vs the exact SDF solid), colour error and whether the nearest
    catalogue colour is the prompt's (both None if uncoloured)."""
    try:
        col = colour_error(mesh, spec, n=n)
        match = nearest_colour(mesh, n) == spec.colour
    except ValueError:
        col, match = None, None
    return {"chamfer": chamfer_distance(mesh, gt_mesh(spec.shape), n=n),
            "iou": volumetric_iou_sdf(mesh, spec.shape, res=res),
            "colour_error": col, "colour_correct": match}
