"""The distillation benchmark's helpers: prompt set, label grouping, and which generators saw GT renders (run folders
written as `dreamer distill` writes them: config.yaml beside generator/generator.json)."""
import json

import pytest
import yaml

from dreamer.common.view_prompts import VIEW_SUFFIXES
from dreamer.shapes.benchmark import (benchmark_objects, benchmark_prompts, group_labels, pool_rows, saw_gt_renders,
                                      success_rate)
from dreamer.shapes.world import COLOUR_NAMES, SHAPES, catalogue, catalogue_prompts


def test_objects_cover_shapes_and_colours():
    six = benchmark_objects(6)
    assert {s.shape for s in six} == set(SHAPES) and {s.colour for s in six} == set(COLOUR_NAMES)
    assert benchmark_objects(36) == catalogue()
    assert len(benchmark_objects(13)) == 13
    with pytest.raises(ValueError):
        benchmark_objects(0)


def test_prompts_every_suffix_repeats_times():
    specs, prompts = benchmark_prompts(catalogue(), 4 * 7)
    assert len(prompts) == 1008
    for s in catalogue():
        mine = [p for sp, p in zip(specs, prompts) if sp == s]
        assert sorted(mine) == sorted(f"{s.prompt}, {v}" for v in VIEW_SUFFIXES for _ in range(7))
    assert (specs, prompts) == catalogue_prompts(28)     # the old layout, extended
    assert benchmark_prompts(catalogue(), 2) == catalogue_prompts(2)


def test_group_labels():
    assert group_labels(["dmd", "kd", "dmd", "dmd"]) == {"dmd": [0, 2, 3], "kd": [1]}


def _run(root, name, config=None, method=None, sub="generator"):
    gen = root / name / sub
    gen.mkdir(parents=True)
    (gen / "generator.json").write_text(json.dumps({"method": method or (config or {}).get("method"),
                                                    "timesteps": [999], "prediction_type": "epsilon"}))
    if config is not None:
        (root / name / "config.yaml").write_text(yaml.safe_dump(config))
    return root / name


@pytest.mark.parametrize("config, saw", [
    ({"method": "progressive", "data": "shapes"}, True),
    ({"method": "consistency", "data": "teacher"}, False),
    ({"method": "guidance", "data": "shapes"}, True),
    ({"method": "noise_lora", "data": "shapes"}, True),
    ({"method": "add", "data": "shapes"}, True),
    ({"method": "dmd", "data": "shapes", "gan": {"weight": 0.0}}, False),
    ({"method": "dmd", "data": "shapes", "gan": {"weight": 100.0}}, True),
    ({"method": "dmd", "data": "teacher", "gan": {"weight": 100.0}}, False),
    ({"method": "diff_instruct", "data": "shapes"}, False),
    ({"method": "kd", "data": "shapes"}, False),
    ({"method": "reflow", "data": "shapes"}, False),
])
def test_saw_gt_renders_from_config(tmp_path, config, saw):
    run = _run(tmp_path, "r", config)
    assert saw_gt_renders(run)[0] is saw                     # the run folder
    assert saw_gt_renders(run / "generator")[0] is saw       # the generator folder inside it


def test_saw_gt_renders_fallbacks(tmp_path):
    # generator.json alone: the recipe defaults (data: shapes, no GAN)
    assert saw_gt_renders(_run(tmp_path, "a", None, "consistency"))[0] is True
    assert saw_gt_renders(_run(tmp_path, "b", None, "dmd"))[0] is False
    # a later stage of a run (run/stage-4) reads the run's config.yaml
    assert saw_gt_renders(_run(tmp_path, "c", {"method": "progressive", "data": "teacher"}, sub="stage-4")
                          / "stage-4")[0] is False
    # a config.yaml of another method next to the generator is not this run's
    d = _run(tmp_path, "d", {"method": "kd"}, method="add")
    assert saw_gt_renders(d)[0] is True
    # distilled from a generator that saw GT renders
    e = _run(tmp_path, "e", {"method": "kd", "teacher": str(tmp_path / "a" / "generator")})
    saw, why = saw_gt_renders(e)
    assert saw is True and "teacher" in why
    (tmp_path / "f").mkdir()
    assert saw_gt_renders(tmp_path / "f")[0] is None
    assert saw_gt_renders(_run(tmp_path, "g", {"method": "mystery"}))[0] is None


def test_success_rate_one_seed_several_seeds_and_absent():
    from dreamer.shapes.stats import wilson_interval

    rows = [{"seed": 0, "right": r} for r in (True, True, False, True)]
    s, note = success_rate(rows)
    assert note is None and (s["k"], s["n"], s["rate"]) == (3, 4, 0.75)
    assert (s["lo"], s["hi"]) == wilson_interval(3, 4)
    rows += [{"seed": 1, "right": r} for r in (True, False, False, False)]
    s, _ = success_rate(rows)
    assert (s["k"], s["n"], s["seeds"], s["min"], s["max"]) == (4, 8, 2, 0.25, 0.75)
    assert s["by_seed"]["1"]["k"] == 1
    s, note = success_rate(rows + [{"seed": 2, "chamfer": 0.01}])
    assert s is None and "1 of 9 runs" in note
    assert success_rate([])[0] is None


def test_pool_rows():
    rows = [{"method": f"dmd-s{s}-4", "train_seed": s, "correct": c, "n": 100, "fd": fd, "diversity": 1.0,
             "sec_per_image": 0.1, "train_seconds": None, "saw_gt_renders": False, "trainer": "dmd",
             "sampler": "renoise"} for s, c, fd in ((0, 90, 40.0), (1, 96, 30.0), (2, 93, 35.0))]
    p = pool_rows("dmd", 4, rows)
    assert p["method"] == "dmd-4" and p["pooled"] and p["seeds"] == 3 and p["train_seeds"] == [0, 1, 2]
    assert p["accuracy"] == pytest.approx(0.93) and (p["accuracy_min"], p["accuracy_max"]) == (0.90, 0.96)
    assert (p["correct"], p["n"]) == (279, 300)
    assert (p["fd"], p["fd_min"], p["fd_max"]) == (35.0, 30.0, 40.0) and p["train_seconds"] is None
    assert p["saw_gt_renders"] is False and p["trainer"] == "dmd"
    rows[1]["saw_gt_renders"] = True
    assert pool_rows("dmd", 4, rows)["saw_gt_renders"] is None
