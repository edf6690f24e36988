"""The distillation recipe: DistillConfig (configs/distill-*.yaml mirror it), its checks and its loader."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from guidance import GuidanceConfig, check_timesteps

from ..common.config import (CONFIG_DIR, MERGE_DEFAULT, ConfigError, apply_overrides, check_choices, check_finite,
                             from_dict, load_config_dict)
from ..common.teacher_source import teacher_ref
from .trainers import TRAINERS, progressive
from .trainers.adversarial import AddSettings, GanSettings
from .trainers.consistency import ConsistencySettings
from .trainers.guidance_distill import GuidanceDistillSettings
from .trainers.kd import ReflowSettings
from .trainers.noise_lora import NoiseLoraSettings
from .trainers.progressive import ProgressiveSettings
from .trainers.score import METHODS



# The distillation defaults of `guidance:` (GuidanceConfig's own are the 3D loop's): DMD's t ~ U{20, ..., 980},
# the teacher's default CFG, the fake score a full copy (aux_rank 0) with lr 1e-5, 5 TTUR updates per generator
# update (DMD2: 5-10; Diff-Instruct: 1), clip 1 (DMD2: 10), fitted on its own t draws (aux_shared_pass false, DMD2).
DISTILL_GUIDANCE = dict(method="dmd", cfg_scale=None, t_min=0.02, t_max=0.98, aux_cfg_scale=1.0, aux_lr=1e-5,
                        aux_rank=0, aux_updates=5, aux_max_grad_norm=1.0, aux_shared_pass=False)

# Keys of DistillConfig before `guidance:` was nested in it (recipes and run folders of an older dreamer): the one
# place the old names live, for from_dict's one-line error (dreamer.common.config.RENAMED).
RENAMED_KEYS = {"cfg_scale": "guidance.cfg_scale", "fake_cfg_scale": "guidance.aux_cfg_scale",
                "t_min": "guidance.t_min", "t_max": "guidance.t_max", "t_sampling": "guidance.t_sampling",
                "t_lognormal": "guidance.t_lognormal", "weighting": "guidance.weighting",
                "grad_clip": "guidance.grad_clip", "lr_fake": "guidance.aux_lr", "fake_updates": "guidance.aux_updates",
                "fake_max_grad_norm": "guidance.aux_max_grad_norm", "fake_lora_rank": "guidance.aux_rank",
                "fake_fresh_batches": "aux_fresh_batches"}


def distill_guidance(**overrides) -> GuidanceConfig:
    """DistillConfig's default `guidance:` (DISTILL_GUIDANCE), with `overrides`."""
    return GuidanceConfig(**{**DISTILL_GUIDANCE, **overrides})


@dataclass
class DistillConfig:
    """A distillation recipe (configs/distill-*.yaml)."""

    method: str = "dmd"                  # a key of TRAINERS
    teacher: str | None = None           # None (also "embedded" or ""): the embedded shapes teacher; else a diffusers
    #                                      folder / hub id
    steps: int = 1000                    # generator updates
    batch: int = 8
    lr_gen: float = 1e-5
    aux_fresh_batches: bool = False      # True: each fake-score (auxiliary) update draws its own generator batch (z,
    #                                      prompts, k), as DMD2; False: all guidance.aux_updates reuse the generator
    #                                      update's batch
    mixed_precision: Literal["fp32", "bf16", "no"] = "fp32"  # fp32 | bf16: autocast generator, fake score and
    #                                      teacher passes to bfloat16 (weights, optimizer states and the losses stay
    #                                      float32); "no" is the older spelling of fp32 (validate maps it)
    gradient_checkpointing: bool = False  # recompute generator / fake-score UNet blocks in backward (memory)
    fsdp: bool = False                   # under torchrun: shard generator and fake-score weights, gradients and Adam
    #                                      moments over the ranks (FSDP2 per UNet block; score methods, full copies)
    guidance: GuidanceConfig = field(default_factory=lambda: distill_guidance(), metadata={MERGE_DEFAULT: True})
    #                                      the real / fake scores (missing keys: DISTILL_GUIDANCE, not 3D's defaults):
    #                                      guidance.method follows `method` (validate); cfg_scale null = the teacher's
    #                                      default; aux_* = the fake score (aux_rank 0: a full copy of the teacher)
    dm_loss: Literal["per_image", "mean"] = "per_image"  # DM loss reduction: per_image (d loss / d x0 = grad / B)
    #                                      | mean (DMD2's 0.5 mse(reduction="mean"): grad / (B C H W); max_grad_norm
    #                                      then means DMD2's)
    regression_weight: float = 0.0       # DMD1 lambda (0.25) on teacher ODE pairs, MSE; 0 = off
    regression_pairs: int = 2            # pairs per prompt
    regression_ddim_steps: int = 50
    rollout_regression_weight: float = 0.0  # few-step k >= 1: 0.5 ||G(x_tk) - teacher DDIM from the same x_tk||^2
    rollout_regression_ddim_steps: int = 3  # teacher DDIM steps from t_k down to 0 for that target
    timesteps: list[int] = field(default_factory=lambda: [999])  # few-step schedule; [0] = t*
    step_cfg_scales: list[float] = field(default_factory=list)  # real-score CFG per few-step timestep; []:
    #                                      guidance.cfg_scale
    lora_rank: int = 0                   # > 0: train a LoRA adapter only
    prompts: list[str] = field(default_factory=list)  # empty: every catalogue prompt (embedded teacher only)
    prompts_file: str | None = None      # captions: a text file (one a line) or JSONL ({"caption"|"text"|"prompt": ..})
    prompt_cache: int = 4096             # up to this many prompts are encoded once; more are encoded per batch
    uncond_prompt: str = ""
    resolution: int | None = None        # pixels; None: the teacher UNet's sample size (x VAE factor)
    seed: int = 0
    adam_betas: tuple[float, float] = (0.0, 0.999)
    weight_decay: float = 0.0
    max_grad_norm: float = 10.0          # generator gradient-norm clip; 0 = off
    ema_decay: float = 0.0               # > 0: save an EMA of the generator weights (the fake score sees the online G)
    device: str = "cpu"
    dtype: str = "float32"               # teacher dtype (float16 / bfloat16 on GPUs; float64: generator too, tests)
    log_every: int = 10
    save_every: int = 0                  # 0: save at the end only
    threads: int = 1                     # torch CPU threads
    data: Literal["shapes", "teacher"] = "shapes"  # x0 pool: shapes (the world's training images, GT renders)
    #                                      | teacher (DDIM)
    data_size: int = 2304                # images in that pool
    guidance_distill: GuidanceDistillSettings = field(default_factory=GuidanceDistillSettings)
    progressive: ProgressiveSettings = field(default_factory=ProgressiveSettings)
    consistency: ConsistencySettings = field(default_factory=ConsistencySettings)
    noise_lora: NoiseLoraSettings = field(default_factory=NoiseLoraSettings)
    reflow: ReflowSettings = field(default_factory=ReflowSettings)
    add: AddSettings = field(default_factory=AddSettings)
    gan: GanSettings = field(default_factory=GanSettings)  # dmd / diff_instruct: DMD2's GAN term (weight 0 = off)
    max_bad_steps: int = 20              # stop after this many consecutive non-finite losses / gradients
    RENAMED_KEYS: ClassVar[dict[str, str]] = RENAMED_KEYS  # older keys -> new (from_dict's one-line error)

    def __post_init__(self):
        self.teacher = teacher_ref(self.teacher)     # the embedded teacher's names -> None


def validate(config: DistillConfig) -> DistillConfig:
    """Raise ConfigError on values the dataclass types cannot catch."""
    if config.method not in TRAINERS:
        raise ConfigError(f"'method' must be one of {', '.join(TRAINERS)}, got {config.method!r}")
    check_choices(config)                                # the Literal fields of a config built in code
    if config.mixed_precision == "no":                   # the older spelling (YAML reads a bare no as false)
        config.mixed_precision = "fp32"
    if config.prompts and config.prompts_file:
        raise ConfigError("give either 'prompts' or 'prompts_file', not both")
    if config.data_size < 1:
        raise ConfigError(f"'data_size' must be >= 1, got {config.data_size}")
    try:
        check_timesteps(config.timesteps)
    except ValueError as e:
        raise ConfigError(f"'timesteps': {e}") from None
    try:
        progressive.halving(config.progressive.teacher_steps, config.progressive.end_steps)
    except ValueError as e:
        if config.method == "progressive":
            raise ConfigError(f"'progressive': {e}") from None
    c = config.consistency
    if config.method == "consistency" and not (0 < c.skip < 1000 and 1000 % c.skip == 0 and 0 <= c.ema < 1):
        raise ConfigError(f"'consistency': skip must divide 1000 and 0 <= ema < 1, got {c.skip}, {c.ema}")
    if config.method == "add" and config.add.features != "unet":
        raise ConfigError(f"'add.features' must be unet (the shapes evaluator judges the benchmark and is not a "
                          f"training signal), got {config.add.features!r}")
    if config.step_cfg_scales and len(config.step_cfg_scales) != len(config.timesteps):
        raise ConfigError(f"'step_cfg_scales' needs one CFG scale per timestep ({len(config.timesteps)}), "
                          f"got {len(config.step_cfg_scales)}")
    if min(config.gan.weight, config.gan.lr_disc) < 0 or not 0 <= config.gan.t_max <= 1 or config.gan.head_width < 1:
        raise ConfigError(f"'gan': need weight, lr_disc >= 0, 0 <= t_max <= 1, head_width >= 1, got {config.gan}")
    if config.gan.weight > 0 and config.method not in METHODS:
        raise ConfigError(f"'gan.weight' applies to the score methods ({', '.join(METHODS)}), not {config.method!r}")
    g = config.guidance
    if config.fsdp and (config.method not in METHODS or config.lora_rank or g.aux_rank):
        raise ConfigError(f"'fsdp' shards the full generator and fake-score copies of the score methods "
                          f"({', '.join(METHODS)}) with lora_rank = guidance.aux_rank = 0; got method "
                          f"{config.method!r}, lora_rank {config.lora_rank}, guidance.aux_rank {g.aux_rank}")
    if not 0 <= config.ema_decay < 1:
        raise ConfigError(f"'ema_decay' must be in [0, 1), got {config.ema_decay}")
    want = config.method if config.method in METHODS else "sds" if config.method == "add" else None
    if want is not None and g.method not in (want, DISTILL_GUIDANCE["method"]):
        raise ConfigError(f"'guidance.method' follows 'method' in distillation (method {config.method!r} guides with "
                          f"{want!r}); leave it out, got {g.method!r}")
    if want is not None:
        g.method = want                                  # what the run used, in its config.yaml
    if g.t_sampling == "anneal":
        raise ConfigError("'guidance.t_sampling' must be uniform or lognormal in distillation (anneal follows the "
                          "3D loop's t_max ramp)")
    if g.aux_shared_pass:
        raise ConfigError("'guidance.aux_shared_pass' must be false in distillation (the fake score draws its own "
                          "t, as DMD2)")
    if not 0 <= g.t_min < g.t_max <= 1:
        raise ConfigError(f"need 0 <= guidance.t_min < guidance.t_max <= 1, got {g.t_min}, {g.t_max}")
    check_finite(config)
    for k in ("steps", "batch", "guidance.aux_updates", "regression_pairs", "regression_ddim_steps", "threads",
              "rollout_regression_ddim_steps", "log_every", "max_bad_steps", "save_every"):
        v = getattr(g, k.split(".")[1]) if k.startswith("guidance.") else getattr(config, k)
        if v < (0 if k in ("guidance.aux_updates", "save_every") else 1):
            raise ConfigError(f"'{k}' must be {'>= 0' if k in ('guidance.aux_updates', 'save_every') else 'positive'}, "
                              f"got {v}")
    if g.cfg_scale is not None and g.cfg_scale < 0:
        raise ConfigError(f"'guidance.cfg_scale' must be >= 0 (or null: the teacher's default), got {g.cfg_scale}")
    if min(g.aux_max_grad_norm, g.t_lognormal[1], g.aux_rank, g.grad_clip) < 0 or config.prompt_cache < 1:
        raise ConfigError("guidance.aux_max_grad_norm, guidance.aux_rank, guidance.grad_clip and "
                          "guidance.t_lognormal's std must be >= 0, prompt_cache >= 1")
    if min(config.lr_gen, g.aux_lr, config.regression_weight, config.rollout_regression_weight, config.lora_rank) < 0:
        raise ConfigError("learning rates, regression_weight, rollout_regression_weight and lora_rank must be >= 0")
    if config.rollout_regression_weight > 0 and min(config.timesteps) + 1 < config.rollout_regression_ddim_steps:
        raise ConfigError(f"'rollout_regression_ddim_steps' ({config.rollout_regression_ddim_steps}) must not exceed "
                          f"the last few-step timestep + 1 ({min(config.timesteps) + 1})")
    if config.resolution is not None and (config.resolution < 8 or config.resolution % 8):
        raise ConfigError(f"'resolution' must be a positive multiple of 8 (the UNet downsamples by 2s), "
                          f"got {config.resolution}")
    if any(not p.strip() for p in config.prompts):
        raise ConfigError("'prompts' must not contain empty prompts")
    return config


def load_distill_config(name_or_path: str | Path, overrides: list[str] = ()) -> DistillConfig:
    """YAML recipe (with `base:` inheritance) + key=value overrides -> validated DistillConfig."""
    data = apply_overrides(load_config_dict(name_or_path, CONFIG_DIR), list(overrides))
    return validate(from_dict(DistillConfig, data))
