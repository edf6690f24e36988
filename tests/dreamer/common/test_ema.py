"""dreamer.common.ema: theta_ema <- decay theta_ema + (1 - decay) theta, in place, over tensor lists or over a
module's trainable parameters matched by name."""
import torch
from torch import nn

from dreamer.common.ema import ema_lerp_, ema_update


def test_ema_lerp_moves_each_tensor_in_place_towards_its_online_copy():
    g = torch.Generator().manual_seed(0)
    ema = [torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)]
    online = [torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True),
              torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)]
    before, ids = [e.clone() for e in ema], [id(e) for e in ema]
    ema_lerp_(ema, online, 0.9)
    assert [id(e) for e in ema] == ids                                         # in place
    for e, b, p in zip(ema, before, online):
        assert torch.allclose(e, 0.9 * b + 0.1 * p.detach(), rtol=0, atol=1e-15)
        assert not e.requires_grad                                              # no graph through the average
    ema_lerp_(ema, online, 1.0)                                                 # decay 1: frozen
    ema_lerp_([], [], 0.5)                                                      # nothing to average: no-op
    for e, b, p in zip(ema, before, online):
        assert torch.allclose(e, 0.9 * b + 0.1 * p.detach(), rtol=0, atol=1e-15)


def test_ema_update_averages_the_trainable_parameters_matched_by_name():
    torch.manual_seed(0)
    online, target = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    online[1].bias.requires_grad_(False)                                       # frozen online: not averaged
    before = {n: p.detach().clone() for n, p in target.named_parameters()}
    ema_update(target, online, 0.75)
    src = dict(online.named_parameters())
    for n, p in target.named_parameters():
        want = before[n] if n == "1.bias" else 0.75 * before[n] + 0.25 * src[n].detach()
        assert torch.allclose(p.detach(), want, rtol=0, atol=1e-6), n
    ema_update(target, online, 0.0)                                             # decay 0: a copy of the online
    assert all(torch.equal(p, src[n]) for n, p in target.named_parameters() if n != "1.bias")
