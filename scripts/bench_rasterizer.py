"""Benchmark: tile-binned vs dense-reference Gaussian rasterizer on CPU (forward + backward).

Prints JSON {"n", "res", "tile_s", "dense_s", "speedup", "max_abs_diff", ...}; times are medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from renderers import rasterize_dense_reference, rasterize_tiles, sample_orbit_cameras


def scene(n: int, seed: int = 0):
    """Random Gaussians in the unit box (a few px each at 64x64)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g) - 0.5
    scales = torch.exp(torch.empty(n, 3).uniform_(-4.5, -3.0, generator=g))
    quats = torch.randn(n, 4, generator=g)
    opac = 0.05 + 0.9 * torch.rand(n, generator=g)
    cols = torch.rand(n, 3, generator=g)
    return means, quats, scales, opac, cols


def step(fn, tensors, cams, **kw):
    ts = [t.clone().requires_grad_() for t in tensors]
    t0 = time.perf_counter()
    out = fn(*ts, cams, background=torch.ones(3), **kw)
    (out["rgb"].sum() + out["depth"].sum() * 0.01).backward()
    return time.perf_counter() - t0, out["rgb"].detach(), [t.grad for t in ts]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tile-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tensors = scene(a.n)
    cams = sample_orbit_cameras(1, width=a.res, height=a.res, generator=torch.Generator().manual_seed(0))
    step(rasterize_tiles, tensors, cams, tile_size=a.tile_size)          # warm-up
    step(rasterize_dense_reference, tensors, cams)
    tile_t, dense_t = [], []
    for _ in range(a.repeats):                                           # interleave to share noise
        t, img_t, g_t = step(rasterize_tiles, tensors, cams, tile_size=a.tile_size)
        tile_t.append(t)
        t, img_d, g_d = step(rasterize_dense_reference, tensors, cams)
        dense_t.append(t)
    tile_s, dense_s = statistics.median(tile_t), statistics.median(dense_t)
    print(json.dumps(dict(
        n=a.n, res=a.res, tile_size=a.tile_size, threads=a.threads, repeats=a.repeats,
        tile_s=round(tile_s, 4), dense_s=round(dense_s, 4), speedup=round(dense_s / tile_s, 2),
        max_abs_diff=float((img_t - img_d).abs().max()),
        max_rel_grad_diff=max(float((x - y).abs().max() / y.abs().max()) for x, y in zip(g_t, g_d)))))


if __name__ == "__main__":
    main()
