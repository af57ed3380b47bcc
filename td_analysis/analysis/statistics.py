"""Paired comparisons over seeds: differences with 95 % confidence intervals.

Two regularisers trained with the same seeds share the data order and initial weights of each
seed, so the comparison the reports make is the *paired* difference ``d_s = a_s − b_s`` over the
seeds s = 1 … n.  Its interval is Student's t (what the reports use)::

    d̄ ± t_{n−1, (1+level)/2} · s_d / √n,     s_d² = Σ (d_s − d̄)² / (n − 1)

and, optionally, a seeded percentile bootstrap over the seeds (:func:`bootstrap_interval`,
``scipy.stats.bootstrap``), which with five seeds or fewer is too narrow to be trusted.  A claim
is drawn only when the interval excludes zero (:attr:`PairedDifference.excludes_zero`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "LEVEL",
    "PairedDifference",
    "paired_difference",
    "bootstrap_interval",
]

LEVEL = 0.95  # the confidence level of every interval the reports print


@dataclass(frozen=True)
class PairedDifference:
    """``mean`` of ``d_s = a_s − b_s`` over ``n`` seeds and its ``level`` interval [lo, hi]."""

    mean: float
    std: float  # sample std of the d_s (ddof = 1)
    n: int
    lo: float
    hi: float
    level: float = LEVEL
    method: str = "t"
    differences: tuple[float, ...] = ()

    @property
    def half_width(self) -> float:
        """``(hi − lo) / 2``: the ± of the t interval."""
        return (self.hi - self.lo) / 2

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (a finite interval only)."""
        return bool(np.isfinite(self.lo) and np.isfinite(self.hi) and (self.lo > 0 or self.hi < 0))

    def as_dict(self) -> dict:
        """A JSON-able dict (the differences as a list)."""
        d = asdict(self)
        d["differences"] = list(self.differences)
        return d


def _differences(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(
            f"paired values need two 1-D sequences of the same length (one value per seed), "
            f"got shapes {x.shape} and {y.shape}"
        )
    if x.size < 2:
        raise ValueError(f"a paired difference needs at least 2 seeds, got {x.size}")
    d = x - y
    if not np.all(np.isfinite(d)):
        raise ValueError("paired values must be finite")
    return d


def _check_level(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    return float(level)


def paired_difference(
    a: Sequence[float], b: Sequence[float], *, level: float = LEVEL
) -> PairedDifference:
    """Mean of ``a_s − b_s`` over seeds with Student's t interval ``d̄ ± t_{n−1} s_d/√n``.

    ``a`` and ``b`` hold one value per seed, in the same seed order.  With all differences equal
    the interval has width 0.
    """
    from scipy import stats  # here, not at import: 1.3 s of every start-up

    level = _check_level(level)
    d = _differences(a, b)
    n = d.size
    mean, std = float(d.mean()), float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return PairedDifference(mean, std, n, mean - half, mean + half, level, "t", tuple(d.tolist()))


def bootstrap_interval(
    a: Sequence[float],
    b: Sequence[float],
    *,
    level: float = LEVEL,
    n_resamples: int = 9999,
    seed: int = 0,
) -> PairedDifference:
    """The same difference with a seeded percentile bootstrap interval over the seeds
    (``scipy.stats.bootstrap`` of the mean of the d_s; resamples seeds with replacement)."""
    from scipy import stats  # here, not at import: 1.3 s of every start-up

    level = _check_level(level)
    d = _differences(a, b)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    mean, std = float(d.mean()), float(d.std(ddof=1))
    if np.all(d == d[0]):  # a degenerate sample: every resample has the same mean
        lo = hi = mean
    else:
        res = stats.bootstrap(
            (d,),
            np.mean,
            confidence_level=level,
            n_resamples=n_resamples,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return PairedDifference(mean, std, d.size, lo, hi, level, "bootstrap", tuple(d.tolist()))
