"""Exact test doubles for the distillation trainers: a Gaussian teacher with a prompt-vector mean (eps in closed
form) and an affine per-timestep "UNet" that can represent every map the trainers must learn on it exactly."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from guidance import ddpm_alphas_cumprod


class AffineEpsNet(torch.nn.Module):
    """eps(x, t, y[, w]) = alpha[t] x + (beta[t] + gamma[t] w) mu(y), mu(y) = the prompt vector (cond reshaped).

    Call signature of UNet2DConditionModel; with guidance_dim it reads w back from the sinusoidal embedding
    (its lowest frequency, 1e-4 * 1000 w, is below pi for w < 31).
    """

    def __init__(self, channels: int = 2, size: int = 2, T: int = 1000, guidance_dim: int | None = None):
        super().__init__()
        self.config = SimpleNamespace(in_channels=channels, sample_size=size, time_cond_proj_dim=guidance_dim)
        self.alpha = torch.nn.Parameter(torch.zeros(T))
        self.beta = torch.nn.Parameter(torch.zeros(T))
        self.gamma = torch.nn.Parameter(torch.zeros(T))

    @property
    def dtype(self) -> torch.dtype:
        return self.alpha.dtype

    @property
    def device(self) -> torch.device:
        return self.alpha.device

    def forward(self, x, t, encoder_hidden_states, timestep_cond=None, **kw):
        view = (-1,) + (1,) * (x.dim() - 1)
        mu = encoder_hidden_states.reshape(x.shape)
        coef = self.beta[t]
        if timestep_cond is not None:
            half = timestep_cond.shape[1] // 2
            w = torch.atan2(timestep_cond[:, half - 1], timestep_cond[:, -1]) / 0.1
            coef = coef + self.gamma[t] * w
        return SimpleNamespace(sample=self.alpha[t].view(view) * x + coef.view(view) * mu)


class GaussianPromptTeacher:
    """Data | y ~ N(mu_y, std^2 I) with mu_y = the prompt's vector (unknown / "" -> 0); exact eps (design.md sec. 3):
    eps = s_t (x_t - a_t mu) / (a_t^2 std^2 + s_t^2). CFG with scale w is then the Gaussian of mean w mu."""

    prediction_type = "epsilon"
    vae = None
    scheduler = SimpleNamespace(config={})  # no clip_sample

    def __init__(self, vectors: dict[str, torch.Tensor], std: float = 0.5, unet=None, default_cfg: float = 1.0):
        self.vectors, self.std, self.unet, self.default_cfg = vectors, std, unet, default_cfg
        self.alphas_cumprod = ddpm_alphas_cumprod().float()
        self.num_train_timesteps = 1000
        self.dim = next(iter(vectors.values())).numel()

    def eps(self, x_t, t, cond, **kw):
        abar = self.alphas_cumprod[t].view(-1, *[1] * (x_t.dim() - 1))
        a, s = abar.sqrt(), (1 - abar).sqrt()
        return s * (x_t - a * cond.reshape(x_t.shape)) / (a * a * self.std ** 2 + s * s)

    def encode_prompt(self, prompts):
        return torch.stack([self.vectors.get(p, torch.zeros(self.dim)).reshape(1, -1) for p in prompts])

    def encode(self, rgb):
        return rgb

    def decode(self, x0):
        return x0


def toy_setup(guidance_dim: int | None = None, std: float = 0.5, default_cfg: float = 1.0):
    """A GaussianPromptTeacher over [2,2,2] images with prompts "a", "b" and a fresh AffineEpsNet as its `unet`."""
    g = torch.Generator().manual_seed(0)
    vectors = {"a": torch.randn(8, generator=g), "b": torch.randn(8, generator=g)}
    return GaussianPromptTeacher(vectors, std, AffineEpsNet(guidance_dim=guidance_dim), default_cfg)


def quiet_run(tmp_path, config):
    from dreamer.distill.trainers.toolkit import DistillRun

    return DistillRun(tmp_path, config, None, log=lambda s: None, meta={})
