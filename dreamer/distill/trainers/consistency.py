"""Consistency distillation, latent-consistency style (Song et al. 2023, Alg. 2; Luo et al. 2023, LCM, Alg. 1).

f_theta(x_t, t) = c_skip(t) x_t + c_out(t) x0_hat_theta(x_t, t) (Student with `boundary`), so f(x, 0) = x by
construction. Each step: x_{t_n} from noised data, one teacher DDIM step with CFG to t_{n-k} (k = `skip`), and
f_theta(x_{t_n}, t_n) regresses the EMA target f_ema(x_{t_{n-k}}, t_{n-k}) with a pseudo-Huber distance. Sampling is
multistep consistency sampling (fresh-noise re-noising, the shared `renoise` sampler). lora_rank > 0 is the
LCM-LoRA variant (adapter only; with ema = 0 the target is the online adapter under stop-gradient).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from guidance import add_noise, randint_rows, randn_rows, renoise

from ...common.ema import ema_update
from ..generator import Student, make_generator
from .toolkit import (
    Data,
    DistillRun,
    data_pool,
    make_optimizer,
    scale_of,
    teacher_clip,
    teacher_denoiser,
)


@dataclass
class ConsistencySettings:
    """Method settings (DistillConfig.consistency)."""

    skip: int = 20                 # teacher solver interval k on the T-step grid (LCM: 20, i.e. 50 grid points)
    ema: float = 0.95              # target EMA decay (LCM: 0.95); 0 = the online weights under stop-gradient
    huber_c: float = 0.001         # pseudo-Huber constant (LCM); 0 = squared L2
    boundary_scale: float = 10.0   # LCM's timestep scaling inside c_skip / c_out


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    """mean(sqrt((a - b)^2 + c^2) - c) (Song & Dhariwal 2024, eq. 8; LCM); c = 0 -> mean squared error."""
    if c <= 0:
        return (a - b).pow(2).mean()
    return ((a - b).pow(2) + c * c).sqrt().sub(c).mean()


def consistency_pair(teacher, gen: Student, target: Student, x0: torch.Tensor, cond: torch.Tensor,
                     uncond: torch.Tensor, t: torch.Tensor, skip: int, scale: float, clip, g: torch.Generator):
    """(f_theta(x_{t_n}, t_n) with grad, f_target(x_{t_{n-k}}, t_{n-k}) without) [B,C,h,w]; t [B] grid times."""
    ac = teacher.alphas_cumprod
    x_t = add_noise(x0, randn_rows(x0.shape, g), t, ac)                  # data parallel: this rank's rows
    t_prev = (t - skip).clamp(min=0)
    with torch.no_grad():
        x0_teacher = teacher_denoiser(teacher, cond, uncond, scale)(x_t, t)
        if clip is not None:
            x0_teacher = x0_teacher.clamp(-clip, clip)
        x_prev = renoise(x_t, x0_teacher, t, t_prev, ac, ddim=True)        # one teacher DDIM step (the ODE solver)
        y = target.x0(x_prev, t_prev, cond)
    return gen.x0(x_t, t, cond), y


def train(teacher, config, run: DistillRun, data: Data | None = None) -> Student:
    """Consistency distillation; returns the consistency generator (renoise sampler, boundary scalings)."""
    s = config.consistency
    T, g = len(teacher.alphas_cumprod), torch.Generator().manual_seed(config.seed)
    gen = make_generator(teacher, config.timesteps, config.lora_rank, run.meta, sampler="renoise",
                         boundary=s.boundary_scale)
    data = data or data_pool(teacher, gen, config, g, run.world)
    target = gen
    if s.ema > 0:
        target = copy.copy(gen)
        target.unet = copy.deepcopy(gen.unet).requires_grad_(False)
    opt = make_optimizer(gen.params, config)
    clip, scale = teacher_clip(teacher), scale_of(teacher, config)
    for step in range(1, config.steps + 1):
        x0, cond = data.batch(config.batch, g)
        t = randint_rows(T // s.skip + 1, config.batch, g, low=1) * s.skip - 1  # grid 19, 39, ..., 999
        pred, y = consistency_pair(teacher, gen, target, x0, cond, data.uncond, t, s.skip, scale, clip, g)
        loss = pseudo_huber(pred, y, s.huber_c)
        gnorm = run.step(loss, opt, config.max_grad_norm)
        if target is not gen:
            ema_update(target.unet, gen.unet, s.ema)
        run.log({"loss": loss.item(), "grad_norm": gnorm}, last=step == config.steps)
        run.maybe_save(gen, step)
    return gen
