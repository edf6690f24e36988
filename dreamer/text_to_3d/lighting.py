"""Which shading each training step renders with, and under which light (exports and previews stay albedo)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

import renderers as R
from renderers import rng
from renderers.shading import MODES

from ..common.world import DEFAULT_SHADING, Shading

Light = Literal["key", "random"]     # the light of a shaded training render (ShadingConfig.light)


@dataclass
class ShadingConfig:
    """Training-render shading (DreamFusion §3.1; threestudio's per-step albedo / diffuse / textureless mix).

    From step `start`, each step draws one mode with the weights (albedo, lambertian, textureless); before it, and
    whenever the weights are albedo only, nothing is drawn (the run's random stream is that of an unshaded run).
    light "key" is the teacher's world's key light (World.shading, dreamer.common.world; the shapes world's is fixed
    to the camera: what the embedded teacher was trained on; a teacher without a world gets DEFAULT_SHADING's, the
    same), its (up, right) weights moved by N(0, jitter); "random" is DreamFusion's light near the camera
    (renderers.random_light_dirs). ambient None: the world's (0.35 for the shapes world and the default)."""

    start: int = 0
    albedo: float = 1.0
    lambertian: float = 0.0
    textureless: float = 0.0
    light: Light = "key"
    jitter: float = 0.0
    ambient: float | None = None    # None: the world's (shapes GT = albedo * (0.35 + 0.65 max(0, n.l)))

    @property
    def weights(self) -> tuple[float, float, float]:
        return (self.albedo, self.lambertian, self.textureless)


def ambient_of(config: ShadingConfig, shading: Shading = DEFAULT_SHADING) -> float:
    """The ambient term the training renders are shaded with: config.ambient, else the world's."""
    return shading.ambient if config.ambient is None else config.ambient


def draw_shading(config: ShadingConfig, step: int, cams: R.Cameras, generator: torch.Generator | None = None,
                 shading: Shading = DEFAULT_SHADING) -> tuple[str, torch.Tensor | None]:
    """-> (mode, light [B,3] or None for albedo) for this step's cameras; shading: the teacher's world's."""
    w = config.weights
    if step < config.start or w[1] == w[2] == 0:
        return "albedo", None
    u = float(rng.rand(1, generator=generator, device=cams.device)[0]) * sum(w)
    mode = MODES[0] if u < w[0] else MODES[1] if u < w[0] + w[1] else MODES[2]
    if mode == "albedo":
        return mode, None
    return mode, make_light(config, cams, generator, shading)


def make_light(config: ShadingConfig, cams: R.Cameras, generator: torch.Generator | None = None,
               shading: Shading = DEFAULT_SHADING) -> torch.Tensor:
    """Light directions [B,3] (unit, towards the light) for cameras under config.light / config.jitter."""
    if config.light == "random":
        return R.random_light_dirs(cams, generator)
    offset = None
    if config.jitter > 0:
        offset = rng.randn(len(cams), 2, generator=generator, device=cams.device) * config.jitter
    return shading.key_light(cams.c2w, offset)
