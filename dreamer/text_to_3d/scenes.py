"""3D particle families for the generate loop: Gaussian splats and a hash-grid NeRF, behind one small interface.

A scene renders cameras to rgb [B,3,H,W] in [0,1] on a white background, owns its optimizer(s), has a
post-step hook (densification / occupancy update), exposes density and colour fields for mesh export, and
round-trips through state_dict for checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import renderers as R

from ..common.world import DEFAULT_SHADING

# The `step` at which to render a trained scene (export, evaluation, fusion, baking): after every schedule that reads
# the step (densification, warm-ups), so `scene.render(cams, FINAL_STEP)` is the final scene.
FINAL_STEP = 10 ** 9


@dataclass
class GaussianSceneConfig:
    """Gaussian splats (3DGS parameterisation; lrs in the spirit of GaussianDreamer / DreamGaussian)."""

    n_init: int = 1500
    init_radius: float = 0.45
    init_opacity: float = 0.1
    lr_means: float = 2e-3
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacity: float = 5e-2
    lr_colors: float = 2.5e-2
    densify_from: int = 100
    densify_until: int = 300
    densify_every: int = 50
    grow_grad2d: float = 2e-4
    prune_opacity: float = 0.01
    max_gaussians: int = 6000
    backend: str = "auto"            # auto | torch | gsplat
    export_threshold: float = 0.2    # level of the opacity-weighted mixture density for marching cubes
    export_smooth: float = 1.0       # Gaussian blur (voxels at 64^3) of the density before marching cubes


@dataclass
class NeRFSceneConfig:
    """Hash-grid NeRF (threestudio-like, shrunk for CPU)."""

    levels: int = 8
    log2_table_size: int = 15
    max_resolution: int = 128
    hidden: int = 32
    lr: float = 1e-2
    n_samples: int = 48
    blob_density: float = 10.0
    blob_radius: float = 0.5
    occupancy_every: int = 16
    export_threshold: float = 10.0   # density level for marching cubes


class GaussianScene:
    """Gaussian splats rendered by renderers.rasterize (gsplat on CUDA, tile-binned torch on CPU)."""

    kind = "gaussians"
    depth_kind = "z"                 # rendered depth is the camera z of the splats

    def __init__(self, config: GaussianSceneConfig, generator: torch.Generator, device="cpu"):
        self.config = config
        self.params = R.init_gaussians_ball(config.n_init, config.init_radius, generator, opacity=config.init_opacity,
                                            device=device).requires_grad_(True)
        self.opt = R.make_optimizer(self.params, {"means": config.lr_means, "log_scales": config.lr_scales,
                                                  "quats": config.lr_quats, "opacity_logits": config.lr_opacity,
                                                  "sh0": config.lr_colors, "shN": config.lr_colors / 20})
        self.densify_cfg = R.DensifyConfig(grow_grad2d=config.grow_grad2d, prune_opa=config.prune_opacity,
                                           scene_scale=config.init_radius, refine_start=config.densify_from,
                                           refine_stop=config.densify_until, refine_every=config.densify_every,
                                           reset_every=10 ** 9,     # never reset opacities
                                           max_gaussians=config.max_gaussians)
        self.densify_state = R.DensifyState.zeros(len(self.params), device)
        self._last = None

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.opt]

    def render(self, cams: R.Cameras, step: int, generator: torch.Generator | None = None, shading: str = "albedo",
               light: torch.Tensor | None = None, ambient: float = DEFAULT_SHADING.ambient) -> dict:
        """-> dict(rgb [B,3,H,W], alpha [B,1,H,W], depth, reg inputs); shading other than albedo relights rgb
        from the rendered depth's normals under light [B,3] (renderers.shading)."""
        means, quats, scales, opac, colors = R.activate(self.params)
        bg = torch.ones(3, device=means.device)
        out = R.rasterize(means, quats, scales, opac, colors, cams, background=bg, backend=self.config.backend)
        self._last = out
        res = dict(rgb=out["rgb"].permute(0, 3, 1, 2), alpha=out["alpha"].permute(0, 3, 1, 2),
                   depth=out["depth"].permute(0, 3, 1, 2), scales=scales, opacities=opac)
        if shading != "albedo":
            res["rgb"] = R.relight(res, cams, self.depth_kind, light, bg, shading, ambient)
        return res

    def post_step(self, step: int, cams: R.Cameras, generator: torch.Generator | None = None) -> dict:
        """Accumulate view-space gradients and densify / prune on schedule (call after optimizer.step)."""
        R.project_colors_(self.params)
        out = self._last
        self.densify_state = R.update_densify_state(self.densify_state, out["means2d"], out["radii"],
                                                    cams.width, cams.height)
        self.densify_state, stats = R.densify_and_prune(self.params, self.opt, self.densify_state,
                                                        self.densify_cfg, step + 1, generator)
        return stats

    @torch.no_grad()
    def surface_depth(self, cams: R.Cameras, transmittance: float = 0.95) -> torch.Tensor:
        """Depth [B,1,H,W] (camera z) where the render's transmittance falls to `transmittance`; 0 where it never does."""
        means, quats, scales, opac, _ = R.activate(self.params)
        return R.median_depth(means, quats, scales, opac, cams, transmittance=transmittance).permute(0, 3, 1, 2)

    def density_fn(self, points: torch.Tensor) -> torch.Tensor:
        return R.gaussians_density(self.params.detach(), points)

    def color_fn(self, points: torch.Tensor) -> torch.Tensor:
        return R.gaussians_color(self.params.detach(), points)

    def density_grid(self, res: int, bound: float = 1.0) -> np.ndarray:
        """Mixture density on linspace(-bound, bound, res)^3 by local splatting, blurred by export_smooth."""
        from scipy.ndimage import gaussian_filter

        grid = R.gaussians_density_grid(self.params.detach(), res, bound).numpy()
        if self.config.export_smooth > 0:  # in voxels of a 64^3 grid
            grid = gaussian_filter(grid, self.config.export_smooth * res / 64)
        return grid

    @property
    def export_threshold(self) -> float:
        return self.config.export_threshold

    def state_dict(self) -> dict:
        return {"params": {k: v.detach().clone() for k, v in self.params.as_dict().items()},
                "opt": self.opt.state_dict(), "densify": (self.densify_state.grad2d, self.densify_state.count)}

    def load_state_dict(self, sd: dict, device=None) -> None:
        """Restore onto `device` (default: where the scene lives now; checkpoints load on the CPU)."""
        dev = device if device is not None else self.params.means.device
        self.params = R.GaussianParams(**{k: v.to(dev) for k, v in sd["params"].items()}).requires_grad_(True)
        self.opt = R.make_optimizer(self.params, {g["name"]: g["lr"] for g in self.opt.param_groups})
        self.opt.load_state_dict(sd["opt"])                      # casts the Adam state to the params' device
        self.densify_state = R.DensifyState(*(t.to(dev) for t in sd["densify"]))

    def to(self, device) -> "GaussianScene":
        """Move parameters, optimizer state and densification statistics (e.g. to the CPU for export)."""
        self.load_state_dict(self.state_dict(), device)
        self._last = None
        return self


class NeRFScene:
    """Hash-grid NeRF with a torch occupancy grid, rendered by renderers.render_nerf."""

    kind = "nerf"
    depth_kind = "ray"               # rendered depth is the distance along the (unit) ray

    def __init__(self, config: NeRFSceneConfig, generator: torch.Generator, device="cpu"):
        self.config = config
        grid = R.HashGridConfig(n_levels=config.levels, n_features=2, log2_table_size=config.log2_table_size,
                                base_resolution=16, max_resolution=config.max_resolution)
        self.field = R.NeRFField(R.NeRFConfig(grid=grid, hidden=config.hidden, blob_density=config.blob_density,
                                              blob_radius=config.blob_radius)).to(device)
        self.occupancy = R.OccupancyGrid(bound=1.0, resolution=32).to(device)
        self.opt = torch.optim.Adam(self.field.parameters(), lr=config.lr, betas=(0.9, 0.99), eps=1e-15)

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.opt]

    def render(self, cams: R.Cameras, step: int, generator: torch.Generator | None = None, shading: str = "albedo",
               light: torch.Tensor | None = None, ambient: float = DEFAULT_SHADING.ambient) -> dict:
        """-> dict(rgb [B,3,H,W], alpha, depth [B,1,H,W], weights / normals / dirs per sample for regularisers);
        shading other than albedo relights rgb from the rendered depth's normals (renderers.shading), and then the
        per-sample normals are computed too (the orientation regulariser's input)."""
        rc = R.NeRFRenderConfig(n_samples=self.config.n_samples, compute_normals=shading != "albedo")
        bg = torch.ones(3, device=cams.device)
        out = R.render_nerf(self.field, cams, rc, background=bg, occupancy=self.occupancy, generator=generator)
        res = dict(rgb=out["rgb"].permute(0, 3, 1, 2), alpha=out["alpha"].permute(0, 3, 1, 2),
                   depth=out["depth"].permute(0, 3, 1, 2), weights=out["weights"], normals=out.get("normals"),
                   dirs=out["dirs"])
        if shading != "albedo":
            res["rgb"] = R.relight(res, cams, self.depth_kind, light, bg, shading, ambient)
        return res

    def post_step(self, step: int, cams: R.Cameras, generator: torch.Generator | None = None) -> dict:
        if (step + 1) % self.config.occupancy_every == 0:
            self.occupancy.update(self.field.density, generator)
        return {"occupied": float(self.occupancy.occupied.float().mean())}

    @torch.no_grad()
    def surface_depth(self, cams: R.Cameras, transmittance: float = 0.95) -> torch.Tensor:
        """Ray distance [B,1,H,W] where the render's transmittance falls to `transmittance`; 0 where it never does."""
        rc = R.NeRFRenderConfig(n_samples=self.config.n_samples, shading="albedo", jitter=False)
        o, d = R.rays_from_cameras(cams)
        o, d = o.reshape(-1, 3), d.reshape(-1, 3)
        near, far, _ = R.ray_aabb(o, d, 1.0, rc.min_near)
        ts, _ = R.stratified_samples(near, far, rc.n_samples, jitter=False)                  # [P,S]
        out = R.render_rays(self.field, o, d, near, far, rc, occupancy=self.occupancy)
        crossed = out["weights"].cumsum(-1) >= 1 - transmittance                            # [P,S]
        depth = ts.gather(1, crossed.float().argmax(1, keepdim=True))[:, 0] * crossed.any(1)
        return depth.reshape(len(cams), 1, cams.height, cams.width)

    def density_fn(self, points: torch.Tensor) -> torch.Tensor:
        return self.field.density(points)

    def color_fn(self, points: torch.Tensor) -> torch.Tensor:
        return self.field(points)[1]

    def density_grid(self, res: int, bound: float = 1.0) -> np.ndarray:
        from .export import density_grid

        return density_grid(self.density_fn, bound, res)

    @property
    def export_threshold(self) -> float:
        return self.config.export_threshold

    def state_dict(self) -> dict:
        return {"field": self.field.state_dict(), "occupancy": self.occupancy.state_dict(),
                "opt": self.opt.state_dict()}

    def load_state_dict(self, sd: dict) -> None:
        self.field.load_state_dict(sd["field"])
        self.occupancy.load_state_dict(sd["occupancy"])
        self.opt.load_state_dict(sd["opt"])

    def to(self, device) -> "NeRFScene":
        """Move field, occupancy grid and optimizer state (e.g. to the CPU for export)."""
        sd = self.opt.state_dict()
        self.field.to(device)
        self.occupancy.to(device)
        self.opt = type(self.opt)(self.field.parameters(), **self.opt.defaults)  # .to() may swap Parameter objects
        self.opt.load_state_dict(sd)                             # casts the Adam state to the params' device
        return self


SCENES = {"gaussians": GaussianScene, "nerf": NeRFScene}
