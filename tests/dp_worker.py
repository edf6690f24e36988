"""One rank of the data-parallel tests (launched by torchrun from tests/dreamer/distill/test_data_parallel.py):
  dp_worker.py distill NAME TINY_SD_DIR OUT BATCH RESULT [STEPS [resume]]
                                                             distill() end to end on dp_configs.distill_cfg(NAME)
                                                             (rank 0 writes OUT), and each optimizer's first
                                                             gradients; STEPS / resume: a split run
  dp_worker.py toy OUT BATCH RESULT                          every trainer of dp_configs.TOY_METHODS on the exact
                                                             toy teacher, one after the other
writes this rank's final generator parameters to RESULT.<name>.rank<r>.pt (distill: and the gradients of each
optimizer's first step, after the all-reduce, to RESULT.grads<r>.pt)."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _save(gen, result: str, method: str, rank: int) -> None:
    torch.save([p.detach().clone() for p in gen.params], f"{result}.{method}.rank{rank}.pt")


def main(mode: str, *args: str) -> None:
    torch.set_num_threads(1)
    from dp_configs import TOY_METHODS, distill_cfg, record_first_gradients, toy_cfg, toy_teacher

    from dreamer.common.distributed import init, rank_world, shutdown

    if mode == "distill":
        from dreamer.distill.loop import distill

        import dataclasses

        method, teacher_dir, out, batch, result, *more = args
        config = distill_cfg(method, teacher_dir, int(batch))
        if more:                                         # STEPS [resume]: a split run
            config = dataclasses.replace(config, steps=int(more[0]))
        firsts = record_first_gradients()
        gen = distill(config, out, log=lambda s: None, resume=more[1:] == ["resume"])
        rank = int(__import__("os").environ["RANK"])
        torch.save(firsts, f"{result}.grads{rank}.pt")
        _save(gen, result, method, rank)
        return
    from dreamer.distill.trainers import TRAINERS
    from dreamer.distill.trainers.toolkit import DistillRun

    out, batch, result = args
    init("cpu")
    rank = rank_world()[0]
    try:
        from guidance import map_chunks

        torch.save(map_chunks(lambda i, j: torch.arange(i, j) * 1.5, 10, 3), f"{result}.map_chunks.rank{rank}.pt")
        for method in TOY_METHODS:
            config = toy_cfg(method, int(batch))
            run = DistillRun(Path(out) / method, config, None, log=lambda s: None)
            _save(TRAINERS[method](toy_teacher(method), config, run), result, method, rank)
    finally:
        shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
