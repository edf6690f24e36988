"""DiffusersTeacher on tiny random SD pipelines saved to disk and loaded through the user-facing path."""
import pytest
import torch

from guidance import DiffusersTeacher, TeacherOptions


def _inputs(teacher, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 4, 8, 8, generator=g)
    return x, torch.tensor([37, 811])[:B], teacher.encode_prompt(["a red cube", ""][:B])


def test_roundtrip_identical_eps(tiny_sd_dir):
    from diffusers import StableDiffusionPipeline

    teacher = DiffusersTeacher.from_pretrained(tiny_sd_dir)
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd_dir), safety_checker=None)
    x, t, cond = _inputs(teacher)
    ids = pipe.tokenizer(["a red cube", ""], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         return_tensors="pt").input_ids
    ref_cond = pipe.text_encoder(ids)[0]
    assert torch.equal(cond, ref_cond)
    with torch.no_grad():
        ref = pipe.unet(x, t, encoder_hidden_states=ref_cond).sample
        assert torch.equal(teacher.eps(x, t, cond), ref)
    assert teacher.vae is not None and teacher.encode(torch.rand(1, 3, 16, 16)).shape == (1, 4, 8, 8)
    assert teacher.decode(torch.zeros(1, 4, 8, 8)).shape == (1, 3, 16, 16)


@pytest.mark.parametrize("ptype", ["v_prediction", "sample"])
def test_prediction_types_match_the_schedulers_own_conversion(tmp_path, ptype):
    """eps from a v / x0 teacher equals the eps implied by diffusers' DDIM step on the same model output."""
    from diffusers import DDIMScheduler
    from tiny_sd import build_tiny_sd

    build_tiny_sd(tmp_path / ptype, prediction_type=ptype)
    teacher = DiffusersTeacher.from_pretrained(tmp_path / ptype)
    x, t, cond = _inputs(teacher)
    sched = DDIMScheduler.from_pretrained(str(tmp_path / ptype), subfolder="scheduler")
    sched.set_timesteps(1000)
    with torch.no_grad():
        eps = teacher.eps(x, t, cond)
        out = teacher.unet(x, t, encoder_hidden_states=cond).sample
    abar = sched.alphas_cumprod
    for i in range(2):
        x0 = sched.step(out[i:i + 1], int(t[i]), x[i:i + 1]).pred_original_sample
        ref = (x[i:i + 1] - abar[t[i]].sqrt() * x0) / (1 - abar[t[i]]).sqrt()
        assert torch.allclose(eps[i:i + 1], ref, atol=1e-4), ptype


def test_memory_switches_keep_outputs(tiny_sd_dir):
    base = DiffusersTeacher.from_pretrained(tiny_sd_dir)
    opt = DiffusersTeacher.from_pretrained(tiny_sd_dir, TeacherOptions(channels_last=True, attention_slicing=True))
    x, t, cond = _inputs(base)
    with torch.no_grad():
        assert torch.allclose(base.eps(x, t, cond), opt.eps(x, t, cond), atol=1e-5)
    half = DiffusersTeacher.from_pretrained(tiny_sd_dir, TeacherOptions(dtype="bfloat16"))
    assert half.unet.dtype == torch.bfloat16
    with torch.no_grad():
        e = half.eps(x, t, half.encode_prompt(["a red cube", ""]))
    assert e.dtype == torch.float32 and torch.allclose(e, base.eps(x, t, cond), atol=0.15)


def test_prompt_cache_and_batching(tiny_sd_dir):
    teacher = DiffusersTeacher.from_pretrained(tiny_sd_dir)
    a = teacher.encode_prompt(["a cube, side view", "a cube, back view", "a cube, side view"])
    assert torch.equal(a[0], a[2]) and not torch.equal(a[0], a[1])
    assert len(teacher._prompt_cache) == 2
