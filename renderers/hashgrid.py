"""Multi-resolution hash-grid encoding (Instant-NGP) in pure PyTorch; tinycudann when importable."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["HashGridConfig", "HashGrid", "make_hashgrid"]

PRIMES = (1, 2654435761, 805459861)


@dataclass
class HashGridConfig:
    """Instant-NGP hash grid settings."""

    n_levels: int = 16
    n_features: int = 2
    log2_table_size: int = 19
    base_resolution: int = 16
    max_resolution: int = 2048
    init_scale: float = 1e-4

    @property
    def per_level_scale(self) -> float:
        if self.n_levels == 1:
            return 1.0
        return math.exp((math.log(self.max_resolution) - math.log(self.base_resolution)) / (self.n_levels - 1))

    @property
    def out_dim(self) -> int:
        return self.n_levels * self.n_features


class HashGrid(nn.Module):
    """Pure-torch hash grid: x [P,3] in [0,1]^3 -> features [P, n_levels * n_features]."""

    def __init__(self, config: HashGridConfig = HashGridConfig()):
        super().__init__()
        self.config = config
        T = 2 ** config.log2_table_size
        res, sizes, dense = [], [], []
        for lvl in range(config.n_levels):
            r = int(math.floor(config.base_resolution * config.per_level_scale ** lvl))
            n_dense = (r + 1) ** 3
            res.append(r)
            dense.append(n_dense <= T)
            sizes.append(min(n_dense, T))
        self.resolutions, self.dense, self.sizes = res, dense, sizes
        offsets = [0]
        for s in sizes:
            offsets.append(offsets[-1] + s)
        self.offsets = offsets
        init = config.init_scale
        self.table = nn.Parameter(torch.empty(offsets[-1], config.n_features).uniform_(-init, init))
        self.out_dim = config.out_dim

    def _index(self, lvl: int, cx: torch.Tensor, cy: torch.Tensor, cz: torch.Tensor) -> torch.Tensor:
        """Integer corner coords (broadcastable) -> table rows."""
        r = self.resolutions[lvl]
        if self.dense[lvl]:
            idx = (cx * (r + 1) + cy) * (r + 1) + cz
        else:
            idx = (cx * PRIMES[0]) ^ (cy * PRIMES[1]) ^ (cz * PRIMES[2])
            idx = (idx & 0xFFFFFFFF) % self.sizes[lvl]      # uint32 wrap as in Instant-NGP
        return idx + self.offsets[lvl]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Trilinear interpolation of the 8 corners per level. Corner k = 4 i + 2 j + l (offsets i, j, l on x, y,
        z) is built by broadcasting per-axis [P,2] tensors, never a [P,8,3] one."""
        x = x.clamp(0.0, 1.0)
        P = x.shape[0]
        feats = []
        for lvl, r in enumerate(self.resolutions):
            pos = x * r
            base = torch.floor(pos).long().clamp(max=r - 1)           # [P,3]
            frac = pos - base                                          # [P,3]
            w1 = torch.stack([1 - frac, frac], -1)                     # [P,3,2]: weights of offsets 0 / 1 per axis
            w = (w1[:, 0, :, None, None] * w1[:, 1, None, :, None] * w1[:, 2, None, None, :]).reshape(P, 8)
            c = torch.stack([base, base + 1], -1)                      # [P,3,2]
            idx = self._index(lvl, c[:, 0, :, None, None], c[:, 1, None, :, None], c[:, 2, None, None, :])
            f = self.table[idx.reshape(P, 8)]                          # [P,8,F]
            feats.append((w[..., None] * f).sum(1))
        return torch.cat(feats, -1)


class _TcnnGrid(nn.Module):
    def __init__(self, config: HashGridConfig):
        super().__init__()
        import tinycudann as tcnn
        self.enc = tcnn.Encoding(3, dict(otype="HashGrid", n_levels=config.n_levels,
                                         n_features_per_level=config.n_features,
                                         log2_hashmap_size=config.log2_table_size,
                                         base_resolution=config.base_resolution,
                                         per_level_scale=config.per_level_scale))
        self.out_dim = config.out_dim

    def forward(self, x):
        return self.enc(x).float()


def make_hashgrid(config: HashGridConfig = HashGridConfig(), backend: str = "auto") -> nn.Module:
    """HashGrid ("torch") or tinycudann ("tcnn"; "auto" picks it when CUDA + tinycudann import)."""
    if backend == "auto":
        backend = "torch"
        if torch.cuda.is_available():
            try:
                import tinycudann  # noqa: F401
                backend = "tcnn"
            except ImportError:
                pass
    return _TcnnGrid(config) if backend == "tcnn" else HashGrid(config)
