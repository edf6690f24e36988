"""Teachers (score models) and score-distillation guidance; knows nothing of 3D."""
from .analytic import MixtureTeacher, finite_set_teacher, gaussian_teacher
from .aux_scores import FakeScore, LoraScore, denoise_train_step
from .inversion import ddim_invert, ddim_move, ddim_sigma, ism_interval, ism_path, sdi_path
from .losses import cfg_combine, perp_component, perp_neg_combine, score_distillation_grad, target_loss
from .noise_schedule import (Weighting, add_noise, alpha_sigma, check_timesteps, ddpm_alphas_cumprod, eps_from_output,
                             inv_snr, min_snr_weight, native_weight, prediction_target, renoise, sample_timesteps,
                             snr, truncated_snr_weight, uniform_timesteps, weighting, x0_from_eps)
from .optim import BadSteps, all_reduce_grads, finite_step, guarded_step, master_weights, optimizer_params
from .ramps import Ramp
from .shard import map_chunks, randint_rows, randn_rows, rank_world, rows
from .step import (METHODS, NEGATIVE_PROMPT, GuidanceConfig, GuidanceOutput, Prompts, guidance_step,
                   score_distillation_step, teacher_cfg)
from .teachers import DiffusersTeacher, Teacher, TeacherOptions, is_text_time, split_cond, unet_eps
from .text import pack_cond
from .unet_split import time_embedding

__all__ = [
    "MixtureTeacher", "finite_set_teacher", "gaussian_teacher",
    "FakeScore", "LoraScore", "denoise_train_step",
    "ddim_invert", "ddim_move", "ddim_sigma", "ism_interval", "ism_path", "sdi_path",
    "cfg_combine", "perp_component", "perp_neg_combine", "score_distillation_grad", "target_loss",
    "Weighting", "add_noise", "alpha_sigma", "check_timesteps", "ddpm_alphas_cumprod", "eps_from_output", "inv_snr",
    "min_snr_weight", "native_weight", "prediction_target", "renoise", "sample_timesteps", "snr",
    "truncated_snr_weight", "uniform_timesteps", "weighting", "x0_from_eps",
    "BadSteps", "all_reduce_grads", "finite_step", "guarded_step", "master_weights", "optimizer_params",
    "Ramp",
    "map_chunks", "randint_rows", "randn_rows", "rank_world", "rows",
    "METHODS", "NEGATIVE_PROMPT", "GuidanceConfig", "GuidanceOutput", "Prompts", "guidance_step",
    "score_distillation_step", "teacher_cfg",
    "DiffusersTeacher", "Teacher", "TeacherOptions", "is_text_time", "pack_cond", "split_cond", "unet_eps",
    "time_embedding",
]
