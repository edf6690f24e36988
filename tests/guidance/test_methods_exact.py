"""ISM, CSD, SDI and Perp-Neg against their papers' equations on per-prompt Gaussian teachers, in float64.

Data given prompt k is N(mu_k, SIGMA^2 I), so eps*(x, t) = s_t (x - a_t mu_k) / v_t, v_t = a_t^2 SIGMA^2 + s_t^2, and
one deterministic DDIM step between noise levels i -> j with that exact eps is affine in closed form:
x' - a_j mu = (x - a_i mu) (a_i a_j SIGMA^2 + s_i s_j) / v_i. CFG of two such Gaussians is the Gaussian score with
mean mu_u + g (mu_y - mu_u). The expected gradients below are built from these formulas alone (no library call).

Tolerances: each compared value is a chain of at most ~40 float64 operations per DDIM step (both here and in the
library), each rounding by at most u = 2^-53 relative to the magnitudes it acts on (`scale`); the affine steps
amplify an earlier error by at most sqrt(v_j / v_i) <= 1 / SIGMA = 2. So |got - expected| <= 2 * 40 * (steps + 3) *
2 * u * scale (a first-order bound, Higham 2002 ch. 3), while any wrong term moves the result by >= 1e-3 * scale.
"""
import math

import pytest
import torch

from guidance import GuidanceConfig, MixtureTeacher, Prompts, guidance_step, score_distillation_step

U = 2.0 ** -53
SIGMA = 0.5
D = (2, 3, 3)
NAMES = ["", "y", "neg", "front", "side"]


@pytest.fixture(scope="module")
def T():
    g = torch.Generator().manual_seed(0)
    return MixtureTeacher(0.6 * torch.randn(len(NAMES), *D, generator=g, dtype=torch.float64), SIGMA, names=NAMES)


def _mu(T, name):
    return T.means[NAMES.index(name)]


def _ab(T, t: int):
    """(a_t, s_t) as python floats; t < 0 is clean data."""
    if t < 0:
        return 1.0, 0.0
    abar = float(T.alphas_cumprod[t])
    return math.sqrt(abar), math.sqrt(1 - abar)


def _eps(T, x, mu, t: int):
    a, s = _ab(T, t)
    return s * (x - a * mu) / (a * a * SIGMA ** 2 + s * s)


def _ddim(T, x, mu, i: int, j: int):
    """Exact DDIM step i -> j (i >= 0) for N(mu, SIGMA^2) data, closed form."""
    a, s = _ab(T, i)
    a2, s2 = _ab(T, j)
    return a2 * mu + (x - a * mu) * (a * a2 * SIGMA ** 2 + s * s2) / (a * a * SIGMA ** 2 + s * s)


def _snr_inv(T, t: int):
    a, s = _ab(T, t)
    return s / a


def _close(got, expected, scale, steps):
    bound = 2 * 40 * (steps + 3) * 2 * U * scale
    err = (got - expected).abs().max().item()
    assert err <= bound, (err, bound)


def _draw(seed, B=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, *D, generator=g, dtype=torch.float64),
            torch.randn(B, *D, generator=g, dtype=torch.float64))


def _prompts(T, B, **kw):
    return Prompts(T.encode_prompt(["y"] * B), T.encode_prompt([""] * B), T.encode_prompt(["neg"] * B), **kw)


# ----------------------------------------------------------------------------------------------- ISM
@pytest.mark.parametrize("t_max,delta", [(0.98, 100), (0.8, 93), (0.5, 80), (0.3, 80)])
def test_ism_is_the_interval_score_with_unconditional_ddim_inversion(T, t_max, delta):
    """LucidDreamer: grad = w(t) (eps_cfg(x_t, y, t) - eps(x_s, null, s)), s = t - delta_T; x_s from x0 noised to
    max(s - 5 * 200, 0) with the step's noise, then DDIM-inverted without a prompt in steps of 200 up to s; x_t one
    more inversion step. delta_T = 80 + ceil(r * 20), r = (t_max - 0.5) / (0.98 - 0.5) clamped to [0, 1]."""
    x0, noise = _draw(1)
    t = torch.tensor([150, 500, 950])
    config = GuidanceConfig(method="ism", cfg_scale=7.5, weighting="snr_inv")
    out = guidance_step(T, x0, _prompts(T, 3), t, noise, config, t_max=t_max)
    mu_u, mu_y = _mu(T, ""), _mu(T, "y")
    for b, tb in enumerate(t.tolist()):
        s = max(tb - delta, 0)
        start = max(s - 200 * 5, 0)
        levels = list(range(start, s, 200)) + [s]
        a0, s0 = _ab(T, start)
        x = a0 * x0[b] + s0 * noise[b]
        for i, j in zip(levels, levels[1:]):
            x = _ddim(T, x, mu_u, i, j)
        eps_s = _eps(T, x, mu_u, s)
        x_t = _ddim(T, x, mu_u, s, tb)
        eps_cfg = _eps(T, x_t, mu_u, tb) + 7.5 * (_eps(T, x_t, mu_y, tb) - _eps(T, x_t, mu_u, tb))
        w = _snr_inv(T, tb)
        scale = w * (eps_cfg.abs().max() + eps_s.abs().max() + x_t.abs().max()).item()
        _close(out.x_t[b], x_t, x_t.abs().max().item(), len(levels))
        _close(out.eps_baseline[b], eps_s, eps_s.abs().max().item(), len(levels))
        _close(out.grad[b], w * (eps_cfg - eps_s), scale, len(levels))


# ----------------------------------------------------------------------------------------------- CSD
@pytest.mark.parametrize("w2", [0.0, 2.5])
def test_csd_is_the_classifier_score_minus_the_negative_one(T, w2):
    """Yu et al.: grad = w(t) [s (eps(x_t; y) - eps(x_t)) - w2 (eps(x_t; y_neg) - eps(x_t))], x_t = a x0 + s eps."""
    x0, noise = _draw(2)
    t = torch.tensor([40, 400, 900])
    config = GuidanceConfig(method="csd", cfg_scale=20.0, weighting="sds", csd_negative_scale=w2)
    out = guidance_step(T, x0, _prompts(T, 3), t, noise, config)
    for b, tb in enumerate(t.tolist()):
        a, s = _ab(T, tb)
        x_t = a * x0[b] + s * noise[b]
        e_u, e_y, e_n = (_eps(T, x_t, _mu(T, k), tb) for k in ("", "y", "neg"))
        w = 1 - a * a
        expected = w * (20.0 * (e_y - e_u) - w2 * (e_n - e_u))
        _close(out.eps_baseline[b], e_u, e_u.abs().max().item(), 0)
        _close(out.grad[b], expected, w * (20 + w2 + 1) * max(e.abs().max().item() for e in (e_u, e_y, e_n)), 0)


def test_csd_negative_term_needs_a_negative_prompt(T):
    x0, noise = _draw(2)
    config = GuidanceConfig(method="csd", csd_negative_scale=1.0)
    with pytest.raises(ValueError, match="needs a negative prompt"):
        guidance_step(T, x0, Prompts(T.encode_prompt(["y"] * 3), T.encode_prompt([""] * 3)), torch.tensor([5, 6, 7]),
                      noise, config)


# ----------------------------------------------------------------------------------------------- SDI
@pytest.mark.parametrize("eta", [0.0, 0.3])
def test_sdi_noise_is_conditional_ddim_inversion_of_x0(T, eta):
    """Lukoianov et al.: SDS with its noise replaced by kappa = (x_t - a_t x0) / s_t, x_t from DDIM inversion of x0
    (from clean data through the 10-step grid 99, 199, ... below t, then to t) at CFG -s; grad = w (eps_cfg(x_t) -
    kappa). eta > 0: each inversion step adds eta * sigma_DDIM * z (z: the generator's next N(0, I) draw)."""
    x0, noise = _draw(3)
    t = torch.tensor([150, 520, 999])
    config = GuidanceConfig(method="sdi", cfg_scale=7.5, weighting="snr_inv", sdi_eta=eta)
    out = guidance_step(T, x0, _prompts(T, 3), t, noise, config, generator=torch.Generator().manual_seed(7))
    mu_u, mu_y = _mu(T, ""), _mu(T, "y")
    m_inv, m_fwd = mu_u - 7.5 * (mu_y - mu_u), mu_u + 7.5 * (mu_y - mu_u)
    grid = [round(1000 * (k + 1) / 10) - 1 for k in range(10)]
    levels = [[-1] + [g for g in grid if g < tb] + [tb] for tb in t.tolist()]
    g = torch.Generator().manual_seed(7)
    zs = [torch.randn(3, *D, generator=g, dtype=torch.float64) for _ in range(max(map(len, levels)) - 1)] if eta else []
    for b, tb in enumerate(t.tolist()):
        lv = levels[b]
        a1, s1 = _ab(T, lv[1])
        x = a1 * x0[b] + s1 * _eps(T, x0[b], m_inv, 0)          # from clean data: x0_hat = x0, eps taken at t = 0
        for k, (i, j) in enumerate(zip(lv[1:], lv[2:]), start=1):
            x = _ddim(T, x, m_inv, i, j)
            if eta:
                (ai, si), (aj, sj) = _ab(T, i), _ab(T, j)
                x = x + eta * math.sqrt(si * si / (sj * sj) * (1 - aj * aj / (ai * ai))) * zs[k][b]
        a, s = _ab(T, tb)
        kappa = (x - a * x0[b]) / s
        eps_cfg = _eps(T, x, m_fwd, tb)
        w = _snr_inv(T, tb)
        scale = w * (eps_cfg.abs().max() + kappa.abs().max() + x.abs().max() / s).item()
        _close(out.x_t[b], x, x.abs().max().item(), len(lv))
        _close(out.grad[b], w * (eps_cfg - kappa), scale, len(lv))


def test_anneal_puts_every_row_at_the_steps_t_max(T):
    x0, _ = _draw(4)
    config = GuidanceConfig(method="sds", cfg_scale=1.0, t_sampling="anneal", t_min=0.2)
    g = torch.Generator().manual_seed(0)
    for t_max, t in ((0.6, 600), (1.0, 999), (0.1, 200)):        # clamped to [t_min T, T - 1] as sample_timesteps
        out = score_distillation_step(T, x0, _prompts(T, 3), config, g, t_max=t_max)
        a, s = _ab(T, t)
        assert torch.allclose(out.w, torch.full((3,), 1 - a * a, dtype=torch.float64), rtol=0, atol=4 * U)


# ----------------------------------------------------------------------------------------------- Perp-Neg
def _perp(a, b):
    return a - (a * b).sum() / (b * b).sum() * b


@pytest.mark.parametrize("method", ["sds", "nfsd", "csd", "ism", "sdi", "vsd"])
def test_perp_neg_is_the_eps_cfg_of_every_method(T, method):
    """Armandpour et al.: eps = eps_u + s (d_y - sum_k w_k perp(d_k, d_y)), d = eps(x_t; .) - eps(x_t; null), perp
    the component orthogonal to d_y (per image), at the x_t each method uses."""
    x0, noise = _draw(5)
    t = torch.tensor([100, 450, 800])
    views = torch.stack([T.encode_prompt(["front", "side"])] * 3)               # [B,2,1,K]
    weights = torch.tensor([[0.0, 0.0], [1.5, 0.2], [0.3, 2.0]], dtype=torch.float64)
    config = GuidanceConfig(method=method, cfg_scale=7.5, cfg_mode="perp_neg")
    aux = MixtureTeacher(x0.mean(0, keepdim=True), 0.7) if method == "vsd" else None
    out = guidance_step(T, x0, _prompts(T, 3, views=views, view_weights=weights), t, noise, config, aux=aux,
                        generator=torch.Generator().manual_seed(1))
    for b, tb in enumerate(t.tolist()):
        x_t = out.x_t[b]
        e = {k: _eps(T, x_t, _mu(T, k), tb) for k in ("", "y", "front", "side")}
        d_y = e["y"] - e[""]
        acc = d_y - weights[b, 0] * _perp(e["front"] - e[""], d_y) - weights[b, 1] * _perp(e["side"] - e[""], d_y)
        scale = 7.5 * (1 + weights[b].sum().item()) * 4 * max(v.abs().max().item() for v in e.values())
        _close(out.eps_cfg[b], e[""] + 7.5 * acc, scale, 0)


def test_perp_neg_with_zero_weights_is_standard_cfg_bit_for_bit(T):
    x0, noise = _draw(6)
    t = torch.tensor([100, 450, 800])
    views = torch.stack([T.encode_prompt(["front", "side"])] * 3)
    p = _prompts(T, 3, views=views, view_weights=torch.zeros(3, 2, dtype=torch.float64))
    a = guidance_step(T, x0, p, t, noise, GuidanceConfig(cfg_scale=7.5, cfg_mode="perp_neg"))
    b = guidance_step(T, x0, p, t, noise, GuidanceConfig(cfg_scale=7.5))
    assert torch.equal(a.grad, b.grad)


def test_perp_neg_needs_views_and_names_are_checked(T):
    x0, noise = _draw(6)
    t = torch.tensor([100, 450, 800])
    with pytest.raises(ValueError, match="needs the negative view prompts"):
        guidance_step(T, x0, _prompts(T, 3), t, noise, GuidanceConfig(cfg_mode="perp_neg"))
    with pytest.raises(ValueError, match="cfg_mode must be one of standard, perp_neg"):
        guidance_step(T, x0, _prompts(T, 3), t, noise, GuidanceConfig(cfg_mode="perp"))
    with pytest.raises(ValueError, match="t_sampling must be one of uniform, lognormal, anneal"):
        score_distillation_step(T, x0, _prompts(T, 3), GuidanceConfig(t_sampling="fixed"))
