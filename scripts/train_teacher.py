"""Train the embedded shapes-world teacher from scratch (pixel-space, text-conditioned DDPM).

    python scripts/train_teacher.py --out dreamer/assets/shapes-teacher [--steps 2400]
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/ (training-only, not installed)

from dreamer.shapes.render import random_views, render_shapes  # noqa: E402
from dreamer.common.ema import ema_update  # noqa: E402
from dreamer.common.view_prompts import VIEW_SUFFIXES, view_prompt  # noqa: E402
from dreamer.shapes.world import COLOUR_NAMES, SHAPES, catalogue  # noqa: E402
from guidance import add_noise, prediction_target  # noqa: E402
from guidance.text import TextEncoder  # noqa: E402
from tools.shapes_training.teacher_spec import (MAX_TOKENS, TEXT_ENCODER, TeacherTrainConfig,  # noqa: E402
                                                scheduler_config, unet_config)


def build_dataset(config: TeacherTrainConfig, g: torch.Generator):
    """Render views_per_prompt random views of every catalogue entry: uint8 images [N,3,R,R] and prompt strings."""
    cat = catalogue()
    specs = [s for s in cat for _ in range(config.views_per_prompt)]
    v = random_views(len(specs), g)
    imgs, prompts = [], []
    for i in range(0, len(specs), 512):
        sl = slice(i, i + 512)
        rgb, _ = render_shapes(specs[sl], v["elev"][sl], v["azim"][sl], v["dist"][sl], v["fov"][sl], config.resolution)
        imgs.append((rgb * 255).round().to(torch.uint8))
    for s, e, a in zip(specs, v["elev"].tolist(), v["azim"].tolist()):
        prompts.append(view_prompt(s.prompt, e, a))
    return torch.cat(imgs), prompts, [s.prompt for s in specs]


def save_teacher(out: Path, unet, config: TeacherTrainConfig, card: dict) -> None:
    from diffusers import DDPMScheduler

    out.mkdir(parents=True, exist_ok=True)
    unet.to(torch.float16).save_pretrained(out / "unet", safe_serialization=True)
    unet.to(torch.float32)
    DDPMScheduler(**scheduler_config()).save_pretrained(out / "scheduler")
    (out / "teacher.json").write_text(json.dumps({
        "text_encoder": TEXT_ENCODER, "max_length": MAX_TOKENS, "use_attention_mask": True,
        "default_cfg": config.default_cfg, "resolution": config.resolution,
        "vocabulary": {"template": "a {colour} {shape}", "shapes": list(SHAPES), "colours": list(COLOUR_NAMES),
                       "views": list(VIEW_SUFFIXES)},
        "world": "shapes-v1"}, indent=2) + "\n")
    (out / "training.json").write_text(json.dumps(card, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="dreamer/assets/shapes-teacher")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--stop-at", type=int, default=None,
                    help="stop after this many steps of the --steps schedule (checkpoints are saved every 250)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = TeacherTrainConfig()
    if args.steps:
        config.steps = args.steps
    from diffusers import DDPMScheduler, UNet2DConditionModel

    t_start = time.time()
    g = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    images, prompts, bare = build_dataset(config, g)
    print(f"dataset {tuple(images.shape)} in {time.time() - t_start:.0f}s", flush=True)
    enc = TextEncoder.load(TEXT_ENCODER, max_length=MAX_TOKENS, use_attention_mask=True)
    uniq = sorted(set(prompts) | set(bare))
    table = enc.encode(uniq + [""])  # [U+1, L, 384]; last row is the unconditional prompt
    index = {p: i for i, p in enumerate(uniq)}
    pid = torch.tensor([index[p] for p in prompts])       # "a red cube, side view"
    pid_bare = torch.tensor([index[p] for p in bare])     # "a red cube"
    del enc

    unet = UNet2DConditionModel(**unet_config(config.resolution))
    ema = copy.deepcopy(unet).requires_grad_(False)
    sched = DDPMScheduler(**scheduler_config())
    abar = sched.alphas_cumprod
    opt = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=0.0)
    lr_at = lambda s: (config.lr * min(1.0, (s + 1) / config.warmup)  # noqa: E731
                       * 0.5 * (1 + math.cos(math.pi * s / config.steps)))
    losses = []
    for step in range(min(config.steps, args.stop_at or config.steps)):
        idx = torch.randint(0, len(images), (config.batch_size,), generator=g)
        x0 = images[idx].float() / 127.5 - 1.0
        cond_id = torch.where(torch.rand(config.batch_size, generator=g) < config.bare_prompt, pid_bare[idx], pid[idx])
        cond_id = torch.where(torch.rand(config.batch_size, generator=g) < config.cfg_dropout, len(uniq), cond_id)
        t = torch.randint(0, 1000, (config.batch_size,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        pred = unet(add_noise(x0, eps, t, abar), t, table[cond_id]).sample
        loss = F.mse_loss(pred, prediction_target(sched.config.prediction_type, x0, eps, t, abar))
        for pg in opt.param_groups:
            pg["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema_update(ema, unet, min(config.ema_decay, (1 + step) / (10 + step)))  # EMA with warm-up
        losses.append(loss.item())
        if step % 50 == 0 or step == config.steps - 1:
            avg = sum(losses[-50:]) / len(losses[-50:])
            print(f"step {step} loss {avg:.4f} lr {lr_at(step):.2e} elapsed {time.time() - t_start:.0f}s", flush=True)
        if (step + 1) % 250 == 0 or step == config.steps - 1 or step + 1 == args.stop_at:
            card = {"command": f"python scripts/train_teacher.py --out {args.out} --steps {config.steps}"
                               + (f" --stop-at {args.stop_at}" if args.stop_at else ""),
                    "config": config.to_dict(), "steps_done": step + 1,
                    "final_loss_avg_last_100": sum(losses[-100:]) / len(losses[-100:]),
                    "wall_seconds": round(time.time() - t_start, 1), "threads": args.threads,
                    "loss_curve_every_50": [round(sum(losses[i:i + 50]) / len(losses[i:i + 50]), 5)
                                            for i in range(0, len(losses), 50)]}
            save_teacher(Path(args.out), ema, config, card)
    print(f"done in {time.time() - t_start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
