"""Guidance distillation (Meng et al. 2023, "On Distillation of Guided Diffusion Models", sec. 3.1, stage one).

A student eps_eta(x_t, t, y, w) with a guidance-scale input (sinusoidal w embedding on the time embedding, zero-
initialised so it starts as the conditional teacher) regresses the teacher's CFG output
eps_u + w (eps_c - eps_u) for w ~ U[scale_min, scale_max]: one forward pass instead of two per sampling step.
The result is a DDIM-sampled generator at `scale` and can be the teacher of the other trainers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from guidance import add_noise, cfg_combine, native_weight, randn_rows, rows, sample_timesteps, uniform_timesteps

from ..generator import Student, make_generator
from .toolkit import Data, DistillRun, data_pool, make_optimizer, scale_of, weighted_mse


@dataclass
class GuidanceDistillSettings:
    """Method settings (DistillConfig.guidance_distill)."""

    scale_min: float = 1.0         # trained CFG range, diffusers convention (1 = conditional model)
    scale_max: float = 5.0
    embed_dim: int = 256           # time_cond_proj_dim of the student UNet
    sample_steps: int = 4          # timesteps stored for few-step DDIM sampling (1/2/4 are even subsets)


def student_and_target(teacher, gen: Student, x0: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                       t: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps_student(x_t, t, y, w), eps_cfg_teacher(x_t, t, y; w)) [B,C,h,w]; per-sample w [B] (Meng et al. eq. 5)."""
    x_t = add_noise(x0, noise, t, teacher.alphas_cumprod)
    with torch.no_grad():  # one batched cond + uncond teacher pass, combined with a per-sample scale
        eps_c, eps_u = teacher.eps(x_t.repeat(2, *[1] * (x_t.dim() - 1)), t.repeat(2), torch.cat([cond, uncond])).chunk(2)
        target = cfg_combine(eps_u, eps_c, w.view(-1, *[1] * (x_t.dim() - 1)).to(x_t))   # [B,C,h,w]
    return gen.eps(x_t, t, cond, w), target


def train(teacher, config, run: DistillRun, data: Data | None = None) -> Student:
    """Stage-one guidance distillation; returns the w-conditioned generator (DDIM sampler, guidance = cfg scale)."""
    s = config.guidance_distill
    g = torch.Generator().manual_seed(config.seed)
    gen = make_generator(teacher, uniform_timesteps(s.sample_steps, len(teacher.alphas_cumprod)), config.lora_rank,
                         run.meta, sampler="ddim", guidance_dim=s.embed_dim)
    gen.guidance = scale_of(teacher, config)
    data = data or data_pool(teacher, gen, config, g, run.world)
    opt = make_optimizer(gen.params, config)
    ac = teacher.alphas_cumprod
    for step in range(1, config.steps + 1):
        x0, cond = data.batch(config.batch, g)
        gc = config.guidance
        t = rows(lambda m: sample_timesteps(m, gc.t_min, gc.t_max, len(ac), g), config.batch)  # data parallel:
        w = s.scale_min + (s.scale_max - s.scale_min) * rows(lambda m: torch.rand(m, generator=g), config.batch)
        noise = randn_rows(x0.shape, g)                                     # this rank's rows of each draw
        pred, target = student_and_target(teacher, gen, x0, cond, data.uncond.expand(len(x0), -1, -1), t, w, noise)
        loss = weighted_mse(pred, target, native_weight(teacher.prediction_type, ac[t].to(pred)))
        gnorm = run.step(loss, opt, config.max_grad_norm)
        run.log({"loss": loss.item(), "grad_norm": gnorm}, last=step == config.steps)
        run.maybe_save(gen, step)
    return gen
