"""Where a text-to-3D step's time goes: teacher forward, render forward, backward and the rest, against the floor of
one batched-CFG teacher forward plus one render forward and backward (issue: per-step cost breakdown).

Used by scripts/bench_generate.py (`--cost-steps N`): a separate SceneRun of the recipe takes `warmup` untimed steps,
then N timed ones, with hooks that add up wall time (perf_counter; CPU, so no device sync) spent
  teacher_forward   inside the teacher UNet's forward (every call: CFG pairs, inversion) and inside the split-UNet
                    halves VSD's shared pass uses (guidance.unet_split encode / decode, the LoRA decoder too),
  render_forward    inside scene.render,
  backward          inside torch.autograd.backward (the render's and the encoder's backward, and an auxiliary
                    score's update where the method has one: the teacher itself runs without grad),
  rest              step time minus the three (sampling, guidance arithmetic, optimizer, densification).
The floor of one step is measured apart, on the same scene and cameras' size: one bare teacher CFG forward of the
batch (2B images) plus one render forward and backward. ratio_to_floor = step time / floor.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import torch

import guidance.aux_scores as aux_scores
import renderers as R
from dreamer.text_to_3d.loop import SceneRun


class _Clock:
    """Accumulated seconds and calls per part."""

    def __init__(self):
        self.s: dict[str, float] = {}
        self.n: dict[str, int] = {}

    @contextmanager
    def part(self, name: str, count: int = 1):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.s[name] = self.s.get(name, 0.0) + time.perf_counter() - t0
            self.n[name] = self.n.get(name, 0) + count


def _timed(clock: _Clock, name: str, fn, count=lambda *a, **k: 1):
    def wrapper(*a, **k):
        with clock.part(name, count(*a, **k)):
            return fn(*a, **k)
    return wrapper


def _floor(run: SceneRun, repeats: int) -> float:
    """Median seconds of one bare CFG teacher forward (2B images) + one render forward and backward."""
    c = run.config.camera
    g = torch.Generator().manual_seed(0)
    cams = R.sample_orbit_cameras(c.batch, c.elev_range, c.azim_range, c.dist_range, c.fov_range, c.resolution,
                                  c.resolution, g, device=run.config.device)
    unet, size = run.teacher.unet, run.teacher.unet.config.sample_size
    x = torch.randn(2 * c.batch, unet.config.in_channels, size, size, generator=g)
    emb = torch.cat([run.teacher.encode_prompt([run.config.prompt]), run.uncond]).repeat_interleave(c.batch, 0)
    t = torch.full((2 * c.batch,), 500, dtype=torch.long)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            unet(x, t, encoder_hidden_states=emb)
        out = run.scene.render(cams, run.step_i, g)
        (out["rgb"].sum() + out["alpha"].sum()).backward()
        for o in run.scene.optimizers:
            o.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def step_cost(config, steps: int = 20, warmup: int = 5) -> dict:
    """The breakdown of `steps` loop steps of recipe `config` (after `warmup` untimed ones): seconds per step of each
    part, teacher UNet images per step, the floor and the ratio to it."""
    run = SceneRun(config)
    for _ in range(warmup):
        run.step()
    clock = _Clock()
    unet = run.teacher.unet
    unet_forward, render, autograd_backward = unet.forward, run.scene.render, torch.autograd.backward
    encode, decode = aux_scores.encode, aux_scores.decode
    unet.forward = _timed(clock, "teacher_forward", unet_forward,
                          lambda *a, **k: int((a[0] if a else k["sample"]).shape[0]))
    aux_scores.encode = _timed(clock, "teacher_forward", encode, lambda u, x, *a, **k: int(x.shape[0]))
    aux_scores.decode = _timed(clock, "teacher_decoder", decode,
                               lambda u, *a, **k: 0 if u is unet else int(a[0].emb.shape[0]))
    run.scene.render = _timed(clock, "render_forward", render)
    torch.autograd.backward = _timed(clock, "backward", autograd_backward)
    try:
        t0 = time.perf_counter()
        for _ in range(steps):
            run.step()
        total = time.perf_counter() - t0
    finally:
        unet.forward, torch.autograd.backward = unet_forward, autograd_backward
        aux_scores.encode, aux_scores.decode = encode, decode
        del run.scene.render
    clock.s["teacher_forward"] = clock.s.get("teacher_forward", 0.0) + clock.s.pop("teacher_decoder", 0.0)
    parts = {k: clock.s.get(k, 0.0) / steps for k in ("teacher_forward", "render_forward", "backward")}
    step_s = total / steps
    floor = _floor(run, repeats=max(3, min(steps, 11)))
    return {"steps_timed": steps, "warmup_steps": warmup, "batch": config.camera.batch, "step_s": step_s,
            **{f"{k}_s": v for k, v in parts.items()}, "rest_s": step_s - sum(parts.values()),
            "teacher_images_per_step": clock.n.get("teacher_forward", 0) / steps,     # full passes (encoder + decoder)
            "lora_decoder_images_per_step": clock.n.get("teacher_decoder", 0) / steps,  # VSD's LoRA decoder half
            "floor_s": floor,
            "floor": "one bare CFG teacher forward (2 x batch images) + one render forward and backward",
            "ratio_to_floor": step_s / floor}
