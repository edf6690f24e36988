"""Progressive distillation (Salimans & Ho 2022, Algorithm 2): a student initialised from its teacher learns to do
in one deterministic DDIM step what the teacher does in two; then it becomes the teacher and N halves again.

Stage 1's teacher is the diffusion teacher with CFG (guidance folded into the single-pass student, as in Meng et al.
2023 stage two at a fixed scale); later stages distil the previous student. The student keeps the teacher's output
parameterisation (v-prediction for the embedded teacher: stable at the last, high-noise stages).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from guidance import (add_noise, alpha_sigma, randint_rows, randn_rows, renoise, truncated_snr_weight,
                      uniform_timesteps)

from ..generator import Student, make_generator
from .toolkit import (
    Data,
    DistillRun,
    data_pool,
    make_optimizer,
    scale_of,
    teacher_clip,
    teacher_denoiser,
    weighted_mse,
)


@dataclass
class ProgressiveSettings:
    """Method settings (DistillConfig.progressive)."""

    teacher_steps: int = 32        # DDIM steps of the first teacher; students get N/2, N/4, ..., end_steps
    end_steps: int = 1
    iters_per_stage: int = 300
    save_stages: bool = True       # also write OUT/stage-<N>/ (a generator per stage, e.g. for 4/2/1-step rows)


def halving(teacher_steps: int, end_steps: int) -> list[int]:
    """Student step counts [N/2, N/4, ..., end_steps]; N / end_steps must be a power of two >= 2."""
    n, out = teacher_steps, []
    while n > end_steps and n % 2 == 0:
        n //= 2
        out.append(n)
    if not out or n != end_steps:
        raise ValueError(f"teacher_steps / end_steps must be a power of two >= 2, got {teacher_steps} / {end_steps}")
    return out


def ddim_target(x_t: torch.Tensor, x_s: torch.Tensor, t: torch.Tensor, s: torch.Tensor, ac: torch.Tensor):
    """x~ = (x_s - (s_s / s_t) x_t) / (a_s - (s_s / s_t) a_t) (Salimans & Ho 2022, Alg. 2): the x0 prediction whose
    single DDIM step t -> s lands exactly on x_s; s < 0 (clean) gives x~ = x_s. All [B,C,h,w]."""
    a_t, s_t = alpha_sigma(t, ac, x_t)
    a_s, s_s = alpha_sigma(s, ac, x_t)
    r = s_s / s_t
    return (x_s - r * x_t) / (a_s - r * a_t)


def two_step_target(denoise, x_t: torch.Tensor, i: torch.Tensor, grid2: list[int], ac: torch.Tensor,
                    clip: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two teacher DDIM steps from grid2[2i] to grid2[2i+2] (or clean data); returns (x~ target, t) [B,...], [B]."""
    g = torch.tensor(grid2 + [-1])
    t, t_mid, t_end = g[2 * i], g[2 * i + 1], g[2 * i + 2]
    with torch.no_grad():
        x = x_t
        for a, b in ((t, t_mid), (t_mid, t_end)):
            x0 = denoise(x, a)
            x = renoise(x, x0 if clip is None else x0.clamp(-clip, clip), a, b, ac, ddim=True)
        return ddim_target(x_t, x, t, t_end, ac), t


def train(teacher, config, run: DistillRun, data: Data | None = None) -> Student:
    """All halving stages; returns the last student (DDIM sampler, its N-step grid as timesteps)."""
    s = config.progressive
    stages = halving(s.teacher_steps, s.end_steps)
    T, ac, g = len(teacher.alphas_cumprod), teacher.alphas_cumprod, torch.Generator().manual_seed(config.seed)
    gen = make_generator(teacher, uniform_timesteps(stages[0], T), config.lora_rank, run.meta, sampler="ddim")
    data = data or data_pool(teacher, gen, config, g, run.world)
    clip, scale = teacher_clip(teacher), scale_of(teacher, config)
    prev = None                                            # previous student (frozen); None: the real teacher
    for n in stages:
        grid2, gen.timesteps = uniform_timesteps(2 * n, T), uniform_timesteps(n, T)
        opt = make_optimizer(gen.params, config)
        for it in range(1, s.iters_per_stage + 1):
            x0, cond = data.batch(config.batch, g)
            den = (teacher_denoiser(teacher, cond, data.uncond, scale) if prev is None
                   else (lambda x, t, c=cond, p=prev: p.x0(x, t, c)))
            i = randint_rows(n, config.batch, g)                 # data parallel: this rank's rows of the draws
            t0 = torch.tensor(gen.timesteps)[i]
            x_t = add_noise(x0, randn_rows(x0.shape, g), t0, ac)
            target, t = two_step_target(den, x_t, i, grid2, ac, clip)
            loss = weighted_mse(gen.x0(x_t, t, cond), target, truncated_snr_weight(ac[t]))
            gnorm = run.step(loss, opt, config.max_grad_norm)
            run.log({"stage": n, "loss": loss.item(), "grad_norm": gnorm}, last=it == s.iters_per_stage)
        if s.save_stages:
            run.save(gen, f"stage-{n}")
        prev = copy.copy(gen)
        prev.unet = copy.deepcopy(gen.unet).eval().requires_grad_(False)
    return gen
