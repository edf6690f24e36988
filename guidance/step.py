"""The one guidance step shared by the 3D loop and the generator-distillation loop.

Every method is `grad = w(t) * (eps_teacher_cfg - eps_baseline)`; only the baseline, the noise (and w) differ:
SDS: the sampled noise; NFSD: 0 / eps(x_t; y_neg); CSD: eps(x_t; null); ISM: eps(x_s; null) with x_s, x_t from DDIM
inversion; SDI: the noise that DDIM inversion of x0 finds; VSD: a LoRA score of the renders; DMD / Diff-Instruct: a
full "fake" score of the generator's samples. eps_teacher_cfg is standard CFG or Perp-Neg (cfg_mode) for all of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args, get_origin, get_type_hints

import torch

from .inversion import ddim_invert, ddim_move, ism_interval, ism_path, sdi_path
from .losses import cfg_combine, perp_neg_combine, score_distillation_grad, target_loss
from .noise_schedule import (Weighting, add_noise, alpha_sigma, inv_snr, sample_timesteps, sample_timesteps_lognormal,
                             weighting, x0_from_eps)
from .shard import randn_rows, rows

NEGATIVE_PROMPT = ("unrealistic, blurry, low quality, out of focus, ugly, low contrast, dull, dark, "
                   "low-resolution, gloomy")
# The guidance methods (the keys of METHODS, in its order; tests/guidance/test_step.py checks they agree).
Method = Literal["sds", "nfsd", "csd", "ism", "sdi", "vsd", "dmd", "diff_instruct"]
CfgMode = Literal["standard", "perp_neg"]
TSampling = Literal["uniform", "lognormal", "anneal"]
AuxCfg = Literal["text", "camera"]
AuxTarget = Literal["eps", "native"]
AuxPrompt = Literal["view", "base"]


@dataclass
class GuidanceConfig:
    """Settings of a guidance loss (defaults per method in configs/)."""

    method: Method = "sds"         # sds | nfsd | csd | ism | sdi | vsd | dmd | diff_instruct
    cfg_scale: float | None = 100.0  # diffusers convention; see guidance.teachers. None (distillation): the teacher's
    #                                default (resolved before the step)
    cfg_mode: CfgMode = "standard"  # standard: eps_u + s (eps_c - eps_u)
    #                                | perp_neg: Prompts.views' perpendicular part
    weighting: Weighting = "sds"   # sds | uniform | snr_inv ; dmd uses its own normaliser
    t_min: float = 0.02            # t ~ U{t_min T, ..., t_max T}, both ends inclusive (sample_timesteps)
    t_max: float = 0.98
    t_sampling: TSampling = "uniform"  # uniform | lognormal (EDM's ln sigma ~ N(mean, std^2), official Diff-Instruct)
    #                                | anneal: t = the step's t_max for every row (SDI: t_max ramps 0.98 -> 0.2)
    t_lognormal: tuple[float, float] = (-1.2, 1.2)   # (mean, std) of ln sigma for t_sampling = lognormal
    grad_clip: float = 0.0         # 0 = off; elementwise clamp of grad
    negative_prompt: str = NEGATIVE_PROMPT
    nfsd_t_switch: int = 200       # NFSD: delta_D = eps(x_t; null) below it, eps(null) - eps(neg) above
    csd_negative_scale: float = 0.0  # CSD: w2 of - w2 (eps(x_t; y_neg) - eps(x_t; null)); 0 = off (no extra pass)
    ism_delta_t: int = 80          # ISM interval delta_T = t - s once annealed (LucidDreamer code: delta_t)
    ism_delta_t_start: int = 100   # delta_T at the start (delta_t_start), annealed with t_max (inversion.ism_interval)
    ism_anneal_t_max: float = 0.5  # t_max at which delta_T reaches ism_delta_t (LucidDreamer: t_range[1] = 0.5)
    ism_inv_step: int = 200        # x0 -> x_s: DDIM inversion steps of this size (xs_delta_t) ...
    ism_inv_steps: int = 5         # ... at most this many (xs_inv_steps), unconditional (inverse_text "")
    sdi_inversion_cfg: float = -1.0  # SDI: inversion CFG as a multiple of cfg_scale (authors: -7.5 with 7.5)
    sdi_inv_steps: int = 10        # SDI: DDIM inversion grid (inversion_n_steps)
    sdi_eta: float = 0.3           # SDI: eta * DDIM sigma of fresh noise per inversion step (inversion_eta)
    perp_neg_weight: float = 2.0   # Perp-Neg view negatives (dreamer.common.view_prompts.perp_neg_views): |negative_w|,
    perp_neg_front_decay: float = 2.0  # front_decay_factor and
    perp_neg_side_decay: float = 10.0  # side_decay_factor of the authors' Stable-DreamFusion integration
    aux_cfg_scale: float = 1.0     # CFG on the auxiliary (LoRA / fake) score
    aux_cfg: AuxCfg = "text"       # text: eps_u + s (eps_c - eps_u) over prompts (DMD2's fake CFG); camera: over
    #                                the camera condition, same text (threestudio's guidance_scale_lora)
    aux_target: AuxTarget = "eps"  # the auxiliary's denoising loss: eps-space MSE, or native = the teacher's own
    #                                output space (v-prediction: ||v - v_hat||^2 = ||eps - eps_hat||^2 / abar, threestudio)
    aux_lr: float = 1e-4
    aux_rank: int = 4              # LoRA rank (VSD); distillation: 0 = the fake score is a full copy of the teacher
    aux_max_grad_norm: float = 1.0  # gradient-norm clip of each auxiliary update; 0 = off
    aux_updates: int = 1           # auxiliary updates per guidance step (DMD2 TTUR uses 5-10)
    camera_dropout: float = 0.1    # VSD: drop the camera condition with this probability
    aux_prompt: AuxPrompt = "view"  # VSD: the LoRA's text: view (the view-suffixed prompt, shares the guidance
    #                                pass)
    #                                | base (the view-independent prompt, as threestudio; one LoRA pass more)
    aux_shared_pass: bool = True   # fit the auxiliary on the guidance pass's own (x_t, t, noise): one pass fewer
    #                                (VSD's LoRA decoder also reuses that pass's teacher encoder output)


@dataclass
class Prompts:
    """Prompt embeddings for a batch: cond / uncond [B,L,D], negative [B,L,D] or None."""

    cond: torch.Tensor
    uncond: torch.Tensor
    negative: torch.Tensor | None = None
    aux: torch.Tensor | None = None   # [B,L,D] the auxiliary's condition when it differs from cond (VSD's LoRA
    #                                   on the view-independent prompt, as threestudio); None: cond
    views: torch.Tensor | None = None         # [B,K,L,D] Perp-Neg's negative view prompts (cond: the positive one)
    view_weights: torch.Tensor | None = None  # [B,K] >= 0, their weights


@dataclass
class GuidanceOutput:
    loss: torch.Tensor        # scalar; d loss / d x0 = grad / B
    grad: torch.Tensor        # [B,C,h,w]
    x_t: torch.Tensor
    eps_cfg: torch.Tensor
    eps_baseline: torch.Tensor
    w: torch.Tensor           # [B]
    aux_loss: torch.Tensor | None = None  # denoising loss of the auxiliary on (x_t, t, noise), with its graph


def teacher_cfg(teacher, x_t, t, prompts: Prompts, scale: float, extra_negative: bool = False,
                mode: str = "standard", need_uncond: bool = False, **kw):
    """One batched teacher pass: eps_cfg (standard CFG or Perp-Neg), and (eps_u, eps(x_t; negative) or None) when
    computed (NFSD / CSD ask for them; None with CFG 1 and nothing else asked)."""
    conds = [prompts.cond, prompts.uncond] + ([prompts.negative] if extra_negative else [])
    perp = mode == "perp_neg"
    if perp:
        if prompts.views is None or prompts.view_weights is None:
            raise ValueError("cfg_mode perp_neg needs the negative view prompts (Prompts.views, view_weights)")
        conds += list(prompts.views.unbind(1))                     # K x [B,L,D]
    if scale == 1.0 and len(conds) == 2 and not need_uncond:
        return teacher.eps(x_t, t, prompts.cond, **kw), None
    n = len(conds)
    kw = {k: v.repeat(n, *[1] * (v.dim() - 1)) if torch.is_tensor(v) else v for k, v in kw.items()}
    eps = teacher.eps(x_t.repeat(n, *[1] * (x_t.dim() - 1)), t.repeat(n), torch.cat(conds), **kw).chunk(n)
    k0 = 3 if extra_negative else 2
    eps_cfg = (perp_neg_combine(eps[1], eps[0], list(eps[k0:]), prompts.view_weights, scale) if perp
               else cfg_combine(eps[1], eps[0], scale))
    return eps_cfg, (eps[1], eps[2] if extra_negative else None)


class Parts(NamedTuple):
    """What a METHODS entry returns: the two eps of the one gradient, and what it changed."""

    eps_cfg: torch.Tensor
    eps_baseline: torch.Tensor
    aux_loss: torch.Tensor | None = None
    x_t: torch.Tensor | None = None      # the x_t it used, when not a_t x0 + s_t noise (ISM, SDI)


def _sds(teacher, aux, x0, x_t, t, noise, prompts, config, aux_kw, aux_fit, ctx):
    return Parts(teacher_cfg(teacher, x_t, t, prompts, config.cfg_scale, mode=config.cfg_mode)[0], noise)


def _nfsd(teacher, aux, x0, x_t, t, noise, prompts, config, aux_kw, aux_fit, ctx):
    """Katzir et al. 2024 eq. 8: delta_D + s delta_C = eps_cfg - baseline, baseline = [t >= switch] eps(x_t; y_neg)."""
    if prompts.negative is None:
        raise ValueError("NFSD needs a negative prompt embedding (Prompts.negative)")
    eps_cfg, (eps_u, eps_neg) = teacher_cfg(teacher, x_t, t, prompts, config.cfg_scale, extra_negative=True,
                                            mode=config.cfg_mode)
    far = (t >= config.nfsd_t_switch).view(-1, *[1] * (x_t.dim() - 1))
    return Parts(eps_cfg, torch.where(far, eps_neg, torch.zeros_like(eps_neg)))


def _csd(teacher, aux, x0, x_t, t, noise, prompts, config, aux_kw, aux_fit, ctx):
    """Yu et al. 2024 (CSD): the classifier score only, w [s (eps(y) - eps(null)) - w2 (eps(y_neg) - eps(null))];
    baseline eps(x_t; null), the w2 term (csd_negative_scale) inside eps_cfg."""
    neg = config.csd_negative_scale > 0
    if neg and prompts.negative is None:
        raise ValueError("CSD with csd_negative_scale > 0 needs a negative prompt embedding (Prompts.negative)")
    eps_cfg, (eps_u, eps_neg) = teacher_cfg(teacher, x_t, t, prompts, config.cfg_scale, extra_negative=neg,
                                            mode=config.cfg_mode, need_uncond=True)
    if neg:
        eps_cfg = eps_cfg - config.csd_negative_scale * (eps_neg - eps_u)
    return Parts(eps_cfg, eps_u)


def _ism(teacher, aux, x0, x_t, t, noise, prompts, config, aux_kw, aux_fit, ctx):
    """Interval score matching (Liang et al. 2024, LucidDreamer): grad = w (eps_cfg(x_t, y, t) - eps(x_s, null, s)),
    s = t - delta_T, x0 -> x_s -> x_t by unconditional DDIM inversion (x0 fresh-noised to the path's start)."""
    ac, uncond = teacher.alphas_cumprod, prompts.uncond
    s = (t - ism_interval(config.ism_delta_t_start, config.ism_delta_t, ctx["t_max"], config.t_max,
                          config.ism_anneal_t_max)).clamp(min=0)
    path = ism_path(s, config.ism_inv_step, config.ism_inv_steps)
    x_s = ddim_invert(lambda x, tt: teacher.eps(x, tt, uncond), add_noise(x0, noise, path[0], ac), path, ac)
    eps_s = teacher.eps(x_s, s, uncond)
    x_t = ddim_move(x_s, eps_s, s, t, ac)
    return Parts(teacher_cfg(teacher, x_t, t, prompts, config.cfg_scale, mode=config.cfg_mode)[0], eps_s, x_t=x_t)


def _sdi(teacher, aux, x0, x_t, t, noise, prompts, config, aux_kw, aux_fit, ctx):
    """Score distillation via inversion (Lukoianov et al. 2024): SDS with its noise replaced by kappa = (x_t - a_t x0)
    / s_t, x_t from DDIM inversion of x0 to t at CFG sdi_inversion_cfg * s (+ eta noise); w (eps_cfg(x_t) - kappa)."""
    ac, inv_scale = teacher.alphas_cumprod, config.sdi_inversion_cfg * config.cfg_scale
    x_t = ddim_invert(lambda x, tt: teacher_cfg(teacher, x, tt, prompts, inv_scale, mode=config.cfg_mode)[0], x0,
                      sdi_path(t, config.sdi_inv_steps, len(ac)), ac, config.sdi_eta, ctx["generator"])
    a, s_t = alpha_sigma(t, ac, x0)
    kappa = (x_t - a * x0) / s_t
    return Parts(teacher_cfg(teacher, x_t, t, prompts, config.cfg_scale, mode=config.cfg_mode)[0], kappa, x_t=x_t)


def _auxiliary(teacher, aux, x0, x_t, t, noise, prompts, config, aux_kw, aux_fit, ctx):
    """VSD (Wang et al. 2023, eq. 9) and DMD / Diff-Instruct: the baseline is a learned score of the particles.

    aux_fit: the same conditional pass also gives the auxiliary's denoising loss (aux.denoise_loss: eps-space or the
    teacher's native space; x_t = a x0 + s noise with x0 detached, Ho et al. 2020 eq. 14 at this step's t), graph kept.
    """
    if aux is None:
        raise ValueError(f"method {config.method!r} needs an auxiliary score model")
    if (aux_fit and config.cfg_mode == "standard" and getattr(aux, "teacher", None) is teacher
            and hasattr(aux, "teacher_cfg")):
        # VSD's LoRA adapts the decoder only: the teacher pass's conditional encoder output is the LoRA's too
        eps_cfg, encoded = aux.teacher_cfg(x_t, t, prompts.cond, prompts.uncond, config.cfg_scale)
        aux_kw = {**aux_kw, "encoded": encoded}
    else:
        eps_cfg, _ = teacher_cfg(teacher, x_t, t, prompts, config.cfg_scale, mode=config.cfg_mode)
    cond = prompts.cond if prompts.aux is None else prompts.aux
    if not aux_fit:
        return Parts(eps_cfg, aux_baseline(aux, x_t, t, cond, prompts.uncond, config, aux_kw))
    with torch.enable_grad():
        eps_aux = aux.eps(x_t, t, cond, **aux_kw)
        loss = aux_denoise_loss(aux, eps_aux, noise, t)
    return Parts(eps_cfg, eps_aux.detach(), loss)


def aux_baseline(aux, x_t, t, cond, uncond, config: GuidanceConfig, aux_kw: dict) -> torch.Tensor:
    """The auxiliary's eps with CFG: over the text (cond vs uncond) or, config.aux_cfg = camera, over the camera
    condition (camera vs dropped; same text), threestudio's eps_u + s (eps_cam - eps_u)."""
    if config.aux_cfg == "camera" and config.aux_cfg_scale != 1.0 and aux_kw.get("camera") is not None:
        e_cam = aux.eps(x_t, t, cond, **aux_kw)
        e_u = aux.eps(x_t, t, cond, **{**aux_kw, "camera": None})
        return cfg_combine(e_u, e_cam, config.aux_cfg_scale)
    return teacher_cfg(aux, x_t, t, Prompts(cond, uncond), config.aux_cfg_scale, **aux_kw)[0]


def aux_denoise_loss(aux, eps_aux: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The auxiliary's own denoising loss (its `denoise_loss`, else eps-space MSE), computed in float32."""
    dt = torch.promote_types(eps_aux.dtype, torch.float32)  # half-precision passes: loss in fp32
    if hasattr(aux, "denoise_loss"):
        return aux.denoise_loss(eps_aux.to(dt), noise.to(dt), t)
    return (eps_aux.to(dt) - noise.to(dt)).pow(2).mean()


METHODS = {"sds": _sds, "nfsd": _nfsd, "csd": _csd, "ism": _ism, "sdi": _sdi, "vsd": _auxiliary,
           "dmd": _auxiliary, "diff_instruct": _auxiliary}
# The choice fields of GuidanceConfig other than method (their Literal annotations): name -> allowed values.
CHOICES = {k: get_args(tp) for k, tp in get_type_hints(GuidanceConfig).items()
           if get_origin(tp) is Literal and k != "method"}
# The methods that read Prompts.negative (given the config); the auxiliary methods are METHODS' _auxiliary entries.
NEGATIVE = {"nfsd": lambda config: True, "csd": lambda config: config.csd_negative_scale > 0}


def needs_aux(config: GuidanceConfig) -> bool:
    """config's method takes its baseline from an auxiliary score of the samples (`aux`: VSD's LoRA, DMD's fake
    score)."""
    return METHODS.get(config.method) is _auxiliary


def needs_negative(config: GuidanceConfig) -> bool:
    """config's method reads a negative prompt embedding (Prompts.negative: NFSD, CSD with csd_negative_scale > 0)."""
    return NEGATIVE.get(config.method, lambda c: False)(config)


def method_weight(config: GuidanceConfig, alphas_cumprod, x0, x_t, t, eps_cfg) -> torch.Tensor:
    """w(t) [B]; DMD normalises by mean_CHW |x0 - x0_hat_real| (Yin et al. 2024, eq. 8), i.e. w = (s/a) / that."""
    if config.method != "dmd":
        return weighting(config.weighting, alphas_cumprod, t).to(x0)
    abar = alphas_cumprod.to(x0.device)[t].to(x0)
    norm = (x0 - x0_from_eps(x_t, eps_cfg, t, alphas_cumprod)).abs().flatten(1).mean(1).clamp(min=1e-6)
    return inv_snr(abar).sqrt() / norm


def check_config(config: GuidanceConfig) -> None:
    """A ValueError naming the setting when a name is not one the step knows."""
    if config.method not in METHODS:
        raise ValueError(f"unknown guidance method {config.method!r} (choose from {', '.join(METHODS)})")
    for k, ok in CHOICES.items():
        if getattr(config, k) not in ok:
            raise ValueError(f"guidance {k} must be one of {', '.join(ok)}, got {getattr(config, k)!r}")


def guidance_step(teacher, x0: torch.Tensor, prompts: Prompts, t: torch.Tensor, noise: torch.Tensor,
                  config: GuidanceConfig, aux=None, aux_fit: bool = False, generator: torch.Generator | None = None,
                  t_max: float | None = None, **aux_kw) -> GuidanceOutput:
    """Score-distillation loss on model-space samples x0 [B,C,h,w] at timesteps t [B] with noise [B,C,h,w].

    aux_fit (auxiliary methods, aux CFG 1): also return the auxiliary's denoising loss from the baseline pass.
    generator: SDI's inversion noise; t_max: this step's upper t (default config.t_max), ISM anneals delta_T with it.
    """
    check_config(config)
    ctx = {"generator": generator, "t_max": config.t_max if t_max is None else t_max}
    with torch.no_grad():
        x_t = add_noise(x0.detach(), noise, t, teacher.alphas_cumprod)
        parts = METHODS[config.method](teacher, aux, x0.detach(), x_t, t, noise, prompts, config, aux_kw, aux_fit, ctx)
        x_t = x_t if parts.x_t is None else parts.x_t
        w = method_weight(config, teacher.alphas_cumprod, x0.detach(), x_t, t, parts.eps_cfg)
        grad = score_distillation_grad(w, parts.eps_cfg, parts.eps_baseline, config.grad_clip)
    return GuidanceOutput(target_loss(x0, grad), grad, x_t, parts.eps_cfg, parts.eps_baseline, w, parts.aux_loss)


def score_distillation_step(teacher, x0: torch.Tensor, prompts: Prompts, config: GuidanceConfig,
                            generator: torch.Generator | None = None, t_max: float | None = None, aux=None,
                            aux_x0: torch.Tensor | None = None, **aux_kw) -> GuidanceOutput:
    """The step both loops call (3D scenes and generators): sample t and noise, guidance_step, then update aux.

    The auxiliary score (VSD LoRA / DMD fake score) takes `config.aux_updates` denoising steps on the detached
    particles `aux_x0` (default: x0), all on this one batch (ProlificDreamer: 1 step; DMD2's TTUR 5-10 steps draw a
    fresh generator batch each, which dreamer's distillation does outside this function: aux_fresh_batches).
    t ~ U{t_min T, ..., t_max T} (both ends inclusive), EDM's log-normal sigma (t_sampling lognormal) or t_max T for
    every row (anneal; t_max: this step's, e.g. the loop's ramp). With
    `config.aux_shared_pass` the first of them reuses the baseline's own pass (same x_t, t, noise) instead of a
    fresh draw; a step whose camera condition is dropped (VSD) takes the separate, camera-free update instead.
    """
    check_config(config)
    B, hi = x0.shape[0], config.t_max if t_max is None else t_max
    if config.t_sampling == "anneal":       # SDI's t_anneal: every row at this step's t_max (sample_timesteps' top)
        T = len(teacher.alphas_cumprod)
        t = torch.full((B,), max(min(int(round(hi * T)), T - 1), int(round(config.t_min * T))), device=x0.device)
    elif config.t_sampling == "lognormal":    # rows(): data parallel, this rank's rows of the global draw
        t = rows(lambda m: sample_timesteps_lognormal(m, config.t_min, hi, teacher.alphas_cumprod, *config.t_lognormal,
                                                      generator, x0.device), B)
    else:
        t = rows(lambda m: sample_timesteps(m, config.t_min, hi, len(teacher.alphas_cumprod), generator, x0.device), B)
    noise = randn_rows(x0.shape, generator, x0.dtype).to(x0.device)
    trains = aux is not None and hasattr(aux, "train_step")
    fit = (trains and config.aux_shared_pass and config.aux_updates > 0 and aux_x0 is None
           and config.aux_cfg_scale == 1.0 and prompts.aux is None and hasattr(aux, "apply_loss"))
    drop = fit and aux_kw.get("camera") is not None and aux.drops_camera(generator)
    out = guidance_step(teacher, x0, prompts, t, noise, config, aux=aux, aux_fit=fit and not drop,
                        generator=generator, t_max=hi, **aux_kw)
    if trains:
        particles = (x0 if aux_x0 is None else aux_x0).detach()
        cond = prompts.cond if prompts.aux is None else prompts.aux
        updates = config.aux_updates
        if out.aux_loss is not None:
            aux.apply_loss(out.aux_loss)
            updates -= 1
        elif drop:
            aux.train_step(particles, cond, generator=generator, **{**aux_kw, "camera": None})
            updates -= 1
        for _ in range(updates):
            aux.train_step(particles, cond, generator=generator, **aux_kw)
    return out
