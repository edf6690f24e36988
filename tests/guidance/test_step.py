"""Guidance methods on analytic teachers: directions, identities and the DMD zero-expectation property."""
import pytest
import torch

from guidance import GuidanceConfig, MixtureTeacher, Prompts, gaussian_teacher, guidance_step, sample_timesteps

D = (2, 4, 4)


def _two_modes():
    g = torch.Generator().manual_seed(0)
    means = torch.stack([torch.full(D, 0.6), torch.full(D, -0.6)]).double() + 0.1 * torch.randn(2, *D, generator=g, dtype=torch.float64)
    return MixtureTeacher(means, 0.1, names=["mode 0", "mode 1"])


def _prompts(T, B, prompt="mode 0"):
    return Prompts(T.encode_prompt([prompt] * B), T.encode_prompt([""] * B), T.encode_prompt(["negative"] * B))


def _fitted_gaussian(x):
    """The exact score of a Gaussian fitted to particles x [B,*D] (the variational score of VSD / DMD)."""
    return MixtureTeacher(x.mean(0, keepdim=True).detach(), float(x.std().detach()))


@pytest.mark.parametrize("method", ["sds", "nfsd", "vsd"])
def test_gradient_descent_moves_particles_to_the_data_mean(method):
    """Gaussian teacher N(mu, 0.1^2): descent on free particles shrinks their distance to mu."""
    mu = torch.linspace(-0.5, 0.5, 32, dtype=torch.float64).reshape(D)
    T = gaussian_teacher(mu, 0.1)
    g = torch.Generator().manual_seed(1)
    x = (1.5 * torch.randn(8, *D, generator=g, dtype=torch.float64)).requires_grad_(True)
    config = GuidanceConfig(method=method, cfg_scale=7.5)
    opt = torch.optim.SGD([x], lr=0.5 * 8)
    d0 = (x - mu).flatten(1).norm(dim=1).mean().item()
    for _ in range(200):
        t = sample_timesteps(8, config.t_min, config.t_max, 1000, g)
        noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
        aux = _fitted_gaussian(x) if method == "vsd" else None
        out = guidance_step(T, x, _prompts(T, 8, ""), t, noise, config, aux=aux)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    d1 = (x - mu).flatten(1).norm(dim=1).mean().item()
    assert d1 < 0.25 * d0, (method, d0, d1)


def test_sds_cfg_pulls_particles_to_the_prompted_mode(method="sds"):
    T = _two_modes()
    g = torch.Generator().manual_seed(1)
    x = (0.3 * torch.randn(8, *D, generator=g, dtype=torch.float64)).requires_grad_(True)
    config = GuidanceConfig(method=method, cfg_scale=7.5)
    opt = torch.optim.SGD([x], lr=0.2 * 8)
    for _ in range(100):
        t = sample_timesteps(8, config.t_min, config.t_max, 1000, g)
        out = guidance_step(T, x, _prompts(T, 8, "mode 1"), t, torch.randn(x.shape, generator=g, dtype=torch.float64),
                            config)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    d = [(x - T.means[k]).flatten(1).norm(dim=1) for k in (0, 1)]
    assert bool((d[1] < 0.5 * d[0]).all()), (d[0], d[1])


def _draw(seed: int, B: int = 4):
    """Free particles x [B,*D] (requires grad), timesteps t [B] and noise [B,*D] from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, *D, generator=g, dtype=torch.float64, requires_grad=True)
    t = sample_timesteps(B, 0.02, 0.98, 1000, g)
    return x, t, torch.randn(x.shape, generator=g, dtype=torch.float64)


def test_vsd_with_an_auxiliary_returning_the_true_noise_equals_sds():
    T = _two_modes()
    x, t, noise = _draw(2)

    class TrueNoise:
        def eps(self, x_t, t, cond, **kw):
            return noise

    sds = guidance_step(T, x, _prompts(T, 4), t, noise, GuidanceConfig(method="sds", cfg_scale=7.5))
    vsd = guidance_step(T, x, _prompts(T, 4), t, noise, GuidanceConfig(method="vsd", cfg_scale=7.5), aux=TrueNoise())
    assert torch.equal(sds.grad, vsd.grad) and torch.equal(sds.loss, vsd.loss)


def test_nfsd_baseline_switches_at_t200():
    T = _two_modes()
    x = torch.zeros(2, *D, dtype=torch.float64)
    t = torch.tensor([150, 600])
    noise = torch.randn(x.shape, dtype=torch.float64)
    out = guidance_step(T, x, _prompts(T, 2), t, noise, GuidanceConfig(method="nfsd", cfg_scale=7.5))
    assert torch.equal(out.eps_baseline[0], torch.zeros(D, dtype=torch.float64))
    neg = T.eps(out.x_t[1:], t[1:], T.encode_prompt(["negative"]))
    assert torch.allclose(out.eps_baseline[1:], neg, atol=1e-12)


@pytest.mark.parametrize("method", ["dmd", "diff_instruct"])
def test_distribution_matching_gradient_has_zero_mean_on_teacher_samples(method):
    """Samples from the teacher with a fake score fitted to them: E[grad] ~ 0; shifted samples: E[grad] ~ shift."""
    mu, std, n = torch.full(D, 0.3, dtype=torch.float64), 0.5, 4096
    T = gaussian_teacher(mu, std)
    g = torch.Generator().manual_seed(3)
    config = GuidanceConfig(method=method, cfg_scale=1.0)

    def mean_grad(shift):
        x = mu + shift + std * torch.randn(n, *D, generator=g, dtype=torch.float64)
        t = sample_timesteps(n, 0.02, 0.98, 1000, g)
        noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
        out = guidance_step(T, x, _prompts(T, n, ""), t, noise, config, aux=_fitted_gaussian(x))
        per = out.grad.flatten(1).mean(1)  # [n]
        return per.mean().item(), per.std().item() / n ** 0.5

    # The fake score is fitted to n samples, so its mean is off by ~std/sqrt(n) per pixel: E[grad] is ~0 to that
    # order, while a 0.4 shift (about 50x that error) gives a clearly positive mean gradient (descent undoes it).
    m0, se0 = mean_grad(0.0)
    m1, se1 = mean_grad(0.4)
    assert m1 > 10 * se1, (m1, se1)
    assert abs(m0) < 0.05 * m1, (m0, m1)


def test_unknown_method_and_missing_pieces_are_clear_errors():
    T = _two_modes()
    x = torch.zeros(1, *D, dtype=torch.float64)
    t, n = torch.tensor([500]), torch.zeros(1, *D, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown guidance method 'sdss'"):
        guidance_step(T, x, _prompts(T, 1), t, n, GuidanceConfig(method="sdss"))
    with pytest.raises(ValueError, match="needs an auxiliary"):
        guidance_step(T, x, _prompts(T, 1), t, n, GuidanceConfig(method="vsd"))
    with pytest.raises(ValueError, match="guidance weighting must be one of sds, uniform, snr_inv, got 'snr'"):
        guidance_step(T, x, _prompts(T, 1), t, n, GuidanceConfig(weighting="snr"))


def test_choice_fields_are_literals():
    """GuidanceConfig's choice fields are Literal annotations (what the config loader checks); `method` lists the
    keys of METHODS, the others are CHOICES (what check_config checks)."""
    from typing import get_args, get_type_hints

    from guidance.step import CHOICES, METHODS

    hints = get_type_hints(GuidanceConfig)
    assert get_args(hints["method"]) == tuple(METHODS)
    assert set(CHOICES) == {"cfg_mode", "weighting", "t_sampling", "aux_cfg", "aux_target", "aux_prompt"}
    assert CHOICES["weighting"] == ("sds", "uniform", "snr_inv") and CHOICES["aux_target"] == ("eps", "native")


class _LinearAux:
    """eps_aux = a * x_t with one learnable scalar; records how it was trained."""

    def __init__(self, camera_dropout=0.0):
        self.a = torch.nn.Parameter(torch.tensor(0.3, dtype=torch.float64))
        self.opt = torch.optim.SGD([self.a], lr=0.1)
        self.camera_dropout, self.calls = camera_dropout, []

    def eps(self, x_t, t, cond, camera=None):
        return self.a * x_t

    def drops_camera(self, generator=None):
        return torch.rand((), generator=generator).item() < self.camera_dropout

    def apply_loss(self, loss):
        self.calls.append("shared")
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def train_step(self, x0, cond, camera=None, generator=None):
        if camera is not None and self.drops_camera(generator):  # as LoraScore.train_step
            camera = None
        self.calls.append("separate" if camera is not None else "separate-no-camera")


def test_shared_pass_gives_the_auxiliary_its_denoising_loss_on_the_same_draw():
    T = _two_modes()
    x, t, noise = _draw(3)
    aux = _LinearAux()
    config = GuidanceConfig(method="vsd", cfg_scale=7.5)
    plain = guidance_step(T, x, _prompts(T, 4), t, noise, config, aux=aux)
    fit = guidance_step(T, x, _prompts(T, 4), t, noise, config, aux=aux, aux_fit=True)
    assert plain.aux_loss is None and torch.equal(plain.grad, fit.grad)  # same guidance either way
    expected = ((aux.a * fit.x_t) - noise).pow(2).mean()
    assert fit.aux_loss.requires_grad and torch.allclose(fit.aux_loss, expected, rtol=1e-12)
    (da,) = torch.autograd.grad(fit.aux_loss, aux.a)
    assert torch.allclose(da, (2 * (aux.a * fit.x_t - noise) * fit.x_t).mean(), rtol=1e-12)


@pytest.mark.parametrize("shared,dropout,updates,expected", [
    (True, 0.0, 3, ["shared", "separate", "separate"]),
    (False, 0.0, 2, ["separate", "separate"]),
    (True, 1.0, 2, ["separate-no-camera", "separate-no-camera"]),  # camera dropped: no shared fit that step
])
def test_score_distillation_step_auxiliary_updates(shared, dropout, updates, expected):
    from guidance import score_distillation_step

    T = _two_modes()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, *D, generator=g, dtype=torch.float64, requires_grad=True)
    aux = _LinearAux(camera_dropout=dropout)
    a0 = aux.a.item()
    config = GuidanceConfig(method="vsd", cfg_scale=7.5, aux_updates=updates, aux_shared_pass=shared)
    score_distillation_step(T, x, _prompts(T, 2), config, g, aux=aux, camera=torch.zeros(2, 16))
    assert aux.calls == expected
    assert (aux.a.item() != a0) == ("shared" in expected)
