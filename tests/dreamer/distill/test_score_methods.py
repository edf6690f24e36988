"""dreamer.distill.trainers.score's METHODS: each guides with the guidance method of its name, and init_state builds
a fake (auxiliary) score exactly when guidance.step.needs_aux is true of the resolved GuidanceConfig."""
import pytest
import torch

import dreamer.distill.trainers.score as score_mod
from dreamer.distill.recipe import DistillConfig, distill_guidance
from guidance import METHODS as GUIDANCE_METHODS
from guidance import DiffusersTeacher
from guidance.step import needs_aux

NEEDS_FAKE = {"dmd": True, "diff_instruct": True, "sds": False}   # the table score.py kept before needs_aux


@pytest.fixture(scope="module")
def teacher(tiny_sd_dir):
    torch.set_num_threads(1)
    return DiffusersTeacher.from_pretrained(tiny_sd_dir)


def _cfg(method, tiny_sd_dir):
    return DistillConfig(method=method, teacher=str(tiny_sd_dir), steps=1, batch=2, prompts=["a red cube"],
                         timesteps=[999], guidance=distill_guidance(cfg_scale=3.0), threads=1)


def test_every_score_method_is_a_guidance_method_and_needs_aux_keeps_the_old_answer():
    assert set(score_mod.METHODS) == set(NEEDS_FAKE)
    for method in score_mod.METHODS:
        gcfg = score_mod.guidance_config(DistillConfig(method=method), 7.5)
        assert method in GUIDANCE_METHODS and gcfg.method == method
        assert needs_aux(gcfg) is NEEDS_FAKE[method], method


@pytest.mark.parametrize("forced", [None, True, False])      # None: the real needs_aux
@pytest.mark.parametrize("method", ["dmd", "diff_instruct", "sds"])
def test_init_state_builds_a_fake_score_exactly_when_needs_aux(method, forced, teacher, tiny_sd_dir, monkeypatch):
    asked = []

    def spy(gcfg):
        asked.append(gcfg)
        return needs_aux(gcfg) if forced is None else forced
    monkeypatch.setattr(score_mod, "needs_aux", spy)
    state = score_mod.init_state(teacher, _cfg(method, tiny_sd_dir), str(tiny_sd_dir))
    assert len(asked) == 1 and asked[0].method == method and asked[0].cfg_scale == 3.0   # the resolved config
    want = NEEDS_FAKE[method] if forced is None else forced
    assert (state.fake is not None) is want
    if want:
        assert state.fake.params and all(p.requires_grad for p in state.fake.params)
