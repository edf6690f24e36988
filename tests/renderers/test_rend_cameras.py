"""Cameras: look-at, orbit sampling, rays, conventions."""

import torch

from renderers import (camera_vector, look_at, opencv_viewmats, rays_from_cameras, sample_orbit_cameras,
                       turntable_cameras)


def test_look_at_points_camera_at_target():
    eye = torch.tensor([[0.0, 0.0, 2.0], [1.0, 2.0, -3.0], [0.0, 3.0, 0.0]])
    c2w = look_at(eye)
    fwd = -c2w[:, :3, 2]
    assert torch.allclose(fwd, -torch.nn.functional.normalize(eye, dim=-1), atol=1e-6)
    R = c2w[:, :3, :3]
    assert torch.allclose(R.transpose(1, 2) @ R, torch.eye(3).expand(3, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(R), torch.ones(3), atol=1e-6)
    assert torch.all(c2w[:2, 1, 1] > 0)                  # up vector has +Y component (non-degenerate)
    assert torch.allclose(c2w[:, :3, 3], eye)


def test_orbit_convention_front_is_plus_z():
    cams = turntable_cameras(4, elevation=0.0, distance=2.0)
    pos = cams.c2w[:, :3, 3]
    assert torch.allclose(pos[0], torch.tensor([0.0, 0.0, 2.0]), atol=1e-6)   # azimuth 0
    assert torch.allclose(pos[1], torch.tensor([2.0, 0.0, 0.0]), atol=1e-6)   # azimuth 90
    # origin projects to the image centre; a point above it projects to a smaller row (image top)
    vm = opencv_viewmats(cams)
    p = vm[:, :3, :3] @ torch.tensor([0.0, 0.2, 0.0]) + vm[:, :3, 3]
    v = cams.fy * p[:, 1] / p[:, 2] + cams.cy
    assert torch.all(v < cams.cy)


def test_stratified_azimuth_bins_and_shapes():
    g = torch.Generator().manual_seed(0)
    B = 8
    cams = sample_orbit_cameras(B, width=32, height=24, generator=g)
    bins = torch.floor((cams.azimuth + 180) / (360 / B)).long()
    assert sorted(bins.tolist()) == list(range(B))
    assert ((cams.elevation >= -10) & (cams.elevation <= 45)).all()
    assert camera_vector(cams).shape == (B, 16)
    o, d = rays_from_cameras(cams)
    assert o.shape == d.shape == (B, 24, 32, 3)
    assert torch.allclose(d.norm(dim=-1), torch.ones(B, 24, 32), atol=1e-5)
    # central rays point at the origin
    c = d[:, 11:13, 15:17].mean((1, 2))
    assert torch.allclose(torch.nn.functional.normalize(c, dim=-1),
                          torch.nn.functional.normalize(-o[:, 0, 0], dim=-1), atol=1e-3)
