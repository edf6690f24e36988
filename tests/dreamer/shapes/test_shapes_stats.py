"""Benchmark intervals: Wilson against closed forms and published values, its coverage by simulation (and a Wald
interval failing the same check), the percentile bootstrap, seed pooling."""
import math

import numpy as np
import pytest

from dreamer.shapes.evaluator import frechet_distance
from dreamer.shapes.stats import (Z95, bootstrap_interval, pool_rates, rate, rates_differ, spread,
                                  wilson_interval)

Z2 = Z95 * Z95


def test_wilson_closed_forms():
    # k = 0: (0, z^2 / (n + z^2)); k = n: (n / (n + z^2), 1); k = n / 2: 0.5 -+ z sqrt(n/4 + z^2/4) / (n + z^2)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(Z2 / (10 + Z2), abs=1e-12))
    assert wilson_interval(72, 72) == (pytest.approx(72 / (72 + Z2), abs=1e-12), 1.0)
    h = Z95 * math.sqrt(10 / 4 + Z2 / 4) / (10 + Z2)
    assert wilson_interval(5, 10) == pytest.approx((0.5 - h, 0.5 + h), abs=1e-12)
    assert wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(72, 72)[0] == pytest.approx(0.9494, abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_wilson_matches_newcombe_1998_table():
    """Newcombe (1998), Stat. Med. 17:857, Table I, method 3 (score interval without continuity correction)."""
    for (k, n), (lo, hi) in {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605), (0, 20): (0.0, 0.1611),
                             (1, 29): (0.0061, 0.1718)}.items():
        assert wilson_interval(k, n) == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_symmetry_and_bad_input():
    lo, hi = wilson_interval(7, 30)
    assert wilson_interval(23, 30) == pytest.approx((1 - hi, 1 - lo), abs=1e-12)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    for k, n in ((-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            wilson_interval(k, n)


def _coverage(interval, n: int, trials: int = 20000, seed: int = 0) -> float:
    """Fraction of simulated k ~ Bin(n, p), p ~ U(0.5, 0.99) (the benchmarks' accuracy range), covered."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.5, 0.99, trials)
    k = rng.binomial(n, p)
    return float(np.mean([lo <= pi <= hi for pi, (lo, hi) in zip(p, (interval(int(x), n) for x in k))]))


def _wald(k: int, n: int) -> tuple[float, float]:
    p = k / n
    h = Z95 * math.sqrt(p * (1 - p) / n)
    return p - h, p + h


def test_wilson_covers_95_percent_where_wald_does_not():
    assert 0.935 <= _coverage(wilson_interval, 72) <= 0.965
    assert 0.935 <= _coverage(wilson_interval, 1008, trials=5000) <= 0.965
    assert _coverage(_wald, 72) < 0.93  # the check can fail: the Wald interval undercovers near 1


def test_rate_and_difference():
    r = rate(68, 72)
    assert r["rate"] == 68 / 72 and r["n"] == 72 and r["k"] == 68
    assert (r["lo"], r["hi"]) == wilson_interval(68, 72)
    assert not rates_differ(rate(68, 72), rate(70, 72))        # one or two images at n = 72: within the noise
    assert rates_differ(rate(900, 1008), rate(960, 1008))      # 89.3 % vs 95.2 % at n = 1008
    assert rates_differ(rate(960, 1008), rate(900, 1008))


def test_bootstrap_brackets_the_mean_and_is_deterministic():
    x = np.random.default_rng(1).normal(3.0, 1.0, 400)
    lo, hi = bootstrap_interval(np.mean, x, n_boot=400, seed=0)
    assert lo < 3.0 < hi
    assert 0.7 * 2 * Z95 / 20 < hi - lo < 1.3 * 2 * Z95 / 20  # ~ 2 z sigma / sqrt(n)
    assert bootstrap_interval(np.mean, x, n_boot=400, seed=0) == (lo, hi)
    assert bootstrap_interval(np.mean, x, n_boot=400, seed=1) != (lo, hi)


def test_bootstrap_resamples_each_array():
    rng = np.random.default_rng(2)
    a, b = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 2.0, 500)
    lo, hi = bootstrap_interval(lambda u, v: u.mean() - v.mean(), a, b, n_boot=300, seed=0)
    assert lo < 1.0 < hi
    width = 2 * Z95 * math.sqrt(1 / 300 + 4 / 500)             # both sets' sampling noise counts
    assert 0.7 * width < hi - lo < 1.3 * width


def test_bootstrap_frechet_distance_on_features():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.0, 1.0, (200, 4)), rng.normal(0.5, 1.0, (200, 4))
    lo, hi = bootstrap_interval(frechet_distance, a, b, n_boot=50, seed=0)
    assert 0 < lo < hi and lo < 4 * 0.25 * 1.5 and hi > 4 * 0.25 * 0.5  # true FD = 4 x 0.5^2 = 1
    with pytest.raises(ValueError):
        bootstrap_interval(np.mean, np.zeros(0))


def test_stratified_bootstrap_keeps_each_stratum():
    """Constant within each stratum: the stratified mean never moves; resampling across strata does."""
    x = np.repeat([0.0, 1.0, 5.0], 20)
    labels = np.repeat(["a", "b", "c"], 20)
    assert bootstrap_interval(np.mean, x, n_boot=50, strata=labels) == pytest.approx((2.0, 2.0), abs=1e-12)
    lo, hi = bootstrap_interval(np.mean, x, n_boot=50)
    assert hi - lo > 0.5
    with pytest.raises(ValueError):
        bootstrap_interval(np.mean, x, n_boot=50, strata=labels[:10])


def test_debiased_bootstrap_brackets_the_frechet_estimate():
    """Two samples of one Gaussian (D = 16, n = 100): resampling inflates FD, so the plain percentile interval lies
    above the estimate; shifted by the bootstrap's bias estimate it brackets it."""
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(100, 16)), rng.normal(size=(100, 16))
    fd = frechet_distance(a, b)
    lo, hi = bootstrap_interval(frechet_distance, a, b, n_boot=100, seed=0)
    assert fd < lo
    lo, hi = bootstrap_interval(frechet_distance, a, b, n_boot=100, seed=0, debias=True)
    assert lo < fd < hi


def test_pool_rates_over_seeds():
    seeds = [rate(950, 1008), rate(960, 1008), rate(980, 1008)]
    p = pool_rates(seeds)
    assert p["rate"] == pytest.approx((950 + 960 + 980) / 3024) and p["seeds"] == 3
    assert (p["k"], p["n"]) == (2890, 3024) and (p["lo"], p["hi"]) == wilson_interval(2890, 3024)
    assert (p["min"], p["max"]) == (950 / 1008, 980 / 1008)
    assert p["hi"] - p["lo"] < seeds[0]["hi"] - seeds[0]["lo"]
    assert spread([1.0, None, 3.0]) == {"mean": 2.0, "min": 1.0, "max": 3.0}
    with pytest.raises(ValueError):
        pool_rates([])
