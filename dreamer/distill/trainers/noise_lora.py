"""Noise-matching LoRA with Min-SNR weighting (seed 002, "Flash LoRA"; Hang et al. 2023, Min-SNR-gamma).

A LoRA student (rank 4 on to_q/to_k/to_v/to_out.0) regresses the frozen teacher's CFG noise prediction in one pass:
loss = min(SNR_t, gamma) / SNR_t * ||eps_student(x_t, t, y) - eps_cfg(x_t, t, y)||^2 (the eps form of Min-SNR-gamma,
i.e. min(SNR, gamma) on the x0 error), with t drawn from the few-step inference schedule (`timesteps`), and sampled
LCM-style with fresh-noise re-noising at CFG 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from guidance import (Prompts, add_noise, min_snr_weight, randint_rows, randn_rows, rows, sample_timesteps,
                      teacher_cfg)

from ..generator import Student, make_generator
from .toolkit import Data, DistillRun, data_pool, make_optimizer, scale_of, weighted_mse


@dataclass
class NoiseLoraSettings:
    """Method settings (DistillConfig.noise_lora)."""

    snr_gamma: float = 5.0         # Min-SNR gamma (seed 002: 5)
    aligned: bool = True           # t ~ the few-step schedule (`timesteps`); False: t ~ U[t_min, t_max] T


def train(teacher, config, run: DistillRun, data: Data | None = None) -> Student:
    """Noise-matching LoRA; returns the student (renoise sampler on `timesteps`)."""
    s = config.noise_lora
    ac, g = teacher.alphas_cumprod, torch.Generator().manual_seed(config.seed)
    gen = make_generator(teacher, config.timesteps, config.lora_rank, run.meta, sampler="renoise")
    data = data or data_pool(teacher, gen, config, g, run.world)
    opt = make_optimizer(gen.params, config)
    scale, sched, gc = scale_of(teacher, config), torch.tensor(gen.timesteps), config.guidance
    for step in range(1, config.steps + 1):
        x0, cond = data.batch(config.batch, g)
        t = (sched[randint_rows(len(sched), config.batch, g)] if s.aligned    # data parallel: own rows
             else rows(lambda m: sample_timesteps(m, gc.t_min, gc.t_max, len(ac), g), config.batch))
        x_t = add_noise(x0, randn_rows(x0.shape, g), t, ac)
        with torch.no_grad():
            eps_cfg, _ = teacher_cfg(teacher, x_t, t, Prompts(cond, data.uncond.expand(len(cond), -1, -1)), scale)
        w = min_snr_weight(ac[t].to(x_t), s.snr_gamma)
        loss = weighted_mse(gen.eps(x_t, t, cond), eps_cfg, w)
        gnorm = run.step(loss, opt, config.max_grad_norm)
        run.log({"loss": loss.item(), "grad_norm": gnorm}, last=step == config.steps)
        run.maybe_save(gen, step)
    return gen
