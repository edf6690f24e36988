"""The schedule's SNR and weightings (guidance.noise_schedule): one definition each, the same float ops as the
formulas they replaced (bit-identical), and the training targets of each prediction type."""
import torch

from guidance import (add_noise, ddpm_alphas_cumprod, eps_from_output, inv_snr, min_snr_weight, native_weight,
                      prediction_target, snr, truncated_snr_weight, weighting)


def test_snr_and_weightings_are_the_written_out_formulas_exactly():
    ac = ddpm_alphas_cumprod()
    t = torch.tensor([0, 20, 250, 500, 980, 999])
    abar = ac[t]
    assert torch.equal(snr(abar), abar / (1 - abar)) and torch.equal(inv_snr(abar), (1 - abar) / abar)
    assert torch.equal(truncated_snr_weight(abar), (abar / (1 - abar)).clamp(min=1.0))
    r = abar / (1 - abar)
    assert torch.equal(min_snr_weight(abar, 5.0), r.clamp(max=5.0) / r)
    assert torch.equal(native_weight("sample", abar), r)
    assert torch.equal(weighting("snr_inv", ac, t), ((1 - abar) / abar).sqrt())
    assert torch.equal(weighting("sds", ac, t), 1 - abar)


def test_prediction_targets_invert_to_the_noise():
    ac = ddpm_alphas_cumprod().float()
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([10, 300, 700, 990])
    x_t = add_noise(x0, noise, t, ac)
    for kind in ("epsilon", "v_prediction", "sample"):
        eps = eps_from_output(prediction_target(kind, x0, noise, t, ac), x_t, t, ac, kind)
        assert torch.allclose(eps, noise, atol=2e-3 if kind == "sample" else 1e-5), kind
    a, s = ac[t].sqrt().view(-1, 1, 1, 1), (1 - ac[t]).sqrt().view(-1, 1, 1, 1)
    assert torch.equal(prediction_target("v_prediction", x0, noise, t, ac), a * noise - s * x0)
