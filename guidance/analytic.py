"""Analytic teachers with exact scores: isotropic Gaussian mixtures (a Gaussian, a finite image set, 2-D toy MoGs)."""
from __future__ import annotations

import torch

from .noise_schedule import ddpm_alphas_cumprod


class MixtureTeacher:
    """Data = sum_k w_k N(mu_k, std^2 I); eps* exact: eps = s_t * sum_k r_k (x_t - a_t mu_k) / (a_t^2 std^2 + s_t^2).

    std = 0 gives the exact denoiser of a finite set; K = 1 a Gaussian (closed form of design.md section 3).
    Conditioning: cond [B,1,K] is a non-negative mask over components (one-hot for a named mode,
    all ones for the unconditional model); `encode_prompt` maps names to masks, anything else to all ones. A
    one-hot mask gives exactly that mode's Gaussian score (per-prompt Gaussians: name "" the unconditional one).
    """

    def __init__(self, means: torch.Tensor, std: float, weights: torch.Tensor | None = None,
                 names: list[str] | None = None, alphas_cumprod: torch.Tensor | None = None):
        self.means = means  # [K, *shape]
        self.std = float(std)
        K = means.shape[0]
        self.log_w = (weights if weights is not None else torch.full((K,), 1.0 / K, dtype=means.dtype)).log()
        self.names = names or [f"mode {k}" for k in range(K)]
        self.alphas_cumprod = (alphas_cumprod if alphas_cumprod is not None else ddpm_alphas_cumprod()).to(means.dtype)
        self.num_train_timesteps = len(self.alphas_cumprod)
        self.default_cfg = 1.0

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, **kw) -> torch.Tensor:
        """Exact eps for x_t [B,*shape], t [B], cond [B,1,K]."""
        B = x_t.shape[0]
        abar = self.alphas_cumprod.to(x_t.device)[t].to(x_t.dtype)  # [B]
        a, s = abar.sqrt(), (1 - abar).sqrt()
        var = a * a * self.std ** 2 + s * s                          # [B]
        diff = x_t[:, None] - a.view(B, 1, *[1] * (x_t.dim() - 1)) * self.means[None].to(x_t)  # [B,K,*shape]
        d2 = diff.flatten(2).pow(2).sum(-1)                          # [B,K]
        mask = cond.reshape(B, -1).to(x_t.dtype)
        log_mask = torch.where(mask > 0, mask.clamp(min=torch.finfo(mask.dtype).tiny).log(),
                               torch.full_like(mask, float("-inf")))   # a masked-out mode weighs exactly 0
        logits = self.log_w.to(x_t)[None] + log_mask - d2 / (2 * var[:, None])
        r = torch.softmax(logits, -1)                                # [B,K]
        mean_diff = (r.view(B, -1, *[1] * (x_t.dim() - 1)) * diff).sum(1)
        return s.view(B, *[1] * (x_t.dim() - 1)) * mean_diff / var.view(B, *[1] * (x_t.dim() - 1))

    def encode(self, rgb: torch.Tensor) -> torch.Tensor:
        return rgb

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        return x0

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        K = self.means.shape[0]
        rows = [torch.nn.functional.one_hot(torch.tensor(self.names.index(p)), K).to(self.means.dtype)
                if p in self.names else torch.ones(K, dtype=self.means.dtype) for p in prompts]
        return torch.stack(rows)[:, None]


def gaussian_teacher(mean: torch.Tensor, std: float) -> MixtureTeacher:
    """Gaussian data N(mean, std^2 I)."""
    return MixtureTeacher(mean[None], std)


def finite_set_teacher(images: torch.Tensor) -> MixtureTeacher:
    """The exact (softmax-weighted) denoiser of a finite image set [K, C, H, W]."""
    return MixtureTeacher(images, 0.0)
