"""Training and held-out image sets of the shapes evaluator (scripts/train_evaluator.py), besides the negatives.

    x, specs = render_set(n_per_prompt, seed)     # GT renders [N,3,res,res] of every catalogue prompt
    x = augment(x, Aug(), g)                      # light shift / scale / colour / noise / blur jitter
    relit_set, mesh_set                           # other lighting; flat-shaded marching-cubes meshes
    probe_images()                                # hand-made blank / flat-square / disc / noise probes
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dreamer.shapes.render import random_views, render_shapes
from renderers.shading import AMBIENT, camera_key_light
from dreamer.shapes.world import COLOURS, SHAPES, catalogue, sdf
from renderers.cameras import orbit_cameras, rays_from_cameras

from .negatives import ELEV_RANGE
from .sdf_render import render_catalogue


@dataclass
class Aug:
    """Light augmentation so the classifier tolerates imperfect generated images."""

    shift_px: float = 2.0      # max translation, pixels
    scale: float = 0.12        # scale jitter +-
    gain: float = 0.12         # brightness gain jitter +-
    chan: float = 0.05         # per-channel gain jitter +-
    sat: float = 0.15          # saturation jitter +- (mix with the pixel's grey level)
    noise: float = 0.05        # max gaussian noise std (applied with p=0.5)
    p_blur: float = 0.3        # probability of a small gaussian blur
    p_flip: float = 0.5        # horizontal flip


def render_set(n_per_prompt: int, seed: int, res: int = 32, chunk: int = 432):
    """GT renders of every catalogue prompt: images [N,3,res,res], specs (len N)."""
    g = torch.Generator().manual_seed(seed)
    specs = catalogue() * n_per_prompt
    imgs = []
    for i in range(0, len(specs), chunk):
        sub = specs[i:i + chunk]
        v = random_views(len(sub), g, elev_range=ELEV_RANGE)
        imgs.append(render_shapes(sub, v["elev"], v["azim"], v["dist"], v["fov"], res=res)[0])
    return torch.cat(imgs), specs


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image 3x3 gaussian blur of x [B,3,H,W] with std sigma [B] (replicate padding)."""
    t = torch.tensor([-1.0, 0.0, 1.0])
    k1 = torch.exp(-t[None] ** 2 / (2 * sigma[:, None] ** 2))
    k1 = k1 / k1.sum(-1, keepdim=True)                       # [B,3]
    k = (k1[:, :, None] * k1[:, None, :])                    # [B,3,3]
    B, C, H, W = x.shape
    xp = F.pad(x.reshape(1, B * C, H, W), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(xp, k.repeat_interleave(C, 0)[:, None], groups=B * C).reshape(B, C, H, W)


def augment(x: torch.Tensor, aug: Aug, g: torch.Generator) -> torch.Tensor:
    """Random shift/scale (white fill), flip, colour/brightness/saturation jitter, noise and blur; x [B,3,H,W]."""
    B, _, H, _ = x.shape
    u = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    s = 1 + aug.scale * (2 * u(B) - 1)
    flip = torch.where(u(B) < aug.p_flip, -1.0, 1.0)
    t = aug.shift_px * 2 / H * (2 * u(B, 2) - 1)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = flip / s, 1 / s
    theta[:, :, 2] = t
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = 1 - F.grid_sample(1 - x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    gain = (1 + aug.gain * (2 * u(B, 1, 1, 1) - 1)) * (1 + aug.chan * (2 * u(B, 3, 1, 1) - 1))
    x = (x * gain).clamp(0, 1)
    grey = x.mean(1, keepdim=True)
    x = (grey + (x - grey) * (1 + aug.sat * (2 * u(B, 1, 1, 1) - 1))).clamp(0, 1)
    blur = u(B) < aug.p_blur
    if blur.any():
        x[blur] = _blur(x[blur], 0.4 + 0.6 * u(int(blur.sum())))
    sd = aug.noise * u(B, 1, 1, 1) * (u(B, 1, 1, 1) < 0.5)
    return (x + sd * torch.randn(x.shape, generator=g)).clamp(0, 1)


def relit_set(n_per_prompt: int, seed: int, res: int = 32, ambient=(0.2, 0.5), light_up=(-0.5, 0.4),
              light_right=(-0.5, 0.5)):
    """GT shapes and colours under other lighting (ambient, light direction): images, specs."""
    g = torch.Generator().manual_seed(seed)
    specs = catalogue() * n_per_prompt
    n = len(specs)
    v = random_views(n, g, elev_range=ELEV_RANGE)
    u = lambda lo_hi: lo_hi[0] + (lo_hi[1] - lo_hi[0]) * torch.rand(n, generator=g)  # noqa: E731
    off = torch.stack([u(light_up), u(light_right)], -1)
    return render_catalogue(specs, v, res, ambient=u(ambient), light_offset=off)[0], specs


def _mc_mesh(shape: str, cells: int = 36, half: float = 0.62):
    """Marching-cubes mesh of a GT SDF (like an exported mesh): vertices [V,3], faces [F,3]."""
    from skimage.measure import marching_cubes

    t = torch.linspace(-half, half, cells + 1)
    grid = sdf(shape, torch.stack(torch.meshgrid(t, t, t, indexing="ij"), -1)).numpy()
    verts, faces, _, _ = marching_cubes(grid, 0.0, spacing=(2 * half / cells,) * 3)
    return torch.tensor(verts - half, dtype=torch.float32), torch.tensor(faces.copy(), dtype=torch.long)


def mesh_set(n_per_prompt: int, seed: int, res: int = 32, supersample: int = 2):
    """Flat-shaded (one lambert shade per triangle) ray-cast renders of marching-cubes meshes of the GT shapes,
    lit as the GT renders: images, specs. A stand-in for renders of exported meshes."""
    g = torch.Generator().manual_seed(seed)
    specs = catalogue() * n_per_prompt
    v = random_views(len(specs), g, elev_range=ELEV_RANGE)
    hi = res * supersample
    cams = orbit_cameras(v["elev"], v["azim"], v["dist"], v["fov"], hi, hi)
    origins, dirs = rays_from_cameras(cams)
    lights = camera_key_light(cams.c2w)                                             # [B,3]
    meshes = {s: _mc_mesh(s) for s in SHAPES}
    out = torch.ones(len(specs), 3, hi, hi)
    for b, spec in enumerate(specs):
        verts, faces = meshes[spec.shape]
        v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
        e1, e2 = v1 - v0, v2 - v0
        o, d = origins[b, 0, 0], dirs[b].reshape(-1, 3)
        cr = torch.cross(e1, e2, dim=-1)
        outward = 1.0 if float((cr * (v0 + v1 + v2)).sum()) > 0 else -1.0   # sum = 6 x volume when outward
        front = (outward * cr * (v0 - o)).sum(-1) < 0                        # back faces are hidden (closed mesh)
        v0, e1, e2 = v0[front], e1[front], e2[front]
        tvec = o - v0
        qvec = torch.cross(tvec, e1, dim=-1)                           # Moller-Trumbore, camera-constant parts
        det = d @ torch.cross(e2, e1, dim=-1).T                         # e1 . (d x e2) = d . (e2 x e1)
        u = d @ torch.cross(e2, tvec, dim=-1).T                         # tvec . (d x e2) = d . (e2 x tvec)
        w = d @ qvec.T
        t = (e2 * qvec).sum(-1)[None]
        ok = det.abs() > 1e-9
        inv = torch.where(ok, 1 / torch.where(ok, det, torch.ones(())), torch.zeros(()))
        u, w, t = u * inv, w * inv, t * inv
        valid = ok & (u >= 0) & (w >= 0) & (u + w <= 1) & (t > 1e-4)
        t = torch.where(valid, t, torch.full((), math.inf))
        tmin, fi = t.min(-1)
        hit = torch.isfinite(tmin)
        n = F.normalize(torch.cross(e1, e2, dim=-1)[fi], dim=-1)
        n = torch.where(((n * d).sum(-1, keepdim=True) > 0), -n, n)   # two-sided: face the camera
        shade = AMBIENT + (1 - AMBIENT) * (n @ lights[b]).clamp(min=0)
        col = torch.where(hit[:, None], torch.tensor(spec.rgb) * shade[:, None], torch.ones(()))
        out[b] = col.clamp(0, 1).reshape(hi, hi, 3).permute(2, 0, 1)
    return F.avg_pool2d(out, supersample), specs


def probe_images(res: int = 32) -> dict[str, torch.Tensor]:
    """Hand-made probes: blank, flat squares (axis-aligned: what a cube seen exactly face-on renders as, when of
    a cube's size ~15-22 px and shade 0.88 x its colour), a rotated square, flat discs, uniform noise."""
    t = torch.arange(res) + 0.5 - res / 2
    red, blue = torch.tensor(COLOURS["red"])[:, None, None], torch.tensor(COLOURS["blue"])[:, None, None]
    fill = lambda inside, c: torch.where(inside, c, torch.ones(()))  # noqa: E731

    def sq(side: float, deg: float = 0.0) -> torch.Tensor:
        c, sn = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        u, v = c * t[None, :] + sn * t[:, None], c * t[:, None] - sn * t[None, :]
        return fill(torch.maximum(u.abs(), v.abs()) <= side / 2, red)

    disc = lambda r: fill(t[:, None] ** 2 + t[None, :] ** 2 <= r * r, blue)  # noqa: E731
    return {"blank white": torch.ones(3, res, res),
            **{f"flat red square {s}px": sq(s) for s in (8, 12, 16, 20, 24, 28)},
            "flat red square 18px rotated 30deg": sq(18, 30.0),
            "flat red square 18px rotated 45deg": sq(18, 45.0),
            **{f"flat blue disc r{r}px": disc(r) for r in (5, 8, 11, 14)},
            "uniform noise": torch.rand(3, res, res, generator=torch.Generator().manual_seed(0))}
