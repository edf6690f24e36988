"""Student: save -> stock diffusers load -> identical samples; LoRA mode; few-step re-noising math; sample_cli."""
import json

import numpy as np
import pytest
import torch

from dreamer.distill.sampling import rollout, step_schedule
from guidance import uniform_timesteps
from dreamer.distill.generator import load_generator, make_generator, sample_cli, sample_images, sample_latents, save_generator
from guidance import DiffusersTeacher, add_noise, gaussian_teacher, x0_from_eps


@pytest.fixture(scope="module")
def teacher(tiny_sd_dir):
    torch.set_num_threads(1)
    return DiffusersTeacher.from_pretrained(tiny_sd_dir)


def _perturb(gen):
    with torch.no_grad():
        for p in gen.params:
            p.add_(0.01 * torch.randn_like(p))


def test_save_load_stock_diffusers_identical(teacher, tiny_sd_dir, tmp_path):
    from diffusers import UNet2DConditionModel

    gen = make_generator(teacher, [999, 499], meta={"teacher": str(tiny_sd_dir)})
    _perturb(gen)
    gen.unet.eval()
    save_generator(gen, tmp_path / "g", teacher.scheduler)
    assert (tmp_path / "g" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert json.loads((tmp_path / "g" / "generator.json").read_text())["t_star"] == 999
    stock = UNet2DConditionModel.from_pretrained(tmp_path / "g", subfolder="unet")
    for (n, a), b in zip(gen.unet.state_dict().items(), stock.state_dict().values()):
        assert torch.equal(a, b), n
    loaded = load_generator(tmp_path / "g")
    for steps in (1, 2):
        a = sample_images(gen, teacher, ["a red cube"], steps=steps, n=2, seed=3)
        b = sample_images(loaded, teacher, ["a red cube"], steps=steps, n=2, seed=3)
        assert a.shape == (2, 3, 16, 16) and torch.equal(a, b)
    c = sample_images(loaded, None, ["a red cube"], steps=2, n=2, seed=3)  # teacher from generator.json
    assert torch.equal(c, b)


def test_teacher_copy_is_the_one_step_x0(teacher):
    """Untrained G(z, t*) equals the teacher's own x0_hat at t*."""
    gen = make_generator(teacher, [999])
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = teacher.encode_prompt(["a", "b"])
    t = torch.full((2,), 999)
    with torch.no_grad():
        ref = x0_from_eps(z, teacher.eps(z, t, cond), t, teacher.alphas_cumprod)
        assert torch.allclose(gen.x0(z, t, cond), ref, atol=1e-5)


def test_lora_generator_save_load(teacher, tiny_sd_dir, tmp_path):
    gen = make_generator(teacher, [999], lora_rank=2, meta={"teacher": str(tiny_sd_dir)})
    assert gen.params and all("lora_" in n for n, p in gen.unet.named_parameters() if p.requires_grad)
    _perturb(gen)
    gen.unet.eval()
    save_generator(gen, tmp_path / "l")
    assert (tmp_path / "l" / "pytorch_lora_weights.safetensors").is_file()
    loaded = load_generator(tmp_path / "l")
    a = sample_images(gen, teacher, ["x"], steps=1, n=2, seed=1)
    b = sample_images(loaded, teacher, ["x"], steps=1, n=2, seed=1)
    assert torch.allclose(a, b, atol=1e-5)


def test_step_schedule():
    assert uniform_timesteps(4) == [999, 749, 499, 249]
    assert uniform_timesteps(50)[:2] == [999, 979] and uniform_timesteps(50)[-1] == 19
    trained = [999, 749, 499, 249]
    assert step_schedule(1, trained) == [999]
    assert step_schedule(2, trained) == [999, 499]
    assert step_schedule(4, trained) == trained
    assert step_schedule(3, trained) == uniform_timesteps(3)


def test_fewstep_renoise_marginals_with_perfect_generator():
    """A perfect generator of point data (x0 = mu) gives x_{t_k} ~ N(a mu, s^2 I) exactly at every stage."""
    mu = torch.tensor([0.5, -1.0, 2.0])
    teacher = gaussian_teacher(mu, 0.0)
    ac, ts = teacher.alphas_cumprod.float(), [999, 749, 499, 249]
    cond = teacher.encode_prompt([""] * 4000)

    def denoise(x, t):
        return x0_from_eps(x, teacher.eps(x, t, cond), t, ac)

    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 3, generator=g)
    for k, t in enumerate(ts):
        x = rollout(denoise, z, ts, ac, torch.Generator().manual_seed(1), until=k)
        a, s = ac[t].sqrt(), (1 - ac[t]).sqrt()
        assert torch.allclose(x.mean(0), a * mu, atol=4 * s / 60)
        assert torch.allclose(x.std(0), s.expand(3), rtol=0.05)
    assert torch.allclose(rollout(denoise, z, ts, ac, g), mu.expand(4000, 3), atol=1e-4)


def test_fewstep_step_is_renoise_formula():
    """x_{t_{i+1}} = a x0_hat + s eps_fresh, eps drawn from the passed torch.Generator."""
    ac = torch.linspace(0.999, 0.01, 1000)
    ts = [999, 499]
    z = torch.randn(5, 2)
    denoise = lambda x, t: 0.5 * x  # noqa: E731
    x1 = rollout(denoise, z, ts, ac, torch.Generator().manual_seed(7), until=1)
    eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(x1, add_noise(0.5 * z, eps, torch.full((5,), 499), ac))
    assert torch.allclose(rollout(denoise, z, ts, ac, torch.Generator().manual_seed(7)), 0.5 * x1)


def test_sample_cli_writes_grid(teacher, tiny_sd_dir, tmp_path):
    gen = make_generator(teacher, [999, 499], meta={"teacher": str(tiny_sd_dir)})
    save_generator(gen, tmp_path / "g", teacher.scheduler)
    png = sample_cli("a red cube", tmp_path / "g", steps=2, n=3, out_png=tmp_path / "s.png", seed=0)
    from PIL import Image

    arr = np.asarray(Image.open(png))
    side = 2 + 2 * 18                       # 3 samples: a square 2 x 2 grid of 16 px tiles (+2 px padding)
    k = -(-256 // side)                     # nearest-upscaled to >= 256 px wide, under a caption strip
    assert arr.shape[1] == side * k and arr.shape[0] > side * k and arr.shape[2] == 3
    run = tmp_path / "run"  # a `dreamer distill` run folder (generator/ inside) is accepted too
    save_generator(gen, run / "generator", teacher.scheduler)
    png2 = sample_cli("a red cube", run, steps=2, n=3, out_png=tmp_path / "r.png", seed=0)
    assert np.array_equal(np.asarray(Image.open(png2)), arr)


def test_generate_default_steps(teacher):
    gen = make_generator(teacher, [999, 499])
    cond = teacher.encode_prompt(["a"])
    x = sample_latents(gen, cond, torch.randn(1, 4, 8, 8))
    assert x.shape == (1, 4, 8, 8) and torch.isfinite(x).all()
