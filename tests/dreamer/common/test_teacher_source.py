"""Teacher sources: a local diffusers folder is first-class; a hub id is served from the local HF cache only
(no network, no retries): uncached -> one line, nothing written. "Fast" is tested as what makes it fast (no socket
opened, no sleep between retries), not by a clock: a clock bound tests the machine."""
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dreamer.common.errors import TeacherError
from dreamer.common.teacher_source import check_teacher_source, load_teacher

REPO = Path(__file__).resolve().parents[3]


def _fake_cache(root: Path, repo: str, folder: Path) -> Path:
    """An HF hub cache holding `folder` as repo's main snapshot (the layout huggingface_hub writes)."""
    base = root / ("models--" + repo.replace("/", "--"))
    snap = base / "snapshots" / ("0" * 40)
    shutil.copytree(folder, snap)
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text("0" * 40)
    return snap


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def no_waiting(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("slept (a retry back-off)")
    monkeypatch.setattr(time, "sleep", refuse)


def test_uncached_hub_id_fails_fast_without_network(no_network, no_waiting, monkeypatch, tmp_path):
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    for offline in (False, True):
        monkeypatch.setattr(c, "HF_HUB_OFFLINE", offline)
        with pytest.raises(TeacherError, match="not in the local Hugging Face cache") as e:
            check_teacher_source("stabilityai/stable-diffusion-2-1-base")
        assert "local diffusers folder" in str(e.value)
        assert ("HF_HUB_OFFLINE=1" in str(e.value)) == offline


def test_cached_hub_id_loads_from_the_snapshot(no_network, monkeypatch, tmp_path, tiny_sd_dir):
    import huggingface_hub.constants as c
    snap = _fake_cache(tmp_path / "hub", "org/tiny-sd", tiny_sd_dir)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    assert check_teacher_source("org/tiny-sd") == snap
    teacher = load_teacher("org/tiny-sd")
    assert teacher.vae is not None and teacher.encode_prompt(["a red cube"]).shape[0] == 1


def test_incomplete_folder_is_named(tmp_path, tiny_sd_dir):
    shutil.copytree(tiny_sd_dir, tmp_path / "t")
    shutil.rmtree(tmp_path / "t" / "text_encoder")
    with pytest.raises(TeacherError, match="lacks text_encoder/"):
        check_teacher_source(tmp_path / "t")


def test_cli_uncached_hub_id_is_one_quiet_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_HOME")}
    env.update(PYTHONPATH=str(REPO), HF_HUB_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "dreamer.cli", "distill", "--out", str(tmp_path / "run"),
                           "--teacher", "nobody/not-cached", 'prompts=["a"]'], env=env, capture_output=True,
                          text=True, timeout=120)         # a hang guard, not a speed claim
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("dreamer: error: teacher 'nobody/not-cached' is not in the local Hugging Face cache")
    assert not (tmp_path / "run").exists()


def test_embedded_teacher_names_map_to_none_in_both_configs(tmp_path):
    """GenerateConfig and DistillConfig keep the embedded teacher as None, whichever of its names the user wrote;
    a run folder whose config.yaml says teacher: "" (written before) still resumes (no config difference)."""
    import yaml

    from dreamer.common.config import dump_yaml, load_yaml
    from dreamer.common.teacher_source import DEFAULT_TEACHER, EMBEDDED_NAMES, teacher_folder, teacher_name
    from dreamer.distill.recipe import DistillConfig
    from dreamer.common.run_folder import config_difference
    from dreamer.text_to_3d.recipe import GenerateConfig

    for cls in (GenerateConfig, DistillConfig):
        assert cls().teacher is None
        assert all(cls(teacher=name).teacher is None for name in EMBEDDED_NAMES)
        assert cls(teacher="org/model").teacher == "org/model"
        old = dump_yaml(cls(), tmp_path / f"{cls.__name__}.yaml")
        data = yaml.safe_load(old.read_text())
        assert data["teacher"] is None
        data["teacher"] = ""                                    # an older run folder's config.yaml
        old.write_text(yaml.safe_dump(data))
        assert load_yaml(cls, old) == cls()
    saved = load_yaml(GenerateConfig, tmp_path / "GenerateConfig.yaml")
    assert config_difference(saved, GenerateConfig()) is None                   # what --resume compares
    assert all(teacher_folder(n) == DEFAULT_TEACHER and teacher_name(n) == "embedded" for n in EMBEDDED_NAMES)
    assert teacher_name("org/model") == "org/model"
