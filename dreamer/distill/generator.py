"""One/few-step generator G(z, y) initialised from the teacher's UNet (DMD, Yin et al. 2024, sec. 3).

G(x_t, t, y) = x0_hat = (x_t - s_t eps_G(x_t, t, y)) / a_t, with eps_G the copied UNet's output converted to eps
the same way as the teacher's; one-step sampling uses x_t = z ~ N(0, I) at t* = timesteps[0] (999).
Saved as a diffusers-format folder: unet/ (or LoRA weights), scheduler/, generator.json.
"""
from __future__ import annotations

import copy
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from guidance import master_weights, unet_eps, x0_from_eps

from ..common.errors import DreamerError, NumericalFault
from .sampling import DEFAULT_TIMESTEPS, rollout, step_schedule

META = "generator.json"
SHIPPED_GENERATOR = Path(__file__).resolve().parents[1] / "assets" / "shapes-consistency-lora"  # `dreamer sample`
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
ADAPTER = "generator"


@dataclass
class Student:
    """The distilled one- / few-step model (the student of a distillation; saved as a `generator/` folder with
    generator.json): a UNet2DConditionModel, its eps conversion and its few-step timesteps (t* = timesteps[0]).
    Named apart from torch.Generator, the random-number generator that sits beside it in the same signatures."""

    unet: torch.nn.Module
    prediction_type: str
    alphas_cumprod: torch.Tensor           # [T]
    timesteps: list[int] = field(default_factory=lambda: list(DEFAULT_TIMESTEPS))
    clip: float | None = None              # clamp x0_hat between sampling steps (teacher's clip_sample)
    lora_rank: int = 0                     # 0: full fine-tuning
    size: int | None = None                # model-space spatial size; None: the UNet's sample_size
    meta: dict = field(default_factory=dict)  # teacher ref, text encoder ref, training method, ...
    sampler: str = "renoise"               # renoise (DMD2, consistency, LCM) | ddim (progressive, guidance, reflow)
    guidance: float | None = None          # CFG scale fed to a guidance-conditioned UNet (time_cond_proj_dim)
    boundary: float = 0.0                  # > 0: consistency skip-scaling with this timestep factor (LCM: 10)

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for p in self.unet.parameters() if p.requires_grad]

    @property
    def t_star(self) -> int:
        return int(self.timesteps[0])

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, w: torch.Tensor | None = None,
            **kw) -> torch.Tensor:
        """eps_G(x_t, t, y[, w]) [B,C,h,w]; w [B] (default self.guidance) only for a guidance-conditioned UNet."""
        dim = getattr(self.unet.config, "time_cond_proj_dim", None)
        if dim:
            if w is None:
                if self.guidance is None:
                    raise ValueError("this UNet takes a guidance scale: set Student.guidance or pass w")
                w = torch.full((x_t.shape[0],), float(self.guidance))
            kw["timestep_cond"] = guidance_embedding(w.to(x_t.device), dim).to(x_t)
        return unet_eps(self.unet, self.prediction_type, self.alphas_cumprod, x_t, t, cond, **kw)

    def x0(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        """G(x_t, t, y): x_t [B,C,h,w], t [B] int, cond [B,L,D] -> x0_hat [B,C,h,w] (Tweedie from eps_G).

        With `boundary` > 0 it is the consistency function f = c_skip(t) x_t + c_out(t) x0_hat (Song et al. 2023,
        eq. 3; LCM scalings), so f(x, 0) = x by construction.
        """
        x0 = x0_from_eps(x_t, self.eps(x_t, t, cond, w), t, self.alphas_cumprod)
        if self.boundary > 0:
            c_skip, c_out = boundary_scalings(t, self.boundary, x_t)
            x0 = c_skip * x_t + c_out * x0
        return x0

    def sample_shape(self, n: int) -> tuple[int, ...]:
        c, r = self.unet.config.in_channels, self.size or self.unet.config.sample_size
        r = r if isinstance(r, int) else r[0]
        return (n, c, r, r)


def boundary_scalings(t: torch.Tensor, scale: float, like: torch.Tensor, sigma_data: float = 0.5):
    """LCM's c_skip = sd^2 / ((k t)^2 + sd^2), c_out = k t / sqrt((k t)^2 + sd^2) (Luo et al. 2023, eq. 9; Song et al.
    2023, app. C), broadcast to `like`; c_skip(0) = 1 and c_out(0) = 0 exactly."""
    kt = (scale * t.to(like.device, torch.float64)).view(-1, *[1] * (like.dim() - 1))
    den = kt ** 2 + sigma_data ** 2
    return (sigma_data ** 2 / den).to(like), (kt / den.sqrt()).to(like)


def guidance_embedding(w: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of the CFG scale w [B] -> [B, dim] (Meng et al. 2023 condition the student on w; w * 1000
    as in LCM); fed to the UNet's time embedding through `timestep_cond`."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
    arg = (w.float() * 1000.0)[:, None] * freqs.to(w.device)[None]              # [B, half]
    return torch.cat([arg.sin(), arg.cos()], -1)


def with_guidance_input(unet, dim: int = 256):
    """A copy of a UNet2DConditionModel with a guidance-scale input (time_cond_proj_dim, zero-initialised), so the
    new model starts as exactly the conditional teacher; a UNet that already has one is returned unchanged."""
    if getattr(unet.config, "time_cond_proj_dim", None):
        return unet
    from diffusers import UNet2DConditionModel

    new = UNet2DConditionModel.from_config({**unet.config, "time_cond_proj_dim": dim})
    missing, unexpected = new.load_state_dict(unet.state_dict(), strict=False)
    if missing != ["time_embedding.cond_proj.weight"] or unexpected:
        raise ValueError(f"unexpected UNet layout when adding a guidance input: {missing} {unexpected}")
    torch.nn.init.zeros_(new.time_embedding.cond_proj.weight)
    return new.to(unet.device)


def make_generator(teacher, timesteps=DEFAULT_TIMESTEPS, lora_rank: int = 0, meta: dict | None = None,
                   sampler: str = "renoise", boundary: float = 0.0, guidance_dim: int = 0) -> Student:
    """Deep-copy the teacher UNet (trainable, guidance.master_weights: float32, float64 for a float64 teacher);
    lora_rank > 0 trains a peft LoRA adapter only; guidance_dim > 0 adds a guidance-scale input (guidance
    distillation)."""
    unet = master_weights(copy.deepcopy(teacher.unet), teacher.unet.dtype).train()
    if guidance_dim > 0:
        unet = master_weights(with_guidance_input(unet, guidance_dim), teacher.unet.dtype).train()
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
    return Student(unet, teacher.prediction_type, teacher.alphas_cumprod, [int(t) for t in timesteps], clip=clip,
                     lora_rank=lora_rank, meta=dict(meta or {}), sampler=sampler, boundary=boundary,
                     guidance=getattr(teacher, "guidance", None))


def sample_latents(gen: Student, cond: torch.Tensor, z: torch.Tensor, steps: int | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Model-space samples [B,C,h,w] from z [B,C,h,w] in `steps` (default: all trained timesteps), no grad."""
    ts = step_schedule(steps or len(gen.timesteps), gen.timesteps, len(gen.alphas_cumprod))
    with torch.no_grad():
        return rollout(lambda x, t: gen.x0(x, t, cond), z, ts, gen.alphas_cumprod, generator, clip=gen.clip,
                       ddim=gen.sampler == "ddim")


# ----------------------------------------------------------------------------------------------- save / load
def save_generator(gen: Student, out_dir: str | Path, scheduler=None) -> Path:
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
                clip=gen.clip, lora_rank=gen.lora_rank, size=gen.size, sampler=gen.sampler, guidance=gen.guidance,
                boundary=gen.boundary, format=1)
    (out / META).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def save_atomic(gen: Student, final: Path, scheduler=None) -> Path:
    """save_generator into FINAL.tmp, then swap folders: FINAL is always a complete generator (or FINAL.old is)."""
    if not all(bool(torch.isfinite(p).all()) for p in gen.params):
        raise NumericalFault(f"generator parameters are non-finite; kept the last saved {final}")
    tmp, old = final.with_name(final.name + ".tmp"), final.with_name(final.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    save_generator(gen, tmp, scheduler)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def generator_folder(path: str | Path) -> Path:
    """The generator folder itself, or the generator/ inside a `dreamer distill` run folder."""
    path = Path(path)
    return path / "generator" if not (path / META).is_file() and (path / "generator" / META).is_file() else path


def load_generator(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Student:
    """Load a folder written by save_generator (or a run folder holding one) with stock diffusers classes."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    path = generator_folder(path)
    meta = check_generator_folder(path)
    sched_dir = path / "scheduler"
    if not sched_dir.is_dir():
        sched_dir = Path(teacher_dir(meta)) / "scheduler"
    scheduler = DDPMScheduler.from_pretrained(str(sched_dir))
    if meta.get("lora_rank", 0) > 0:
        unet = UNet2DConditionModel.from_pretrained(teacher_dir(meta), subfolder="unet", torch_dtype=dtype,
                                                    use_safetensors=True)
        unet.load_lora_adapter(str(path), prefix="unet", weight_name=LORA_WEIGHTS, adapter_name=ADAPTER)
    else:
        unet = UNet2DConditionModel.from_pretrained(str(path), subfolder="unet", torch_dtype=dtype,
                                                    use_safetensors=True)
    unet.to(device).eval().requires_grad_(False)
    keys = ("timesteps", "t_star", "prediction_type", "clip", "lora_rank", "size", "format", "sampler", "guidance",
            "boundary")
    return Student(unet, meta["prediction_type"], scheduler.alphas_cumprod.to(torch.float32),
                     [int(t) for t in meta["timesteps"]], clip=meta.get("clip"),
                     lora_rank=int(meta.get("lora_rank", 0)), size=meta.get("size"),
                     meta={k: v for k, v in meta.items() if k not in keys}, sampler=meta.get("sampler", "renoise"),
                     guidance=meta.get("guidance"), boundary=float(meta.get("boundary", 0.0)))


def check_generator_folder(path: str | Path) -> dict:
    """generator.json of a folder written by `dreamer distill`, after checking its weights (one-line errors)."""
    from ..common.teacher_source import check_weights_folder

    path = generator_folder(path)
    if not (path / META).is_file():
        raise DreamerError(f"{path} is not a generator folder (no {META}; make one with dreamer distill)")
    try:
        meta = json.loads((path / META).read_text())
    except ValueError as e:
        raise DreamerError(f"{path / META} is corrupt ({e})") from None
    if not isinstance(meta, dict) or not {"prediction_type", "timesteps"} <= meta.keys():
        raise DreamerError(f"{path / META} is not a generator description (needs prediction_type, timesteps)")
    weights = path / (LORA_WEIGHTS if meta.get("lora_rank", 0) else "unet/diffusion_pytorch_model.safetensors")
    if not weights.is_file():
        raise DreamerError(f"generator {path} has no {weights.relative_to(path)}; only safetensors weights are "
                           f"loaded (pickle-based .bin / .pt weights are refused)")
    check_weights_folder(path)
    return meta


def teacher_dir(meta: dict) -> str:
    from ..common.teacher_source import DEFAULT_TEACHER, is_embedded

    ref = meta.get("teacher")
    return str(DEFAULT_TEACHER) if is_embedded(ref) else str(ref)


# ----------------------------------------------------------------------------------------------- sampling
def sample_images(gen: Student, teacher_or_text, prompts: list[str], steps: int = 1, n: int = 1,
           seed: int = 0) -> torch.Tensor:
    """rgb [len(prompts) * n, 3, H, W] in [0,1]; teacher_or_text: a teacher (prompt encoder + decoder) or None.

    None loads the teacher recorded in generator.json (for its text encoder and VAE).
    """
    from ..common.view_prompts import warn_if_truncated
    from ..common.teacher_source import load_teacher

    front = teacher_or_text if teacher_or_text is not None else load_teacher(teacher_dir(gen.meta))
    warn_if_truncated(front, prompts)
    names = [p for p in prompts for _ in range(n)]
    dev = next(gen.unet.parameters()).device
    cond = front.encode_prompt(names).to(dev)                                  # [N,L,D]
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(gen.sample_shape(len(names)), generator=g).to(dev)         # [N,C,h,w]
    with torch.no_grad():
        return front.decode(sample_latents(gen, cond, z, steps, g)).float().cpu()


def sample_cli(prompt: str | list[str], generator_dir: str | Path, steps: int = 1, n: int = 4,
               out_png: str | Path = "samples.png", seed: int = 0) -> Path:
    """`dreamer sample`: write a captioned image grid to out_png (one prompt: a square grid of its n samples;
    several: one row per prompt)."""
    from ..common.media import image_grid, save_png, square_nrow, with_caption
    from ..common.progress import run_phase

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    gen = run_phase("loading generator", load_generator, generator_dir)
    rgb = sample_images(gen, None, prompts, steps, n, seed)
    grid = image_grid(rgb, nrow=square_nrow(n) if len(prompts) == 1 else n)
    caption = f"{'; '.join(prompts)}  ({steps} step{'s' if steps > 1 else ''}, seed {seed})"
    return save_png(with_caption(grid, caption), out_png)
