"""Surface fusion (text_to_3d.fusion): exact renders of the shapes world's SDFs fuse into meshes the strict test
calls right, including the torus's hole and the cube's flat faces; NeRF surface depth matches closed form."""
import math

import pytest
import torch

import renderers as R
from dreamer.shapes.render import sphere_trace
from dreamer.shapes.strict import strict_report
from dreamer.shapes.world import ShapeSpec, sdf
from dreamer.text_to_3d.bake import bake_cameras
from dreamer.text_to_3d.export import extract_mesh
from dreamer.text_to_3d.fusion import fuse_renders


class ExactScene:
    """Renders of a primitive by sphere tracing its exact SDF: opaque coverage and the ray distance of the hit."""

    depth_kind = "ray"

    def __init__(self, shape: str):
        self.shape = shape

    def render(self, cams: R.Cameras, step: int = 0) -> dict:
        o, d = R.rays_from_cameras(cams)
        hit, p = sphere_trace(lambda q: sdf(self.shape, q), o.reshape(-1, 3), d.reshape(-1, 3))
        dist = (p - o.reshape(-1, 3)).norm(dim=-1) * hit
        shape = (len(cams), 1, cams.height, cams.width)
        return {"alpha": hit.float().reshape(shape), "depth": dist.reshape(shape)}


@pytest.mark.parametrize("shape", ["cube", "torus", "pyramid"])
def test_exact_renders_fuse_into_a_right_mesh(shape):
    grid, level = fuse_renders(ExactScene(shape), 64, cams=bake_cameras(res=48))
    mesh = extract_mesh(None, None, res=64, threshold=level, grid=grid)
    rep = strict_report(mesh, ShapeSpec(shape, "red"), n=4000)
    assert rep["right"] is not False and not [r for r in rep["reasons"] if not r.startswith("colour")], rep["reasons"]


def test_empty_renders_fuse_into_free_space():
    class Empty(ExactScene):
        def render(self, cams, step=0):
            z = torch.zeros(len(cams), 1, cams.height, cams.width)
            return {"alpha": z, "depth": z}

    grid, level = fuse_renders(Empty("cube"), 16, cams=bake_cameras(res=16))
    assert (grid < level).all()


def test_nerf_surface_depth_of_a_constant_density_box_is_closed_form():
    """A field of constant density s inside [-b, b]^3: along the front camera's central ray transmittance is
    exp(-s (t - t_in)), so it falls to T at t_in + ln(1/T) / s, up to one sample spacing."""
    from dreamer.text_to_3d.scenes import NeRFScene, NeRFSceneConfig

    s, b, level = 8.0, 0.4, 0.5
    scene = NeRFScene(NeRFSceneConfig(n_samples=256), torch.Generator().manual_seed(0))
    scene.field = lambda x: ((x.abs() <= b).all(-1).float() * s, torch.zeros(len(x), 3))
    scene.occupancy = None
    cams = R.turntable_cameras(1, elevation=0.0, distance=2.0, fov=40.0, width=9, height=9)
    depth = float(scene.surface_depth(cams, level)[0, 0, 4, 4])
    near, far = 1.0, 3.0                                            # the ray's span inside the [-1, 1]^3 box
    assert depth == pytest.approx(2.0 - b + math.log(1 / level) / s, abs=(far - near) / 256)
