"""Gaussian rasterizer: analytic footprint, gradcheck, tile == dense, ply round trip, densify."""

import math

import pytest
import torch

from renderers import (DensifyConfig, DensifyState, activate, densify_and_prune, gaussians_color,
                       gaussians_density, init_gaussians_ball, load_3dgs_ply, make_optimizer, rasterize,
                       rasterize_dense_reference, rasterize_tiles, sample_orbit_cameras, save_3dgs_ply,
                       turntable_cameras, update_densify_state)


def _random_scene(n, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5).to(dtype)
    scales = torch.exp(torch.empty(n, 3).uniform_(-4.0, -2.5, generator=g)).to(dtype)
    quats = torch.randn(n, 4, generator=g).to(dtype)
    opac = (0.05 + 0.9 * torch.rand(n, generator=g)).to(dtype)
    cols = torch.rand(n, 3, generator=g).to(dtype)
    return means, quats, scales, opac, cols


def _max_tile_count(scene, cams, tile_size):
    """Largest number of Gaussians binned to one tile (via the rows the rasterizer builds)."""
    from renderers.gaussians_composite import Rows
    seen = []
    orig = Rows.scan
    Rows.scan = lambda self, v, reverse=False: (seen.append(self.max_rows), orig(self, v, reverse))[1]
    try:
        rasterize_tiles(*scene, cams, tile_size=tile_size, chunk=1)
    finally:
        Rows.scan = orig
    return max(seen)


def test_single_isotropic_gaussian_matches_analytic_footprint():
    W = H = 32
    cams = turntable_cameras(1, elevation=0.0, distance=2.0, fov=40.0, width=W, height=H)
    s, o = 0.05, 0.8
    out = rasterize_tiles(torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), s),
                          torch.tensor([o]), torch.ones(1, 3), cams)
    f = cams.fx[0].item()
    var = (f * s / 2.0) ** 2 + 0.3                                     # J Sigma J^T + 0.3 (on axis)
    c = torch.arange(W) + 0.5
    d2 = (c[None, :] - W / 2) ** 2 + (c[:, None] - H / 2) ** 2
    expect = (o * torch.exp(-0.5 * d2 / var)).clamp_max(0.99)
    expect = torch.where(expect >= 1 / 255, expect, torch.zeros_like(expect))
    assert (out["alpha"][0, ..., 0] - expect).abs().max() < 1e-4
    assert (out["rgb"][0, ..., 0] - expect).abs().max() < 1e-4
    assert (out["depth"][0, 16, 16, 0] - 2.0).abs() < 1e-4


@pytest.mark.parametrize("chunk", [128, 2])
def test_gradcheck_tile_rasterizer_fp64(chunk):
    cams = sample_orbit_cameras(1, width=8, height=8, dist_range=(1.5, 1.5), generator=torch.Generator().manual_seed(1))
    cams = cams.to(dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    means = (0.15 * torch.randn(3, 3, generator=g)).double().requires_grad_()
    scales = torch.full((3, 3), 0.12).double().add(0.03 * torch.rand(3, 3, generator=g).double()).requires_grad_()
    quats = torch.randn(3, 4, generator=g).double()
    opac = torch.tensor([0.5, 0.7, 0.6]).double().requires_grad_()
    cols = torch.rand(3, 3, generator=g).double().requires_grad_()

    def f(m, s, o, c):
        out = rasterize_tiles(m, quats, s, o, c, cams, tile_size=4, chunk=chunk)  # chunk 2: tiles span rows
        return out["rgb"], out["alpha"]

    assert torch.autograd.gradcheck(f, (means, scales, opac, cols), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_tile_matches_dense_reference_forward_and_grad():
    cams = sample_orbit_cameras(2, width=40, height=36, generator=torch.Generator().manual_seed(2))
    base = _random_scene(300, 0)
    wts = torch.rand(2, 36, 40, 5, generator=torch.Generator().manual_seed(5))
    results = []
    for fn, kw in ((rasterize_dense_reference, {}), (rasterize_tiles, dict(tile_size=16)),
                   (rasterize_tiles, dict(tile_size=8)), (rasterize_tiles, dict(tile_size=8, chunk=16))):
        ts = [t.clone().requires_grad_() for t in base]
        out = fn(*ts, cams, background=torch.tensor([1.0, 1.0, 1.0]), **kw)
        img = torch.cat([out["rgb"], out["alpha"], out["depth"] * 0.1], -1)
        (img * wts).sum().backward()
        results.append((img.detach(), [t.grad for t in ts]))
    ref_img, ref_grads = results[0]
    assert ref_img[..., 3].mean() > 0.3                       # the scene actually covers the image
    assert _max_tile_count(base, cams, 8) > 3 * 16            # chunk 16 really splits tiles into several rows
    for img, grads in results[1:]:
        assert (img - ref_img).abs().max() <= 1e-5
        for g, rg in zip(grads, ref_grads):
            assert (g - rg).abs().max() <= 1e-5 * max(1.0, rg.abs().max().item())


def test_ply_roundtrip_identical_render(tmp_path):
    p = init_gaussians_ball(200, 0.4, generator=torch.Generator().manual_seed(0), sh_degree=1, opacity=0.5)
    p.shN = 0.1 * torch.randn(p.shN.shape, generator=torch.Generator().manual_seed(1))
    path = tmp_path / "g.ply"
    save_3dgs_ply(path, p)
    q = load_3dgs_ply(path)
    assert q.shN.shape == p.shN.shape and q.sh_degree == 1
    cams = turntable_cameras(2, width=24, height=24)
    a = rasterize(*activate(p), cams, sh_degree=1)
    b = rasterize(*activate(q), cams, sh_degree=1)
    assert torch.equal(a["rgb"], b["rgb"]) and torch.equal(a["alpha"], b["alpha"])
    header = path.read_bytes()[:2000].split(b"end_header")[0].decode()
    assert "binary_little_endian" in header and "property float f_dc_0" in header and "f_rest_8" in header


def test_density_and_color_queries():
    p = init_gaussians_ball(50, 0.3, generator=torch.Generator().manual_seed(0), opacity=0.9)
    d = gaussians_density(p, torch.cat([p.means[:5], torch.full((1, 3), 3.0)]))
    assert (d[:5] > 0.5).all() and d[5] < 1e-6
    c = gaussians_color(p, p.means[:5])
    assert c.shape == (5, 3) and ((c >= 0) & (c <= 1)).all()


def test_densify_and_prune_keeps_adam_state_consistent():
    p = init_gaussians_ball(100, 0.4, generator=torch.Generator().manual_seed(0), opacity=0.5).requires_grad_()
    with torch.no_grad():
        p.log_scales[:50] = math.log(0.005)                     # half "small" -> clone, half large -> split
        p.opacity_logits[90:] = -10.0                           # to prune
    opt = make_optimizer(p)
    cams = turntable_cameras(2, width=32, height=32)
    state = DensifyState.zeros(len(p))
    out = rasterize(*activate(p), cams)
    out["rgb"].mean().backward()
    state = update_densify_state(state, out["means2d"], out["radii"], 32, 32)
    opt.step()
    state.grad2d[:] = 1.0                                       # force every visible Gaussian to grow
    config = DensifyConfig(refine_start=0, refine_every=1, reset_every=10**9)
    state, stats = densify_and_prune(p, opt, state, config, step=1, generator=torch.Generator().manual_seed(0))
    assert stats["cloned"] == 50 and stats["split"] == 50 and stats["pruned"] >= 10
    assert stats["n"] == len(p) == 100 + 50 + 50 - stats["pruned"]
    for group in opt.param_groups:
        prm = group["params"][0]
        assert prm is getattr(p, group["name"])
        st = opt.state[prm]
        if group["name"] == "shN":                              # unused at SH degree 0 -> no state
            continue
        assert st["exp_avg"].shape == prm.shape and st["exp_avg_sq"].shape == prm.shape
    out = rasterize(*activate(p), cams)                        # still trains
    out["rgb"].mean().backward()
    opt.step()
    assert state.grad2d.shape == (len(p),)


def test_density_grid_splatting_matches_the_exact_mixture():
    from renderers import gaussians_density, gaussians_density_grid, init_gaussians_ball

    p = init_gaussians_ball(64, 0.5, torch.Generator().manual_seed(0), opacity=0.5)
    res = 24
    axis = torch.linspace(-1, 1, res)
    pts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    exact = gaussians_density(p, pts).reshape(res, res, res)
    fast = gaussians_density_grid(p, res, 1.0, n_sigma=6.0)
    assert torch.allclose(fast, exact, atol=1e-6)


def test_project_colors_keeps_a_live_gradient_where_the_clamp_would_kill_it():
    from renderers import project_colors_, sh0_to_rgb

    p = init_gaussians_ball(4, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    with torch.no_grad():
        p.sh0[:, 0] = torch.tensor([[-3.0, 0.0, 5.0], [0.2, -0.1, 0.0], [9.0, 9.0, -9.0], [0.0, 0.0, 0.0]])
    inside = p.sh0[1].clone()
    target = torch.full((4, 3), 0.5)                      # a loss that wants every channel back at 0.5
    dead = torch.autograd.grad(((activate(p)[4].clamp(max=1) - target) ** 2).sum(), p.sh0)[0][:, 0]
    assert (dead[0, 0] == 0) and (dead[2, 2] == 0)        # clamped channels: no gradient, stuck for good
    project_colors_(p)
    rgb = sh0_to_rgb(p.sh0[:, 0])
    assert rgb.min() > 0 and rgb.max() < 1
    assert torch.allclose(rgb[0], torch.tensor([0.0, 0.5, 1.0]), atol=1e-5) and torch.equal(p.sh0[1], inside)
    live = torch.autograd.grad(((activate(p)[4] - target) ** 2).sum(), p.sh0)[0][:, 0]
    assert (live[0, [0, 2]].abs() > 0.1).all() and (live[2].abs() > 0.1).all()  # on the boundary: live, pointing in


@pytest.mark.parametrize("level", [0.5, 0.95])
def test_median_depth_is_where_the_composited_transmittance_crosses_the_level(level):
    """median_depth uses composite's alpha rule: in float64 a pixel has a crossing exactly where the rendered
    alpha >= 1 - level (pixels within 1e-9 of the level are left out), and the depth it reports is the camera z
    of one of the Gaussians that cover the pixel, the nearest one whose front-to-back transmittance is <= level."""
    from renderers import median_depth

    scene = _random_scene(40, 3, torch.float64)
    cams = sample_orbit_cameras(2, width=16, height=16, generator=torch.Generator().manual_seed(0))
    cams.c2w, cams.fx, cams.fy, cams.cx, cams.cy = (t.double() for t in (cams.c2w, cams.fx, cams.fy, cams.cx, cams.cy))
    alpha = rasterize_dense_reference(*scene, cams)["alpha"][..., 0]            # [B,H,W]
    med = median_depth(*scene[:4], cams, transmittance=level)[..., 0]           # [B,H,W]
    clear = (alpha - (1 - level)).abs() > 1e-9
    assert clear.sum() > 100
    assert torch.equal((med > 0)[clear], (alpha >= 1 - level)[clear])
    from renderers.gaussians_raster import opencv_viewmats
    z = (torch.einsum("bij,nj->bni", opencv_viewmats(cams)[:, :3, :3], scene[0]) + opencv_viewmats(cams)[:, None, :3, 3])[..., 2]
    hits = med[med > 0]
    assert (torch.cdist(hits[:, None], z.reshape(-1, 1)).amin(1) < 1e-12).all()


def test_median_depth_of_two_stacked_splats_is_the_first_that_hides_the_pixel():
    """Two wide Gaussians on the optical axis, opacities 0.3 (front) and 0.6 (back): transmittance 0.7 after the
    first and 0.28 after the second, so level 0.8 stops at the front one and level 0.5 at the back one."""
    from renderers import median_depth

    cams = turntable_cameras(1, elevation=0.0, distance=2.0, fov=40.0, width=9, height=9)
    means = torch.tensor([[0.0, 0.0, 0.2], [0.0, 0.0, -0.2]])          # the front camera sits on +z
    quats = torch.tensor([[1.0, 0, 0, 0]] * 2)
    scales = torch.full((2, 3), 0.5)
    opac = torch.tensor([0.3, 0.6])
    centre = lambda level: float(median_depth(means, quats, scales, opac, cams, transmittance=level)[0, 4, 4, 0])  # noqa: E731
    assert centre(0.8) == pytest.approx(1.8, abs=1e-6)
    assert centre(0.5) == pytest.approx(2.2, abs=1e-6)
    assert centre(0.2) == 0.0
