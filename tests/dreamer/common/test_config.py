"""Tests for the generic dataclass config layer."""
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest
import yaml

from dreamer.common.config import (
    ConfigError, apply_overrides, dump_yaml, from_dict, load_config_dict, load_yaml,
    resolve_config_path, to_dict,
)


@dataclass
class Guidance:
    cfg_scale: float = 100.0
    t_range: tuple[float, float] = (0.02, 0.98)
    kind: Literal["sds", "nfsd", "vsd"] = "sds"


@dataclass
class Train:
    steps: int = 1000
    lr: float = 1e-2
    fp16: bool = False
    seed: Optional[int] = None
    milestones: list[int] = field(default_factory=list)


@dataclass
class Cfg:
    name: str = "run"
    guidance: Guidance = field(default_factory=Guidance)
    train: Train = field(default_factory=Train)


def test_round_trip_nested():
    config = from_dict(Cfg, {"name": "a", "guidance": {"cfg_scale": 7, "t_range": [0.1, 0.9]},
                             "train": {"steps": 5, "fp16": "true", "seed": 3, "milestones": [1, 2]}})
    assert config.guidance == Guidance(cfg_scale=7.0, t_range=(0.1, 0.9))
    assert isinstance(config.guidance.cfg_scale, float) and isinstance(config.guidance.t_range, tuple)
    assert config.train == Train(steps=5, fp16=True, seed=3, milestones=[1, 2])
    d = to_dict(config)
    assert d["guidance"]["t_range"] == [0.1, 0.9]  # tuples -> lists (YAML-friendly)
    assert from_dict(Cfg, d) == config
    assert from_dict(Cfg, {}) == Cfg()


def test_unknown_key_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown key 'guidance\.cfg_scal' \(did you mean 'guidance\.cfg_scale'\?\)"):
        from_dict(Cfg, {"guidance": {"cfg_scal": 7.5}})
    with pytest.raises(ConfigError) as e:
        from_dict(Cfg, {"train": {"zzz": 1}})
    assert "unknown key 'train.zzz'" in str(e.value) and "fp16, lr, milestones, seed, steps" in str(e.value)


@pytest.mark.parametrize("data, msg", [
    ({"train": {"steps": "ten"}}, "'train.steps' must be an int"),
    ({"train": {"fp16": "yes please"}}, "'train.fp16' must be a bool"),
    ({"guidance": {"kind": "xyz"}}, "'guidance.kind' must be one of 'sds', 'nfsd', 'vsd'"),
    ({"guidance": {"t_range": [0.1]}}, "'guidance.t_range' must have 2 items"),
    ({"guidance": 3}, "'guidance' must be a mapping"),
    ({"train": {"seed": "x"}}, "'train.seed' must be an int"),
])
def test_type_errors(data, msg):
    with pytest.raises(ConfigError) as e:
        from_dict(Cfg, data)
    assert msg in str(e.value)


def test_overrides_dotted_and_coerced():
    base = to_dict(Cfg())
    d = apply_overrides(base, ["guidance.cfg_scale=7.5", "train.steps=200", "guidance.kind=nfsd",
                               "train.milestones=[1,2]", "train.fp16=true", "name=hello"])
    assert base["train"]["steps"] == 1000  # input untouched
    config = from_dict(Cfg, d)
    assert config.guidance.cfg_scale == 7.5 and config.guidance.kind == "nfsd"
    assert config.train.steps == 200 and config.train.milestones == [1, 2] and config.train.fp16 is True
    assert config.name == "hello"


def test_override_unknown_key_names_full_dotted_key():
    with pytest.raises(ConfigError, match=r"unknown key 'guidance\.cfg_scal' \(did you mean 'guidance\.cfg_scale'\?\)"):
        from_dict(Cfg, apply_overrides(to_dict(Cfg()), ["guidance.cfg_scal=7"]))
    # missing intermediate section in the dict (e.g. config omitted 'guidance') still names the full key
    with pytest.raises(ConfigError, match=r"unknown key 'guidanc\.cfg_scale' \(did you mean 'guidance\.cfg_scale'\?\)"):
        from_dict(Cfg, apply_overrides({}, ["guidanc.cfg_scale=7"]))


@pytest.mark.parametrize("bad", ["train.steps", "=3", "a..b=1"])
def test_malformed_override(bad):
    with pytest.raises(ConfigError, match="malformed override"):
        apply_overrides({}, [bad])


def test_base_inheritance_and_resolve(tmp_path):
    (tmp_path / "root.yaml").write_text("name: root\nguidance: {cfg_scale: 50, kind: vsd}\ntrain: {steps: 10}\n")
    (tmp_path / "mid.yaml").write_text("base: root\ntrain: {lr: 0.5}\n")
    (tmp_path / "leaf.yaml").write_text("base: mid\nguidance: {cfg_scale: 7.5}\n")
    d = load_config_dict("leaf", tmp_path)
    assert d == {"name": "root", "guidance": {"cfg_scale": 7.5, "kind": "vsd"}, "train": {"steps": 10, "lr": 0.5}}
    assert load_config_dict(tmp_path / "leaf.yaml", "/nonexistent") == d  # direct path, base beside it
    assert resolve_config_path("mid", tmp_path) == tmp_path / "mid.yaml"
    with pytest.raises(ConfigError, match=r"unknown config 'lef' \(did you mean 'leaf'\?\); available: leaf, mid, root"):
        resolve_config_path("lef", tmp_path)
    (tmp_path / "loop.yaml").write_text("base: loop\n")
    with pytest.raises(ConfigError, match="circular config inheritance"):
        load_config_dict("loop", tmp_path)


def test_yaml_dump_load_round_trip(tmp_path):
    config = Cfg(name="x", guidance=Guidance(7.5, (0.2, 0.8), "vsd"), train=Train(seed=1, milestones=[3]))
    p = dump_yaml(config, tmp_path / "sub" / "cfg.yaml")
    raw = yaml.safe_load(p.read_text())
    assert raw["guidance"]["t_range"] == [0.2, 0.8]
    assert load_yaml(Cfg, p) == config
    (tmp_path / "bad.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_yaml(Cfg, tmp_path / "bad.yaml")


@dataclass
class Choices:
    mode: Literal["fp32", "bf16"] = "fp32"
    light: Optional[Literal["key", "random"]] = None


def test_literal_field_accepts_its_choices_and_names_them_when_rejecting():
    assert from_dict(Choices, {"mode": "bf16", "light": "random"}) == Choices("bf16", "random")
    assert from_dict(Choices, {"light": None}).light is None
    with pytest.raises(ConfigError) as e:
        from_dict(Choices, {"mode": "fp16"})
    assert str(e.value) == "'mode' must be one of 'fp32', 'bf16', got 'fp16'" and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"^'light' must be one of 'key', 'random', got 'sun'$"):
        from_dict(Choices, {"light": "sun"})


def test_check_choices_covers_configs_built_in_code():
    from dreamer.common.config import check_choices

    check_choices(Cfg())
    check_choices(Choices(light=None))
    with pytest.raises(ConfigError, match=r"^'guidance\.kind' must be one of 'sds', 'nfsd', 'vsd', got 'x'$"):
        check_choices(Cfg(guidance=Guidance(kind="x")))
    with pytest.raises(ConfigError, match=r"^'light' must be one of 'key', 'random', None, got 'sun'$"):
        check_choices(Choices(light="sun"))
