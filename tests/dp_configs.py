"""The recipes of the data-parallel tests (shared by the test and its torchrun workers, tests/dp_worker.py)."""
import torch

from dreamer.distill.recipe import DistillConfig


def dmd_cfg(teacher_dir: str, batch: int, steps: int = 3) -> DistillConfig:
    """A few DMD steps on the tiny SD teacher: two-step generator (backward simulation draws), fake-score TTUR."""
    return DistillConfig(method="dmd", teacher=str(teacher_dir), steps=steps, batch=batch, fake_updates=2,
                         lr_gen=1e-3, lr_fake=1e-3, cfg_scale=3.0, prompts=["a red cube", "a blue sphere"],
                         timesteps=[999, 499], threads=1, log_every=1, seed=0)


def noise_lora_cfg(batch: int) -> DistillConfig:
    """noise_lora on the exact toy teacher (tests/toy_models.py), teacher-sample data pool."""
    return DistillConfig(method="noise_lora", batch=batch, steps=20, lr_gen=0.05, adam_betas=(0.9, 0.999),
                         max_grad_norm=1.0, data="teacher", data_size=16, regression_ddim_steps=4,
                         prompts=["a", "b"], log_every=10 ** 6, seed=0, timesteps=[999, 749, 499, 249])


def record_first_gradients() -> list[list[torch.Tensor]]:
    """Patch AdamW.step to keep the gradients each optimizer steps on first, in the order of those first steps
    (DMD: the fake score's first update, then the generator's): the gradients of identical parameters."""
    firsts: list[list[torch.Tensor]] = []
    seen: set[int] = set()
    step = torch.optim.AdamW.step

    def recording(self, *a, **kw):
        if id(self) not in seen:
            seen.add(id(self))
            firsts.append([p.grad.detach().clone() for g in self.param_groups for p in g["params"]
                           if p.grad is not None])
        return step(self, *a, **kw)
    torch.optim.AdamW.step = recording
    return firsts
