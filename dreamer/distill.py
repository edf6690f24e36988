"""Generator distillation on a frozen teacher: one config, one table of trainers (TRAINERS), one generator format.

Score distillation (DMD / DMD2, Yin et al. 2024a,b; Diff-Instruct, Luo et al. 2023): every iteration z, y -> x0 = G
(backward-simulated when few-step) -> guidance.score_distillation_step (the same step as the 3D loop; the fake score
takes its TTUR updates inside it) -> generator loss (+ DMD1 regression) -> Adam. The regression / adversarial
trainers of the seed documents live in dreamer/trainers/ (guidance, progressive, consistency, noise-matching LoRA,
knowledge distillation, reflow, ADD) and share the teacher, generator, sampler and run folder.

    python -m dreamer.distill --config configs/distill-dmd.yaml --out runs/dmd [key=value ...]
"""
from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from guidance import FakeScore, GuidanceConfig, Prompts, score_distillation_step

from .config import ConfigError, apply_overrides, check_finite, dump_yaml, from_dict, load_config_dict
from .errors import DreamerWarning, NumericalFault
from .fewstep import check_timesteps, rollout
from .generator import Generator, make_generator
from .numerics import finite_step
from .prompts import warn_if_truncated
from .trainers import adversarial, consistency, guidance_distill, kd, noise_lora, progressive
from .trainers.common import (Run, base_teacher_ref, ddim_sample, default_prompts, ema_lerp_,  # noqa: F401
                              load_any_teacher, regression_pairs, teacher_clip)
from .trainers.adversarial import AddSettings
from .trainers.consistency import ConsistencySettings
from .trainers.guidance_distill import GuidanceDistillSettings
from .trainers.kd import ReflowSettings
from .trainers.noise_lora import NoiseLoraSettings
from .trainers.progressive import ProgressiveSettings

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class DistillConfig:
    """A distillation recipe (configs/distill-*.yaml)."""

    method: str = "dmd"                  # a key of TRAINERS
    teacher: str | None = None           # None: the embedded shapes teacher; else a diffusers folder / hub id
    steps: int = 1000                    # generator updates
    batch: int = 8
    lr_gen: float = 1e-5
    lr_fake: float = 1e-5
    fake_updates: int = 5                # TTUR: fake-score steps per generator step (DMD2: 5; Diff-Instruct: 1)
    cfg_scale: float | None = None       # teacher CFG for the real score; None: the teacher's default
    fake_cfg_scale: float = 1.0
    t_min: float = 0.02                  # DMD: t ~ U[20, 980]
    t_max: float = 0.98
    weighting: str = "sds"               # w(t) for un-normalised methods (diff_instruct, sds)
    grad_clip: float = 0.0
    regression_weight: float = 0.0       # DMD1 lambda (0.25) on teacher ODE pairs, MSE; 0 = off
    regression_pairs: int = 2            # pairs per prompt
    regression_ddim_steps: int = 50
    timesteps: list[int] = field(default_factory=lambda: [999])  # few-step schedule; [0] = t*
    step_cfg_scales: list[float] = field(default_factory=list)  # real-score CFG per few-step timestep; [] = cfg_scale
    lora_rank: int = 0                   # > 0: train a LoRA adapter only
    prompts: list[str] = field(default_factory=list)  # empty: every catalogue prompt of the shapes world
    uncond_prompt: str = ""
    resolution: int | None = None        # pixels; None: the teacher UNet's sample size (x VAE factor)
    seed: int = 0
    adam_betas: tuple[float, float] = (0.0, 0.999)
    weight_decay: float = 0.0
    max_grad_norm: float = 10.0          # generator gradient-norm clip; 0 = off
    ema_decay: float = 0.0               # > 0: save an EMA of the generator weights (the fake score sees the online G)
    device: str = "cpu"
    dtype: str = "float32"               # teacher dtype (float16 / bfloat16 on GPUs)
    log_every: int = 10
    save_every: int = 0                  # 0: save at the end only
    threads: int = 1                     # torch CPU threads
    data: str = "shapes"                 # regression trainers' x0 pool: shapes (GT renders) | teacher (DDIM samples)
    data_size: int = 2304                # images in that pool
    guidance_distill: GuidanceDistillSettings = field(default_factory=GuidanceDistillSettings)
    progressive: ProgressiveSettings = field(default_factory=ProgressiveSettings)
    consistency: ConsistencySettings = field(default_factory=ConsistencySettings)
    noise_lora: NoiseLoraSettings = field(default_factory=NoiseLoraSettings)
    reflow: ReflowSettings = field(default_factory=ReflowSettings)
    add: AddSettings = field(default_factory=AddSettings)
    max_bad_steps: int = 20              # stop after this many consecutive non-finite losses / gradients


# name -> (guidance method, needs a fake score)
METHODS = {"dmd": ("dmd", True), "diff_instruct": ("diff_instruct", True), "sds": ("sds", False)}


def validate(cfg: DistillConfig) -> DistillConfig:
    """Raise ConfigError on values the dataclass types cannot catch."""
    if cfg.method not in TRAINERS:
        raise ConfigError(f"'method' must be one of {', '.join(TRAINERS)}, got {cfg.method!r}")
    if cfg.data not in ("shapes", "teacher") or cfg.data_size < 1:
        raise ConfigError(f"'data' must be shapes or teacher with data_size >= 1, got {cfg.data!r}, {cfg.data_size}")
    try:
        check_timesteps(cfg.timesteps)
    except ValueError as e:
        raise ConfigError(f"'timesteps': {e}") from None
    try:
        progressive.halving(cfg.progressive.teacher_steps, cfg.progressive.end_steps)
    except ValueError as e:
        if cfg.method == "progressive":
            raise ConfigError(f"'progressive': {e}") from None
    c = cfg.consistency
    if cfg.method == "consistency" and not (0 < c.skip < 1000 and 1000 % c.skip == 0 and 0 <= c.ema < 1):
        raise ConfigError(f"'consistency': skip must divide 1000 and 0 <= ema < 1, got {c.skip}, {c.ema}")
    if cfg.method == "add" and cfg.add.features not in ("unet", "evaluator"):
        raise ConfigError(f"'add.features' must be unet or evaluator, got {cfg.add.features!r}")
    if cfg.step_cfg_scales and len(cfg.step_cfg_scales) != len(cfg.timesteps):
        raise ConfigError(f"'step_cfg_scales' needs one CFG scale per timestep ({len(cfg.timesteps)}), "
                          f"got {len(cfg.step_cfg_scales)}")
    if not 0 <= cfg.ema_decay < 1:
        raise ConfigError(f"'ema_decay' must be in [0, 1), got {cfg.ema_decay}")
    if not 0 <= cfg.t_min < cfg.t_max <= 1:
        raise ConfigError(f"need 0 <= t_min < t_max <= 1, got {cfg.t_min}, {cfg.t_max}")
    check_finite(cfg)
    for k in ("steps", "batch", "fake_updates", "regression_pairs", "regression_ddim_steps", "threads",
              "log_every", "max_bad_steps", "save_every"):
        if getattr(cfg, k) < (0 if k in ("fake_updates", "save_every") else 1):
            raise ConfigError(f"'{k}' must be {'>= 0' if k in ('fake_updates', 'save_every') else 'positive'}, "
                              f"got {getattr(cfg, k)}")
    if min(cfg.lr_gen, cfg.lr_fake, cfg.regression_weight, cfg.lora_rank) < 0:
        raise ConfigError("learning rates, regression_weight and lora_rank must be >= 0")
    if cfg.resolution is not None and (cfg.resolution < 8 or cfg.resolution % 8):
        raise ConfigError(f"'resolution' must be a positive multiple of 8 (the UNet downsamples by 2s), "
                          f"got {cfg.resolution}")
    if any(not p.strip() for p in cfg.prompts):
        raise ConfigError("'prompts' must not contain empty prompts")
    return cfg


def load_distill_config(name_or_path: str | Path, overrides: list[str] = ()) -> DistillConfig:
    """YAML recipe (with `base:` inheritance) + key=value overrides -> validated DistillConfig."""
    data = apply_overrides(load_config_dict(name_or_path, CONFIG_DIR), list(overrides))
    return validate(from_dict(DistillConfig, data))


def guidance_config(cfg: DistillConfig, default_cfg: float = 1.0) -> GuidanceConfig:
    """The GuidanceConfig of a distillation method: DMD = normalised gradient, Diff-Instruct = w(t)-weighted."""
    return GuidanceConfig(method=METHODS[cfg.method][0], cfg_scale=default_cfg if cfg.cfg_scale is None
                          else cfg.cfg_scale, weighting=cfg.weighting, t_min=cfg.t_min, t_max=cfg.t_max,
                          grad_clip=cfg.grad_clip, aux_cfg_scale=cfg.fake_cfg_scale, aux_lr=cfg.lr_fake,
                          aux_updates=cfg.fake_updates, aux_shared_pass=False)  # fake score: own t draws (DMD2)


# ----------------------------------------------------------------------------------------------- the loop
@dataclass
class DistillState:
    """Everything that changes during training."""

    gen: Generator
    fake: object | None                  # FakeScore (or any .eps / .train_step model)
    opt: torch.optim.Optimizer
    conds: torch.Tensor                  # [P,L,D] prompt embeddings
    uncond: torch.Tensor                 # [1,L,D]
    rng: torch.Generator
    pairs: tuple | None = None           # (z, x0, prompt idx) for the regression loss
    ema: list[torch.Tensor] | None = None  # EMA of gen.params (cfg.ema_decay > 0), same order
    step: int = 0
    skipped: int = 0                     # generator updates dropped for a non-finite loss / gradient
    bad_streak: int = 0                  # consecutive ones so far


def generator_batch(state: DistillState, cfg: DistillConfig) -> tuple[torch.Tensor, torch.Tensor, int]:
    """x0 = G(x_{t_k}, t_k, y) with grad; x_{t_k} from the student's own k earlier steps (DMD2 backward simulation)."""
    gen, g = state.gen, state.rng
    idx = torch.randint(0, len(state.conds), (cfg.batch,), generator=g)
    cond = state.conds[idx]                                                    # [B,L,D]
    z = torch.randn(gen.sample_shape(cfg.batch), generator=g).to(cond.device)  # [B,C,h,w]
    k = int(torch.randint(0, len(gen.timesteps), (), generator=g))
    with torch.no_grad():
        x_t = rollout(lambda x, t: gen.x0(x, t, cond), z, gen.timesteps, gen.alphas_cumprod, g, until=k,
                      clip=gen.clip)
    t = torch.full((cfg.batch,), gen.timesteps[k], dtype=torch.long, device=cond.device)
    return gen.x0(x_t, t, cond), cond, k


def step_guidance(gcfg: GuidanceConfig, cfg: DistillConfig, k: int) -> GuidanceConfig:
    """The GuidanceConfig for samples of few-step step k: the real score's CFG may differ per step."""
    return replace(gcfg, cfg_scale=cfg.step_cfg_scales[k]) if cfg.step_cfg_scales else gcfg


def distill_step(state: DistillState, teacher, cfg: DistillConfig, gcfg: GuidanceConfig) -> dict:
    """One generator update (and cfg.fake_updates fake-score updates inside score_distillation_step)."""
    x0, cond, k = generator_batch(state, cfg)
    prompts = Prompts(cond, state.uncond.expand(len(cond), -1, -1))
    out = score_distillation_step(teacher, x0, prompts, step_guidance(gcfg, cfg, k), state.rng, aux=state.fake)
    loss = out.loss
    reg = torch.zeros(())
    if cfg.regression_weight > 0 and state.pairs is not None:
        z, x_ref, pidx = state.pairs
        j = torch.randint(0, len(z), (cfg.batch,), generator=state.rng)
        t = torch.full((cfg.batch,), state.gen.t_star, dtype=torch.long, device=z.device)
        reg = F.mse_loss(state.gen.x0(z[j], t, state.conds[pidx[j]]), x_ref[j])
        loss = loss + cfg.regression_weight * reg
    state.opt.zero_grad(set_to_none=True)
    loss.backward()
    state.step += 1
    if not finite_step(loss, state.gen.params, out):  # skip: no update, optimizer state untouched
        state.opt.zero_grad(set_to_none=True)
        state.skipped, state.bad_streak = state.skipped + 1, state.bad_streak + 1
        return {"step": state.step, "loss": None, "skipped": True}
    state.bad_streak = 0
    gnorm = (torch.nn.utils.clip_grad_norm_(state.gen.params, cfg.max_grad_norm) if cfg.max_grad_norm > 0
             else torch.zeros(()))
    state.opt.step()
    if state.ema is not None:
        ema_lerp_(state.ema, state.gen.params, cfg.ema_decay)
    return {"step": state.step, "loss": out.loss.item(), "reg": reg.item(), "grad_norm": float(gnorm),
            "grad_abs": out.grad.abs().mean().item()}


def init_state(teacher, cfg: DistillConfig, teacher_ref: str | None = None) -> DistillState:
    """Generator (teacher copy), fake score, optimiser, prompt embeddings and (if asked) regression pairs."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    prompts = cfg.prompts or default_prompts()
    gen = make_generator(teacher, cfg.timesteps, cfg.lora_rank, run_meta(cfg, teacher_ref, prompts))
    if cfg.resolution:
        vae = getattr(teacher, "vae", None)
        gen.size = cfg.resolution // (2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1)
    fake = FakeScore(teacher, lr=cfg.lr_fake, betas=tuple(cfg.adam_betas)) if METHODS[cfg.method][1] else None
    opt = torch.optim.AdamW(gen.params, lr=cfg.lr_gen, betas=tuple(cfg.adam_betas), weight_decay=cfg.weight_decay)
    conds = teacher.encode_prompt(prompts)
    uncond = teacher.encode_prompt([cfg.uncond_prompt])
    state = DistillState(gen, fake, opt, conds, uncond, g)
    if cfg.ema_decay > 0:
        state.ema = [p.detach().clone() for p in gen.params]
    if cfg.regression_weight > 0:
        state.pairs = regression_pairs(teacher, gen, conds, uncond, cfg,
                                       guidance_config(cfg, teacher.default_cfg).cfg_scale, g)
    return state


def run_meta(cfg: DistillConfig, teacher_ref: str | None, prompts: list[str] | None = None) -> dict:
    """What generator.json records about a run: teacher, its text encoder, the method, the prompts."""
    return {"teacher": teacher_ref or cfg.teacher or "embedded", "text_encoder": _text_encoder_ref(teacher_ref),
            "method": cfg.method, "prompts": prompts or cfg.prompts or default_prompts()}


def _text_encoder_ref(teacher_ref: str | None) -> str | None:
    from .teachers import DEFAULT_TEACHER

    folder = Path(teacher_ref) if teacher_ref not in (None, "", "embedded", "shapes") else DEFAULT_TEACHER
    meta = folder / "teacher.json"
    if meta.is_file():
        return json.loads(meta.read_text()).get("text_encoder")
    return str(folder / "text_encoder") if (folder / "text_encoder").is_dir() else teacher_ref


def train_score(teacher, cfg: DistillConfig, run: Run, data=None) -> Generator:
    """DMD / Diff-Instruct / SDS generator training through guidance.score_distillation_step."""
    state = init_state(teacher, cfg, run.meta.get("teacher"))
    gcfg = guidance_config(cfg, teacher.default_cfg)
    while state.step < cfg.steps:
        m = distill_step(state, teacher, cfg, gcfg)
        if m.get("skipped"):
            warnings.warn(f"step {state.step}: non-finite loss or gradient, generator update skipped "
                          f"({state.bad_streak} in a row, limit {cfg.max_bad_steps})", DreamerWarning, stacklevel=2)
            if state.bad_streak >= cfg.max_bad_steps:
                kept = (f"the last saved {run.out / 'generator'} is kept" if (run.out / "generator").is_dir()
                        else "no generator had been saved yet")
                raise NumericalFault(f"stopped at step {state.step}: {state.bad_streak} consecutive non-finite "
                                     f"losses or gradients ({state.skipped} skipped in all); {kept}; lower lr_gen "
                                     f"or cfg_scale")
        run.log({k: v for k, v in m.items() if k != "step"}, last=state.step == cfg.steps)
        saving_ema = state.ema is not None and cfg.save_every and state.step % cfg.save_every == 0
        if saving_ema:
            swap_ema(state)                       # save the EMA weights, then train on
        run.maybe_save(state.gen, state.step)
        if saving_ema:
            swap_ema(state)
    if state.ema is not None:
        swap_ema(state)                           # the returned (and saved) generator carries the EMA weights
    return state.gen


@torch.no_grad()
def swap_ema(state: DistillState) -> None:
    """Exchange the generator's trainable weights with their EMA copies (twice restores them)."""
    for p, e in zip(state.gen.params, state.ema):
        tmp = p.detach().clone()
        p.copy_(e)
        e.copy_(tmp)


# The one table: method name -> trainer(teacher, cfg, run, data=None) -> Generator.
TRAINERS = {
    "dmd": train_score,
    "diff_instruct": train_score,
    "sds": train_score,
    "guidance": guidance_distill.train,
    "progressive": progressive.train,
    "consistency": consistency.train,
    "noise_lora": noise_lora.train,
    "kd": kd.train_kd,
    "reflow": kd.train_reflow,
    "add": adversarial.train,
}


def distill(cfg: DistillConfig, out_dir: str | Path, teacher=None, log=print) -> Generator:
    """Train a generator per `cfg`, save it (diffusers folder) to out_dir with config.yaml and log.jsonl.

    cfg.teacher may also be a distilled generator folder (e.g. a guidance-distilled model), used as the teacher.
    """
    torch.set_num_threads(cfg.threads)
    validate(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_yaml(cfg, out / "config.yaml")
    teacher = teacher if teacher is not None else load_any_teacher(cfg.teacher, dtype=cfg.dtype, device=cfg.device)
    ref = base_teacher_ref(teacher, cfg.teacher)
    if cfg.lora_rank > 0 and getattr(teacher, "gen", None) is not None:
        raise ConfigError("lora_rank > 0 needs a diffusers teacher (the LoRA base), not a generator folder")
    meta = run_meta(cfg, ref)
    if ref != cfg.teacher and cfg.teacher is not None:
        meta["init"] = str(cfg.teacher)
    warn_if_truncated(teacher, meta["prompts"])
    run = Run(out, cfg, teacher.scheduler, log, meta)
    gen = TRAINERS[cfg.method](teacher, cfg, run)
    run.save(gen)
    return gen


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="distill-dmd", help="config name in configs/ or a YAML path")
    ap.add_argument("--out", required=True, help="run folder; the generator lands in OUT/generator")
    ap.add_argument("overrides", nargs="*", help="key=value overrides, e.g. steps=100 batch=4")
    args = ap.parse_args(argv)
    try:
        cfg = load_distill_config(args.config, args.overrides)
    except ConfigError as e:
        raise SystemExit(f"error: {e}")
    distill(cfg, args.out)


if __name__ == "__main__":
    main()
