"""The distillation loop end to end on the tiny SD teacher, recipes, DDIM, and the one-formula guard."""
import copy
import inspect
import re

import pytest
import torch

import dreamer.distill.generator as generator_mod
import dreamer.distill.sampling as fewstep_mod
import dreamer.distill.trainers.score as distill_mod
from dreamer.common.config import ConfigError
from dreamer.common.teacher_source import DEFAULT_TEACHER
from dreamer.common.world import world_of
from dreamer.distill.loop import distill
from dreamer.distill.recipe import DistillConfig, distill_guidance, load_distill_config, validate
from dreamer.distill.trainers.toolkit import DistillRun, ddim_sample
from dreamer.distill.trainers.score import distill_step, guidance_config, init_state
from dreamer.distill.generator import load_generator
from dreamer.distill.trainers.adversarial import GanSettings
from guidance import DiffusersTeacher, gaussian_teacher


@pytest.fixture(scope="module")
def teacher(tiny_sd_dir):
    torch.set_num_threads(1)
    return DiffusersTeacher.from_pretrained(tiny_sd_dir)


def _cfg(method, g=(), **kw):
    base = dict(method=method, steps=2, batch=2, lr_gen=1e-3,
                guidance=distill_guidance(**{**dict(aux_updates=2, aux_lr=1e-3, cfg_scale=3.0), **dict(g)}),
                prompts=["a red cube", "a blue sphere"], timesteps=[999, 499], threads=1, log_every=1)
    return DistillConfig(**{**base, **kw})


@pytest.mark.parametrize("method", ["dmd", "diff_instruct"])
def test_loop_updates_generator_and_fake_not_teacher(teacher, tiny_sd_dir, method):
    config = _cfg(method, teacher=str(tiny_sd_dir), regression_weight=0.25 if method == "dmd" else 0.0,
                  regression_pairs=1, regression_ddim_steps=3)
    before_teacher = copy.deepcopy(teacher.unet.state_dict())
    state = init_state(teacher, config, str(tiny_sd_dir))
    gen0 = [p.detach().clone() for p in state.gen.params]
    fake0 = [p.detach().clone() for p in state.fake.params]
    gcfg = guidance_config(config, teacher.default_cfg)
    assert gcfg.method == method and gcfg.aux_updates == 2
    for _ in range(2):
        m = distill_step(state, teacher, config, gcfg)
        assert m["grad_norm"] > 0 and all(torch.isfinite(torch.tensor(v)) for v in m.values())
    if method == "dmd":
        assert state.pairs is not None and m["reg"] > 0
    assert any(not torch.equal(a, p) for a, p in zip(gen0, state.gen.params))
    assert any(not torch.equal(a, p) for a, p in zip(fake0, state.fake.params))
    for k, v in teacher.unet.state_dict().items():
        assert torch.equal(v, before_teacher[k]), k
    assert not any(p.requires_grad for p in teacher.unet.parameters())


def test_per_step_cfg(teacher, tiny_sd_dir, monkeypatch):
    """step_cfg_scales[k] is the real score's CFG in the shared guidance step for samples of few-step step k."""
    config = _cfg("dmd", teacher=str(tiny_sd_dir), step_cfg_scales=[3.0, 1.5], g=dict(aux_updates=0))
    state = init_state(teacher, config, str(tiny_sd_dir))
    gcfg = guidance_config(config, teacher.default_cfg)
    seen, real_batch, real_step = [], distill_mod.generator_batch, distill_mod.score_distillation_step

    def batch(state, config):
        x0, cond, k, x_t = real_batch(state, config)
        seen.append([k])
        return x0, cond, k, x_t

    def step(teacher, x0, prompts, config, *a, **kw):
        seen[-1].append(config.cfg_scale)
        return real_step(teacher, x0, prompts, config, *a, **kw)

    monkeypatch.setattr(distill_mod, "generator_batch", batch)
    monkeypatch.setattr(distill_mod, "score_distillation_step", step)
    for _ in range(8):
        distill_step(state, teacher, config, gcfg)
    assert {tuple(s) for s in seen} == {(0, 3.0), (1, 1.5)}
    assert distill_mod.step_guidance(gcfg, _cfg("dmd"), 1) is gcfg  # none given: the one CFG for every step


def test_distill_writes_loadable_generator(teacher, tiny_sd_dir, tmp_path):
    gen = distill(_cfg("dmd", teacher=str(tiny_sd_dir)), tmp_path, teacher=teacher, log=lambda s: None)
    assert (tmp_path / "config.yaml").is_file() and len((tmp_path / "log.jsonl").read_text().splitlines()) == 2
    loaded = load_generator(tmp_path / "generator")
    assert loaded.timesteps == [999, 499] and loaded.meta["method"] == "dmd"
    assert loaded.meta["teacher"] == str(tiny_sd_dir)
    for a, b in zip(gen.unet.state_dict().values(), loaded.unet.state_dict().values()):
        assert torch.equal(a, b)


def test_ema_generator(teacher, tiny_sd_dir, tmp_path, monkeypatch):
    """ema_decay: state.ema follows theta_ema <- d theta_ema + (1 - d) theta after every update; the saved and
    returned generator carries the EMA weights, the fake score keeps seeing the online generator."""
    d = 0.5
    config = _cfg("dmd", teacher=str(tiny_sd_dir), ema_decay=d, steps=3, save_every=2)
    state = init_state(teacher, config, str(tiny_sd_dir))
    gcfg = guidance_config(config, teacher.default_cfg)
    expect = [p.detach().clone() for p in state.gen.params]
    for _ in range(3):
        distill_step(state, teacher, config, gcfg)
        expect = [d * e + (1 - d) * p.detach() for e, p in zip(expect, state.gen.params)]
    for e, m in zip(expect, state.ema):
        torch.testing.assert_close(m, e, rtol=1e-6, atol=1e-7)
    assert any(not torch.equal(m, p) for m, p in zip(state.ema, state.gen.params))

    saved = []
    monkeypatch.setattr(DistillRun, "save", lambda self, gen: saved.append(
        [p.detach().clone() for p in gen.params]))
    monkeypatch.setattr(distill_mod, "init_state", lambda *a, **k: state)   # continue the run above: steps 4, 5
    cfg2 = _cfg("dmd", teacher=str(tiny_sd_dir), ema_decay=d, steps=5, save_every=2)
    online = {}
    real_step = distill_mod.distill_step

    def step(state, teacher, config, gcfg):
        out = real_step(state, teacher, config, gcfg)
        online[state.step] = ([p.detach().clone() for p in state.gen.params], [e.clone() for e in state.ema])
        return out
    monkeypatch.setattr(distill_mod, "distill_step", step)
    gen = distill(cfg2, tmp_path, teacher=teacher, log=lambda s: None)
    assert len(saved) == 2                                        # step 4 (save_every), then the final save
    for got, ref in zip(saved[0], online[4][1]):                  # step 4's save: EMA weights, not the online ones
        assert torch.equal(got, ref)
    for got, saved_, ref in zip(gen.params, saved[1], online[5][1]):  # returned and saved at the end: the final EMA
        assert torch.equal(got.detach(), ref) and torch.equal(saved_, ref)
    assert any(not torch.equal(a, b) for a, b in zip(online[5][0], online[5][1]))


def test_gan_term(teacher, tiny_sd_dir, monkeypatch):
    """gan.weight > 0: each generator update first takes one hinge step of the heads on real shapes renders vs the
    detached samples (noised to t < t_max T), then adds weight * hinge_g(D(x0)) to the generator loss."""
    import dreamer.distill.trainers.adversarial as adv_mod

    w = 7.0
    config = _cfg("dmd", teacher=str(tiny_sd_dir), g=dict(aux_updates=0), data_size=4, max_grad_norm=0.0,
                  gan=GanSettings(weight=w, head_width=8, t_max=0.5))
    before_teacher = copy.deepcopy(teacher.unet.state_dict())
    state = init_state(teacher, config, str(tiny_sd_dir), world_of(DEFAULT_TEACHER))  # real data: shapes renders
    assert state.gan is not None and len(state.gan.data.x0) == 4
    heads0 = [p.detach().clone() for p in state.gan.disc.params]
    ts, seen = [], {}
    real_features, real_gan, real_sd = state.gan.disc.features.forward, adv_mod.GanTerm.step, \
        distill_mod.score_distillation_step

    def features(x, c, t=None):
        ts.append(t)
        return real_features(x, c, t)

    def gan_step(self, x0, cond, g):
        adv, d_loss = real_gan(self, x0, cond, g)
        seen["adv"] = adv.item()
        seen["expect"] = torch.autograd.grad(w * adv, state.gen.params, retain_graph=True)
        return adv, d_loss

    def dm_without_loss(teacher, x0, *a, **kw):      # keep the step, drop its loss: only the GAN term is left
        out = real_sd(teacher, x0, *a, **kw)
        out.loss = 0 * x0.sum()
        return out
    monkeypatch.setattr(state.gan.disc.features, "forward", features)
    monkeypatch.setattr(adv_mod.GanTerm, "step", gan_step)
    monkeypatch.setattr(distill_mod, "score_distillation_step", dm_without_loss)
    monkeypatch.setattr(state.opt, "step", lambda: seen.setdefault("grads", [p.grad.clone() for p in
                                                                               state.gen.params]))
    m = distill_step(state, teacher, config, guidance_config(config, teacher.default_cfg))
    assert m["g_adv"] == seen["adv"] and m["d_loss"] > 0
    assert len(ts) == 3 and all(t is not None and int(t.max()) < 500 for t in ts)       # real, fake, generator
    assert any(not torch.equal(a, p) for a, p in zip(heads0, state.gan.disc.params))
    assert sum(g.abs().sum() for g in seen["grads"]) > 0
    for got, want in zip(seen["grads"], seen["expect"]):
        torch.testing.assert_close(got, want)
    for k, v in teacher.unet.state_dict().items():
        assert torch.equal(v, before_teacher[k]), k


def test_rollout_regression(teacher, tiny_sd_dir, monkeypatch):
    """rollout_regression_weight: samples of few-step step k >= 1 are pulled to the teacher's DDIM solution from the
    student's own x_tk: the generator's gradient is that of w * 0.5 ||G(x_tk) - DDIM(x_tk)||^2 (per image, mean)."""
    w = 3.0
    config = _cfg("dmd", teacher=str(tiny_sd_dir), g=dict(aux_updates=0), max_grad_norm=0.0,
                  rollout_regression_weight=w, rollout_regression_ddim_steps=2)
    state = init_state(teacher, config, str(tiny_sd_dir))
    seen, real_batch, real_sd = {}, distill_mod.generator_batch, distill_mod.score_distillation_step

    def batch(state, config):
        x0, cond, k, x_t = real_batch(state, config)
        ref = ddim_sample(teacher, cond, state.uncond.expand(len(cond), -1, -1), config.guidance.cfg_scale, 2, x_t,
                          t_start=state.gen.timesteps[k])
        reg = 0.5 * (x0 - ref).pow(2).sum((1, 2, 3)).mean()
        seen.update(k=k, reg=reg.item(), expect=torch.autograd.grad(w * reg, state.gen.params, retain_graph=True))
        return x0, cond, k, x_t

    def dm_without_loss(teacher, x0, *a, **kw):
        out = real_sd(teacher, x0, *a, **kw)
        out.loss = 0 * x0.sum()
        return out
    monkeypatch.setattr(distill_mod, "generator_batch", batch)
    monkeypatch.setattr(distill_mod, "score_distillation_step", dm_without_loss)
    monkeypatch.setattr(state.opt, "step", lambda: seen.update(grads=[p.grad.clone() for p in state.gen.params]))
    ks = set()
    for _ in range(12):
        m = distill_step(state, teacher, config, guidance_config(config, teacher.default_cfg))
        ks.add(seen["k"])
        if seen["k"] == 0:       # step 0 is DMD1's (pairs from pure noise): no rollout term, so no gradient at all
            assert "rollout_reg" not in m and all(g.abs().sum() == 0 for g in seen["grads"])
        else:
            assert m["k"] == seen["k"] and m["rollout_reg"] == pytest.approx(seen["reg"], rel=1e-5)
            for got, want in zip(seen["grads"], seen["expect"]):
                torch.testing.assert_close(got, want)
        if ks == {0, 1}:
            break
    assert ks == {0, 1}


def test_ddim_from_an_intermediate_step(teacher):
    """ddim_sample(t_start=t): from x_t, trailing steps t -> 0; t_start = T - 1 is the full sampler, and one step
    is the teacher's CFG x0 prediction at t."""
    from dreamer.distill.trainers.toolkit import teacher_denoiser

    g = torch.Generator().manual_seed(0)
    cond, uncond = teacher.encode_prompt(["a red cube"] * 2), teacher.encode_prompt([""] * 2)
    x = torch.randn(2, 4, 8, 8, generator=g)
    assert torch.equal(ddim_sample(teacher, cond, uncond, 3.0, 3, x, t_start=999), ddim_sample(teacher, cond, uncond,
                                                                                                  3.0, 3, x))
    t = torch.full((2,), 249)
    with torch.no_grad():
        one = teacher_denoiser(teacher, cond, uncond, 3.0)(x, t)
    assert torch.equal(ddim_sample(teacher, cond, uncond, 3.0, 1, x, t_start=249), one)
    assert not torch.equal(ddim_sample(teacher, cond, uncond, 3.0, 2, x, t_start=249), one)


def test_gan_off_builds_nothing(teacher, tiny_sd_dir):
    """gan.weight = 0 (the default): no real-data pool, no discriminator, and the run's random stream is untouched."""
    config = _cfg("dmd", teacher=str(tiny_sd_dir))
    state = init_state(teacher, config, str(tiny_sd_dir))
    assert state.gan is None and config.gan.weight == 0
    assert torch.equal(state.rng.get_state(), torch.Generator().manual_seed(config.seed).get_state())


def test_ddim_matches_diffusers_scheduler():
    """Our DDIM (eta=0) equals diffusers' DDIMScheduler with trailing spacing on an exact Gaussian teacher."""
    from diffusers import DDIMScheduler

    teacher = gaussian_teacher(torch.tensor([0.3, -0.2]).view(2, 1, 1), 0.5)
    teacher.alphas_cumprod = teacher.alphas_cumprod.float()
    betas = 1 - teacher.alphas_cumprod / torch.cat([torch.ones(1), teacher.alphas_cumprod[:-1]])
    sched = DDIMScheduler(num_train_timesteps=1000, trained_betas=betas.numpy(), clip_sample=False,
                          set_alpha_to_one=True, timestep_spacing="trailing")
    cond = teacher.encode_prompt([""] * 8)
    z = torch.randn(8, 2, 1, 1, generator=torch.Generator().manual_seed(0))
    for steps in (1, 4, 10):
        sched.set_timesteps(steps)
        x = z.clone()
        for t in sched.timesteps:
            x = sched.step(teacher.eps(x, t.expand(8), cond), t, x, eta=0.0).prev_sample
        ours = ddim_sample(teacher, cond, cond, 1.0, steps, z)
        assert torch.allclose(ours, x, atol=1e-4), steps


def test_ddim_50_samples_the_gaussian():
    mu, std = torch.tensor([0.5, -1.0]).view(2, 1, 1), 0.3
    teacher = gaussian_teacher(mu, std)
    teacher.alphas_cumprod = teacher.alphas_cumprod.float()
    cond = teacher.encode_prompt([""] * 4000)
    x = ddim_sample(teacher, cond, cond, 1.0, 50, torch.randn(4000, 2, 1, 1))
    assert torch.allclose(x.mean(0), mu, atol=0.03) and torch.allclose(x.std(0), torch.full_like(mu, std), atol=0.03)


@pytest.mark.parametrize("name", ["distill-dmd", "distill-diff-instruct", "distill-dmd-sd15", "distill-dmd-sd21"])
def test_recipes_load_and_validate(name):
    config = load_distill_config(name)
    assert config.method in distill_mod.METHODS
    if "sd" in name.split("-")[-1]:
        g = config.guidance
        assert config.lr_gen == g.aux_lr == 1e-5 and g.cfg_scale == 1.75 and g.aux_updates >= 5
        assert (g.t_min, g.t_max) == (0.02, 0.98) and config.resolution in (512, 768)
    assert load_distill_config(name, ["steps=3"]).steps == 3


def test_recipe_dmd_sd21_inherits():
    config = load_distill_config("distill-dmd-sd21")
    assert config.resolution == 768 and "2-1" in config.teacher and config.guidance.cfg_scale == 1.75


@pytest.mark.parametrize("bad", [["method=gan"], ["timesteps=[499, 999]"], ["guidance.t_min=0.9", "guidance.t_max=0.1"],
                                 ["stepz=3"], ["batch=0"], ["step_cfg_scales=[3, 2]"],
                                 ["ema_decay=1.0"], ["ema_decay=-0.1"], ["gan.weight=-1"], ["gan.t_max=1.5"],
                                 ["rollout_regression_weight=-1"], ["rollout_regression_ddim_steps=0"],
                                 ["timesteps=[999, 1]", "rollout_regression_ddim_steps=3"],
                                 ["method=kd", "gan.weight=1"], ["method=kd", "fsdp=true"],
                                 ["fsdp=true", "lora_rank=4"], ["fsdp=true", "guidance.aux_rank=4"]])
def test_bad_configs_rejected(bad):
    with pytest.raises(ConfigError):
        load_distill_config("distill-dmd", bad)


def test_validate_accepts_defaults():
    assert validate(DistillConfig()).method == "dmd"


def test_one_gradient_formula():
    """The loop calls guidance.score_distillation_step and writes no eps-difference / x0-difference of its own."""
    src = inspect.getsource(distill_mod)
    assert "from guidance import" in src and "score_distillation_step(" in inspect.getsource(distill_mod.distill_step)
    for mod in (distill_mod, generator_mod, fewstep_mod):
        code = inspect.getsource(mod)
        assert not re.search(r"eps\w*\s*-\s*\w*eps", code), mod.__name__
        assert "score_distillation_grad" not in code and "target_loss" not in code
        assert not re.search(r"p_real|p_fake|x0_real|x0_fake", code)


def test_old_flat_keys_name_their_new_key(tmp_path):
    """The keys of before `guidance:` was nested (an override or a YAML key) are a one-line ConfigError naming the
    new key; a partial `guidance:` keeps DistillConfig's defaults (not GuidanceConfig's 3D ones)."""
    from dreamer.common.config import ConfigError
    from dreamer.distill.recipe import DISTILL_GUIDANCE, RENAMED_KEYS

    with pytest.raises(ConfigError, match=r"^renamed keys \(from an older dreamer\): 'fake_updates' is now "
                                          r"'guidance.aux_updates'$"):
        load_distill_config("distill-dmd", ["fake_updates=3"])
    old = tmp_path / "old.yaml"
    old.write_text("base: distill-dmd\nlr_fake: 1.0e-4\nfake_lora_rank: 2\n")
    with pytest.raises(ConfigError, match="'lr_fake' is now 'guidance.aux_lr', 'fake_lora_rank' is now "
                                          "'guidance.aux_rank'"):
        load_distill_config(old)
    assert all(new.startswith("guidance.") or new == "aux_fresh_batches" for new in RENAMED_KEYS.values())
    g = load_distill_config("distill-diff-instruct", ["guidance.aux_lr=3e-5"]).guidance
    assert (g.method, g.aux_lr, g.aux_updates, g.aux_rank, g.cfg_scale) == ("diff_instruct", 3e-5, 1, 0, None)
    assert validate(DistillConfig()).guidance == distill_guidance()
    assert {k: getattr(distill_guidance(), k) for k in DISTILL_GUIDANCE} == DISTILL_GUIDANCE
    with pytest.raises(ConfigError, match="'guidance.method' follows 'method'"):
        load_distill_config("distill-dmd", ["guidance.method=vsd"])
