"""torch.distributed under `torchrun`: rank / world size from the environment, process-group setup (gloo on CPU,
NCCL on CUDA), and the shard of a global batch that belongs to this rank."""
from __future__ import annotations

import os


def rank_world() -> tuple[int, int]:
    """(rank, world size) that torchrun set (RANK / WORLD_SIZE), or of an initialised process group; (0, 1) alone."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:
        pass
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    """Rank 0 (or no torchrun): the process that writes checkpoints, logs and results."""
    return rank_world()[0] == 0


def init(device: str = "cpu") -> tuple[int, int]:
    """Join the process group torchrun describes (WORLD_SIZE > 1), once; gloo for CPU, NCCL for CUDA devices.
    Returns (rank, world size); alone it initialises nothing."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1 or dist.is_initialized():
        return rank_world()
    backend = "nccl" if str(device).startswith("cuda") and torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def local_device(device: str) -> str:
    """'cuda' -> this rank's GPU ('cuda:<LOCAL_RANK>') under torchrun; other devices unchanged."""
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return device


def shard(n_global: int, rank: int, world: int) -> slice:
    """This rank's rows [rank*b, (rank+1)*b) of a global batch of n_global = world * b rows."""
    if n_global % world:
        raise ValueError(f"global batch {n_global} is not divisible by the world size {world}")
    b = n_global // world
    return slice(rank * b, (rank + 1) * b)
