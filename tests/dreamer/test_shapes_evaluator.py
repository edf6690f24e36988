"""Shipped shapes evaluator: offline load, held-out accuracy, Frechet distance and diversity."""
import numpy as np
import pytest
import torch

from dreamer.shapes.evaluator import (ASSET_DIR, ShapesEvaluator, diversity, frechet_distance, group_by_prompt,
                                      prompt_accuracy)
from dreamer.shapes.render import random_views, render_shapes
from dreamer.shapes.world import catalogue

torch.set_num_threads(1)
SEED_A, SEED_B = 2024, 777  # differ from the training (0) and held-out (12345) seeds


def _gt(seed, per_prompt=6, res=32):
    specs = catalogue() * per_prompt  # 216 images
    v = random_views(len(specs), torch.Generator().manual_seed(seed), elev_range=(-10.0, 80.0))
    return render_shapes(specs, v["elev"], v["azim"], v["dist"], v["fov"], res=res)[0], specs


@pytest.fixture(scope="module")
def ev():
    assert (ASSET_DIR / "model.safetensors").is_file() and (ASSET_DIR / "config.json").is_file()
    return ShapesEvaluator.load()


@pytest.fixture(scope="module")
def gt_a():
    return _gt(SEED_A)


def test_shipped_accuracy_on_fresh_gt(ev, gt_a):
    x, specs = gt_a
    assert ev.prompt_accuracy(x, specs) >= 0.98
    assert prompt_accuracy(ev, x, specs) == ev.prompt_accuracy(x, specs)
    s, c = ev.classify(x)
    assert s.shape == c.shape == (216,) and s.dtype == torch.long


def test_other_resolution_is_resized(ev):
    x, specs = _gt(SEED_B, per_prompt=1, res=64)
    assert ev.prompt_accuracy(x, specs) >= 0.94  # 36 images: at most 2 wrong


def test_features_and_frechet(ev, gt_a):
    fa = ev.features(gt_a[0])
    assert fa.shape == (216, ev.cfg.feat_dim)
    assert frechet_distance(fa, fa) < 1e-6 * float(fa.var(0).sum())
    fb = ev.features(_gt(SEED_B)[0])
    g = torch.Generator().manual_seed(0)
    x = gt_a[0]
    shuffled = x.flatten(2)[:, :, torch.randperm(32 * 32, generator=g)].reshape_as(x)
    noise = torch.rand(x.shape, generator=g)
    d_gt = frechet_distance(fa, fb)
    assert frechet_distance(fa, ev.features(shuffled)) > 10 * d_gt
    assert frechet_distance(fa, ev.features(noise)) > 10 * d_gt


def test_frechet_closed_forms():
    """Shift: FD = |c|^2 exactly (same covariance). Scale by 2: FD = |mu|^2 + tr A + 4 tr A - 2 tr 2A = |mu|^2 + tr A."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8))
    c = rng.normal(size=8)
    assert frechet_distance(a, a + c) == pytest.approx(float(c @ c), rel=1e-8)
    mu, cov = a.mean(0), np.cov(a, rowvar=False)
    assert frechet_distance(a, 2 * a) == pytest.approx(float(mu @ mu + np.trace(cov)), rel=1e-8)
    assert frechet_distance(torch.as_tensor(a), torch.as_tensor(a)) == pytest.approx(0.0, abs=1e-9)


def test_diversity(ev, gt_a):
    x = gt_a[0][:1].repeat(10, 1, 1, 1)
    assert diversity(ev.features(x)) == 0.0
    assert diversity(ev.features(gt_a[0][:36])) > 0
    f = np.array([[0.0, 0], [3, 4], [0, 0], [1, 0], [0, 1]])
    prompts = ["p", "p", "q", "q", "r"]  # p: 5; q: 1; r: single sample, skipped
    assert group_by_prompt(prompts) == {"p": [0, 1], "q": [2, 3], "r": [4]}
    assert diversity(f, prompts) == pytest.approx((5.0 + 1.0) / 2)
    tri = np.array([[0.0, 0], [1, 0], [0, 1]])  # pairs: 1, 1, sqrt 2
    assert diversity(tri) == pytest.approx((2 + np.sqrt(2)) / 3)
