"""The one optimizer step of the project: backward, a non-finite guard, optional gradient-norm clip, step.

Every trainer (3D loop, score distillation, the regression / adversarial trainers, the auxiliary LoRA / fake
scores) updates its parameters through `guarded_step`, so a NaN render or teacher score skips the update instead of
poisoning weights and Adam moments; `BadSteps` counts the skips.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .fsdp import clip_grad_norm_, is_sharded, local
from .shard import rank_world


def finite_step(loss: torch.Tensor, params, guidance=None) -> bool:
    """The loss, every existing gradient of `params` and the guidance's raw score terms are finite (one sync).

    The raw terms matter because guidance.losses maps a NaN score difference to a zero gradient (nan_to_num),
    which would otherwise let a NaN teacher pass as a quiet zero-gradient step.
    """
    checks = [torch.isfinite(loss).all()]
    checks += [torch.isfinite(local(p.grad)).all() for p in params if p.grad is not None]  # FSDP: own shards
    if guidance is not None:
        terms = (getattr(guidance, k, None) for k in ("eps_cfg", "eps_baseline", "w"))
        checks += [torch.isfinite(t).all() for t in terms if torch.is_tensor(t)]
    return bool(torch.stack(checks).all())


def optimizer_params(optimizers) -> list[torch.Tensor]:
    """Every parameter the optimizers update."""
    return [p for o in optimizers for g in o.param_groups for p in g["params"]]


def master_weights(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A trainable copy's weights: float32 masters (whatever a bf16 / fp16 teacher holds), float64 for a float64
    teacher (exactness tests)."""
    return module.double() if dtype == torch.float64 else module.float()


def guarded_step(loss: torch.Tensor, optimizers, max_norm: float = 0.0, guidance=None,
                 params: list[torch.Tensor] | None = None) -> float | None:
    """zero_grad -> backward -> finite check -> clip (max_norm > 0) -> step; returns the gradient norm, or None
    when the loss, a gradient or a guidance term is non-finite (then no update and the gradients are cleared).

    optimizers: one optimizer or a list; params: what is checked and clipped (default: all they update).
    Data parallel (torch.distributed initialised, world size > 1): the gradients are averaged over the ranks before
    the finite check (all_reduce_grads), so every rank takes the same step or skips it. Sharded (FSDP, guidance.fsdp)
    parameters' gradients arrive averaged: each rank checks its shards and the verdicts are ANDed over the ranks.
    """
    opts = optimizers if isinstance(optimizers, (list, tuple)) else [optimizers]
    params = optimizer_params(opts) if params is None else params
    for o in opts:
        o.zero_grad(set_to_none=True)
    loss.backward()
    sharded = [p for p in params if is_sharded(p)]   # FSDP: gradients already averaged, this rank's shards
    ok = finite_step(loss, sharded, guidance)
    if not all_reduce_grads(params, ok) or not finite_step(loss, [p for p in params if not is_sharded(p)]):
        for o in opts:
            o.zero_grad(set_to_none=True)
        return None
    norm = clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    for o in opts:
        o.step()
    return float(norm)


def all_reduce_grads(params: list[torch.Tensor], ok: bool = True) -> bool:
    """Data parallel (a process group with world size > 1): average every existing gradient over the ranks, in
    place, with one all-reduce per dtype/device, and AND this rank's `ok` (loss / guidance terms finite) with every
    other rank's, so a NaN on any rank skips the step on all of them; alone: returns `ok`, touches nothing.

    An exact manual all-reduce rather than DistributedDataParallel: the generator is called through helper
    functions and the fake score's updates happen inside guidance, so there is no single module forward to wrap,
    and this one call covers every trainer's optimizer step (the ranks must have gradients for the same parameters,
    which the shared seeded draws of guidance.shard ensure)."""
    _, world = rank_world()
    if world == 1:
        return ok
    dist = torch.distributed
    grads = [p.grad for p in params if p.grad is not None and not is_sharded(p.grad)]  # FSDP reduced its own
    groups: dict[tuple, list[torch.Tensor]] = {}
    for g in grads:
        groups.setdefault((g.dtype, g.device), []).append(g)
    flag = torch.tensor([0.0 if ok else 1.0], device=grads[0].device if grads else "cpu")
    for i, ((dtype, device), gs) in enumerate(groups.items()):
        flat = torch.cat([g.reshape(-1) for g in gs] + ([flag.to(device, dtype)] if i == 0 else []))
        dist.all_reduce(flat)
        if i == 0:
            flag, flat = flat[-1:].float(), flat[:-1]
        flat /= world
        offset = 0
        for g in gs:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
    if not groups:
        dist.all_reduce(flag)
    return bool(flag.item() == 0)


@dataclass
class BadSteps:
    """Skipped updates: the step indices in all (`skipped`) and how many in a row (`streak`)."""

    skipped: list[int] = field(default_factory=list)
    streak: int = 0

    def record(self, step: int, norm: float | None) -> bool:
        """Count step `step` given guarded_step's result; True if it was skipped."""
        if norm is None:
            self.skipped.append(step)
            self.streak += 1
            return True
        self.streak = 0
        return False
