"""The SDXL and SD-2.1 GPU recipes end to end on tiny pipelines of the same architectures (SDXL: two encoders,
text_time UNet; SD 2.1: v-prediction, linear-projection attention): text-to-3D with SDS and VSD, DMD distillation
from a caption file, and resume."""
import json

import pytest
import torch
from roundings import CountRoundings, bf16_scale

from dreamer.common.checkpoints import load_checkpoint
from dreamer.distill.generator import load_generator, sample_images
from dreamer.distill.loop import distill
from dreamer.distill.recipe import load_distill_config
from dreamer.text_to_3d.loop import generate
from dreamer.text_to_3d.recipe import load_generate_config
from guidance import DiffusersTeacher

CPU = ["device=cpu", "teacher_dtype=float32", "train.preview_every=0", "train.checkpoint_every=0",
       "camera.resolution=16", "camera.batch=1", "nerf.n_samples=8", "nerf.levels=4", "nerf.log2_table_size=10",
       "gaussians.n_init=200", "export.evaluate=false"]


@pytest.fixture(scope="module", params=["sdxl", "sd21"])
def tiny(request, tiny_sdxl_dir, tiny_sd21_dir):
    torch.set_num_threads(1)
    folder = tiny_sdxl_dir if request.param == "sdxl" else tiny_sd21_dir
    return request.param, folder, DiffusersTeacher.from_pretrained(folder)


@pytest.mark.parametrize("recipe", ["sdxl-gaussians-sds", "sdxl-nerf-vsd"])  # on both tiny architectures
def test_generate_sds_and_vsd(tiny, recipe, tmp_path):
    kind, folder, teacher = tiny
    config = load_generate_config(recipe, "a red cube", str(folder), CPU + ["train.steps=2"])
    run = generate(config, tmp_path / recipe, progress=False, teacher=teacher)
    assert run.step_i == 2 and all(torch.isfinite(torch.tensor(v)).all() for v in run.history["loss"])
    if "vsd" in recipe:   # threestudio's LoRA settings: own (view-independent) prompt, native target
        assert run.aux_cond is not None and run.aux.loss_space == "native"


def test_generate_vsd_resume_is_exact(tiny, tmp_path):
    _, folder, teacher = tiny
    config = load_generate_config("gaussians-vsd", "a red cube", str(folder),
                                  CPU + ["train.steps=4", "train.checkpoint_every=2", "guidance.aux_target=native",
                                         "guidance.aux_prompt=base"])
    full = generate(config, tmp_path / "full", progress=False, teacher=teacher)
    generate(config, tmp_path / "split", progress=False, stop_after=2, teacher=teacher)
    resumed = generate(config, tmp_path / "split", resume=True, progress=False, teacher=teacher)
    a = [p.detach() for p in full.scene.params.parameters()]
    b = [p.detach() for p in resumed.scene.params.parameters()]
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and full.history == resumed.history


def test_distill_dmd_from_captions_and_resume(tiny, tmp_path):
    kind, folder, teacher = tiny
    caps = tmp_path / "captions.jsonl"
    caps.write_text("\n".join(json.dumps({"caption": c}) for c in ("a red cube", "a blue sphere", "a green cone")))
    recipe = "distill-dmd-sdxl" if kind == "sdxl" else "distill-dmd-sd21"
    over = ["device=cpu", "dtype=float32", "resolution=null", "steps=4", "batch=2", "guidance.aux_updates=2",
            "save_every=2", "threads=1", "log_every=1", f"teacher={folder}", f"prompts_file={caps}", "lr_gen=1e-4"]
    config = load_distill_config(recipe, over)
    assert config.dm_loss == "mean" and config.aux_fresh_batches
    gen = distill(config, tmp_path / "full", teacher=teacher, log=lambda s: None)
    distill(load_distill_config(recipe, over + ["steps=2"]), tmp_path / "split", teacher=teacher, log=lambda s: None)
    resumed = distill(config, tmp_path / "split", teacher=teacher, log=lambda s: None, resume=True)
    assert all(torch.equal(a, b) for a, b in zip(gen.params, resumed.params))
    a, b = load_checkpoint(tmp_path / "full" / "checkpoint.pt"), load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert all(torch.equal(x, y) for x, y in zip(a["fake"], b["fake"])) and a["step"] == b["step"] == 4
    loaded = load_generator(tmp_path / "full" / "generator")
    rgb = sample_images(loaded, teacher, ["a red cube"], steps=1, n=2)
    assert rgb.shape[:2] == (2, 3) and torch.isfinite(rgb).all()


def test_sdxl_recipes_validate_as_shipped():
    for name in ("sdxl-gaussians-sds", "sdxl-nerf-vsd"):
        config = load_generate_config(name, "a red cube", None, [])
        assert config.teacher == "stabilityai/stable-diffusion-xl-base-1.0" and config.device == "cuda"
    vsd = load_generate_config("sdxl-nerf-vsd", "a red cube", None, []).guidance
    assert (vsd.method, vsd.aux_target, vsd.aux_prompt, vsd.aux_cfg) == ("vsd", "native", "base", "camera")
    d = load_distill_config("distill-dmd-sdxl")
    assert d.teacher.endswith("stable-diffusion-xl-base-1.0") and d.resolution == 1024 and d.dm_loss == "mean"
    assert d.mixed_precision == "bf16" and d.gradient_checkpointing and d.aux_fresh_batches


@pytest.mark.parametrize("recipe", ["gaussians-sds", "gaussians-vsd", "nerf-sds"])
def test_3d_bf16_autocast_agrees_with_fp32(recipe, tiny_sd_dir):
    """mixed_precision: bf16 in the text-to-3D loop (VAE encode with gradient, teacher, VSD LoRA in autocast; the
    renderer in fp32): the first step's scene gradients (same cameras, t and noise) differ from fp32's by rounding
    only. The scale of n bf16 roundings is sqrt(n) u (u = 2^-8, n counted in that step, tests/roundings.py); the
    guidance combination eps_u + s (eps_c - eps_u) can amplify it (seen: 0.7-0.8 of it here, 0.05-0.07 on two
    CPUs), so the assertion is the separation instead: relative error < 0.5, while that scale is below 0.2 and a
    broken path (a lost, zeroed or sign-flipped gradient) is at >= 1. The bf16 passes did run (not identical)."""
    from dreamer.text_to_3d.loop import SceneRun

    torch.set_num_threads(1)
    teacher, grads, count = DiffusersTeacher.from_pretrained(tiny_sd_dir), {}, CountRoundings()
    for mp in ("fp32", "bf16"):
        config = load_generate_config(recipe, "a red cube", str(tiny_sd_dir), CPU + ["camera.batch=2",
                                                                                     f"mixed_precision={mp}"])
        run = SceneRun(config, teacher=teacher)
        with count:
            run.step()
        grads[mp] = torch.cat([p.grad.flatten() for o in run.scene.optimizers for g in o.param_groups
                               for p in g["params"] if p.grad is not None])
    a, b = grads["bf16"], grads["fp32"]
    assert not torch.equal(a, b) and 0 < bf16_scale(count.n) < 0.2, count.n   # fp32's step counts none
    assert float((a - b).norm() / b.norm()) < 0.5, float((a - b).norm() / b.norm())


@pytest.mark.parametrize("method", ["dmd", "add"])
def test_gan_heads_train_on_the_sdxl_encoder(method, tiny_sdxl_dir, tmp_path):
    """DMD2's GAN term and ADD on the tiny SDXL architecture (text_time UNet: the discriminator's frozen encoder
    gets pooled text and time ids): 2 steps with a discriminator step each (d_loss logged, every loss finite) and
    a loadable SDXL-architecture generator. Before, the GAN heads were tested on the SD 1.5 architecture only."""
    from dreamer.distill.recipe import DistillConfig, distill_guidance
    from dreamer.distill.trainers.adversarial import GanSettings

    torch.set_num_threads(1)
    lines = []
    config = DistillConfig(method=method, teacher=str(tiny_sdxl_dir), steps=2, batch=2, lr_gen=1e-3,
                           guidance=distill_guidance(aux_updates=1, aux_lr=1e-3, cfg_scale=3.0),
                           prompts=["a red cube", "a blue sphere"], timesteps=[999, 499],
                           threads=1, log_every=1, seed=0, data="teacher", data_size=4,
                           **({"gan": GanSettings(weight=0.1)} if method == "dmd" else {}))
    distill(config, tmp_path / method, log=lines.append)
    logs = [json.loads(s) for s in lines]
    d = [m["d_loss"] for m in logs]
    assert len(d) == 2 and all(torch.isfinite(torch.tensor(v)) for m in logs for v in m.values()
                               if isinstance(v, float))
    assert load_generator(tmp_path / method / "generator").unet.config.addition_embed_type == "text_time"
