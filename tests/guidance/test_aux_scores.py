"""VSD's LoRA score and DMD's fake score on the tiny SD teacher."""
import torch

from guidance import DiffusersTeacher, FakeScore, LoraScore


def _batch(teacher, B=2):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, 4, 8, 8, generator=g), torch.tensor([100, 700]),
            teacher.encode_prompt(["a red cube"] * B), torch.randn(B, 16, generator=g))


def test_lora_step_changes_only_lora_and_camera(tiny_sd_dir):
    teacher = DiffusersTeacher.from_pretrained(tiny_sd_dir)
    base_before = {k: v.clone() for k, v in teacher.unet.state_dict().items()}
    lora = LoraScore(teacher, rank=4, lr=1e-2)
    x, t, cond, cam = _batch(teacher)
    with torch.no_grad():
        e_teacher = teacher.eps(x, t, cond)
        assert torch.equal(lora.eps(x, t, cond, camera=cam), e_teacher)  # zero-initialised LoRA and camera MLP
    cam_before = [p.clone() for p in lora.camera.parameters()]
    lora.camera_dropout = 0.0
    for _ in range(3):
        lora.train_step(x, cond, camera=cam, generator=torch.Generator().manual_seed(1))
    assert teacher.unet.state_dict().keys() == base_before.keys()  # no adapter on the teacher's modules
    assert all(torch.equal(teacher.unet.state_dict()[k], v) for k, v in base_before.items())  # bit-identical
    after = lora.unet.state_dict()
    base_after = {k.replace(".base_layer", ""): v for k, v in after.items() if "lora_" not in k}
    assert base_after.keys() == base_before.keys()
    assert all(torch.equal(base_after[k], v) for k, v in base_before.items())  # the copy's frozen weights too
    shared = {p.data_ptr() for p in teacher.unet.parameters()}
    assert all(p.data_ptr() in shared for n, p in lora.unet.named_parameters() if "lora_" not in n)  # no copy
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in after.items())  # the LoRA did train
    assert any(not torch.equal(a, b) for a, b in zip(cam_before, lora.camera.parameters())), [(a - b).abs().max() for a, b in zip(cam_before, lora.camera.parameters())]
    with torch.no_grad():
        assert torch.equal(teacher.eps(x, t, cond), e_teacher)  # the teacher pass never sees the adapter
        assert not torch.allclose(lora.eps(x, t, cond, camera=cam), e_teacher)


def test_lora_saves_in_the_diffusers_format(tiny_sd_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    teacher = DiffusersTeacher.from_pretrained(tiny_sd_dir)
    lora = LoraScore(teacher, lr=1e-2)
    x, t, cond, _ = _batch(teacher)
    for _ in range(2):
        lora.train_step(x, cond, camera=None)
    lora.save(tmp_path / "lora")
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd_dir), safety_checker=None)
    pipe.load_lora_weights(str(tmp_path / "lora"))
    with torch.no_grad():
        ref = pipe.unet(x, t, encoder_hidden_states=cond).sample
        assert torch.allclose(lora.eps(x, t, cond), ref, atol=1e-5)
    assert (tmp_path / "lora" / "camera_embedding.safetensors").exists()


def test_fake_score_starts_at_teacher_and_trains_alone(tiny_sd_dir):
    teacher = DiffusersTeacher.from_pretrained(tiny_sd_dir)
    fake = FakeScore(teacher, lr=1e-3)
    x, t, cond, _ = _batch(teacher)
    with torch.no_grad():
        e0 = teacher.eps(x, t, cond)
        assert torch.equal(fake.eps(x, t, cond), e0)
    fake.train_step(x, cond)
    with torch.no_grad():
        assert torch.equal(teacher.eps(x, t, cond), e0)
        assert not torch.allclose(fake.eps(x, t, cond), e0)


def test_auxiliary_skips_a_non_finite_update(tiny_sd_dir):
    teacher = DiffusersTeacher.from_pretrained(tiny_sd_dir)
    lora = LoraScore(teacher, lr=1e-2)
    x, t, cond, cam = _batch(teacher)
    lora.train_step(x, cond, camera=None)
    before = [p.detach().clone() for p in lora.params]
    state = {k: v["exp_avg"].clone() for k, v in enumerate(lora.opt.state.values())}
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")  # a NaN render
    assert lora.train_step(bad, cond, camera=None) != lora.train_step(bad, cond, camera=None)  # nan != nan
    assert all(torch.equal(a, b) for a, b in zip(before, lora.params))
    assert all(torch.equal(v["exp_avg"], state[k]) for k, v in enumerate(lora.opt.state.values()))
    lora.train_step(x, cond, camera=None)
    assert any(not torch.equal(a, b) for a, b in zip(before, lora.params))  # good steps still train
