"""The text-to-3D loop: random cameras -> render -> teacher space -> shared guidance step -> optimizer steps."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

import renderers as R
from guidance import LoraScore, Prompts, optimizer_params, score_distillation_step
from guidance.step import needs_aux, needs_negative

from ..common.checkpoints import load_checkpoint
from ..common.config import dump_yaml
from ..common.errors import NumericalFault
from ..common.run_folder import CHECKPOINT, RunFolder, StepGuard, resume_checkpoint
from ..common.teacher_source import load_teacher, teacher_world
from ..common.view_prompts import VIEW_SUFFIXES, perp_neg_embeddings, view_prompt, warn_if_truncated
from ..common.world import shading_of
from .lighting import ambient_of, draw_shading
from .recipe import RESUME_FREE_KEYS, GenerateConfig, validate_generate
from .scenes import SCENES

CKPT = CHECKPOINT
CKPT_KEYS = ("step", "gen", "scene", "history")  # "gen": the run's RNG state (key kept for old checkpoints)


def regularisers(config: GenerateConfig, out: dict) -> dict[str, torch.Tensor]:
    """Weighted regulariser terms for this render (only the non-zero ones)."""
    r, terms = config.reg, {}
    if r.opacity_entropy > 0:
        terms["opacity_entropy"] = r.opacity_entropy * R.opacity_entropy(out["alpha"])
    if r.orientation > 0 and out.get("normals") is not None:
        terms["orientation"] = r.orientation * R.orientation_loss(out["weights"], out["normals"], out["dirs"])
    if r.scale > 0 and "scales" in out:
        terms["scale"] = r.scale * R.gaussian_scale_reg(out["scales"], r.scale_max)
    return terms


class SceneRun:
    """Everything a generate run owns; `step()` advances it by one iteration (state passed explicitly). world: the
    teacher's World (dreamer.common.world; default: the one config.teacher's teacher.json names, if any), for the
    training renders' shading and the ground truth of export_run. out_dir: the run folder (checkpoint, timing; None:
    a run in memory); `folder` (dreamer.common.run_folder.RunFolder) holds its clock and the guarded step's record."""

    def __init__(self, config: GenerateConfig, teacher=None, world=None, out_dir: str | Path | None = None):
        self.config = validate_generate(config)
        self.world = world if world is not None else teacher_world(config.teacher)
        torch.manual_seed(config.train.seed)  # library initialisers (peft LoRA, hash grid) draw from the global RNG
        self.rng = torch.Generator().manual_seed(config.train.seed)
        self.teacher = teacher or load_teacher(config.teacher, dtype=config.teacher_dtype, device=config.device)
        self.scene = SCENES[config.renderer](getattr(config, config.renderer), self.rng, config.device)
        g = config.guidance
        self.aux = (LoraScore(self.teacher, g.aux_rank, g.aux_lr, g.camera_dropout, loss_space=g.aux_target,
                              max_grad_norm=g.aux_max_grad_norm)
                    if needs_aux(g) else None)
        self.uncond = self.teacher.encode_prompt([""])
        base = self.aux is not None and g.aux_prompt == "base" and config.camera.view_prompts
        self.aux_cond = self.teacher.encode_prompt([config.prompt]) if base else None  # [1,L,D] LoRA's text
        self.negative = self.teacher.encode_prompt([g.negative_prompt]) if needs_negative(g) else None
        self.base_lrs = [[pg["lr"] for pg in o.param_groups] for o in self.scene.optimizers]
        self.step_i = 0
        self.history: dict[str, list[float]] = {"loss": []}
        guard = StepGuard(limit=config.train.max_bad_steps, what="step", kept=lambda: _kept(self.folder.out))
        self.folder = RunFolder(out_dir, guard)

    @property
    def bad(self) -> StepGuard:
        """Steps whose loss or gradient was non-finite (no update applied)."""
        return self.folder.bad

    @property
    def seconds_this_sitting(self) -> float:
        return self.folder.seconds_this_sitting

    @property
    def train_seconds(self) -> float:
        """Training time over every sitting of this run (up to now)."""
        return self.folder.train_seconds

    def prompt_texts(self) -> list[str]:
        """Every text this run will encode (the prompt with each reachable view suffix)."""
        if self.config.guidance.cfg_mode == "perp_neg":
            return [f"{self.config.prompt}, {s}" for s in ("front view", "side view", "back view")]
        if not self.config.camera.view_prompts:
            return [self.config.prompt]
        overhead = self.config.camera.elev_range[1] > 60.0
        return [f"{self.config.prompt}, {s}" for s in VIEW_SUFFIXES if overhead or s != "overhead view"]

    def prompts_for(self, cams: R.Cameras) -> Prompts:
        B = len(cams)
        c = self.config
        texts = [view_prompt(c.prompt, float(e), float(a)) if c.camera.view_prompts else c.prompt
                 for e, a in zip(cams.elevation, cams.azimuth)]
        neg = None if self.negative is None else self.negative.expand(B, -1, -1)
        aux = None if self.aux_cond is None else self.aux_cond.expand(B, -1, -1)
        g = self.config.guidance
        if g.cfg_mode == "perp_neg":         # the positive: interpolated view prompts, plus the weighted negative views
            cond, views, weights = perp_neg_embeddings(self.teacher.encode_prompt, self.config.prompt,
                                                       cams.azimuth.tolist(), g.perp_neg_weight,
                                                       g.perp_neg_front_decay, g.perp_neg_side_decay)
            return Prompts(cond, self.uncond.expand(B, -1, -1), neg, aux, views, weights)
        return Prompts(self.teacher.encode_prompt(texts), self.uncond.expand(B, -1, -1), neg, aux)

    def to_teacher(self, rgb: torch.Tensor) -> torch.Tensor:
        """Render rgb [B,3,H,W] -> teacher model space at the teacher's resolution."""
        size = self.teacher.unet.config.sample_size * self.teacher.vae_scale_factor
        if rgb.shape[-1] != size:
            rgb = F.interpolate(rgb, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return self.teacher.encode(rgb)

    def step(self) -> dict:
        c, i = self.config, self.step_i
        cam = c.camera
        cams = R.sample_orbit_cameras(cam.batch, cam.elev_range, cam.azim_range, cam.dist_range, cam.fov_range,
                                      cam.resolution, cam.resolution, self.rng, device=c.device)
        shading = shading_of(self.world)
        mode, light = draw_shading(c.shading, i, cams, self.rng, shading)
        out = self.scene.render(cams, i, self.rng, shading=mode, light=light, ambient=ambient_of(c.shading, shading))
        aux_kw = {"camera": R.camera_vector(cams)} if self.aux is not None else {}
        gcfg = replace(c.guidance, cfg_scale=c.guidance.cfg_scale * c.train.cfg_mult(i))
        with torch.autocast(torch.device(c.device).type, torch.bfloat16, enabled=c.mixed_precision == "bf16"):
            x0 = self.to_teacher(out["rgb"]).float()                   # noise and t drawn as in fp32
            g = score_distillation_step(self.teacher, x0, self.prompts_for(cams), gcfg, self.rng,
                                        t_max=c.train.t_max(i), aux=self.aux, **aux_kw)
        regs = regularisers(c, out)
        loss = g.loss + sum(regs.values())
        scale = c.train.lr_scale(i)
        for opt, base in zip(self.scene.optimizers, self.base_lrs):
            for pg, lr in zip(opt.param_groups, base):
                pg["lr"] = lr * scale
        if self.bad.step(i, loss, self.scene.optimizers, guidance=g, shown=i + 1) is None:
            self.step_i += 1            # no optimizer update, no densification
            return {"loss": loss.item(), "skipped": True}
        stats = self.scene.post_step(i, cams, self.rng)
        rec = {"loss": loss.item(), "guidance": g.loss.item(), **{k: v.item() for k, v in regs.items()}}
        for k, v in rec.items():
            self.history.setdefault(k, []).append(v)
        self.step_i += 1
        self.last_rgb = out["rgb"].detach()
        return {**rec, **stats}

    def params_finite(self) -> bool:
        """All scene parameters are finite (a checkpoint is only written from such a state)."""
        return all(bool(torch.isfinite(p).all()) for p in optimizer_params(self.scene.optimizers))

    def state_dict(self) -> dict:
        clock = self.folder.timing()
        sd = {"step": self.step_i, "gen": self.rng.get_state(), "scene": self.scene.state_dict(),
              "history": self.history, "skipped": list(self.bad.skipped), "bad_streak": self.bad.streak,
              "train_seconds": clock["train_seconds"], "sittings": clock["sittings"]}
        if self.aux is not None:
            sd["aux"] = {"lora": {n: p.detach().clone() for n, p in self.aux.unet.named_parameters()
                                  if "lora_" in n},
                         "camera": self.aux.camera.state_dict(), "opt": self.aux.opt.state_dict()}
        return sd

    def load_state_dict(self, sd: dict) -> None:
        self.step_i, self.history = sd["step"], sd["history"]
        self.bad.restore(sd.get("skipped", []), sd.get("bad_streak", 0))
        self.folder.continue_clock(sd.get("train_seconds", 0.0), sd.get("sittings", 1))
        self.rng.set_state(sd["gen"])
        self.scene.load_state_dict(sd["scene"])
        self.base_lrs = [[pg["lr"] for pg in o.param_groups] for o in self.scene.optimizers]
        if self.aux is not None:
            params = dict(self.aux.unet.named_parameters())
            with torch.no_grad():
                for n, v in sd["aux"]["lora"].items():
                    params[n].copy_(v)
            self.aux.camera.load_state_dict(sd["aux"]["camera"])
            self.aux.opt.load_state_dict(sd["aux"]["opt"])

    def save(self, out_dir: str | Path | None = None) -> None:
        """Atomic checkpoint in the run folder (default: the one SceneRun was given); refuses to write a non-finite
        state over a good one."""
        if not self.params_finite():
            raise NumericalFault(f"step {self.step_i}: parameters are non-finite; kept the last good checkpoint")
        if out_dir is not None:
            self.folder.out = Path(out_dir)
        self.folder.save_checkpoint(self.state_dict())


def _kept(out_dir: Path | None) -> str:
    """What a stopped run keeps: the last good checkpoint (and its step), or nothing yet."""
    ck = None if out_dir is None else out_dir / CKPT
    return (f"the last good checkpoint {ck} (step {load_checkpoint(ck)['step']}) is kept; continue with --resume "
            f"after lowering the learning rates or guidance.cfg_scale" if ck is not None and ck.is_file()
            else "no checkpoint had been written yet; lower the learning rates or guidance.cfg_scale")


def generate(config: GenerateConfig, out_dir: str | Path, resume: bool = False, progress: bool = True,
             teacher=None, stop_after: int | None = None, world=None) -> SceneRun:
    """Run the loop into out_dir (previews, checkpoint, resolved config); exporting is text_to_3d.outputs.export_run.
    world: the teacher's World (default: config.teacher's, SceneRun)."""
    from ..common.media import image_grid, save_png
    from ..common.progress import bar as progress_bar

    out_dir = Path(out_dir)
    validate_generate(config)
    # before the (slow) teacher load: fail fast (the config must match up to RESUME_FREE_KEYS; a null ambient is the
    # world's, so a folder that wrote the world's value out resumes)
    sd = None
    if resume:
        world = world if world is not None else teacher_world(config.teacher)
        nulls = {"shading.ambient": shading_of(world).ambient}
        sd = resume_checkpoint(out_dir, config, RESUME_FREE_KEYS, CKPT_KEYS, missing_ok=True, nulls=nulls)
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    run = SceneRun(config, teacher, world, out_dir)
    warn_if_truncated(run.teacher, run.prompt_texts())
    if sd is not None:
        run.load_state_dict(sd)
        if "train_seconds" not in sd and (out_dir / "timing.json").is_file():  # checkpoints from before the field
            run.folder.seconds_before = float(json.loads((out_dir / "timing.json").read_text())
                                              .get("train_seconds", 0.0))
    out_dir.mkdir(parents=True, exist_ok=True)
    dump_yaml(config, out_dir / "config.yaml.tmp").replace(out_dir / "config.yaml")  # on resume: same up to free keys
    run.folder.start_sitting()
    last = config.train.steps if stop_after is None else min(config.train.steps, stop_after)
    bar = progress_bar(range(run.step_i, last), desc="generate", total=config.train.steps, unit="step",
                       initial=run.step_i, disable=not progress)
    for i in bar:
        rec = run.step()                 # a skipped step warns (run.bad); max_bad_steps in a row stop the run
        if rec.get("skipped"):
            continue
        bar.set_postfix(loss=f"{rec['loss']:.4f}", n=rec.get("n", ""), skipped=len(run.bad.skipped))
        if config.train.preview_every and (i + 1) % config.train.preview_every == 0:
            save_png(image_grid(run.last_rgb.clamp(0, 1), nrow=run.last_rgb.shape[0]),
                     out_dir / f"preview_{i + 1:05d}.png")
        if config.train.checkpoint_every and (i + 1) % config.train.checkpoint_every == 0:
            run.save()
    run.save()
    clock = run.folder.timing()
    timing = {"train_seconds": round(clock["train_seconds"], 2),
              "seconds_this_sitting": round(clock["seconds_this_sitting"], 2), "sittings": clock["sittings"],
              "steps": run.step_i, "skipped_steps": len(run.bad.skipped)}
    (out_dir / "timing.json").write_text(json.dumps(timing))
    return run
