"""Mesh clean-up before texturing: seal thin tunnels in the density grid, drop floaters, fill small boundary holes,
decimate to a face budget (quadric edge collapse, Garland & Heckbert 1997), and count the topology."""
from __future__ import annotations

import numpy as np
import trimesh


def close_tunnels(grid: np.ndarray, level: float, radius: int, allowed=None) -> np.ndarray:
    """Morphological closing of the occupied voxels (grid > level) by a ball of `radius` voxels: a tunnel or gap
    narrower than about 2 * radius voxels is sealed (raised to 2 * level); wider openings (a torus's hole) and the
    density of every occupied voxel stay as they were. allowed(idx [K,3]) -> [K] bool may veto added voxels (e.g.
    those some view sees through). grid [R,R,R] -> [R,R,R]."""
    from scipy.ndimage import binary_closing

    if radius <= 0:
        return grid
    r = np.arange(-radius, radius + 1)
    ball = (r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2) <= radius ** 2   # [k,k,k]
    occ = np.pad(grid > level, radius + 1)                                  # room to dilate at the grid's border
    closed = binary_closing(occ, structure=ball)[(slice(radius + 1, -radius - 1),) * 3]
    out = grid.copy()
    add = closed & ~(grid > level)
    if allowed is not None and add.any():
        idx = np.argwhere(add)                                              # [K,3]
        add[tuple(idx[~allowed(idx)].T)] = False
    out[add] = 2 * level
    return out


def remove_small_components(mesh: trimesh.Trimesh, min_fraction: float) -> trimesh.Trimesh:
    """Drop connected components with fewer than min_fraction x the largest component's faces (floaters)."""
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))  # [F]
    if labels.size == 0:
        return mesh
    counts = np.bincount(labels)
    keep = counts[labels] >= min_fraction * counts.max()                   # [F] bool
    if keep.all():
        return mesh
    mesh = mesh.copy()
    mesh.update_faces(keep)
    mesh.remove_unreferenced_vertices()
    return mesh


def boundary_loops(faces: np.ndarray) -> list[list[int]]:
    """Closed loops of boundary edges (edges used by one face), each as its vertex ids in order."""
    e = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)      # [3F,2] undirected
    uniq, count = np.unique(e, axis=0, return_counts=True)
    nxt: dict[int, list[int]] = {}
    for a, b in uniq[count == 1]:
        nxt.setdefault(int(a), []).append(int(b))
        nxt.setdefault(int(b), []).append(int(a))
    loops, used = [], set()
    for start in list(nxt):
        if start in used:
            continue
        loop, prev, cur = [start], None, start
        used.add(start)
        while True:
            step = [v for v in nxt[cur] if v != prev and (v not in used or (v == start and len(loop) > 2))]
            if not step or step[0] == start:
                break
            prev, cur = cur, step[0]
            loop.append(cur)
            used.add(cur)
        loops.append(loop)
    return loops


def fill_small_holes(mesh: trimesh.Trimesh, max_edges: int) -> trimesh.Trimesh:
    """Close every boundary loop of at most max_edges edges with a fan around its centroid (a torus's hole is a
    handle, not a boundary, so it is never touched)."""
    loops = [lp for lp in boundary_loops(np.asarray(mesh.faces)) if 3 <= len(lp) <= max_edges]
    if not loops:
        return mesh
    verts, faces = [np.asarray(mesh.vertices)], [np.asarray(mesh.faces)]
    n = len(verts[0])
    edge_dir = {(int(a), int(b)) for a, b in np.asarray(mesh.faces)[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)}
    for lp in loops:
        c = verts[0][lp].mean(0)
        ring = np.array(lp + lp[:1])
        # keep the winding consistent: the existing face uses (a, b), so the new face must use (b, a)
        if (ring[0], ring[1]) in edge_dir:
            ring = ring[::-1]
        verts.append(c[None])
        faces.append(np.stack([ring[:-1], ring[1:], np.full(len(lp), n)], 1))
        n += 1
    return trimesh.Trimesh(np.concatenate(verts), np.concatenate(faces), process=False)


def decimate(mesh: trimesh.Trimesh, max_faces: int) -> trimesh.Trimesh:
    """Quadric-error edge collapse (fast-simplification) down to at most max_faces faces; fewer: unchanged."""
    import fast_simplification

    if len(mesh.faces) <= max_faces:
        return mesh
    v, f = fast_simplification.simplify(np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int32),
                                        target_count=int(max_faces))
    out = trimesh.Trimesh(v, f, process=True)
    out.remove_unreferenced_vertices()
    return out


def topology(mesh: trimesh.Trimesh) -> dict:
    """Watertightness, components, boundary loops and genus (Euler: V - E + F = 2C - 2g - B, summed over parts)."""
    faces = np.asarray(mesh.faces)
    e = np.unique(np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0)
    used = np.unique(faces)
    comps = len(trimesh.graph.connected_components(e, nodes=used, min_len=1)) if len(faces) else 0
    n_b = len(boundary_loops(faces))
    chi = len(used) - len(e) + len(faces)
    return {"watertight": bool(mesh.is_watertight), "components": comps, "boundary_loops": n_b,
            "genus": int(round((2 * comps - n_b - chi) / 2))}


def clean_mesh(mesh: trimesh.Trimesh, max_faces: int, min_component: float = 0.05,
               max_hole_edges: int = 32) -> trimesh.Trimesh:
    """Floaters out, small holes filled, then decimated to the face budget (holes filled again if it opened any)."""
    mesh = fill_small_holes(remove_small_components(mesh, min_component), max_hole_edges)
    mesh = decimate(mesh, max_faces)
    return fill_small_holes(remove_small_components(mesh, min_component), max_hole_edges)
