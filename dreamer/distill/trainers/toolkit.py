"""What every distillation trainer shares: prompts, teacher DDIM / denoiser, data pools, weights, the run log.

A trainer is `train(teacher, config: DistillConfig, run: DistillRun, data: Data | None = None) -> Student`; the
table of trainers is `dreamer.distill.trainers.TRAINERS`. Every update goes through `DistillRun.step` (the guarded
optimizer step of dreamer.common.run_folder: a non-finite loss or gradient skips the update and is counted).
Teachers are used only through their protocol (`eps` via `guidance.teacher_cfg`, `alphas_cumprod`, `encode_prompt`,
`encode`, `decode`).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from guidance import Prompts, map_chunks, randint_rows, rank_world, teacher_cfg, uniform_timesteps, x0_from_eps
from guidance.fsdp import unsharded_copy

from ...common.config import ConfigError
from ...common.run_folder import RunFolder, StepGuard
from .. import generator as _generator
from ..generator import Student, load_generator
from ..sampling import Denoise, rollout


# ----------------------------------------------------------------------------------------------- prompts, teacher
def default_prompts(world) -> list[str]:
    """The captions of a run that gives none: its teacher's world's training captions (World.captions); a teacher
    without a world has none to offer (ConfigError)."""
    if world is None:
        raise ConfigError("the teacher has no world (teacher.json names none), so there are no default captions: "
                          "give captions with prompts: [...] or prompts_file: / --prompts-file FILE")
    return world.captions()


def _base_teacher(ref: str | None) -> str | None:
    """The diffusers teacher a recipe's `teacher` stands for (a generator folder: the teacher it records)."""
    if ref and (Path(ref) / _generator.META).is_file():
        return json.loads((Path(ref) / _generator.META).read_text()).get("teacher")
    return ref


def run_world(teacher_ref: str | None):
    """The World of a run's teacher (dreamer.common.world; a generator folder: its base teacher's), or None."""
    from ...common.teacher_source import teacher_world

    return teacher_world(_base_teacher(teacher_ref))


def pool_captions(captions, limit: int, g: torch.Generator) -> list[str]:
    """The captions a teacher-sample pool is built on: all when there are at most `limit`, else `limit` of them
    drawn without replacement (seeded by g, kept in file order) and read by index, so a large caption file is
    never loaded or encoded whole."""
    if len(captions) <= limit:
        return list(captions)
    pick = torch.randperm(len(captions), generator=g)[:limit].sort().values
    return [captions[int(i)] for i in pick]


def teacher_clip(teacher) -> float | None:
    """The clip_sample range of a pixel-space teacher (None for latent teachers or clip_sample off)."""
    sc = getattr(teacher, "scheduler", None)
    if sc is None or getattr(teacher, "vae", None) is not None or not sc.config.get("clip_sample", False):
        return None
    return float(sc.config.get("clip_sample_range", 1.0))


def teacher_denoiser(teacher, cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> Denoise:
    """x0_hat(x_t, t) of the teacher with CFG (one batched pass, guidance.teacher_cfg); cond/uncond [B,L,D]."""
    prompts = Prompts(cond, uncond.expand(len(cond), -1, -1))

    def denoise(x, t):
        eps, _ = teacher_cfg(teacher, x, t, prompts, scale)
        return x0_from_eps(x, eps, t, teacher.alphas_cumprod)
    return denoise


def ddim_sample(teacher, cond: torch.Tensor, uncond: torch.Tensor, cfg: float, steps: int, z: torch.Tensor,
                clip: float | None = None, t_start: int | None = None) -> torch.Tensor:
    """Deterministic DDIM (Song et al. 2021, eta = 0) with CFG over teacher.alphas_cumprod; z [B,C,h,w] -> x0.

    t_start: z is x_{t_start} (not pure noise) and the `steps` trailing-spaced steps run from t_start down.
    """
    T = len(teacher.alphas_cumprod) if t_start is None else t_start + 1
    with torch.no_grad():
        return rollout(teacher_denoiser(teacher, cond, uncond, cfg), z, uniform_timesteps(steps, T),
                       teacher.alphas_cumprod, ddim=True, clip=clip)


def regression_pairs(teacher, gen: Student, conds: torch.Tensor, uncond: torch.Tensor, config, scale: float,
                     g: torch.Generator, chunk: int = 64) -> tuple[torch.Tensor, ...]:
    """Teacher ODE pairs (DMD1 regression, Luhman & Luhman KD, reflow): z [N,C,h,w], x0 [N,C,h,w], prompt idx [N]."""
    from ...common.progress import bar

    idx = torch.arange(len(conds)).repeat_interleave(config.regression_pairs)
    z = torch.randn(gen.sample_shape(len(idx)), generator=g).to(conds.device)
    _, world = rank_world()
    with bar(desc=f"teacher DDIM-{config.regression_ddim_steps} pairs", total=-(-len(idx) // world), unit="pair") as b:
        def pairs(i: int, j: int) -> torch.Tensor:                              # x0 [j-i,C,h,w]
            x0 = ddim_sample(teacher, conds[idx[i:j]], uncond, scale, config.regression_ddim_steps, z[i:j],
                             teacher_clip(teacher))
            b.update(j - i)
            return x0
        x0 = map_chunks(pairs, len(idx), chunk, conds.device)                 # data parallel: chunks split
    return z, x0, idx


class GeneratorTeacher:
    """A distilled generator used as a teacher (e.g. a guidance-distilled model before progressive / consistency
    distillation, Meng et al. 2023 sec. 3.2): CFG is folded in, so default_cfg = 1 and one pass per step."""

    def __init__(self, gen: Student, base):
        self.gen, self.base = gen, base
        self.unet, self.scheduler, self.vae = gen.unet, base.scheduler, base.vae
        self.prediction_type, self.alphas_cumprod = gen.prediction_type, gen.alphas_cumprod
        self.num_train_timesteps = len(gen.alphas_cumprod)
        self.default_cfg, self.guidance = 1.0, gen.guidance

    def eps(self, x_t, t, cond, **kw):
        return self.gen.eps(x_t, t, cond, **kw)

    def encode(self, rgb):
        return self.base.encode(rgb)

    def decode(self, x0):
        return self.base.decode(x0)

    def encode_prompt(self, prompts):
        return self.base.encode_prompt(prompts)


def load_any_teacher(ref: str | None, **options):
    """A diffusers teacher (None: the embedded one) or a distilled generator folder (has generator.json)."""
    from ...common.teacher_source import load_teacher
    from ..generator import META, teacher_dir

    if ref and (Path(ref) / META).is_file():
        gen = load_generator(ref)
        return GeneratorTeacher(gen, load_teacher(teacher_dir(gen.meta), **options))
    return load_teacher(ref, **options)


def base_teacher_ref(teacher, ref: str | None) -> str | None:
    """The diffusers teacher behind `teacher` (what generator.json records for text encoder, VAE, LoRA base)."""
    return teacher.gen.meta.get("teacher") if isinstance(teacher, GeneratorTeacher) else ref


# ----------------------------------------------------------------------------------------------- data
@dataclass
class Data:
    """Training images in model space x0 [N,C,h,w] with prompt index [N] into `prompts` (embedded as conds)."""

    x0: torch.Tensor
    idx: torch.Tensor
    prompts: list[str]
    conds: torch.Tensor      # [P,L,D]
    uncond: torch.Tensor     # [1,L,D]

    def batch(self, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """x0 [n,C,h,w] and cond [n,L,D] drawn with replacement."""
        j = randint_rows(len(self.x0), n, g)         # data parallel: this rank's rows of the global draw
        return self.x0[j], self.conds[self.idx[j]]


def data_pool(teacher, gen: Student, config, g: torch.Generator, world=None) -> Data:
    """config.data = "shapes": the world's training images (World.training_images) encoded by the teacher; "teacher":
    teacher DDIM samples (data-free). world: the run's (DistillRun.world); data: shapes needs one."""
    from ...common.progress import phase

    if config.data == "shapes" and world is None:
        raise ConfigError("data: shapes (the world's training images) needs a teacher with a world (teacher.json "
                          "names none); use data=teacher (the teacher's own samples)")
    uncond = teacher.encode_prompt([config.uncond_prompt])
    if config.data == "shapes":
        factor = getattr(teacher, "vae_scale_factor", 1) if getattr(teacher, "vae", None) is not None else 1
        with phase(f"rendering {config.data_size} {world.name} training images"):
            rgb, names = world.training_images(config.data_size, gen.sample_shape(1)[-1] * factor, g)
            prompts = list(dict.fromkeys(names))
            pos = {p: i for i, p in enumerate(prompts)}
            with torch.no_grad():                                               # data parallel: chunks split
                x0 = map_chunks(lambda i, j: teacher.encode(rgb[i:j]), len(rgb), 64, uncond.device)
            conds = teacher.encode_prompt(prompts)
        return Data(x0, torch.tensor([pos[p] for p in names]), prompts, conds, uncond)
    from ..captions import encode_texts, run_captions

    prompts = pool_captions(run_captions(config) or default_prompts(world), config.data_size, g)
    conds = encode_texts(teacher, prompts)
    reps = max(1, -(-config.data_size // len(prompts)))
    _, x0, idx = regression_pairs(teacher, gen, conds, uncond, _With(config, regression_pairs=reps),
                                  scale_of(teacher, config), g)
    return Data(x0, idx, prompts, conds, uncond)


class _With:
    """config with a few attributes replaced (read-only view)."""

    def __init__(self, config, **kw):
        self._config, self._kw = config, kw

    def __getattr__(self, k):
        return self._kw[k] if k in self._kw else getattr(self._config, k)


def scale_of(teacher, config) -> float:
    """The teacher CFG scale of a recipe (None: the teacher's default)."""
    scale = config.guidance.cfg_scale
    return float(teacher.default_cfg if scale is None else scale)


# ----------------------------------------------------------------------------------------------- losses, steps
def weighted_mse(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """mean_B w_b * mean_CHW (a - b)^2; a, b [B,...], w [B]."""
    return (w.to(a) * (a - b).pow(2).flatten(1).mean(1)).mean()


def make_optimizer(params, config, lr: float | None = None) -> torch.optim.Optimizer:
    """Every trainer's optimizer: AdamW with lr (default config.lr_gen), config.adam_betas and config.weight_decay."""
    return torch.optim.AdamW(params, lr=config.lr_gen if lr is None else lr, betas=tuple(config.adam_betas),
                             weight_decay=config.weight_decay)


# ----------------------------------------------------------------------------------------------- run folder
def run_meta(config, teacher_ref: str | None, prompts=None, world=None) -> dict:
    """What generator.json records about a run: teacher, its text encoder, the method, the prompts (a caption
    file: its path, count and first 64 captions; none: the world's, default_prompts)."""
    from ..captions import run_captions

    prompts = prompts or run_captions(config) or default_prompts(world)
    from ...common.teacher_source import teacher_name

    meta = {"teacher": teacher_name(teacher_ref or config.teacher), "text_encoder": _text_encoder_ref(teacher_ref),
            "method": config.method, "prompts": list(prompts[:64] if config.prompts_file else prompts)}
    if config.prompts_file:
        meta.update(prompts_file=str(config.prompts_file), n_prompts=len(prompts))
    return meta


def _text_encoder_ref(teacher_ref: str | None) -> str | None:
    from ...common.teacher_source import DEFAULT_TEACHER, is_embedded
    from ...common.world import teacher_meta

    folder = DEFAULT_TEACHER if is_embedded(teacher_ref) else Path(teacher_ref)
    if (folder / "teacher.json").is_file():
        return teacher_meta(folder).get("text_encoder")
    return str(folder / "text_encoder") if (folder / "text_encoder").is_dir() else teacher_ref


class DistillRun(RunFolder):
    """A distillation run folder (dreamer.common.run_folder.RunFolder: checkpoint, log.jsonl, clock, the guarded step
    every trainer takes, skips counted in `bad`, config.max_bad_steps in a row stop the run) with the run's generator
    folders, its meta and world, and every config.log_every-th log line passed to `log`."""

    def __init__(self, out: str | Path, config, scheduler=None, log: Callable[[str], None] = print,
                 meta: dict | None = None, world=None):
        # data parallel: rank 0 alone writes the log, checkpoints and generator
        super().__init__(Path(out), StepGuard(limit=config.max_bad_steps, what="update", kept=self.kept),
                         main=rank_world()[0] == 0)
        self.config, self.scheduler, self._print = config, scheduler, log
        self.world = world if world is not None else run_world(config.teacher)  # prompts and data: shapes
        self.meta = dict(meta or {})           # recorded in generator.json (teacher, text encoder, method, ...)
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.start_sitting()
        self.step_count = 0                    # log lines written
        self.updates = 0                       # optimizer steps attempted through step()
        self.resume: dict | None = None        # a checkpoint (state_dict of a resumable trainer) to continue from

    def continue_from(self, sd: dict) -> None:
        """Resume bookkeeping: the log is cut back to the checkpoint's lines, the clock goes on from its time."""
        self.resume = sd
        self.step_count = int(sd["run"]["log_lines"])
        self.continue_clock(sd["run"]["seconds"])
        self.cut_log(self.step_count)

    def save_state(self, sd: dict) -> Path:
        """OUT/checkpoint.pt (RunFolder.save_checkpoint: atomic) with this run's bookkeeping."""
        sd["run"] = {"log_lines": self.step_count, "seconds": self.seconds}
        return self.save_checkpoint(sd)

    @property
    def seconds(self) -> float:
        """Training seconds over every sitting (RunFolder.train_seconds)."""
        return self.train_seconds

    def step(self, loss: torch.Tensor, opt: torch.optim.Optimizer, max_norm: float, params=None) -> float | None:
        """The guarded step (StepGuard.step): a skipped update warns, is counted, max_bad_steps in a row raise."""
        self.updates += 1
        return self.bad.step(self.updates, loss, opt, max_norm, params=params)

    def kept(self) -> str:
        final = self.out / "generator"
        return (f"the last saved {final} is kept" if final.is_dir() else "no generator had been saved yet") + \
            "; lower lr_gen or guidance.cfg_scale"

    def log(self, metrics: dict, last: bool = False) -> None:
        self.step_count += 1
        m = {"step": self.step_count, **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()},
             "time_s": round(self.seconds, 2)}
        if not self.main:
            return
        self.append_log(m)
        if self.step_count % max(self.config.log_every, 1) == 0 or last:
            self._print(json.dumps(m))

    def save(self, gen: Student, name: str = "generator") -> Path:
        """OUT/name (rank 0); every rank calls it: FSDP-sharded weights are gathered into a plain UNet first."""
        clock = self.timing()
        gen.meta.update(train_seconds=round(clock["train_seconds"], 1),
                        seconds_this_sitting=round(clock["seconds_this_sitting"], 1))
        unet = unsharded_copy(gen.unet, keep=self.main)
        if not self.main:
            return self.out / name
        return _generator.save_atomic(replace(gen, unet=unet), self.out / name, self.scheduler)

    def maybe_save(self, gen: Student, step: int) -> None:
        if self.config.save_every and step % self.config.save_every == 0:
            self.save(gen)
