"""The distillation application: a recipe (DistillConfig) -> the trainer of its method (trainers.TRAINERS) -> a
generator folder (diffusers format) in OUT/generator, with config.yaml and log.jsonl beside it."""
from __future__ import annotations

from pathlib import Path

import torch

from ..common.config import ConfigError, dump_yaml
from ..common.prompts import warn_if_truncated
from .generator import Generator
from .recipe import DistillConfig, validate
from .trainers import TRAINERS
from .trainers.common import DistillRun, base_teacher_ref, load_any_teacher, run_meta


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
    run = DistillRun(out, cfg, teacher.scheduler, log, meta)
    gen = TRAINERS[cfg.method](teacher, cfg, run)
    run.save(gen)
    return gen
