"""The recipes of the data-parallel tests (shared by the test and its torchrun workers, tests/dp_worker.py)."""
import torch

from guidance.fsdp import local

from dreamer.distill.recipe import DistillConfig, distill_guidance


def dmd_cfg(teacher_dir: str, batch: int, steps: int = 3) -> DistillConfig:
    """A few DMD steps on the tiny SD teacher: two-step generator (backward simulation draws), fake-score TTUR."""
    return DistillConfig(method="dmd", teacher=str(teacher_dir), steps=steps, batch=batch, lr_gen=1e-3,
                         guidance=distill_guidance(aux_updates=2, aux_lr=1e-3, cfg_scale=3.0),
                         prompts=["a red cube", "a blue sphere"], timesteps=[999, 499], threads=1, log_every=1, seed=0)


def distill_cfg(name: str, teacher_dir: str, batch: int) -> DistillConfig:
    """dmd, dmd64 (the same in float64: teacher, generator and fake score), add (ADD: hinge discriminator +
    distillation) or dmd_gan (DMD2's GAN term) on the tiny SD teacher; the adversarial ones with a small
    teacher-sample pool of real images; NAME_fsdp: NAME with fsdp and an EMA of the generator."""
    import dataclasses

    from dreamer.distill.trainers.adversarial import GanSettings

    if name.endswith("_fsdp"):                     # the same sharded (FSDP), with an EMA
        return dataclasses.replace(distill_cfg(name[:-5], teacher_dir, batch), fsdp=True, ema_decay=0.5)
    config = dmd_cfg(teacher_dir, batch)
    if name == "dmd64":
        return dataclasses.replace(config, dtype="float64")
    if name == "add":
        return dataclasses.replace(config, method="add", data="teacher", data_size=8)
    if name == "dmd_gan":
        return dataclasses.replace(config, data="teacher", data_size=8, gan=GanSettings(weight=0.1))
    return config


def noise_lora_cfg(batch: int) -> DistillConfig:
    """noise_lora on the exact toy teacher (tests/toy_models.py), teacher-sample data pool."""
    return toy_cfg("noise_lora", batch)


TOY_METHODS = ("noise_lora", "guidance", "progressive", "consistency", "kd", "reflow")


def toy_cfg(method: str, batch: int) -> DistillConfig:
    """A few steps of each regression trainer on the exact toy teacher, teacher-sample data pool / DDIM pairs."""
    from dreamer.distill.trainers.consistency import ConsistencySettings
    from dreamer.distill.trainers.kd import ReflowSettings
    from dreamer.distill.trainers.progressive import ProgressiveSettings

    kw = dict(noise_lora=dict(steps=20, timesteps=[999, 749, 499, 249]), guidance=dict(steps=20),
              progressive=dict(progressive=ProgressiveSettings(teacher_steps=4, end_steps=1, iters_per_stage=8,
                                                               save_stages=False)),
              consistency=dict(steps=20, consistency=ConsistencySettings(skip=250, ema=0.5, huber_c=0.0)),
              kd=dict(steps=20, regression_pairs=8),
              reflow=dict(regression_pairs=8, reflow=ReflowSettings(reflow_iters=8, ode_steps=4, distill_iters=8,
                                                                     save_reflow=False)))[method]
    return DistillConfig(method=method, batch=batch, lr_gen=0.05, adam_betas=(0.9, 0.999), max_grad_norm=1.0,
                         data="teacher", data_size=16, regression_ddim_steps=4, prompts=["a", "b"],
                         log_every=10 ** 6, seed=0, **kw)


def toy_teacher(method: str):
    """The toy teacher of each method (guidance distillation: a w-conditioned student)."""
    from toy_models import toy_setup

    return toy_setup(guidance_dim=256) if method == "guidance" else toy_setup(default_cfg=2.0)


def record_first_gradients() -> list[list[torch.Tensor]]:
    """Patch AdamW.step to keep the gradients each optimizer steps on first, in the order of those first steps
    (DMD: the fake score's first update, then the generator's): the gradients of identical parameters."""
    firsts: list[list[torch.Tensor]] = []
    seen: set[int] = set()
    step = torch.optim.AdamW.step

    def recording(self, *a, **kw):
        if id(self) not in seen:
            seen.add(id(self))
            firsts.append([local(p.grad).detach().clone() for g in self.param_groups for p in g["params"]
                           if p.grad is not None])                     # FSDP: this rank's shards
        return step(self, *a, **kw)
    torch.optim.AdamW.step = recording
    return firsts
