"""`dreamer` command line: generate (text-to-3D), export, distill, sample. Bad input -> one line, exit 2."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from .common.errors import DreamerError, DreamerWarning, one_line
from .common.preflight import check_distill_folder, check_prompt, check_run_folder, check_writable, slug
from .common.teacher_source import check_teacher_source


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), exit code 2."""

    def error(self, message: str):
        print(f"dreamer: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dreamer", description="Score distillation: text-to-3D and one-step generators.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    g = sub.add_parser("generate", help="text-to-3D: optimise a 3D scene with a frozen 2D teacher")
    g.add_argument("prompt")
    g.add_argument("--config", default="gaussians-sds", help="recipe name in configs/ or a YAML path")
    g.add_argument("--teacher", default=None, help="diffusers folder or hub id (default: embedded shapes teacher)")
    g.add_argument("--out", default=None, help="run folder (default: runs/<prompt>-<config>)")
    g.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    g.add_argument("--quiet", action="store_true")
    g.add_argument("--no-export", action="store_true", help="train only; export later with `dreamer export OUT`")
    g.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. train.steps=200")
    e = sub.add_parser("export", help="re-export meshes, video and report from a run folder's checkpoint")
    e.add_argument("run_dir")
    e.add_argument("overrides", nargs="*")
    d = sub.add_parser("distill", help="train a one/few-step generator with DMD or Diff-Instruct")
    d.add_argument("--config", default=None, help="recipe (default distill-dmd; with --resume the run's config.yaml)")
    d.add_argument("--teacher", default=None)
    d.add_argument("--out", default="runs/distill")
    d.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint.pt")
    d.add_argument("--prompts-file", default=None, help="captions: a text file (one a line) or JSONL")
    d.add_argument("overrides", nargs="*")
    v = sub.add_parser("evaluate", help="score a mesh file or run folder against the shapes world (strict test)")
    v.add_argument("path", help="mesh file (GLB / OBJ / PLY) or a run folder of dreamer generate")
    v.add_argument("--prompt", default=None, help="shapes-world prompt, e.g. 'a red cube' (default: the run's)")
    v.add_argument("--json", action="store_true", help="print the full report as JSON")
    s = sub.add_parser("sample", help="sample an image grid from a distilled generator")
    s.add_argument("prompt")
    s.add_argument("--generator", required=True, help="generator folder, or the run folder of dreamer distill")
    s.add_argument("--steps", type=int, default=1, choices=[1, 2, 3, 4])
    s.add_argument("-n", type=int, default=16)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="samples.png")
    return p


def cmd_generate(a) -> None:
    """Checks run cheapest first (prompt, --out, --teacher: no torch import; then the config), then the loop."""
    check_prompt(a.prompt)
    out = Path(a.out or f"runs/{slug(a.prompt)}-{slug(Path(a.config).stem)}")
    check_run_folder(out, a.resume)
    if a.teacher:
        check_teacher_source(a.teacher)
    from .text_to_3d.recipe import load_generate_config

    cfg = load_generate_config(a.config, a.prompt, a.teacher, a.overrides)
    check_teacher_source(cfg.teacher or None)
    if a.quiet:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # weight-loading bars
    from .text_to_3d.loop import generate

    run = generate(cfg, out, resume=a.resume, progress=not a.quiet)
    if a.no_export:
        print(f"trained: {out}/checkpoint.pt (step {run.step_i}; export with: dreamer export {out})")
        return
    from .text_to_3d.outputs import export_run

    print("\n".join(export_summary(out, export_run(run, out))))


def export_summary(out: Path, metrics: dict) -> list[str]:
    """The closing lines of `dreamer generate`: the files actually written, what was not (and why), the metrics."""
    files = metrics.get("files", {})
    written = [v for k, v in files.items() if not k.endswith("_error")] + ["metrics.json"]
    lines = [f"done: {out}/report.html  ({', '.join(written)})"]
    lines += [f"  not written ({k.removesuffix('_error')}): {v}" for k, v in files.items() if k.endswith("_error")]
    keys = ("train_seconds", "chamfer", "fscore_2pct", "iou", "colour_error", "prompt_accuracy_8_views",
            "psnr_8_views")
    lines.append("  " + "  ".join(f"{k}={metrics[k]:.4g}" for k in keys if isinstance(metrics.get(k), (int, float))))
    if "right" in metrics:
        why = "" if metrics["right"] else f" ({'; '.join(metrics['reasons'])})"
        lines.append(f"  right (strict ground-truth test): {'yes' if metrics['right'] else 'no'}{why}")
    elif "evaluation_skipped" in metrics:
        lines.append(f"  not evaluated: {metrics['evaluation_skipped']}")
    return lines


def cmd_export(a) -> None:
    """Checkpoint (weights-only) and config are checked before the teacher loads."""
    run_dir = Path(a.run_dir)
    if not (run_dir / "checkpoint.pt").is_file() or not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (needs config.yaml and checkpoint.pt)")
    check_writable(run_dir)
    from .common.checkpoints import load_checkpoint
    from .text_to_3d.loop import CKPT, CKPT_KEYS, SceneRun
    from .text_to_3d.recipe import load_generate_config

    cfg = load_generate_config(run_dir / "config.yaml", None, None, a.overrides)
    sd = load_checkpoint(run_dir / CKPT, CKPT_KEYS)
    check_teacher_source(cfg.teacher or None)
    from .text_to_3d.outputs import export_run

    run = SceneRun(cfg)
    run.load_state_dict(sd)
    export_run(run, run_dir)
    print(f"exported: {run_dir}/report.html")


def cmd_distill(a) -> None:
    """--out first (no torch import), then the config and the teacher (a diffusers teacher or a generator)."""
    check_distill_folder(a.out, a.resume)
    from .distill.generator import META, check_generator_folder, teacher_dir
    from .distill.loop import distill
    from .distill.recipe import load_distill_config

    config = a.config or (Path(a.out) / "config.yaml" if a.resume else "distill-dmd")
    cfg = load_distill_config(config, list(a.overrides) + ([f"teacher={a.teacher}"] if a.teacher else []))
    if a.prompts_file:                                 # set directly: any path, no YAML parsing of it
        cfg.prompts, cfg.prompts_file = [], a.prompts_file
    if cfg.teacher and (Path(cfg.teacher) / META).is_file():  # a distilled generator used as the teacher
        check_teacher_source(teacher_dir(check_generator_folder(cfg.teacher)))
    else:
        check_teacher_source(cfg.teacher)
    distill(cfg, a.out, resume=a.resume)
    print(f"done: {a.out}/generator (sample with: dreamer sample PROMPT --generator {a.out}/generator --steps 1)")


def cmd_evaluate(a) -> None:
    """The strict report of a mesh (or a run folder's mesh), as text or JSON; exit 0 whether right or not."""
    from .shapes.evaluate import evaluate_path, report_json, report_text

    rep = evaluate_path(a.path, a.prompt)
    print(report_json(rep) if a.json else report_text(rep))


def cmd_sample(a) -> None:
    check_prompt(a.prompt)
    if a.n < 1:
        raise ValueError(f"-n must be >= 1, got {a.n}")
    check_writable(a.out, is_file=True)
    from .distill.generator import check_generator_folder, sample_cli, teacher_dir

    check_teacher_source(teacher_dir(check_generator_folder(a.generator)))
    sample_cli(a.prompt, a.generator, a.steps, a.n, a.out, a.seed)
    print(f"wrote {a.out}")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """DreamerWarnings as one `dreamer: warning:` line; others as Python prints them."""
    if issubclass(category, DreamerWarning):
        print(f"dreamer: warning: {one_line(message)}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)  # key=value overrides may follow options
    bad = [e for e in extra if e.startswith("-") or "=" not in e or not hasattr(args, "overrides")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    commands = {"generate": cmd_generate, "export": cmd_export, "distill": cmd_distill, "evaluate": cmd_evaluate,
                "sample": cmd_sample}
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.simplefilter("always", DreamerWarning)
        try:
            commands[args.cmd](args)
        except KeyboardInterrupt:
            print("interrupted: the last checkpoint is kept; continue with --resume", file=sys.stderr)
            return 130
        except (DreamerError, ValueError, FileNotFoundError, OSError, KeyError) as e:
            print(f"dreamer: error: {one_line(e)}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
