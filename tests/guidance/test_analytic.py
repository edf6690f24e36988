import math

import torch

from guidance import MixtureTeacher, add_noise, ddpm_alphas_cumprod, finite_set_teacher, gaussian_teacher, x0_from_eps


def _log_density(x_t, t, means, std, abar):
    a, s = abar[t].sqrt(), (1 - abar[t]).sqrt()
    var = a * a * std ** 2 + s * s
    d = x_t.numel()
    lp = [-(x_t - a * m).pow(2).sum() / (2 * var) - 0.5 * d * torch.log(2 * math.pi * var) for m in means]
    return torch.logsumexp(torch.stack(lp), 0) - math.log(len(means))


def test_gaussian_closed_form():
    mu = torch.randn(3, 4, 4, dtype=torch.float64)
    T = gaussian_teacher(mu, 0.3)
    abar = T.alphas_cumprod
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    t = torch.tensor([50, 700])
    a, s = abar[t].sqrt().view(2, 1, 1, 1), (1 - abar[t]).sqrt().view(2, 1, 1, 1)
    expect = s * (x - a * mu) / (a * a * 0.09 + s * s)
    assert torch.allclose(T.eps(x, t, T.encode_prompt(["", ""])), expect, atol=1e-12)


def test_mixture_eps_equals_minus_sigma_times_autograd_score():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
    T = MixtureTeacher(means, 0.2)
    for t in (5, 300, 900):
        x = torch.randn(2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
        score, = torch.autograd.grad(_log_density(x, t, means, 0.2, T.alphas_cumprod), x)
        eps = T.eps(x.detach()[None], torch.tensor([t]), T.encode_prompt([""]))[0]
        assert torch.allclose(eps, -(1 - T.alphas_cumprod[t]).sqrt() * score, atol=1e-10)


def test_finite_set_denoiser_recovers_the_image_at_low_noise_and_conditioning_selects_mode():
    imgs = torch.rand(4, 3, 5, 5, dtype=torch.float64)
    T = finite_set_teacher(imgs)
    abar = ddpm_alphas_cumprod()
    t = torch.tensor([20])
    x_t = add_noise(imgs[2:3], torch.randn(1, 3, 5, 5, dtype=torch.float64), t, abar)
    x0 = x0_from_eps(x_t, T.eps(x_t, t, T.encode_prompt([""])), t, abar)
    assert torch.allclose(x0, imgs[2:3], atol=1e-6)
    # conditioning on "mode 1" at high noise gives mode 1's image exactly
    t = torch.tensor([990])
    x_t = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    x0 = x0_from_eps(x_t, T.eps(x_t, t, T.encode_prompt(["mode 1"])), t, abar)
    assert torch.allclose(x0, imgs[1:2], atol=1e-8)
