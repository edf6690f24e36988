"""`dreamer` command line: generate (text-to-3D), export, distill, sample. Bad input -> one line, exit 2."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dreamer", description="Score distillation: text-to-3D and one-step generators.")
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="text-to-3D: optimise a 3D scene with a frozen 2D teacher")
    g.add_argument("prompt")
    g.add_argument("--config", default="gaussians-sds", help="recipe name in configs/ or a YAML path")
    g.add_argument("--teacher", default=None, help="diffusers folder or hub id (default: embedded shapes teacher)")
    g.add_argument("--out", default=None, help="run folder (default: runs/<prompt>-<config>)")
    g.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    g.add_argument("--quiet", action="store_true")
    g.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. train.steps=200")
    e = sub.add_parser("export", help="re-export meshes, video and report from a run folder's checkpoint")
    e.add_argument("run_dir")
    e.add_argument("overrides", nargs="*")
    d = sub.add_parser("distill", help="train a one/few-step generator with DMD or Diff-Instruct")
    d.add_argument("--config", default="distill-dmd")
    d.add_argument("--teacher", default=None)
    d.add_argument("--out", default="runs/distill")
    d.add_argument("overrides", nargs="*")
    s = sub.add_parser("sample", help="sample an image grid from a distilled generator")
    s.add_argument("prompt")
    s.add_argument("--generator", required=True)
    s.add_argument("--steps", type=int, default=1, choices=[1, 2, 3, 4])
    s.add_argument("-n", type=int, default=16)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="samples.png")
    return p


def _generate_config(name: str, prompt: str | None, teacher: str | None, overrides: list[str]):
    from .config import apply_overrides, from_dict, load_config_dict
    from .generate_config import GenerateConfig

    data = apply_overrides(load_config_dict(name, CONFIG_DIR), overrides)
    if prompt is not None:
        data["prompt"] = prompt
    if teacher is not None:
        data["teacher"] = teacher
    return from_dict(GenerateConfig, data)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")[:48] or "run"


def cmd_generate(a) -> None:
    from .generate import generate
    from .outputs import export_run

    cfg = _generate_config(a.config, a.prompt, a.teacher, a.overrides)
    out = Path(a.out or f"runs/{_slug(a.prompt)}-{Path(a.config).stem}")
    run = generate(cfg, out, resume=a.resume, progress=not a.quiet)
    metrics = export_run(run, out)
    print(f"done: {out}/report.html  (mesh.glb, mesh.obj, mesh.ply, turntable.mp4, metrics.json)")
    keys = ("train_seconds", "chamfer", "iou", "colour_error", "prompt_accuracy_8_views", "psnr_8_views")
    print("  " + "  ".join(f"{k}={metrics[k]:.4g}" for k in keys if isinstance(metrics.get(k), (int, float))))


def cmd_export(a) -> None:
    import torch

    from .generate import CKPT, Run
    from .outputs import export_run

    run_dir = Path(a.run_dir)
    if not (run_dir / CKPT).is_file() or not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (needs config.yaml and {CKPT})")
    cfg = _generate_config(run_dir / "config.yaml", None, None, a.overrides)
    run = Run(cfg)
    run.load_state_dict(torch.load(run_dir / CKPT, weights_only=True))
    export_run(run, run_dir)
    print(f"exported: {run_dir}/report.html")


def cmd_distill(a) -> None:
    from .distill import distill, load_distill_config

    cfg = load_distill_config(a.config, list(a.overrides) + ([f"teacher={a.teacher}"] if a.teacher else []))
    distill(cfg, a.out)
    print(f"done: {a.out}/generator (sample with: dreamer sample PROMPT --generator {a.out}/generator --steps 1)")


def cmd_sample(a) -> None:
    from .generator import sample_cli

    sample_cli(a.prompt, a.generator, a.steps, a.n, a.out, a.seed)
    print(f"wrote {a.out}")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)  # key=value overrides may follow options
    bad = [e for e in extra if e.startswith("-") or "=" not in e or not hasattr(args, "overrides")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    try:
        {"generate": cmd_generate, "export": cmd_export, "distill": cmd_distill, "sample": cmd_sample}[args.cmd](args)
    except KeyboardInterrupt:
        print("interrupted: the last checkpoint is kept; continue with --resume", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, OSError, KeyError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"dreamer: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
