"""The import graph of the project's packages, read from source (every import, also those inside functions), and
the layering rules the README's Layout section states. Used by tests/test_layering.py."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGES = ("dreamer", "guidance", "renderers", "tools")
# The installed packages (the wheel's); tools/ is training-only code beside scripts/, not installed.
INSTALLED = ("dreamer", "guidance", "renderers")
# The shapes world's data side (ground-truth scenes and renders): training code may use it as data. (The teacher's
# spec, once dreamer.shapes.teacher_spec, is tools.shapes_training.teacher_spec now, outside dreamer.shapes.)
SHAPES_DATA = ("dreamer.shapes.world", "dreamer.shapes.render")
# Training code: it must never reach the evaluation side of the shapes world (the benchmark's judge).
TRAINING = ("guidance", "renderers", "dreamer.distill", "dreamer.text_to_3d.loop", "dreamer.text_to_3d.scenes",
            "dreamer.text_to_3d.recipe")
# (importer prefix, forbidden prefixes): direct imports only.
FORBIDDEN = [
    ("guidance", ("dreamer", "renderers")),
    ("renderers", ("dreamer", "guidance")),
    ("dreamer.common", ("dreamer.text_to_3d", "dreamer.distill", "dreamer.shapes", "dreamer.cli")),
    ("dreamer.shapes", ("dreamer.text_to_3d", "dreamer.distill", "dreamer.cli", "guidance")),
    ("dreamer.text_to_3d", ("dreamer.distill", "dreamer.cli")),
    ("dreamer.distill", ("dreamer.text_to_3d", "dreamer.cli")),
    # the applications reach a teacher's world only through dreamer.common.world (its WORLDS table)
    ("dreamer.text_to_3d", ("dreamer.shapes",)),
    ("dreamer.distill", ("dreamer.shapes",)),
]
# tools/ may import every installed package; no installed package may import tools/ (it is not in the wheel).
FORBIDDEN += [(pkg, ("tools",)) for pkg in INSTALLED]


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path) -> dict[str, Path]:
    """Module name -> source file for every .py file of PACKAGES under root."""
    return {_module_name(root, p): p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))}


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    """The absolute module named by a (possibly relative) `from X import ...`."""
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the project modules it imports; `from P import name` points at P.name when that is a module."""
    mods = modules(root)
    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(mod, path.name == "__init__.py", node)
                names = [f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in mods:      # `import a.b.c` of a non-module attribute: its module
                    name = name.rpartition(".")[0]
                if name and name != mod:
                    deps.add(name)
        graph[mod] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _under(mod: str, prefix: str) -> bool:
    return mod == prefix or mod.startswith(prefix + ".")


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module `start` imports, directly or not -> the module that imports it (for the error path)."""
    seen, todo = {}, [start]
    while todo:
        v = todo.pop()
        for w in sorted(graph.get(v, ())):
            if w not in seen and w != start:
                seen[w] = v
                todo.append(w)
    return seen


def violations(root: Path) -> list[str]:
    """Every broken rule, one line each: cycles, forbidden direct imports, training code reaching evaluation."""
    graph = import_graph(root)
    found = [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    for mod, deps in sorted(graph.items()):
        for importer, banned in FORBIDDEN:
            if _under(mod, importer):
                found += [f"{mod} imports {d} (forbidden for {importer})" for d in sorted(deps)
                          if any(_under(d, b) for b in banned)]
    for mod in sorted(graph):
        if not any(_under(mod, t) for t in TRAINING):
            continue
        for dep, via in reachable(graph, mod).items():
            if _under(dep, "dreamer.shapes") and dep != "dreamer.shapes" and dep not in SHAPES_DATA:
                found.append(f"training module {mod} reaches evaluation module {dep} (via {via})")
    return found
