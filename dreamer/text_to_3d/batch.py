"""`dreamer generate --prompts FILE --out DIR`: many prompts, one run folder each (DIR/<slug>), worked by any number
of worker processes (on any machines sharing DIR) through a claim-file queue (common.workqueue, DIR/manifest/).

Every line is checked before anything runs (one bad line: one error line, exit 2). Under torchrun each rank works
its shard prompts[rank::world] (no collective). A re-run skips done prompts, retries failed ones and continues
interrupted ones from their checkpoint (--resume of the run folder)."""
from __future__ import annotations

import html
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..common import progress
from ..common.distributed import rank_world, use_local_gpu
from ..common.errors import one_line
from ..common.preflight import check_prompt, check_writable, slug
from ..common.teacher_source import DEFAULT_TEACHER, check_teacher_source
from ..common.vocabulary import check_prompt_vocabulary, vocabulary_of
from ..common.workqueue import WorkQueue, host, write_json_atomic
from .recipe import GenerateConfig, load_generate_config

HEADLINE = ("train_seconds", "chamfer", "fscore_2pct", "iou", "colour_error", "prompt_accuracy_8_views", "right",
            "reasons", "evaluation_skipped")


@dataclass
class BatchItem:
    """One line of the prompts file: its run folder is DIR/<key>."""

    line: int
    prompt: str
    overrides: list[str] = field(default_factory=list)
    key: str = ""
    config: GenerateConfig | None = None


def _parse_line(text: str, where: str) -> tuple[str, list[str]]:
    """A plain prompt, or a JSON object {"prompt": str, "overrides": ["key=value", ...]}."""
    if not text.startswith("{"):
        return text, []
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{where}: not valid JSON ({e.msg})") from None
    extra = set(obj) - {"prompt", "overrides"} if isinstance(obj, dict) else set()
    if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str) or extra:
        raise ValueError(f"{where}: a JSON line needs {{\"prompt\": TEXT, \"overrides\": [\"key=value\", ...]}}"
                         + (f" (unknown field {sorted(extra)[0]!r})" if extra else ""))
    ov = obj.get("overrides", [])
    if not isinstance(ov, list) or not all(isinstance(o, str) for o in ov):
        raise ValueError(f"{where}: \"overrides\" must be a list of \"key=value\" strings")
    return obj["prompt"], ov


def read_prompts(path: str | Path) -> list[BatchItem]:
    """The prompts file -> items (blank lines and '#' comments skipped); one-line ValueError on a bad file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompts file {path} not found" if not path.exists() else f"{path} is not a file")
    data = path.read_bytes()
    try:
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL byte")
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"prompts file {path} is not UTF-8 text (one prompt a line, or JSONL)") from None
    items, seen = [], {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        prompt, ov = _parse_line(line, f"{path}:{n}")
        check_prompt(prompt, f"prompt on {path}:{n}")
        sig = (prompt.strip(), tuple(ov))
        if sig in seen:
            raise ValueError(f"{path}:{n}: repeats line {seen[sig]} (same prompt and overrides)")
        seen[sig] = n
        items.append(BatchItem(n, prompt.strip(), ov))
    if not items:
        raise ValueError(f"prompts file {path} holds no prompts (one a line, or JSONL {{\"prompt\": ...}})")
    keys: dict[str, int] = {}
    for it in items:                    # the same prompt with other overrides: <slug>-2, <slug>-3, ...
        base = slug(it.prompt)
        keys[base] = keys.get(base, 0) + 1
        it.key = base if keys[base] == 1 else f"{base}-{keys[base]}"
    return items


def prepare(items: list[BatchItem], path, recipe: str, teacher: str | None, overrides: list[str],
            allow_unknown: bool) -> list[BatchItem]:
    """Resolve and validate every item's config and vocabulary up front (ConfigError / UnknownPrompt name the line)."""
    for it in items:
        where = f"{path}:{it.line}"
        try:
            config = load_generate_config(recipe, it.prompt, teacher, list(overrides) + it.overrides)
            src = check_teacher_source(config.teacher)
            vocab = vocabulary_of(src) if isinstance(src, Path) else None
            name = "the embedded teacher" if Path(str(src)) == DEFAULT_TEACHER else f"teacher {src}"
            config.prompt = check_prompt_vocabulary(it.prompt, vocab, name, allow_unknown)
        except Exception as e:
            raise ValueError(f"{where}: {one_line(e)}") from None
        it.config = config
    return items


def run_item(config: GenerateConfig, run_dir: Path, no_export: bool) -> dict:
    """Train (continuing a checkpoint the folder holds) and export one prompt; -> the metrics dict."""
    from .loop import generate

    run = generate(config, run_dir, resume=(run_dir / "config.yaml").is_file(), progress=False)
    if no_export:
        return {"train_seconds": run.train_seconds, "steps": run.step_i}
    from .outputs import export_run

    return export_run(run, run_dir)


def headline(metrics: dict) -> dict:
    return {k: metrics[k] for k in HEADLINE if k in metrics}


def collect(q: WorkQueue, items: list[BatchItem]) -> list[dict]:
    """One row per item: prompt, run folder, status, seconds, headline metrics, error."""
    rows = []
    for it in items:
        st = q.view(it.key)
        rows.append({"prompt": it.prompt, "run": it.key, "overrides": it.overrides, "status": st["status"],
                     "seconds": st.get("seconds"), "attempt": st.get("attempt", 0), "worker": st.get("worker"),
                     "metrics": st.get("metrics", {}), "error": st.get("error")})
    return rows


def _progress_line(rows: list[dict], mine: list[float]) -> str:
    n = len(rows)
    count = {s: sum(r["status"] == s for r in rows) for s in ("done", "failed", "running")}
    left = n - count["done"] - count["failed"]
    eta = ""
    if mine and left:
        eta = f", ETA {left * (sum(mine) / len(mine)) / (1 + count['running']):.0f} s"
    return (f"batch: {count['done'] + count['failed']}/{n} prompts finished ({count['done']} done, "
            f"{count['failed']} failed, {count['running']} running){eta}")


def summary_table(rows: list[dict]) -> list[str]:
    lines = [f"{'status':8} {'seconds':>8} {'right':5}  prompt -> run folder / error"]
    for r in rows:
        right = r["metrics"].get("right")
        sec = f"{r['seconds']:.1f}" if isinstance(r["seconds"], (int, float)) else "-"
        tail = r["run"] if r["status"] != "failed" else f"{r['run']}: {r['error']}"
        lines.append(f"{r['status']:8} {sec:>8} {'-' if right is None else ('yes' if right else 'no'):5}  "
                     f"{r['prompt']} -> {tail}")
    return lines


def write_index(out: Path, rows: list[dict]) -> Path:
    """DIR/index.html: a table linking every run's report."""
    def cell(r):
        m, link = r["metrics"], f'<a href="{html.escape(r["run"])}/report.html">{html.escape(r["prompt"])}</a>'
        right = {True: "yes", False: "no"}.get(m.get("right"), "-")
        sec = f"{r['seconds']:.1f}" if isinstance(r["seconds"], (int, float)) else "-"
        ch = f"{m['chamfer']:.4g}" if isinstance(m.get("chamfer"), (int, float)) else "-"
        return (f"<tr><td>{link if r['status'] == 'done' else html.escape(r['prompt'])}</td><td>{r['status']}</td>"
                f"<td>{sec}</td><td>{right}</td><td>{ch}</td><td>{html.escape(r['error'] or '')}</td></tr>")
    body = "\n".join(cell(r) for r in rows)
    page = (f"<!doctype html><meta charset=utf-8><title>dreamer batch</title><h1>dreamer batch: {len(rows)} prompts"
            f"</h1><table border=1 cellpadding=4><tr><th>prompt</th><th>status</th><th>seconds</th><th>right</th>"
            f"<th>chamfer</th><th>error</th></tr>\n{body}\n</table>\n")
    tmp = out / f".index.html.{os.getpid()}.tmp"
    tmp.write_text(page)
    os.replace(tmp, out / "index.html")
    return out / "index.html"


def run_batch(items: list[BatchItem], out: str | Path, no_export: bool = False, worker: str | None = None,
              quiet: bool = False) -> int:
    """Work the items (this rank's shard under torchrun) into out/<key>; 1 if a prompt of the batch failed, else 0
    (prompts still running in other workers are not failures)."""
    out = check_writable(out)
    out.mkdir(parents=True, exist_ok=True)
    rank, world = rank_world()
    if world > 1:
        use_local_gpu()
    worker = worker or (f"rank{rank}@{host()}" if world > 1 else f"{host()}:{os.getpid()}")
    q = WorkQueue(out / "manifest", worker)
    mine: list[float] = []
    was_quiet = progress.is_quiet()
    for it in items[rank::world]:
        claim = q.try_claim(it.key)
        if claim is None:
            continue
        q.set_status(claim, "running", prompt=it.prompt)
        t0 = time.time()
        progress.configure(quiet=True)   # the per-prompt phases: the batch line below is the progress
        try:
            m = run_item(it.config, out / it.key, no_export)
            q.set_status(claim, "done", prompt=it.prompt, seconds=round(time.time() - t0, 2), metrics=headline(m))
        except KeyboardInterrupt:
            q.set_status(claim, "failed", prompt=it.prompt, error="interrupted; a re-run resumes it")
            raise
        except Exception as e:           # one prompt's failure must not stop the others
            q.set_status(claim, "failed", prompt=it.prompt, seconds=round(time.time() - t0, 2), error=one_line(e))
        finally:
            progress.configure(quiet=was_quiet)
        mine.append(time.time() - t0)
        if not quiet:
            print(_progress_line(collect(q, items), mine), file=sys.stderr, flush=True)
    rows = collect(q, items)
    write_json_atomic(out / "manifest.json", {"total": len(rows), "prompts": rows})
    write_index(out, rows)
    print("\n".join(summary_table(rows)))
    print(f"index: {out / 'index.html'}  manifest: {out / 'manifest.json'}")
    return 1 if any(r["status"] == "failed" for r in rows) else 0
