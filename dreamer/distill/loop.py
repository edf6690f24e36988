"""The distillation application: a recipe (DistillConfig) -> the trainer of its method (trainers.TRAINERS) -> a
generator folder (diffusers format) in OUT/generator, with config.yaml, log.jsonl and (score trainers) a resumable
checkpoint.pt beside it."""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from guidance.fsdp import unsharded_copy

from ..common.distributed import init as dist_init
from ..common.distributed import shutdown as dist_shutdown
from ..common.distributed import is_main, rank_world
from ..common.config import ConfigError, dump_yaml
from ..common.run_folder import resume_checkpoint as check_and_load
from ..common.view_prompts import warn_if_truncated
from .captions import run_captions
from .generator import Student
from .recipe import DistillConfig, validate
from .trainers import TRAINERS, progressive
from .trainers.toolkit import DistillRun, base_teacher_ref, load_any_teacher, run_meta, run_world

RESUMABLE = ("dmd", "diff_instruct", "sds")          # trainers that write and read OUT/checkpoint.pt
DATA_METHODS = ("guidance", "progressive", "consistency", "noise_lora", "add")  # trainers that read config.data
# Keys that may differ between a run and its --resume (dreamer.common.run_folder.check_resume): how long and how
# visibly it runs, never the result of a step.
RESUME_FREE_KEYS = ("steps", "threads", "log_every", "save_every", "max_bad_steps")
CHECKPOINT_KEYS = ("step", "gen", "opt", "rng", "torch_rng", "run")


def check_data_sources(config: DistillConfig, world) -> None:
    """No silent fallback to another world: a teacher without a world (dreamer.common.world) needs captions, and
    has no world training images for data: shapes."""
    if world is not None:
        return
    if not config.prompts and not config.prompts_file:
        raise ConfigError(f"teacher {config.teacher} has no world (its teacher.json names none), so no world captions "
                          f"apply: give captions with prompts: [...] or prompts_file: / --prompts-file FILE")
    uses_data = config.method in DATA_METHODS or (config.gan.weight > 0 and config.method in RESUMABLE)
    if uses_data and config.data == "shapes":
        raise ConfigError(f"data: shapes (the world's training images) does not fit teacher {config.teacher}, which "
                          f"has no world; use data=teacher (the teacher's own samples)")


def resume_checkpoint(config: DistillConfig, out: Path) -> dict:
    """--resume: the run's config.yaml must match `config` except RESUME_FREE_KEYS; its checkpoint (weights-only)."""
    if config.method not in RESUMABLE:
        raise ConfigError(f"--resume supports the score trainers ({', '.join(RESUMABLE)}), not {config.method!r}")
    return check_and_load(out, config, RESUME_FREE_KEYS, CHECKPOINT_KEYS)


def total_updates(config: DistillConfig) -> int:
    """How many log lines (one per update) a run of `config` writes: the length of its progress bar."""
    if config.method == "progressive":
        return len(progressive.halving(config.progressive.teacher_steps, config.progressive.end_steps)) * \
            config.progressive.iters_per_stage
    if config.method == "reflow":
        return config.reflow.reflow_iters + config.reflow.distill_iters
    return config.steps


class ProgressLog:
    """DistillRun's log lines (JSON, every config.log_every updates) -> a bar on stderr with rate, ETA and the latest
    losses (created at the first line, after the data / teacher-pair phases); close() ends it."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.bar = total, desc, None

    def __call__(self, line: str) -> None:
        from ..common.progress import bar

        m = json.loads(line)
        if self.bar is None:
            self.bar = bar(desc=self.desc, total=self.total, unit="step")
        self.bar.update(max(0, min(int(m["step"]), self.total) - self.bar.n))
        self.bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in m.items()
                              if k not in ("step", "time_s")}, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def distill(config: DistillConfig, out_dir: str | Path, teacher=None, log: Callable[[str], None] | None = print,
            resume: bool = False, world=None) -> Student:
    """Train a generator per `config`, save it (diffusers folder) to out_dir with config.yaml and log.jsonl.

    config.teacher may also be a distilled generator folder (e.g. a guidance-distilled model), used as the teacher.
    log: called with every config.log_every-th log line (JSON); None shows a progress bar on stderr instead.
    resume: continue OUT/checkpoint.pt (score trainers). Everything is checked before anything is written.
    world: the teacher's World (dreamer.common.world; default: the one config.teacher's teacher.json names, if any), for
    the captions when config gives none and the images of data: shapes.
    Under torchrun (WORLD_SIZE > 1) the ranks join a process group (gloo on CPU, NCCL on CUDA); config.batch is the
    batch per rank, each rank trains on its rows of every global batch and rank 0 writes the run folder.
    """
    torch.set_num_threads(config.threads)
    validate(config)
    joined = torch.distributed.is_available() and torch.distributed.is_initialized()
    started = dist_init(config.device)[1] > 1 and not joined  # this call created the process group
    try:
        world = world if world is not None else run_world(config.teacher)
        return _distill(config, out_dir, teacher, log, resume, world)
    finally:
        if started:
            dist_shutdown()


def _distill(config: DistillConfig, out_dir, teacher, log, resume: bool, world) -> Student:
    main = is_main()
    out = Path(out_dir)
    run_captions(config)                                  # a bad caption file fails here, before any write
    if teacher is None:
        check_data_sources(config, world)
    sd = resume_checkpoint(config, out) if resume else None
    if teacher is None:
        teacher = load_any_teacher(config.teacher, dtype=config.dtype, device=config.device)
    ref = base_teacher_ref(teacher, config.teacher)
    if config.lora_rank > 0 and getattr(teacher, "gen", None) is not None:
        raise ConfigError("lora_rank > 0 needs a diffusers teacher (the LoRA base), not a generator folder")
    meta = run_meta(config, ref, world=world)
    if ref != config.teacher and config.teacher is not None:
        meta["init"] = str(config.teacher)
    warn_if_truncated(teacher, meta["prompts"])
    if rank_world()[1] > 1:
        torch.distributed.barrier()                       # every rank checked its inputs before rank 0 writes
    if main:
        out.mkdir(parents=True, exist_ok=True)
        dump_yaml(config, out / "config.yaml")
    progress = ProgressLog(total_updates(config), f"distill {config.method}") if log is None and main else None
    run_cfg = config if progress is None else replace(config, log_every=1)  # the bar sees every update
    run = DistillRun(out, run_cfg, teacher.scheduler, progress or log, meta, world)
    if sd is not None:
        run.continue_from(sd)
    try:
        gen = TRAINERS[config.method](teacher, config, run)
    finally:
        if progress is not None:
            progress.close()
    gen = replace(gen, unet=unsharded_copy(gen.unet))     # FSDP: a plain generator on every rank (a collective)
    run.save(gen)
    return gen
