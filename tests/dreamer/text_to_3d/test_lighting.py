"""text_to_3d.lighting: an unshaded recipe draws nothing from the run's generator, the mix draws modes in its
proportions, the key light is the world's, and a scene relit under the world's light matches the world's GT render
of a flat face exactly."""
import torch

import renderers as R
from renderers.shading import AMBIENT, camera_key_light
from dreamer.text_to_3d.lighting import ShadingConfig, draw_shading, make_light
from dreamer.text_to_3d.scenes import GaussianScene, GaussianSceneConfig


def _cams(b=3):
    t = lambda *v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    return R.orbit_cameras(t(10.0, 30.0, -5.0)[:b], t(0.0, 90.0, 200.0)[:b], t(2.0, 2.1, 2.2)[:b],
                           t(40.0, 42.0, 45.0)[:b], 16, 16)


def test_albedo_only_or_before_start_draws_nothing():
    cams = _cams()
    for config, step in ((ShadingConfig(), 500), (ShadingConfig(start=100, albedo=0, lambertian=1), 99)):
        g = torch.Generator().manual_seed(3)
        assert draw_shading(config, step, cams, g) == ("albedo", None)
        assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=torch.Generator().manual_seed(3)))


def test_mix_proportions_and_lights():
    cams = _cams()
    config = ShadingConfig(albedo=1, lambertian=2, textureless=1)
    g = torch.Generator().manual_seed(0)
    n = 4000
    modes = [draw_shading(config, 0, cams, g)[0] for _ in range(n)]
    for mode, p in (("albedo", 0.25), ("lambertian", 0.5), ("textureless", 0.25)):
        k = modes.count(mode)
        assert abs(k / n - p) < 5 * (p * (1 - p) / n) ** 0.5, (mode, k)          # 5 binomial standard errors
    mode, light = draw_shading(ShadingConfig(albedo=0, lambertian=1), 0, cams, g)
    assert mode == "lambertian" and torch.equal(light, camera_key_light(cams.c2w))      # no jitter: the world's light
    jittered = make_light(ShadingConfig(jitter=0.3), cams, g)
    assert torch.allclose(jittered.norm(dim=-1), torch.ones(3)) and not torch.allclose(jittered, light)


def test_a_flat_splat_wall_relit_is_the_world_shading_of_its_albedo():
    """A wall of opaque splats through the origin seen head-on: depth is planar, so the relit colour is exactly
    albedo * (0.35 + 0.65 max(0, n.l)) with n = +z, the world's GT formula (dreamer.shapes.render)."""
    cams = R.orbit_cameras(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([2.0]), torch.tensor([40.0]), 16, 16)
    eye = cams.c2w[0, :3, 3]
    scene = GaussianScene(GaussianSceneConfig(n_init=4), torch.Generator().manual_seed(0))
    xs = torch.linspace(-1.5, 1.5, 31)
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    normal = eye / eye.norm()                                   # the wall faces the camera
    u = torch.nn.functional.normalize(torch.linalg.cross(normal, torch.tensor([0.0, 1.0, 0.0])), dim=0)
    v = torch.linalg.cross(u, normal)
    means = grid[:, :1] * u + grid[:, 1:] * v                   # [N,3] in the plane through the origin
    albedo = torch.tensor([0.8, 0.3, 0.2])
    p = R.init_gaussians_from_points(means, albedo.expand(len(means), 3), opacity=0.99)
    p.log_scales.data = torch.log(torch.tensor([0.08, 0.08, 0.08])).expand_as(p.log_scales).clone()
    scene.params = p
    light = camera_key_light(cams.c2w)
    out = scene.render(cams, 0, shading="lambertian", light=light, ambient=AMBIENT)
    flat = scene.render(cams, 0)
    a = flat["alpha"][0]                                        # [1,H,W]; the wall's camera z is 2 everywhere,
    inner = a[0] > 0.5                                          # so is the depth blended towards |eye| = 2
    assert inner.sum() > 100
    lam = (normal @ light[0]).clamp_min(0)
    want = (flat["rgb"][0] - (1 - a)) * (AMBIENT + (1 - AMBIENT) * lam) + (1 - a)      # white background kept
    # float32: points ~2 from the origin round to ~2.4e-7, pixel steps are ~0.09, so the normal is good to ~3e-6
    # and the colour (x 0.65 x albedo <= 0.8) to ~2e-6; 1e-5 leaves a factor 5 for the other roundings.
    assert torch.allclose(out["rgb"][0][:, inner], want[:, inner], atol=1e-5)
