"""guidance.lora: the LoRA layer's formula and peft's state-dict layout."""
import pytest
import torch

from guidance.lora import LoraLinear, add_lora, lora_state_dict


def test_lora_linear_is_w_x_plus_b_a_x():
    base = torch.nn.Linear(6, 5)
    layer = LoraLinear(base, rank=2, alpha=4.0)
    torch.nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(3, 7, 6)
    expect = base(x) + 2.0 * x @ layer.lora_A.weight.T @ layer.lora_B.weight.T
    assert torch.allclose(layer(x), expect, atol=1e-6)
    assert layer.base_layer.weight is base.weight                       # the frozen weight is shared, not copied
    assert torch.equal(LoraLinear(base, rank=2)(x), base(x))            # B = 0 at start


def test_add_lora_matches_peft_layout(tiny_sd_dir):
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    target = r"up_blocks\..*\.(to_q|to_k|to_v|to_out\.0)"
    ours = UNet2DConditionModel.from_pretrained(tiny_sd_dir, subfolder="unet")
    theirs = UNet2DConditionModel.from_pretrained(tiny_sd_dir, subfolder="unet")
    layers = add_lora(ours, target, rank=4)
    theirs.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=target))
    ref = get_peft_model_state_dict(theirs)
    sd = lora_state_dict(layers)
    assert sd.keys() == ref.keys() and all(sd[k].shape == ref[k].shape for k in sd)
    assert {k.replace(".base_layer", "") for k in ours.state_dict() if "lora_" not in k} == \
        set(UNet2DConditionModel.from_pretrained(tiny_sd_dir, subfolder="unet").state_dict())
    with pytest.raises(ValueError, match="no nn.Linear matches"):
        add_lora(ours, r"nothing\.here", rank=4)
