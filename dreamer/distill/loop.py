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
DATA_METHODS = ("guidance", "progressive", "consistency", "noise_lora", "add")  # trainers that read cfg.data
# Keys that may differ between a run and its --resume (dreamer.common.run_folder.check_resume): how long and how
# visibly it runs, never the result of a step.
RESUME_FREE_KEYS = ("steps", "threads", "log_every", "save_every", "max_bad_steps")
CHECKPOINT_KEYS = ("step", "gen", "opt", "rng", "torch_rng", "run")


def check_data_sources(cfg: DistillConfig, world) -> None:
    """No silent fallback to another world: a teacher without a world (dreamer.common.world) needs captions, and
    has no world training images for data: shapes."""
    if world is not None:
        return
    if not cfg.prompts and not cfg.prompts_file:
        raise ConfigError(f"teacher {cfg.teacher} has no world (its teacher.json names none), so no world captions "
                          f"apply: give captions with prompts: [...] or prompts_file: / --prompts-file FILE")
    uses_data = cfg.method in DATA_METHODS or (cfg.gan.weight > 0 and cfg.method in RESUMABLE)
    if uses_data and cfg.data == "shapes":
        raise ConfigError(f"data: shapes (the world's training images) does not fit teacher {cfg.teacher}, which has "
                          f"no world; use data=teacher (the teacher's own samples)")


def resume_checkpoint(cfg: DistillConfig, out: Path) -> dict:
    """--resume: the run's config.yaml must match `cfg` except RESUME_FREE_KEYS; its checkpoint (weights-only)."""
    if cfg.method not in RESUMABLE:
        raise ConfigError(f"--resume supports the score trainers ({', '.join(RESUMABLE)}), not {cfg.method!r}")
    return check_and_load(out, cfg, RESUME_FREE_KEYS, CHECKPOINT_KEYS)


def total_updates(cfg: DistillConfig) -> int:
    """How many log lines (one per update) a run of `cfg` writes: the length of its progress bar."""
    if cfg.method == "progressive":
        return len(progressive.halving(cfg.progressive.teacher_steps, cfg.progressive.end_steps)) * \
            cfg.progressive.iters_per_stage
    if cfg.method == "reflow":
        return cfg.reflow.reflow_iters + cfg.reflow.distill_iters
    return cfg.steps


class ProgressLog:
    """DistillRun's log lines (JSON, every cfg.log_every updates) -> a bar on stderr with rate, ETA and the latest
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


def distill(cfg: DistillConfig, out_dir: str | Path, teacher=None, log: Callable[[str], None] | None = print,
            resume: bool = False, world=None) -> Student:
    """Train a generator per `cfg`, save it (diffusers folder) to out_dir with config.yaml and log.jsonl.

    cfg.teacher may also be a distilled generator folder (e.g. a guidance-distilled model), used as the teacher.
    log: called with every cfg.log_every-th log line (JSON); None shows a progress bar on stderr instead.
    resume: continue OUT/checkpoint.pt (score trainers). Everything is checked before anything is written.
    world: the teacher's World (dreamer.common.world; default: the one cfg.teacher's teacher.json names, if any), for
    the captions when cfg gives none and the images of data: shapes.
    Under torchrun (WORLD_SIZE > 1) the ranks join a process group (gloo on CPU, NCCL on CUDA); cfg.batch is the
    batch per rank, each rank trains on its rows of every global batch and rank 0 writes the run folder.
    """
    torch.set_num_threads(cfg.threads)
    validate(cfg)
    joined = torch.distributed.is_available() and torch.distributed.is_initialized()
    started = dist_init(cfg.device)[1] > 1 and not joined   # this call created the process group
    try:
        return _distill(cfg, out_dir, teacher, log, resume, world if world is not None else run_world(cfg.teacher))
    finally:
        if started:
            dist_shutdown()


def _distill(cfg: DistillConfig, out_dir, teacher, log, resume: bool, world) -> Student:
    main = is_main()
    out = Path(out_dir)
    run_captions(cfg)                                     # a bad caption file fails here, before any write
    if teacher is None:
        check_data_sources(cfg, world)
    sd = resume_checkpoint(cfg, out) if resume else None
    teacher = teacher if teacher is not None else load_any_teacher(cfg.teacher, dtype=cfg.dtype, device=cfg.device)
    ref = base_teacher_ref(teacher, cfg.teacher)
    if cfg.lora_rank > 0 and getattr(teacher, "gen", None) is not None:
        raise ConfigError("lora_rank > 0 needs a diffusers teacher (the LoRA base), not a generator folder")
    meta = run_meta(cfg, ref, world=world)
    if ref != cfg.teacher and cfg.teacher is not None:
        meta["init"] = str(cfg.teacher)
    warn_if_truncated(teacher, meta["prompts"])
    if rank_world()[1] > 1:
        torch.distributed.barrier()                       # every rank checked its inputs before rank 0 writes
    if main:
        out.mkdir(parents=True, exist_ok=True)
        dump_yaml(cfg, out / "config.yaml")
    progress = ProgressLog(total_updates(cfg), f"distill {cfg.method}") if log is None and main else None
    run_cfg = cfg if progress is None else replace(cfg, log_every=1)  # the bar sees every update
    run = DistillRun(out, run_cfg, teacher.scheduler, progress or log, meta, world)
    if sd is not None:
        run.continue_from(sd)
    try:
        gen = TRAINERS[cfg.method](teacher, cfg, run)
    finally:
        if progress is not None:
            progress.close()
    gen = replace(gen, unet=unsharded_copy(gen.unet))     # FSDP: a plain generator on every rank (a collective)
    run.save(gen)
    return gen
