"""The shipped recipes as a user sees them (`dreamer recipes`, --help): which command runs each one, what it does
(its first comment line), renderer / method, and its expected time on 2 CPU cores (its `# time:` comment)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .config import CONFIG_DIR, ConfigError, available_configs, load_config_dict, resolve_config_path

_TIME = re.compile(r"^#\s*time:\s*([^(\n]+?)\s*(\(|$)", re.MULTILINE)  # the value before any "(note)"
COMMAND = {"generate": "dreamer generate PROMPT --config", "distill": "dreamer distill --config"}


@dataclass(frozen=True)
class RecipeInfo:
    name: str
    kind: str          # generate | distill
    what: str          # renderer/guidance (generate) or the distillation method
    time: str          # expected time on 2 CPU cores, "-" when not measured
    summary: str       # the recipe's first comment line


def recipe_kind(data: dict) -> str:
    """'distill' for a distillation recipe (a top-level `method`), else 'generate' (text-to-3D)."""
    return "distill" if "method" in data else "generate"


def check_recipe_kind(name_or_path, expected: str, config_dir: str | Path = CONFIG_DIR) -> dict:
    """The recipe's dict; a ConfigError naming the right command when it belongs to the other one."""
    data = load_config_dict(name_or_path, config_dir)
    kind = recipe_kind(data)
    if kind != expected:
        label = {"generate": "text-to-3D (dreamer generate)", "distill": "distillation (dreamer distill)"}[kind]
        raise ConfigError(f"config '{name_or_path}' is a {label} recipe, not a "
                          f"{'text-to-3D' if expected == 'generate' else 'distillation'} one; run it with "
                          f"`{COMMAND[kind]} {name_or_path}`")
    return data


def recipe_info(name: str, config_dir: str | Path = CONFIG_DIR) -> RecipeInfo:
    """What `dreamer recipes` shows for one recipe."""
    text = resolve_config_path(name, config_dir).read_text()
    comments = [ln.lstrip("#").strip() for ln in text.splitlines() if ln.startswith("#")]
    summary = next((c for c in comments if c and not c.lower().startswith("time:")), "-")
    m = _TIME.search(text)
    data = load_config_dict(name, config_dir)
    kind = recipe_kind(data)
    what = (str(data["method"]) if kind == "distill"
            else f"{data.get('renderer', 'gaussians')}/{(data.get('guidance') or {}).get('method', 'sds')}")
    return RecipeInfo(name, kind, what, m.group(1) if m else "-", summary)


def all_recipes(config_dir: str | Path = CONFIG_DIR) -> list[RecipeInfo]:
    """Every shipped recipe, text-to-3D first."""
    infos = [recipe_info(n, config_dir) for n in available_configs(config_dir)]
    return sorted(infos, key=lambda r: (r.kind != "generate", r.name))


def recipes_table(infos: list[RecipeInfo]) -> list[str]:
    """Aligned text table: name, command, renderer/method, time on 2 CPU cores, what it does."""
    rows = [("recipe", "command", "renderer/method", "time (2 CPU cores)", "what it does")]
    rows += [(r.name, r.kind, r.what, r.time, r.summary) for r in infos]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return ["  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]


def names_of(kind: str, config_dir: str | Path = CONFIG_DIR) -> list[str]:
    """Recipe names of one command (for --help); unreadable recipes are left out."""
    out = []
    for n in available_configs(config_dir):
        try:
            if recipe_kind(load_config_dict(n, config_dir)) == kind:
                out.append(n)
        except ConfigError:
            continue
    return out
