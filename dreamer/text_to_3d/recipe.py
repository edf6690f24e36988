"""Settings of `dreamer generate` (mirrored by configs/*.yaml)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from guidance import GuidanceConfig, Ramp

from ..common.config import (CONFIG_DIR, ConfigError, apply_overrides, check_choices, check_finite, flatten,
                             from_dict, load_config_dict, to_dict)
from ..common.teacher_source import teacher_ref
from .lighting import ShadingConfig
from .scenes import SCENES, GaussianSceneConfig, NeRFSceneConfig

RESOLUTION_MULTIPLE = 8              # render sizes are whole 8-pixel tiles of the CPU rasterizer
GUIDANCE_METHODS = ("sds", "nfsd", "csd", "ism", "sdi", "vsd")   # guidance.METHODS of a 3D scene
Dtype = Literal["float32", "float16", "bfloat16"]    # teacher_dtype
# Keys that may differ between a run and its --resume (dreamer.common.run_folder.check_resume; "export.": every key
# under it): they change how long / how visibly it runs, or what is exported afterwards, never the result of a step.
RESUME_FREE_KEYS = ("train.steps", "train.threads", "train.preview_every", "train.checkpoint_every",
                    "train.max_bad_steps", "export.")


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
    cfg_mult: Ramp = field(default_factory=lambda: Ramp("constant", 1.0, 1.0))  # x guidance.cfg_scale per step
    preview_every: int = 100
    checkpoint_every: int = 100
    threads: int = 0                 # 0 = leave torch's default
    max_bad_steps: int = 20          # stop after this many consecutive steps with a non-finite loss / gradient


@dataclass
class ExportConfig:
    mesh_resolution: int = 64
    surface: Literal["fusion", "density"] = "density"  # fusion: TSDF of the rendered depth and coverage
    #                                  (text_to_3d.fusion) | density: a level set of the scene's own density field
    fusion_resolution: int = 0       # fusion: pixels of the 24 fused views (0 = camera.resolution, what was trained)
    fusion_transmittance: float = 0.95  # fusion: a view's surface is where its transmittance falls to this
    turntable_frames: int = 36
    turntable_elevation: float = 20.0
    turntable_resolution: int = 64
    threshold_from_renders: bool = True  # marching-cubes level whose silhouettes best match the renders
    bake_colors: bool = True         # vertex colours from multi-view renders (visible surface), not the field
    evaluate: bool = True            # prompts with ground truth in the teacher's world: strict test vs GT
    textured: bool = True            # mesh.glb / mesh.obj: cleaned, decimated, UV-atlased, baked base-colour texture
    faces: int = 5000                # face budget of the textured mesh (quadric decimation)
    texture_size: int = 512          # base-colour texture, texels per side
    close_radius: int = 2            # seal tunnels / gaps narrower than ~2x this many voxels (0 = off)
    min_component: float = 0.05      # drop parts with fewer faces than this fraction of the largest part
    max_hole_edges: int = 32         # fill boundary holes with at most this many edges
    vertex_color_glb: bool = False   # also write mesh_vertex_colors.glb (the marching-cubes mesh, vertex colours)


@dataclass
class GenerateConfig:
    """A text-to-3D recipe."""

    prompt: str = ""
    teacher: str | None = None       # None (also "embedded" or "") = the embedded shapes teacher; else a diffusers
    #                                  folder or hub id
    teacher_dtype: Dtype = "float32"
    mixed_precision: Literal["fp32", "bf16"] = "fp32"  # fp32 | bf16: the guidance step (VAE encode, teacher, VSD
    #                                  LoRA) in bf16 autocast
    device: str = "cpu"
    renderer: str = "gaussians"      # gaussians | nerf
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    gaussians: GaussianSceneConfig = field(default_factory=GaussianSceneConfig)
    nerf: NeRFSceneConfig = field(default_factory=NeRFSceneConfig)
    shading: ShadingConfig = field(default_factory=ShadingConfig)
    reg: RegConfig = field(default_factory=RegConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def __post_init__(self):
        self.teacher = teacher_ref(self.teacher)     # the embedded teacher's names -> None (older run folders: "")


def _at_least(n: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v >= n), f"must be >= {n:g}"


_POSITIVE, _NON_NEGATIVE = _at_least(1), _at_least(0)
_RANGE = (lambda v: v[0] <= v[1]), "must be [low, high] with low <= high"
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "prompt": ((lambda v: bool(v.strip())), "must not be empty (give a text prompt, e.g. \"a red cube\")"),
    "renderer": ((lambda v: v in SCENES), f"must be one of {', '.join(SCENES)}"),
    "guidance.method": ((lambda v: v in GUIDANCE_METHODS), f"must be one of {', '.join(GUIDANCE_METHODS)}"),
    "guidance.cfg_scale": ((lambda v: v is not None and v >= 0), "must be a number >= 0 (null, the teacher's "
                           "default, is for distillation only)"),
    "guidance.aux_rank": _POSITIVE, "guidance.aux_max_grad_norm": _NON_NEGATIVE, "guidance.aux_updates": _POSITIVE,
    "guidance.aux_lr": _NON_NEGATIVE, "guidance.grad_clip": _NON_NEGATIVE,
    "export.fusion_transmittance": ((lambda v: 0 < v < 1), "must be in (0, 1)"),
    "export.fusion_resolution": ((lambda v: v >= 0), "must be >= 0 (0 = camera.resolution)"),
    "shading.weights": ((lambda v: min(v) >= 0 and sum(v) > 0), "(albedo, lambertian, textureless) must be >= 0 "
                        "and not all 0"),
    "shading.ambient": ((lambda v: v is None or 0 <= v <= 1), "must be in [0, 1] (or null: the world's)"),
    "shading.jitter": _NON_NEGATIVE, "shading.start": _NON_NEGATIVE,
    "camera.batch": _POSITIVE, "camera.elev_range": _RANGE, "camera.azim_range": _RANGE,
    "camera.dist_range": ((lambda v: 0 < v[0] <= v[1]), "must be [near, far] with 0 < near <= far"),
    "camera.fov_range": ((lambda v: 0 < v[0] <= v[1] < 180), "must be [low, high] degrees within (0, 180)"),
    "camera.resolution": ((lambda v: v >= RESOLUTION_MULTIPLE and v % RESOLUTION_MULTIPLE == 0),
                          f"must be a positive multiple of {RESOLUTION_MULTIPLE} (the renderer's tile size)"),
    "gaussians.n_init": _POSITIVE, "nerf.n_samples": _POSITIVE, "nerf.levels": _POSITIVE,
    "train.steps": _POSITIVE, "train.seed": _NON_NEGATIVE, "train.preview_every": _NON_NEGATIVE,
    "train.checkpoint_every": _NON_NEGATIVE, "train.threads": _NON_NEGATIVE, "train.max_bad_steps": _POSITIVE,
    "export.mesh_resolution": _at_least(2), "export.turntable_frames": _POSITIVE,
    "export.turntable_resolution": _POSITIVE, "export.faces": _at_least(4), "export.texture_size": _at_least(8),
    "export.close_radius": _NON_NEGATIVE, "export.min_component": ((lambda v: 0 <= v <= 1), "must be in [0, 1]"),
    "export.max_hole_edges": _NON_NEGATIVE,
}


def validate_generate(config: GenerateConfig) -> GenerateConfig:
    """Raise a one-line ConfigError on values the dataclass types cannot catch (ranges, NaN, multiples) and on choice
    (Literal) fields of a config built in code."""
    check_choices(config)
    check_finite(config)
    g = config.guidance
    if not 0 <= g.t_min < g.t_max <= 1:
        raise ConfigError(f"need 0 <= guidance.t_min < guidance.t_max <= 1, got {g.t_min}, {g.t_max}")
    for key, (ok, need) in RULES.items():
        value = config
        for part in key.split("."):
            value = getattr(value, part)
        if not ok(value):
            raise ConfigError(f"'{key}' {need}, got {value!r}")
    lrs = {k: v for k, v in flatten(to_dict(config)).items() if k.rsplit(".", 1)[-1].startswith("lr")}
    bad = next((k for k, v in lrs.items() if v < 0), None)
    if bad:
        raise ConfigError(f"'{bad}' must be >= 0, got {lrs[bad]}")
    return config


def load_generate_config(name_or_path, prompt: str | None = None, teacher: str | None = None,
                         overrides: list[str] = ()) -> GenerateConfig:
    """Recipe (name in configs/ or YAML path, `base:` inheritance) + prompt / teacher + key=value overrides ->
    validated GenerateConfig (one-line ConfigError)."""
    data = apply_overrides(load_config_dict(name_or_path, CONFIG_DIR), list(overrides))
    if prompt is not None:
        data["prompt"] = prompt
    if teacher is not None:
        data["teacher"] = teacher
    return validate_generate(from_dict(GenerateConfig, data))
