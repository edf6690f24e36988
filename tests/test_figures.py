"""Figures cannot go stale: every number a recipe's `# time:` line or a model card's accuracy line cites is held by
the results file it names (docs/results/*.json, the asset folder's JSON), and scripts/write_figures.py --check finds
docs/results.md, the time lines and the cards as those files say."""
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
CONFIGS = ROOT / "dreamer" / "configs"
CARDS = sorted((ROOT / "dreamer" / "assets").glob("*/MODEL_CARD.md"))
RESULT_FILE = re.compile(r"docs/results/[\w.-]+\.json")
# Not figures: dates, a confidence level, and numbers glued to words (3D, x0, 8px, sd21, 1e-3, 32x32).
NOT_FIGURES = re.compile(r"\d{4}-\d{2}-\d{2}(?:/\d{2})?|95 % (?=Wilson|CI|interval|bootstrap)")
NUMBER = r"\d+(?:,\d{3})*(?:\.\d+)?"
FIGURE = re.compile(rf"(?<![\w.-])({NUMBER})(?:\s*-\s*({NUMBER}))?(?![\w.]*[A-Za-z_\d])\s*(%|min\b)?")
ACCURACY = re.compile(r"accuracy|correct|rejected \d", re.I)
TABLE_HEAD = re.compile(r"accuracy|correct|reject|held-out", re.I)


def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def figures(line: str) -> list[tuple[str, str]]:
    """(number as written, unit) for every figure in a line; a range 'a-b unit' gives both ends that unit."""
    out = []
    for m in FIGURE.finditer(NOT_FIGURES.sub(" ", line)):
        out += [(x.replace(",", ""), m.group(3) or "") for x in m.groups()[:2] if x]
    return out


def held_values(obj) -> list[float]:
    """Every number in a results file: its numeric leaves and the numbers written inside its strings."""
    if isinstance(obj, bool) or obj is None:
        return []
    if isinstance(obj, (int, float)):
        return [float(obj)]
    if isinstance(obj, str):
        return [float(x.replace(",", "")) for x, *_ in
                (m.groups() for m in FIGURE.finditer(NOT_FIGURES.sub(" ", obj)))]
    items = obj.values() if isinstance(obj, dict) else obj
    return [v for x in items for v in held_values(x)]


def is_held(token: str, unit: str, values: list[float]) -> bool:
    """Whether some held value, written to the token's decimals (x100 for %, /60 for min), is the token."""
    d = len(token.split(".")[1]) if "." in token else 0
    scale = {"%": (1.0, 100.0), "min": (1.0, 1 / 60)}.get(unit, (1.0,))
    return any(f"{v * f:.{d}f}" == token for v in values for f in scale)


def stale_figures(lines: list[str], values: list[float]) -> list[str]:
    return [f"{tok}{unit and ' ' + unit}: {ln.strip()}" for ln in lines for tok, unit in figures(ln)
            if not is_held(tok, unit, values)]


def _values_of(names) -> list[float]:
    return [v for n in names for v in held_values(json.loads((ROOT / n).read_text()))]


def card_accuracy_lines(text: str) -> list[str]:
    """The cited rates of a card: each line naming an accuracy / correct / rejected rate from that word on, and the
    rows (less their label cell) of tables whose header names one."""
    out, in_table = [], False
    for ln in text.splitlines():
        if ln.startswith("|"):
            if not in_table:
                in_table, wanted = True, bool(TABLE_HEAD.search(ln))
            elif wanted and not set(ln) <= set("|-: "):
                out.append("|".join(ln.split("|")[2:]))
            continue
        in_table = False
        m = ACCURACY.search(ln)
        if m:
            out.append(ln[m.start():])
    return out


def time_line_problems(line: str) -> list[str]:
    named = RESULT_FILE.findall(line)
    if figures(line) and not named:
        return [f"figures but no results file: {line}"]
    return stale_figures([line], _values_of(named))


def card_problems(text: str, folder: Path) -> list[str]:
    """Figures of the card's accuracy lines that neither its folder's JSON nor a results file it names holds."""
    files = [p.relative_to(ROOT) for p in folder.glob("*.json")] + sorted(set(RESULT_FILE.findall(text)))
    return stale_figures(card_accuracy_lines(text), _values_of(files))


def test_every_time_line_cites_only_figures_its_results_file_holds():
    for path in sorted(CONFIGS.glob("*.yaml")):
        lines = [ln for ln in path.read_text().splitlines() if re.match(r"#\s*time:", ln)]
        assert len(lines) == 1, f"{path.name}: {len(lines)} time lines"
        assert not time_line_problems(lines[0]), (path.name, time_line_problems(lines[0]))


@pytest.mark.parametrize("card", CARDS, ids=lambda p: p.parent.name)
def test_every_model_card_accuracy_is_held_by_a_results_file(card):
    text = card.read_text()
    assert card_accuracy_lines(text), f"{card}: no accuracy lines found (the parser no longer reads this card)"
    assert not card_problems(text, card.parent), card_problems(text, card.parent)


def test_the_figure_check_catches_stale_and_withdrawn_figures():
    """The checks above can fail: the teacher card's old 97.2 % (144 images, the evaluator before its reject head)
    and nerf-sds's old time line with the withdrawn 'median Chamfer 0.019 (9/12)'."""
    teacher = ROOT / "dreamer" / "assets" / "shapes-teacher"
    old_card = (teacher / "MODEL_CARD.md").read_text() + (
        "\n- DDIM 50 steps, CFG 3.0, 144 samples: prompt accuracy (shape and colour both right) **97.2 %**; the same "
        "evaluator on 144 GT renders: 98.6 %\n")
    assert {p.split(":")[0] for p in card_problems(old_card, teacher)} >= {"97.2 %", "98.6 %", "144"}
    old_time = "# time: 78-180 s (2 CPU cores; median Chamfer 0.019 (9/12 <= 0.05))"
    assert time_line_problems(old_time) == [f"figures but no results file: {old_time}"]
    named = old_time[:-1] + "; docs/results/text_to_3d.json)"
    assert {p.split(":")[0] for p in time_line_problems(named)} >= {"0.019", "180"}
    assert card_accuracy_lines("| a | accuracy |\n|---|---|\n| x 5 | 0.972 |\nplain 3.5\nit: accuracy 0.5 (n 9)") == [
        " 0.972 |", "accuracy 0.5 (n 9)"]
    assert figures("seeds 0-2, 32-42 min, 1,008 images, 3D, x0, 8px, 1e-3, 95 % Wilson, 97.2 %") == [
        ("0", ""), ("2", ""), ("32", "min"), ("42", "min"), ("1008", ""), ("97.2", "%")]
    assert is_held("42", "min", [2490.0]) and is_held("97.2", "%", [0.972]) and not is_held("97.2", "", [0.972])


def test_written_figures_are_up_to_date():
    assert _load_script("write_figures").main(["--check"]) == 0, "run: python scripts/write_figures.py"


def test_check_mode_names_a_hand_edited_figure(tmp_path, capsys):
    """A copy of the text files the script reads and writes, one time line typed by hand: --check fails naming it,
    and a write run puts the figure from the results file back."""
    for rel in ("docs", "dreamer/configs"):
        shutil.copytree(ROOT / rel, tmp_path / rel)
    for p in (ROOT / "dreamer" / "assets").glob("*/*"):
        if p.suffix in (".json", ".md"):
            (tmp_path / p.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, tmp_path / p.relative_to(ROOT))
    recipe = tmp_path / "dreamer" / "configs" / "gaussians-sds.yaml"
    good = recipe.read_text()
    recipe.write_text(re.sub(r"^# time:.*$", "# time: 34-43 s (2 CPU cores)", good, flags=re.M))
    wf = _load_script("write_figures")
    assert wf.main(["--check", "--root", str(tmp_path)]) == 1
    assert "dreamer/configs/gaussians-sds.yaml differs" in capsys.readouterr().err
    assert wf.main(["--root", str(tmp_path)]) == 0 and recipe.read_text() == good
    assert wf.main(["--check", "--root", str(tmp_path)]) == 0
