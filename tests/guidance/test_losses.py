import torch

from guidance import add_noise, cfg_combine, ddpm_alphas_cumprod, score_distillation_grad, target_loss, x0_from_eps
from guidance import Ramp, sample_timesteps, weighting


def test_target_loss_gradient_is_grad_over_batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(3, 4, 5, 5, generator=g, dtype=torch.float64)
    target_loss(x, grad).backward()
    assert torch.allclose(x.grad, grad / 3, atol=1e-14, rtol=0)


def test_noise_roundtrip_and_cfg():
    abar = ddpm_alphas_cumprod()
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 3, 2, 2, generator=g, dtype=torch.float64), torch.randn(4, 3, 2, 2, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 999])
    assert torch.allclose(x0_from_eps(add_noise(x0, eps, t, abar), eps, t, abar), x0, atol=1e-9)
    u, c = torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    assert torch.allclose(cfg_combine(u, c, 1.0), c, atol=1e-6) and torch.equal(cfg_combine(u, c, 0.0), u)
    assert torch.allclose(cfg_combine(u, c, 7.5), u + 7.5 * (c - u))


def test_grad_weight_and_clip():
    w = torch.tensor([0.5, 2.0])
    e1, e0 = torch.ones(2, 1, 2, 2) * 3, torch.ones(2, 1, 2, 2)
    g = score_distillation_grad(w, e1, e0)
    assert torch.equal(g[0], torch.full((1, 2, 2), 1.0)) and torch.equal(g[1], torch.full((1, 2, 2), 4.0))
    assert score_distillation_grad(w, e1, e0, clip=1.5).max() == 1.5


def test_ramps_and_timesteps():
    assert Ramp("step", 0.98, 0.5, begin=5000)(4999) == 0.98 and Ramp("step", 0.98, 0.5, begin=5000)(5000) == 0.5
    lin = Ramp("linear", 1.0, 0.0, begin=10, until=20)
    assert lin(0) == 1.0 and abs(lin(15) - 0.5) < 1e-12 and lin(30) == 0.0
    assert abs(Ramp("cosine", 0.0, 1.0, 0, 10)(5) - 0.5) < 1e-12
    t = sample_timesteps(10000, 0.02, 0.98, 1000, torch.Generator().manual_seed(0))
    assert t.min() >= 20 and t.max() <= 980 and t.max() >= 975
    abar = ddpm_alphas_cumprod()
    assert torch.allclose(weighting("sds", abar, t), 1 - abar[t])
