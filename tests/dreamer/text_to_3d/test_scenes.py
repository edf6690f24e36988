"""dreamer.scenes: both particle families move between devices with their optimizer state (export runs on CPU)."""
import pytest
import torch

import renderers as R
from dreamer.text_to_3d.scenes import GaussianScene, GaussianSceneConfig, NeRFScene, NeRFSceneConfig


def _make(kind):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)                               # the hash grid / MLP initialisers use the global RNG
    if kind == "gaussians":
        return GaussianScene(GaussianSceneConfig(n_init=50), g)
    return NeRFScene(NeRFSceneConfig(levels=2, log2_table_size=8, hidden=8, n_samples=8), g)


def _step(scene):
    cams = R.sample_orbit_cameras(1, width=16, height=16, generator=torch.Generator().manual_seed(0))
    scene.render(cams, step=0, generator=torch.Generator().manual_seed(1))["rgb"].mean().backward()
    scene.opt.step()
    scene.opt.zero_grad()


def _tensors(scene):
    """Parameters, persistent statistics and Adam moments, in a fixed order."""
    if isinstance(scene, GaussianScene):
        out = [p.detach() for p in scene.params.as_dict().values()] + [scene.densify_state.grad2d]
    else:
        out = [p.detach() for p in scene.field.parameters()] + list(scene.occupancy.buffers())
    for group in scene.opt.param_groups:
        for p in group["params"]:
            st = scene.opt.state.get(p, {})                # no state for a parameter that got no gradient yet
            out += [st[k] for k in ("exp_avg", "exp_avg_sq") if k in st]
    return out


@pytest.mark.parametrize("kind", ["gaussians", "nerf"])
def test_scene_to_moves_everything(kind):
    scene = _make(kind)
    _step(scene)
    n = len(_tensors(scene))
    assert scene.to("meta") is scene
    moved = _tensors(scene)
    assert len(moved) == n and all(t.device.type == "meta" for t in moved)


@pytest.mark.parametrize("kind", ["gaussians", "nerf"])
def test_scene_to_keeps_values_and_training(kind):
    a, b = _make(kind), _make(kind)
    _step(a), _step(b)
    b.to("cpu")                                    # rebuilds parameters / optimizer on the (same) device
    close = lambda: all(torch.allclose(x.float(), y.float(), rtol=1e-6, atol=1e-7)  # noqa: E731  (hash-grid
                        for x, y in zip(_tensors(a), _tensors(b)))                      # scatter-adds: ~1e-9 noise)
    assert len(_tensors(a)) == len(_tensors(b)) and close()
    _step(a), _step(b)                             # the rebuilt optimizer drives the scene as before
    assert close()
