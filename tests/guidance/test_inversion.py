"""guidance.inversion: the DDIM step both ways, its eta noise scale, the ISM / SDI inversion paths and delta_T."""
import torch

from guidance import ddpm_alphas_cumprod
from guidance.inversion import ddim_invert, ddim_move, ddim_sigma, ism_interval, ism_path, sdi_path

AC = ddpm_alphas_cumprod()
U = 2.0 ** -53


def test_ddim_move_there_and_back_with_one_eps_is_the_identity():
    """x' = a' (x - s e) / a + s' e and back: algebraically x; float64 to a few ulps of |x| + |e| / a'."""
    g = torch.Generator().manual_seed(0)
    x, e = torch.randn(2, 3, 4, generator=g, dtype=torch.float64), torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    t1, t2 = torch.tensor([10, 300]), torch.tensor([700, 301])
    back = ddim_move(ddim_move(x, e, t1, t2, AC), e, t2, t1, AC)
    assert (back - x).abs().max() <= 64 * U * (x.abs().max() + e.abs().max()) / AC[700].sqrt()
    clean = ddim_move(x, e, torch.tensor([-1, -1]), t2, AC)                     # from clean data: a' x + s' e
    a2, s2 = AC[t2].sqrt().view(-1, 1, 1), (1 - AC[t2]).sqrt().view(-1, 1, 1)
    assert torch.allclose(clean, a2 * x + s2 * e, rtol=0, atol=8 * U * 4)


def test_ddim_sigma_is_the_posterior_std_and_zero_from_clean_data():
    sig = ddim_sigma(torch.tensor([200, -1]), torch.tensor([500, 100]), AC, torch.zeros(2, 1, dtype=torch.float64))
    a, b = AC[200], AC[500]
    assert torch.allclose(sig[0, 0], ((1 - a) / (1 - b) * (1 - b / a)).sqrt(), rtol=4 * U) and sig[1, 0] == 0


def test_ddim_invert_skips_samples_and_steps_that_do_not_move():
    calls = []

    def eps_fn(x, t):
        calls.append(t.tolist())
        return torch.zeros_like(x)

    x = torch.ones(2, 1, dtype=torch.float64)
    path = [torch.tensor([0, 0]), torch.tensor([100, 0]), torch.tensor([100, 0]), torch.tensor([200, 50])]
    out = ddim_invert(eps_fn, x, path, AC)
    assert calls == [[0, 0], [100, 0]]                                         # the all-still step made no call
    assert torch.allclose(out[:, 0], torch.stack([AC[200] / AC[0], AC[50] / AC[0]]).sqrt(), rtol=8 * U)


def test_ism_interval_follows_lucid_dreamers_warm_up_rate():
    """delta_T = 80 + ceil(r (100 - 80)), t_max = 0.5 + r (0.98 - 0.5)."""
    assert [ism_interval(100, 80, tm, 0.98, 0.5) for tm in (0.98, 1.0, 0.8, 0.5, 0.2)] == [100, 100, 93, 80, 80]
    ramp = [0.98 + (0.5 - 0.98) * i / 300 for i in range(301)]                 # a loop's float ramp: r = 1 - i/300
    assert [ism_interval(100, 80, tm, 0.98, 0.5) for tm in ramp] == [80 + -(-(300 - i) * 20 // 300) for i in range(301)]


def test_ism_and_sdi_paths():
    s = torch.tensor([0, 150, 450, 999])
    assert torch.stack(ism_path(s, 200, 5), 1).tolist() == [[0] * 6, [0, 150, 150, 150, 150, 150],
                                                           [0, 200, 400, 450, 450, 450], [0, 200, 400, 600, 800, 999]]
    t = torch.tensor([150, 999])
    assert torch.stack(sdi_path(t, 10, 1000), 1).tolist() == [[-1, 99] + [150] * 10,
                                                             [-1, 99, 199, 299, 399, 499, 599, 699, 799, 899, 999, 999]]
