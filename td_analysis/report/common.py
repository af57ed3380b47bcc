"""Shared pieces of the report text: mean ± std, the paired-difference sentences, README blocks.

Every sentence that states a result is written by :func:`claim` from a paired difference over
seeds (:func:`td_analysis.analysis.statistics.paired_difference`, Student's t interval): a
difference only where its interval excludes zero, else "no difference within the seeds' spread".
The
family modules (:mod:`~td_analysis.report.table1`, :mod:`~td_analysis.report.fashion`,
:mod:`~td_analysis.report.training_length`) build their markdown from these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from td_analysis.analysis.statistics import LEVEL, PairedDifference, paired_difference

__all__ = [
    "LEVEL",
    "mean_std",
    "format_mean_std",
    "Metric",
    "NO_DIFFERENCE",
    "interval_text",
    "claim",
    "capital",
    "paired_curve",
    "listed",
    "duration",
    "README_COMMAND",
    "replace_generated",
    "generated_marker",
]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def format_mean_std(values: Sequence[float], pct: bool = False, digits: int = 4) -> str:
    """``"m ± s"`` (``pct``: as percentages with two decimals)."""
    m, s = mean_std(values)
    if pct:
        return f"{100 * m:.2f} ± {100 * s:.2f}%"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


# ----------------------------------------------------------------------------- claims
@dataclass(frozen=True)
class Metric:
    """One compared quantity: how to read it from a column dict and how to say its difference.

    ``sentence`` has the fields ``{a}``, ``{b}``, ``{x}`` (|mean difference|), ``{h}`` (half
    width of the interval) and ``{dir}`` (``more`` for a positive difference, else ``less``).
    """

    key: str
    label: str
    scale: float
    unit: str
    digits: int
    sentence: str
    more: str
    less: str


NO_DIFFERENCE = "no difference within the seeds' spread"


def interval_text(diff: PairedDifference, metric: Metric) -> str:
    """``"+1.23 [-0.50, +2.96]"``: the mean difference and its interval, scaled."""
    d, sc = metric.digits, metric.scale
    return f"{sc * diff.mean:+.{d}f} [{sc * diff.lo:+.{d}f}, {sc * diff.hi:+.{d}f}]"


def claim(a: str, b: str, metric: Metric, diff: PairedDifference, where: str = "") -> str:
    """The sentence stating the paired difference ``a − b``: a result only when its interval
    excludes zero, else ``"no difference within the seeds' spread"``."""
    d, sc = metric.digits, metric.scale
    span = (
        f"{diff.level:.0%} t interval {sc * diff.lo:+.{d}f} to {sc * diff.hi:+.{d}f}"
        f"{metric.unit} over {diff.n} seeds"
    )
    if diff.excludes_zero:
        text = metric.sentence.format(
            a=a,
            b=b,
            x=f"{abs(sc * diff.mean):.{d}f}",
            h=f"{sc * diff.half_width:.{d}f}",
            dir=metric.more if diff.mean > 0 else metric.less,
        )
        return f"{where}{text} ({span})."
    return (
        f"{where}{a} vs {b}, {metric.label}: {NO_DIFFERENCE} (difference "
        f"{sc * diff.mean:+.{d}f}{metric.unit}, {span})."
    )


def capital(text: str) -> str:
    """``text`` with its first letter upper-case (the sentences start a bullet)."""
    return text[:1].upper() + text[1:]


def paired_curve(
    records: Sequence[Mapping],
    a: Mapping,
    b: Mapping,
    *,
    x: str,
    value: str = "accuracy",
    level: float = LEVEL,
) -> list[tuple[float, PairedDifference]]:
    """``[(x, d)]``: at each ``x`` the paired difference over seeds of ``value`` between the
    records matching every item of ``a`` and those matching ``b`` (only seeds both have; an
    ``x`` with fewer than 2 such seeds is left out)."""

    def pick(sel: Mapping) -> dict[float, dict[int, float]]:
        out: dict[float, dict[int, float]] = {}
        for r in records:
            if all(r.get(k) == v for k, v in sel.items()):
                out.setdefault(float(r[x]), {})[int(r["seed"])] = float(r[value])
        return out

    ra, rb = pick(a), pick(b)
    curve = []
    for xv in sorted(set(ra) & set(rb)):
        seeds = sorted(set(ra[xv]) & set(rb[xv]))
        if len(seeds) >= 2:
            diff = paired_difference(
                [ra[xv][s] for s in seeds], [rb[xv][s] for s in seeds], level=level
            )
            curve.append((xv, diff))
    return curve


def listed(values: Iterable[object]) -> str:
    """``a, b, c``: a list or tuple of settings as plain text (the same from JSON or Python)."""
    return ", ".join(str(v) for v in values)


def duration(seconds: float) -> str:
    """``"3 min 50 s"`` (rounded to the second)."""
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m else f"{s} s"


# ----------------------------------------------------------------------------- README blocks
README_COMMAND = "td-analysis reproduce --report-only --experiment all --readme README.md"


def replace_generated(text: str, name: str, body: str) -> str:
    """``text`` with the block between ``<!-- begin generated: name -->`` and
    ``<!-- end generated: name -->`` replaced by ``body`` (markers kept)."""
    begin, end = f"<!-- begin generated: {name} ", f"<!-- end generated: {name} -->"
    i = text.find(begin)
    j = text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"no '{begin}…' … '{end}' block in the README")
    head_end = text.index("-->", i) + len("-->")
    return text[:head_end] + "\n" + body.rstrip("\n") + "\n" + text[j:]


def generated_marker(name: str, source: str) -> str:
    """The opening marker of a generated README block (what :func:`replace_generated` finds)."""
    return f"<!-- begin generated: {name} from {source} by `{README_COMMAND}`; do not edit -->"
