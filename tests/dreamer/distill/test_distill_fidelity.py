"""DMD / Diff-Instruct recipes vs DMD2's code: the DM loss reduction, the fake score's clip and fresh batches per
fake update; captions from a file (streamed, encoded per batch) and no silent fallback to the shapes world."""
import json

import pytest
import torch

import dreamer.distill.trainers.score as score_mod
import guidance.aux_scores as aux_mod
from dreamer.common.config import ConfigError
from dreamer.common.errors import DreamerError
from dreamer.distill.captions import CaptionFile, PromptBank
from dreamer.distill.loop import check_data_sources, distill
from dreamer.distill.recipe import DistillConfig, distill_guidance, load_distill_config
from dreamer.distill.trainers.score import distill_step, dm_loss, guidance_config, init_state
from guidance import DiffusersTeacher, GuidanceOutput


@pytest.fixture(scope="module")
def teacher(tiny_sd_dir):
    torch.set_num_threads(1)
    return DiffusersTeacher.from_pretrained(tiny_sd_dir)


def _cfg(g=(), **kw):
    base = dict(method="dmd", steps=2, batch=2, lr_gen=1e-3,
                guidance=distill_guidance(**{**dict(aux_updates=3, aux_lr=1e-3, cfg_scale=3.0), **dict(g)}),
                prompts=["a red cube", "a blue sphere", "a green cone"], timesteps=[999, 499], threads=1, log_every=1)
    return DistillConfig(**{**base, **kw})


def test_dm_loss_mean_is_dmd2s_reduction():
    """per_image: d/dx0 = grad / B; mean (DMD2's 0.5 mse(reduction=mean)): grad / (B C H W)."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, 8, 8, generator=g, requires_grad=True)
    grad = torch.randn(3, 4, 8, 8, generator=g)
    dmd2 = 0.5 * torch.nn.functional.mse_loss(x0, (x0 - grad).detach(), reduction="mean")
    out = GuidanceOutput(0.5 * (x0 - (x0 - grad).detach()).pow(2).sum() / 3, grad, x0, grad, grad, torch.ones(3))
    for red, scale in (("per_image", 3), ("mean", 3 * 4 * 8 * 8)):
        (gx,) = torch.autograd.grad(dm_loss(out, x0, red), x0, retain_graph=True)
        torch.testing.assert_close(gx, grad / scale, rtol=1e-4, atol=1e-7)  # x0 - (x0 - g) != g in fp32
    torch.testing.assert_close(dm_loss(out, x0, "mean"), dmd2)


def test_sd_recipes_mean_dmd2():
    c = load_distill_config("distill-dmd-sd15")
    assert (c.dm_loss, c.guidance.aux_max_grad_norm, c.aux_fresh_batches, c.max_grad_norm) == ("mean", 10.0, True, 10.0)
    assert load_distill_config("distill-dmd-sd21").dm_loss == "mean"
    d = load_distill_config("distill-dmd")          # the CPU recipe keeps its measured settings, stated as such
    assert (d.dm_loss, d.guidance.aux_max_grad_norm, d.aux_fresh_batches) == ("per_image", 1.0, False)


@pytest.mark.parametrize("fresh", [False, True])
def test_aux_updates_batches_and_clip(teacher, tiny_sd_dir, monkeypatch, fresh):
    config = _cfg(teacher=str(tiny_sd_dir), aux_fresh_batches=fresh, g=dict(aux_max_grad_norm=10.0))
    state = init_state(teacher, config, str(tiny_sd_dir))
    seen, norms, gen_x0 = [], [], []
    real_train, real_batch, real_guarded = state.fake.train_step, score_mod.generator_batch, aux_mod.guarded_step
    monkeypatch.setattr(state.fake, "train_step", lambda x0, cond, **k: (seen.append(x0.clone()),
                                                                         real_train(x0, cond, **k))[1])
    monkeypatch.setattr(aux_mod, "guarded_step", lambda loss, opt, max_norm, **k: (norms.append(max_norm),
                                                                                   real_guarded(loss, opt, max_norm,
                                                                                                **k))[1])
    def batch(state, config):
        out = real_batch(state, config)
        gen_x0.append(out[0].detach().clone())
        return out
    monkeypatch.setattr(score_mod, "generator_batch", batch)
    distill_step(state, teacher, config, guidance_config(config, teacher.default_cfg))
    assert len(seen) == 3 and norms == [10.0] * 3
    if fresh:   # DMD2: each fake update its own generator batch, none the generator update's
        assert len(gen_x0) == 4 and all(torch.equal(s, x) for s, x in zip(seen, gen_x0[1:]))
        assert not any(torch.equal(seen[i], seen[j]) for i in range(3) for j in range(i)) and \
            not any(torch.equal(s, gen_x0[0]) for s in seen)
    else:       # all on the generator update's batch
        assert len(gen_x0) == 1 and all(torch.equal(s, gen_x0[0]) for s in seen)


def test_caption_files(tmp_path):
    txt = tmp_path / "caps.txt"
    txt.write_text("a red cube\n\n  a blue sphere  \nüñí caption\n")
    assert list(CaptionFile(txt)) == ["a red cube", "a blue sphere", "üñí caption"]
    jl = tmp_path / "caps.jsonl"
    jl.write_text("\n".join(json.dumps(d) for d in ({"caption": "x one"}, {"text": "x two"}, {"prompt": "x3"})))
    cf = CaptionFile(jl)
    assert (len(cf), cf[1], cf[-1]) == (3, "x two", "x3") and isinstance(cf.offsets, list)
    for name, data, msg in (("missing.txt", None, "does not exist"), ("empty.txt", b"\n \n", "holds no captions"),
                            ("bin.txt", b"ab\x00cd\n", "binary"), ("latin.txt", b"caf\xe9\n", "not UTF-8"),
                            ("bad.jsonl", b'{"caption": "a"}\n{"url": 1}\n', "line 2"),
                            ("bad2.jsonl", b"not json\n", "not JSON")):
        if data is not None:
            (tmp_path / name).write_bytes(data)
        with pytest.raises(DreamerError, match=msg):
            CaptionFile(tmp_path / name)


def test_prompt_bank_encodes_per_batch_beyond_the_cache(teacher):
    texts = ["a red cube", "a blue sphere", "a green cone", "a cyan torus"]
    cached, streamed = PromptBank(teacher, texts, cache=8), PromptBank(teacher, texts, cache=2)
    assert streamed.cached is None and cached.cached.shape[0] == 4 and streamed.shape == cached.shape
    idx = torch.tensor([3, 0, 3])
    torch.testing.assert_close(streamed[idx], cached[idx], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cached[idx], teacher.encode_prompt([texts[3], texts[0], texts[3]]), rtol=1e-5,
                               atol=1e-6)


def test_distill_from_a_caption_file(teacher, tiny_sd_dir, tmp_path):
    caps = tmp_path / "caps.jsonl"
    caps.write_text("\n".join(json.dumps({"caption": f"a red cube {i}"}) for i in range(70)))
    config = _cfg(teacher=str(tiny_sd_dir), prompts=[], prompts_file=str(caps), prompt_cache=16, steps=1)
    gen = distill(config, tmp_path / "run", log=lambda s: None)
    assert gen.meta["n_prompts"] == 70 and len(gen.meta["prompts"]) == 64 and gen.meta["prompts_file"] == str(caps)


def test_teacher_sample_pool_reads_only_data_size_captions_of_a_large_file(teacher, tiny_sd_dir, tmp_path,
                                                                            monkeypatch):
    """The regression trainers' pool (data: teacher) on a caption file longer than data_size: data_size captions
    drawn without replacement (seeded, in file order), read by index and encoded; not every caption of the file."""
    from dreamer.distill.generator import make_generator
    from dreamer.distill.trainers.toolkit import data_pool, pool_captions

    caps = tmp_path / "caps.txt"
    caps.write_text("\n".join(f"a red cube number {i}" for i in range(500)))
    reads, getitem = [], CaptionFile.__getitem__
    monkeypatch.setattr(CaptionFile, "__getitem__", lambda self, i: reads.append(i) or getitem(self, i))
    config = _cfg(teacher=str(tiny_sd_dir), method="noise_lora", prompts=[], prompts_file=str(caps), data="teacher",
                  data_size=6, regression_ddim_steps=2)
    data = data_pool(teacher, make_generator(teacher), config, torch.Generator().manual_seed(0))
    assert len(data.prompts) == 6 == len(set(data.prompts)) and data.x0.shape[0] == 6 and len(reads) == 6
    assert data.conds.shape[0] == 6 and all(p.startswith("a red cube number ") for p in data.prompts)
    nums = [int(p.rsplit(" ", 1)[1]) for p in data.prompts]
    assert nums == sorted(nums)                                      # file order
    again = pool_captions(CaptionFile(caps), 6, torch.Generator().manual_seed(0))
    assert again == data.prompts                                     # seeded
    assert pool_captions(["x", "y"], 6, torch.Generator()) == ["x", "y"]   # a short list: all of it


def test_no_silent_fallback_to_the_shapes_world(tiny_sd_dir, tmp_path):
    from dreamer.distill.trainers.toolkit import run_world

    assert run_world(str(tiny_sd_dir)) is None and run_world(None).name == "shapes-v1"
    with pytest.raises(ConfigError, match="has no world"):
        check_data_sources(DistillConfig(teacher=str(tiny_sd_dir)), None)
    with pytest.raises(ConfigError, match="data: shapes"):
        check_data_sources(DistillConfig(method="consistency", teacher=str(tiny_sd_dir), prompts=["a"]), None)
    check_data_sources(DistillConfig(method="consistency", teacher=str(tiny_sd_dir), prompts=["a"], data="teacher"),
                       None)
    check_data_sources(DistillConfig(), run_world(None))                       # the embedded teacher: fine
    with pytest.raises(ConfigError, match="either"):
        load_distill_config("distill-dmd", ["prompts=[a]", "prompts_file=x.txt"])


@pytest.mark.parametrize("case,data,msg", [("missing", None, "does not exist"), ("empty", b"", "holds no captions"),
                                           ("binary", b"\x89PNG\r\n\x1a\n\x00\x00", "binary")])
def test_cli_bad_caption_file_is_one_line_and_writes_nothing(tiny_sd_dir, tmp_path, capsys, case, data, msg):
    from dreamer.cli import main

    caps = tmp_path / f"{case}.txt"
    if data is not None:
        caps.write_bytes(data)
    out = tmp_path / "run"
    assert main(["distill", "--teacher", str(tiny_sd_dir), "--out", str(out), "--prompts-file", str(caps)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dreamer: error: caption file") and msg in err
    assert not out.exists()


def test_cli_other_teacher_without_captions_is_one_line(tiny_sd_dir, tmp_path, capsys):
    from dreamer.cli import main

    assert main(["distill", "--teacher", str(tiny_sd_dir), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no world" in err and not (tmp_path / "run").exists()
