"""The one PSNR (renderers.metrics.psnr): the mean of per-image PSNRs over a batch, capped at 100 dB."""
import math

import numpy as np
import pytest
import torch

from renderers.metrics import psnr


def test_psnr_is_the_mean_of_per_image_psnrs():
    a = torch.rand(2, 3, 8, 8, dtype=torch.float64) * 0.8
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-9)  # mse 0.01 in both images
    assert psnr(a, a) == pytest.approx(100.0)                   # capped (MSE floor 1e-10)
    b = a.clone()
    b[0] += 0.1                                                 # MSEs 1e-2 and 1e-4: 20 and 40 dB
    b[1] += 0.01
    assert psnr(a, b) == pytest.approx((20.0 + 40.0) / 2, abs=1e-9)          # the mean of the PSNRs, 30 dB ...
    pooled = -10 * math.log10((1e-2 + 1e-4) / 2)                              # ... not the pooled pixels' 22.97 dB
    assert abs(psnr(a, b) - pooled) > 7
    c = a.clone()
    c[1] += 0.01                                                # one image exact: the mean of 100 (capped) and 40
    assert psnr(a, c) == pytest.approx((100.0 + 40.0) / 2)


def test_psnr_single_image_float32_and_numpy():
    a = torch.zeros(3, 4, 4)
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-5)    # not a batch: one PSNR of the whole array
    assert psnr(np.zeros((1, 3, 4, 4)), np.full((1, 3, 4, 4), 0.01)) == pytest.approx(40.0)
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
