"""renderers.rng: draws come from the generator's own device and land on the requested one."""
import pytest
import torch

from renderers import rng


@pytest.mark.parametrize("fn,ref", [(rng.rand, torch.rand), (rng.randn, torch.randn)])
def test_cpu_generator_drives_any_target_device(fn, ref):
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x = fn(4, 5, generator=g1, device="cpu", dtype=torch.float64)
    assert torch.equal(x, ref(4, 5, generator=g2, dtype=torch.float64))
    y = fn(7, generator=g1, device="meta")          # torch.rand(..., generator=cpu, device=other) would raise
    assert y.device.type == "meta" and y.shape == (7,)
    ref(7, generator=g2)                            # the meta draw consumed the CPU stream like a CPU draw
    assert torch.equal(g1.get_state(), g2.get_state())


def test_no_generator_draws_on_target_device():
    assert rng.randn(3, device="meta").device.type == "meta"
