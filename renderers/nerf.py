"""Hash-grid NeRF field (density + albedo) and its volume renderer with optional Lambertian shading."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from . import rng
from .cameras import Cameras, rays_from_cameras
from .hashgrid import HashGridConfig, make_hashgrid
from .volume import OccupancyGrid, composite, ray_aabb, stratified_samples

__all__ = ["NeRFConfig", "NeRFField", "BackgroundMLP", "NeRFRenderConfig", "render_rays", "render_nerf",
           "random_light_dirs", "nerf_density_grid", "nerf_color"]


@dataclass
class NeRFConfig:
    """Field settings (threestudio-like defaults, shrunk for CPU)."""

    bound: float = 1.0                  # scene box [-bound, bound]^3
    grid: HashGridConfig = field(default_factory=lambda: HashGridConfig(
        n_levels=12, n_features=2, log2_table_size=17, base_resolution=16, max_resolution=512))
    hidden: int = 64
    n_hidden_layers: int = 1
    density_activation: str = "softplus"   # or "exp"
    blob_density: float = 10.0             # DreamFusion / Magic3D density blob at the origin
    blob_radius: float = 0.5
    backend: str = "auto"                  # hash grid: "auto" | "torch" | "tcnn"


class NeRFField(nn.Module):
    """x [P,3] (world) -> sigma [P], albedo [P,3]."""

    def __init__(self, config: NeRFConfig = NeRFConfig()):
        super().__init__()
        self.config = config
        self.encoding = make_hashgrid(config.grid, config.backend)
        layers, d = [], self.encoding.out_dim
        for _ in range(config.n_hidden_layers):
            layers += [nn.Linear(d, config.hidden), nn.ReLU()]
            d = config.hidden
        self.mlp = nn.Sequential(*layers, nn.Linear(d, 4))

    def density_bias(self, x: torch.Tensor) -> torch.Tensor:
        """Blob bias [P] = blob_density * (1 - |x| / blob_radius)."""
        return self.config.blob_density * (1 - x.norm(dim=-1) / self.config.blob_radius)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.mlp(self.encoding((x / self.config.bound + 1) * 0.5))
        raw = h[..., 0] + self.density_bias(x)
        sigma = torch.exp(raw.clamp_max(15)) if self.config.density_activation == "exp" else nn.functional.softplus(raw)
        return sigma, torch.sigmoid(h[..., 1:])

    def density(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)[0]


class BackgroundMLP(nn.Module):
    """Tiny MLP of the view direction -> RGB in (0,1)."""

    def __init__(self, hidden: int = 16, n_freq: int = 2):
        super().__init__()
        self.n_freq = n_freq
        self.net = nn.Sequential(nn.Linear(3 + 6 * n_freq, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        enc = [dirs] + [f(dirs * 2 ** k) for k in range(self.n_freq) for f in (torch.sin, torch.cos)]
        return torch.sigmoid(self.net(torch.cat(enc, -1)))


@dataclass
class NeRFRenderConfig:
    """Ray marching / shading settings."""

    n_samples: int = 64
    jitter: bool = True
    min_near: float = 0.05
    shading: str = "albedo"            # "albedo" | "lambertian" | "textureless"
    ambient: float = 0.1               # Lambertian: c = albedo * (ambient + (1-ambient) max(0, n.l))
    compute_normals: bool = False      # also on when shading needs it


def random_light_dirs(cams: Cameras, generator: torch.Generator | None = None, spread: float = 0.5) -> torch.Tensor:
    """Unit light directions [B,3] (towards the light) near each camera, as in DreamFusion."""
    pos = torch.nn.functional.normalize(cams.c2w[:, :3, 3], dim=-1)
    noise = rng.randn(*pos.shape, generator=generator, device=pos.device, dtype=pos.dtype) * spread
    return torch.nn.functional.normalize(pos + noise, dim=-1)


def _field_with_normals(field_fn, x: torch.Tensor, need_normals: bool):
    if not need_normals:
        sigma, albedo = field_fn(x)
        return sigma, albedo, None
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        sigma, albedo = field_fn(xg)
        g, = torch.autograd.grad(sigma.sum(), xg, create_graph=torch.is_grad_enabled() and sigma.requires_grad)
    return sigma, albedo, -torch.nn.functional.normalize(g, dim=-1)


def render_rays(field_fn, origins: torch.Tensor, dirs: torch.Tensor, near: torch.Tensor, far: torch.Tensor,
                config: NeRFRenderConfig = NeRFRenderConfig(), light_dirs: torch.Tensor | None = None,
                occupancy: OccupancyGrid | None = None, background=None,
                generator: torch.Generator | None = None) -> dict:
    """March rays [R,3] in [near,far] [R]; field_fn(x [P,3]) -> (sigma [P], albedo [P,3]).
    Returns rgb [R,3], alpha [R], depth [R], normal [R,3] (if computed), weights [R,S], normals [R,S,3]."""
    R, S = origins.shape[0], config.n_samples
    ts, deltas = stratified_samples(near, far, S, config.jitter, generator)              # [R,S]
    x = origins[:, None] + dirs[:, None] * ts[..., None]                                 # [R,S,3]
    keep = (far > near)[:, None].expand(R, S)
    if occupancy is not None:
        keep = keep & occupancy.query(x)
    need_n = config.compute_normals or config.shading in ("lambertian", "textureless")
    sigma_k, albedo_k, n_k = _field_with_normals(field_fn, x[keep], need_n)
    sigmas = x.new_zeros(R, S).masked_scatter(keep, sigma_k)
    albedo = x.new_zeros(R, S, 3).masked_scatter(keep[..., None].expand(R, S, 3), albedo_k)
    normals = None
    if n_k is not None:
        normals = x.new_zeros(R, S, 3).masked_scatter(keep[..., None].expand(R, S, 3), n_k)
    color = albedo
    if config.shading in ("lambertian", "textureless"):
        l = light_dirs if light_dirs is not None else -dirs                              # [R,3]
        diffuse = (normals * l[:, None]).sum(-1, keepdim=True).clamp_min(0)
        shade = config.ambient + (1 - config.ambient) * diffuse
        color = shade * (albedo if config.shading == "lambertian" else torch.ones_like(albedo))
    out = composite(sigmas, color, deltas, ts)
    if normals is not None:
        out["normal"] = (out["weights"][..., None] * normals).sum(1)
        out["normals"] = normals
    if background is not None:
        bg = background(dirs) if callable(background) else background.to(x).expand(R, 3)
        out["rgb"] = out["rgb"] + (1 - out["alpha"][:, None]) * bg
    out["depth"] = out["depth"] / out["alpha"].clamp_min(1e-10)
    out["dirs"] = dirs
    return out


def render_nerf(field_fn, cams: Cameras, config: NeRFRenderConfig = NeRFRenderConfig(), bound: float = 1.0,
                background=None, light_dirs: torch.Tensor | None = None, occupancy: OccupancyGrid | None = None,
                generator: torch.Generator | None = None, chunk: int | None = None) -> dict:
    """Render cameras -> rgb [B,H,W,3], alpha/depth [B,H,W,1], normal [B,H,W,3] (+ per-sample
    weights [R,S], normals [R,S,3], dirs [R,3] for regularisers). light_dirs [B,3] per camera."""
    B, H, W = len(cams), cams.height, cams.width
    o, d = rays_from_cameras(cams)
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    near, far, _ = ray_aabb(o, d, bound, config.min_near)
    ld = None if light_dirs is None else light_dirs[:, None].expand(B, H * W, 3).reshape(-1, 3)
    chunk = chunk or o.shape[0]
    parts = [render_rays(field_fn, o[s:s + chunk], d[s:s + chunk], near[s:s + chunk], far[s:s + chunk], config,
                         None if ld is None else ld[s:s + chunk], occupancy, background, generator)
             for s in range(0, o.shape[0], chunk)]
    out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    img = lambda t, c: t.reshape(B, H, W, c)  # noqa: E731
    res = dict(rgb=img(out["rgb"], 3), alpha=img(out["alpha"], 1), depth=img(out["depth"], 1),
               weights=out["weights"], dirs=out["dirs"])
    if "normal" in out:
        res.update(normal=img(out["normal"], 3), normals=out["normals"])
    return res


@torch.no_grad()
def nerf_density_grid(field_fn, res: int = 128, bound: float = 1.0, chunk: int = 65536) -> torch.Tensor:
    """Density sampled at res^3 cell centres of [-bound,bound]^3 -> [res,res,res] (x,y,z order)."""
    r = (torch.arange(res, dtype=torch.float32) + 0.5) / res * 2 * bound - bound
    pts = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    dev = next((p.device for p in getattr(field_fn, "parameters", lambda: [])()), pts.device)
    out = [field_fn(pts[s:s + chunk].to(dev))[0].reshape(-1).cpu() for s in range(0, pts.shape[0], chunk)]
    return torch.cat(out).reshape(res, res, res)


@torch.no_grad()
def nerf_color(field_fn, points: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Albedo [P,3] at points [P,3] (for mesh vertex colours)."""
    return torch.cat([field_fn(points[s:s + chunk])[1] for s in range(0, points.shape[0], chunk)])
