"""Shapes evaluator: a small CNN (shape + colour heads + a reject head) and the 2D metrics built on it.

The reject head is one "none of the catalogue" logit (trained with BCE against the negatives of
``tools.shapes_training.negatives``, training-only and not installed): blank or flat frames, flat unshaded
silhouettes, noise, two objects, cut-off objects, shapes or colours outside the catalogue. ``predict`` returns
(shape, colour, rejected); ``classify`` keeps its (shape, colour) signature and ignores the reject head.

Metrics: prompt accuracy (shape AND colour right AND not rejected), reject rate, Frechet distance on penultimate
features ("FSD"), and per-prompt diversity (mean pairwise feature distance).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .world import COLOUR_NAMES, SHAPES, ShapeSpec

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "shapes-evaluator"
WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "config.json"


@dataclass
class EvaluatorConfig:
    """Architecture of the shapes classifier."""

    res: int = 32
    widths: tuple[int, int, int] = (32, 64, 128)
    feat_dim: int = 128
    n_shapes: int = len(SHAPES)
    n_colours: int = len(COLOUR_NAMES)
    reject: bool = True             # a "none of the catalogue" logit (False: weights from before the reject head)
    reject_threshold: float = 0.5   # rejected when sigmoid(reject logit) > this


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def resize_to(images: torch.Tensor, res: int) -> torch.Tensor:
    """Resize [B,3,H,W] to [B,3,res,res]: area for downsampling, bilinear for upsampling."""
    if images.shape[-2:] == (res, res):
        return images
    if images.shape[-1] > res and images.shape[-2] > res:
        return F.interpolate(images, size=(res, res), mode="area")
    return F.interpolate(images, size=(res, res), mode="bilinear", align_corners=False)


class ShapesEvaluator(nn.Module):
    """32x32 RGB classifier with shape/colour heads and a penultimate feature vector."""

    def __init__(self, config: EvaluatorConfig | None = None):
        super().__init__()
        self.config = config = config or EvaluatorConfig()
        w1, w2, w3 = config.widths
        self.body = nn.Sequential(
            _block(3, w1), _block(w1, w1), nn.MaxPool2d(2),   # 16x16
            _block(w1, w2), _block(w2, w2), nn.MaxPool2d(2),  # 8x8
            _block(w2, w3), nn.MaxPool2d(2),                  # 4x4
        )
        self.fc = nn.Linear(w3 * (config.res // 8) ** 2, config.feat_dim)
        self.shape_head = nn.Linear(config.feat_dim, config.n_shapes)
        self.colour_head = nn.Linear(config.feat_dim, config.n_colours)
        self.reject_head = nn.Linear(config.feat_dim, 1) if config.reject else None
        self.drop = nn.Dropout(0.2)

    def _prep(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().to(self.fc.weight.device)
        return resize_to(x, self.config.res) * 2 - 1  # [0,1] -> [-1,1]

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features [B,D] for images [B,3,H,W] in [0,1] (differentiable)."""
        h = self.body(self._prep(images)).flatten(1)
        return F.relu(self.fc(h))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits: shape [B,6], colour [B,6], and features [B,D]."""
        ls, lc, _, f = self.heads(images)
        return ls, lc, f

    def heads(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits: shape [B,6], colour [B,6], reject [B] ("none of the catalogue"; -inf without the head) and
        features [B,D]."""
        f = self.embed(images)
        g = self.drop(f)
        rej = (self.reject_head(g)[:, 0] if self.reject_head is not None
               else torch.full((len(f),), -math.inf, device=f.device))
        return self.shape_head(g), self.colour_head(g), rej, f

    @torch.no_grad()
    def _logits(self, images: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.eval()
        outs = [self.heads(images[i:i + batch])[:3] for i in range(0, len(images), batch)]
        if not outs:
            e = torch.empty(0)
            return e.view(0, self.config.n_shapes), e.view(0, self.config.n_colours), e
        return tuple(torch.cat([o[k] for o in outs]).cpu() for k in range(3))  # type: ignore[return-value]

    @torch.no_grad()
    def classify(self, images: torch.Tensor, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted (shape_idx [B], colour_idx [B]) indices into SHAPES / COLOUR_NAMES (reject head ignored)."""
        ls, lc, _ = self._logits(images, batch)
        return ls.argmax(-1), lc.argmax(-1)

    @torch.no_grad()
    def reject_prob(self, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
        """P("none of the catalogue") [B] in [0,1] (all 0 for weights without a reject head)."""
        return torch.sigmoid(self._logits(images, batch)[2])

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(shape_idx [B], colour_idx [B], rejected [B] bool): rejected means no catalogue entry fits."""
        ls, lc, lr = self._logits(images, batch)
        return ls.argmax(-1), lc.argmax(-1), torch.sigmoid(lr) > self.config.reject_threshold

    @torch.no_grad()
    def reject_rate(self, images: torch.Tensor, batch: int = 512) -> float:
        """Fraction of images rejected as none of the catalogue."""
        return reject_rate(self, images, batch)

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
        """Penultimate features [B,D] (eval mode, no grad)."""
        self.eval()
        return torch.cat([self.embed(images[i:i + batch]).cpu() for i in range(0, len(images), batch)])

    @torch.no_grad()
    def prompt_accuracy(self, images: torch.Tensor, specs: Sequence[ShapeSpec]) -> float:
        """Fraction of images whose shape AND colour both match their spec and that are not rejected."""
        return prompt_accuracy(self, images, specs)

    def save(self, path: str | Path) -> None:
        """Write model.safetensors + config.json into a folder."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, path / WEIGHTS_NAME)
        config = asdict(self.config) | {"shapes": list(SHAPES), "colours": list(COLOUR_NAMES)}
        (path / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "cpu") -> "ShapesEvaluator":
        """Load from a folder (default: the shipped weights); eval mode, no network."""
        from safetensors.torch import load_file

        path = Path(path) if path is not None else ASSET_DIR
        raw = json.loads((path / CONFIG_NAME).read_text())
        if tuple(raw.get("shapes", SHAPES)) != SHAPES or tuple(raw.get("colours", COLOUR_NAMES)) != COLOUR_NAMES:
            raise ValueError(f"{path}: class lists do not match dreamer.shapes.world")
        raw.setdefault("reject", False)  # configs written before the reject head
        fields = EvaluatorConfig.__dataclass_fields__
        config = EvaluatorConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in fields})
        model = cls(config)
        state = load_file(str(path / WEIGHTS_NAME))
        if config.reject and "reject_head.weight" not in state:
            raise ValueError(f"{path}: config.json asks for a reject head but the weights have none")
        model.load_state_dict(state)
        return model.to(device).eval().requires_grad_(False)


def spec_targets(specs: Sequence[ShapeSpec]) -> tuple[torch.Tensor, torch.Tensor]:
    """Class indices (shape [B], colour [B]) of a list of specs."""
    return (torch.tensor([SHAPES.index(s.shape) for s in specs]),
            torch.tensor([COLOUR_NAMES.index(s.colour) for s in specs]))


def prompt_correct(model: ShapesEvaluator, images: torch.Tensor, specs: Sequence[ShapeSpec]) -> torch.Tensor:
    """Per image [B] (bool): predicted shape AND colour both match its spec, and the image is not rejected."""
    if len(images) != len(specs):
        raise ValueError(f"{len(images)} images but {len(specs)} specs")
    ps, pc, rej = model.predict(images)
    ts, tc = spec_targets(specs)
    return (ps == ts) & (pc == tc) & ~rej


def prompt_accuracy(model: ShapesEvaluator, images: torch.Tensor, specs: Sequence[ShapeSpec]) -> float:
    """Fraction of images whose predicted shape AND colour both match their spec; a rejected image is wrong."""
    return prompt_correct(model, images, specs).float().mean().item()


def reject_rate(model: ShapesEvaluator, images: torch.Tensor, batch: int = 512) -> float:
    """Fraction of images the model rejects as none of the catalogue (nan for no images)."""
    if len(images) == 0:
        return float("nan")
    return model.predict(images, batch)[2].float().mean().item()


def _as_f64(x) -> np.ndarray:
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return x.astype(np.float64).reshape(len(x), -1)


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    """Symmetric square root of a (numerically) PSD matrix via eigh, negative eigenvalues clipped."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(feats_a, feats_b) -> float:
    """Frechet distance between Gaussians fitted to feats_a [N,D] and feats_b [M,D].

    ||mu_a - mu_b||^2 + tr(A) + tr(B) - 2 tr((A B)^(1/2)), using tr((A B)^(1/2)) = tr((A^(1/2) B A^(1/2))^(1/2)),
    a symmetric PSD form whose square root is real and computed stably by eigen-decomposition.
    """
    a, b = _as_f64(feats_a), _as_f64(feats_b)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("need at least 2 samples per set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    sa = _psd_sqrt(cov_a)
    w = np.linalg.eigvalsh(sa @ cov_b @ sa)
    tr_sqrt = np.sqrt(np.clip(w, 0, None)).sum()
    d = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt
    return float(max(d, 0.0))


def group_by_prompt(prompts: Sequence[str]) -> dict[str, list[int]]:
    """Indices of each distinct prompt, in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(p, []).append(i)
    return groups


def mean_pairwise_distance(feats) -> float:
    """Mean L2 distance over all unordered pairs of rows of feats [N,D] (0 for N < 2)."""
    x = torch.as_tensor(_as_f64(feats))
    n = len(x)
    if n < 2:
        return 0.0
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")  # [N,N], exact 0 on ties
    iu = torch.triu_indices(n, n, offset=1)
    return float(d[iu[0], iu[1]].mean())


def diversity(feats, prompts: Sequence[str] | None = None) -> float:
    """Mean pairwise feature distance; with prompts, computed per prompt then averaged over prompts."""
    if prompts is None:
        return mean_pairwise_distance(feats)
    x = _as_f64(feats)
    if len(prompts) != len(x):
        raise ValueError(f"{len(x)} features but {len(prompts)} prompts")
    vals = [mean_pairwise_distance(x[idx]) for idx in group_by_prompt(prompts).values() if len(idx) > 1]
    return float(np.mean(vals)) if vals else 0.0
