"""Exact (hard-edged) z-buffered triangle-mesh rasteriser in pure PyTorch, same cameras as the other renderers.

Conventions follow :mod:`renderers.cameras`: pixel ``(i, j)`` is sampled at its centre ``(i + 0.5, j + 0.5)``,
exactly the rays of :func:`rays_from_cameras`, so silhouettes line up with the ray-marched renderers and with
the ground-truth sphere tracer ``dreamer.shapes.render.render_shapes``. Triangles are double sided (either
winding renders the same) and a pixel is covered when its centre lies inside or on the triangle's edges.
Faces with a vertex closer than ``near`` to the camera plane are dropped (no clipping). Not differentiable.

Shading (``"flat"`` / ``"smooth"``) is the ground-truth light model of the shapes world:
``albedo * (AMBIENT + (1 - AMBIENT) * max(0, n . l))``, light from the camera's upper left
(``l = normalise(back + 0.6 up - 0.4 right)`` in the camera axes), white background; ``"none"`` is unlit albedo.
With ``texture`` [3,Ht,Wt] and ``face_uvs`` [F,3,2] the albedo is the texture at the perspective-correct interpolated
UV, sampled bilinearly with clamp-to-edge (glTF conventions: u right, v down, (0, 0) the image's top-left corner,
texel (i, j) centred at ((i + 0.5) / Wt, (j + 0.5) / Ht)).
Outputs (channels first): rgb [N,3,H,W], alpha [N,1,H,W] (0/1), depth [N,1,H,W] (distance along the unit ray of
rays_from_cameras, 0 on background), normals [N,3,H,W] (world face normals facing the camera), face_id [N,H,W] (-1).
"""
from __future__ import annotations

import torch

from .cameras import Cameras
from .shading import AMBIENT, camera_key_light

__all__ = ["rasterize_mesh", "render_trimesh", "sample_texture"]

MAX_PAIRS = 1 << 20  # candidate (face, pixel) pairs tested per chunk


def _camera_space(vertices: torch.Tensor, cams: Cameras):
    """Vertices [V,3] -> pixel coords [N,V,2] and positive depth along the view axis [N,V]."""
    R, eye = cams.c2w[:, :3, :3].to(vertices.dtype), cams.c2w[:, :3, 3].to(vertices.dtype)   # [N,3,3], [N,3]
    pc = torch.einsum("nji,nvj->nvi", R, vertices[None] - eye[:, None])                    # [N,V,3] OpenGL cam
    z = -pc[..., 2]                                                                          # [N,V]
    zs = z.clamp_min(1e-12)
    u = cams.fx[:, None].to(z) * pc[..., 0] / zs + cams.cx[:, None].to(z)
    v = -cams.fy[:, None].to(z) * pc[..., 1] / zs + cams.cy[:, None].to(z)
    return torch.stack([u, v], -1), z


def _barycentric(tri: torch.Tensor, vid: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Screen-space barycentrics [P,3] of points p [P,2] in triangles tri [P,3,2] with vertex ids vid [P,3]."""
    w = []
    for k in range(3):  # edge opposite vertex k, evaluated from its lower-id end: bit-identical in both
        s, e = (k + 1) % 3, (k + 2) % 3  # triangles sharing it, so meshes are watertight (no cracks)
        flip = vid[:, s] > vid[:, e]
        a = torch.where(flip[:, None], tri[:, e], tri[:, s])
        b = torch.where(flip[:, None], tri[:, s], tri[:, e])
        ed = (b[:, 0] - a[:, 0]) * (p[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (p[:, 0] - a[:, 0])
        w.append(torch.where(flip, -ed, ed))
    w = torch.stack(w, -1)                                                                   # [P,3]
    a, b, c = tri.unbind(1)
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])  # [P]
    return w / area[:, None]


def _zbuffer(uv, z, faces, keep, N, H, W, max_pairs):
    """Nearest face per pixel by bounding-box binning: face_id [N*H*W] (-1 empty) and depth [N*H*W]."""
    n_idx, f_idx = keep.nonzero(as_tuple=True)                                               # [K] view, face
    tri = uv[n_idx[:, None], faces[f_idx]]                                                   # [K,3,2]
    tz = z[n_idx[:, None], faces[f_idx]]                                                     # [K,3]
    lo = torch.ceil(tri.amin(1) - 0.5).clamp_min(0).long()                                   # [K,2] first centre
    hi = torch.floor(tri.amax(1) - 0.5).long()
    hi = torch.minimum(hi, torch.tensor([W - 1, H - 1]))
    span = (hi - lo + 1).clamp_min(0)                                                        # [K,2]
    count = span[:, 0] * span[:, 1]                                                          # [K] pixels in bbox
    best_z = torch.full((N * H * W,), float("inf"), dtype=z.dtype)
    best_f = torch.full((N * H * W,), -1, dtype=torch.long)
    ends = torch.cumsum(count, 0)
    start = 0
    while start < len(count):  # chunks of faces whose bboxes hold <= max_pairs pixels (at least one face)
        stop = max(int(torch.searchsorted(ends, ends[start] - count[start] + max_pairs, right=True)), start + 1)
        cnt = count[start:stop]
        k = torch.repeat_interleave(torch.arange(start, stop), cnt)                          # [P] face row
        if len(k):
            off = torch.arange(len(k)) - torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)
            px = lo[k, 0] + off % span[k, 0]
            py = lo[k, 1] + off // span[k, 0]
            p = torch.stack([px, py], -1).to(uv.dtype) + 0.5                                 # [P,2] pixel centres
            bary = _barycentric(tri[k], faces[f_idx[k]], p)                                 # [P,3]
            inside = (bary >= 0).all(-1)
            depth = 1.0 / (bary / tz[k]).sum(-1)                                             # perspective-correct z
            pix = (n_idx[k] * H + py) * W + px                                               # [P]
            pix, depth, fid = pix[inside], depth[inside], f_idx[k][inside]
            cz = torch.full_like(best_z, float("inf")).scatter_reduce(0, pix, depth, "amin")
            win = depth == cz[pix]                                                           # chunk winners
            cf = torch.full_like(best_f, len(faces)).scatter_reduce(0, pix[win], fid[win], "amin")
            better = cz < best_z
            best_z = torch.where(better, cz, best_z)
            best_f = torch.where(better, cf, best_f)
        start = stop
    return best_f, best_z


@torch.no_grad()
def rasterize_mesh(vertices: torch.Tensor, faces: torch.Tensor, vertex_colors: torch.Tensor | None,
                   cams: Cameras, background=1.0, shading: str = "flat", ambient: float = AMBIENT,
                   near: float = 1e-4, max_pairs: int = MAX_PAIRS, texture: torch.Tensor | None = None,
                   face_uvs: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Render vertices [V,3], faces [F,3], colours [V,3]/[3] in [0,1] (None: grey) or a UV texture from cams."""
    if (texture is None) != (face_uvs is None):
        raise ValueError("texture and face_uvs go together")
    if shading not in ("flat", "smooth", "none"):
        raise ValueError(f"shading must be 'flat', 'smooth' or 'none', not {shading!r}")
    dev = cams.device
    cams = cams.to(device="cpu")
    V = vertices.detach().cpu().to(torch.float64)                                            # [V,3]
    faces = faces.detach().cpu().long()                                                      # [F,3]
    N, H, W = len(cams), cams.height, cams.width
    cols = torch.full((3,), 0.5) if vertex_colors is None else vertex_colors.detach().cpu().float()
    cols = cols.expand(len(V), 3).to(torch.float64)                                          # [V,3]
    uv, z = _camera_space(V, cams)                                                           # [N,V,2], [N,V]
    tri = uv[:, faces]                                                                       # [N,F,3,2]
    e1, e2 = tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]
    area = e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]                                 # [N,F]
    keep = (z[:, faces] > near).all(-1) & (area.abs() > 1e-12)                               # [N,F]
    fid, _ = _zbuffer(uv, z, faces, keep, N, H, W, max_pairs)                                # [N*H*W]

    # Shade the winning pixels only.
    hit = fid >= 0
    pix = hit.nonzero(as_tuple=True)[0]                                                      # [P]
    f = fid[pix]
    n_of = pix // (H * W)
    py, px = (pix // W) % H, pix % W
    p = torch.stack([px, py], -1).to(V.dtype) + 0.5
    tz = z[n_of[:, None], faces[f]]                                                          # [P,3]
    bary = _barycentric(uv[n_of[:, None], faces[f]], faces[f], p) / tz                       # [P,3] / z
    depth_z = 1.0 / bary.sum(-1)                                                             # [P] view-axis depth
    bary = bary * depth_z[:, None]                                                           # perspective-correct
    fx, fy = cams.fx.double()[n_of], cams.fy.double()[n_of]
    ray_len = torch.sqrt(1 + ((p[:, 0] - cams.cx.double()[n_of]) / fx) ** 2
                         + ((p[:, 1] - cams.cy.double()[n_of]) / fy) ** 2)
    c2w = cams.c2w.double()
    eye = c2w[n_of, :3, 3]                                                                   # [P,3]
    tv = V[faces[f]]                                                                         # [P,3,3]
    fn = torch.linalg.cross(tv[:, 1] - tv[:, 0], tv[:, 2] - tv[:, 0], dim=-1)                # [P,3] raw face normal
    facing = torch.where(((eye - tv[:, 0]) * fn).sum(-1, keepdim=True) >= 0, 1.0, -1.0).to(V.dtype)
    normal = torch.nn.functional.normalize(fn, dim=-1) * facing                              # towards the camera
    if texture is None:
        albedo = (bary[:, :, None] * cols[faces[f]]).sum(1)                                  # [P,3]
    else:
        albedo = sample_texture(texture, (bary[:, :, None] * face_uvs.detach().cpu().double()[f]).sum(1))
    if shading == "none":
        col = albedo
    else:
        sn = normal
        if shading == "smooth":
            all_fn = torch.linalg.cross(V[faces[:, 1]] - V[faces[:, 0]], V[faces[:, 2]] - V[faces[:, 0]], dim=-1)
            vn = torch.zeros_like(V).index_add_(0, faces.reshape(-1), all_fn.repeat_interleave(3, 0))  # area-weighted
            sn = torch.nn.functional.normalize((bary[:, :, None] * vn[faces[f]]).sum(1), dim=-1) * facing
        light = camera_key_light(c2w)[n_of]                                                 # [N,3] -> [P,3]
        lam = (sn * light).sum(-1, keepdim=True).clamp_min(0)
        col = (albedo * (ambient + (1 - ambient) * lam)).clamp(0, 1)

    bg = torch.as_tensor(background, dtype=torch.float32).expand(3)
    rgb = bg.repeat(N * H * W, 1)                                                            # [N*H*W,3]
    rgb[pix] = col.float()
    normals = torch.zeros(N * H * W, 3)
    normals[pix] = normal.float()
    depth = torch.zeros(N * H * W)
    depth[pix] = (depth_z * ray_len).float()                                                 # distance along ray
    img = lambda t, c: t.reshape(N, H, W, c).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    out = dict(rgb=img(rgb, 3), alpha=img(hit.float()[:, None], 1), depth=img(depth[:, None], 1),
               normals=img(normals, 3), face_id=fid.reshape(N, H, W))
    return {k: v.to(dev) for k, v in out.items()}


def sample_texture(texture: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear, clamp-to-edge lookup of texture [3,Ht,Wt] at glTF UVs [P,2] -> colours [P,3] (float64)."""
    grid = (uv.double() * 2 - 1)[None, :, None]                                              # [1,P,1,2]
    tex = texture.detach().cpu().double()[None]                                              # [1,3,Ht,Wt]
    out = torch.nn.functional.grid_sample(tex, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, :, 0].T                                                                 # [P,3]


def render_trimesh(mesh, cams: Cameras, background=1.0, shading: str = "flat", **kwargs) -> dict[str, torch.Tensor]:
    """Rasterize a trimesh.Trimesh (its vertex colours if any, else mid-grey) with :func:`rasterize_mesh`."""
    cols = None
    visual = getattr(mesh, "visual", None)
    if visual is not None and getattr(visual, "kind", None) in ("vertex", "face"):
        cols = torch.as_tensor(visual.vertex_colors[:, :3].copy(), dtype=torch.float32) / 255.0
    verts = torch.as_tensor(mesh.vertices.copy(), dtype=torch.float32)
    faces = torch.as_tensor(mesh.faces.copy(), dtype=torch.long)
    return rasterize_mesh(verts, faces, cols, cams, background=background, shading=shading, **kwargs)
