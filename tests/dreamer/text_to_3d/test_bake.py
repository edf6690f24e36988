"""Baked vertex colours: a closed-form two-colour sphere scene (ray-sphere hits) is read back exactly."""
import numpy as np
import torch

import renderers as R
from dreamer.text_to_3d.bake import bake_cameras, bake_vertex_colors, project

RADIUS = 0.5
RED, BLUE = torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.1, 0.2, 0.9])


class TwoColourSphere:
    """Opaque sphere at the origin, red where x > 0 and blue where x < 0, on white; depth = camera z."""

    depth_kind = "z"

    def render(self, cams, step=0):
        o, d = R.rays_from_cameras(cams)                                # [B,H,W,3]
        b = (o * d).sum(-1)
        disc = b ** 2 - ((o * o).sum(-1) - RADIUS ** 2)
        hit = disc > 0
        t = torch.where(hit, -b - disc.clamp_min(0).sqrt(), torch.zeros_like(b))
        p = o + t[..., None] * d
        rgb = torch.where((p[..., :1] > 0), RED, BLUE)
        rgb = torch.where(hit[..., None], rgb, torch.ones(3))
        fwd = -cams.c2w[:, None, None, :3, 2]                             # camera forward (OpenGL -Z)
        z = (t[..., None] * d * fwd).sum(-1, keepdim=True)
        return dict(rgb=rgb.permute(0, 3, 1, 2), alpha=hit[:, None].float(), depth=z.permute(0, 3, 1, 2))


def test_project_matches_the_ray_through_the_pixel():
    cams = bake_cameras(n_azim=3, elevations=(20.0,), res=32)
    o, d = R.rays_from_cameras(cams)
    pts = o[:, 5, 7] + 1.3 * d[:, 5, 7]                                  # a point on the ray of pixel (row 5, col 7)
    uv, z, dist = project(cams, pts)
    idx = torch.arange(len(cams))
    assert torch.allclose(uv[idx, idx], torch.tensor([7.5, 5.5]).expand(3, 2), atol=1e-4)
    assert torch.allclose(dist[idx, idx], torch.full((3,), 1.3), atol=1e-5)


def test_bake_reads_the_visible_colour_and_skips_hidden_points():
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=3, radius=RADIUS)
    verts = np.concatenate([m.vertices, [[0.0, 0.0, 0.0], [0.2, 0.0, 0.0]]])  # two points inside the sphere
    normals = np.concatenate([m.vertex_normals, [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    rgb, seen = bake_vertex_colors(TwoColourSphere(), verts, normals, bake_cameras(n_azim=8, res=64))
    surf = seen[:-2]
    assert surf.mean() > 0.98 and not seen[-2:].any()                  # inside points are occluded in every view
    x = verts[:-2, 0]
    red, blue = surf & (x > 0.12), surf & (x < -0.12)
    rgb = rgb[:-2]
    assert np.abs(rgb[red] - RED.numpy()).max() < 0.02 and np.abs(rgb[blue] - BLUE.numpy()).max() < 0.02
