"""dreamer.common.ema: theta_ema <- decay theta_ema + (1 - decay) theta, in place, over tensor lists or over a
module's trainable parameters matched by name."""
import torch
from torch import nn

from dreamer.common.ema import ema_lerp_, ema_update


def _close(got, a, b, wa, wb) -> bool:
    """got == wa a + wb b up to a few roundings of the terms: a lerp a + w (b - a) and the weighted sum each round
    at most ~3 times, so |diff| <= 4 eps (|a| + |b|) elementwise (eps of the dtype)."""
    eps = torch.finfo(got.dtype).eps
    return bool(((got - (wa * a + wb * b)).abs() <= 4 * eps * (a.abs() + b.abs())).all())


def test_ema_lerp_moves_each_tensor_in_place_towards_its_online_copy():
    g = torch.Generator().manual_seed(0)
    ema = [torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)]
    online = [torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True),
              torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)]
    before, ids = [e.clone() for e in ema], [id(e) for e in ema]
    ema_lerp_(ema, online, 0.9)
    assert [id(e) for e in ema] == ids                                         # in place
    for e, b, p in zip(ema, before, online):
        assert _close(e, b, p.detach(), 0.9, 0.1)
        assert not e.requires_grad                                              # no graph through the average
    ema_lerp_(ema, online, 1.0)                                                 # decay 1: frozen
    ema_lerp_([], [], 0.5)                                                      # nothing to average: no-op
    for e, b, p in zip(ema, before, online):
        assert _close(e, b, p.detach(), 0.9, 0.1)


def test_ema_update_averages_the_trainable_parameters_matched_by_name():
    torch.manual_seed(0)
    online, target = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    online[1].bias.requires_grad_(False)                                       # frozen online: not averaged
    before = {n: p.detach().clone() for n, p in target.named_parameters()}
    ema_update(target, online, 0.75)
    src = dict(online.named_parameters())
    for n, p in target.named_parameters():
        if n == "1.bias":
            assert torch.equal(p.detach(), before[n]), n
        else:
            assert _close(p.detach(), before[n], src[n].detach(), 0.75, 0.25), n
    ema_update(target, online, 0.0)                                             # decay 0: a copy of the online
    assert all(torch.equal(p, src[n]) for n, p in target.named_parameters() if n != "1.bias")
