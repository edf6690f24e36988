"""The shapes world behind dreamer.common.world's World interface (teacher.json "world": "shapes-v1"): every method
delegates to the shapes modules (catalogue and prompts: world; renders and light: render; the strict test and the
evaluator's figures: evaluate, imported only when ground truth is evaluated)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from renderers.shading import AMBIENT, camera_key_light

from ..common.view_prompts import VIEW_SUFFIXES, view_prompt
from ..common.world import Shading
from .render import random_views, render_shapes
from .world import ShapeSpec, catalogue, parse_prompt


@dataclass(frozen=True)
class ShapesGroundTruth:
    """A catalogue entry's ground truth: sphere-traced GT renders and the strict test (dreamer.shapes.evaluate)."""

    spec: ShapeSpec

    def render(self, elevation, azimuth, distance, fov_deg, res: int) -> tuple[torch.Tensor, torch.Tensor]:
        """render_shapes of this entry from each orbit camera: rgb [B,3,res,res], alpha [B,1,res,res]."""
        return render_shapes([self.spec] * len(elevation), elevation, azimuth, distance, fov_deg, res)

    def evaluate(self, mesh, render_scene: Callable, resolution: int = 32) -> dict:
        """evaluate_mesh of the mesh (`right`, `reasons`, Chamfer, F-scores, IoU, scale, topology, colour, the
        evaluator's 8-view accuracy / PSNR on its renders) and the same two figures on the scene as scene_*."""
        from .evaluate import eval_cameras, evaluate_mesh, gt_views, view_scores
        from .evaluator import ShapesEvaluator

        ev = ShapesEvaluator.load()
        if mesh is None:
            rep = {"right": False, "reasons": ["no mesh was exported"]}
        else:
            rep = evaluate_mesh(mesh, self.spec, resolution, evaluator=ev)
        s = view_scores(render_scene(eval_cameras(resolution)), self.spec, gt_views(self.spec, resolution), ev)
        return {**rep, "scene_prompt_accuracy_8_views": s["accuracy"], "scene_psnr_8_views": s["psnr"]}


class ShapesWorld:
    """6 primitives x 6 colours with exact ground truth (dreamer.shapes.world), lit as render_shapes lights them."""

    name = "shapes-v1"
    prompt_kind = "a shapes-world prompt ('a <colour> <shape>')"
    shading = Shading(AMBIENT, camera_key_light)

    def prompts(self) -> list[str]:
        return [s.prompt for s in catalogue()]

    def captions(self) -> list[str]:
        return [f"{p}, {v}" for p in self.prompts() for v in VIEW_SUFFIXES]

    def training_images(self, n: int, res: int, generator: torch.Generator) -> tuple[torch.Tensor, list[str]]:
        """n GT renders (catalogue order, repeated; random_views) with view-suffixed captions (the teacher's data)."""
        cat = catalogue()
        specs = [cat[i % len(cat)] for i in range(n)]
        v = random_views(n, generator)
        rgb = torch.cat([render_shapes(specs[i:i + 256], v["elev"][i:i + 256], v["azim"][i:i + 256],
                                       v["dist"][i:i + 256], v["fov"][i:i + 256], res)[0] for i in range(0, n, 256)])
        return rgb, [view_prompt(s.prompt, e, a) for s, e, a in zip(specs, v["elev"].tolist(), v["azim"].tolist())]

    def ground_truth(self, prompt: str) -> ShapesGroundTruth | None:
        spec = parse_prompt(prompt)
        return None if spec is None else ShapesGroundTruth(spec)
