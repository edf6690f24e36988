"""Score distillation of a generator (DMD / DMD2, Yin et al. 2024a,b; Diff-Instruct, Luo et al. 2023; SDS).

Every iteration: z, y -> x0 = G (backward-simulated when few-step) -> guidance.score_distillation_step (the same
step as the 3D loop; the fake score takes its TTUR updates inside it) -> generator loss (+ DMD1 regression for
step 1, + for steps k >= 1 a regression onto the teacher's DDIM from the student's own x_tk, + an optional GAN
term) -> the guarded optimizer step.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from guidance import FakeScore, GuidanceConfig, Prompts, randint_rows, randn_rows, score_distillation_step
from guidance.fsdp import copy_full_, full_tensors, load_optimizer_state, optimizer_state, shard_unet
from guidance.step import needs_aux

from ...common.ema import ema_lerp_
from ...common.errors import CheckpointError
from ...common.run_folder import StepGuard
from ..captions import PromptBank, run_captions
from ..generator import Student, make_generator
from ..sampling import rollout
from .adversarial import GanTerm
from .toolkit import (DistillRun, ddim_sample, default_prompts, make_optimizer, regression_pairs, run_meta, run_world,
                     teacher_clip)

# The score-distillation methods: each guides with the guidance method of its own name; a fake (auxiliary) score is
# trained exactly when guidance.step.needs_aux says so for the resolved GuidanceConfig (guidance_config).
METHODS = ("dmd", "diff_instruct", "sds")


def guidance_config(config, default_cfg: float = 1.0) -> GuidanceConfig:
    """The GuidanceConfig of a distillation method (config.guidance, method and CFG resolved): DMD = normalised
    gradient, Diff-Instruct = w(t)-weighted; the fake score's updates run inside the step unless aux_fresh_batches."""
    g = config.guidance
    return replace(g, method=config.method, cfg_scale=default_cfg if g.cfg_scale is None else g.cfg_scale,
                   t_lognormal=tuple(g.t_lognormal), aux_updates=0 if config.aux_fresh_batches else g.aux_updates,
                   aux_shared_pass=False)  # fake score: own t draws (DMD2)


# ----------------------------------------------------------------------------------------------- the loop
@dataclass
class DistillState:
    """Everything that changes during training."""

    gen: Student
    fake: object | None                  # FakeScore (or any .eps / .train_step model)
    opt: torch.optim.Optimizer
    conds: PromptBank                    # conds[idx] -> [B,L,D] prompt embeddings
    uncond: torch.Tensor                 # [1,L,D]
    rng: torch.Generator
    pairs: tuple | None = None           # (z, x0, prompt idx) for the regression loss
    ema: list[torch.Tensor] | None = None  # EMA of gen.params (config.ema_decay > 0), same order
    gan: GanTerm | None = None           # config.gan.weight > 0: real renders vs samples, DMD2's GAN term (D: gan.bad)
    step: int = 0
    bad: StepGuard = field(default_factory=StepGuard)  # the guarded step: generator updates dropped (NaN / inf)


def generator_batch(state: DistillState, config) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """x0 = G(x_{t_k}, t_k, y) with grad, y, k and x_{t_k}; x_{t_k} from the student's own k earlier steps (DMD2
    backward simulation)."""
    gen, g = state.gen, state.rng
    idx = randint_rows(len(state.conds), config.batch, g)                      # data parallel: this rank's rows
    cond = state.conds[idx]                                                    # [B,L,D]
    z = randn_rows(gen.sample_shape(config.batch), g).to(cond.device)          # [B,C,h,w]
    k = int(torch.randint(0, len(gen.timesteps), (), generator=g))
    with torch.no_grad():
        x_t = rollout(lambda x, t: gen.x0(x, t, cond), z, gen.timesteps, gen.alphas_cumprod, g, until=k,
                      clip=gen.clip)
    t = torch.full((config.batch,), gen.timesteps[k], dtype=torch.long, device=cond.device)
    return gen.x0(x_t, t, cond).float(), cond, k, x_t.float()


def step_guidance(gcfg: GuidanceConfig, config, k: int) -> GuidanceConfig:
    """The GuidanceConfig for samples of few-step step k: the real score's CFG may differ per step."""
    return replace(gcfg, cfg_scale=config.step_cfg_scales[k]) if config.step_cfg_scales else gcfg


def dm_loss(out, x0: torch.Tensor, reduction: str) -> torch.Tensor:
    """The distribution-matching loss: per_image (d / d x0 = grad / B) or mean (DMD2's 0.5 mse(x0, sg(x0 - grad)),
    reduction "mean": d / d x0 = grad / (B C H W))."""
    return out.loss if reduction == "per_image" else out.loss / x0[0].numel()


def fresh_aux_updates(state: DistillState, config) -> None:
    """config.guidance.aux_updates fake-score steps, each on its own generator batch (new z, prompts, k), as DMD2."""
    for _ in range(config.guidance.aux_updates if state.fake is not None else 0):
        with torch.no_grad():
            x0, cond, _, _ = generator_batch(state, config)
        state.fake.train_step(x0, cond, generator=state.rng)


def distill_step(state: DistillState, teacher, config, gcfg: GuidanceConfig) -> dict:
    """One generator update, and config.guidance.aux_updates fake-score updates: inside score_distillation_step on this
    update's batch, or (config.aux_fresh_batches) after it, each on a fresh batch."""
    x0, cond, k, x_t = generator_batch(state, config)
    prompts = Prompts(cond, state.uncond.expand(len(cond), -1, -1))
    gk = step_guidance(gcfg, config, k)
    out = score_distillation_step(teacher, x0, prompts, gk, state.rng, aux=state.fake)
    if config.aux_fresh_batches:
        fresh_aux_updates(state, config)
    loss = dm_loss(out, x0, config.dm_loss)
    reg, rreg = torch.zeros(()), None
    if config.regression_weight > 0 and state.pairs is not None:
        z, x_ref, pidx = state.pairs
        j = randint_rows(len(z), config.batch, state.rng)
        t = torch.full((config.batch,), state.gen.t_star, dtype=torch.long, device=z.device)
        reg = F.mse_loss(state.gen.x0(z[j], t, state.conds[pidx[j]]), x_ref[j])
        loss = loss + config.regression_weight * reg
    if config.rollout_regression_weight > 0 and k > 0:  # anchor step k on the teacher's ODE from the student's x_tk
        x_ref = ddim_sample(teacher, cond, prompts.uncond, gk.cfg_scale, config.rollout_regression_ddim_steps, x_t,
                            teacher_clip(teacher), t_start=state.gen.timesteps[k])
        rreg = 0.5 * (x0 - x_ref).square().flatten(1).sum(1).mean()   # per image, the DM loss's own scale
        loss = loss + config.rollout_regression_weight * rreg
    gan = None
    if state.gan is not None:
        gan = state.gan.step(x0, cond, state.rng)                    # (adversarial loss, D loss; None: D skipped)
        loss = loss + config.gan.weight * gan[0]
    d_skipped = {"d_skipped": True} if gan is not None and gan[1] is None else {}   # the D update's guard skipped it
    state.step += 1
    gnorm = state.bad.step(state.step, loss, state.opt, config.max_grad_norm, guidance=out, params=state.gen.params)
    if gnorm is None:                                  # skipped (and warned): no update, optimizer state untouched
        return {"step": state.step, "loss": None, "skipped": True, **d_skipped}
    if state.ema is not None:
        ema_lerp_(state.ema, state.gen.params, config.ema_decay)
    m = {"step": state.step, "loss": out.loss.item(), "reg": reg.item(), "grad_norm": gnorm,
         "grad_abs": out.grad.abs().mean().item()}
    if rreg is not None:
        m.update(rollout_reg=rreg.item(), k=k)
    if gan is not None:
        m.update(g_adv=gan[0].item(), d_loss=gan[1], **d_skipped)
    return m


def init_state(teacher, config, teacher_ref: str | None = None, world=None) -> DistillState:
    """Student (teacher copy), fake score, optimiser, prompt embeddings and (if asked) regression pairs; world:
    the run's (default: config.teacher's, run_world), for captions when config gives none and the GAN's data: shapes."""
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    world = world if world is not None else run_world(config.teacher)
    prompts = run_captions(config) or default_prompts(world)
    gen = make_generator(teacher, config.timesteps, config.lora_rank, run_meta(config, teacher_ref, prompts))
    if config.resolution:
        vae = getattr(teacher, "vae", None)
        gen.size = config.resolution // (2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1)
    gc = guidance_config(config, teacher.default_cfg)
    fake = (FakeScore(teacher, lr=gc.aux_lr, betas=tuple(config.adam_betas), max_grad_norm=gc.aux_max_grad_norm,
                      loss_space=gc.aux_target, lora_rank=gc.aux_rank,
                      gradient_checkpointing=config.gradient_checkpointing, fsdp=config.fsdp)
            if needs_aux(gc) else None)
    if config.gradient_checkpointing:
        gen.unet.enable_gradient_checkpointing()
    if config.fsdp:
        shard_unet(gen.unet)                      # before the optimizer: the parameters become DTensors
    opt = make_optimizer(gen.params, config)     # AdamW(lr_gen, adam_betas, weight_decay), as every trainer's
    conds = PromptBank(teacher, prompts, config.prompt_cache)
    uncond = teacher.encode_prompt([config.uncond_prompt])
    state = DistillState(gen, fake, opt, conds, uncond, g,
                         bad=StepGuard(limit=config.max_bad_steps, what="generator update"))
    if config.ema_decay > 0:
        state.ema = [p.detach().clone() for p in gen.params]
    if config.regression_weight > 0:
        state.pairs = regression_pairs(teacher, gen, conds, uncond, config, gc.cfg_scale, g)
    if config.gan.weight > 0:
        state.gan = GanTerm(teacher, gen, config, g, world)
    return state


def train_score(teacher, config, run: DistillRun, data=None) -> Student:
    """DMD / Diff-Instruct / SDS generator training through guidance.score_distillation_step; resumable: every
    generator save (and the last step) also writes OUT/checkpoint.pt (state_dict), run.resume continues from one."""
    state = init_state(teacher, config, run.meta.get("teacher"), run.world)
    state.bad.kept = run.kept                     # what a stopped run keeps: the run folder's last generator
    if state.gan is not None:
        state.gan.bad.kept = run.kept
    if run.resume is not None:
        load_state_dict(state, run.resume)
    gcfg = guidance_config(config, teacher.default_cfg)
    while state.step < config.steps:
        with autocast(config):
            m = distill_step(state, teacher, config, gcfg)  # a skipped update warns; max_bad_steps in a row raise
        run.log({k: v for k, v in m.items() if k != "step"}, last=state.step == config.steps)
        saving_ema = state.ema is not None and config.save_every and state.step % config.save_every == 0
        if saving_ema:
            swap_ema(state)                       # save the EMA weights, then train on
        run.maybe_save(state.gen, state.step)
        if saving_ema:
            swap_ema(state)
        if (config.save_every and state.step % config.save_every == 0) or state.step == config.steps:
            run.save_state(state_dict(state))
    if state.ema is not None:
        swap_ema(state)                           # the returned (and saved) generator carries the EMA weights
    return state.gen


def autocast(config) -> torch.autocast:
    """config.mixed_precision = bf16: every UNet pass (teacher, generator, fake score) in bfloat16 autocast; the fp32
    master weights, optimizer states and losses are unchanged (torch.autocast, Micikevicius et al. 2018)."""
    return torch.autocast(device_type=torch.device(config.device).type, dtype=torch.bfloat16,
                          enabled=config.mixed_precision == "bf16")


def state_dict(state: DistillState) -> dict:
    """Everything a resumed run needs (weights-only types): generator, fake score, both optimizers, EMA, GAN heads,
    the trainer's and torch's global RNG states, the step and the skipped-update records (generator, GAN heads).
    Sharded (FSDP) weights and moments are saved as full tensors (every rank calls this), so a checkpoint does not
    depend on `fsdp`."""
    sd = {"step": state.step, "gen": full_tensors(state.gen.params), "opt": optimizer_state(state.opt),
          "rng": state.rng.get_state(), "torch_rng": torch.get_rng_state(),
          "bad": {"skipped": list(state.bad.skipped), "streak": state.bad.streak}}
    if state.fake is not None:
        sd.update(fake=full_tensors(state.fake.params), fake_opt=optimizer_state(state.fake.opt))
    if state.ema is not None:
        sd["ema"] = full_tensors(state.ema)
    if state.gan is not None:
        sd.update(gan=full_tensors(state.gan.disc.params), gan_opt=optimizer_state(state.gan.opt),
                  gan_bad={"skipped": list(state.gan.bad.skipped), "streak": state.gan.bad.streak,
                           "updates": state.gan.updates})
    return sd


@torch.no_grad()
def load_state_dict(state: DistillState, sd: dict) -> None:
    """Restore state_dict(state) into a freshly initialised state (same recipe)."""
    def copy(dst, src, what):
        if src is None or len(dst) != len(src) or any(a.shape != b.shape for a, b in zip(dst, src)):
            raise CheckpointError(f"checkpoint does not match this recipe's {what}")
        copy_full_(dst, src)                      # FSDP: each rank keeps its shard
    copy(state.gen.params, sd["gen"], "generator")
    load_optimizer_state(state.opt, sd["opt"])
    if state.fake is not None:
        copy(state.fake.params, sd.get("fake"), "fake score")
        load_optimizer_state(state.fake.opt, sd["fake_opt"])
    if state.ema is not None:
        copy(state.ema, sd.get("ema"), "EMA")
    if state.gan is not None:
        copy(state.gan.disc.params, sd.get("gan"), "GAN heads")
        load_optimizer_state(state.gan.opt, sd["gan_opt"])
        d_bad = sd.get("gan_bad", {"skipped": [], "streak": 0, "updates": sd["step"]})  # older checkpoints: none
        state.gan.bad.restore(d_bad["skipped"], d_bad["streak"])
        state.gan.updates = int(d_bad["updates"])
    state.rng.set_state(sd["rng"])
    torch.set_rng_state(sd["torch_rng"])
    state.step = int(sd["step"])
    state.bad.restore(sd["bad"]["skipped"], sd["bad"]["streak"])


@torch.no_grad()
def swap_ema(state: DistillState) -> None:
    """Exchange the generator's trainable weights with their EMA copies (twice restores them)."""
    for p, e in zip(state.gen.params, state.ema):
        tmp = p.detach().clone()
        p.copy_(e)
        e.copy_(tmp)


