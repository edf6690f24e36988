"""Settings of `dreamer generate` (mirrored by configs/*.yaml)."""
from __future__ import annotations

from dataclasses import dataclass, field

from guidance import GuidanceConfig, Ramp

from .scenes import GaussianSceneConfig, NeRFSceneConfig


@dataclass
class CameraConfig:
    """Random orbit cameras per step (degrees / world units); resolution is the render size fed to the teacher."""

    batch: int = 2
    elev_range: tuple[float, float] = (-10.0, 45.0)
    azim_range: tuple[float, float] = (-180.0, 180.0)
    dist_range: tuple[float, float] = (1.9, 2.3)
    fov_range: tuple[float, float] = (40.0, 45.0)
    resolution: int = 32
    view_prompts: bool = True


@dataclass
class RegConfig:
    """Regulariser weights (0 = off)."""

    opacity_entropy: float = 0.0
    orientation: float = 0.0
    scale: float = 0.0
    scale_max: float = 0.1


@dataclass
class TrainConfig:
    """Loop length and schedules (named ramps)."""

    steps: int = 400
    seed: int = 0
    t_max: Ramp = field(default_factory=lambda: Ramp("linear", 0.98, 0.5, 0, 400))
    lr_scale: Ramp = field(default_factory=lambda: Ramp("constant", 1.0, 1.0))
    preview_every: int = 100
    checkpoint_every: int = 100
    threads: int = 0                 # 0 = leave torch's default


@dataclass
class ExportConfig:
    mesh_resolution: int = 64
    turntable_frames: int = 36
    turntable_elevation: float = 20.0
    turntable_resolution: int = 64
    evaluate: bool = True            # shapes-world prompts: Chamfer / IoU / colour / accuracy vs ground truth


@dataclass
class GenerateConfig:
    """A text-to-3D recipe."""

    prompt: str = ""
    teacher: str = ""                # "" = the embedded shapes teacher; else a diffusers folder or hub id
    teacher_dtype: str = "float32"
    device: str = "cpu"
    renderer: str = "gaussians"      # gaussians | nerf
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    gaussians: GaussianSceneConfig = field(default_factory=GaussianSceneConfig)
    nerf: NeRFSceneConfig = field(default_factory=NeRFSceneConfig)
    reg: RegConfig = field(default_factory=RegConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
