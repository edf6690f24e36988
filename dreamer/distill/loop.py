"""The distillation application: a recipe (DistillConfig) -> the trainer of its method (trainers.TRAINERS) -> a
generator folder (diffusers format) in OUT/generator, with config.yaml and log.jsonl beside it."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from ..common.config import ConfigError, dump_yaml
from ..common.prompts import warn_if_truncated
from .generator import Generator
from .recipe import DistillConfig, validate
from .trainers import TRAINERS, progressive
from .trainers.common import DistillRun, base_teacher_ref, load_any_teacher, run_meta


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


def distill(cfg: DistillConfig, out_dir: str | Path, teacher=None,
            log: Callable[[str], None] | None = print) -> Generator:
    """Train a generator per `cfg`, save it (diffusers folder) to out_dir with config.yaml and log.jsonl.

    cfg.teacher may also be a distilled generator folder (e.g. a guidance-distilled model), used as the teacher.
    log: called with every cfg.log_every-th log line (JSON); None shows a progress bar on stderr instead.
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
    progress = ProgressLog(total_updates(cfg), f"distill {cfg.method}") if log is None else None
    run_cfg = cfg if progress is None else replace(cfg, log_every=1)  # the bar sees every update
    run = DistillRun(out, run_cfg, teacher.scheduler, progress or log, meta)
    try:
        gen = TRAINERS[cfg.method](teacher, cfg, run)
    finally:
        if progress is not None:
            progress.close()
    run.save(gen)
    return gen
