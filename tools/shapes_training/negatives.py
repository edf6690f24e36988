"""Negative images for the shapes evaluator's reject output: anything that is not ONE catalogue object.

    images, kinds = make_negatives(n, seed=0, kinds=None, res=32, held_out=False)

returns rgb [n,3,res,res] in [0,1] on a white background (like the ground-truth renders) and one kind name per
image, grouped by kind in the order asked. Kinds (``KINDS``):

- ``blank``       white / near-white / grey-level / black frames (held out: soft vignettes and stains)
- ``flat``        the whole frame one colour (held out: linear two-colour gradients)
- ``silhouette``  flat filled discs, squares, triangles, no shading, and sphere/cylinder/cone/torus GT outlines
                  filled with one flat colour (held out: ellipses, hexagons, stars, rings instead of the 2D shapes;
                  outlines filled with the object's mean colour only). Axis-aligned squares and apex-up triangles are left out, and so are
                  flat-filled cube/pyramid outlines: a cube or pyramid seen (nearly) face-on renders as exactly
                  such a flat polygon (about 1 in 5 of their random views), so those are catalogue views.
- ``noise``       iid / smooth / blob-masked noise (held out: salt-and-pepper, stripes, checkerboards, octaves)
- ``two_objects`` two GT renders at a smaller scale, side by side or overlapping (held out: also three, stacked)
- ``crop``        a GT render zoomed so that the object is cut by the border (held out: wider zoom range)
- ``off_catalogue`` sphere-traced shapes outside the catalogue, shaded like the GT: ellipsoids, capsules,
                  bumpy spheres, bars, plates, star prisms (held out: jacks, dumbbells, snowmen, arches)
- ``off_colour``  catalogue shapes in colours outside the catalogue (train: grey, black, white, cyan, pink and
                  random colours at least COLOUR_MARGIN from any shaded catalogue colour and away from the
                  held-out palette; held out: silver, teal, magenta, lime, sky blue)

``held_out=True`` draws from different random streams for the same seed AND swaps in the held-out variants
above, so a model trained on ``held_out=False`` is tested on shapes, colours and patterns it never saw.
Everything is deterministic given (n, seed, kinds, res, held_out).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from dreamer.shapes.render import random_views, render_shapes
from dreamer.shapes.world import COLOURS, SHAPES, catalogue

from .negative_shapes import HELD_OUT_SOLIDS, TRAIN_SOLIDS, pixel_grid, shape2d, solid, uniform as _u
from .sdf_render import render_catalogue, render_sdf

KINDS = ("blank", "flat", "silhouette", "noise", "two_objects", "crop", "off_catalogue", "off_colour")
ELEV_RANGE = (-10.0, 80.0)  # the views the evaluator is trained and tested on

CATALOGUE_RGB = torch.tensor(list(COLOURS.values()))
# Off-catalogue colours: catalogue_margin(c) >= COLOUR_MARGIN (black excepted: a black object has no lit side).
TRAIN_PALETTE = torch.tensor([[0.50, 0.50, 0.50], [0.12, 0.12, 0.12], [0.93, 0.93, 0.93],
                              [0.10, 0.75, 0.80], [0.98, 0.55, 0.75]])          # grey black white cyan pink
HELD_OUT_PALETTE = torch.tensor([[0.72, 0.72, 0.72], [0.00, 0.55, 0.55], [0.85, 0.10, 0.60],
                                 [0.55, 0.90, 0.15], [0.50, 0.75, 0.95]])       # silver teal magenta lime sky
COLOUR_MARGIN = 0.25       # random training off-colours: at least this far from any catalogue-like colour
HELD_OUT_EXCLUSION = 0.2   # ... and at least this far from every held-out palette colour


def _pick(g: torch.Generator, n: int, k: int) -> torch.Tensor:
    return torch.randint(0, k, (n,), generator=g)


def _views(n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return random_views(n, g, elev_range=ELEV_RANGE)


def _catalogue_like() -> torch.Tensor:
    """Colours a catalogue object may show: s * (k (1 - m) + m lum(k)), shade s in [0.35, 1.15], desaturation m
    in [0, 0.3], for each catalogue colour k; [M,3]."""
    s, m = torch.linspace(0.35, 1.15, 33), torch.linspace(0.0, 0.3, 7)
    lum = (CATALOGUE_RGB * torch.tensor([0.299, 0.587, 0.114])).sum(-1, keepdim=True)
    mix = CATALOGUE_RGB[None] * (1 - m[:, None, None]) + m[:, None, None] * lum[None]           # [7,6,3]
    return (s[:, None, None, None] * mix[None]).reshape(-1, 3)


def catalogue_margin(rgb: torch.Tensor) -> torch.Tensor:
    """Distance [n] from colours rgb [n,3] to the nearest colour a (shaded, slightly desaturated) catalogue
    object can show."""
    return torch.cdist(rgb.float(), _catalogue_like()).amin(-1)


def _off_colours(n: int, g: torch.Generator, held_out: bool) -> torch.Tensor:
    """[n,3] colours outside the catalogue. Held out: the held-out palette. Train: the train palette (30 %) or
    uniform random colours (70 %) at least COLOUR_MARGIN from the catalogue and HELD_OUT_EXCLUSION from the held-out
    palette (so the held-out colours stay unseen)."""
    if held_out:
        return HELD_OUT_PALETTE[_pick(g, n, len(HELD_OUT_PALETTE))]
    pal = TRAIN_PALETTE[_pick(g, n, len(TRAIN_PALETTE))]
    rnd = torch.empty(0, 3)
    while len(rnd) < n:
        c = _u(g, 8 * n + 64, 3)
        ok = (catalogue_margin(c) >= COLOUR_MARGIN) & (torch.cdist(c, HELD_OUT_PALETTE).amin(-1) >= HELD_OUT_EXCLUSION)
        rnd = torch.cat([rnd, c[ok]])
    return torch.where((_u(g, n) < 0.3)[:, None], pal, rnd[:n])


def _colours(n: int, g: torch.Generator, held_out: bool, p_catalogue: float = 0.5) -> torch.Tensor:
    """[n,3]: catalogue colours with probability p_catalogue, else off-catalogue colours."""
    cat = CATALOGUE_RGB[_pick(g, n, len(CATALOGUE_RGB))]
    return torch.where((_u(g, n) < p_catalogue)[:, None], cat, _off_colours(n, g, held_out))


def _forward(views: dict[str, torch.Tensor]) -> torch.Tensor:
    """Unit view directions [n,3] (camera -> origin)."""
    e, a = torch.deg2rad(views["elev"]), torch.deg2rad(views["azim"])
    return -torch.stack([torch.cos(e) * torch.sin(a), torch.sin(e), torch.cos(e) * torch.cos(a)], -1)


# ------------------------------------------------------------------------------------------ kinds

def _blank(n, g, res, held_out):
    level = torch.where(_u(g, n) < 0.5, torch.ones(n), _u(g, n, lo=0.0, hi=1.0))
    level = torch.where(_u(g, n) < 0.3, _u(g, n, lo=0.9, hi=1.0), level)
    x = level[:, None, None, None].expand(n, 3, res, res).clone()
    if held_out:  # soft vignettes / stains on white
        xx, yy = pixel_grid(n, res, 1)
        cx, cy, w = _u(g, n, 1, 1, lo=-0.8, hi=0.8), _u(g, n, 1, 1, lo=-0.8, hi=0.8), _u(g, n, 1, 1, lo=0.3, hi=1.2)
        bump = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * w * w))
        tint = _u(g, n, 3, 1, 1, lo=0.0, hi=0.4)
        x = (1 - tint * bump[:, None]).expand(n, 3, res, res)
    return x.clamp(0, 1)


def _flat(n, g, res, held_out):
    col = torch.where((_u(g, n) < 0.5)[:, None], CATALOGUE_RGB[_pick(g, n, 6)] * _u(g, n, 1, lo=0.6, hi=1.0),
                      _u(g, n, 3))
    x = col[:, :, None, None].expand(n, 3, res, res)
    if held_out:  # linear gradients between two colours
        col2 = torch.where((_u(g, n) < 0.5)[:, None], CATALOGUE_RGB[_pick(g, n, 6)], _u(g, n, 3))
        xx, yy = pixel_grid(n, res, 1)
        a = _u(g, n, 1, 1, lo=0, hi=2 * math.pi)
        w = ((torch.cos(a) * xx + torch.sin(a) * yy) * 0.5 + 0.5)[:, None]
        x = col[:, :, None, None] * (1 - w) + col2[:, :, None, None] * w
    return x.clamp(0, 1)


# Flat-filled outlines only of shapes that never render flat, seen from above (elevation >= 25 deg, so that the
# round base or top shows): a flat cube or pyramid outline, or a cone or cylinder seen level, is (nearly) the
# polygon a face-on cube or pyramid renders as, which is a catalogue view.
OUTLINE_SHAPES = ("sphere", "cylinder", "cone", "torus")
OUTLINE_ELEV = (25.0, 80.0)


def _flat_outlines(n, g, res, held_out):
    """GT renders of OUTLINE_SHAPES whose object is filled with one flat colour (held out: its mean colour;
    train: its catalogue colour at a random brightness or its mean colour); the rare view whose render is
    already nearly flat is skipped."""
    out = torch.empty(n, 3, res, res)
    done = 0
    while done < n:
        rgb, a, specs = _gt(n, g, res, with_specs=True, shapes=OUTLINE_SHAPES, elev_range=OUTLINE_ELEV)
        inner = (a > 0.999).float()
        cnt = inner.sum((1, 2, 3)).clamp(min=1)
        lum = rgb.mean(1, keepdim=True)
        mu = (lum * inner).sum((1, 2, 3)) / cnt
        rel = (((lum - mu[:, None, None, None]) ** 2 * inner).sum((1, 2, 3)) / cnt).sqrt() / mu.clamp(min=1e-3)
        ok = rel >= 0.08
        mean = (rgb * inner).sum((2, 3)) / cnt[:, None]
        if held_out:
            col = mean
        else:
            own = torch.tensor([sp.rgb for sp in specs]) * _u(g, n, 1, lo=0.55, hi=1.0)
            col = torch.where(_u(g, n, 1) < 0.5, own, mean)
        flat = F.avg_pool2d((1 - a) + a * col[:, :, None, None], 2)
        take = flat[ok][:n - done]
        out[done:done + len(take)] = take
        done += len(take)
    return out


def _silhouette(n, g, res, held_out):
    """Flat 2D shapes (squares and triangles not in the upright poses a face-on cube or pyramid shows) and
    flat-filled GT outlines."""
    names = ("ellipse", "hexagon", "star", "ring") if held_out else ("disc", "square", "triangle")
    outline = _u(g, n) < 0.5
    which = _pick(g, n, len(names))
    col = _colours(n, g, held_out, p_catalogue=0.6)
    col = col * torch.where(_u(g, n, 1) < 0.5, torch.ones(n, 1), _u(g, n, 1, lo=0.55, hi=1.0))
    size = _u(g, n, 1, 1, lo=0.3, hi=0.75)
    ang = _u(g, n, 1, 1, lo=0, hi=2 * math.pi)
    if not held_out:  # squares at least 12 deg off axis, triangles at least 15 deg off apex-up
        sq, tri = which == names.index("square"), which == names.index("triangle")
        a_sq = torch.deg2rad(_u(g, n, 1, 1, lo=12.0, hi=78.0))
        a_tri = torch.deg2rad(30.0 + _u(g, n, 1, 1, lo=15.0, hi=105.0))
        ang = torch.where(sq[:, None, None], a_sq, torch.where(tri[:, None, None], a_tri, ang))
    aux = _u(g, n, 1, 1, lo=0.4, hi=0.7)
    cx, cy = _u(g, n, 1, 1, lo=-0.2, hi=0.2), _u(g, n, 1, 1, lo=-0.2, hi=0.2)
    xx, yy = pixel_grid(n, res)
    mask = torch.zeros(n, res * 4, res * 4)
    for k, name in enumerate(names):
        m = which == k
        if m.any():
            mask[m] = shape2d(name, xx - cx[m], yy - cy[m], size[m], ang[m], aux[m]).float()
    alpha = F.avg_pool2d(mask[:, None], 4)
    out = (1 - alpha) + alpha * col[:, :, None, None]
    if outline.any():
        out[outline] = _flat_outlines(int(outline.sum()), g, res, held_out)
    return out


def _noise(n, g, res, held_out):
    which = _pick(g, n, 4)
    out = torch.empty(n, 3, res, res)
    for k in range(4):
        m = int((which == k).sum())
        if not m:
            continue
        if not held_out:
            if k == 0:    # iid uniform
                x = _u(g, m, 3, res, res)
            elif k == 1:  # gaussian around a random colour
                x = _u(g, m, 3, 1, 1) + _u(g, m, 1, 1, 1, lo=0.05, hi=0.3) * torch.randn(m, 3, res, res, generator=g)
            elif k == 2:  # smooth noise
                cells = int(torch.randint(2, 9, (1,), generator=g))
                x = F.interpolate(_u(g, m, 3, cells, cells), size=(res, res), mode="bilinear", align_corners=False)
            else:         # a blob of noise on white
                xx, yy = pixel_grid(m, res, 1)
                r = _u(g, m, 1, 1, lo=0.35, hi=0.7)
                a = (xx ** 2 + yy ** 2 <= r * r).float()[:, None]
                x = (1 - a) + a * _u(g, m, 3, res, res)
        else:
            if k == 0:    # salt and pepper on white
                p = _u(g, m, 1, 1, 1, lo=0.05, hi=0.4)
                dots = (_u(g, m, 1, res, res) < p).float()
                x = 1 - dots * _u(g, m, 3, 1, 1, lo=0.3, hi=1.0)
            elif k == 1:  # stripes
                xx, yy = pixel_grid(m, res, 1)
                a, fr = _u(g, m, 1, 1, lo=0, hi=math.pi), _u(g, m, 1, 1, lo=2, hi=8)
                w = (torch.sin(fr * math.pi * (torch.cos(a) * xx + torch.sin(a) * yy)) > 0).float()[:, None]
                x = _u(g, m, 3, 1, 1) * w + _u(g, m, 3, 1, 1) * (1 - w)
            elif k == 2:  # checkerboard
                xx, yy = pixel_grid(m, res, 1)
                fr = torch.randint(2, 9, (m, 1, 1), generator=g).float()
                w = ((torch.floor((xx + 1) * fr / 2) + torch.floor((yy + 1) * fr / 2)) % 2)[:, None]
                x = _u(g, m, 3, 1, 1) * w + _u(g, m, 3, 1, 1) * (1 - w)
            else:         # multi-octave noise
                x = sum(F.interpolate(_u(g, m, 3, c, c), size=(res, res), mode="bilinear", align_corners=False)
                        / (2 ** o) for o, c in enumerate((3, 6, 12, 24)))
                x = (x - 0.9) / 0.9 + 0.5
        out[which == k] = x
    return out.clamp(0, 1)


def _gt(n, g, res, with_specs=False, shapes=SHAPES, elev_range=ELEV_RANGE):
    """n GT renders (random catalogue entries of the given shapes, random views) at 2 x res, no supersampling
    (the caller pools by 2): rgb, alpha (and the specs)."""
    cat = [s for s in catalogue() if s.shape in shapes]
    specs = [cat[i] for i in _pick(g, n, len(cat)).tolist()]
    v = random_views(n, g, elev_range=elev_range)
    rgb, a = render_shapes(specs, v["elev"], v["azim"], v["dist"], v["fov"], res=res * 2, supersample=1)
    return (rgb, a, specs) if with_specs else (rgb, a)


def _warp(dark: torch.Tensor, alpha: torch.Tensor, scale: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor,
          res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale by `scale` about the centre and move by (tx, ty) (fractions of the half-width, y down)."""
    n = len(dark)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, 0, 2], theta[:, 1, 2] = -tx / scale, -ty / scale
    grid = F.affine_grid(theta, [n, 1, res, res], align_corners=False)
    warp = lambda t: F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # noqa
    return warp(dark), warp(alpha)


def _two_objects(n, g, res, held_out):
    k = torch.where(_u(g, n) < (0.3 if held_out else 0.0), 3, 2)
    dark = torch.zeros(n, 3, res, res)
    cover = torch.zeros(n, 1, res, res)
    sep = _u(g, n, lo=0.6, hi=1.0)                       # centre distance, fraction of the half-width
    ang = _u(g, n, lo=-0.6, hi=0.6) + torch.where(_u(g, n) < (0.5 if held_out else 0.15), math.pi / 2, 0.0)
    for j in range(3):
        rgb, a = _gt(n, g, res)
        s = _u(g, n, lo=0.45, hi=0.7)
        phi = ang + (2 * math.pi * j / k)
        r = torch.where(k == 3, sep * 0.75, sep / 2)
        d, a = _warp(1 - rgb, a, s, r * torch.cos(phi), r * torch.sin(phi), res * 2)
        use = (j < k).float()[:, None, None, None]
        d, a = F.avg_pool2d(d, 2) * use, F.avg_pool2d(a, 2) * use
        dark, cover = d + (1 - a) * dark, a + (1 - a) * cover  # object j in front of the earlier ones
    return (1 - dark).clamp(0, 1)


def _crop(n, g, res, held_out):
    out = torch.empty(n, 3, res, res)
    todo = torch.arange(n)
    lo, hi = (1.5, 3.2) if held_out else (1.7, 2.7)
    for _ in range(20):
        if not len(todo):
            break
        m = len(todo)
        rgb, a = _gt(m, g, res)
        z = _u(g, m, lo=lo, hi=hi)
        phi = _u(g, m, lo=0, hi=2 * math.pi)
        r = _u(g, m, lo=0.0, hi=0.7) * z
        d, aw = _warp(1 - rgb, a, z, r * torch.cos(phi), r * torch.sin(phi), res * 2)
        kept = aw.sum((1, 2, 3)) / (a.sum((1, 2, 3)) * z * z).clamp(min=1e-6)  # visible fraction of the object
        ok = (kept > 0.2) & (kept < 0.7)
        out[todo[ok]] = F.avg_pool2d(1 - d[ok], 2)
        todo = todo[~ok]
    if len(todo):
        raise RuntimeError("crop: could not place the object")
    return out.clamp(0, 1)


def _off_catalogue(n, g, res, held_out):
    names = HELD_OUT_SOLIDS if held_out else TRAIN_SOLIDS
    which = _pick(g, n, len(names))
    out = torch.empty(n, 3, res, res)
    for k, name in enumerate(names):
        m = int((which == k).sum())
        if not m:
            continue
        v = _views(m, g)
        f, _ = solid(name, m, g, _forward(v))
        out[which == k] = render_sdf(f, _colours(m, g, held_out, p_catalogue=0.5), v, res)[0]
    return out


def _off_colour(n, g, res, held_out):
    cat = catalogue()
    specs = [cat[i] for i in _pick(g, n, len(cat)).tolist()]
    return render_catalogue(specs, _views(n, g), res, rgb=_off_colours(n, g, held_out))[0]


_MAKERS = {"blank": _blank, "flat": _flat, "silhouette": _silhouette, "noise": _noise, "two_objects": _two_objects,
           "crop": _crop, "off_catalogue": _off_catalogue, "off_colour": _off_colour}


def make_negatives(n: int, seed: int = 0, kinds: Sequence[str] | None = None, res: int = 32,
                   held_out: bool = False) -> tuple[torch.Tensor, list[str]]:
    """n negative images (rgb [n,3,res,res] in [0,1]) split evenly over `kinds` (default: all), and their kinds.

    Each kind draws from its own generator seeded by (seed, kind, held_out), so a kind's images do not depend on
    which other kinds are asked for; held_out=True uses other streams and the held-out variants of each kind.
    """
    kinds = tuple(KINDS if kinds is None else kinds)
    bad = [k for k in kinds if k not in _MAKERS]
    if bad or not kinds:
        raise ValueError(f"unknown kinds {bad}; choose from {', '.join(KINDS)}")
    counts = [n // len(kinds) + (i < n % len(kinds)) for i in range(len(kinds))]
    imgs, labels = [], []
    for kind, c in zip(kinds, counts):
        if not c:
            continue
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + 7919 * KINDS.index(kind) + (104_729 if held_out
                                                                                              else 0))
        imgs.append(_MAKERS[kind](c, g, res, held_out).float().clamp(0, 1))
        labels += [kind] * c
    return torch.cat(imgs) if imgs else torch.empty(0, 3, res, res), labels
