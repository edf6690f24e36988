"""Memory options of the score trainers on the tiny SD teacher: bf16 autocast (fp32 master weights) agrees with
fp32 within the stated tolerances, gradient checkpointing gives the same gradients, SDPA attention is what the
UNets run, and a LoRA fake score trains only its adapter."""
import pytest
import torch
from roundings import CountRoundings, bf16_scale

from dreamer.distill.recipe import DistillConfig, distill_guidance, validate
from dreamer.distill.trainers.score import autocast, distill_step, guidance_config, init_state
from guidance import DiffusersTeacher, FakeScore

@pytest.fixture(scope="module")
def teacher(tiny_sd_dir):
    torch.set_num_threads(1)
    return DiffusersTeacher.from_pretrained(tiny_sd_dir)


def _cfg(tiny_sd_dir, g=(), **kw):
    base = dict(method="dmd", steps=2, batch=2, lr_gen=1e-3,
                guidance=distill_guidance(**{**dict(aux_updates=1, aux_lr=1e-3, cfg_scale=3.0), **dict(g)}),
                prompts=["a red cube", "a blue sphere"], timesteps=[999, 499], threads=1, teacher=str(tiny_sd_dir))
    return DistillConfig(**{**base, **kw})


def _inputs(teacher):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    return x, torch.tensor([999, 300]), teacher.encode_prompt(["a red cube", "a blue sphere"]), \
        torch.randn(2, 4, 8, 8, generator=g)


def _grads(model_eps, params, x, t, cond, target, ctx):
    for p in params:
        p.grad = None
    with ctx:
        out = model_eps(x, t, cond)
    loss = (out.float() - target).pow(2).mean()
    loss.backward()
    return out.detach().float(), torch.cat([p.grad.flatten() for p in params]), loss.detach()


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_bf16_autocast_agrees_with_fp32(teacher, tiny_sd_dir):
    """bf16 autocast against fp32, same inputs: the UNet output and the parameter gradients are within sqrt(n) u
    (relative, L2) of fp32, n the bf16 roundings counted in that pass (forward; forward + backward), u = 2^-8 (a
    cosine floor would follow from the gradient bound, so none is asserted); the loss bound follows from the
    output's. No figure here was read off a machine (seen: about a fifth of each bound)."""
    x, t, cond, target = _inputs(teacher)
    for mp in ("fp32", "bf16"):
        assert autocast(_cfg(tiny_sd_dir, mixed_precision=mp)).fast_dtype == torch.bfloat16
    assert validate(_cfg(tiny_sd_dir, mixed_precision="no")).mixed_precision == "fp32"   # the older spelling
    state = init_state(teacher, _cfg(tiny_sd_dir), str(tiny_sd_dir))
    for eps, params in ((state.gen.eps, state.gen.params), (state.fake.eps, state.fake.params)):
        o32, g32, l32 = _grads(eps, params, x, t, cond, target, autocast(_cfg(tiny_sd_dir)))
        fwd, every = CountRoundings(), CountRoundings()
        with fwd, torch.no_grad(), autocast(_cfg(tiny_sd_dir, mixed_precision="bf16")):
            eps(x, t, cond)
        with every:
            o16, g16, l16 = _grads(eps, params, x, t, cond, target,
                                   autocast(_cfg(tiny_sd_dir, mixed_precision="bf16")))
        assert all(p.dtype == torch.float32 for p in params)                       # fp32 master weights
        out_tol, grad_tol = bf16_scale(fwd.n), bf16_scale(every.n)
        assert 0 < fwd.n < every.n and grad_tol < 0.5, (fwd.n, every.n)          # the bounds say something
        assert _rel(o16, o32) < out_tol and _rel(g16, g32) < grad_tol, (_rel(o16, o32), _rel(g16, g32))
        # loss = mean |o - y|^2: |dL| / L <= 2 r + r^2 with r = ||o16 - o32|| / ||o32 - y||
        r = out_tol * float(o32.norm() / (o32 - target).norm())
        assert abs(float(l16 - l32)) / float(l32) < 2 * r + r * r
        assert not torch.equal(o16, o32)                                          # autocast did run in bf16
    config = _cfg(tiny_sd_dir, mixed_precision="bf16", gradient_checkpointing=True, g=dict(aux_rank=2))
    state = init_state(teacher, config, str(tiny_sd_dir))
    with autocast(config):
        m = distill_step(state, teacher, config, guidance_config(config, teacher.default_cfg))
    assert m["grad_norm"] > 0 and all(torch.isfinite(p).all() for p in state.gen.params)


def test_gradient_checkpointing_gives_the_same_gradients(teacher, tiny_sd_dir):
    x, t, cond, target = _inputs(teacher)
    plain = init_state(teacher, _cfg(tiny_sd_dir), str(tiny_sd_dir))
    ckpt = init_state(teacher, _cfg(tiny_sd_dir, gradient_checkpointing=True), str(tiny_sd_dir))
    assert ckpt.gen.unet.is_gradient_checkpointing and ckpt.fake.unet.is_gradient_checkpointing
    for a, b in ((plain.gen, ckpt.gen), (plain.fake, ckpt.fake)):
        _, ga, la = _grads(a.eps, a.params, x, t, cond, target, autocast(_cfg(tiny_sd_dir)))
        _, gb, lb = _grads(b.eps, b.params, x, t, cond, target, autocast(_cfg(tiny_sd_dir)))
        torch.testing.assert_close(gb, ga, rtol=1e-5, atol=1e-7)
        assert torch.equal(la, lb)


def test_unets_run_sdpa_attention(teacher):
    from diffusers.models.attention_processor import AttnProcessor2_0

    procs = teacher.unet.attn_processors
    assert procs and all(isinstance(p, AttnProcessor2_0) for p in procs.values())   # F.scaled_dot_product_attention


def test_lora_fake_score_trains_only_its_adapter(teacher):
    before = {k: v.clone() for k, v in teacher.unet.state_dict().items()}
    fake = FakeScore(teacher, lr=1e-2, lora_rank=2)
    full = sum(p.numel() for p in teacher.unet.parameters())
    assert 0 < sum(p.numel() for p in fake.params) < full / 5
    x, t, cond, _ = _inputs(teacher)
    with torch.no_grad():
        torch.testing.assert_close(fake.eps(x, t, cond), teacher.eps(x, t, cond), rtol=0, atol=1e-6)   # B = 0
    for _ in range(2):
        fake.train_step(x, cond, generator=torch.Generator().manual_seed(1))
    assert any(m.lora_B.weight.abs().sum() > 0 for m in fake.layers.values())
    assert all(torch.equal(v, before[k]) for k, v in teacher.unet.state_dict().items())
    with torch.no_grad():
        assert not torch.allclose(fake.eps(x, t, cond), teacher.eps(x, t, cond))
