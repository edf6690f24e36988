"""Front-to-back alpha compositing of depth-sorted Gaussians over pixel tiles, with a hand-written backward.

A tile's depth-sorted list is cut into rows of at most `chunk` Gaussians (rows of one tile consecutive, front
row first), so a tile with 2,000 Gaussians and one with 50 no longer pad to the same length: the work is
sum(ceil(count / chunk)) * chunk instead of n_tiles * max(count). Transmittance carries across a tile's rows
through a per-tile exclusive scan of the rows' log-transmittance, so the result equals one long row.

Conventions follow gsplat: alpha = min(0.99, o * exp(-q/2)), samples with alpha < 1/255 skipped, and a sample
contributes only while the transmittance after it stays above 1e-4 (gsplat's early stop).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
T_MIN = 1e-4


@dataclass
class Rows:
    """How rows [R] group into tiles: tile index and position within the tile (tiles' rows consecutive)."""

    tile: torch.Tensor               # [R] long
    pos: torch.Tensor                # [R] long, 0 = the tile's front row
    n_tiles: int
    max_rows: int                    # max rows per tile

    @staticmethod
    def one_per_tile(n: int, device=None) -> "Rows":
        ar = torch.arange(n, device=device)
        return Rows(ar, torch.zeros_like(ar), n, 1)

    def scan(self, v: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        """Per row, the sum of v [R,P] over the earlier (reverse: later) rows of its tile -> [R,P].

        Built from shifted cumulative sums (never `inclusive - own`), so a row's offset is exact up to the
        rounding of the earlier rows' own sums, however negative later rows get."""
        if self.max_rows <= 1:
            return torch.zeros_like(v)
        pad = v.new_zeros(self.n_tiles, self.max_rows, v.shape[-1])
        pad[self.tile, self.pos] = v
        if reverse:
            pad = pad.flip(1)
        cs = pad.cumsum(1)
        excl = torch.cat([torch.zeros_like(cs[:, :1]), cs[:, :-1]], 1)
        if reverse:
            excl = excl.flip(1)
        return excl[self.tile, self.pos]


def _terms(g, xs, ys):
    dx = g[..., 0, None] - xs[:, None, :]                       # [R,K,X]
    dy = g[..., 1, None] - ys[:, None, :]                       # [R,K,Y]
    nx = -0.5 * g[..., 2, None] * dx * dx                       # [R,K,X]
    ny = g[..., 5, None] - 0.5 * g[..., 4, None] * dy * dy      # [R,K,Y] (log o folded in)
    nb = -g[..., 3, None] * dy                                  # [R,K,Y]
    return dx, dy, nx, ny, nb


def _features(g):
    return torch.cat([g[..., 7:], g[..., 6:7], torch.ones_like(g[..., :1])], -1)   # [R,K,C+2]


class _Composite(torch.autograd.Function):
    """Compositing of rows g [R,K,7+C] (mx, my, conic A B C, log o, depth, colour) over their tiles' pixels."""

    @staticmethod
    def forward(ctx, g, xs, ys, rows: Rows):
        dx, dy, nx, ny, nb = _terms(g, xs, ys)
        R, K, X, Y = g.shape[0], g.shape[1], xs.shape[1], ys.shape[1]
        alpha = torch.exp(ny[..., :, None] + nx[..., None, :] + nb[..., :, None] * dx[..., None, :])
        alpha = alpha.reshape(R, K, Y * X).clamp_max_(ALPHA_MAX)  # [R,K,P]
        alpha.mul_(alpha >= ALPHA_MIN)
        log1m = torch.log1p(-alpha)
        local = torch.cumsum(log1m, dim=1)                      # inclusive log transmittance within the row
        offset = rows.scan(local[:, -1])[:, None]               # log transmittance in front of the row [R,1,P]
        # exclusive transmittance, zeroed from the sample that would bring T to <= 1e-4 (gsplat stop)
        live = (local + offset) > math.log(T_MIN)
        t_ex = torch.exp(local.sub_(log1m).add_(offset)).mul_(live)
        out = torch.bmm((alpha * t_ex).transpose(1, 2), _features(g))                # [R,P,C+2]
        ctx.save_for_backward(g, xs, ys, alpha, t_ex)
        ctx.rows = rows
        if rows.max_rows == 1 and rows.n_tiles == R:
            return out
        return out.new_zeros(rows.n_tiles, *out.shape[1:]).index_add_(0, rows.tile, out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        g, xs, ys, alpha, t_ex = ctx.saved_tensors
        rows = ctx.rows
        R, K, X, Y = g.shape[0], g.shape[1], xs.shape[1], ys.shape[1]
        grad_out = grad_out.index_select(0, rows.tile) if grad_out.shape[0] != R else grad_out  # [R,P,C+2]
        feat = _features(g)
        w = alpha * t_ex                                        # [R,K,P]
        d_feat = torch.bmm(w, grad_out)                         # [R,K,C+2]
        gf = torch.bmm(feat, grad_out.transpose(1, 2))          # [R,K,P] = dL/dw
        wg = w * gf
        row_sum = wg.sum(1)                                     # [R,P]
        # sum_{j>k} w_j gf_j over the whole tile: later samples of this row + every later row
        after = (row_sum + rows.scan(row_sum, reverse=True))[:, None] - torch.cumsum(wg, 1)
        d_alpha = t_ex * gf - after / (1 - alpha)
        live = (t_ex > 0) & (alpha > 0) & (alpha < ALPHA_MAX)
        dz = (d_alpha * alpha * live).reshape(R, K, Y, X)       # d/d exponent
        dx, dy, nx, ny, nb = _terms(g, xs, ys)
        d_ny = dz.sum(-1)                                       # [R,K,Y]
        d_nx = dz.sum(-2)                                       # [R,K,X]
        d_nb = (dz @ dx[..., None])[..., 0]                     # [R,K,Y]
        d_dx = (nb[..., None, :] @ dz)[..., 0, :] - d_nx * g[..., 2, None] * dx   # [R,K,X]
        d_dy = -d_ny * g[..., 4, None] * dy - d_nb * g[..., 3, None]              # [R,K,Y]
        grad_g = torch.cat([
            d_dx.sum(-1, keepdim=True), d_dy.sum(-1, keepdim=True),
            -0.5 * (d_nx * dx * dx).sum(-1, keepdim=True), -(d_nb * dy).sum(-1, keepdim=True),
            -0.5 * (d_ny * dy * dy).sum(-1, keepdim=True), d_ny.sum(-1, keepdim=True),
            d_feat[..., -2:-1], d_feat[..., :-2]], -1)
        return grad_g, None, None, None


def composite(g: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, rows: Rows | None = None) -> torch.Tensor:
    """Rows g [R,K,7+C] over pixel centres ys x xs of their tiles (xs [R,X], ys [R,Y]) -> per tile
    [n_tiles, Y*X, C+2] = (sum w c, sum w z, alpha); rows=None: each row is its own tile."""
    return _Composite.apply(g, xs, ys, rows or Rows.one_per_tile(g.shape[0], g.device))
