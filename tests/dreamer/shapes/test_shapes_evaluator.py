"""Shipped shapes evaluator: offline load, held-out accuracy, reject head, Frechet distance, diversity (its negatives:
tests/tools/test_shapes_training_negatives.py)."""
import json

import numpy as np
import pytest
import torch

from dreamer.shapes.evaluator import (ASSET_DIR, EvaluatorConfig, ShapesEvaluator, diversity, frechet_distance,
                                      group_by_prompt, prompt_accuracy, spec_targets)
from dreamer.shapes.render import random_views, render_shapes
from dreamer.shapes.world import COLOURS, ShapeSpec, catalogue

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
    assert fa.shape == (216, ev.config.feat_dim)
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


# ---------------------------------------------------------------------------------------------- reject head

def _flat_square(rgb, side, deg=0.0, res=32):
    t = torch.arange(res) + 0.5 - res / 2
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    u, v = c * t[None, :] + s * t[:, None], -s * t[None, :] + c * t[:, None]
    inside = torch.maximum(u.abs(), v.abs()) <= side / 2
    return torch.where(inside, torch.tensor(rgb)[:, None, None], torch.ones(()))


def _flat_disc(rgb, radius, res=32):
    t = torch.arange(res) + 0.5 - res / 2
    inside = (t[:, None] ** 2 + t[None, :] ** 2) <= radius ** 2
    return torch.where(inside, torch.tensor(rgb)[:, None, None], torch.ones(()))


def test_shipped_weights_have_a_reject_head(ev):
    assert ev.config.reject and ev.reject_head is not None


def test_degenerate_images_are_rejected(ev):
    red, blue = COLOURS["red"], COLOURS["blue"]
    g = torch.Generator().manual_seed(0)
    # Axis-aligned flat squares of a cube's size (15-22 px) are left out on purpose: a cube seen exactly face-on
    # renders as one (see MODEL_CARD.md), so accepting them is right.
    cases = {
        "blank white": torch.ones(1, 3, 32, 32),
        "flat red square": torch.stack([_flat_square(red, 10), _flat_square(red, 28), _flat_square(red, 18, 30.0),
                                        _flat_square(red, 18, 45.0)]),
        "flat blue disc": torch.stack([_flat_disc(blue, r) for r in (5, 8, 11, 14)]),
        "noise": torch.rand(4, 3, 32, 32, generator=g),
    }
    for name, x in cases.items():
        s, c, rej = ev.predict(x)
        assert rej.all(), f"{name} not rejected: p(reject) = {ev.reject_prob(x).tolist()}"
        assert ev.reject_rate(x) == 1.0
        assert ev.prompt_accuracy(x, [ShapeSpec("cube", "red")] * len(x)) == 0.0


def test_gt_renders_are_accepted_and_right(ev, gt_a):
    x, specs = gt_a
    s, c, rej = ev.predict(x)
    assert ev.reject_rate(x) <= 0.02  # 216 images: at most 4 rejected
    ts, tc = spec_targets(specs)
    assert ((s == ts) & (c == tc) & ~rej).float().mean() >= 0.98
    assert torch.equal(s, ev.classify(x)[0]) and torch.equal(c, ev.classify(x)[1])
    assert rej.dtype == torch.bool and rej.shape == (216,)


def test_prompt_accuracy_counts_a_rejection_as_wrong(ev, gt_a):
    x, specs = gt_a[0][:36], gt_a[1][:36]
    m = ShapesEvaluator(ev.config)
    m.load_state_dict(ev.state_dict())
    m.eval()
    s, c = m.classify(x)
    ts, tc = spec_targets(specs)
    right = ((s == ts) & (c == tc)).float().mean().item()
    with torch.no_grad():
        m.reject_head.bias.fill_(-100.0)   # never reject: accuracy is the classifier's
        assert m.reject_rate(x) == 0.0 and m.prompt_accuracy(x, specs) == pytest.approx(right)
        m.reject_head.bias.fill_(100.0)    # always reject: every image wrong
        assert m.reject_rate(x) == 1.0 and m.prompt_accuracy(x, specs) == 0.0
        assert torch.equal(m.classify(x)[0], s)  # classify ignores the reject head


def test_weights_without_reject_head_still_load(tmp_path):
    torch.manual_seed(0)
    old = ShapesEvaluator(EvaluatorConfig(reject=False))
    old.save(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    del raw["reject"], raw["reject_threshold"]  # a config.json written before the reject head existed
    (tmp_path / "config.json").write_text(json.dumps(raw))
    m = ShapesEvaluator.load(tmp_path)
    assert not m.config.reject and m.reject_head is None
    x = torch.rand(3, 3, 32, 32)
    s, c, rej = m.predict(x)
    assert not rej.any() and m.reject_rate(x) == 0.0 and torch.equal(s, m.classify(x)[0])


def test_save_load_round_trip_keeps_reject_head(ev, tmp_path):
    ev.save(tmp_path)
    m = ShapesEvaluator.load(tmp_path)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.equal(m.reject_prob(x), ev.reject_prob(x))
    assert torch.equal(m.features(x), ev.features(x))
