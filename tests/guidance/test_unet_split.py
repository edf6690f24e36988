"""The SD UNet as encoder + decoder halves, and VSD's LoRA decoder reusing the teacher's encoder pass."""
import pytest
import torch

from guidance import DiffusersTeacher, LoraScore, Prompts, teacher_cfg
from guidance.unet_split import decode, encode, supports_split


def _teachers(tiny_sd_dir):
    from dreamer.common.teacher_source import load_teacher

    return [DiffusersTeacher.from_pretrained(tiny_sd_dir), load_teacher(None)]


@pytest.mark.parametrize("which", [0, 1])  # tiny latent SD (8x8), embedded pixel teacher (32x32)
def test_decode_of_encode_is_the_unet_forward(tiny_sd_dir, which):
    teacher = _teachers(tiny_sd_dir)[which]
    unet, c = teacher.unet, teacher.unet.config
    assert supports_split(unet) is None
    g = torch.Generator().manual_seed(0)
    cond = teacher.encode_prompt(["a red cube", "a blue torus", ""])
    s = c.sample_size
    for size in ((s, s), (s - 4, s + 12)):           # the second is not a multiple of the upsampling factor
        x = torch.randn(3, c.in_channels, *size, generator=g)
        t = torch.tensor([3, 500, 999])
        with torch.no_grad():
            assert torch.equal(decode(unet, encode(unet, x, t, cond)), unet(x, t, encoder_hidden_states=cond).sample)


def test_unsupported_unet_config_is_named():
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=4, norm_num_groups=8, time_cond_proj_dim=8)
    assert supports_split(unet) == "time_cond_proj_dim=8"


def test_lora_decoder_on_the_teacher_encoder(tiny_sd_dir):
    """LoraScore.teacher_cfg == guidance.teacher_cfg; eps with the handed-over encoding == eps computing its own;
    the LoRA sits on the up blocks only and trains through the decoder alone."""
    teacher = DiffusersTeacher.from_pretrained(tiny_sd_dir)
    lora = LoraScore(teacher, rank=4, lr=1e-2)
    assert lora.layers and all(name.startswith("up_blocks.") for name in lora.layers)
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([100, 700])
    p = Prompts(teacher.encode_prompt(["a red cube"] * 2), teacher.encode_prompt([""] * 2))
    cam = torch.randn(2, 16, generator=g)
    for _ in range(3):                                  # non-zero LoRA and camera MLP
        lora.train_step(x, p.cond, camera=cam, generator=g)
    with torch.no_grad():
        eps_cfg, enc = lora.teacher_cfg(x, t, p.cond, p.uncond, 7.5)
        assert torch.equal(eps_cfg, teacher_cfg(teacher, x, t, p, 7.5)[0])
        shared, own = lora.eps(x, t, p.cond, camera=cam, encoded=enc), lora.eps(x, t, p.cond, camera=cam)
        # the same function; the handed-over encoding came from a batch of 2B (last-bit differences only)
        assert torch.allclose(shared, own, rtol=0, atol=1e-5) and not torch.allclose(own, teacher.eps(x, t, p.cond))
    out = lora.eps(x, t, p.cond, camera=cam, encoded=enc)
    out.pow(2).mean().backward()
    assert all(prm.grad is not None for prm in lora.params)
    assert all(prm.grad is None for prm in teacher.unet.parameters())
