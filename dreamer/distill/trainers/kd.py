"""Knowledge distillation (Luhman & Luhman 2021) and rectified flow / reflow + distillation (Liu et al. 2023; seed 003).

KD: pre-generate teacher DDIM pairs (z, x0 = ODE(z)) once, then regress the one-step student G(z, t*) onto x0.
Reflow: rectify the teacher's coupling first. With x_bar = x_t / a_t and sigma = s_t / a_t the DDIM ODE is Euler on
dx_bar/dsigma = eps, so the straight path between a pair is x_t = a_t x0 + s_t z and its velocity is eps = z: the
reflow objective ||(X1 - X0) - v(X_tau, tau)||^2 (X_tau = (1 - tau) X0 + tau X1, tau = s / (a + s)) is the eps regression
||eps(x_t, t) - z||^2 weighted by ((a + s) / a)^2. One reflow round, new pairs from the reflowed ODE, then KD.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from guidance import add_noise, alpha_sigma, map_chunks, randint_rows, rows, sample_timesteps, uniform_timesteps

from ..generator import Student, make_generator
from ..sampling import rollout
from .toolkit import (
    DistillRun,
    default_prompts,
    make_optimizer,
    pool_captions,
    regression_pairs,
    scale_of,
    teacher_clip,
    weighted_mse,
)


@dataclass
class ReflowSettings:
    """Method settings (DistillConfig.reflow); the teacher pairs use regression_pairs / regression_ddim_steps."""

    reflow_iters: int = 600        # stage 2: rectify the teacher's (z, x0) coupling
    ode_steps: int = 8             # stage 3: DDIM steps of the reflowed model for the new pairs
    distill_iters: int = 600       # stage 4: one-step KD on the new pairs
    save_reflow: bool = True       # also write OUT/reflow/ (the reflowed model, DDIM-sampled, 4 trained steps)


def fit_pairs(gen: Student, z, x0, idx, conds, iters: int, config, run: DistillRun, g: torch.Generator,
              tag: str) -> None:
    """KD (Luhman & Luhman 2021, eq. 6 with L2): min ||G(z, t*, y) - x0||^2 over the fixed pairs."""
    opt = make_optimizer(gen.params, config)
    for it in range(1, iters + 1):
        j = randint_rows(len(z), config.batch, g)           # data parallel: this rank's rows of the global draw
        t = torch.full((config.batch,), gen.t_star, dtype=torch.long)
        loss = F.mse_loss(gen.x0(z[j], t, conds[idx[j]]), x0[j])
        gnorm = run.step(loss, opt, config.max_grad_norm)
        run.log({"phase": tag, "loss": loss.item(), "grad_norm": gnorm}, last=it == iters)


def reflow_loss(gen: Student, x0: torch.Tensor, z: torch.Tensor, cond: torch.Tensor, t: torch.Tensor):
    """((a + s) / a)^2 ||eps_G(a x0 + s z, t) - z||^2: the rectified-flow velocity loss in DDIM coordinates."""
    x_t = add_noise(x0, z, t, gen.alphas_cumprod)
    a, s = alpha_sigma(t, gen.alphas_cumprod, x0)
    return weighted_mse(gen.eps(x_t, t, cond), z, ((a + s) / a).pow(2).flatten())


def path_noise(z: torch.Tensor, x0: torch.Tensor, ac: torch.Tensor) -> torch.Tensor:
    """eps of the straight path from x0 through the sampler's start x_{T-1} = z: (z - a_{T-1} x0) / s_{T-1}."""
    a, s = alpha_sigma(torch.full((len(z),), len(ac) - 1), ac, z)
    return (z - a * x0) / s


def fit_reflow(gen: Student, z, x0, idx, conds, iters: int, config, run: DistillRun, g: torch.Generator) -> None:
    """Stage 2: t ~ U[t_min, t_max] T on the straight paths between the teacher's pairs."""
    opt = make_optimizer(gen.params, config)
    z = path_noise(z, x0, gen.alphas_cumprod)
    for it in range(1, iters + 1):
        j = randint_rows(len(z), config.batch, g)
        gc = config.guidance
        t = rows(lambda m: sample_timesteps(m, gc.t_min, gc.t_max, len(gen.alphas_cumprod), g), config.batch)
        loss = reflow_loss(gen, x0[j], z[j], conds[idx[j]], t)
        gnorm = run.step(loss, opt, config.max_grad_norm)
        run.log({"phase": "reflow", "loss": loss.item(), "grad_norm": gnorm}, last=it == iters)


def _teacher_pairs(teacher, gen: Student, config, g: torch.Generator, world=None):
    """config.regression_pairs DDIM pairs per caption, on at most config.data_size captions (pool_captions)."""
    from ..captions import encode_texts

    conds = encode_texts(teacher, pool_captions(run_prompts(config, gen, world), config.data_size, g))
    uncond = teacher.encode_prompt([config.uncond_prompt])
    z, x0, idx = regression_pairs(teacher, gen, conds, uncond, config, scale_of(teacher, config), g)
    return z, x0, idx, conds


def run_prompts(config, gen: Student, world=None) -> list[str]:
    from ..captions import run_captions

    return list(run_captions(config) or gen.meta.get("prompts") or default_prompts(world))


def train_kd(teacher, config, run: DistillRun, data=None) -> Student:
    """One-step KD on teacher DDIM pairs (config.regression_pairs per prompt, config.regression_ddim_steps steps)."""
    g = torch.Generator().manual_seed(config.seed)
    gen = make_generator(teacher, [len(teacher.alphas_cumprod) - 1], config.lora_rank, run.meta, sampler="ddim")
    z, x0, idx, conds = _teacher_pairs(teacher, gen, config, g, run.world)
    fit_pairs(gen, z, x0, idx, conds, config.steps, config, run, g, "kd")
    return gen


def train_reflow(teacher, config, run: DistillRun, data=None) -> Student:
    """Teacher pairs -> one reflow round -> pairs from the reflowed ODE -> one-step KD."""
    s, T = config.reflow, len(teacher.alphas_cumprod)
    g = torch.Generator().manual_seed(config.seed)
    gen = make_generator(teacher, uniform_timesteps(4, T), config.lora_rank, run.meta, sampler="ddim")
    z, x0, idx, conds = _teacher_pairs(teacher, gen, config, g, run.world)
    fit_reflow(gen, z, x0, idx, conds, s.reflow_iters, config, run, g)
    if s.save_reflow:
        run.save(gen, "reflow")
    z2 = torch.randn(z.shape, generator=g)
    with torch.no_grad():                                   # stage 3: the reflowed model's own ODE pairs (one pass)
        x2 = map_chunks(lambda i, j: rollout(lambda x, t: gen.x0(x, t, conds[idx[i:j]]), z2[i:j],  # ranks split
                                             uniform_timesteps(s.ode_steps, T), gen.alphas_cumprod, ddim=True,
                                             clip=teacher_clip(teacher)), len(z2), 64, z2.device)
    gen.timesteps = [T - 1]
    fit_pairs(gen, z2, x2, idx, conds, s.distill_iters, config, run, g, "distill")
    return gen
