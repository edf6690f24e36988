"""Adversarial diffusion distillation (Sauer et al. 2023, ADD, sec. 3): student + discriminator (hinge loss) +
distillation loss.

The student G(x_s, s, y) sees real images noised to one of its few-step timesteps s (ADD sec. 3.1). The
discriminator is trainable heads on frozen features of the teacher UNet's encoder (down blocks + mid block at
t = 0); the shapes evaluator is never a training signal (it is the benchmark's judge). The distillation term is ADD's c(t) d(x_theta, x_psi), d = ||x_theta - x0_teacher(x_t)||^2,
x_t the re-noised student output: its gradient c(t)(x_theta - x0_teacher) = c(t)(s_t / a_t)(eps_cfg - eps) is
guidance.score_distillation_step with the SDS baseline (the project's one gradient formula); weighting "sds"
(w = 1 - abar) is c(t) = a_t s_t, which keeps the high-noise x0 estimates (error x s/a) from dominating.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from guidance import (GuidanceConfig, Prompts, Weighting, add_noise, randint_rows, randn_rows, score_distillation_step,
                      split_cond, time_embedding)

from ...common.run_folder import StepGuard
from ..generator import Student, make_generator
from .toolkit import Data, DistillRun, data_pool, make_optimizer, scale_of


@dataclass
class AddSettings:
    """Method settings (DistillConfig.add)."""

    features: str = "unet"         # the teacher UNet's frozen encoder (the only choice)
    lr_disc: float = 1.0e-4
    distill_weight: float = 2.5    # lambda (ADD: 2.5)
    weighting: Weighting = "sds"   # w(t) of the distillation term: sds = c(t) a_t s_t; snr_inv = c(t) 1 (plain L2)
    head_width: int = 64


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[max(0, 1 - D(x_real))] + E[max(0, 1 + D(x_fake))] (ADD eq. 4; Lim & Ye 2017)."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def hinge_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """-E[D(x_fake)] (ADD eq. 3)."""
    return -fake.mean()


class UNetEncoderFeatures(nn.Module):
    """Feature maps of a frozen UNet2DConditionModel's encoder (each down block's output and the mid block) at t."""

    def __init__(self, unet, t: int = 0):
        super().__init__()
        self.unet, self.t = unet, t
        c = list(unet.config.block_out_channels)
        self.channels = c + [c[-1]]

    def forward(self, x: torch.Tensor, cond: torch.Tensor, t: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Features of x [B,C,h,w] (noised to t [B], or clean at self.t) under cond [B,L,D]."""
        u = self.unet
        t = torch.full((x.shape[0],), self.t, dtype=torch.long, device=x.device) if t is None else t
        cond, extra = split_cond(u, cond)
        emb = time_embedding(u, x, t, extra.get("added_cond_kwargs"))
        h, out = u.conv_in(x.to(u.dtype)), []
        for blk in u.down_blocks:
            kw = {"encoder_hidden_states": cond.to(u.dtype)} if getattr(blk, "has_cross_attention", False) else {}
            h, _ = blk(h, emb, **kw)
            out.append(h)
        out.append(u.mid_block(h, emb, encoder_hidden_states=cond.to(u.dtype)))
        return [o.float() for o in out]


class Discriminator(nn.Module):
    """Trainable heads on frozen features: per level 1x1 conv -> LeakyReLU -> 1x1 conv, spatial mean, plus a
    text projection term <pooled head features, W mean_tokens(y)> (ADD's conditioned heads, projection style)."""

    def __init__(self, features: nn.Module, text_dim: int, width: int = 64):
        super().__init__()
        self.features = features.requires_grad_(False)
        self.heads = nn.ModuleList(nn.Sequential(nn.Conv2d(c, width, 1), nn.LeakyReLU(0.2)) for c in features.channels)
        self.out = nn.ModuleList(nn.Conv2d(width, 1, 1) for _ in features.channels)
        self.text = nn.ModuleList(nn.Linear(text_dim, width) for _ in features.channels)

    @property
    def params(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("features.")]

    def forward(self, x: torch.Tensor, cond: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B] for images x [B,C,h,w] (noised to timesteps t [B], if given) under prompts cond [B,L,D]."""
        e = cond.float().mean(1)                                                     # [B,D]
        logit = torch.zeros(x.shape[0], device=x.device)
        for f, head, out, text in zip(self.features(x, cond, t), self.heads, self.out, self.text):
            h = head(f)                                                              # [B,W,h,w]
            logit = logit + out(h).mean((1, 2, 3)) + (h.mean((2, 3)) * text(e)).sum(1) / h.shape[1] ** 0.5
        return logit


def make_discriminator(teacher, s: AddSettings, text_dim: int) -> Discriminator:
    return Discriminator(UNetEncoderFeatures(teacher.unet), text_dim, s.head_width).to(teacher.unet.device)


@dataclass
class GanSettings:
    """DMD2's GAN term on the DMD loop (DistillConfig.gan; Yin et al. 2024b, sec. 4.3): weight 0 = off."""

    weight: float = 0.0            # generator loss += weight * hinge_g; the DM loss it adds to is a per-image sum
    lr_disc: float = 1.0e-4
    head_width: int = 64
    t_max: float = 0.0             # real and fake are noised to t ~ U[0, t_max T) before D (DMD2); 0: clean (ADD)


class GanTerm:
    """Real images (config.data: the world's training images or teacher samples) vs generator samples, judged by heads
    on the frozen teacher UNet's encoder.

    DMD2 puts its classifier on the fake score's bottleneck; here the features are the frozen teacher's (as ADD),
    so the fake score stays a pure denoiser and the heads alone learn real vs fake (hinge losses above).
    """

    def __init__(self, teacher, gen: Student, config, g: torch.Generator, world=None):
        self.s, self.ac = config.gan, teacher.alphas_cumprod
        self.data = data_pool(teacher, gen, config, g, world)
        self.data.x0 = self.data.x0.to(self.data.conds.device)      # pixel teachers: renders come from the CPU
        self.disc = make_discriminator(teacher, AddSettings(head_width=self.s.head_width), self.data.conds.shape[-1])
        self.opt = make_optimizer(self.disc.params, config, lr=self.s.lr_disc)
        self.max_norm = config.max_grad_norm
        self.bad = StepGuard(limit=config.max_bad_steps, what="discriminator update")  # D updates dropped (NaN / inf)
        self.updates = 0                                  # D updates attempted: the guard's step index

    def _judge(self, x: torch.Tensor, cond: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self.s.t_max <= 0:
            return self.disc(x, cond)
        t = randint_rows(max(1, int(self.s.t_max * len(self.ac))), x.shape[0], g).to(x.device)  # data parallel:
        return self.disc(add_noise(x, randn_rows(x.shape, g).to(x), t, self.ac), cond, t)         # own rows

    def step(self, x0: torch.Tensor, cond: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, float | None]:
        """One D update on a real batch vs x0.detach(), guarded as the generator's (StepGuard: a non-finite loss or
        gradient skips it, warns and is counted in self.bad; max_bad_steps in a row raise); returns the generator's
        adversarial loss on x0 (with grad) and the D loss (None: the D update was skipped)."""
        x_real, c_real = self.data.batch(len(x0), g)
        d_loss = hinge_d_loss(self._judge(x_real, c_real, g), self._judge(x0.detach(), cond, g))
        self.updates += 1
        norm = self.bad.step(self.updates, d_loss, self.opt, self.max_norm)
        return hinge_g_loss(self._judge(x0, cond, g)), None if norm is None else d_loss.item()


def train(teacher, config, run: DistillRun, data: Data | None = None) -> Student:
    """ADD: alternate one hinge discriminator step and one student step (adversarial + lambda * distillation)."""
    s = config.add
    torch.manual_seed(config.seed)          # the discriminator heads' initialisation: seeded, the same on every rank
    ac, g = teacher.alphas_cumprod, torch.Generator().manual_seed(config.seed)
    gen = make_generator(teacher, config.timesteps, config.lora_rank, run.meta, sampler="renoise")
    data = data or data_pool(teacher, gen, config, g, run.world)
    disc = make_discriminator(teacher, s, data.conds.shape[-1])
    opt_g, opt_d = make_optimizer(gen.params, config), make_optimizer(disc.params, config, lr=s.lr_disc)
    gcfg = GuidanceConfig(method="sds", cfg_scale=scale_of(teacher, config), weighting=s.weighting,
                          t_min=config.guidance.t_min, t_max=config.guidance.t_max)
    sched = torch.tensor(gen.timesteps)
    for step in range(1, config.steps + 1):
        x_real, cond = data.batch(config.batch, g)
        t = sched[randint_rows(len(sched), config.batch, g)]               # data parallel: this rank's rows
        x_fake = gen.x0(add_noise(x_real, randn_rows(x_real.shape, g), t, ac), t, cond)  # [B,C,h,w]
        d_loss = hinge_d_loss(disc(x_real, cond), disc(x_fake.detach(), cond))
        run.step(d_loss, opt_d, config.max_grad_norm)
        adv = hinge_g_loss(disc(x_fake, cond))
        dist = score_distillation_step(teacher, x_fake, Prompts(cond, data.uncond.expand(len(cond), -1, -1)), gcfg, g)
        loss = adv + s.distill_weight * dist.loss / x_fake[0].numel()      # d = per-pixel mean squared distance
        gnorm = run.step(loss, opt_g, config.max_grad_norm)
        run.log({"d_loss": d_loss.item(), "g_adv": adv.item(), "distill": dist.loss.item(), "grad_norm": gnorm},
                last=step == config.steps)
        run.maybe_save(gen, step)
    return gen
