"""torch.distributed under `torchrun`: rank / world size from the environment, process-group setup (gloo on CPU,
NCCL on CUDA), one GPU per process (LOCAL_RANK). The per-sample draws of a global batch: guidance.shard."""
from __future__ import annotations

import atexit
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
        use_local_gpu()
    dist.init_process_group(backend)
    atexit.register(shutdown)     # a group left open aborts the process at exit (gloo's threads still joinable)
    return dist.get_rank(), dist.get_world_size()


def shutdown() -> None:
    """Leave the process group if one is open (idempotent)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def use_local_gpu() -> None:
    """Under torchrun with CUDA: make 'cuda' mean this process's GPU (LOCAL_RANK), so N processes use N GPUs."""
    import torch

    if torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
