"""SDXL-class teachers on a tiny SDXL-architecture pipeline (real diffusers / transformers classes, random weights):
conditioning equals the diffusers pipeline's own (both encoders, pooled text, time ids, zeroed empty prompt), the
UNet split reproduces the text_time forward, and VSD's LoRA score runs on it."""
import pytest
import torch

from guidance import DiffusersTeacher, LoraScore, split_cond
from guidance.unet_split import decode, encode, supports_split


@pytest.fixture(scope="module")
def pipe_and_teacher(tiny_sdxl_dir):
    from diffusers import StableDiffusionXLPipeline

    torch.set_num_threads(1)
    return StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_dir), DiffusersTeacher.from_pretrained(tiny_sdxl_dir)


def test_conditioning_equals_the_sdxl_pipeline(pipe_and_teacher):
    pipe, teacher = pipe_and_teacher
    cond = teacher.encode_prompt(["a red cube", "a blue sphere", ""])                         # [3, L+1, D]
    pe, ne, pp, npp = pipe.encode_prompt(["a red cube", "a blue sphere"], device="cpu", num_images_per_prompt=1,
                                         do_classifier_free_guidance=True, negative_prompt=None)
    hidden, kw = split_cond(teacher.unet, cond)
    add = kw["added_cond_kwargs"]
    size = teacher.unet.config.sample_size * teacher.vae_scale_factor
    ids = pipe._get_add_time_ids((size, size), (0, 0), (size, size), dtype=torch.float32,
                                 text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
    torch.testing.assert_close(hidden, torch.cat([pe, ne[:1]]), rtol=0, atol=1e-6)
    torch.testing.assert_close(add["text_embeds"], torch.cat([pp, npp[:1]]), rtol=0, atol=1e-6)
    assert torch.equal(ne, torch.zeros_like(ne)) and torch.equal(add["time_ids"], ids.repeat(3, 1))
    x, t = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([10, 500, 990])
    with torch.no_grad():
        ref = pipe.unet(x, t, encoder_hidden_states=hidden, added_cond_kwargs=add).sample
        torch.testing.assert_close(teacher.eps(x, t, cond), ref, rtol=0, atol=1e-6)
        assert supports_split(teacher.unet) is None
        torch.testing.assert_close(decode(teacher.unet, encode(teacher.unet, x, t, cond)), ref, rtol=0, atol=1e-5)


def test_vsd_lora_score_on_sdxl(pipe_and_teacher):
    _, teacher = pipe_and_teacher
    lora = LoraScore(teacher, rank=2, lr=1e-2)
    x0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    cond, cam = teacher.encode_prompt(["a red cube"] * 2), torch.randn(2, 16)
    t = torch.tensor([100, 700])
    with torch.no_grad():
        torch.testing.assert_close(lora.eps(x0, t, cond), teacher.eps(x0, t, cond), rtol=0, atol=1e-5)  # B = 0
    loss = lora.train_step(x0, cond, camera=cam, generator=torch.Generator().manual_seed(2))
    assert loss == loss and any(m.lora_B.weight.abs().sum() > 0 for m in lora.layers.values())  # it trained
