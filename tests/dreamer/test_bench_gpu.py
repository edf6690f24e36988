"""scripts/bench_gpu.py: its full-size architectures are SD 2.1-base's and SDXL's (parameter counts, built on the
meta device), and each benchmark case runs (tiny architecture, CPU)."""
import importlib.util
from pathlib import Path

import torch

SPEC = importlib.util.spec_from_file_location("bench_gpu", Path(__file__).resolve().parents[2] / "scripts" / "bench_gpu.py")
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)


def test_full_size_architectures_match_the_published_models():
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device("meta"):
        counts = [sum(p.numel() for p in m.parameters()) for m in
                  (UNet2DConditionModel(**bench.SD21), UNet2DConditionModel(**bench.SDXL), AutoencoderKL(**bench.SD_VAE))]
    assert counts == [865_910_724, 2_567_463_684, 83_653_863]   # SD 2.1 UNet, SDXL base UNet, SD / SDXL VAE


def test_every_case_runs_on_the_tiny_architecture():
    torch.set_num_threads(1)
    teacher = bench.build_teacher("tiny", "float32", "cpu")
    for fn in (bench.guidance_case(teacher, "sds", 16, "cpu", False), bench.guidance_case(teacher, "vsd", 16, "cpu", True),
               bench.dmd_case(teacher, 1, "cpu", True, True)):
        row = bench.timed(fn, "cpu", 1)
        assert row["s_per_step"] > 0 and row["peak_gib"] is None
