"""tools.shapes_training.sdf_render: the negatives' sphere tracer against a closed-form silhouette and the GT
renderer."""
import math

import torch

from dreamer.shapes.render import random_views, render_shapes
from dreamer.shapes.world import catalogue
from tools.shapes_training.sdf_render import render_catalogue, render_sdf


def test_sphere_silhouette_area_matches_closed_form():
    # A sphere of radius r seen from distance D fills a disc of radius tan(asin(r / D)) / tan(fov / 2) in [-1, 1]^2.
    r, D, fov = torch.tensor([0.3, 0.5, 0.7]), torch.tensor([2.5, 3.0, 2.2]), torch.tensor([40.0, 35.0, 50.0])
    views = {"elev": torch.tensor([10.0, 45.0, -5.0]), "azim": torch.tensor([0.0, 120.0, -60.0]), "dist": D,
             "fov": fov}
    f = lambda p, i: p.norm(dim=-1) - r[i][:, None]  # noqa: E731
    rgb, alpha = render_sdf(f, torch.tensor([[1.0, 0.0, 0.0]] * 3), views, res=64, supersample=4)
    rho = torch.tan(torch.asin(r / D)) / torch.tan(torch.deg2rad(fov) / 2)
    expected = math.pi * rho ** 2 / 4
    assert torch.allclose(alpha.mean((1, 2, 3)), expected, rtol=0.02), (alpha.mean((1, 2, 3)), expected)
    # outside the object the background is white; inside, red shaded by ambient + lambert (green = blue = 0)
    inside = alpha[:, 0] == 1
    assert (rgb[:, 1:].permute(1, 0, 2, 3)[:, inside] == 0).all()
    assert (rgb.permute(1, 0, 2, 3)[:, alpha[:, 0] == 0] == 1).all()


def test_catalogue_renders_match_the_ground_truth_renderer():
    specs = catalogue()[::3]                                      # 12 objects: every shape, several colours
    views = random_views(len(specs), torch.Generator().manual_seed(0))
    ours, a_ours = render_catalogue(specs, views, res=32)
    gt, a_gt = render_shapes(specs, views["elev"], views["azim"], views["dist"], views["fov"], res=32)
    assert (a_ours - a_gt).abs().mean() < 0.002      # measured 0.0003 (iteration counts differ)
    assert (ours - gt).abs().mean() < 0.002
