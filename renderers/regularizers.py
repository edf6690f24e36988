"""Renderer-side regularisers (pure functions of rendered tensors / activated parameters)."""

from __future__ import annotations

import torch

__all__ = ["opacity_entropy", "opacity_l1", "orientation_loss", "gaussian_scale_reg"]


def opacity_entropy(alpha: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Binary entropy of accumulated opacity (pushes alpha to 0 or 1); alpha [...] -> scalar."""
    a = alpha.clamp(eps, 1 - eps)
    return -(a * torch.log(a) + (1 - a) * torch.log(1 - a)).mean()


def opacity_l1(alpha: torch.Tensor) -> torch.Tensor:
    """Sparsity: mean |alpha|; alpha [...] -> scalar."""
    return alpha.abs().mean()


def orientation_loss(weights: torch.Tensor, normals: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Ref-NeRF / DreamFusion: mean over rays of sum_i w_i max(0, n_i . d)^2.
    weights [R,S], normals [R,S,3], dirs [R,3] (camera -> scene)."""
    nd = (normals * dirs[:, None, :]).sum(-1)                       # [R,S]
    return (weights.detach() * nd.clamp_min(0) ** 2).sum(-1).mean()


def gaussian_scale_reg(scales: torch.Tensor, max_scale: float = 0.05, max_ratio: float = 10.0) -> torch.Tensor:
    """Penalise scales above max_scale and anisotropy max/min above max_ratio; scales [N,3] -> scalar."""
    big = torch.relu(scales.amax(-1) - max_scale).mean()
    ratio = scales.amax(-1) / scales.amin(-1).clamp_min(1e-8)
    return big + torch.relu(ratio - max_ratio).mean()
