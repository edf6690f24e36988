"""Fault injection: a teacher that returns NaN on chosen calls; bad steps are skipped, K in a row stop the run."""
import copy

import pytest
import torch

import dreamer.text_to_3d.loop as generate_mod
from dreamer.cli import main
from dreamer.text_to_3d.recipe import load_generate_config
from dreamer.distill.loop import distill
from dreamer.distill.recipe import DistillConfig, distill_guidance
from dreamer.distill.trainers.score import distill_step, guidance_config, init_state
from dreamer.common.errors import DreamerWarning, NumericalFault
from dreamer.text_to_3d.loop import CKPT, SceneRun, generate
from dreamer.common.teacher_source import load_teacher
from compare import same

TINY = ["train.preview_every=0", "camera.resolution=16", "camera.batch=1", "gaussians.n_init=100",
        "train.threads=1", "export.evaluate=false"]


class NaNTeacher:
    """Wraps a teacher; `eps` returns NaN on the calls `bad(i)` selects (i counts from 0)."""

    def __init__(self, inner, bad):
        self.inner, self.bad, self.calls = inner, bad, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def eps(self, x_t, t, cond, **kw):
        out = self.inner.eps(x_t, t, cond, **kw)
        i, self.calls = self.calls, self.calls + 1
        return torch.full_like(out, float("nan")) if self.bad(i) else out


@pytest.fixture(scope="module")
def teacher():
    torch.set_num_threads(1)
    return load_teacher()


def _cfg(*over):
    return load_generate_config("gaussians-sds", "a red cube", None, TINY + list(over))


def _scene_state(run):
    return copy.deepcopy(run.scene.state_dict())


def test_nan_step_is_skipped_without_touching_parameters_or_optimizer(teacher):
    run = SceneRun(_cfg("train.steps=8"), NaNTeacher(teacher, lambda i: i == 2))
    run.step(), run.step()
    before = _scene_state(run)
    with pytest.warns(DreamerWarning, match="step 3: non-finite loss or gradient, step skipped"):
        rec = run.step()                    # the guarded step warns itself (dreamer.common.run_folder.StepGuard)
    assert rec["skipped"] and run.bad.skipped == [2] and run.bad.streak == 1
    assert same(before, _scene_state(run))  # parameters, Adam moments and step counts all unchanged
    assert not run.step().get("skipped") and run.bad.streak == 0
    assert not same(before["params"], _scene_state(run)["params"])
    assert len(run.history["loss"]) == 3 and all(torch.isfinite(torch.tensor(run.history["loss"])))


def test_isolated_nan_steps_are_counted_and_the_run_finishes(teacher, tmp_path):
    config = _cfg("train.steps=6", "train.checkpoint_every=2", "train.max_bad_steps=2")
    with pytest.warns(DreamerWarning, match="non-finite loss or gradient, step skipped") as rec:
        run = generate(config, tmp_path, progress=False, teacher=NaNTeacher(teacher, lambda i: i in (1, 3)))
    assert run.bad.skipped == [1, 3] and run.step_i == 6
    assert len([w for w in rec if issubclass(w.category, DreamerWarning)]) == 2
    sd = torch.load(tmp_path / CKPT, weights_only=True)
    assert sd["skipped"] == [1, 3] and '"skipped_steps": 2' in (tmp_path / "timing.json").read_text()


def test_k_consecutive_nan_steps_stop_and_keep_the_last_good_checkpoint(teacher, tmp_path):
    config = _cfg("train.steps=20", "train.checkpoint_every=2", "train.max_bad_steps=3")
    with pytest.warns(DreamerWarning), pytest.raises(NumericalFault) as err:
        generate(config, tmp_path, progress=False, teacher=NaNTeacher(teacher, lambda i: i >= 5))
    msg = str(err.value)
    assert "\n" not in msg and "stopped at step 8: 3 consecutive" in msg and "(step 4) is kept" in msg
    sd = torch.load(tmp_path / CKPT, weights_only=True)
    assert sd["step"] == 4 and sd["skipped"] == [] and not (tmp_path / (CKPT + ".tmp")).exists()
    assert all(torch.isfinite(v).all() for v in sd["scene"]["params"].values())
    assert not (tmp_path / "timing.json").exists()


def test_cli_reports_the_abort_as_one_error_line_and_exit_2(teacher, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(generate_mod, "load_teacher", lambda *a, **k: NaNTeacher(teacher, lambda i: True))
    rc = main(["generate", "a red cube", "--out", str(tmp_path / "r"), "--quiet", "--no-export", *TINY,
               "train.steps=10", "train.max_bad_steps=2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "Traceback" not in "\n".join(err)
    assert [line.split(":")[1].strip() for line in err] == ["warning", "warning", "error"], err
    assert "stopped at step 2: 2 consecutive" in err[-1] and "no checkpoint had been written yet" in err[-1]


def _dcfg(**kw):
    base = dict(method="dmd", steps=4, batch=2, lr_gen=1e-3,
                guidance=distill_guidance(aux_updates=1, aux_lr=1e-3, cfg_scale=3.0),
                prompts=["a red cube"], timesteps=[999], threads=1, log_every=1, regression_weight=0.0)
    return DistillConfig(**{**base, **kw})


def test_distill_skips_a_nan_update_without_touching_the_generator(teacher):
    config = _dcfg()
    nan_teacher = NaNTeacher(teacher, lambda i: i == 0)
    state = init_state(nan_teacher, config)
    before = [p.detach().clone() for p in state.gen.params]
    opt_before = copy.deepcopy(state.opt.state_dict())
    with pytest.warns(DreamerWarning, match="step 1: non-finite loss or gradient, generator update skipped"):
        m = distill_step(state, nan_teacher, config, guidance_config(config, teacher.default_cfg))
    assert m["skipped"] and state.bad.skipped == [1] and state.bad.streak == 1 and state.step == 1
    assert all(torch.equal(a, p) for a, p in zip(before, state.gen.params))
    assert same(opt_before, state.opt.state_dict())
    m = distill_step(state, nan_teacher, config, guidance_config(config, teacher.default_cfg))
    assert not m.get("skipped") and state.bad.streak == 0
    assert any(not torch.equal(a, p) for a, p in zip(before, state.gen.params))


def test_distill_stops_after_k_bad_updates_keeping_the_saved_generator(teacher, tmp_path):
    config = _dcfg(steps=10, save_every=2, max_bad_steps=2)
    with pytest.warns(DreamerWarning), pytest.raises(NumericalFault, match="2 consecutive") as err:
        distill(config, tmp_path, teacher=NaNTeacher(teacher, lambda i: i >= 3), log=lambda s: None)
    assert "is kept" in str(err.value)
    assert (tmp_path / "generator" / "generator.json").is_file()
    assert not (tmp_path / "generator.tmp").exists()


def test_a_regression_trainer_skips_and_counts_a_nan_update(tmp_path):
    """Every trainer steps through DistillRun.step (guidance.guarded_step): a NaN teacher score on update 2 of the
    noise-matching trainer leaves the student untouched on that update, is warned about and counted."""
    from toy_models import quiet_run, toy_setup

    from dreamer.distill.trainers import noise_lora

    config = DistillConfig(method="noise_lora", steps=4, batch=8, lr_gen=0.05, max_grad_norm=0.0, data="teacher",
                           data_size=8, regression_ddim_steps=2, prompts=["a", "b"], timesteps=[999, 499], seed=0)
    armed = {"on": False}
    teacher = NaNTeacher(toy_setup(), lambda i: armed.pop("on", False))   # NaN on the first call once armed
    run, seen = quiet_run(tmp_path, config), []
    real_step = run.step

    def step(loss, opt, max_norm, params=None):
        before = [p.detach().clone() for p in opt.param_groups[0]["params"]]
        norm = real_step(loss, opt, max_norm, params)
        seen.append((norm, before, [p.detach().clone() for p in opt.param_groups[0]["params"]]))
        armed["on"] = len(seen) == 1                                       # update 2's teacher pass is NaN
        return norm
    run.step = step
    with pytest.warns(DreamerWarning, match="step 2: non-finite loss or gradient, update skipped"):
        noise_lora.train(teacher, config, run)
    assert run.bad.skipped == [2] and run.bad.streak == 0 and run.updates == 4
    assert [n is None for n, _, _ in seen] == [False, True, False, False]
    assert all(torch.equal(a, b) for a, b in zip(seen[1][1], seen[1][2]))     # the skipped update changed nothing
    assert any(not torch.equal(a, b) for a, b in zip(seen[2][1], seen[2][2]))  # the next one trains again


def test_a_regression_trainer_stops_after_k_bad_updates(tmp_path):
    """max_bad_steps NaN updates in a row stop a regression trainer with one NumericalFault line."""
    from toy_models import quiet_run, toy_setup

    from dreamer.distill.trainers import noise_lora

    config = DistillConfig(method="noise_lora", steps=10, batch=8, data="teacher", data_size=8, regression_ddim_steps=2,
                           prompts=["a", "b"], timesteps=[999], max_bad_steps=3, seed=0)
    armed = {"on": False}
    run = quiet_run(tmp_path, config)
    run.log = lambda metrics, last=False: armed.update(on=True)          # every pass after update 1 is NaN
    with pytest.warns(DreamerWarning), pytest.raises(NumericalFault) as err:
        noise_lora.train(NaNTeacher(toy_setup(), lambda i: armed["on"]), config, run)
    assert "stopped at step 4: 3 consecutive" in str(err.value) and "\n" not in str(err.value)
    assert run.bad.skipped == [2, 3, 4]
