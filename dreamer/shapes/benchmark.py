"""What the distillation benchmark needs besides the evaluator: its prompt set (catalogue objects x view suffixes x
repeats), the grouping of generator rows by label (training seeds), and whether a generator's training saw
ground-truth shapes-world renders (a data-free method did not; those that did are not compared like for like).

Reads run folders written by `dreamer distill` (config.yaml beside generator/, generator.json inside) as plain
files: the evaluation side imports nothing from the distillation package."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..common.view_prompts import VIEW_SUFFIXES
from .world import COLOUR_NAMES, SHAPES, ShapeSpec, catalogue

# Methods whose trainer draws x0 from the data pool (config.data: "shapes" = GT renders, the default; "teacher" = its
# own DDIM samples): regression targets or student inputs (progressive, consistency, guidance, noise_lora) or the
# discriminator's real images (add).  The score methods draw real images only for DMD2's GAN term (gan.weight > 0).
DATA_POOL_METHODS = ("progressive", "consistency", "guidance", "noise_lora", "add")
GAN_METHODS = ("dmd", "diff_instruct", "sds")
DATA_FREE_METHODS = ("kd", "reflow")  # teacher ODE pairs only
META, CONFIG = "generator.json", "config.yaml"


def benchmark_objects(count: int = len(SHAPES) * len(COLOUR_NAMES)) -> list[ShapeSpec]:
    """`count` catalogue objects in catalogue order, taken along diagonals (shape j % 6, colour (j % 6 + j // 6) % 6)
    so that any 6 consecutive picks cover every shape and every colour; count = 36 is the whole catalogue."""
    cat = catalogue()
    if not 1 <= count <= len(cat):
        raise ValueError(f"objects must be in 1..{len(cat)}, got {count}")
    ns, nc = len(SHAPES), len(COLOUR_NAMES)
    picks = {SHAPES[j % ns] + "/" + COLOUR_NAMES[(j % ns + j // ns) % nc] for j in range(count)}
    return [s for s in cat if f"{s.shape}/{s.colour}" in picks]


def benchmark_prompts(objects: list[ShapeSpec], per_object: int) -> tuple[list[ShapeSpec], list[str]]:
    """Each object per_object times with the view suffixes cycling over the whole list (= catalogue_prompts when
    objects is the catalogue): per_object = 4 x repeats gives every object every suffix `repeats` times."""
    if per_object < 1:
        raise ValueError(f"need at least one image per object, got {per_object}")
    specs = [s for s in objects for _ in range(per_object)]
    return specs, [f"{s.prompt}, {VIEW_SUFFIXES[i % len(VIEW_SUFFIXES)]}" for i, s in enumerate(specs)]


def group_labels(labels: list[str]) -> dict[str, list[int]]:
    """label -> the positions holding it, in first-seen order (one label on several generators pools them)."""
    out: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        out.setdefault(label, []).append(i)
    return out


def _generator_folder(path: Path) -> Path:
    return path / "generator" if not (path / META).is_file() and (path / "generator" / META).is_file() else path


def run_files(path: str | Path) -> tuple[dict, dict]:
    """(config.yaml of the run, generator.json) of a generator folder or run folder; {} for what is missing.
    config.yaml is looked up in the generator folder and its parent (run/generator, run/stage-4); one whose
    method contradicts generator.json belongs to another run and is ignored."""
    folder = _generator_folder(Path(path))
    meta = json.loads((folder / META).read_text()) if (folder / META).is_file() else {}
    for d in (folder, folder.parent):
        if (d / CONFIG).is_file():
            config = yaml.safe_load((d / CONFIG).read_text()) or {}
            if isinstance(config, dict) and (not meta.get("method") or config.get("method") == meta.get("method")):
                return config, meta
    return {}, meta


def saw_gt_renders(path: str | Path, _depth: int = 0) -> tuple[bool | None, str]:
    """(whether training this generator used ground-truth shapes-world renders, why); None when unknown.
    A generator distilled from another generator (teacher = a generator folder) inherits that one's answer."""
    config, meta = run_files(path)
    method = config.get("method") or meta.get("method")
    if method is None:
        return None, "no config.yaml and no method in generator.json"
    data = config.get("data", "shapes")
    gan = float((config.get("gan") or {}).get("weight", 0) or 0)
    src = "config.yaml" if config else "generator.json (config.yaml absent: recipe defaults assumed)"
    if method in DATA_POOL_METHODS:
        saw, why = data == "shapes", f"{method} trains on its data pool, data={data} ({src})"
    elif method in GAN_METHODS:
        saw = gan > 0 and data == "shapes"
        why = f"{method}: GAN term on data={data}" if gan > 0 else f"{method} without GAN term: teacher only"
        why += f" ({src})"
    elif method in DATA_FREE_METHODS:
        saw, why = False, f"{method}: teacher ODE pairs only ({src})"
    else:
        return None, f"unknown method {method!r}"
    teacher = config.get("teacher") or meta.get("init")
    if not saw and teacher and _depth < 4 and (_generator_folder(Path(str(teacher))) / META).is_file():
        up, up_why = saw_gt_renders(teacher, _depth + 1)
        if up:
            return True, f"its teacher {teacher} did: {up_why}"
    return saw, why


def _common(rows: list[dict], key: str):
    vals = {repr(r.get(key)) for r in rows}
    return rows[0].get(key) if len(vals) == 1 else None


def pool_rows(label: str, steps: int, rows: list[dict]) -> dict:
    """One benchmark row for several training seeds' rows (same label and step count): accuracy = the seeds' mean
    with the Wilson interval of the pooled counts and the seeds' min / max; FD, diversity, times: mean, min, max."""
    from .stats import pool_rates, spread

    p = pool_rates([{"k": r["correct"], "n": r["n"]} for r in rows])
    out = {"method": f"{label}-{steps}", "label": label, "steps": steps, "pooled": True, "seeds": len(rows),
           "train_seeds": [r.get("train_seed") for r in rows], "members": [r["method"] for r in rows],
           "accuracy": p["rate"], "accuracy_lo": p["lo"], "accuracy_hi": p["hi"], "accuracy_min": p["min"],
           "accuracy_max": p["max"], "correct": p["k"], "n": p["n"], "fd_lo": None, "fd_hi": None}
    for key in ("fd", "diversity", "sec_per_image", "train_seconds"):
        s = spread([r.get(key) for r in rows])
        out.update({key: s["mean"], f"{key}_min": s["min"], f"{key}_max": s["max"]})
    out.update({k: _common(rows, k) for k in ("saw_gt_renders", "trainer", "sampler")})
    return out


def success_rate(rows: list[dict], key: str = "right") -> tuple[dict | None, str | None]:
    """(rate of rows whose metrics say `key` is true, note): one Wilson rate, or over several seeds (rows' "seed")
    the pooled rate with min / max over seeds and per-seed rates; (None, why) when a row lacks the key."""
    from .stats import pool_rates, rate

    missing = [r for r in rows if not isinstance(r.get(key), bool)]
    if not rows or missing:
        return None, (f"no '{key}' in metrics.json of {len(missing)} of {len(rows)} runs (written by the strict 3D "
                      f"test; runs made before it lack it)" if rows else "no runs")
    by_seed: dict = {}
    for r in rows:
        by_seed.setdefault(r.get("seed"), []).append(bool(r[key]))
    per_seed = {s: rate(sum(v), len(v)) for s, v in by_seed.items()}
    if len(per_seed) == 1:
        return next(iter(per_seed.values())), None
    return {**pool_rates(list(per_seed.values())), "by_seed": {str(s): r for s, r in per_seed.items()}}, None
