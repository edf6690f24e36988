"""Recipe fidelity vs the reference code: inclusive t draws, EDM log-normal t, the auxiliary's loss space (v-target,
threestudio), camera CFG and the view-independent LoRA prompt."""
import pytest
import torch

from guidance import (GuidanceConfig, Prompts, ddpm_alphas_cumprod, eps_from_output, gaussian_teacher,
                      sample_timesteps, score_distillation_step)
from guidance.aux_scores import denoise_loss
from guidance.noise_schedule import sample_timesteps_lognormal


def test_sample_timesteps_is_inclusive_at_both_ends():
    g = torch.Generator().manual_seed(0)
    t = sample_timesteps(20000, 0.02, 0.98, 1000, g)
    assert int(t.min()) == 20 and int(t.max()) == 980                 # U{20, ..., 980}: 961 values
    assert len(torch.unique(t)) == 961
    assert int(sample_timesteps(5000, 0.5, 1.0, 1000, g).max()) == 999  # t_max = 1 -> the last index, never T
    assert torch.equal(sample_timesteps(4, 0.3, 0.3, 1000, g), torch.full((4,), 300))


def test_lognormal_timesteps_pick_the_nearest_sigma_and_respect_the_range():
    ac = ddpm_alphas_cumprod(1000)
    sig = ((1 - ac) / ac).sqrt()
    g = torch.Generator().manual_seed(1)
    t = sample_timesteps_lognormal(4000, 0.0, 1.0, ac, -1.2, 1.2, g)
    ln = (torch.randn(4000, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 1.2 - 1.2).exp()
    brute = (sig[None, :] - ln[:, None]).abs().argmin(1)              # nearest sigma_t, by brute force
    assert torch.equal(t, brute)
    wide = sample_timesteps_lognormal(4000, 0.0, 1.0, ac, 0.0, 4.0, torch.Generator().manual_seed(1))
    t2 = sample_timesteps_lognormal(4000, 0.02, 0.98, ac, 0.0, 4.0, torch.Generator().manual_seed(1))
    assert int(t2.min()) == 20 and int(t2.max()) == 980 and torch.equal(t2, wide.clamp(20, 980))


def test_native_loss_space_is_the_v_target_mse():
    """threestudio trains the VSD LoRA on ||v_hat - v||^2 for v-prediction teachers; eps space is abar_t times it."""
    ac = ddpm_alphas_cumprod(1000).float()
    g = torch.Generator().manual_seed(2)
    x0, noise, v_hat = (torch.randn(6, 4, 8, 8, generator=g) for _ in range(3))
    t = torch.tensor([0, 10, 200, 500, 800, 999])
    a, s = ac[t].sqrt().view(-1, 1, 1, 1), (1 - ac[t]).sqrt().view(-1, 1, 1, 1)
    x_t = a * x0 + s * noise
    v = a * noise - s * x0                                            # Salimans & Ho 2022
    eps_hat = eps_from_output(v_hat, x_t, t, ac, "v_prediction")
    want = (v_hat - v).pow(2).flatten(1).mean(1).mean()
    got = denoise_loss(eps_hat, noise, t, ac, "v_prediction", "native")
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    eps_space = denoise_loss(eps_hat, noise, t, ac, "v_prediction", "eps")
    torch.testing.assert_close(eps_space, (ac[t] * (v_hat - v).pow(2).flatten(1).mean(1)).mean(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(denoise_loss(eps_hat, noise, t, ac, "epsilon", "native"), eps_space)  # eps: same


class _Aux:
    """An auxiliary score with closed-form outputs: eps = c0 + sum(cond) + [camera] 10 * camera.sum()."""

    def __init__(self):
        self.trained_on = []

    def eps(self, x_t, t, cond, camera=None, **kw):
        out = torch.zeros_like(x_t) + cond.flatten(1).sum(1).view(-1, 1, 1, 1)
        return out if camera is None else out + 10 * camera.sum(1).view(-1, 1, 1, 1)

    def train_step(self, x0, cond, camera=None, generator=None):
        self.trained_on.append(cond.clone())

    def drops_camera(self, generator=None):
        return False

    def apply_loss(self, loss):
        raise AssertionError("the shared pass must not be used when the LoRA has its own prompt")


def _setup(**kw):
    teacher = gaussian_teacher(torch.zeros(4, 1, 1), 1.0)
    x0 = torch.zeros(2, 4, 1, 1)
    cond, uncond, base = torch.ones(2, 1, 3), torch.zeros(2, 1, 3), torch.full((2, 1, 3), 2.0)
    config = GuidanceConfig(method="vsd", cfg_scale=1.0, aux_updates=1, **kw)
    return teacher, x0, cond, uncond, base, config


def test_camera_cfg_and_the_view_independent_lora_prompt():
    teacher, x0, cond, uncond, base, config = _setup(aux_cfg="camera", aux_cfg_scale=3.0)
    aux, cam = _Aux(), torch.ones(2, 16) * 0.1
    out = score_distillation_step(teacher, x0, Prompts(cond, uncond, aux=base), config, torch.Generator(), aux=aux,
                                  camera=cam)
    # eps_u + 3 (eps_cam - eps_u) on the LoRA's prompt (sum 6): 6 + 3 * 10 * 1.6
    torch.testing.assert_close(out.eps_baseline, torch.full_like(x0, 6 + 3 * 16.0))
    assert len(aux.trained_on) == 1 and torch.equal(aux.trained_on[0], base)
    # text CFG (the default): the same scale over cond vs uncond, camera on both
    teacher, x0, cond, uncond, base, config = _setup(aux_cfg="text", aux_cfg_scale=3.0)
    out = score_distillation_step(teacher, x0, Prompts(cond, uncond), config, torch.Generator(), aux=_Aux(), camera=cam)
    torch.testing.assert_close(out.eps_baseline, torch.full_like(x0, 16.0 + 3 * 3.0))


@pytest.mark.parametrize("bad", [{"aux_cfg": "both"}, {"aux_target": "x0"}, {"t_sampling": "cosine"}])
def test_bad_guidance_options_are_refused(bad):
    teacher, x0, cond, uncond, _, config = _setup(**bad)
    with pytest.raises(ValueError, match=next(iter(bad))):
        score_distillation_step(teacher, x0, Prompts(cond, uncond), config, torch.Generator(), aux=_Aux())
