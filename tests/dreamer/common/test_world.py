"""dreamer.common.world: teacher.json names a teacher's world (the shipped teacher: the shapes world), folders without
one get None, an unknown name is one line; a stub world drives a tiny `generate` (its shading, its ground truth in
metrics.json) and a tiny `distill` (its captions, its training images in the data pool); without a world metrics.json
says there is no ground truth."""
import json

import pytest
import torch

import renderers as R
from dreamer.common.errors import TeacherError
from dreamer.common.teacher_source import DEFAULT_TEACHER
from dreamer.common.world import DEFAULT_SHADING, WORLDS, Shading, world_of
from renderers.shading import AMBIENT, camera_key_light


class StubTruth:
    """Ground truth of a stub prompt: flat grey GT renders, an 'evaluation' that records what it was given."""

    def __init__(self, world):
        self.world = world

    def render(self, elevation, azimuth, distance, fov_deg, res):
        self.world.calls.append(("render", len(elevation), res))
        return torch.full((len(elevation), 3, res, res), 0.5), torch.ones(len(elevation), 1, res, res)

    def evaluate(self, mesh, render_scene, resolution=32):
        views = render_scene(R.turntable_cameras(2, elevation=20.0, distance=2.1, fov=42.0, width=8, height=8))
        return {"stub_right": True, "stub_mesh_faces": None if mesh is None else len(mesh.faces),
                "stub_scene_views": list(views.shape)}


class StubWorld:
    """Two prompts, random training images, a dim light, ground truth for 'a thing' only."""

    name = "stub-v0"
    prompt_kind = "a stub prompt ('a thing')"
    shading = Shading(0.5, camera_key_light)

    def __init__(self):
        self.calls = []

    def prompts(self):
        return ["a thing", "another thing"]

    def captions(self):
        return [f"{p}, front view" for p in self.prompts()]

    def training_images(self, n, res, generator):
        self.calls.append(("training_images", n, res))
        caps = self.captions()
        return torch.rand(n, 3, res, res, generator=generator), [caps[i % len(caps)] for i in range(n)]

    def ground_truth(self, prompt):
        return StubTruth(self) if prompt == "a thing" else None


def _teacher_dir(tmp_path, meta):
    tmp_path.mkdir(parents=True, exist_ok=True)
    if meta is not None:
        (tmp_path / "teacher.json").write_text(json.dumps(meta))
    return tmp_path


def test_the_shipped_teacher_names_the_shapes_world_and_others_have_none(tmp_path):
    w = world_of(DEFAULT_TEACHER)
    assert w.name == "shapes-v1" and len(w.prompts()) == 36 and w.prompts()[0] == "a red cube"
    assert w.captions()[:2] == ["a red cube, front view", "a red cube, side view"] and len(w.captions()) == 144
    assert w.ground_truth("a blue torus, side view") is not None and w.ground_truth("a wooden chair") is None
    assert world_of(None) is None and world_of(_teacher_dir(tmp_path / "bare", None)) is None
    assert world_of(_teacher_dir(tmp_path / "novocab", {"text_encoder": "x"})) is None
    # the default shading (a teacher without a world) is the shapes world's: one light, one ambient
    c2w = R.orbit_cameras(torch.tensor([10.0, 70.0]), torch.tensor([0.0, 130.0]), torch.tensor([2.0, 2.2]),
                          torch.tensor([40.0, 45.0]), 8, 8).c2w
    off = torch.tensor([[0.1, -0.2], [0.3, 0.05]])
    assert w.shading.ambient == AMBIENT == DEFAULT_SHADING.ambient == 0.35
    for o in (None, off):
        assert torch.equal(DEFAULT_SHADING.key_light(c2w, o), camera_key_light(c2w, o))
        assert torch.equal(w.shading.key_light(c2w, o), camera_key_light(c2w, o))


def test_an_unknown_world_is_one_line(tmp_path):
    folder = _teacher_dir(tmp_path / "t", {"world": "moon-v9"})
    with pytest.raises(TeacherError) as e:
        world_of(folder)
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and "moon-v9" in msg and "shapes-v1" in msg and str(folder) in msg


def test_the_worlds_table_loads_a_registered_world(tmp_path, monkeypatch):
    monkeypatch.setitem(WORLDS, "stub-v0", f"{__name__}:StubWorld")
    w = world_of(_teacher_dir(tmp_path / "t", {"world": "stub-v0"}))
    assert isinstance(w, StubWorld) and w.prompts() == ["a thing", "another thing"]


TINY = ["device=cpu", "teacher_dtype=float32", "train.preview_every=0", "train.checkpoint_every=0", "train.steps=2",
        "train.threads=1", "camera.resolution=16", "camera.batch=1", "gaussians.n_init=100", "shading.lambertian=1.0",
        "shading.albedo=0.0", "export.mesh_resolution=32", "export.turntable_frames=2",
        "export.turntable_resolution=16", "export.texture_size=32", "export.faces=500"]


def test_generate_on_a_stub_world_uses_its_shading_and_ground_truth(tiny_sd_dir, tmp_path, monkeypatch):
    import dreamer.text_to_3d.loop as loop_mod
    from dreamer.text_to_3d.outputs import export_run
    from dreamer.text_to_3d.recipe import load_generate_config
    from guidance import DiffusersTeacher

    torch.set_num_threads(1)
    teacher = DiffusersTeacher.from_pretrained(tiny_sd_dir)
    world, seen = StubWorld(), []
    real_draw = loop_mod.draw_shading
    monkeypatch.setattr(loop_mod, "draw_shading", lambda *a: seen.append(a[-1]) or real_draw(*a))
    config = load_generate_config("gaussians-sds", "a thing", str(tiny_sd_dir), TINY)
    run = loop_mod.generate(config, tmp_path / "stub", progress=False, teacher=teacher, world=world)
    assert run.world is world and seen == [world.shading] * 2
    m = export_run(run, tmp_path / "stub")
    assert m["stub_right"] is True and m["stub_scene_views"] == [2, 3, 8, 8] and "evaluation_skipped" not in m
    assert ("render", 8, 64) in world.calls and "textured_psnr_vs_gt" in m     # the textured mesh vs the stub GT
    assert json.loads((tmp_path / "stub" / "metrics.json").read_text())["stub_right"] is True

    run.world = None                                           # a teacher without a world: no ground truth
    m = export_run(run, tmp_path / "stub")
    assert m["evaluation_skipped"] == f"teacher {tiny_sd_dir} has no world: no ground truth"
    assert "textured_psnr_vs_gt" not in m and "stub_right" not in m
    run.world = world
    run.config.prompt = "something else"                       # a prompt the world has no ground truth for
    assert export_run(run, tmp_path / "stub")["evaluation_skipped"] == "prompt is not a stub prompt ('a thing')"


def test_distill_on_a_stub_world_uses_its_captions_and_training_images(tiny_sd_dir, tmp_path):
    from dreamer.common.config import ConfigError
    from dreamer.distill.generator import load_generator
    from dreamer.distill.loop import distill
    from dreamer.distill.recipe import DistillConfig, distill_guidance
    from dreamer.distill.trainers.toolkit import data_pool
    from guidance import DiffusersTeacher

    torch.set_num_threads(1)
    teacher = DiffusersTeacher.from_pretrained(tiny_sd_dir)
    world = StubWorld()
    config = DistillConfig(method="noise_lora", teacher=str(tiny_sd_dir), steps=2, batch=2, lr_gen=1e-3,
                           guidance=distill_guidance(cfg_scale=3.0), timesteps=[999, 499], data="shapes", data_size=4,
                           threads=1, log_every=1, save_every=0)
    distill(config, tmp_path / "d", teacher=teacher, world=world, log=lambda s: None)
    res = teacher.unet.config.sample_size * teacher.vae_scale_factor
    assert world.calls == [("training_images", 4, res)]                       # the stub's images fed the pool
    assert load_generator(tmp_path / "d" / "generator").meta["prompts"] == world.captions()
    assert len((tmp_path / "d" / "log.jsonl").read_text().splitlines()) == 2
    with pytest.raises(ConfigError, match="needs a teacher with a world"):    # no world: no data: shapes
        data_pool(teacher, None, config, torch.Generator(), None)
