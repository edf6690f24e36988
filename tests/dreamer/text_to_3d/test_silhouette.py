"""Silhouette-matched export level: a radial density whose renders show a sphere of known radius."""
import numpy as np
import torch

import renderers as R
from dreamer.text_to_3d.bake import bake_cameras
from dreamer.text_to_3d.silhouette import ray_max_density, silhouette_threshold

RES, BOUND, SIGMA = 64, 1.0, 0.3


def _radial_grid():
    x = np.linspace(-BOUND, BOUND, RES)
    X, Y, Z = np.meshgrid(x, x, x, indexing="ij")
    r2 = (X - 0.1) ** 2 + Y ** 2 + Z ** 2                       # off-centre in x, to catch an axis mix-up
    return 50.0 * np.exp(-r2 / (2 * SIGMA ** 2)), np.array([0.1, 0.0, 0.0])


def _disc_alpha(cams, centre, radius):
    """Exact silhouette of a sphere: rays whose closest approach to the centre is below the radius."""
    o, d = R.rays_from_cameras(cams)
    c = torch.tensor(centre, dtype=torch.float32)
    t = ((c - o) * d).sum(-1, keepdim=True)
    miss = (o + t * d - c).norm(dim=-1)
    return (miss < radius).float()


def test_ray_max_is_the_density_at_the_closest_approach():
    grid, centre = _radial_grid()
    cams = bake_cameras(n_azim=3, elevations=(15.0,), res=24)
    o, d = R.rays_from_cameras(cams)
    c = torch.tensor(centre, dtype=torch.float32)
    t = ((c - o) * d).sum(-1, keepdim=True)
    miss2 = (o + t * d - c).pow(2).sum(-1)
    exact = 50.0 * torch.exp(-miss2 / (2 * SIGMA ** 2))
    assert (ray_max_density(grid, BOUND, cams, n_samples=256) - exact).abs().max() < 0.02 * 50.0


def test_level_recovers_the_density_on_the_rendered_silhouette():
    grid, centre = _radial_grid()
    cams = bake_cameras(res=48)
    for radius in (0.3, 0.45):
        level, iou = silhouette_threshold(grid, BOUND, cams, _disc_alpha(cams, centre, radius), n_candidates=128)
        exact = 50.0 * np.exp(-radius ** 2 / (2 * SIGMA ** 2))  # density on the sphere of that radius
        assert iou > 0.95 and abs(np.log(level / exact)) < 0.08, (radius, level, exact, iou)
