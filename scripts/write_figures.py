"""Write every figure the docs cite from the results file that holds it: docs/results.md (scripts/results_page.py),
each recipe's `# time:` line, the figure blocks of the teacher's and the shipped generator's model cards, and the
evaluator's card (from its training.json, as scripts/train_evaluator.py writes it). Figures are never typed by hand:
rerun the command a results file names, replace that file (docs/results/*.json, an asset's JSON), then run this.

    python scripts/write_figures.py            # rewrite what differs
    python scripts/write_figures.py --check    # change nothing; exit 1 naming each file that differs
    [--root DIR]                               # another checkout (default: this repository)
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # results_page, train_evaluator beside this file
import results_page  # noqa: E402
from results_page import RESULTS, load, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = Path("dreamer") / "configs"
ASSETS = Path("dreamer") / "assets"
PAGE = Path("docs") / "results.md"
TIME = re.compile(r"^#\s*time:.*$", re.M)
BEGIN = "<!-- figures: written by scripts/write_figures.py from the files named below; edit those, not this block -->"
END = "<!-- /figures -->"
BLOCK = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)


def time_line(root: Path, name: str, data: dict) -> str:
    """Recipe `name`'s `# time:` line (data: the recipe resolved), from the results file that measured it."""
    t3 = load(root, "text_to_3d.json")
    if name in t3["result"]["summary"]:
        r, m, seeds = t3["result"]["summary"][name], t3["machine"], t3["result"]["seeds"]
        return (f"# time: {r['train_seconds']:.0f} s training (median of {r['runs']} runs: {t3['n']['prompts']} "
                f"prompts x seeds {seeds[0]}-{seeds[-1]}, {m['threads_per_run']} thread each, "
                f"{m['runs_at_a_time']} runs sharing {m['cpu_cores']} cores; {RESULTS / 'text_to_3d.json'})")
    d = load(root, "distillation.json")
    secs = [r["train_seconds"] for r in d["result"]["rows"]
            if r["label"] == name.removeprefix("distill-") and not r.get("pooled") and r["steps"] == 1]
    if name.startswith("distill-") and secs:
        seeds, m = d["seeds"]["training"], d["machine"]
        return (f"# time: {min(secs) / 60:.0f}-{max(secs) / 60:.0f} min training (seeds {seeds[0]}-{seeds[-1]}, "
                f"{m['threads_per_training']} thread each beside other jobs on {m['cpu_cores']} cores; "
                f"{RESULTS / 'distillation.json'})")
    if data.get("teacher"):
        return "# time: GPU only (needs a GPU and the teacher's weights; not measured)"
    return "# time: not measured"


def with_time_line(text: str, line: str) -> str:
    """The recipe text with its `# time:` line replaced, or inserted after the leading comment block."""
    if TIME.search(text):
        return TIME.sub(lambda _: line, text, count=1)
    lines = text.splitlines(keepends=True)
    i = next((j for j, ln in enumerate(lines) if not ln.startswith("#")), len(lines))
    return "".join(lines[:i] + [line + "\n"] + lines[i:])


def _acc(r: dict) -> str:
    return f"{r['accuracy']:.3f} [{r['accuracy_lo']:.3f}, {r['accuracy_hi']:.3f}]"


def _fd(r: dict) -> str:
    if r.get("fd_lo") is None:  # as precise as it was recorded
        return f"{r['fd']:g}"
    return f"{r['fd']:.1f} [{r['fd_lo']:.1f}, {r['fd_hi']:.1f}]"


def _block(lines: list[str]) -> str:
    return "\n".join([BEGIN, *lines, END])


def teacher_block(root: Path) -> str:
    tr = json.loads((root / ASSETS / "shapes-teacher" / "training.json").read_text())
    c, d, g, ld = tr["config"], load(root, "distillation.json"), load(root, "guidance_cost.json"), \
        load(root, "teacher_load.json")
    res, n = d["result"], d["n"]
    rows = sorted((r for r in res["rows"] if r["label"] == "teacher"), key=lambda r: -r["steps"])
    b1 = next(r for r in g["result"] if r["batch"] == 1)
    lt = ld["result"]
    return _block([
        f"- Command: `{tr['command']}` (batch {c['batch_size']}, {c['steps']:,} steps, AdamW lr {c['lr']:g} with "
        f"{c['warmup']}-step warm-up and cosine decay, seed {c['seed']}); figures from `training.json`",
        f"- Wall time: {tr['wall_seconds']:,.0f} s ({tr['wall_seconds'] / 60:.1f} min) on {tr['threads']} CPU threads, "
        "dataset rendering included",
        f"- Final training loss (v-MSE, mean of the last 100 steps): {tr['final_loss_avg_last_100']:.4f}", "",
        f"Prompt accuracy of its DDIM samples (shape and colour right and not rejected by the shapes evaluator; "
        f"{res['n_images']:,} images: {n['objects']} catalogue objects x {n['view_suffixes']} view suffixes x "
        f"{n['repeats']}, z seed {res['seed_z']}, CFG {res['cfg']:g}; 95 % Wilson intervals) and FD (Fréchet distance "
        f"to GT renders in the evaluator's features), from `{RESULTS / 'distillation.json'}` (measured "
        f"{d['measured']}: `{d['teacher_rows_command']}`):", "",
        *table(["sampler", "prompt accuracy [95 % Wilson]", "FD [bootstrap]"],
               [[f"DDIM {r['steps']}", _acc(r), _fd(r)] for r in rows]),
        f"The same evaluator on {res['n_images']:,} GT renders: accuracy {res['gt_accuracy']:.3f}.", "",
        f"- Batched-CFG forward, batch 1: {1000 * b1['bare_cfg_forward_s']:.1f} ms on {b1['threads']} thread "
        f"({b1['clock']} clock; `{RESULTS / 'guidance_cost.json'}`, {g['measured']})",
        f"- Fresh-interpreter load (HF_HUB_OFFLINE=1, imports included), spawn to ready: median "
        f"{lt['median_seconds']['spawn_to_ready']:.1f} s, max {lt['max_spawn_to_ready']:.1f} s over {lt['repeats']} "
        f"processes (`{RESULTS / 'teacher_load.json'}`, {ld['measured']})"])


def generator_block(root: Path) -> str:
    folder = ASSETS / "shapes-consistency-lora"
    b = json.loads((root / folder / "bench.json").read_text())
    meta = json.loads((root / folder / "generator.json").read_text())
    res, n = b["result"], b["n"]
    rows = res["rows"]
    refs = {r["steps"]: r for r in rows if r["label"] == "teacher"}
    gen = [r for r in rows if r["label"] != "teacher"]
    apart = {s: [str(r["steps"]) for r in gen if results_page._apart(
        {"lo": r["accuracy_lo"], "hi": r["accuracy_hi"]}, {"lo": t["accuracy_lo"], "hi": t["accuracy_hi"]})]
        for s, t in refs.items()}
    return _block([
        f"- Wall time: {meta['train_seconds']:,.0f} s ({meta['train_seconds'] / 60:.1f} min, `train_seconds` in "
        "`generator.json`) on 1 thread of a 2-core CPU shared with other jobs: no timing of the recipe on a quiet "
        "machine", "",
        f"Measured {b['measured']} with `{b['command']}` (`bench.json`; {b['source']}): {res['n_images']:,} images "
        f"per row ({n['objects']} catalogue objects x {n['view_suffixes']} view suffixes x {n['repeats']}), z and "
        f"re-noising seed {res['seed_z']}, prompt accuracy by the shapes evaluator (a rejected image is wrong) with "
        "its 95 % Wilson interval, FD to GT renders with its bootstrap interval:", "",
        *table(["row", "steps", "accuracy [95 % Wilson]", "FD [bootstrap]", "s/img (1 shared thread)"],
               [[r["label"] if r["label"] != "teacher" else "teacher DDIM", r["steps"], _acc(r), _fd(r),
                 f"{r['sec_per_image']:.3g}"] for r in rows]),
        "Step counts whose accuracy interval does not overlap the teacher's: "
        + "; ".join(f"DDIM-{s}: {', '.join(v) or 'none'}" for s, v in apart.items())
        + ". It trained on GT renders (`saw_gt_renders: yes`), so its FD is no fair comparison with the teacher's; "
        "one training seed, so the seed spread is not measured."])


def evaluator_card(root: Path) -> str:
    import train_evaluator  # torch and the shapes world: only when the card is wanted

    s = json.loads((root / ASSETS / "shapes-evaluator" / "training.json").read_text())
    return train_evaluator._card(s["command"], s)


def with_block(text: str, block: str, path: Path) -> str:
    if not BLOCK.search(text):
        raise ValueError(f"{path}: no figure block ({BEGIN[:40]}... {END})")
    return BLOCK.sub(lambda _: block, text, count=1)


def targets(root: Path) -> dict[Path, str]:
    """Every file this script writes -> the text it should hold (relative paths)."""
    from dreamer.common.config import load_config_dict

    out = {PAGE: results_page.page(root)}
    for p in sorted((root / CONFIGS).glob("*.yaml")):
        rel = p.relative_to(root)
        out[rel] = with_time_line(p.read_text(), time_line(root, p.stem, load_config_dict(p.stem, root / CONFIGS)))
    for card, block in (("shapes-teacher", teacher_block), ("shapes-consistency-lora", generator_block)):
        rel = ASSETS / card / "MODEL_CARD.md"
        out[rel] = with_block((root / rel).read_text(), block(root), rel)
    out[ASSETS / "shapes-evaluator" / "MODEL_CARD.md"] = evaluator_card(root)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="write_figures.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 naming each file that differs")
    ap.add_argument("--root", default=str(ROOT))
    args = ap.parse_args(argv)
    root = Path(args.root)
    try:
        want = targets(root)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration) as e:
        print(f"dreamer: error: write_figures: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    diff = [p for p, text in want.items() if not (root / p).is_file() or (root / p).read_text() != text]
    if args.check:
        for p in diff:
            print(f"write_figures: {p} differs from its results files (run python scripts/write_figures.py)",
                  file=sys.stderr)
        return 1 if diff else 0
    for p in diff:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_text(want[p])
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
