"""dreamer.common.view_prompts: Perp-Neg's view prompts (positive interpolation, negative views and their weights)."""
import math

import pytest
import torch

from dreamer.common.view_prompts import perp_neg_embeddings, perp_neg_views


@pytest.mark.parametrize("azimuth,expected", [
    (0.0, ("front view", "side view", 1.0, (("front view", 0.0), ("side view", 2.0)))),
    (45.0, ("front view", "side view", 0.5, (("front view", 2 * math.exp(-1.0)), ("side view", 2 * math.exp(-5.0))))),
    (-81.0, ("front view", "side view", 0.1, (("front view", 2 * math.exp(-0.2)), ("side view", 0.0)))),
    (90.0, ("side view", "back view", 1.0, (("side view", 0.0), ("front view", 2.0)))),
    (-135.0, ("side view", "back view", 0.5, (("side view", math.exp(-5.0)), ("front view", 2.0)))),
    (540.0, ("side view", "back view", 0.0, (("side view", 1.0), ("front view", 2.0)))),
])
def test_perp_neg_views_follow_the_authors_schedule(azimuth, expected):
    """r = 1 - |a| / 90 (front half) or 1 - (|a| - 90) / 90 (back half); weights 2 exp(-decay * distance), cut to 0
    within 0.2 of the view itself; front always 2 from the back half, side halved there."""
    va, vb, r, negs = perp_neg_views(azimuth)
    assert (va, vb) == expected[:2] and r == pytest.approx(expected[2], abs=1e-15)
    assert [n for n, _ in negs] == [n for n, _ in expected[3]]
    assert [w for _, w in negs] == pytest.approx([w for _, w in expected[3]], rel=1e-15, abs=0)


def test_perp_neg_embeddings_interpolate_the_positive_and_stack_the_negatives():
    table = {"a cube, front view": 1.0, "a cube, side view": 2.0, "a cube, back view": 4.0}

    def encode(texts):
        return torch.stack([torch.full((3, 2), table[t], dtype=torch.float64) for t in texts])

    cond, views, w = perp_neg_embeddings(encode, "a cube", [45.0, 180.0])
    assert cond.shape == (2, 3, 2) and views.shape == (2, 2, 3, 2) and w.shape == (2, 2)
    assert torch.equal(cond[:, 0, 0], torch.tensor([0.5 * 1 + 0.5 * 2, 4.0], dtype=torch.float64))
    assert torch.equal(views[:, :, 0, 0], torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64))
    assert torch.equal(w, torch.tensor([[2 * math.exp(-1.0), 2 * math.exp(-5.0)], [1.0, 2.0]], dtype=torch.float64))
