"""`dreamer` command line: generate (text-to-3D), export, distill, sample, recipes. Bad input -> one line, exit 2.
Progress goes to stderr (--quiet silences it); results and closing lines go to stdout."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from . import __version__
from .common import progress
from .common.config import apply_overrides
from .common.errors import DreamerError, DreamerWarning, one_line
from .common.preflight import check_distill_folder, check_prompt, check_run_folder, check_writable, slug
from .common.recipes import all_recipes, check_recipe_kind, names_of, recipes_table
from .common.teacher_source import DEFAULT_TEACHER, check_teacher_source
from .common.vocabulary import ALLOW_FLAG, check_prompt_vocabulary, vocabulary_of


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), exit code 2; `lazy()` fills description / epilog only when
    help is shown (they may need the recipe files or the trainer table)."""

    def __init__(self, *a, lazy=None, **kw):
        super().__init__(*a, **kw)
        self.lazy = lazy

    def error(self, message: str):
        example = EXAMPLES.get(self.prog.rsplit(" ", 1)[-1])
        if message.startswith("the following arguments are required") and example:
            message += f"; e.g. {self.prog} {example}"
        print(f"dreamer: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)

    def format_help(self) -> str:
        if self.lazy is not None:
            for key, value in self.lazy().items():
                setattr(self, key, value)
        return super().format_help()


EXAMPLES = {"generate": '"a red cube" [--config RECIPE] [key=value ...]', "export": "runs/a-red-cube-gaussians-sds",
            "sample": '"a red cube" [--generator DIR] [--steps 1-4] [-n 16]'}
RAW = argparse.RawDescriptionHelpFormatter


def _teacher_knows() -> str:
    vocab = vocabulary_of(DEFAULT_TEACHER)
    return f"the embedded teacher knows {vocab.describe()}" if vocab else ""


def _generate_help() -> dict:
    knows = _teacher_knows()
    return {"epilog": f"Recipes: {', '.join(names_of('generate'))} (dreamer recipes: what each does, how long).\n"
                      f"{knows[:1].upper()}{knows[1:]}; other prompts need {ALLOW_FLAG} (or a --teacher that knows "
                      f"them)."}


def _distill_help() -> dict:
    from .distill.trainers import TRAINERS

    return {"description": f"Train a one/few-step image generator from the teacher. Methods (the recipe's `method`): "
                           f"{', '.join(TRAINERS)}.",
            "epilog": f"Recipes: {', '.join(names_of('distill'))} (dreamer recipes: what each does, how long)."}


def _top_help() -> dict:
    return {"epilog": f"Recipes: dreamer recipes. {_teacher_knows()[:1].upper()}{_teacher_knows()[1:]}."}


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dreamer", description="Score distillation: text-to-3D and one/few-step generators.",
                lazy=_top_help, formatter_class=RAW)
    p.add_argument("--version", action="version", version=f"dreamer {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser, metavar="COMMAND")
    g = sub.add_parser("generate", help="text-to-3D: optimise a 3D scene with a frozen 2D teacher",
                       lazy=_generate_help, formatter_class=RAW)
    g.add_argument("prompt", nargs="?", default=None)
    g.add_argument("--prompts", default=None, metavar="FILE",
                   help="many prompts: one a line, or JSONL {\"prompt\": ..., \"overrides\": [\"k=v\"]}; one run "
                        "folder each under --out (default runs/<FILE stem>), DIR/manifest.json, DIR/index.html")
    g.set_defaults(parser=g)
    g.add_argument("--config", default="gaussians-sds", help="recipe name (see dreamer recipes) or a YAML path")
    g.add_argument("--teacher", default=None, help="diffusers folder or hub id (default: embedded shapes teacher)")
    g.add_argument("--out", default=None, help="run folder (default: runs/<prompt>-<config>)")
    g.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    g.add_argument("--no-export", action="store_true", help="train only; export later with `dreamer export OUT`")
    g.add_argument(ALLOW_FLAG, action="store_true", help="run a prompt outside the teacher's vocabulary")
    e = sub.add_parser("export", help="re-export meshes, video and report from a run folder's checkpoint")
    e.add_argument("run_dir")
    d = sub.add_parser("distill", help="train a one/few-step image generator (methods: dreamer distill --help)",
                       lazy=_distill_help, formatter_class=RAW)
    d.add_argument("--config", default=None, help="distillation recipe name or a YAML path (default distill-dmd; "
                                                  "with --resume the run's config.yaml)")
    d.add_argument("--teacher", default=None, help="diffusers folder, hub id or generator folder")
    d.add_argument("--out", default="runs/distill")
    d.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint.pt")
    d.add_argument("--prompts-file", default=None, help="captions: a text file (one a line) or JSONL")
    v = sub.add_parser("evaluate", help="score a mesh file or run folder against the shapes world (strict test)")
    v.add_argument("path", help="mesh file (GLB / OBJ / PLY) or a run folder of dreamer generate")
    v.add_argument("--prompt", default=None, help="shapes-world prompt, e.g. 'a red cube' (default: the run's)")
    v.add_argument("--json", action="store_true", help="print the full report as JSON")
    s = sub.add_parser("sample", help="sample a captioned image grid from a distilled generator")
    s.add_argument("prompt")
    s.add_argument("--generator", default=None, help="generator folder, or the run folder of dreamer distill "
                                                     "(default: the shipped consistency-LoRA generator)")
    s.add_argument("--steps", type=int, default=None, choices=[1, 2, 3, 4],
                   help="sampling steps (default: the generator's recommended count, else 1)")
    s.add_argument("-n", type=int, default=16, help="samples (a square grid)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="samples.png")
    s.add_argument(ALLOW_FLAG, action="store_true", help="sample a prompt outside the teacher's vocabulary")
    sub.add_parser("recipes", help="list the shipped recipes: what each does and how long it takes")
    for sp in (g, e, d, s):
        sp.add_argument("--quiet", action="store_true", help="no progress lines or bars on stderr")
        if sp is not s:
            sp.add_argument("overrides", nargs="*", default=[], help="key=value overrides, e.g. train.steps=200")
    return p


def _teacher_name(src) -> str:
    return "the embedded teacher" if Path(str(src)) == DEFAULT_TEACHER else f"teacher {src}"


def _vocabulary_prompt(prompt: str, teacher_src, allow: bool) -> str:
    """The prompt normalised onto the teacher's vocabulary (UnknownPrompt if outside it, unless allowed)."""
    vocab = vocabulary_of(teacher_src) if isinstance(teacher_src, Path) else None
    return check_prompt_vocabulary(prompt, vocab, _teacher_name(teacher_src), allow)


def cmd_generate_batch(a) -> int:
    """--prompts FILE: every line checked up front (a bad one: one error line, exit 2), then this worker's share."""
    if a.prompt is not None and "=" in a.prompt:      # argparse took the first key=value for PROMPT
        a.prompt, a.overrides = None, [a.prompt] + list(a.overrides)
    if a.prompt is not None or a.resume:
        raise ValueError("--prompts takes no PROMPT and no --resume (a re-run of the batch resumes what it can)")
    from .text_to_3d.batch import prepare, read_prompts, run_batch

    out = check_writable(a.out or f"runs/{slug(Path(a.prompts).stem)}")
    if a.teacher:
        check_teacher_source(a.teacher)
    check_recipe_kind(a.config, "generate")
    items = prepare(read_prompts(a.prompts), a.prompts, a.config, a.teacher, list(a.overrides),
                    a.allow_unknown_prompt)
    if a.quiet:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return run_batch(items, out, no_export=a.no_export, quiet=a.quiet)


def cmd_generate(a) -> int | None:
    """Checks run cheapest first (prompt, --out, --teacher, recipe kind, vocabulary: no torch import), then the
    config, then the loop."""
    if a.prompts is not None:
        return cmd_generate_batch(a)
    if a.prompt is None:
        a.parser.error("the following arguments are required: prompt")   # (or --prompts FILE)
    check_prompt(a.prompt)
    out = Path(a.out or f"runs/{slug(a.prompt)}-{slug(Path(a.config).stem)}")
    check_run_folder(out, a.resume)
    if a.teacher:
        check_teacher_source(a.teacher)
    recipe = apply_overrides(check_recipe_kind(a.config, "generate"), list(a.overrides))
    src = check_teacher_source(a.teacher or recipe.get("teacher"))
    prompt = _vocabulary_prompt(a.prompt, src, a.allow_unknown_prompt)
    from .text_to_3d.recipe import load_generate_config

    config = load_generate_config(a.config, prompt, a.teacher, a.overrides)
    check_teacher_source(config.teacher)
    if a.quiet:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # weight-loading bars
    from .text_to_3d.loop import generate

    run = generate(config, out, resume=a.resume, progress=not a.quiet)
    if a.no_export:
        print(f"trained: {out}/checkpoint.pt (step {run.step_i}; export with: dreamer export {out})")
        return
    from .text_to_3d.outputs import export_run

    print("\n".join(export_summary(out, export_run(run, out))))


def export_summary(out: Path, metrics: dict) -> list[str]:
    """The closing lines of `dreamer generate` / `export`: the files written, what was not (and why), the metrics,
    and why the evaluation was skipped."""
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
        lines.append(f"  evaluation skipped: {metrics['evaluation_skipped']}")
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

    config = load_generate_config(run_dir / "config.yaml", None, None, a.overrides)
    sd = load_checkpoint(run_dir / CKPT, CKPT_KEYS)
    check_teacher_source(config.teacher)
    from .text_to_3d.outputs import export_run

    run = SceneRun(config)
    run.load_state_dict(sd)
    print("\n".join(export_summary(run_dir, export_run(run, run_dir))))


def cmd_distill(a) -> None:
    """--out first (no torch import), then the recipe kind, the config and the teacher (diffusers or generator)."""
    check_distill_folder(a.out, a.resume)
    if int(os.environ.get("RANK", 0)) != 0:          # torchrun: the progress of rank 0 stands for all
        progress.configure(quiet=True)
    from .distill.generator import META, check_generator_folder, teacher_dir
    from .distill.loop import distill
    from .common.config import RenamedKeysError
    from .common.run_folder import older_run
    from .distill.recipe import load_distill_config

    recipe = a.config or (Path(a.out) / "config.yaml" if a.resume else "distill-dmd")
    check_recipe_kind(recipe, "distill")
    try:
        config = load_distill_config(recipe, list(a.overrides) + ([f"teacher={a.teacher}"] if a.teacher else []))
    except RenamedKeysError as e:
        if a.resume and not a.config:                  # the run's own config.yaml
            raise older_run(a.out, e) from None
        raise
    if a.prompts_file:                                 # set directly: any path, no YAML parsing of it
        config.prompts, config.prompts_file = [], a.prompts_file
    if config.teacher and (Path(config.teacher) / META).is_file():  # a distilled generator used as the teacher
        check_teacher_source(teacher_dir(check_generator_folder(config.teacher)))
    else:
        check_teacher_source(config.teacher)
    distill(config, a.out, log=None, resume=a.resume)
    if int(os.environ.get("RANK", 0)) == 0:          # torchrun: rank 0 wrote the run folder
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
    from .distill.generator import SHIPPED_GENERATOR, check_generator_folder, sample_cli, teacher_dir

    meta = check_generator_folder(a.generator or SHIPPED_GENERATOR)
    src = check_teacher_source(teacher_dir(meta))
    prompt = _vocabulary_prompt(a.prompt, src, a.allow_unknown_prompt)
    steps = a.steps or int(meta.get("sample_steps", 1))
    sample_cli(prompt, a.generator or SHIPPED_GENERATOR, steps, a.n, a.out, a.seed)
    print(f"wrote {a.out} ({a.n} samples of {prompt!r}, {steps} step{'s' if steps > 1 else ''})")


def cmd_recipes(a) -> None:
    print("\n".join(recipes_table(all_recipes())))
    print("\nrun: dreamer generate PROMPT --config NAME | dreamer distill --config NAME   (NAME from the first column)")


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
    progress.configure(quiet=getattr(args, "quiet", False))
    commands = {"generate": cmd_generate, "export": cmd_export, "distill": cmd_distill, "evaluate": cmd_evaluate,
                "sample": cmd_sample, "recipes": cmd_recipes}
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.simplefilter("always", DreamerWarning)
        try:
            code = commands[args.cmd](args)
        except KeyboardInterrupt:
            print("interrupted: the last checkpoint is kept; continue with --resume", file=sys.stderr)
            return 130
        except (DreamerError, ValueError, FileNotFoundError, OSError, KeyError) as e:
            print(f"dreamer: error: {one_line(e)}", file=sys.stderr)
            return 2
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
