"""Every shipped recipe computes its guidance gradient through guidance.score_distillation_step (the one guidance
step; no method has a code path outside it): one real step of each recipe's loop on a tiny teacher, with the step
spied on. The gradient that reaches the teacher-space sample x0 is exactly the step's grad / B: no other term of
the loop's loss touches x0, so no second gradient formula exists anywhere in the loop."""
import pytest
import torch

import dreamer.distill.trainers.score as score_mod
import dreamer.text_to_3d.loop as loop_mod
from dreamer.common.config import CONFIG_DIR, available_configs, load_config_dict
from dreamer.common.recipes import recipe_kind
from dreamer.distill.recipe import load_distill_config
from dreamer.distill.trainers import TRAINERS
from dreamer.text_to_3d.recipe import load_generate_config
from guidance import METHODS, DiffusersTeacher
from guidance import score_distillation_step as real_step

RECIPES = {n: recipe_kind(load_config_dict(n, CONFIG_DIR)) for n in available_configs(CONFIG_DIR)}
GENERATE = sorted(n for n, k in RECIPES.items() if k == "generate")
DISTILL = sorted(n for n, k in RECIPES.items() if k == "distill")
CPU = ["device=cpu", "teacher_dtype=float32", "mixed_precision=fp32", "train.preview_every=0",
       "train.checkpoint_every=0", "camera.batch=2", "gaussians.n_init=200", "nerf.n_samples=8", "nerf.levels=4",
       "nerf.log2_table_size=10", "export.evaluate=false"]
F32_U = 2.0 ** -24


class Spy:
    """Wraps score_distillation_step: records each call and the gradient that later arrives at its x0."""

    def __init__(self):
        self.calls, self.x0_grads = [], []

    def __call__(self, teacher, x0, prompts, config, *args, **kw):
        out = real_step(teacher, x0, prompts, config, *args, **kw)
        self.calls.append((config, x0, out))
        x0.register_hook(lambda g: self.x0_grads.append(g.detach().clone()))
        return out

    def check(self, per_image: float):
        """One call, through a METHODS entry, and d loss / d x0 = grad * per_image up to float32 rounding."""
        assert len(self.calls) == 1 and len(self.x0_grads) == 1
        config, x0, out = self.calls[0]
        assert config.method in METHODS
        got, expected = self.x0_grads[0], out.grad * per_image
        bound = 8 * F32_U * (x0.abs().max() + out.grad.abs().max()).item() * per_image   # x0 - sg(x0 - grad)
        assert out.grad.abs().max() > 0 and (got - expected).abs().max().item() <= bound


def _teacher_for(name, tiny_sd_dir, tiny_sdxl_dir):
    """The tiny pipeline of the recipe's teacher family (SDXL-class recipes: the tiny SDXL); the embedded shapes
    teacher as shipped otherwise."""
    if "sdxl" in name:
        return str(tiny_sdxl_dir)
    data = load_config_dict(name, CONFIG_DIR)
    return str(tiny_sd_dir) if data.get("teacher") else None


@pytest.mark.parametrize("name", GENERATE)
def test_generate_recipe_gradient_comes_from_the_guidance_step(name, tiny_sd_dir, tiny_sdxl_dir, monkeypatch):
    torch.set_num_threads(1)
    folder = _teacher_for(name, tiny_sd_dir, tiny_sdxl_dir)
    over = CPU + (["camera.resolution=16"] if folder else [])
    config = load_generate_config(name, "a red cube", folder, over)
    spy = Spy()
    monkeypatch.setattr(loop_mod, "score_distillation_step", spy)
    run = loop_mod.SceneRun(config, teacher=DiffusersTeacher.from_pretrained(folder) if folder else None)
    run.step()
    spy.check(1.0 / config.camera.batch)
    assert spy.calls[0][0].method == config.guidance.method


SCORE_TRAINERS = (score_mod.train_score,)
DISTILL_TINY = ["device=cpu", "mixed_precision=fp32", "gradient_checkpointing=false", "fsdp=false", "batch=2",
                "steps=1", "guidance.aux_updates=1", "regression_weight=0.0", "rollout_regression_weight=0.0",
                "gan.weight=0.0", "prompts=[a red cube, a blue sphere]"]


@pytest.mark.parametrize("name", DISTILL)
def test_distill_recipe_gradient_comes_from_the_guidance_step(name, tiny_sd_dir, tiny_sdxl_dir, monkeypatch):
    """Score-distillation recipes (DMD, Diff-Instruct, SDS): one generator update; their separate, named extra
    terms (DMD1 / rollout regression, DMD2's GAN) are switched off so x0's gradient is the guidance one alone. The
    other recipes' methods are not guidance methods: no score-distillation gradient exists there to route."""
    torch.set_num_threads(1)
    method = load_config_dict(name, CONFIG_DIR)["method"]
    if TRAINERS[method] not in SCORE_TRAINERS:
        assert method not in METHODS, (name, method)       # ADD's distillation term: its own test below
        return
    folder = _teacher_for(name, tiny_sd_dir, tiny_sdxl_dir)
    over = DISTILL_TINY + ([f"teacher={folder}", "resolution=null"] if folder else [])
    config = load_distill_config(name, over)
    teacher = DiffusersTeacher.from_pretrained(folder) if folder else _shapes_teacher()
    state = score_mod.init_state(teacher, config, folder)
    gcfg = score_mod.guidance_config(config, teacher.default_cfg)
    spy = Spy()
    monkeypatch.setattr(score_mod, "score_distillation_step", spy)
    score_mod.distill_step(state, teacher, config, gcfg)
    B = config.batch
    spy.check(1.0 / B if config.dm_loss == "per_image" else 1.0 / (B * spy.calls[0][1][0].numel()))
    assert spy.calls[0][0].method == method                  # a score method guides with its own name


def _shapes_teacher():
    from dreamer.common.teacher_source import load_teacher

    return load_teacher(None)


def test_add_distillation_term_is_the_guidance_step(tmp_path, monkeypatch):
    """ADD (distill-add): student loss = adversarial + lambda * distillation. Two runs from one seed with lambda and
    2 lambda: the difference of the gradients at the student's x0 is exactly lambda * grad / (B C H W) of the spied
    guidance step (the adversarial part cancels); float32 rounding of both sums bounds the difference."""
    import dreamer.distill.trainers.adversarial as adv_mod
    from dreamer.distill.trainers.toolkit import DistillRun

    torch.set_num_threads(1)
    teacher, seen = _shapes_teacher(), []
    for lam in (1.0, 2.0):
        config = load_distill_config("distill-add", ["steps=1", "batch=2", "data_size=4", "device=cpu", "save_every=0",
                                                 f"add.distill_weight={lam}"])
        spy = Spy()
        monkeypatch.setattr(adv_mod, "score_distillation_step", spy)
        adv_mod.train(teacher, config, DistillRun(tmp_path / str(lam), config, log=lambda line: None))
        assert len(spy.calls) == 1 and spy.calls[0][0].method == "sds" and len(spy.x0_grads) == 1
        seen.append((spy.x0_grads[0], spy.calls[0][2].grad, spy.calls[0][1]))
    (g1, grad1, x0), (g2, grad2, _) = seen
    assert torch.equal(grad1, grad2)
    per = 1.0 / (x0.shape[0] * x0[0].numel())
    bound = 16 * F32_U * (g1.abs().max() + g2.abs().max() + x0.abs().max() * per).item()
    assert grad1.abs().max() > 0 and ((g2 - g1) - grad1 * per).abs().max().item() <= bound
