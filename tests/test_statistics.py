"""``td_analysis.analysis.statistics``: paired differences over seeds and their 95 % intervals.

References: ``scipy.stats.ttest_rel(...).confidence_interval`` (a separate scipy code path from
the ``t.ppf`` the module uses), closed-form t quantiles for 1 and 2 degrees of freedom, the
exact bootstrap distribution of a mean of two values, and the coverage of the interval on
seeded normal samples (a binomial 5σ bound).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from td_analysis.analysis.statistics import LEVEL, bootstrap_interval, paired_difference


def t_quantile_closed_form(p: float, dof: int) -> float:
    """Student t quantiles in closed form: Cauchy for 1 dof, ``(2p−1)/√(2p(1−p))`` for 2."""
    if dof == 1:
        return math.tan(math.pi * (p - 0.5))
    if dof == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    raise ValueError(dof)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([0.41, 0.40, 0.42], [0.27, 0.25, 0.29]),  # 2 dof
        ([1.0, 3.0], [0.0, 0.0]),  # 1 dof: d = 1, 3
    ],
)
def test_t_interval_matches_the_closed_form(a, b) -> None:
    d = np.subtract(a, b)
    n = d.size
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = t_quantile_closed_form(0.975, n - 1) * sd / math.sqrt(n)
    got = paired_difference(a, b)
    assert got.n == n and got.level == LEVEL and got.method == "t"
    assert got.mean == pytest.approx(mean, rel=1e-12)
    assert got.std == pytest.approx(sd, rel=1e-12)
    assert got.lo == pytest.approx(mean - half, rel=1e-10)
    assert got.hi == pytest.approx(mean + half, rel=1e-10)
    assert got.half_width == pytest.approx(half, rel=1e-10)
    assert got.differences == pytest.approx(tuple(d))


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_t_interval_matches_scipy_ttest_rel(n: int, level: float) -> None:
    rng = np.random.default_rng(n)
    a = rng.normal(0.4, 0.02, n)
    b = a - rng.normal(0.01, 0.03, n)
    ci = stats.ttest_rel(a, b).confidence_interval(confidence_level=level)
    got = paired_difference(a, b, level=level)
    assert got.lo == pytest.approx(ci.low, rel=1e-9, abs=1e-15)
    assert got.hi == pytest.approx(ci.high, rel=1e-9, abs=1e-15)
    assert got.excludes_zero == (ci.low > 0 or ci.high < 0)


def test_pairing_order_matters() -> None:
    """Paired, not two-sample: the same values re-ordered change the interval; a common seed
    effect (added to both) cancels exactly."""
    a, b = [0.30, 0.50, 0.70, 0.60], [0.290, 0.488, 0.689, 0.587]
    paired = paired_difference(a, b)
    assert paired.excludes_zero
    assert not paired_difference(a, b[::-1]).excludes_zero
    shift = [5.0, -3.0, 11.0, 0.5]
    moved = paired_difference(np.add(a, shift), np.add(b, shift))
    assert moved.lo == pytest.approx(paired.lo) and moved.hi == pytest.approx(paired.hi)


def test_coverage_on_normal_samples() -> None:
    """On 4,000 seeded samples of n = 5 normal differences the 95 % interval holds the true mean
    in 95 % ± 5σ of them (σ = √(0.95·0.05/4000) ≈ 0.34 %)."""
    rng = np.random.default_rng(0)
    trials, mu = 4000, 0.3
    hits = 0
    for _ in range(trials):
        d = rng.normal(mu, 1.0, 5)
        r = paired_difference(d, np.zeros(5))
        hits += r.lo <= mu <= r.hi
    sigma = math.sqrt(0.95 * 0.05 / trials)
    assert abs(hits / trials - 0.95) < 5 * sigma


def test_equal_differences_give_a_zero_width_interval() -> None:
    same = paired_difference([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    assert same.lo == same.hi == same.mean == pytest.approx(0.5)
    assert same.excludes_zero
    zero = paired_difference([0.1, 0.2], [0.1, 0.2])
    assert (zero.lo, zero.hi) == (0.0, 0.0) and not zero.excludes_zero


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        ([1.0, 2.0], [1.0], "same length"),
        ([1.0], [0.0], "at least 2 seeds"),
        ([1.0, float("nan")], [0.0, 0.0], "finite"),
        ([[1.0, 2.0]], [[0.0, 0.0]], "1-D"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(a, b, match) -> None:
    with pytest.raises(ValueError, match=match):
        paired_difference(a, b)
    with pytest.raises(ValueError, match=match):
        bootstrap_interval(a, b)


@pytest.mark.parametrize("level", [0.0, 1.0, -0.5, 95.0])
def test_bad_level_is_refused(level: float) -> None:
    with pytest.raises(ValueError, match="confidence level"):
        paired_difference([1.0, 2.0], [0.0, 0.0], level=level)


def test_bootstrap_of_two_seeds_is_the_range() -> None:
    """The mean of a resample of {x, y} is x, (x+y)/2 or y with probabilities ¼, ½, ¼, so the
    2.5 % and 97.5 % percentiles are exactly x and y."""
    got = bootstrap_interval([0.3, 0.7], [0.1, 0.2], n_resamples=4000, seed=1)
    assert got.method == "bootstrap" and got.n == 2
    assert got.mean == pytest.approx(0.35)
    assert got.lo == pytest.approx(0.2) and got.hi == pytest.approx(0.5)


def test_bootstrap_is_seeded_and_close_to_brute_force() -> None:
    """Same seed, same interval; and within Monte-Carlo error of a brute-force numpy percentile
    bootstrap of the seeds (different stream, 20,000 resamples each)."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.4, 0.02, 6), rng.normal(0.38, 0.02, 6)
    one = bootstrap_interval(a, b, n_resamples=20000, seed=7)
    assert one == bootstrap_interval(a, b, n_resamples=20000, seed=7)
    d = a - b
    idx = np.random.default_rng(99).integers(0, d.size, (20000, d.size))
    means = d[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    spread = d.std(ddof=1) / math.sqrt(d.size)
    assert one.lo == pytest.approx(lo, abs=0.1 * spread)
    assert one.hi == pytest.approx(hi, abs=0.1 * spread)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_interval(a, b, n_resamples=0)


def test_as_dict_is_json_able() -> None:
    import json

    d = paired_difference([0.3, 0.5, 0.4], [0.1, 0.2, 0.3]).as_dict()
    back = json.loads(json.dumps(d))
    assert back["n"] == 3 and back["method"] == "t" and len(back["differences"]) == 3
