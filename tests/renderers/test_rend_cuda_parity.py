"""CUDA parity: torch rasterizer vs gsplat.rasterization, torch compositing vs nerfacc (GPU only)."""

import pytest
import torch

from renderers import composite, rasterize, sample_orbit_cameras
from renderers.volume import composite_nerfacc


def _has(mod):
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


@pytest.mark.skipif(not (torch.cuda.is_available() and _has("gsplat")),
                    reason="needs CUDA + gsplat; not available on this machine")
def test_tile_rasterizer_matches_gsplat():
    g = torch.Generator().manual_seed(0)
    n = 500
    means = (torch.rand(n, 3, generator=g) - 0.5).cuda()
    scales = torch.exp(torch.empty(n, 3).uniform_(-4, -2.5, generator=g)).cuda()
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1).cuda()
    opac = (0.05 + 0.9 * torch.rand(n, generator=g)).cuda()
    cols = torch.rand(n, 3, generator=g).cuda()
    cams = sample_orbit_cameras(2, width=64, height=48, generator=torch.Generator().manual_seed(1)).to("cuda")
    a = rasterize(means, quats, scales, opac, cols, cams, backend="torch")
    b = rasterize(means, quats, scales, opac, cols, cams, backend="gsplat")
    assert (a["alpha"] - b["alpha"]).abs().max() < 1e-3
    assert (a["rgb"] - b["rgb"]).abs().max() < 1e-3


@pytest.mark.skipif(not (torch.cuda.is_available() and _has("nerfacc")),
                    reason="needs CUDA + nerfacc; not available on this machine")
def test_composite_matches_nerfacc():
    g = torch.Generator().manual_seed(0)
    sig = (3 * torch.rand(64, 32, generator=g)).cuda()
    rgb = torch.rand(64, 32, 3, generator=g).cuda()
    deltas = (0.01 + 0.05 * torch.rand(64, 32, generator=g)).cuda()
    ts = torch.cumsum(deltas, -1)
    a, b = composite(sig, rgb, deltas, ts), composite_nerfacc(sig, rgb, deltas, ts)
    for k in ("rgb", "alpha", "depth", "weights"):
        assert (a[k] - b[k]).abs().max() < 1e-4
