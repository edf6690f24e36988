"""One rank of the data-parallel tests (launched by torchrun from tests/dreamer/test_data_parallel.py):
  dp_worker.py dmd TINY_SD_DIR OUT BATCH RESULT   distill() end to end (rank 0 writes OUT)
  dp_worker.py noise_lora - OUT BATCH RESULT      the noise_lora trainer on the exact toy teacher
writes this rank's final generator parameters to RESULT.rank<r>.pt (dmd: and the gradients of each optimizer's
first step, after the all-reduce, to RESULT.grads<r>.pt)."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(method: str, teacher_dir: str, out: str, batch: int, result: str) -> None:
    torch.set_num_threads(1)
    from dp_configs import dmd_cfg, noise_lora_cfg, record_first_gradients

    from dreamer.common.distributed import init, rank_world, shutdown

    if method == "dmd":
        from dreamer.distill.loop import distill

        firsts = record_first_gradients()
        gen = distill(dmd_cfg(teacher_dir, batch), out, log=lambda s: None)
        rank = int(__import__("os").environ["RANK"])
        torch.save(firsts, f"{result}.grads{rank}.pt")
    else:
        from toy_models import toy_setup

        from dreamer.distill.trainers import noise_lora
        from dreamer.distill.trainers.common import DistillRun

        init("cpu")
        rank = rank_world()[0]
        cfg = noise_lora_cfg(batch)
        try:
            gen = noise_lora.train(toy_setup(default_cfg=2.5), cfg, DistillRun(out, cfg, None, log=lambda s: None))
        finally:
            shutdown()
    torch.save([p.detach().clone() for p in gen.params], f"{result}.rank{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
