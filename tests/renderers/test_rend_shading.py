"""renderers.shading: depth normals are exact on planes (z and ray depth), shading follows the Lambert formula in
closed form, and the whole relight is differentiable in fp64 (gradcheck)."""
import math

import torch

import renderers as R
from renderers.shading import depth_normals, depth_points, relight, shade


def _cams(dtype=torch.float64, res=12):
    e, a = torch.tensor([20.0, -35.0], dtype=dtype), torch.tensor([30.0, 140.0], dtype=dtype)
    return R.orbit_cameras(e, a, torch.tensor([2.1, 1.9], dtype=dtype), torch.tensor([40.0, 45.0], dtype=dtype),
                           res, res)


def _plane_depth(cams, n, c, kind):
    """Exact depth of the plane n.x = c seen through every pixel: ray distance, or camera z."""
    o, d = R.rays_from_cameras(cams)
    t = (c - (o * n).sum(-1)) / (d * n).sum(-1)                               # [B,H,W]
    if kind == "z":
        t = t * (d * -cams.c2w[:, None, None, :3, 2]).sum(-1)
    return t[:, None]


def test_depth_points_invert_both_depth_kinds():
    cams = _cams()
    n, c = torch.nn.functional.normalize(torch.tensor([0.3, 1.0, -0.2], dtype=torch.float64), dim=0), 0.1
    for kind in ("z", "ray"):
        p = depth_points(_plane_depth(cams, n, c, kind), cams, kind)
        assert torch.allclose((p * n).sum(-1), torch.full(p.shape[:-1], c, dtype=torch.float64), atol=1e-12)


def test_normals_of_a_plane_are_its_normal_facing_the_camera():
    cams = _cams()
    for tilt in ([0.0, 0.0, 0.0], [0.5, -0.3, 0.2], [-0.4, 0.6, -0.5]):        # planes up to ~45 deg off the view axis
        for b in range(len(cams)):
            cam = cams[b]
            eye = cam.c2w[0, :3, 3]
            n = torch.nn.functional.normalize(eye / eye.norm() + torch.tensor(tilt, dtype=torch.float64), dim=0)
            for kind in ("z", "ray"):
                depth = _plane_depth(cam, n, 0.05, kind)
                assert (depth > 0).all()                                          # every ray meets it in front
                got = depth_normals(depth, cam, kind)[0]                          # [3,H,W]
                err = (got - n.view(3, 1, 1)).abs().max()
                assert err < 1e-9, (tilt, kind, b, err)


def test_shade_is_lambert_with_the_background_kept():
    B, H, W = 2, 3, 4
    g = torch.Generator().manual_seed(0)
    albedo = torch.rand(B, 3, H, W, generator=g, dtype=torch.float64)
    alpha = torch.rand(B, 1, H, W, generator=g, dtype=torch.float64)
    bg = torch.tensor([1.0, 0.9, 0.8], dtype=torch.float64)
    rgb = alpha * albedo + (1 - alpha) * bg.view(1, 3, 1, 1)
    light = torch.nn.functional.normalize(torch.tensor([[0.0, 0.6, 0.8], [1.0, 0.0, 0.0]], dtype=torch.float64), dim=-1)
    ang = torch.rand(B, 1, H, W, generator=g, dtype=torch.float64) * math.pi     # angle from the light
    # normals at angle `ang` from the light, in the plane of the light and a perpendicular axis
    perp = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    normals = torch.cos(ang) * light.view(B, 3, 1, 1) + torch.sin(ang) * perp.view(B, 3, 1, 1)
    want = alpha * albedo * (0.35 + 0.65 * torch.cos(ang).clamp_min(0)) + (1 - alpha) * bg.view(1, 3, 1, 1)
    assert torch.allclose(shade(rgb, alpha, normals, light, bg, "lambertian"), want, atol=1e-14)
    flat = alpha * (0.2 + 0.8 * torch.cos(ang).clamp_min(0)) + (1 - alpha) * bg.view(1, 3, 1, 1)
    assert torch.allclose(shade(rgb, alpha, normals, light, bg, "textureless", ambient=0.2), flat, atol=1e-14)
    assert shade(rgb, alpha, normals, light, bg, "albedo") is rgb


def test_relight_gradcheck_fp64():
    cams = _cams(res=6)
    g = torch.Generator().manual_seed(1)
    base = _plane_depth(cams, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), 0.0, "z")
    depth = (base + 0.05 * torch.rand(base.shape, generator=g, dtype=torch.float64)).requires_grad_(True)
    alpha = (0.3 + 0.6 * torch.rand(2, 1, 6, 6, generator=g, dtype=torch.float64)).requires_grad_(True)
    albedo = torch.rand(2, 3, 6, 6, generator=g, dtype=torch.float64)
    bg = torch.ones(3, dtype=torch.float64)
    light = torch.nn.functional.normalize(torch.tensor([[0.2, 0.9, 0.4], [-0.3, 0.5, 0.8]], dtype=torch.float64), dim=-1)

    def f(depth, alpha):
        rgb = alpha * albedo + (1 - alpha)
        return relight(dict(rgb=rgb, alpha=alpha, depth=depth), cams, "z", light, bg)

    assert torch.autograd.gradcheck(f, (depth, alpha), eps=1e-6, atol=1e-7)
