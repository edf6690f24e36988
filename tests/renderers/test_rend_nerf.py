"""NeRF: exact slab compositing, gradcheck, hash grid, occupancy grid, full render + normals."""

import math

import torch

from renderers import (HashGrid, HashGridConfig, NeRFConfig, NeRFField, NeRFRenderConfig, OccupancyGrid,
                       composite, nerf_color, nerf_density_grid, opacity_entropy, orientation_loss,
                       random_light_dirs, render_nerf, render_rays, turntable_cameras)


def test_constant_density_slab_is_exact():
    sigma, L = 3.0, 0.5
    color = torch.tensor([0.2, 0.6, 0.9])

    def field(x):  # spherical shell 1.0 <= |x| <= 1.5: a slab of thickness L along every ray from 0
        r = x.norm(dim=-1)
        inside = ((r >= 1.0) & (r <= 1.5)).to(x.dtype)
        return sigma * inside, color.expand(x.shape[0], 3)

    g = torch.Generator().manual_seed(0)
    R = 16
    dirs = torch.nn.functional.normalize(torch.randn(R, 3, generator=g), dim=-1)
    origins = torch.zeros(R, 3)
    near, far = torch.full((R,), 0.5), torch.full((R,), 2.5)   # 200 bins of 0.01: slab edges on bin edges
    out = render_rays(field, origins, dirs, near, far, NeRFRenderConfig(n_samples=200, jitter=False))
    expect = 1 - math.exp(-sigma * L)
    assert (out["alpha"] - expect).abs().max() < 1e-4
    assert (out["rgb"] - color * expect).abs().max() < 1e-4


def test_gradcheck_composite_fp64():
    g = torch.Generator().manual_seed(0)
    sig = (2 * torch.rand(3, 6, generator=g)).double().requires_grad_()
    rgb = torch.rand(3, 6, 3, generator=g).double().requires_grad_()
    deltas = (0.1 + 0.2 * torch.rand(3, 6, generator=g)).double()
    ts = torch.cumsum(deltas, -1)

    def f(s, c):
        o = composite(s, c, deltas, ts)
        return o["rgb"], o["alpha"], o["depth"]

    assert torch.autograd.gradcheck(f, (sig, rgb), eps=1e-6, atol=1e-6)


def test_hashgrid_trilinear_and_shapes():
    config = HashGridConfig(n_levels=4, n_features=2, log2_table_size=10, base_resolution=4, max_resolution=32)
    grid = HashGrid(config)
    with torch.no_grad():
        grid.table.normal_()
    x = torch.rand(100, 3)
    y = grid(x)
    assert y.shape == (100, config.out_dim)
    # level 0 is a dense 5^3 grid: value at a vertex equals the stored entry
    v = torch.tensor([[0.25, 0.5, 0.75]])               # res 4 -> vertex (1,2,3)
    idx = (1 * 5 + 2) * 5 + 3
    assert torch.allclose(grid(v)[0, :2], grid.table[idx], atol=1e-6)
    # continuity: tiny moves change features a little
    assert (grid(x + 1e-4) - y).abs().max() < 0.05
    y.sum().backward()
    assert grid.table.grad.abs().sum() > 0


def test_hashgrid_equals_a_corner_by_corner_reference_in_fp64():
    """Every level (dense and hashed) against the textbook formula, one corner at a time: weight = prod over axes
    of (frac or 1 - frac), row = dense (x (r+1) + y)(r+1) + z or the Instant-NGP hash (x ^ y p1 ^ z p2) mod T."""
    config = HashGridConfig(n_levels=5, n_features=2, log2_table_size=9, base_resolution=4, max_resolution=40)
    grid = HashGrid(config).double()
    with torch.no_grad():
        grid.table.normal_()
    assert any(grid.dense) and not all(grid.dense)
    x = torch.rand(300, 3, dtype=torch.float64)
    ref = []
    for lvl, r in enumerate(grid.resolutions):
        pos = x * r
        base = pos.floor().long().clamp(max=r - 1)
        frac = pos - base
        out = 0
        for i in (0, 1):
            for j in (0, 1):
                for k in (0, 1):
                    cx, cy, cz = base[:, 0] + i, base[:, 1] + j, base[:, 2] + k
                    w = (frac[:, 0] if i else 1 - frac[:, 0]) * (frac[:, 1] if j else 1 - frac[:, 1]) * \
                        (frac[:, 2] if k else 1 - frac[:, 2])
                    if grid.dense[lvl]:
                        row = (cx * (r + 1) + cy) * (r + 1) + cz
                    else:
                        row = ((cx ^ (cy * 2654435761) ^ (cz * 805459861)) & 0xFFFFFFFF) % grid.sizes[lvl]
                    out = out + w[:, None] * grid.table[row + grid.offsets[lvl]]
        ref.append(out)
    assert torch.allclose(grid(x), torch.cat(ref, -1), atol=1e-12, rtol=0)


def test_render_nerf_with_lambertian_normals_and_occupancy():
    torch.manual_seed(0)
    config = NeRFConfig(grid=HashGridConfig(n_levels=4, log2_table_size=12, base_resolution=8, max_resolution=64))
    field = NeRFField(config)
    cams = turntable_cameras(2, width=12, height=10)
    occ = OccupancyGrid(bound=1.0, resolution=16)
    occ.update(field.density)
    assert occ.occupied.any() and not occ.occupied.all()          # blob is inside, corners empty
    rcfg = NeRFRenderConfig(n_samples=24, shading="lambertian")
    out = render_nerf(field, cams, rcfg, background=torch.ones(3), occupancy=occ,
                      light_dirs=random_light_dirs(cams, torch.Generator().manual_seed(0)))
    assert out["rgb"].shape == (2, 10, 12, 3) and out["normal"].shape == (2, 10, 12, 3)
    assert out["alpha"][:, 5, 6].min() > 0.5 and out["alpha"][:, 0, 0].max() < 0.1   # blob at the centre
    loss = out["rgb"].mean() + orientation_loss(out["weights"], out["normals"], out["dirs"]) \
        + opacity_entropy(out["alpha"])
    loss.backward()
    assert field.encoding.table.grad.abs().sum() > 0
    grid = nerf_density_grid(field, res=8)
    assert grid.shape == (8, 8, 8) and grid[4, 4, 4] > grid[0, 0, 0]
    assert nerf_color(field, torch.zeros(4, 3)).shape == (4, 3)
