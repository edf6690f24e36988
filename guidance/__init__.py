"""Teachers (score models) and score-distillation guidance; knows nothing of 3D."""
from .analytic import MixtureTeacher, ddpm_alphas_cumprod, finite_set_teacher, gaussian_teacher
from .aux_scores import FakeScore, LoraScore, denoise_train_step
from .losses import add_noise, cfg_combine, score_distillation_grad, target_loss, x0_from_eps
from .schedules import Ramp, sample_timesteps, weighting
from .step import (METHODS, NEGATIVE_PROMPT, GuidanceConfig, GuidanceOutput, Prompts, guidance_step,
                   score_distillation_step, teacher_cfg)
from .teachers import DiffusersTeacher, Teacher, TeacherOptions, eps_from_output, unet_eps

__all__ = [
    "MixtureTeacher", "ddpm_alphas_cumprod", "finite_set_teacher", "gaussian_teacher",
    "FakeScore", "LoraScore", "denoise_train_step",
    "add_noise", "cfg_combine", "score_distillation_grad", "target_loss", "x0_from_eps",
    "Ramp", "sample_timesteps", "weighting",
    "METHODS", "NEGATIVE_PROMPT", "GuidanceConfig", "GuidanceOutput", "Prompts", "guidance_step",
    "score_distillation_step", "teacher_cfg",
    "DiffusersTeacher", "Teacher", "TeacherOptions", "eps_from_output", "unet_eps",
]
