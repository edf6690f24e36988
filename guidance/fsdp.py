"""Fully sharded data parallel (FSDP2, torch.distributed.fsdp.fully_shard; Zhao et al. 2023) for the trainable UNet
copies of score distillation (generator, fake score): each rank keeps 1 / world of every parameter, gradient and
Adam moment, gathers a block's weights for its forward / backward and reduce-scatters (averages) its gradients.

A sharded parameter is a DTensor; everything here also takes plain tensors (returned / copied as they are), so
checkpoints hold full tensors either way and a run saved with FSDP has the same files as one without.
"""
from __future__ import annotations

import torch

from .shard import rank_world


def is_sharded(t) -> bool:
    """t is a DTensor (a parameter, gradient or optimizer state that FSDP shards)."""
    return _DTENSOR is not None and isinstance(t, _DTENSOR)


try:
    from torch.distributed.tensor import DTensor as _DTENSOR
except ImportError:  # pragma: no cover - a torch build without torch.distributed
    _DTENSOR = None


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (a view: in-place changes reach the DTensor); a plain tensor as it is."""
    return t.to_local() if is_sharded(t) else t


def shard_unet(unet: torch.nn.Module) -> torch.nn.Module:
    """fully_shard every down / mid / up block (one all-gather unit each), then the rest at the root; in place.
    Build optimizers after this call: the module's parameters are replaced by DTensors. Alone (no process group
    or world size 1) the module is left as it is."""
    from torch.distributed.fsdp import fully_shard

    if rank_world()[1] == 1:
        return unet

    blocks = [*getattr(unet, "down_blocks", []), getattr(unet, "mid_block", None), *getattr(unet, "up_blocks", [])]
    for b in blocks:
        if b is not None and any(True for _ in b.parameters()):
            fully_shard(b, reshard_after_forward=True)
    # explicit for the root too: by default FSDP2 keeps the root's gathered weights after a forward, expecting a
    # backward to follow; after a no-grad forward (the fake score's eps for the generator) and an optimizer step
    # the next forward would then reuse stale weights
    fully_shard(unet, reshard_after_forward=True)
    return unet


def full_tensors(ts) -> list[torch.Tensor]:
    """Full (unsharded) detached copies of tensors or DTensors; a collective when any is sharded: every rank calls
    it with the same list."""
    return [t.full_tensor().detach().clone() if is_sharded(t) else t.detach().clone() for t in ts]


def shard_like(full: torch.Tensor, like) -> torch.Tensor:
    """A full tensor as this rank's shard in `like`'s layout (device, dtype, mesh, placements); `like` a DTensor."""
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full.to(like.device, like.dtype), like.device_mesh, like.placements)


@torch.no_grad()
def copy_full_(dst, src) -> None:
    """dst[i] <- src[i] for full tensors src: a sharded dst keeps its own shard of the full value."""
    for a, b in zip(dst, src):
        a.copy_(shard_like(b, a) if is_sharded(a) else b)


def optimizer_state(opt: torch.optim.Optimizer) -> dict:
    """opt.state_dict() with every sharded state (Adam moments of DTensor parameters) as its full tensor
    (a collective under FSDP: every rank calls it)."""
    sd = opt.state_dict()
    for i in sorted(sd["state"]):
        sd["state"][i] = {k: v.full_tensor() if is_sharded(v) else v for k, v in sd["state"][i].items()}
    return sd


def load_optimizer_state(opt: torch.optim.Optimizer, sd: dict) -> None:
    """optimizer_state's dict back into `opt`: states of sharded parameters become this rank's shards."""
    params = [p for g in opt.param_groups for p in g["params"]]
    state = {}
    for i, s in sd["state"].items():
        p = params[int(i)]
        state[i] = {k: shard_like(v, p) if is_sharded(p) and torch.is_tensor(v) and v.shape == p.shape else v
                    for k, v in s.items()}
    opt.load_state_dict({**sd, "state": state})


def unsharded_copy(module: torch.nn.Module, keep: bool = True) -> torch.nn.Module | None:
    """A plain (unsharded) module with `module`'s full weights, built from its config (diffusers models), e.g. to
    save it; a collective under FSDP, where ranks with keep=False only help gather and get None. A module that is
    not sharded is returned as it is."""
    if not any(is_sharded(p) for p in module.parameters()):
        return module
    full = dict(zip((n for n, _ in module.named_parameters()), full_tensors(module.parameters())))
    if not keep:
        return None
    full.update((n, b.detach().clone()) for n, b in module.named_buffers())
    first = next(iter(full.values()))
    plain = torch.nn.Module.to(type(module).from_config(module.config), first.device, first.dtype)  # no warning
    plain.load_state_dict(full)
    return plain.train(module.training)


def clip_grad_norm_(params, max_norm: float) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_ over plain and sharded gradients: the shards' squared norms are summed over
    the ranks (one all-reduce), plain (replicated) gradients counted once; returns the total norm."""
    grads = [p.grad for p in params if p.grad is not None]
    if not any(is_sharded(g) for g in grads):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    sq = torch.zeros((), dtype=torch.float64, device=local(grads[0]).device)
    for g in grads:
        if is_sharded(g):
            sq += local(g).double().square().sum()
    if rank_world()[1] > 1:
        torch.distributed.all_reduce(sq)
    for g in grads:
        if not is_sharded(g):
            sq += g.double().square().sum()
    norm = sq.sqrt()
    coef = min(1.0, float(max_norm / (norm + 1e-6)))
    if coef < 1.0:
        for g in grads:
            local(g).mul_(coef)
    return norm.float()
