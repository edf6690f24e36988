"""Volume rendering primitives: ray-box intersection, stratified sampling, compositing, occupancy grid."""

from __future__ import annotations

import torch

from . import rng

__all__ = ["ray_aabb", "stratified_samples", "composite", "composite_nerfacc", "OccupancyGrid"]


def ray_aabb(origins: torch.Tensor, dirs: torch.Tensor, bound: float, min_near: float = 0.05):
    """Slab test against [-bound,bound]^3: origins/dirs [R,3] -> near [R], far [R], hit [R]."""
    inv = 1.0 / torch.where(dirs.abs() > 1e-9, dirs, torch.full_like(dirs, 1e-9))
    t0, t1 = (-bound - origins) * inv, (bound - origins) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp_min(min_near)
    far = torch.maximum(t0, t1).amin(-1)
    hit = far > near
    return near, torch.where(hit, far, near), hit


def stratified_samples(near: torch.Tensor, far: torch.Tensor, n: int, jitter: bool = True,
                       generator: torch.Generator | None = None):
    """n bins per ray between near/far [R] -> t (sample positions) [R,n], delta (bin widths) [R,n]."""
    u = torch.linspace(0.0, 1.0, n + 1, device=near.device, dtype=near.dtype)      # bin edges
    edges = near[:, None] + (far - near)[:, None] * u                                # [R,n+1]
    off = (rng.rand(near.shape[0], n, generator=generator, device=near.device, dtype=near.dtype)
           if jitter else torch.full((near.shape[0], n), 0.5, device=near.device, dtype=near.dtype))
    t = edges[:, :-1] + (edges[:, 1:] - edges[:, :-1]) * off
    return t, edges[:, 1:] - edges[:, :-1]


def composite(sigmas: torch.Tensor, rgbs: torch.Tensor, deltas: torch.Tensor, ts: torch.Tensor | None = None):
    """Volume rendering: sigmas [R,S], rgbs [R,S,C], deltas [R,S] -> dict(rgb [R,C], alpha [R],
    depth [R] (expected, un-normalised), weights [R,S]). alpha_i = 1-exp(-sigma_i delta_i),
    T_i = exclusive cumprod(1-alpha) (computed as exp(-exclusive cumsum(sigma delta)), as nerfacc)."""
    sd = sigmas * deltas
    alphas = 1.0 - torch.exp(-sd)
    trans = torch.exp(-(torch.cumsum(sd, -1) - sd))
    weights = alphas * trans
    out = dict(rgb=(weights[..., None] * rgbs).sum(-2), alpha=weights.sum(-1), weights=weights)
    if ts is not None:
        out["depth"] = (weights * ts).sum(-1)
    return out


def composite_nerfacc(sigmas, rgbs, deltas, ts=None):
    """Same as :func:`composite` through nerfacc's batched functions (if installed)."""
    from nerfacc import accumulate_along_rays, render_weight_from_density
    t_starts = torch.cumsum(deltas, -1) - deltas
    weights, _, _ = render_weight_from_density(t_starts, t_starts + deltas, sigmas)
    out = dict(rgb=accumulate_along_rays(weights, rgbs), alpha=accumulate_along_rays(weights, None)[..., 0],
               weights=weights)
    if ts is not None:
        out["depth"] = accumulate_along_rays(weights, ts[..., None])[..., 0]
    return out


class OccupancyGrid(torch.nn.Module):
    """Binary occupancy over [-bound,bound]^3 from EMA'd density (role of nerfacc OccGridEstimator)."""

    def __init__(self, bound: float = 1.0, resolution: int = 32, decay: float = 0.95, threshold: float = 0.01):
        super().__init__()
        self.bound, self.res, self.decay, self.threshold = bound, resolution, decay, threshold
        self.register_buffer("density", torch.zeros(resolution ** 3))
        self.register_buffer("occupied", torch.ones(resolution ** 3, dtype=torch.bool))
        r = torch.arange(resolution)
        g = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
        self.register_buffer("cells", g)

    @torch.no_grad()
    def update(self, density_fn, generator: torch.Generator | None = None, chunk: int = 65536) -> None:
        """Evaluate density_fn(points [P,3]) -> [P] at a jittered point of every cell; EMA max; threshold."""
        dev = self.density.device
        jit = rng.rand(*self.cells.shape, generator=generator, device=dev)
        pts = ((self.cells + jit) / self.res * 2 - 1) * self.bound
        dens = torch.cat([density_fn(pts[s:s + chunk]).reshape(-1) for s in range(0, pts.shape[0], chunk)])
        self.density = torch.maximum(self.density * self.decay, dens.float())
        thr = min(self.threshold, self.density.mean().item())
        self.occupied = self.density > thr

    def query(self, points: torch.Tensor) -> torch.Tensor:
        """Occupancy (bool) at points [...,3]; outside the box -> False."""
        ijk = torch.floor((points / self.bound + 1) * 0.5 * self.res).long()
        inside = ((ijk >= 0) & (ijk < self.res)).all(-1)
        ijk = ijk.clamp(0, self.res - 1)
        idx = (ijk[..., 0] * self.res + ijk[..., 1]) * self.res + ijk[..., 2]
        return self.occupied[idx] & inside
