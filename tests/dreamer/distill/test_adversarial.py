"""DMD2's GAN term (dreamer.distill.trainers.adversarial.GanTerm): its discriminator update is guarded as the
generator's (StepGuard): a NaN discriminator loss leaves the heads and their optimizer untouched, is warned about,
counted, shown in the step's metrics and kept in the checkpoint; max_bad_steps in a row stop the run."""
import pytest
import torch

from dreamer.common.errors import DreamerWarning, NumericalFault
from dreamer.common.teacher_source import DEFAULT_TEACHER
from dreamer.common.world import world_of
from dreamer.distill.recipe import DistillConfig, distill_guidance
from dreamer.distill.trainers.adversarial import GanSettings
from dreamer.distill.trainers.score import distill_step, guidance_config, init_state, load_state_dict, state_dict
from guidance import DiffusersTeacher


@pytest.fixture(scope="module")
def teacher(tiny_sd_dir):
    torch.set_num_threads(1)
    return DiffusersTeacher.from_pretrained(tiny_sd_dir)


def _state(teacher, tiny_sd_dir, **kw):
    config = DistillConfig(method="dmd", teacher=str(tiny_sd_dir), steps=2, batch=2, lr_gen=1e-3, data_size=4,
                           guidance=distill_guidance(aux_updates=0, cfg_scale=3.0),
                           prompts=["a red cube", "a blue sphere"], timesteps=[999, 499], threads=1,
                           gan=GanSettings(weight=1.0, head_width=8), **kw)
    return config, init_state(teacher, config, str(tiny_sd_dir), world_of(DEFAULT_TEACHER))  # real data: shapes renders


def _nan_discriminator(state, monkeypatch, nan_calls):
    """The heads' logits are NaN on the calls nan_calls(i) selects (i counts from 0; per GAN step: real, fake, then
    the generator's adversarial term)."""
    disc, real, calls = state.gan.disc, state.gan.disc.forward, []

    def forward(x, cond, t=None):
        calls.append(len(calls))
        out = real(x, cond, t)
        return out * float("nan") if nan_calls(calls[-1]) else out
    monkeypatch.setattr(disc, "forward", forward)
    return calls


def test_a_nan_discriminator_loss_skips_and_counts_the_discriminator_update(teacher, tiny_sd_dir, monkeypatch):
    config, state = _state(teacher, tiny_sd_dir)
    gcfg = guidance_config(config, teacher.default_cfg)
    heads0, gen0 = [p.detach().clone() for p in state.gan.disc.params], [p.detach().clone() for p in state.gen.params]
    _nan_discriminator(state, monkeypatch, lambda i: i in (0, 1))      # the D loss of step 1 only
    with pytest.warns(DreamerWarning, match="step 1: non-finite loss or gradient, discriminator update skipped"):
        m = distill_step(state, teacher, config, gcfg)
    assert all(torch.equal(a, p) for a, p in zip(heads0, state.gan.disc.params))    # heads unchanged
    assert state.gan.opt.state_dict()["state"] == {}                                  # no Adam moments either
    assert state.gan.bad.skipped == [1] and state.gan.bad.streak == 1 and state.gan.updates == 1
    assert m["d_skipped"] is True and m["d_loss"] is None and m["loss"] is not None   # reported; G still trained
    assert state.bad.skipped == [] and any(not torch.equal(a, p) for a, p in zip(gen0, state.gen.params))

    sd = state_dict(state)                                # the D guard's record travels with the checkpoint
    assert sd["gan_bad"] == {"skipped": [1], "streak": 1, "updates": 1}
    _, again = _state(teacher, tiny_sd_dir)
    load_state_dict(again, sd)
    assert again.gan.bad.skipped == [1] and again.gan.bad.streak == 1 and again.gan.updates == 1

    m = distill_step(state, teacher, config, gcfg)       # finite again: D trains, the streak resets
    assert "d_skipped" not in m and m["d_loss"] > 0
    assert state.gan.bad.skipped == [1] and state.gan.bad.streak == 0 and state.gan.updates == 2
    assert any(not torch.equal(a, p) for a, p in zip(heads0, state.gan.disc.params))


def test_max_bad_steps_nan_discriminator_updates_in_a_row_stop_the_run(teacher, tiny_sd_dir, monkeypatch):
    config, state = _state(teacher, tiny_sd_dir, max_bad_steps=2)
    gcfg = guidance_config(config, teacher.default_cfg)
    _nan_discriminator(state, monkeypatch, lambda i: i % 3 != 2)      # every D loss NaN, the adversarial term not
    with pytest.warns(DreamerWarning), pytest.raises(NumericalFault, match="2 consecutive") as err:
        for _ in range(3):
            distill_step(state, teacher, config, gcfg)
    assert "stopped at step 2" in str(err.value) and "\n" not in str(err.value)
    assert state.gan.bad.skipped == [1, 2] and state.bad.skipped == [] and state.step == 1   # G: step 1 only
