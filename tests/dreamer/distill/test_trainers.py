"""Each seed-document trainer's core identity on an exact Gaussian teacher + affine student, and every trainer end to
end through `distill()` on the tiny SD teacher (runs, saves a loadable generator, leaves the teacher untouched)."""
import copy

import pytest
import torch
from toy_models import quiet_run, toy_setup

from dreamer.common.teacher_source import DEFAULT_TEACHER
from dreamer.common.world import world_of
from dreamer.distill.loop import distill
from dreamer.distill.recipe import DistillConfig, distill_guidance, load_distill_config
from dreamer.distill.trainers import TRAINERS
from guidance import min_snr_weight, renoise
from dreamer.distill.generator import load_generator, sample_latents
from dreamer.distill.trainers import adversarial, consistency, guidance_distill, kd, noise_lora, progressive
from dreamer.distill.trainers.toolkit import ddim_sample, regression_pairs, teacher_denoiser
from dreamer.distill.trainers.consistency import ConsistencySettings
from dreamer.distill.trainers.guidance_distill import GuidanceDistillSettings
from dreamer.distill.trainers.kd import ReflowSettings
from dreamer.distill.trainers.progressive import ProgressiveSettings
from guidance import DiffusersTeacher, add_noise, cfg_combine


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _toy_cfg(method, **kw):
    base = dict(method=method, batch=64, lr_gen=0.05, adam_betas=(0.9, 0.999), max_grad_norm=0.0, data="teacher",
                data_size=64, regression_ddim_steps=8, prompts=["a", "b"], log_every=10 ** 6, seed=0)
    return DistillConfig(**{**base, **kw})


def _held_out(n=512, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 2, 2, generator=g), torch.randn(n, 1, 8, generator=g), g


# ----------------------------------------------------------------------------------------------- guidance
def test_guidance_distillation_equals_cfg_on_held_out_inputs(tmp_path):
    """Meng et al. stage one: eps_student(x_t, t, y, w) == eps_u + w (eps_c - eps_u) for unseen x_t, prompts and w."""
    teacher = toy_setup(guidance_dim=256)
    config = _toy_cfg("guidance", steps=400, guidance=distill_guidance(t_min=0.5, t_max=0.502),
                      guidance_distill=GuidanceDistillSettings(scale_min=1.0, scale_max=4.0))
    gen = guidance_distill.train(teacher, config, quiet_run(tmp_path, config))
    x, mu, g = _held_out()
    t = torch.randint(500, 502, (len(x),), generator=g)
    w = 1.0 + 3.0 * torch.rand(len(x), generator=g)
    with torch.no_grad():
        pred = gen.eps(x, t, mu, w)
        ref = cfg_combine(teacher.eps(x, t, torch.zeros_like(mu)), teacher.eps(x, t, mu), w.view(-1, 1, 1, 1))
    err = (pred - ref).abs().max().item()
    assert err < 1e-4, err                                   # measured 1.4e-6 (400 steps, 1.6 s)
    assert (ref - teacher.eps(x, t, mu)).abs().max() > 0.1  # CFG differs from the conditional model here
    assert gen.sampler == "ddim" and gen.guidance == 1.0


def test_guidance_student_starts_as_the_conditional_teacher(tiny_sd_dir):
    """The zero-initialised guidance input leaves the copied UNet's output unchanged at any w."""
    from dreamer.distill.generator import make_generator

    teacher = DiffusersTeacher.from_pretrained(tiny_sd_dir)
    gen = make_generator(teacher, [999], guidance_dim=32)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 900])
    cond = teacher.encode_prompt(["a red cube", "b"])
    with torch.no_grad():
        assert torch.allclose(gen.eps(x, t, cond, torch.tensor([1.0, 7.5])), teacher.eps(x, t, cond), atol=1e-5)


# ----------------------------------------------------------------------------------------------- progressive
def test_ddim_target_lands_on_the_two_step_output():
    """One DDIM step t -> s with x0_hat = ddim_target(x_t, x_s) reproduces x_s exactly (any tensors; s < 0: clean)."""
    ac = toy_setup().alphas_cumprod
    x_t, x_s = torch.randn(6, 2, 2, 2), torch.randn(6, 2, 2, 2)
    t, s = torch.tensor([999, 749, 499, 249, 249, 124]), torch.tensor([499, 249, 124, 124, -1, -1])
    x0 = progressive.ddim_target(x_t, x_s, t, s, ac)
    assert torch.allclose(renoise(x_t, x0, t, s, ac, ddim=True), x_s, atol=1e-5)


def test_progressive_student_reproduces_two_teacher_ddim_steps(tmp_path):
    """Salimans & Ho: after training, one student DDIM step == two teacher (CFG 2) DDIM steps on held-out inputs."""
    teacher = toy_setup(default_cfg=2.0)
    config = _toy_cfg("progressive", steps=1, progressive=ProgressiveSettings(teacher_steps=4, end_steps=2,
                                                                             iters_per_stage=300, save_stages=False))
    gen = progressive.train(teacher, config, quiet_run(tmp_path, config))
    assert gen.timesteps == [999, 499] and gen.sampler == "ddim"
    x, mu, _ = _held_out()
    ac, uncond = teacher.alphas_cumprod, torch.zeros(1, 1, 8)
    den = teacher_denoiser(teacher, mu, uncond, 2.0)
    errs = []
    for i in (0, 1):
        idx = torch.full((len(x),), i)
        target, t = progressive.two_step_target(den, x, idx, [999, 749, 499, 249], ac, None)
        teacher_two = renoise(x, target, t, torch.tensor([499, -1])[idx], ac, ddim=True)
        with torch.no_grad():
            student_one = renoise(x, gen.x0(x, t, mu), t, torch.tensor([499, -1])[idx], ac, ddim=True)
        errs.append((student_one - teacher_two).abs().max().item())
    z = torch.randn(len(x), 2, 2, 2, generator=torch.Generator().manual_seed(5))
    full = (sample_latents(gen, mu, z, 2) - ddim_sample(teacher, mu, uncond, 2.0, 4, z)).abs().max().item()
    assert max(errs) < 2e-4 and full < 2e-4, (errs, full)      # measured 2.3e-5 / 1.7e-6, full 5e-6 (1.5 s)


def test_progressive_halving():
    assert progressive.halving(32, 1) == [16, 8, 4, 2, 1] and progressive.halving(4, 2) == [2]
    for bad in ((6, 1), (4, 4), (8, 3)):
        with pytest.raises(ValueError):
            progressive.halving(*bad)


# ----------------------------------------------------------------------------------------------- consistency
def test_consistency_boundary_condition_by_construction(tiny_sd_dir):
    """f(x, 0) = x exactly for any weights (c_skip(0) = 1, c_out(0) = 0); without the scalings it is not."""
    from dreamer.distill.generator import make_generator

    teacher = DiffusersTeacher.from_pretrained(tiny_sd_dir)
    gen = make_generator(teacher, [999], boundary=10.0)
    with torch.no_grad():
        for p in gen.params:
            p.add_(0.05 * torch.randn_like(p))
        x, cond = torch.randn(3, 4, 8, 8), teacher.encode_prompt(["a", "b", "c"])
        zero = torch.zeros(3, dtype=torch.long)
        assert torch.equal(gen.x0(x, zero, cond), x)
        gen.boundary = 0.0
        assert (gen.x0(x, zero, cond) - x).abs().max() > 1e-3


def test_consistency_function_equals_the_teacher_ode_solution(tmp_path):
    """Song et al.: trained self-consistency + boundary => f(x_t, t) = the teacher's discrete ODE (CFG 1.5 DDIM on the
    skip grid) solved from t down to 0, on held-out x_t, for every grid t."""
    teacher = toy_setup(default_cfg=1.5)
    config = _toy_cfg("consistency", steps=800, consistency=ConsistencySettings(skip=250, ema=0.5, huber_c=0.0))
    gen = consistency.train(teacher, config, quiet_run(tmp_path, config))
    x, mu, _ = _held_out()
    ac, den = teacher.alphas_cumprod, teacher_denoiser(teacher, mu, torch.zeros(1, 1, 8), 1.5)
    errs = []
    for start in (999, 749, 499, 249):
        ref, full = x, lambda v: torch.full((len(x),), v)
        for a in range(start, 0, -250):
            ref = renoise(ref, den(ref, full(a)), full(a), full(max(a - 250, 0)), ac, ddim=True)
        with torch.no_grad():
            errs.append((gen.x0(x, full(start), mu) - ref).abs().max().item())
    assert max(errs) < 5e-4, errs                              # measured 5.9e-5 at t=999 (3 s)


# ----------------------------------------------------------------------------------------------- noise-matching LoRA
def test_min_snr_weight():
    """min(SNR, gamma) / SNR: 1 where SNR <= gamma, gamma / SNR above (the x0-space weight is min(SNR, gamma))."""
    abar = torch.tensor([0.01, 0.5, 5 / 6, 0.9, 0.999])          # SNR 0.0101, 1, 5, 9, 999
    w = min_snr_weight(abar, 5.0)
    snr = abar / (1 - abar)
    assert torch.allclose(w, torch.tensor([1.0, 1.0, 1.0, 5 / 9, 5 / 999]), rtol=1e-4)
    assert torch.allclose(w * snr, snr.clamp(max=5.0), rtol=1e-4)


def test_noise_lora_matches_cfg_eps_on_the_schedule_only(tmp_path):
    """The student's single pass equals the teacher's CFG-2.5 eps at the aligned timesteps on held-out inputs; the
    timesteps off the schedule are never trained (their parameters stay at their initial value)."""
    teacher = toy_setup(default_cfg=2.5)
    config = _toy_cfg("noise_lora", steps=300, timesteps=[999, 749, 499, 249])
    gen = noise_lora.train(teacher, config, quiet_run(tmp_path, config))
    x, mu, g = _held_out()
    t = torch.tensor([999, 749, 499, 249])[torch.randint(0, 4, (len(x),), generator=g)]
    with torch.no_grad():
        ref = cfg_combine(teacher.eps(x, t, torch.zeros_like(mu)), teacher.eps(x, t, mu), 2.5)
        err = (gen.eps(x, t, mu) - ref).abs().max().item()
    assert err < 1e-4, err                                      # measured 2.9e-6 (300 steps, 1.3 s)
    off = torch.ones(1000, dtype=torch.bool)
    off[[999, 749, 499, 249]] = False
    assert gen.unet.alpha[off].abs().max() == 0 and gen.unet.alpha[~off].abs().min() > 0


# ----------------------------------------------------------------------------------------------- KD, reflow
def test_kd_student_is_the_teacher_ode_map(tmp_path):
    """Luhman & Luhman: the trained one-step G(z, 999, y) equals the CFG-2 teacher's DDIM-8 map on held-out z, y."""
    teacher = toy_setup(default_cfg=2.0)
    config = _toy_cfg("kd", steps=400, regression_pairs=32)
    gen = kd.train_kd(teacher, config, quiet_run(tmp_path, config))
    z, mu, _ = _held_out()
    ref = ddim_sample(teacher, mu, torch.zeros(1, 1, 8), 2.0, 8, z)
    with torch.no_grad():
        err = (gen.x0(z, torch.full((len(z),), 999), mu) - ref).abs().max().item()
    assert err < 5e-4, err                                      # measured 6.2e-5 (1.3 s)


def test_reflow_makes_the_teacher_paths_straight(tmp_path):
    """Rectified flow: after reflow, every point x_t = a x0 + s z of a held-out pair's straight path denoises in one
    step to the pair's x0 (eps(x_t, t) = z); the final one-step generator reproduces the teacher's ODE map."""
    from dreamer.distill.generator import make_generator

    teacher = toy_setup(default_cfg=2.0)
    config = _toy_cfg("reflow", steps=1, regression_pairs=32, guidance=distill_guidance(t_min=0.499, t_max=0.5),
                      reflow=ReflowSettings(reflow_iters=400, ode_steps=8, distill_iters=400, save_reflow=False))
    run, g = quiet_run(tmp_path, config), torch.Generator().manual_seed(0)
    gen = make_generator(teacher, [999])
    z, x0, idx = regression_pairs(teacher, gen, teacher.encode_prompt(["a", "b"]), torch.zeros(1, 1, 8), config, 2.0, g)
    kd.fit_reflow(gen, z, x0, idx, teacher.encode_prompt(["a", "b"]), 400, config, run, g)
    zh, mu, _ = _held_out()
    xh = ddim_sample(teacher, mu, torch.zeros(1, 1, 8), 2.0, 8, zh)
    t = torch.full((len(zh),), 499)
    x_t = add_noise(xh, kd.path_noise(zh, xh, teacher.alphas_cumprod), t, teacher.alphas_cumprod)
    with torch.no_grad():
        straight = (gen.x0(x_t, t, mu) - xh).abs().max().item()
        before = make_generator(teacher, [999]).x0(x_t, t, mu) - xh
    config.guidance.t_min, config.guidance.t_max, config.reflow.ode_steps = 0.999, 1.0, 1  # the affine toy learns per
    #                                                                                   t: train t = 999 only
    final = kd.train_reflow(teacher, config, run)
    with torch.no_grad():
        one_step = (final.x0(zh, torch.full((len(zh),), 999), mu) - xh).abs().max().item()
    assert straight < 1e-4 and before.abs().max() > 0.1, (straight, before.abs().max())   # measured 2.4e-6 vs 13.5
    assert one_step < 5e-4, one_step                            # measured 6.2e-5


# ----------------------------------------------------------------------------------------------- ADD
def test_hinge_losses():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.3])
    assert torch.isclose(adversarial.hinge_d_loss(real, fake), torch.tensor(0.25 + 0.65))
    assert torch.isclose(adversarial.hinge_g_loss(fake), torch.tensor(0.85))
    assert adversarial.hinge_d_loss(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -5.0])) == 0


def test_add_distillation_term_is_the_x0_l2_to_the_teacher():
    """Sauer et al. eq. 5 with d = L2: d/dx of the distillation term == c(t) (x - x0_teacher(x_t)) / B exactly, x_t the
    re-noised x, x0_teacher the CFG teacher's denoised estimate, c(t) = a_t s_t (weighting "sds") or 1 ("snr_inv")."""
    from guidance import GuidanceConfig, Prompts, add_noise, guidance_step, x0_from_eps

    teacher, ac = toy_setup(), toy_setup().alphas_cumprod
    x, mu, g = _held_out(8)
    t, noise = torch.randint(20, 980, (8,), generator=g), torch.randn(x.shape, generator=g)
    x0_teacher = x0_from_eps(add_noise(x, noise, t, ac), cfg_combine(teacher.eps(add_noise(x, noise, t, ac), t,
                             torch.zeros_like(mu)), teacher.eps(add_noise(x, noise, t, ac), t, mu), 2.0), t, ac)
    for weighting, c in (("sds", (ac[t] * (1 - ac[t])).sqrt()), ("snr_inv", torch.ones(8))):
        xg = x.clone().requires_grad_(True)
        gcfg = GuidanceConfig(method="sds", cfg_scale=2.0, weighting=weighting)
        guidance_step(teacher, xg, Prompts(mu, torch.zeros_like(mu)), t, noise, gcfg).loss.backward()
        assert torch.allclose(xg.grad, c.view(-1, 1, 1, 1) * (x - x0_teacher) / 8, atol=1e-5), weighting


def test_add_discriminator_learns_real_vs_fake_on_frozen_unet_features(tiny_sd_dir):
    """Hinge updates of the heads alone separate two image sets; the feature UNet stays frozen."""
    teacher = DiffusersTeacher.from_pretrained(tiny_sd_dir)
    before = copy.deepcopy(teacher.unet.state_dict())
    cond = teacher.encode_prompt(["a red cube"] * 8)
    disc = adversarial.make_discriminator(teacher, adversarial.AddSettings(head_width=16), cond.shape[-1])
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(8, 4, 8, 8, generator=g) + 1.0, torch.randn(8, 4, 8, 8, generator=g) - 1.0
    opt = torch.optim.Adam(disc.params, lr=1e-2)
    for _ in range(30):
        loss = adversarial.hinge_d_loss(disc(real, cond), disc(fake, cond))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert disc(real, cond).min() > disc(fake, cond).max()
    for k, v in teacher.unet.state_dict().items():
        assert torch.equal(v, before[k]), k


# ----------------------------------------------------------------------------------------------- end to end
SMOKE = {  # recipe -> overrides that make it tiny
    "guidance": {"guidance_distill.sample_steps": 2},
    "progressive": {"progressive.teacher_steps": 4, "progressive.iters_per_stage": 1},
    "consistency": {"timesteps": "[999, 499]"},
    "consistency-lora": {"timesteps": "[999, 499]", "lora_rank": 2},
    "noise-lora": {"timesteps": "[999, 499]", "lora_rank": 2},
    "kd": {"regression_pairs": 1, "regression_ddim_steps": 2},
    "add": {"timesteps": "[999, 499]", "add.head_width": 8},
    "reflow": {"regression_pairs": 1, "regression_ddim_steps": 2, "reflow.reflow_iters": 1, "reflow.ode_steps": 2,
               "reflow.distill_iters": 1},
}


@pytest.mark.parametrize("recipe", sorted(SMOKE))
def test_trainer_end_to_end_on_tiny_sd(recipe, tiny_sd_dir, tmp_path):
    teacher = DiffusersTeacher.from_pretrained(tiny_sd_dir)
    before = copy.deepcopy(teacher.unet.state_dict())
    over = [f"{k}={v}" for k, v in SMOKE[recipe].items()]
    method = load_distill_config(f"distill-{recipe}").method
    config = load_distill_config(f"distill-{recipe}",
                                 ["steps=2", "batch=2", "data_size=4", "threads=1", "save_every=0", "log_every=1",
                                  f"teacher={tiny_sd_dir}", "prompts=[a red cube, a blue sphere]", *over])
    distill(config, tmp_path, teacher=teacher, log=lambda s: None, world=world_of(DEFAULT_TEACHER))  # data: shapes
    gen = load_generator(tmp_path / "generator")
    assert gen.meta["method"] == method and gen.meta["teacher"] == str(tiny_sd_dir)
    cond = teacher.encode_prompt(["a red cube"] * 2)
    for n in (1, 2):
        x = sample_latents(gen, cond, torch.randn(2, 4, 8, 8), n, torch.Generator().manual_seed(0))
        assert x.shape == (2, 4, 8, 8) and torch.isfinite(x).all()
    for k, v in teacher.unet.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_guidance_distilled_generator_is_a_teacher_for_the_other_trainers(tiny_sd_dir, tmp_path):
    """teacher=<generator folder>: one pass at the stored w (default_cfg 1), and its student keeps the w input."""
    from dreamer.distill.trainers.toolkit import GeneratorTeacher, load_any_teacher

    tiny = ["steps=1", "batch=2", "data_size=4", "threads=1", "log_every=1", "prompts=[a red cube]",
            "data=teacher", "regression_ddim_steps=2"]    # a non-shapes teacher: no shapes-world data
    config = load_distill_config("distill-guidance", [*tiny, f"teacher={tiny_sd_dir}", "guidance.cfg_scale=4.0"])
    distill(config, tmp_path / "gd", log=lambda s: None)
    teacher = load_any_teacher(str(tmp_path / "gd" / "generator"))
    assert isinstance(teacher, GeneratorTeacher) and teacher.default_cfg == 1.0 and teacher.guidance == 4.0
    x, t, cond = torch.randn(2, 4, 8, 8), torch.tensor([999, 10]), teacher.encode_prompt(["a red cube"] * 2)
    with torch.no_grad():
        assert torch.equal(teacher.eps(x, t, cond), teacher.gen.eps(x, t, cond, torch.full((2,), 4.0)))
    config = load_distill_config("distill-progressive", [*tiny, f"teacher={tmp_path / 'gd' / 'generator'}",
                                                         "progressive.teacher_steps=2",
                                                         "progressive.iters_per_stage=1"])
    distill(config, tmp_path / "pd", log=lambda s: None)
    gen = load_generator(tmp_path / "pd" / "generator")
    assert gen.guidance == 4.0 and gen.unet.config.time_cond_proj_dim == 256
    assert gen.meta["teacher"] == str(tiny_sd_dir) and gen.meta["init"].endswith("generator")


def test_every_method_has_a_recipe_and_a_trainer():
    for name in TRAINERS:
        if name in ("sds",):
            continue
        config = load_distill_config(f"distill-{name.replace('_', '-')}")
        assert config.method == name and callable(TRAINERS[name])
