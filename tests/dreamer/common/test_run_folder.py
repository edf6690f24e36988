"""dreamer.common.run_folder: the resume config check, the guarded step and its skipped-update record, the checkpoint
round trip and the clock over sittings that both applications share."""
from dataclasses import dataclass, field

import pytest
import torch

from compare import same
from dreamer.common.config import dump_yaml
from dreamer.common.errors import CheckpointError, DreamerWarning, NumericalFault
from dreamer.common.run_folder import (CHECKPOINT, LOG, RunFolder, StepGuard, check_resume, config_difference,
                                       resume_checkpoint)


@dataclass
class Train:
    steps: int = 10
    lr: float = 0.1


@dataclass
class Recipe:
    seed: int = 0
    train: Train = field(default_factory=Train)
    export: dict = field(default_factory=lambda: {"faces": 100})


FREE = ("train.steps", "export.")


def _folder(tmp_path, config=None):
    dump_yaml(config or Recipe(), tmp_path / "config.yaml")
    return tmp_path


# ----------------------------------------------------------------------------------------------- --resume
def test_a_changed_key_is_refused_in_one_line_naming_it(tmp_path):
    with pytest.raises(CheckpointError) as err:
        check_resume(_folder(tmp_path), Recipe(train=Train(lr=0.5)), FREE)
    msg = str(err.value)
    assert "\n" not in msg and "different config: 'train.lr' (saved 0.1, now 0.5)" in msg


def test_free_keys_and_free_sections_may_change(tmp_path):
    check_resume(_folder(tmp_path), Recipe(train=Train(steps=99), export={"faces": 7}), FREE)
    assert config_difference(Recipe(), Recipe(seed=1), FREE) == "'seed' (saved 0, now 1)"
    assert config_difference(Recipe(), Recipe(seed=1), ("seed",)) is None
    assert config_difference(Recipe(), Recipe(train=Train(lr=1.0)), ("train",)) is not None   # no '.': one key


def test_a_folder_without_config_or_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="holds no run to continue"):
        check_resume(tmp_path, Recipe(), FREE)
    _folder(tmp_path)
    with pytest.warns(DreamerWarning, match="starting from step 0"):
        assert resume_checkpoint(tmp_path, Recipe(), FREE, missing_ok=True) is None
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        resume_checkpoint(tmp_path, Recipe(), FREE)


# ----------------------------------------------------------------------------------------------- the guarded step
def _model():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(3))
    return p, torch.optim.AdamW([p], lr=0.1)


@pytest.mark.parametrize("poison", ["loss", "grad"])
def test_a_nan_loss_or_gradient_skips_the_update_and_is_counted(poison):
    p, opt = _model()
    guard = StepGuard(limit=3, what="update")
    before = p.detach().clone()
    if poison == "loss":
        loss = p.sum() * float("nan")
    else:                                                          # a finite loss whose gradient is NaN
        y = p * 1.0
        y.register_hook(lambda g: torch.full_like(g, float("nan")))
        loss = y.sum()
        assert torch.isfinite(loss)
    with pytest.warns(DreamerWarning, match=r"^step 7: non-finite loss or gradient, update skipped \(1 in a row, "
                                            r"limit 3\)$"):
        assert guard.step(6, loss, opt, shown=7) is None
    assert torch.equal(p, before) and opt.state_dict()["state"] == {} and p.grad is None
    assert guard.skipped == [6] and guard.streak == 1
    assert guard.step(7, p.square().sum(), opt) is not None and guard.streak == 0 and not torch.equal(p, before)


def test_limit_consecutive_skips_stop_with_one_line_naming_what_is_kept():
    p, opt = _model()
    guard = StepGuard(limit=2, what="step", kept=lambda: "the last checkpoint is kept")
    with pytest.warns(DreamerWarning):
        guard.step(1, p.sum() * float("nan"), opt)
        assert guard.step(2, p.sum(), opt) is not None             # a good step resets the streak
        guard.step(3, p.sum() * float("nan"), opt)
        with pytest.raises(NumericalFault) as err:
            guard.step(4, p.sum() * float("inf"), opt)
    msg = str(err.value)
    assert msg == ("stopped at step 4: 2 consecutive steps with a non-finite loss or gradient (3 skipped in all); "
                   "the last checkpoint is kept")
    assert guard.skipped == [1, 3, 4]
    guard.restore([5], 1)
    assert (guard.skipped, guard.streak) == ([5], 1)


# ----------------------------------------------------------------------------------------------- the folder
def test_checkpoint_round_trip_is_weights_only_and_atomic(tmp_path):
    folder = RunFolder(tmp_path)
    sd = {"step": 3, "w": torch.arange(4.0), "rng": torch.Generator().manual_seed(1).get_state(), "hist": [1.0]}
    assert folder.save_checkpoint(sd) == tmp_path / CHECKPOINT and folder.saves == 1
    _folder(tmp_path)
    assert same(resume_checkpoint(tmp_path, Recipe(), FREE, ("step", "w")), sd)
    assert not (tmp_path / (CHECKPOINT + ".tmp")).exists()
    with pytest.raises(CheckpointError, match="not a dreamer checkpoint"):
        resume_checkpoint(tmp_path, Recipe(), FREE, ("step", "missing"))
    assert RunFolder(tmp_path / "other", main=False).save_checkpoint(sd) == tmp_path / "other" / CHECKPOINT
    assert not (tmp_path / "other").exists()                      # a rank other than 0 writes nothing


def test_training_time_adds_up_over_sittings(monkeypatch):
    now = {"t": 100.0}
    monkeypatch.setattr("dreamer.common.run_folder.time.perf_counter", lambda: now["t"])
    first = RunFolder()
    assert first.timing() == {"train_seconds": 0.0, "seconds_this_sitting": 0.0, "sittings": 0}
    first.start_sitting()
    now["t"] += 5.0
    saved = first.timing()
    assert saved == {"train_seconds": 5.0, "seconds_this_sitting": 5.0, "sittings": 1}
    second = RunFolder()
    second.continue_clock(saved["train_seconds"], saved["sittings"])
    second.start_sitting()
    now["t"] += 2.0
    assert second.timing() == {"train_seconds": 7.0, "seconds_this_sitting": 2.0, "sittings": 2}
    assert second.train_seconds == 7.0 and second.seconds_this_sitting == 2.0


def test_the_log_is_appended_and_cut_back_on_resume(tmp_path):
    folder = RunFolder(tmp_path)
    for i in range(3):
        folder.append_log({"step": i + 1})
    folder.cut_log(2)
    assert (tmp_path / LOG).read_text() == '{"step": 1}\n{"step": 2}\n'
    RunFolder(tmp_path, main=False).append_log({"step": 9})
    assert (tmp_path / LOG).read_text().count("\n") == 2


@dataclass
class Lit:
    ambient: float | None = None        # None: the world's


@dataclass
class LitRecipe:
    seed: int = 0
    shading: Lit = field(default_factory=Lit)


def test_a_null_that_means_a_value_equals_that_value_written_out(tmp_path):
    """A folder that wrote the world's ambient out resumes under a config that leaves it null (and the other way
    round); a different written value is still refused, naming what null stands for."""
    world = {"shading.ambient": 0.35}
    check_resume(_folder(tmp_path, LitRecipe(shading=Lit(0.35))), LitRecipe(), (), nulls=world)
    assert config_difference(LitRecipe(), LitRecipe(shading=Lit(0.35)), (), world) is None
    without = config_difference(LitRecipe(shading=Lit(0.35)), LitRecipe(), ())
    assert without == "'shading.ambient' (saved 0.35, now None)"
    assert (config_difference(LitRecipe(shading=Lit(0.5)), LitRecipe(), (), world)
            == "'shading.ambient' (saved 0.5, now 0.35)")
