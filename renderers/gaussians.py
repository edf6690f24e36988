"""3D Gaussian parameters: container, activation, initialisation, density/colour queries, 3DGS .ply I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch

from . import rng
from .gaussians_raster import quat_to_rotmat
from .sh import SH_C0 as _C0

__all__ = ["GaussianParams", "activate", "init_gaussians_ball", "init_gaussians_from_points",
           "rgb_to_sh0", "sh0_to_rgb", "gaussians_density", "gaussians_density_grid", "gaussians_color", "save_3dgs_ply",
           "load_3dgs_ply", "make_optimizer"]

PARAM_NAMES = ("means", "log_scales", "quats", "opacity_logits", "sh0", "shN")


@dataclass
class GaussianParams:
    """Raw (pre-activation) Gaussian parameters; colour = 0.5 + SH (gsplat / 3DGS convention)."""

    means: torch.Tensor           # [N,3]
    log_scales: torch.Tensor      # [N,3]
    quats: torch.Tensor           # [N,4] (w,x,y,z), unnormalised
    opacity_logits: torch.Tensor  # [N]
    sh0: torch.Tensor             # [N,1,3] SH DC
    shN: torch.Tensor             # [N,K-1,3] higher SH bands (K-1 = 0 for degree 0)

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return int(round(math.sqrt(self.shN.shape[1] + 1))) - 1

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def parameters(self) -> list[torch.Tensor]:
        return list(self.as_dict().values())

    def requires_grad_(self, flag: bool = True) -> "GaussianParams":
        """Turn every tensor into a leaf nn.Parameter (in place) and return self."""
        for k, v in self.as_dict().items():
            setattr(self, k, torch.nn.Parameter(v.detach().clone(), requires_grad=flag))
        return self

    def detach(self) -> "GaussianParams":
        return GaussianParams(**{k: v.detach().clone() for k, v in self.as_dict().items()})


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    """RGB [...,3] -> SH DC [...,3]."""
    return (rgb - 0.5) / _C0


def sh0_to_rgb(sh0: torch.Tensor) -> torch.Tensor:
    """SH DC [...,3] -> RGB [...,3]."""
    return 0.5 + _C0 * sh0


def activate(p: GaussianParams):
    """-> means [N,3], quats [N,4] (unit), scales [N,3], opacities [N], colors ([N,3] RGB if degree 0,
    else SH coefficients [N,K,3] to pass with sh_degree=p.sh_degree)."""
    quats = torch.nn.functional.normalize(p.quats, dim=-1)
    if p.shN.shape[1] == 0:
        colors = sh0_to_rgb(p.sh0[:, 0]).clamp_min(0.0)
    else:
        colors = torch.cat([p.sh0, p.shN], 1)
    return p.means, quats, torch.exp(p.log_scales), torch.sigmoid(p.opacity_logits), colors


def project_colors_(p: GaussianParams) -> None:
    """Projected gradient step: put degree-0 colours back in RGB [0,1] in place (call after optimizer.step).

    The activation clamps colours; without this a channel pushed past the clamp (high-CFG guidance does that)
    gets zero gradient forever, while on the box boundary its gradient stays live.
    """
    if p.shN.shape[1] == 0:
        with torch.no_grad():
            p.sh0.clamp_(-0.5 / _C0 + 1e-5, 0.5 / _C0 - 1e-5)  # a hair inside, so fp rounding stays unclamped


def _params(means, scales, rgb, opacity, sh_degree):
    N = means.shape[0]
    quats = torch.zeros(N, 4, dtype=means.dtype, device=means.device)
    quats[:, 0] = 1.0
    return GaussianParams(means=means, log_scales=torch.log(scales), quats=quats,
                          opacity_logits=torch.logit(opacity), sh0=rgb_to_sh0(rgb)[:, None],
                          shN=means.new_zeros(N, (sh_degree + 1) ** 2 - 1, 3))


def init_gaussians_ball(n: int, radius: float = 0.5, generator: torch.Generator | None = None,
                        opacity: float = 0.1, scale: float | None = None, sh_degree: int = 0,
                        device="cpu") -> GaussianParams:
    """n Gaussians uniform in a ball, random colours, isotropic scale ~ mean spacing."""
    g = dict(generator=generator, device=device)
    d = torch.nn.functional.normalize(rng.randn(n, 3, **g), dim=-1)
    means = d * radius * rng.rand(n, 1, **g) ** (1 / 3)
    s = scale if scale is not None else radius * (4 / 3 * math.pi / n) ** (1 / 3) * 0.7
    return _params(means, torch.full((n, 3), s, device=device), rng.rand(n, 3, **g),
                   torch.full((n,), opacity, device=device), sh_degree)


def init_gaussians_from_points(points: torch.Tensor, colors: torch.Tensor | None = None,
                               opacity: float = 0.1, sh_degree: int = 0, k: int = 3) -> GaussianParams:
    """Gaussians at points [N,3] (colours [N,3] in [0,1]); scale = mean distance to k nearest."""
    pts = points.float()
    n = pts.shape[0]
    d = torch.cdist(pts, pts) if n <= 8192 else None
    if d is not None and n > 1:
        knn = d.topk(min(k + 1, n), largest=False).values[:, 1:].mean(-1).clamp_min(1e-4)
    else:
        knn = torch.full((n,), 0.01, device=pts.device)
    cols = torch.full_like(pts, 0.5) if colors is None else colors.float().clamp(1e-3, 1 - 1e-3)
    return _params(pts, knn[:, None].expand(n, 3).clone(), cols,
                   torch.full((n,), opacity, device=pts.device), sh_degree)


def _inv_cov(p: GaussianParams) -> torch.Tensor:
    R = quat_to_rotmat(p.quats)                                    # [N,3,3]
    M = R / torch.exp(p.log_scales)[:, None, :]                    # R S^-1
    return M @ M.transpose(-1, -2)                                 # Sigma^-1 [N,3,3]


def _weights(p: GaussianParams, points: torch.Tensor, chunk: int) -> list[torch.Tensor]:
    icov, opa = _inv_cov(p), torch.sigmoid(p.opacity_logits)
    out = []
    for s in range(0, points.shape[0], chunk):
        d = points[s:s + chunk, None, :] - p.means[None]           # [P,N,3]
        q = torch.einsum("pni,nij,pnj->pn", d, icov, d)
        out.append(opa * torch.exp(-0.5 * q))                      # [P,N]
    return out


def gaussians_density(p: GaussianParams, points: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Opacity-weighted Gaussian mixture density at points [P,3] -> [P]."""
    return torch.cat([w.sum(-1) for w in _weights(p, points, chunk)])


@torch.no_grad()
def gaussians_density_grid(p: GaussianParams, res: int = 96, bound: float = 1.0, n_sigma: float = 3.0,
                           max_half: int = 12, chunk: int = 256) -> torch.Tensor:
    """gaussians_density on the grid linspace(-bound, bound, res)^3 -> [res,res,res] (x,y,z), by local splatting.

    Each Gaussian adds its weight to voxels within n_sigma of its largest scale (at most max_half voxels away),
    so the cost is N * window^3 instead of N * res^3; beyond that window a Gaussian's weight is dropped.
    """
    h = 2 * bound / (res - 1)
    half = int(min(max(math.ceil(n_sigma * torch.exp(p.log_scales).max().item() / h), 1), max_half))
    off = torch.arange(-half, half + 1, device=p.means.device)
    offs = torch.stack(torch.meshgrid(off, off, off, indexing="ij"), -1).reshape(-1, 3)   # [K,3]
    icov, opa = _inv_cov(p), torch.sigmoid(p.opacity_logits)
    grid = torch.zeros(res ** 3, dtype=p.means.dtype, device=p.means.device)
    for s in range(0, len(p), chunk):
        mu = p.means[s:s + chunk]
        idx = torch.round((mu + bound) / h).long()[:, None] + offs[None]                  # [n,K,3]
        d = (idx * h - bound) - mu[:, None]                                                 # [n,K,3]
        q = torch.einsum("nki,nij,nkj->nk", d, icov[s:s + chunk], d)
        w = opa[s:s + chunk, None] * torch.exp(-0.5 * q)                                    # [n,K]
        ok = ((idx >= 0) & (idx < res)).all(-1)
        lin = (idx[..., 0] * res + idx[..., 1]) * res + idx[..., 2]
        grid.index_add_(0, lin[ok], w[ok])
    return grid.reshape(res, res, res)


def gaussians_color(p: GaussianParams, points: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Density-weighted mean colour (view-independent DC) at points [P,3] -> [P,3]."""
    rgb = sh0_to_rgb(p.sh0[:, 0]).clamp(0, 1)
    return torch.cat([(w @ rgb) / w.sum(-1, keepdim=True).clamp_min(1e-12)
                      for w in _weights(p, points, chunk)])


def make_optimizer(p: GaussianParams, lrs: dict[str, float] | None = None, eps: float = 1e-15):
    """Adam with one named param group per tensor (what densify_and_prune expects)."""
    base = dict(means=1.6e-4 * 10, log_scales=5e-3, quats=1e-3, opacity_logits=5e-2, sh0=2.5e-3,
                shN=2.5e-3 / 20)
    base.update(lrs or {})
    return torch.optim.Adam([{"params": [getattr(p, k)], "lr": base[k], "name": k} for k in PARAM_NAMES],
                            eps=eps)


def _ply_names(n_rest: int) -> list[str]:
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def save_3dgs_ply(path, p: GaussianParams) -> None:
    """Write the standard 3DGS binary little-endian .ply (f_rest channel-major, as in 3DGS)."""
    n = len(p)
    t = lambda x: x.detach().float().cpu().reshape(n, -1)  # noqa: E731
    rest = p.shN.detach().float().cpu().transpose(1, 2).reshape(n, -1)   # [N,3*(K-1)]
    data = torch.cat([t(p.means), torch.zeros(n, 3), t(p.sh0), rest, t(p.opacity_logits),
                      t(p.log_scales), t(p.quats)], 1).numpy().astype("<f4")
    names = _ply_names(rest.shape[1])
    header = "ply\nformat binary_little_endian 1.0\nelement vertex %d\n" % n
    header += "".join(f"property float {k}\n" for k in names) + "end_header\n"
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(np.ascontiguousarray(data).tobytes())


def load_3dgs_ply(path, device="cpu") -> GaussianParams:
    """Read a 3DGS .ply (binary little endian, float properties) written by 3DGS/gsplat/us."""
    with open(path, "rb") as f:
        names, n = [], 0
        line = f.readline().decode("ascii").strip()
        if line != "ply":
            raise ValueError("not a ply file")
        while line != "end_header":
            line = f.readline().decode("ascii").strip()
            tok = line.split()
            if tok[:1] == ["format"] and tok[1] != "binary_little_endian":
                raise ValueError(f"unsupported ply format {tok[1]}")
            if tok[:2] == ["element", "vertex"]:
                n = int(tok[2])
            elif tok[:1] == ["property"]:
                if tok[1] not in ("float", "float32"):
                    raise ValueError(f"unsupported property type {tok[1]}")
                names.append(tok[2])
        arr = np.frombuffer(f.read(4 * n * len(names)), dtype="<f4").reshape(n, len(names))
    col = {k: torch.from_numpy(arr[:, i].copy()).to(device) for i, k in enumerate(names)}
    st = lambda ks: torch.stack([col[k] for k in ks], -1)  # noqa: E731
    rest = sorted((k for k in names if k.startswith("f_rest_")), key=lambda k: int(k[7:]))
    shN = st(rest).reshape(n, 3, -1).transpose(1, 2) if rest else torch.zeros(n, 0, 3, device=device)
    return GaussianParams(means=st(["x", "y", "z"]), log_scales=st(["scale_0", "scale_1", "scale_2"]),
                          quats=st(["rot_0", "rot_1", "rot_2", "rot_3"]), opacity_logits=col["opacity"],
                          sh0=st(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None], shN=shN.contiguous())
