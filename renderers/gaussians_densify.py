"""Adaptive density control for Gaussians (clone / split / prune / opacity reset), CPU-friendly.

Same rules as 3DGS / gsplat's DefaultStrategy; keeps torch Adam state consistent by slicing,
duplicating or zero-extending each moment alongside its parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import rng
from .gaussians import PARAM_NAMES, GaussianParams
from .gaussians_raster import quat_to_rotmat

__all__ = ["DensifyConfig", "DensifyState", "update_densify_state", "densify_and_prune",
           "edit_gaussians", "reset_opacity"]


@dataclass
class DensifyConfig:
    """Thresholds (gsplat DefaultStrategy defaults, scene_scale = object radius)."""

    grow_grad2d: float = 2e-4       # mean screen-space grad (normalised coords) to densify
    grow_scale3d: float = 0.01      # max scale (x scene_scale) separating clone from split
    prune_opa: float = 0.005        # prune below this opacity
    prune_scale3d: float = 0.1      # prune larger than this (x scene_scale), after first reset
    scene_scale: float = 1.0
    split_factor: float = 1.6       # split children scale = parent / 1.6
    refine_start: int = 100
    refine_stop: int = 1500
    refine_every: int = 100
    reset_every: int = 3000
    max_gaussians: int = 100_000


@dataclass
class DensifyState:
    """Per-Gaussian statistics accumulated between refinements."""

    grad2d: torch.Tensor = field(default_factory=lambda: torch.zeros(0))   # [N]
    count: torch.Tensor = field(default_factory=lambda: torch.zeros(0))    # [N]

    @staticmethod
    def zeros(n: int, device="cpu") -> "DensifyState":
        return DensifyState(torch.zeros(n, device=device), torch.zeros(n, device=device))


@torch.no_grad()
def update_densify_state(state: DensifyState, means2d: torch.Tensor, radii: torch.Tensor,
                         width: int, height: int) -> DensifyState:
    """Accumulate |d loss / d means2d| (in [-1,1] NDC units) of visible Gaussians; call after backward."""
    if means2d.grad is None:
        return state
    B, N = means2d.shape[:2]
    if state.grad2d.numel() != N:
        state = DensifyState.zeros(N, means2d.device)
    g = means2d.grad * means2d.new_tensor([width / 2.0, height / 2.0]) * B       # [B,N,2]
    vis = (radii.reshape(B, N, -1)[..., 0] > 0).float()                          # [B,N]
    state.grad2d += (g.norm(dim=-1) * vis).sum(0)
    state.count += vis.sum(0)
    return state


@torch.no_grad()
def edit_gaussians(p: GaussianParams, optimizer: torch.optim.Optimizer | None, keep: torch.Tensor,
                   new: dict[str, torch.Tensor] | None = None) -> None:
    """In place: p <- cat(p[keep], new); Adam moments sliced the same way (zeros for new rows)."""
    for name in PARAM_NAMES:
        old = getattr(p, name)
        extra = new[name].to(old) if new is not None else old[:0]
        param = torch.nn.Parameter(torch.cat([old[keep], extra]), requires_grad=old.requires_grad)
        setattr(p, name, param)
        if optimizer is None:
            continue
        for group in optimizer.param_groups:
            if group.get("name") != name:
                continue
            st = optimizer.state.pop(old, None)
            group["params"] = [param]
            if st:
                for k, v in st.items():
                    if torch.is_tensor(v) and v.shape[:1] == old.shape[:1] and v.dim() > 0:
                        st[k] = torch.cat([v[keep], torch.zeros_like(extra)])
                optimizer.state[param] = st


@torch.no_grad()
def reset_opacity(p: GaussianParams, optimizer, value: float) -> None:
    """Clamp opacities to <= value and zero their Adam moments (3DGS opacity reset)."""
    p.opacity_logits.data.clamp_(max=torch.logit(torch.tensor(value)).item())
    if optimizer is not None:
        for k, v in optimizer.state.get(p.opacity_logits, {}).items():
            if torch.is_tensor(v) and v.dim() > 0:
                v.zero_()


@torch.no_grad()
def densify_and_prune(p: GaussianParams, optimizer, state: DensifyState, config: DensifyConfig, step: int,
                      generator: torch.Generator | None = None) -> tuple[DensifyState, dict]:
    """Refine at the scheduled steps; returns (fresh state, stats). Mutates p and optimizer."""
    stats = dict(cloned=0, split=0, pruned=0, n=len(p))
    in_window = config.refine_start <= step < config.refine_stop
    if not in_window or step % config.refine_every != 0 or state.grad2d.numel() != len(p):
        if in_window and step > 0 and step % config.reset_every == 0:
            reset_opacity(p, optimizer, 2 * config.prune_opa)
        return state, stats
    grads = state.grad2d / state.count.clamp_min(1)
    max_scale = torch.exp(p.log_scales).amax(-1)
    high = grads > config.grow_grad2d
    room = max(config.max_gaussians - len(p), 0)
    small = max_scale <= config.grow_scale3d * config.scene_scale
    clone = (high & small).nonzero(as_tuple=True)[0][:room]
    split = (high & ~small).nonzero(as_tuple=True)[0][: max(room - clone.numel(), 0)]
    n = len(p)
    new = {k: getattr(p, k)[clone] for k in PARAM_NAMES}
    # split: two children sampled from the parent, scale / split_factor; parent removed
    s = torch.exp(p.log_scales[split])                                           # [S,3]
    R = quat_to_rotmat(p.quats[split])                                           # [S,3,3]
    noise = rng.randn(2, split.numel(), 3, generator=generator, device=s.device) * s
    child_means = (p.means[split] + torch.einsum("sij,ksj->ksi", R, noise)).reshape(-1, 3)
    rep = lambda t: t.repeat(2, *([1] * (t.dim() - 1)))  # noqa: E731
    child = {k: rep(getattr(p, k)[split]) for k in PARAM_NAMES}
    child["means"] = child_means
    child["log_scales"] = rep(torch.log(s / config.split_factor))
    new = {k: torch.cat([new[k], child[k]]) for k in PARAM_NAMES}
    keep = torch.ones(n, dtype=torch.bool, device=p.means.device)
    keep[split] = False
    edit_gaussians(p, optimizer, keep, new)
    # prune
    opa = torch.sigmoid(p.opacity_logits)
    prune = opa < config.prune_opa
    if step > config.reset_every:
        prune |= torch.exp(p.log_scales).amax(-1) > config.prune_scale3d * config.scene_scale
    if prune.all():
        prune[opa.argmax()] = False
    if prune.any():
        edit_gaussians(p, optimizer, ~prune)
    stats.update(cloned=clone.numel(), split=split.numel(), pruned=int(prune.sum()), n=len(p))
    if step > 0 and step % config.reset_every == 0:
        reset_opacity(p, optimizer, 2 * config.prune_opa)
    return DensifyState.zeros(len(p), p.means.device), stats
