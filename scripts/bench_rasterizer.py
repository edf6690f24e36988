"""Benchmark: Gaussian rasterizer backends (forward + backward), timed side by side in one run.

    python scripts/bench_rasterizer.py --threads 2                       # CPU: torch tiles vs dense reference
    python scripts/bench_rasterizer.py --device cuda --backends gsplat torch --n 20000 --res 256

Prints JSON {"n", "res", "device", "rows": [{"backend", "median_s", "speedup_vs_last", "max_abs_diff",
"max_rel_grad_diff"}]}; times are medians of interleaved repeats; diffs are against the last backend listed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from renderers import rasterize, sample_orbit_cameras


def scene(n: int, seed: int = 0):
    """Random Gaussians in the unit box (a few px each at 64x64)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g) - 0.5
    scales = torch.exp(torch.empty(n, 3).uniform_(-4.5, -3.0, generator=g))
    quats = torch.randn(n, 4, generator=g)
    opac = 0.05 + 0.9 * torch.rand(n, generator=g)
    cols = torch.rand(n, 3, generator=g)
    return means, quats, scales, opac, cols


def step(backend, tensors, cams, tile_size):
    ts = [t.clone().requires_grad_() for t in tensors]
    if ts[0].is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = rasterize(*ts, cams, background=torch.ones(3, device=ts[0].device), backend=backend, tile_size=tile_size)
    (out["rgb"].sum() + out["depth"].sum() * 0.01).backward()
    if ts[0].is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out["rgb"].detach(), [t.grad for t in ts]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tile-size", type=int, default=None, help="default: 8 for torch / dense, 16 for gsplat")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backends", nargs="+", default=["torch", "dense"], choices=["torch", "dense", "gsplat"],
                    help="timed in this order; the last one is the reference for speedups and diffs")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.device != "cpu" and not torch.cuda.is_available():
        ap.error(f"--device {a.device}: CUDA is not available on this machine")
    tensors = [t.to(a.device) for t in scene(a.n)]
    cams = sample_orbit_cameras(1, width=a.res, height=a.res, generator=torch.Generator().manual_seed(0)).to(a.device)
    times, last = {b: [] for b in a.backends}, {}                        # seconds; the last (image, grads)
    for b in a.backends:                                                 # warm-up (and gsplat's JIT build)
        step(b, tensors, cams, a.tile_size)
    for _ in range(a.repeats):                                           # interleave to share noise
        for b in a.backends:
            t, img, grads = step(b, tensors, cams, a.tile_size)
            times[b].append(t)
            last[b] = (img, grads)
    ref = a.backends[-1]
    img_r, g_r = last[ref]
    rows = []
    for b in a.backends:
        img, g = last[b]
        med = statistics.median(times[b])
        rows.append(dict(backend=b, median_s=round(med, 5),
                         speedup_vs_last=round(statistics.median(times[ref]) / med, 2),
                         max_abs_diff=float((img - img_r).abs().max()),
                         max_rel_grad_diff=max(float((x - y).abs().max() / y.abs().max()) for x, y in zip(g, g_r))))
    print(json.dumps(dict(n=a.n, res=a.res, device=a.device, threads=a.threads, repeats=a.repeats, rows=rows)))


if __name__ == "__main__":
    main()
