"""Generic config layer over nested dataclasses: dict/YAML load, validation, overrides, inheritance."""
from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # the shipped recipes (package data; ./configs links here)

_MISSING = object()
# field(metadata={MERGE_DEFAULT: True}): a section given as a mapping fills its missing keys from the field's
# default_factory (a GuidanceConfig with DistillConfig's defaults), not from the section class's own defaults
MERGE_DEFAULT = "merge_default"


class ConfigError(ValueError):
    """Bad user-supplied configuration (one-line message)."""


class RenamedKeysError(ConfigError):
    """Keys an older dreamer used (a dataclass's RENAMED_KEYS): `renamed` is [(old, new), ...]."""

    def __init__(self, renamed: list[tuple[str, str]]):
        self.renamed = renamed
        super().__init__(f"renamed keys (from an older dreamer): {renamed_list(renamed)}")


def renamed_list(renamed: list[tuple[str, str]]) -> str:
    """"'old' is now 'new', ..."."""
    return ", ".join(f"'{old}' is now '{new}'" for old, new in renamed)


def _join(path: str, key: str) -> str:
    """Dotted key path."""
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    """Readable name for a type annotation."""
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _single_leaf(value: Any) -> str:
    """'.a.b' if `value` is a chain of one-key dicts ({'a': {'b': 1}}), else ''."""
    suffix = ""
    while isinstance(value, dict) and len(value) == 1:
        (k, value), = value.items()
        suffix += f".{k}"
    return suffix if not isinstance(value, dict) else ""


def dotted_keys(cls: type, path: str = "") -> list[str]:
    """Every settable key of dataclass `cls` as a dotted path (sections expanded)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            out += dotted_keys(tp, _join(path, f.name))
        else:
            out.append(_join(path, f.name))
    return out


def _unknown_key(path: str, key: str, valid: list[str], value: Any = None, cls: type | None = None) -> ConfigError:
    """Error for an unknown key naming the full dotted key; a did-you-mean hint only for real keys: a close spelling
    of the whole dotted key, else keys with the same last name ('train.steps' -> 'steps'), else the valid keys."""
    leaf = _single_leaf(value)  # e.g. override `guidanc.cfg_scale=7` -> report the whole dotted key
    full = _join(path, str(key)) + leaf
    real = dotted_keys(cls, path) if cls is not None else [_join(path, k) for k in valid]
    close = difflib.get_close_matches(full, real, n=1, cutoff=0.75)
    if not close:
        last = full.rsplit(".", 1)[-1]
        close = [k for k in real if k.rsplit(".", 1)[-1] == last][:3]
    if close:
        return ConfigError(f"unknown key '{full}' (did you mean {' or '.join(repr(k) for k in close)}?)")
    where = f"'{path}'" if path else "the top level"
    return ConfigError(f"unknown key '{full}' (valid keys at {where}: {', '.join(sorted(valid))})")


def _choice_error(path: str, choices: tuple, value: Any) -> ConfigError:
    """The one-line error of a value outside a Literal field's choices."""
    return ConfigError(f"'{path}' must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")


def _choices(tp: Any) -> tuple | None:
    """The allowed values of a Literal[...] annotation (also inside Optional / a union: None joins them), else None."""
    if get_origin(tp) is Literal:
        return get_args(tp)
    if get_origin(tp) is Union or (hasattr(types, "UnionType") and get_origin(tp) is types.UnionType):
        parts = [_choices(a) if a is not type(None) else (None,) for a in get_args(tp)]
        return None if any(p is None for p in parts) else tuple(c for p in parts for c in p)
    return None


def check_choices(obj: Any, path: str = "") -> None:
    """Raise the Literal fields' ConfigError on the first value outside its choices anywhere in a (nested) dataclass
    built in code (from_dict already checks what it reads)."""
    if not (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
        return
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), _join(path, f.name)
        choices = _choices(hints[f.name])
        if choices is not None and value not in choices:
            raise _choice_error(key, choices, value)
        check_choices(value, key)


def _coerce(tp: Any, value: Any, path: str) -> Any:
    """Check/convert one value against a type annotation."""
    if tp is Any or tp is typing.Any:
        return value
    origin = get_origin(tp)
    if origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"'{path}' must not be null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"'{path}': {value!r} does not match {_type_name(tp)}")
    if origin is Literal:
        choices = get_args(tp)
        if value in choices:
            return value
        raise _choice_error(path, choices, value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"'{path}' must be a mapping, got {type(value).__name__}")
        return from_dict(tp, value, path)
    if origin in (tuple, list) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{path}' must be a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple or tp is tuple:
            if args and not (len(args) == 2 and args[1] is Ellipsis):
                if len(value) != len(args):
                    raise ConfigError(f"'{path}' must have {len(args)} items, got {len(value)}")
                return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
            item = args[0] if args else Any
            return tuple(_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value))
        item = args[0] if args else Any
        return [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{path}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ConfigError(f"'{path}' must be a bool (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"'{path}' must be an int, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"'{path}' must be a float, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"'{path}' must be a string, got {value!r}")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"'{path}' must be {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type, data: dict, path: str = "") -> Any:
    """Build (and validate) dataclass `cls` from a nested dict. Keys of the class's RENAMED_KEYS table ({old: new
    dotted key}, top level) raise RenamedKeysError naming every one given."""
    if not isinstance(data, dict):
        raise ConfigError(f"'{path or cls.__name__}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    table = getattr(cls, "RENAMED_KEYS", {}) if not path else {}
    old = [(k, table[k]) for k in data if k not in fields and k in table]
    if old:
        raise RenamedKeysError(old)
    for key in data:
        if key not in fields:
            raise _unknown_key(path, key, list(fields), data[key], cls)
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            value = data[name]
            if f.metadata.get(MERGE_DEFAULT) and isinstance(value, dict):   # a section over this field's own default
                value = deep_merge(to_dict(f.default_factory()), value)
            kwargs[name] = _coerce(hints[name], value, _join(path, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key '{_join(path, name)}'")
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain nested dict (tuples become lists; YAML-friendly)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _read_yaml(path: Path) -> dict:
    """Read a YAML mapping (empty file -> {})."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML in {path}: {str(e).splitlines()[0]}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a YAML mapping at the top level")
    return data


def load_yaml(cls: type, path: str | Path) -> Any:
    """Load a YAML file into dataclass `cls`."""
    return from_dict(cls, _read_yaml(Path(path)))


def dump_yaml(obj: Any, path: str | Path) -> Path:
    """Write a dataclass (or dict) to a YAML file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(obj), sort_keys=False, default_flow_style=None))
    return path


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of `data` with `a.b.c=value` overrides applied (values parsed as YAML)."""
    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"malformed override '{item}' (expected key=value, e.g. train.steps=200)")
        parts = key.split(".")
        if any(not p for p in parts):
            raise ConfigError(f"malformed override key '{key}' (empty component)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            elif not isinstance(nxt, dict):
                raise ConfigError(f"cannot override '{key}': '{'.'.join(parts[:i + 1])}' is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def available_configs(config_dir: str | Path) -> list[str]:
    """Names of the *.yaml configs in `config_dir`."""
    d = Path(config_dir)
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def resolve_config_path(name_or_path: str | Path, config_dir: str | Path) -> Path:
    """Map a config name (`gaussians-sds`) or a direct path to an existing YAML file."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    s = str(name_or_path)
    for cand in (Path(config_dir) / s, Path(config_dir) / f"{s}.yaml", Path(config_dir) / f"{s}.yml"):
        if cand.is_file():
            return cand
    if p.is_dir():
        raise ConfigError(f"config {s} is a folder, not a YAML file")
    if p.suffix in (".yaml", ".yml") or "/" in s or "\\" in s:  # a path, not a recipe name
        raise ConfigError(f"config file {s} not found")
    names = available_configs(config_dir)
    hint = difflib.get_close_matches(p.stem, names, n=1)
    mean = f" (did you mean '{hint[0]}'?)" if hint else ""
    raise ConfigError(f"unknown config '{s}'{mean}; available: {', '.join(names) or '(none)'}")


def deep_merge(base: dict, child: dict) -> dict:
    """Recursively merge `child` into a copy of `base` (child wins)."""
    out = copy.deepcopy(base)
    for k, v in child.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config_dict(name_or_path: str | Path, config_dir: str | Path, _seen: tuple = ()) -> dict:
    """Load a config dict, resolving `base: other-name` inheritance recursively."""
    path = resolve_config_path(name_or_path, config_dir).resolve()
    if path in _seen:
        chain = " -> ".join(p.stem for p in (*_seen, path))
        raise ConfigError(f"circular config inheritance: {chain}")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"'base' in {path.name} must be a config name, got {base!r}")
    base_dir = config_dir
    if not (Path(config_dir) / f"{base}.yaml").is_file() and (path.parent / f"{base}.yaml").is_file():
        base_dir = path.parent
    return deep_merge(load_config_dict(base, base_dir, (*_seen, path)), data)


def check_finite(obj: Any, path: str = "") -> None:
    """Raise ConfigError on the first NaN / inf float anywhere in a (nested) dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            check_finite(getattr(obj, f.name), _join(path, f.name))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_finite(v, f"{path}[{i}]")
    elif isinstance(obj, float) and not math.isfinite(obj):
        raise ConfigError(f"'{path}' must be a finite number, got {obj}")


def flatten(data: Any, path: str = "") -> dict[str, Any]:
    """Nested dict -> {'a.b.c': leaf}."""
    if not isinstance(data, dict):
        return {path: data}
    out: dict[str, Any] = {}
    for k, v in data.items():
        out.update(flatten(v, _join(path, str(k))))
    return out
