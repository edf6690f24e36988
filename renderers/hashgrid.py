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


_CORNERS = torch.tensor([[(i >> 2) & 1, (i >> 1) & 1, i & 1] for i in range(8)])  # [8,3]


class HashGrid(nn.Module):
    """Pure-torch hash grid: x [P,3] in [0,1]^3 -> features [P, n_levels * n_features]."""

    def __init__(self, cfg: HashGridConfig = HashGridConfig()):
        super().__init__()
        self.cfg = cfg
        T = 2 ** cfg.log2_table_size
        res, sizes, dense = [], [], []
        for lvl in range(cfg.n_levels):
            r = int(math.floor(cfg.base_resolution * cfg.per_level_scale ** lvl))
            n_dense = (r + 1) ** 3
            res.append(r)
            dense.append(n_dense <= T)
            sizes.append(min(n_dense, T))
        self.resolutions, self.dense, self.sizes = res, dense, sizes
        offsets = [0]
        for s in sizes:
            offsets.append(offsets[-1] + s)
        self.offsets = offsets
        self.table = nn.Parameter(torch.empty(offsets[-1], cfg.n_features).uniform_(-cfg.init_scale, cfg.init_scale))
        self.out_dim = cfg.out_dim

    def _index(self, lvl: int, c: torch.Tensor) -> torch.Tensor:
        """Integer corner coords c [...,3] -> table rows."""
        r = self.resolutions[lvl]
        if self.dense[lvl]:
            idx = (c[..., 0] * (r + 1) + c[..., 1]) * (r + 1) + c[..., 2]
        else:
            idx = (c[..., 0] * PRIMES[0]) ^ (c[..., 1] * PRIMES[1]) ^ (c[..., 2] * PRIMES[2])
            idx = (idx & 0xFFFFFFFF) % self.sizes[lvl]      # uint32 wrap as in Instant-NGP
        return idx + self.offsets[lvl]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clamp(0.0, 1.0)
        corners = _CORNERS.to(x.device)
        feats = []
        for lvl, r in enumerate(self.resolutions):
            pos = x * r
            base = torch.floor(pos).long().clamp(max=r - 1)           # [P,3]
            frac = pos - base                                          # [P,3]
            c = base[:, None, :] + corners[None]                       # [P,8,3]
            w = torch.where(corners[None].bool(), frac[:, None, :], 1 - frac[:, None, :]).prod(-1)  # [P,8]
            f = self.table[self._index(lvl, c)]                        # [P,8,F]
            feats.append((w[..., None] * f).sum(1))
        return torch.cat(feats, -1)


class _TcnnGrid(nn.Module):
    def __init__(self, cfg: HashGridConfig):
        super().__init__()
        import tinycudann as tcnn
        self.enc = tcnn.Encoding(3, dict(otype="HashGrid", n_levels=cfg.n_levels,
                                         n_features_per_level=cfg.n_features,
                                         log2_hashmap_size=cfg.log2_table_size,
                                         base_resolution=cfg.base_resolution,
                                         per_level_scale=cfg.per_level_scale))
        self.out_dim = cfg.out_dim

    def forward(self, x):
        return self.enc(x).float()


def make_hashgrid(cfg: HashGridConfig = HashGridConfig(), backend: str = "auto") -> nn.Module:
    """HashGrid ("torch") or tinycudann ("tcnn"; "auto" picks it when CUDA + tinycudann import)."""
    if backend == "auto":
        backend = "torch"
        if torch.cuda.is_available():
            try:
                import tinycudann  # noqa: F401
                backend = "tcnn"
            except ImportError:
                pass
    return _TcnnGrid(cfg) if backend == "tcnn" else HashGrid(cfg)
