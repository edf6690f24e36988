"""What a teacher was trained on, when its teacher.json names it: a World (the embedded shapes teacher's is
"shapes-v1", dreamer.shapes.world_api). A world gives its prompts, training images for distillation pools, the
shading model the 3D training renders imitate and, for the prompts it knows, ground truth (GT renders, the strict
evaluation of an exported asset). A teacher without one (any diffusers model) gets None: outputs that need ground
truth say so, distillation needs captions and data: teacher.

dreamer.common imports no world: WORLDS names the module of each, imported when a teacher asks for it."""
from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from renderers.shading import AMBIENT, camera_key_light

from .errors import TeacherError

if TYPE_CHECKING:
    import torch

# teacher.json "world" -> "module:factory" (called with no arguments) building that World
WORLDS: dict[str, str] = {"shapes-v1": "dreamer.shapes.world_api:ShapesWorld"}


@dataclass(frozen=True)
class Shading:
    """A world's image model: albedo * (ambient + (1 - ambient) max(0, n.l)), l = key_light(c2w [B,4,4], offset)."""

    ambient: float
    key_light: Callable[..., Any]


DEFAULT_SHADING = Shading(AMBIENT, camera_key_light)  # a teacher without a world: the same model as the shapes world's


class GroundTruth(Protocol):
    """One prompt's ground truth in its world."""

    def render(self, elevation: torch.Tensor, azimuth: torch.Tensor, distance: torch.Tensor, fov_deg: torch.Tensor,
               res: int) -> tuple[torch.Tensor, torch.Tensor]:
        """GT views of orbit cameras (degrees, [B] each): rgb [B,3,res,res] in [0,1], alpha [B,1,res,res]."""

    def evaluate(self, mesh, render_scene: Callable[[Any], torch.Tensor], resolution: int = 32) -> dict:
        """The strict report of an exported mesh (None: none was exported) plus figures on the scene's renders
        (render_scene(cameras) -> rgb [N,3,H,W]); JSON-serialisable, what metrics.json records."""


class World(Protocol):
    """What a teacher was trained on (see the module docstring)."""

    name: str
    prompt_kind: str          # the prompts with ground truth, for metrics.json: "prompt is not <prompt_kind>"
    shading: Shading

    def prompts(self) -> list[str]:
        """Every base prompt (no view suffix), in a fixed order."""

    def captions(self) -> list[str]:
        """The teacher's training captions: every prompt with each view suffix."""

    def training_images(self, n: int, res: int, generator: torch.Generator) -> tuple[torch.Tensor, list[str]]:
        """n training images rgb [n,3,res,res] in [0,1] with their (view-suffixed) captions."""

    def ground_truth(self, prompt: str) -> GroundTruth | None:
        """The prompt's ground truth, or None when the world has none for it."""


def shading_of(world: World | None) -> Shading:
    """The image model training renders are shaded with: the world's, DEFAULT_SHADING for a teacher without one."""
    return world.shading if world is not None else DEFAULT_SHADING


def teacher_meta(teacher_dir: str | Path | None) -> dict:
    """The teacher.json of a local teacher folder ({} for None and folders without one)."""
    if teacher_dir is None:
        return {}
    meta = Path(teacher_dir) / "teacher.json"
    return json.loads(meta.read_text()) if meta.is_file() else {}


def load_world(name: str) -> World:
    """The World registered under `name` in WORLDS (TeacherError, one line, for a name it does not hold)."""
    if name not in WORLDS:
        raise TeacherError(f"unknown world {name!r} (known: {', '.join(sorted(WORLDS))})")
    module, factory = WORLDS[name].split(":")
    return getattr(importlib.import_module(module), factory)()


def world_of(teacher_dir: str | Path | None) -> World | None:
    """The world a local teacher folder's teacher.json names; None for folders without one (and for None)."""
    name = teacher_meta(teacher_dir).get("world")
    if not name:
        return None
    try:
        return load_world(name)
    except TeacherError as e:
        raise TeacherError(f"teacher {teacher_dir}: {e}") from None
