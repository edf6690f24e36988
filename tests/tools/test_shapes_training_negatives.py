"""tools.shapes_training.negatives: the evaluator's reject-head negatives are seeded, cover every kind and look like
it; the shipped evaluator rejects the held-out ones."""
import pytest
import torch

from dreamer.shapes.evaluator import ASSET_DIR, ShapesEvaluator
from tools.shapes_training.negatives import KINDS, make_negatives

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ev():
    assert (ASSET_DIR / "model.safetensors").is_file() and (ASSET_DIR / "config.json").is_file()
    return ShapesEvaluator.load()


def test_held_out_negatives_are_mostly_rejected(ev):
    x, kinds = make_negatives(8 * len(KINDS), seed=99, held_out=True)  # 64 images, 8 of each kind
    rej = ev.predict(x)[2]
    assert rej.float().mean() >= 0.85
    easy = torch.tensor([k in ("blank", "silhouette", "noise") for k in kinds])
    assert rej[easy].all()


def test_negatives_are_seeded_and_cover_every_kind():
    a, ka = make_negatives(2 * len(KINDS), seed=5)
    b, kb = make_negatives(2 * len(KINDS), seed=5)
    assert torch.equal(a, b) and ka == kb
    assert ka == [k for k in KINDS for _ in range(2)]
    assert a.shape == (16, 3, 32, 32) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    c, _ = make_negatives(2 * len(KINDS), seed=6)
    h, kh = make_negatives(2 * len(KINDS), seed=5, held_out=True)
    assert kh == ka
    for k in range(len(KINDS)):  # every kind differs with the seed and with the held-out split
        sl = slice(2 * k, 2 * k + 2)
        assert not torch.equal(a[sl], c[sl]), KINDS[k]
        assert not torch.equal(a[sl], h[sl]), KINDS[k]
    # one kind alone gives the same images as in the mix
    only, ko = make_negatives(2, seed=5, kinds=["off_catalogue"])
    i = KINDS.index("off_catalogue")
    assert ko == ["off_catalogue"] * 2 and torch.equal(only, a[2 * i:2 * i + 2])
    with pytest.raises(ValueError):
        make_negatives(4, kinds=["cube"])


def test_negatives_look_like_their_kind():
    x, kinds = make_negatives(4 * len(KINDS), seed=0, res=32)
    by = {k: x[torch.tensor([q == k for q in kinds])] for k in KINDS}
    flat = lambda im: im.flatten(2).std(-1).amax(-1)  # noqa: E731  per-image max channel std
    assert (flat(by["blank"]) < 1e-6).all() and (flat(by["flat"]) < 1e-6).all()
    assert (flat(by["noise"]) > 0.05).all()
    for k in ("silhouette", "two_objects", "off_catalogue", "off_colour"):  # white background, something drawn
        im = by[k]
        assert (im[:, :, 0, 0] > 0.99).all() and (im[:, :, -1, -1] > 0.99).all(), k
        assert ((im < 0.9).any(1).float().mean((1, 2)) > 0.02).all(), k
    crops = by["crop"]  # the object is cut by the border: some border pixels are not white
    border = torch.cat([crops[:, :, 0], crops[:, :, -1], crops[:, :, :, 0], crops[:, :, :, -1]], -1)
    assert ((border < 0.9).any(1).float().mean(-1) > 0.05).all()
    # silhouettes are unshaded: one colour inside (the pixels far from white all share it)
    for im in by["silhouette"]:
        inner = im.flatten(1)[:, (im < 0.999).any(0).flatten()]
        core = inner[:, (inner - inner.median(1, keepdim=True).values).abs().amax(0) < 1e-4]
        assert core.shape[1] > 0.5 * inner.shape[1]
    # GT renders at another resolution work too
    y, _ = make_negatives(len(KINDS), seed=1, res=48)
    assert y.shape == (len(KINDS), 3, 48, 48)
