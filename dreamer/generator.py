"""One/few-step generator G(z, y) initialised from the teacher's UNet (DMD, Yin et al. 2024, sec. 3).

G(x_t, t, y) = x0_hat = (x_t - s_t eps_G(x_t, t, y)) / a_t, with eps_G the copied UNet's output converted to eps
the same way as the teacher's; one-step sampling uses x_t = z ~ N(0, I) at t* = timesteps[0] (999).
Saved as a diffusers-format folder: unet/ (or LoRA weights), scheduler/, generator.json.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from guidance.losses import x0_from_eps
from guidance.teachers import unet_eps

from .fewstep import DEFAULT_TIMESTEPS, rollout, step_schedule

META = "generator.json"
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
ADAPTER = "generator"


@dataclass
class Generator:
    """The student: a UNet2DConditionModel, its eps conversion and its few-step timesteps (t* = timesteps[0])."""

    unet: torch.nn.Module
    prediction_type: str
    alphas_cumprod: torch.Tensor           # [T]
    timesteps: list[int] = field(default_factory=lambda: list(DEFAULT_TIMESTEPS))
    clip: float | None = None              # clamp x0_hat between sampling steps (teacher's clip_sample)
    lora_rank: int = 0                     # 0: full fine-tuning
    size: int | None = None                # model-space spatial size; None: the UNet's sample_size
    meta: dict = field(default_factory=dict)  # teacher ref, text encoder ref, training method, ...

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for p in self.unet.parameters() if p.requires_grad]

    @property
    def t_star(self) -> int:
        return int(self.timesteps[0])

    def x0(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """G(x_t, t, y): x_t [B,C,h,w], t [B] int, cond [B,L,D] -> x0_hat [B,C,h,w] (Tweedie from eps_G)."""
        eps = unet_eps(self.unet, self.prediction_type, self.alphas_cumprod, x_t, t, cond)
        return x0_from_eps(x_t, eps, t, self.alphas_cumprod)

    def sample_shape(self, n: int) -> tuple[int, ...]:
        c, r = self.unet.config.in_channels, self.size or self.unet.config.sample_size
        r = r if isinstance(r, int) else r[0]
        return (n, c, r, r)


def make_generator(teacher, timesteps=DEFAULT_TIMESTEPS, lora_rank: int = 0, meta: dict | None = None) -> Generator:
    """Deep-copy the teacher UNet (float32, trainable); lora_rank > 0 trains a peft LoRA adapter only."""
    unet = copy.deepcopy(teacher.unet).float().train()
    if lora_rank > 0:
        from peft import LoraConfig

        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=lora_rank, lora_alpha=lora_rank, init_lora_weights=True,
                                    target_modules=LORA_TARGETS), adapter_name=ADAPTER)
        for n, p in unet.named_parameters():
            p.requires_grad_("lora_" in n)
    else:
        unet.requires_grad_(True)
    sched = teacher.scheduler.config
    clip = float(sched.get("clip_sample_range", 1.0)) if sched.get("clip_sample", False) else None
    if teacher.vae is not None:
        clip = None  # latents are not range-limited
    return Generator(unet, teacher.prediction_type, teacher.alphas_cumprod, [int(t) for t in timesteps], clip=clip,
                     lora_rank=lora_rank, meta=dict(meta or {}))


def generate(gen: Generator, cond: torch.Tensor, z: torch.Tensor, steps: int | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Model-space samples [B,C,h,w] from z [B,C,h,w] in `steps` (default: all trained timesteps), no grad."""
    ts = step_schedule(steps or len(gen.timesteps), gen.timesteps, len(gen.alphas_cumprod))
    with torch.no_grad():
        return rollout(lambda x, t: gen.x0(x, t, cond), z, ts, gen.alphas_cumprod, generator, clip=gen.clip)


# ----------------------------------------------------------------------------------------------- save / load
def save_generator(gen: Generator, out_dir: str | Path, scheduler=None) -> Path:
    """Write unet/ (safetensors) or LoRA weights, scheduler/ and generator.json into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if gen.lora_rank > 0:
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        state = convert_state_dict_to_diffusers(get_peft_model_state_dict(gen.unet, adapter_name=ADAPTER))
        StableDiffusionPipeline.save_lora_weights(str(out), unet_lora_layers=state, safe_serialization=True)
    else:
        gen.unet.save_pretrained(str(out / "unet"), safe_serialization=True)
    if scheduler is not None:
        scheduler.save_pretrained(str(out / "scheduler"))
    meta = dict(gen.meta, timesteps=list(gen.timesteps), t_star=gen.t_star, prediction_type=gen.prediction_type,
                clip=gen.clip, lora_rank=gen.lora_rank, size=gen.size, format=1)
    (out / META).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def load_generator(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Generator:
    """Load a folder written by save_generator with stock diffusers classes; eval mode, no grad."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    path = Path(path)
    meta = json.loads((path / META).read_text())
    sched_dir = path / "scheduler"
    if not sched_dir.is_dir():
        sched_dir = Path(_teacher_dir(meta)) / "scheduler"
    scheduler = DDPMScheduler.from_pretrained(str(sched_dir))
    if meta.get("lora_rank", 0) > 0:
        unet = UNet2DConditionModel.from_pretrained(_teacher_dir(meta), subfolder="unet", torch_dtype=dtype)
        unet.load_lora_adapter(str(path), prefix="unet", weight_name=LORA_WEIGHTS, adapter_name=ADAPTER)
    else:
        unet = UNet2DConditionModel.from_pretrained(str(path), subfolder="unet", torch_dtype=dtype)
    unet.to(device).eval().requires_grad_(False)
    keys = ("timesteps", "t_star", "prediction_type", "clip", "lora_rank", "size", "format")
    return Generator(unet, meta["prediction_type"], scheduler.alphas_cumprod.to(torch.float32),
                     [int(t) for t in meta["timesteps"]], clip=meta.get("clip"),
                     lora_rank=int(meta.get("lora_rank", 0)), size=meta.get("size"),
                     meta={k: v for k, v in meta.items() if k not in keys})


def _teacher_dir(meta: dict) -> str:
    from .teachers import DEFAULT_TEACHER

    ref = meta.get("teacher")
    return str(DEFAULT_TEACHER) if ref in (None, "", "embedded", "shapes") else str(ref)


# ----------------------------------------------------------------------------------------------- sampling
def sample(gen: Generator, teacher_or_text, prompts: list[str], steps: int = 1, n: int = 1,
           seed: int = 0) -> torch.Tensor:
    """rgb [len(prompts) * n, 3, H, W] in [0,1]; teacher_or_text: a teacher (prompt encoder + decoder) or None.

    None loads the teacher recorded in generator.json (for its text encoder and VAE).
    """
    from .teachers import load_teacher

    front = teacher_or_text if teacher_or_text is not None else load_teacher(_teacher_dir(gen.meta))
    names = [p for p in prompts for _ in range(n)]
    dev = next(gen.unet.parameters()).device
    cond = front.encode_prompt(names).to(dev)                                  # [N,L,D]
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(gen.sample_shape(len(names)), generator=g).to(dev)         # [N,C,h,w]
    with torch.no_grad():
        return front.decode(generate(gen, cond, z, steps, g)).float().cpu()


def sample_cli(prompt: str | list[str], generator_dir: str | Path, steps: int = 1, n: int = 4,
               out_png: str | Path = "samples.png", seed: int = 0) -> Path:
    """`dreamer sample`: write an image grid (one row per prompt, n samples each) to out_png."""
    from .video import image_grid, save_png

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    rgb = sample(load_generator(generator_dir), None, prompts, steps, n, seed)
    return save_png(image_grid(rgb, nrow=n), out_png)
