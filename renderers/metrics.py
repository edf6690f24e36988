"""Image metrics shared by every evaluation (the shapes benchmark, the textured-export gap): one PSNR."""
from __future__ import annotations

import torch

PSNR_MSE_FLOOR = 1e-10               # MSE floor: identical images score 100 dB, not inf


def psnr(a, b, max_mse_floor: float = PSNR_MSE_FLOOR) -> float:
    """PSNR (dB) of images in [0,1], computed in float64; for batches [B,C,H,W] the mean of the per-image PSNRs
    (each capped at 100 dB by the MSE floor), for any other shape the PSNR of the whole array."""
    a = torch.as_tensor(a).detach().to(torch.float64)
    b = torch.as_tensor(b).detach().to(torch.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
    dims = tuple(range(1, a.ndim)) if a.ndim == 4 else tuple(range(a.ndim))
    mse = ((a - b) ** 2).mean(dim=dims).clamp(min=max_mse_floor)
    return float((-10 * torch.log10(mse)).mean())
