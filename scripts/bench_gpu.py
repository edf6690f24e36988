"""Per-step time and peak memory of SDS, VSD (512^2 renders) and one DMD update (batch 1 and 4) on full-size
SD-2.1-base and SDXL UNet / VAE architectures with random weights (no download), fp32 vs bf16, with and without
gradient checkpointing. One JSON line per configuration.

    python scripts/bench_gpu.py --arch sd21 sdxl --device cuda            # on a GPU (not measured yet)
    python scripts/bench_gpu.py --smoke --device cpu                      # tiny architectures: checks it runs
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guidance import (DiffusersTeacher, GuidanceConfig, LoraScore, Prompts, TeacherOptions,  # noqa: E402
                      pack_cond, score_distillation_step)

SD21 = dict(sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, attention_head_dim=(5, 10, 20, 20),
            cross_attention_dim=1024, use_linear_projection=True)
SDXL = dict(sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(5, 10, 20),
            transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048, use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
SD_VAE = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
TINY = dict(sample_size=8, block_out_channels=(16, 32), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=4, cross_attention_dim=32, norm_num_groups=8)
TINY_VAE = dict(block_out_channels=(8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=8,
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)


class BenchTeacher(DiffusersTeacher):
    """A DiffusersTeacher without a text encoder: prompts map to fixed random embeddings of the right shape."""

    def encode_prompt(self, prompts):
        c = self.unet.config
        g = torch.Generator().manual_seed(0)
        hidden = torch.randn(len(prompts), 77, c.cross_attention_dim, generator=g)
        if c.get("addition_embed_type") == "text_time":
            size = float(c.sample_size * self.vae_scale_factor)
            pooled = torch.randn(len(prompts), c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim,
                                 generator=g)
            hidden = pack_cond(hidden, pooled, torch.tensor([[size, size, 0, 0, size, size]]).expand(len(prompts), -1))
        return hidden.to(self.device)


def build_teacher(arch: str, dtype: str, device: str) -> BenchTeacher:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    torch.manual_seed(0)
    unet_cfg, vae_cfg = {"sd21": (SD21, SD_VAE), "sdxl": (SDXL, SD_VAE), "tiny": (TINY, TINY_VAE)}[arch]
    dt = getattr(torch, dtype)
    unet = UNet2DConditionModel(**unet_cfg).to(device, dt).eval().requires_grad_(False)
    vae = AutoencoderKL(**vae_cfg).to(device, dt).eval().requires_grad_(False)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          prediction_type="v_prediction" if arch == "sd21" else "epsilon")
    return BenchTeacher(unet, sched, None, vae, 7.5, TeacherOptions(dtype=dtype, device=device))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int) -> dict:
    """Median seconds per call (after one warm-up call) and the peak memory of the timed calls."""
    fn()
    _sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.startswith("cuda") else None
    return {"s_per_step": round(sorted(times)[len(times) // 2], 4), "peak_gib": peak and round(peak, 2)}


def guidance_case(teacher, method: str, res: int, device: str, bf16: bool):
    """SDS / VSD on a trainable 512^2 image standing in for a render: encode, guidance step, backward."""
    img = torch.rand(1, 3, res, res, device=device, requires_grad=True)
    cond = teacher.encode_prompt(["a"])
    prompts = Prompts(cond, teacher.encode_prompt([""]))
    config = GuidanceConfig(method=method, cfg_scale=7.5 if method == "vsd" else 100.0)
    aux = LoraScore(teacher, rank=4) if method == "vsd" else None
    g = torch.Generator().manual_seed(0)
    cam = torch.eye(4, device=device).flatten()[None] if aux is not None else None

    def step():
        with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=bf16):
            x0 = teacher.encode(img)
            out = score_distillation_step(teacher, x0, prompts, config, g, aux=aux,
                                          **({"camera": cam} if aux is not None else {}))
        out.loss.backward()
        img.grad = None
    return step


def dmd_case(teacher, batch: int, device: str, bf16: bool, ckpt: bool):
    """One DMD generator update with its fake-score update (dreamer.distill.trainers.score.distill_step)."""
    from dreamer.distill.recipe import DistillConfig, distill_guidance
    from dreamer.distill.trainers.score import autocast, distill_step, guidance_config, init_state

    config = DistillConfig(method="dmd", batch=batch, guidance=distill_guidance(aux_updates=1, cfg_scale=1.75),
                           prompts=["a", "b"], device=device,
                           mixed_precision="bf16" if bf16 else "no", gradient_checkpointing=ckpt, dm_loss="mean")
    state = init_state(teacher, config)
    gcfg = guidance_config(config, teacher.default_cfg)

    def step():
        with autocast(config):
            distill_step(state, teacher, config, gcfg)
    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", nargs="+", default=["sd21", "sdxl"], choices=["sd21", "sdxl", "tiny"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--res", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--smoke", action="store_true", help="tiny architectures, 32^2, 1 repeat (checks it runs)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()        # random-weight models cast with .to(): no dtype advice
    if a.smoke:
        a.arch, a.res, a.repeats = ["tiny"], 32, 1
    for arch in a.arch:
        for dtype in ("float32", "bfloat16"):
            bf16 = dtype == "bfloat16"
            teacher = build_teacher(arch, "float32" if not bf16 else "bfloat16", a.device)
            cases = [(f"{m}-{a.res}", guidance_case(teacher, m, a.res, a.device, bf16)) for m in ("sds", "vsd")]
            teacher32 = teacher if not bf16 else build_teacher(arch, "float32", a.device)  # DMD: fp32 masters
            cases += [(f"dmd-b{b}{'-ckpt' if c else ''}", dmd_case(teacher32, b, a.device, bf16, c))
                      for b in (1, 4) for c in (False, True)]
            for name, fn in cases:
                try:
                    row = timed(fn, a.device, a.repeats)
                except torch.OutOfMemoryError:
                    row = {"error": "out of memory"}
                print(json.dumps({"arch": arch, "precision": "bf16" if bf16 else "fp32", "case": name, **row}),
                      flush=True)
                if a.device.startswith("cuda"):
                    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
