"""docs/results.md from the results files: one section per file, each naming its command, n, seeds and interval.
Used by scripts/write_figures.py (the only writer of that page)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from dreamer.shapes.stats import wilson_interval

RESULTS = Path("docs") / "results"
EVALUATOR = Path("dreamer") / "assets" / "shapes-evaluator" / "training.json"


def load(root: Path, name: str) -> dict:
    return json.loads((root / RESULTS / name).read_text())


def spec(x) -> str:
    """A settings dict / list as one short phrase: {'a': 1, 'b': [0, 1]} -> 'a 1, b 0 1'."""
    if isinstance(x, dict):
        return ", ".join(f"{k.replace('_', ' ')} {spec(v)}" for k, v in x.items())
    if isinstance(x, list):
        return " ".join(spec(v) for v in x)
    return str(x)


def header(env: dict, name: str) -> list[str]:
    """The lines every table starts with: file, command, n, seeds, interval, when and where, how it was recorded."""
    cmd = env["command"] if "reproduce" not in env else "\n".join(env["reproduce"])
    out = [f"Source: `{RESULTS / name}` ({env['source']}). Measured {env['measured']}; machine: "
           f"{spec(env['machine'])}.", "", f"n: {spec(env['n'])}. Seeds: {spec(env['seeds'])}. "
           f"Interval: {env['interval']}."]
    if env.get("how"):
        out += ["", f"How: {env['how']}."]
    return out + ["", "Regenerate:", "", "```bash", cmd, "```", ""]


def table(head: list[str], rows: list[list]) -> list[str]:
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows] + [""])


def _iv(lo, hi, d=3) -> str:
    return f"{lo:.{d}f}-{hi:.{d}f}"


def _apart(a: dict, b: dict) -> bool:
    return a["hi"] < b["lo"] or b["hi"] < a["lo"]


def _order(a: str, ra: dict, b: str, rb: dict) -> str:
    """'`hi` above `lo` (gap g)' for two rates whose intervals do not overlap."""
    (hi, rh), (lo, rl) = ((a, ra), (b, rb)) if ra["lo"] > rb["hi"] else ((b, rb), (a, ra))
    return f"`{hi}` above `{lo}` (gap {rh['lo'] - rl['hi']:.4f})"


def text_to_3d(root: Path) -> list[str]:
    env = load(root, "text_to_3d.json")
    s = env["result"]["summary"]

    def seeds(r):
        return " + ".join(str(v["k"]) for v in r["by_seed"].values())

    def right(r):
        return f"**{r['k']}** ({seeds(r)}; {_iv(r['lo'], r['hi'])})"
    rows = [[f"`{name}`", r["runs"], right(r["success"]),
             f"{r['glb_success']['k']} ({seeds(r['glb_success'])})", f"{r['fscore_2pct']:.2f} / {r['iou']:.2f}",
             r["colour_correct"]["k"], r["shape_correct"]["k"], r["topology_correct"]["k"],
             f"{r['prompt_accuracy_8_views']:.3f}", f"{r['train_seconds']:.0f}", env["trees"][name]]
            for name, r in s.items()]
    names = list(s)
    apart = [_order(a, s[a]["success"], b, s[b]["success"]) for i, a in enumerate(names) for b in names[i + 1:]
             if _apart(s[a]["success"], s[b]["success"])]
    return ["## Text-to-3D: the strict test on each recipe's mesh", ""] + header(env, "text_to_3d.json") + table(
        ["recipe", "runs", "right (per seed; 95 % Wilson)", "right, textured GLB (per seed)", "median F@2% / IoU",
         "colour right", "shape right", "genus right", "evaluator on 8 mesh views (median)", "training s (median)",
         "tree"], rows) + [
        "`right` is the verdict `metrics.json` carries, on `mesh.ply`; the GLB column applies the same test to the "
        "cleaned, textured `mesh.glb`. Rows whose success intervals do not overlap: "
        + ("; ".join(apart) if apart else "none") + ". Every other pair overlaps and is not ranked. What fails is "
        "geometry (F-score, IoU, topology, scale, and shape identity: cubes read as spheres and pyramids as cones, "
        "their edges rounded); the per-run reasons are in each run's `metrics.json`.", ""]


def export(root: Path) -> list[str]:
    env = load(root, "export.json")
    rows = [[f"`{r['recipe']}`", f"{r['n']} ({r['runs']})", f"{r['export_gap_db']:.2f} / {r['max_export_gap_db']:.2f}",
             f"{r['export_gap_psnr']:.1f}", f"{r['raw_faces']:,} -> {r['textured_faces']:,}",
             f"{r['raw_genus_positive']} -> {r['genus_positive']}", f"{r['watertight']}/{r['n']}",
             f"{r['export_seconds']:.1f} / {r['max_export_seconds']:.1f}"] for r in env["result"]["summary"].values()]
    return ["## Textured export", ""] + header(env, "export.json") + table(
        ["recipe", "n", "export_gap_db (median / max)", "export_gap_psnr dB (median)", "faces before -> after (median)",
         "assets of genus > 0 before -> after", "watertight", "export wall s (median / max)"], rows)


def distillation(root: Path) -> list[str]:
    env = load(root, "distillation.json")
    res = env["result"]
    rows = res["rows"]
    ref = next(r for r in rows if r["method"] == res["reference"])
    refr = {"lo": ref["accuracy_lo"], "hi": ref["accuracy_hi"]}
    teacher = {r["steps"]: r for r in rows if r["label"] == "teacher"}

    def acc(r):
        star = "*" if _apart({"lo": r["accuracy_lo"], "hi": r["accuracy_hi"]}, refr) else ""
        return f"{r['accuracy']:.3f} ({_iv(r['accuracy_lo'], r['accuracy_hi'])}){star}"
    out = [["teacher DDIM", "no", "-", "-"] + [acc(teacher[n]) for n in (1, 2, 4)]
           + [" / ".join(f"{teacher[n]['fd']:.0f}" for n in (1, 2, 4)),
              f"{teacher[1]['diversity']:.2f} / {teacher[4]['diversity']:.2f}"]]
    spread = []
    for label in dict.fromkeys(r["label"] for r in rows if r["label"] != "teacher"):
        pooled = {r["steps"]: r for r in rows if r["label"] == label and r.get("pooled")}
        members = {n: [r for r in rows if r["label"] == label and not r.get("pooled") and r["steps"] == n]
                   for n in pooled}
        mins = " / ".join(f"{r['train_seconds'] / 60:.1f}" for r in members[1])
        cells = [acc(pooled[n]) + "; " + " / ".join(f"{r['accuracy']:.3f}" for r in members[n]) for n in (1, 2, 4)]
        out.append([label, "yes" if pooled[1]["saw_gt_renders"] else "no", len(members[1]), mins, *cells,
                    " / ".join(f"{pooled[n]['fd']:.0f}" for n in (1, 2, 4)),
                    f"{pooled[1]['diversity']:.2f} / {pooled[4]['diversity']:.2f}"])
        spread += [f"{label} at {n} step{'s' * (n > 1)}" for n in (1, 2, 4)
                   if pooled[n]["accuracy_max"] - pooled[n]["accuracy_min"] > _seed_width(pooled[n]["accuracy"],
                                                                                           res["n_images"])]
    above = [f"{r['label']} at {r['steps']}" for r in rows if r.get("pooled") and r["accuracy_lo"] > ref["accuracy_hi"]]
    return ["## Distilled generators against the teacher's DDIM", ""] + header(env, "distillation.json") + [
        f"The teacher rows alone: `{env['teacher_rows_command']}`. The reference is {res['reference']}: "
        f"{ref['accuracy']:.3f} ({_iv(ref['accuracy_lo'], ref['accuracy_hi'])}), FD {ref['fd']:.0f}, diversity "
        f"{ref['diversity']:.2f}; GT renders: accuracy {res['gt_accuracy']:.3f}, diversity {res['gt_diversity']:.2f}.",
        ""] + table(["generator", "saw GT renders", "seeds", "train min (per seed)", "accuracy, 1 step", "2 steps",
                     "4 steps", "FD 1 / 2 / 4 steps", "diversity 1 / 4 steps"], out) + [
        "Accuracy pooled over the training seeds with its 95 % Wilson interval (images only), then each seed's own; "
        "`*`: the interval does not overlap the reference's. FD: Fréchet distance to GT renders in the evaluator's "
        "features (mean of the seeds). Train minutes were measured under different loads: no speed comparison.", "",
        "- Pooled rows above the reference's interval: " + (", ".join(above) or "none") + ". Their diversity is "
        "below the teacher's, and prototypical views are easier to name: this is not \"better than the teacher\".",
        "- Rows whose training seeds spread wider than one seed's 95 % image interval (the pooled interval "
        "understates their uncertainty): " + (", ".join(spread) or "none") + ".",
        "- `saw GT renders`: trained on ground-truth shapes-world renders, so their FD to GT renders is not "
        "comparable with the teacher-only methods'. The one-step students (progressive, KD, reflow) lose accuracy "
        "when sampled with more steps.", ""]


def _seed_width(p: float, n: int) -> float:
    """Width of one seed's 95 % Wilson interval at accuracy p over n images."""
    lo, hi = wilson_interval(round(p * n), n)
    return hi - lo


def calibration(root: Path) -> list[str]:
    env = load(root, "strict_calibration.json")
    cal, th = env["result"]["calibration"], env["result"]["thresholds"]
    limit = {"shape_margin": "> 0", "fscore_2pct": f">= {th['F_MIN']}", "iou": f">= {th['IOU_MIN']}",
             "scale_error": f"<= {th['SCALE_MAX']}", "floater_share": f"<= {th['FLOATER_MAX']}"}
    groups = [g for g in next(iter(cal.values())) if g != "allowed"]
    rows = [[f"`{m}`", limit[m], f"{v['allowed']:.4f}", *(f"{v[g]:.4f}" for g in groups)] for m, v in cal.items()]
    return ["## The strict test's calibration on ground truth", ""] + header(env, "strict_calibration.json") + table(
        ["metric", "passes when", "worst must-pass (GT, jittered, marching-cubed)",
         *(f"best of {g.replace('_', ' ')}" for g in groups)], rows) + [
        "A must-fail group has to fail only its own check: x1.25 and x0.8 scale, floater the floaters, filled torus "
        "the topology, wrong colour the colour, wrong shape the shape (`dreamer/shapes/strict_calibration.py`, "
        "MUST_FAIL).", ""]


def guidance_cost(root: Path) -> list[str]:
    env = load(root, "guidance_cost.json")
    runs = sorted(env["result"], key=lambda r: r["batch"])
    names = [k.removesuffix("_step_s") for k in runs[0] if k.endswith("_step_s")]
    def cost(r, n):  # older runs of the script printed no per-row x SDS or forward count
        return f"{r[n + '_vs_bare']:.2f}x" + (f" / {r[n + '_vs_sds']:.2f}x" if n + "_vs_sds" in r else "")
    fwd = runs[0]
    rows = [[f"`{n}`", f"{fwd[n + '_teacher_forwards']:g}" if n + "_teacher_forwards" in fwd else "-",
             *(cost(r, n) for r in runs)] for n in names]
    t = runs[0]["targets"]
    return ["## Per-step cost of the guidance methods", ""] + header(env, "guidance_cost.json") + table(
        ["row", "teacher forwards per image", *(f"batch {r['batch']}: x bare forward / x SDS" for r in runs)], rows) + [
        "A bare batched-CFG teacher forward takes " + ", ".join(
            f"{1000 * r['bare_cfg_forward_s']:.1f} ms at batch {r['batch']}" for r in runs)
        + f" ({runs[0]['clock']} clock). Design targets: SDS <= {t['sds_vs_bare_max']}x a bare forward, VSD <= "
        f"{t['vsd_vs_sds_max']}x SDS. `vsd_separate_pass`: the LoRA trained on its own pass and draw.", ""]


def scale(root: Path) -> list[str]:
    env = load(root, "scale.json")
    r = env["result"]
    g, d = r["generate"], r["distill"]
    rows = [["generate (prompts/hour)", g[0]["prompts_per_hour"], g[1]["prompts_per_hour"],
             f"x{r['generate_scaling']:.2f}"],
            ["distill DMD (steps/s, same global batch)", d[0]["steps_per_s"], d[1]["steps_per_s"],
             f"x{r['distill_scaling']:.2f}"]]
    return ["## Scale-out, 1 vs 2 workers", ""] + header(env, "scale.json") + table(
        ["job", "1 worker", "2 workers", "ratio"], rows) + [
        "Two workers on two cores share them: the ratio measures the sharing, not the scaling of a machine with a "
        "core or GPU per worker.", ""]


def evaluator(root: Path) -> list[str]:
    s = json.loads((root / EVALUATOR).read_text())
    sets = [("held_out_gt", "correct", f"GT renders, seed {s['held_out_seed']}"),
            ("fresh_held_out_gt", "correct", f"GT renders, seed {s['fresh_seed']}"),
            ("held_out_negatives", "rejected", f"held-out negatives, seed {s['held_out_seed']}"),
            ("fresh_held_out_negatives", "rejected", f"held-out negatives, seed {s['fresh_seed']}"),
            ("held_out_gt_relit", "correct", "GT renders under other lighting"),
            ("mesh_renders_flat_shaded", "correct", "flat-shaded marching-cubes meshes of the GT shapes")]
    rows = [[what, key, f"{s[k][key]['rate']:.4f}", f"{s[k][key]['k']}/{s[k][key]['n']}",
             _iv(*s[k][key]["wilson95"], d=4)] for k, key, what in sets]
    return ["## The shapes evaluator", "",
            f"Source: `{EVALUATOR}` (written by its training run). Command: `{s['command']}`; training seed "
            f"{s['train_seed']}, {s['threads']} thread(s). Interval: 95 % Wilson. Every figure, per-kind rates and "
            "probes: its `MODEL_CARD.md`.", ""] + table(["set", "rate of", "rate", "k/n", "95 % Wilson"], rows)


def cuda(root: Path) -> list[str]:
    env = load(root, "cuda_h200.json")

    def result(r):
        return "; ".join(spec(v) if k == "result" else f"{k.replace('_', ' ')} {spec(v)}"
                         for k, v in r.items() if k not in ("what", "command"))
    rows = [[r["what"], f"`{r['command']}`", result(r)] for r in env["result"]["rows"]]
    head = [ln for ln in header(env, "cuda_h200.json") if ln not in ("Regenerate:", "```bash", "```", env["command"])]
    return ["## CUDA: parity and timings on one GPU", ""] + head + [
        env["caveat"][0].upper() + env["caveat"][1:] + ".", ""] + table(["what", "command (regenerates the row)",
                                                                      "result"], rows)


def oracle(root: Path) -> list[str]:
    """Oracle ceiling: each recipe's scene fitted to GT renders, exported, judged strictly (scripts/oracle_ceiling.py)."""
    env = load(root, "oracle.json")
    rows = []
    for r in env["result"]["rows"]:
        for surface, v in r["surfaces"].items():
            s = v["success"]
            rows.append([f"`{r['recipe']}`", r["target"], surface, f"{v['right']}/{v['n']}", _iv(s["lo"], s["hi"]),
                         v["glb_right"], f"{v['median_fscore_2pct']:.3f}", f"{v['median_iou']:.3f}",
                         f"{v['median_fit_seconds']:.0f} / {v['max_fit_seconds']:.0f}", v["steps"]])
    return ["## Oracle ceiling (no guidance)", "", *header(env, "oracle.json"),
            *table(["recipe", "fit target", "export", "right", "95 % interval", "GLB right", "median F@2%",
                    "median IoU", "fit s (median / max)", "steps"], rows)]


def page(root: Path) -> str:
    parts = [["# Results", "",
              "Written by `python scripts/write_figures.py` from the results files in `docs/results/` and the "
              "assets' JSON: edit those (or rerun the command a section names), never this page. "
              "`python scripts/write_figures.py --check` (run by `tests/test_figures.py`) fails when this page, a "
              "recipe's `# time:` line or a model card's figures differ from what those files say. Files marked "
              "\"transcribed\" hold figures as they were recorded when measured; the benchmark's printed JSON was "
              "not kept.", ""]]
    parts += [f(root) for f in (text_to_3d, oracle, export, distillation, calibration, guidance_cost, scale, evaluator, cuda)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line for p in parts for line in p)).rstrip() + "\n"
