"""Intervals for the benchmarks' numbers: Wilson score intervals for rates (Wilson 1927; Newcombe 1998, method 3),
percentile-bootstrap intervals for statistics of feature sets (Efron & Tibshirani 1993, ch. 13; optionally
stratified and shifted by the bootstrap's bias estimate), and pooling of training seeds. At n = 72 a 95 % interval
on an accuracy near 0.95 is about +-5 points wide, so a table ranks methods only where their intervals separate."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

Z95 = 1.959964  # standard-normal quantile 0.975


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials: (c -+ h) / (n + z^2), c = k + z^2/2,
    h = z sqrt(k (n - k) / n + z^2 / 4) (Newcombe 1998, eq. 3); n = 0 gives (0, 1)."""
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    centre = k + z * z / 2
    half = z * math.sqrt(k * (n - k) / n + z * z / 4)
    lo = 0.0 if k == 0 else max(0.0, (centre - half) / (n + z * z))
    hi = 1.0 if k == n else min(1.0, (centre + half) / (n + z * z))
    return lo, hi


def rate(k: int, n: int, z: float = Z95) -> dict:
    """{rate, lo, hi, n, k}: k / n with its Wilson interval (rate None when n = 0)."""
    lo, hi = wilson_interval(int(k), int(n), z)
    return {"rate": k / n if n else None, "lo": lo, "hi": hi, "n": int(n), "k": int(k)}


def rates_differ(a: dict, b: dict) -> bool:
    """True when two rates' intervals do not overlap (a conservative test: overlapping 95 % intervals can still
    differ at the 5 % level, non-overlapping ones always do)."""
    return a["hi"] < b["lo"] or b["hi"] < a["lo"]


def _rows(x) -> np.ndarray:
    x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError("bootstrap needs arrays with at least one row")
    return x


def bootstrap_draws(statistic: Callable[..., float], *arrays, n_boot: int = 200, seed: int = 0,
                    strata: Sequence | None = None) -> np.ndarray:
    """statistic(*resampled arrays) [n_boot]: every array's rows resampled with replacement, each array independently;
    with strata (one label per row, all arrays alike) rows are resampled within their stratum, keeping its size."""
    if n_boot < 2:
        raise ValueError(f"need n_boot >= 2, got {n_boot}")
    xs = [_rows(a) for a in arrays]
    rng = np.random.default_rng(seed)
    if strata is None:
        pick = lambda n: rng.integers(0, n, n)                                   # noqa: E731
    else:
        if any(len(x) != len(strata) for x in xs):
            raise ValueError(f"strata has {len(strata)} labels but the arrays have {[len(x) for x in xs]} rows")
        groups: dict = {}
        for i, label in enumerate(strata):
            groups.setdefault(label, []).append(i)
        idx = [np.asarray(g) for g in groups.values()]
        pick = lambda n: np.concatenate([g[rng.integers(0, len(g), len(g))] for g in idx])  # noqa: E731
    return np.array([statistic(*[x[pick(len(x))] for x in xs]) for _ in range(n_boot)], dtype=np.float64)


def bootstrap_interval(statistic: Callable[..., float], *arrays, n_boot: int = 200, seed: int = 0,
                       alpha: float = 0.05, strata: Sequence | None = None,
                       debias: bool = False) -> tuple[float, float]:
    """Percentile bootstrap interval of statistic(*arrays) (Efron & Tibshirani 1993, eq. 13.5) from bootstrap_draws.
    debias=True shifts it by the bootstrap's bias estimate mean(draws) - statistic(*arrays) (their eq. 10.2): for
    statistics that resampling itself inflates, such as the Frechet distance (duplicated rows shrink the covariances'
    effective rank), the plain percentile interval can lie entirely above the estimate."""
    if not 0 < alpha < 1:
        raise ValueError(f"need 0 < alpha < 1, got {alpha}")
    draws = bootstrap_draws(statistic, *arrays, n_boot=n_boot, seed=seed, strata=strata)
    lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    shift = float(draws.mean() - statistic(*[_rows(a) for a in arrays])) if debias else 0.0
    return float(lo) - shift, float(hi) - shift


def spread(values: Sequence[float]) -> dict:
    """{mean, min, max} of per-seed values (None entries ignored; all None -> Nones)."""
    v = [float(x) for x in values if x is not None]
    if not v:
        return {"mean": None, "min": None, "max": None}
    return {"mean": sum(v) / len(v), "min": min(v), "max": max(v)}


def pool_rates(rates: Sequence[dict], z: float = Z95) -> dict:
    """Several training seeds' rates ({k, n} each) as one: rate = the mean of the seeds' rates, (lo, hi) the Wilson
    interval of the pooled counts (sum k / sum n; images only, so it leaves out the seed-to-seed variance that
    min / max show), seeds = how many were pooled."""
    if not rates:
        raise ValueError("nothing to pool")
    k, n = sum(int(r["k"]) for r in rates), sum(int(r["n"]) for r in rates)
    s = spread([r["k"] / r["n"] for r in rates if r["n"]])
    lo, hi = wilson_interval(k, n, z)
    return {"rate": s["mean"], "lo": lo, "hi": hi, "n": n, "k": k, "min": s["min"], "max": s["max"],
            "seeds": len(rates)}
