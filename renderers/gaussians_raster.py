"""Gaussian splatting: EWA projection + tile-binned / dense torch compositors, gsplat on CUDA.

Conventions follow gsplat: 0.3 px low-pass dilation (eps2d), alpha = min(0.99, o * exp(-q/2)),
samples with alpha < 1/255 skipped, compositing stops once transmittance would fall to <= 1e-4.
The screen-space support is gsplat's opacity-aware 3-sigma box (extent = min(3.33, sqrt(2 ln(255 o)))
sigma per axis), outside of which alpha < 1/255, so the tile cull is exact: tile == dense reference.
Both share one compositing kernel (`gaussians_composite.composite`, hand-written gradcheck-tested backward).
"""

from __future__ import annotations

import math

import torch

from .cameras import Cameras, opencv_viewmats
from .gaussians_composite import ALPHA_MAX, ALPHA_MIN, Rows, composite
from .sh import eval_sh

CHUNK = 64  # Gaussians per compositing row (tiles with more use several rows)

__all__ = ["quat_to_rotmat", "project_gaussians", "rasterize", "rasterize_tiles", "rasterize_dense_reference"]


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [...,3,3] from (w,x,y,z) quaternions [...,4] (normalised here)."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    R = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)
    return R.reshape(quats.shape[:-1] + (3, 3))


def project_gaussians(means, quats, scales, opacities, viewmats, Ks, width, height,
                      near=0.01, far=1e10, eps2d=0.3):
    """EWA projection. means [N,3], quats [N,4], scales [N,3], opacities [N], viewmats [B,4,4]
    (OpenCV world-to-camera), Ks [B,3,3] -> means2d [B,N,2], conics [B,N,3], depths [B,N],
    radii [B,N,2] (int, 0 = culled)."""
    R = quat_to_rotmat(quats)                                   # [N,3,3]
    M = R * scales[:, None, :]                                  # [N,3,3] = R S
    cov = M @ M.transpose(-1, -2)                               # [N,3,3]
    Rw, tw = viewmats[:, :3, :3], viewmats[:, :3, 3]            # [B,3,3], [B,3]
    p = torch.einsum("bij,nj->bni", Rw, means) + tw[:, None]    # [B,N,3]
    cov_c = Rw[:, None] @ cov[None] @ Rw.transpose(-1, -2)[:, None]  # [B,N,3,3]
    fx, fy, cx, cy = (Ks[:, 0, 0, None], Ks[:, 1, 1, None], Ks[:, 0, 2, None], Ks[:, 1, 2, None])
    x, y, z = p.unbind(-1)
    zs = torch.where(z > near, z, torch.ones_like(z))           # safe divisor for culled points
    tanx, tany = 0.5 * width / fx, 0.5 * height / fy
    tx = zs * torch.minimum(torch.maximum(x / zs, -(cx / fx + 0.3 * tanx)), (width - cx) / fx + 0.3 * tanx)
    ty = zs * torch.minimum(torch.maximum(y / zs, -(cy / fy + 0.3 * tany)), (height - cy) / fy + 0.3 * tany)
    zero = torch.zeros_like(zs)
    J = torch.stack([fx / zs, zero, -fx * tx / zs**2, zero, fy / zs, -fy * ty / zs**2], -1)
    J = J.reshape(p.shape[:-1] + (2, 3))                        # [B,N,2,3]
    cov2d = J @ cov_c @ J.transpose(-1, -2)                     # [B,N,2,2]
    a = cov2d[..., 0, 0] + eps2d
    b = cov2d[..., 0, 1]
    c = cov2d[..., 1, 1] + eps2d
    det = a * c - b * b
    det_s = torch.where(det > 0, det, torch.ones_like(det))
    conics = torch.stack([c / det_s, -b / det_s, a / det_s], -1)  # [B,N,3]
    means2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], -1)
    with torch.no_grad():
        op = opacities.detach().expand(z.shape)
        ext = torch.sqrt(2.0 * torch.log(op.clamp_min(ALPHA_MIN) * 255.0)).clamp_max(3.33)
        radii = torch.stack([torch.ceil(ext * a.sqrt()), torch.ceil(ext * c.sqrt())], -1)
        m = means2d.detach()
        valid = ((z > near) & (z < far) & (det > 0) & (op >= ALPHA_MIN)
                 & (m[..., 0] + radii[..., 0] > 0) & (m[..., 0] - radii[..., 0] < width)
                 & (m[..., 1] + radii[..., 1] > 0) & (m[..., 1] - radii[..., 1] < height)
                 & (radii.amin(-1) > 0))
        radii = (radii * valid[..., None]).to(torch.int32)
    return means2d, conics, z, radii


def _table(means2d, conics, depths, opacities, cols):
    """Per-(camera, Gaussian) rows [B*N+1, 7+C]: mx, my, A, B, C, log o, depth, colour; last row = empty."""
    B, N = depths.shape
    op = opacities.expand(B, N) if opacities.dim() == 1 else opacities
    logo = torch.log(op.clamp_min(1e-30))
    t = torch.cat([means2d, conics, logo[..., None], depths[..., None], cols], -1).reshape(B * N, -1)
    pad = t.new_zeros(1, t.shape[-1]).index_fill(1, torch.tensor([2, 4, 5], device=t.device), 1.0)
    pad[0, 5] = -1e4                                             # log-opacity of the padding row
    return torch.cat([t, pad.detach()], 0)


def _prepare(means, quats, scales, opacities, colors, cams, sh_degree, eps2d, near):
    viewmats, Ks = opencv_viewmats(cams), cams.K
    means2d, conics, depths, radii = project_gaussians(
        means, quats, scales, opacities, viewmats, Ks, cams.width, cams.height, near=near, eps2d=eps2d)
    B = len(cams)
    if sh_degree is None:
        cols = colors[None].expand(B, -1, -1) if colors.dim() == 2 else colors  # [B,N,C]
    else:
        dirs = torch.nn.functional.normalize(means[None] - cams.c2w[:, None, :3, 3], dim=-1)  # [B,N,3]
        cols = (eval_sh(sh_degree, colors[None], dirs) + 0.5).clamp_min(0.0)                # [B,N,C]
    return means2d, conics, depths, radii, cols


def _finish(rgb, alpha, depth, background, means2d, radii):
    if background is not None:
        bg = background.to(rgb).reshape(-1, 1, 1, rgb.shape[-1]) if background.dim() <= 2 else background
        rgb = rgb + (1 - alpha) * bg
    depth = depth / alpha.clamp_min(1e-10)
    if means2d.requires_grad:
        means2d.retain_grad()
    return dict(rgb=rgb, alpha=alpha, depth=depth, means2d=means2d, radii=radii)


def rasterize_tiles(means, quats, scales, opacities, colors, cams: Cameras, background=None,
                    sh_degree=None, tile_size=8, eps2d=0.3, near=0.01, chunk=CHUNK):
    """Tile-binned torch rasterizer (CPU or GPU). Activated inputs: means [N,3], quats [N,4],
    scales [N,3], opacities [N], colors [N,C] (or SH [N,K,3] with sh_degree). Returns dict of
    rgb [B,H,W,C], alpha [B,H,W,1], depth [B,H,W,1] (expected), means2d [B,N,2], radii [B,N,2].
    Each tile's list is composited in rows of `chunk` Gaussians (less padding than one row per tile)."""
    means2d, conics, depths, radii, cols = _prepare(means, quats, scales, opacities, colors, cams,
                                                    sh_degree, eps2d, near)
    B, N = depths.shape
    H, W, ts, C = cams.height, cams.width, tile_size, cols.shape[-1]
    ntx, nty = (W + ts - 1) // ts, (H + ts - 1) // ts
    dev = means.device
    with torch.no_grad():
        m, r = means2d.detach(), radii.float()
        x0 = torch.floor((m[..., 0] - r[..., 0]) / ts).clamp(0, ntx - 1).long()
        x1 = torch.floor((m[..., 0] + r[..., 0]) / ts).clamp(0, ntx - 1).long()
        y0 = torch.floor((m[..., 1] - r[..., 1]) / ts).clamp(0, nty - 1).long()
        y1 = torch.floor((m[..., 1] + r[..., 1]) / ts).clamp(0, nty - 1).long()
        valid = radii[..., 0] > 0
        bi, gi = valid.nonzero(as_tuple=True)                  # visible (camera, gaussian) pairs
        wx = (x1 - x0 + 1)[bi, gi]
        cnt = wx * (y1 - y0 + 1)[bi, gi]
        pair = torch.repeat_interleave(torch.arange(bi.numel(), device=dev), cnt)
        local = torch.arange(pair.numel(), device=dev) - (torch.cumsum(cnt, 0) - cnt)[pair]
        tx = x0[bi, gi][pair] + local % wx[pair]
        ty = y0[bi, gi][pair] + local // wx[pair]
        tile = bi[pair] * (ntx * nty) + ty * ntx + tx          # global tile id per instance
        rank = torch.argsort(torch.argsort(depths.detach(), dim=1), dim=1)  # depth rank [B,N]
        order = torch.argsort(tile * N + rank[bi, gi][pair])
        tile, pb, pg = tile[order], bi[pair][order], gi[pair][order]
        counts = torch.bincount(tile, minlength=B * ntx * nty)
        active = (counts > 0).nonzero(as_tuple=True)[0]        # [Ta]
        Ta = active.numel()
        # each active tile's depth-sorted list -> ceil(count / chunk) rows of `chunk` (last one padded)
        n_rows = (counts[active] + chunk - 1) // chunk                              # [Ta]
        first = torch.full_like(counts, -1)
        first[active] = torch.cumsum(n_rows, 0) - n_rows                            # first row of each tile
        start = torch.cumsum(counts, 0) - counts
        col_k = torch.arange(tile.numel(), device=dev) - start[tile]                # position in its tile
        width = max(1, min(chunk, int(counts.max()) if counts.numel() else 0))
        row_tile = torch.repeat_interleave(torch.arange(Ta, device=dev), n_rows)    # [R]
        rows = Rows(row_tile, torch.arange(len(row_tile), device=dev) - first[active][row_tile], Ta,
                    int(n_rows.max()) if Ta else 0)
        gidx = torch.full((len(row_tile), width), B * N, dtype=torch.long, device=dev)  # B*N = padding row
        gidx[first[tile] + col_k // chunk, col_k % chunk] = pb * N + pg
        tb, tr = active // (ntx * nty), active % (ntx * nty)
        oy, ox = (tr // ntx) * ts, (tr % ntx) * ts             # tile origins [Ta]
        ar = torch.arange(ts, device=dev)
        xi, yi = ox[:, None] + ar, oy[:, None] + ar            # [Ta,ts]
        pxi, pyi = xi[:, None, :].expand(-1, ts, -1), yi[:, :, None].expand(-1, -1, ts)  # [Ta,ts,ts]
        inside = ((pxi < W) & (pyi < H)).reshape(Ta, -1)
        flat = ((tb[:, None, None] * H + pyi) * W + pxi).reshape(Ta, -1)[inside]
    table = _table(means2d, conics, depths, opacities, cols)
    g = table.index_select(0, gidx.reshape(-1)).reshape(*gidx.shape, -1)            # [R,chunk,7+C]
    xs, ys = xi.to(g.dtype) + 0.5, yi.to(g.dtype) + 0.5
    out = composite(g, xs[rows.tile], ys[rows.tile], rows)[inside]                   # [Ps,C+2]
    img = table.new_zeros(B * H * W, C + 2).index_put((flat,), out).reshape(B, H, W, C + 2)
    return _finish(img[..., :C], img[..., C + 1:], img[..., C:C + 1], background, means2d, radii)


def rasterize_dense_reference(means, quats, scales, opacities, colors, cams: Cameras, background=None,
                              sh_degree=None, eps2d=0.3, near=0.01, chunk=1024):
    """All-pairs reference: every pixel x every visible Gaussian, globally depth sorted."""
    means2d, conics, depths, radii, cols = _prepare(means, quats, scales, opacities, colors, cams,
                                                    sh_degree, eps2d, near)
    B, N = depths.shape
    H, W, C = cams.height, cams.width, cols.shape[-1]
    table = _table(means2d, conics, depths, opacities, cols)
    xs = torch.arange(W, device=means.device, dtype=table.dtype)[None] + 0.5   # [1,W]
    rows = max(1, chunk // W)
    images = []
    for b in range(B):
        vis = (radii[b, :, 0] > 0).nonzero(as_tuple=True)[0]
        g = table.index_select(0, b * N + vis[torch.argsort(depths[b, vis].detach())])[None]
        parts = [composite(g, xs, torch.arange(y, min(y + rows, H), device=means.device,
                                               dtype=table.dtype)[None] + 0.5)[0]
                 for y in range(0, H, rows)]
        images.append(torch.cat(parts, 0).reshape(H, W, C + 2))
    img = torch.stack(images)
    return _finish(img[..., :C], img[..., C + 1:], img[..., C:C + 1], background, means2d, radii)


def _gsplat_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def rasterize(means, quats, scales, opacities, colors, cams: Cameras, background=None,
              sh_degree=None, backend="auto", tile_size=None, eps2d=0.3, near=0.01):
    """Render activated Gaussians; backend in {"auto", "gsplat", "torch", "dense"}.
    tile_size defaults to 16 for gsplat and 8 for torch (smaller tiles = less padding on CPU)."""
    if backend == "auto":
        backend = "gsplat" if means.is_cuda and _gsplat_available() else "torch"
    if tile_size is None:
        tile_size = 16 if backend == "gsplat" else 8
    if backend == "torch":
        return rasterize_tiles(means, quats, scales, opacities, colors, cams, background, sh_degree,
                               tile_size, eps2d, near)
    if backend == "dense":
        return rasterize_dense_reference(means, quats, scales, opacities, colors, cams, background,
                                         sh_degree, eps2d, near)
    if backend != "gsplat":
        raise ValueError(f"unknown backend {backend!r}")
    from gsplat import rasterization
    B = len(cams)
    bg = None
    if background is not None:
        bg = background.to(means).reshape(-1, background.shape[-1]).expand(B, -1)
    render, alpha, info = rasterization(
        means, quats, scales, opacities, colors, opencv_viewmats(cams), cams.K, cams.width, cams.height,
        near_plane=near, sh_degree=sh_degree, tile_size=tile_size, eps2d=eps2d, backgrounds=bg,
        render_mode="RGB+ED", packed=False)
    means2d = info["means2d"]
    if means2d.requires_grad:
        means2d.retain_grad()
    return dict(rgb=render[..., :-1], alpha=alpha, depth=render[..., -1:], means2d=means2d,
                radii=info["radii"])


@torch.no_grad()
def median_depth(means, quats, scales, opacities, cams: Cameras, eps2d=0.3, near=0.01, chunk=1 << 22,
                 transmittance: float = 0.5):
    """Camera z where each pixel's transmittance first falls to <= `transmittance` (0 where it never does) -> [B,H,W,1].

    The expected depth (rasterize's `depth`) of a thick translucent cloud lies inside it; the median is where the
    render turns opaque, the surface a viewer sees (2DGS, Huang et al. 2024, §4.3). Same alpha rule as composite."""
    colors = torch.zeros(len(means), 1, dtype=means.dtype, device=means.device)
    means2d, conics, depths, radii, _ = _prepare(means, quats, scales, opacities, colors, cams, None, eps2d, near)
    B, H, W = len(cams), cams.height, cams.width
    op = opacities.expand(B, -1) if opacities.dim() == 1 else opacities
    px = torch.stack(torch.meshgrid(torch.arange(H, device=means.device), torch.arange(W, device=means.device),
                                    indexing="ij")[::-1], -1).reshape(-1, 2).to(means.dtype) + 0.5   # [HW,2] (x, y)
    out = torch.zeros(B, H * W, dtype=means.dtype, device=means.device)
    for b in range(B):
        vis = (radii[b, :, 0] > 0).nonzero(as_tuple=True)[0]
        vis = vis[torch.argsort(depths[b, vis])]                                   # front to back [Nv]
        if len(vis) == 0:
            continue
        m, (A, Bc, C), o, z = means2d[b, vis], conics[b, vis].unbind(-1), op[b, vis], depths[b, vis]
        step = max(1, chunk // len(vis))
        for s in range(0, H * W, step):
            d = px[s:s + step, None, :] - m[None]                                   # [P,Nv,2]
            q = A * d[..., 0] ** 2 + 2 * Bc * d[..., 0] * d[..., 1] + C * d[..., 1] ** 2
            a = (o * torch.exp(-0.5 * q)).clamp_max(ALPHA_MAX)
            a = a * (a >= ALPHA_MIN)
            log_t = torch.cumsum(torch.log1p(-a), 1)                                # inclusive [P,Nv]
            crossed = log_t <= math.log(transmittance)
            first = crossed.float().argmax(1)                                       # [P]
            out[b, s:s + step] = torch.where(crossed.any(1), z[first], torch.zeros_like(z[first]))
    return out.reshape(B, H, W, 1)
