"""Report text (markdown) of the experiments' tables, apart from the code computing the numbers.

Every function takes the numbers (as written to the JSON results) and returns markdown; nothing
here computes a result or names a data set: the experiment passes the description in.  The only
arithmetic is the report's statistics over seeds (mean ± std, paired differences with t
intervals from :mod:`td_analysis.statistics`), and every sentence that states a result is
written here from those numbers: a difference only where its interval excludes zero
(:func:`claim`), else "no difference within the seeds' spread".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from td_analysis.statistics import LEVEL, PairedDifference, paired_difference

__all__ = [
    "mean_std",
    "format_mean_std",
    "Metric",
    "TOY_METRICS",
    "NO_DIFFERENCE",
    "metric_values",
    "interval_text",
    "claim",
    "paired_curve",
    "toy_difference_curves",
    "toy_names",
    "toy_comparisons",
    "toy_split_markdown",
    "toy_claims",
    "table1_markdown",
    "pruning_columns",
    "pruning_cell",
    "fashion_pruning_markdown",
    "FASHION_NAMES",
    "FASHION_ACCURACY",
    "CLAIM_KS",
    "fashion_comparisons",
    "fashion_difference_curve",
    "fashion_claims",
    "fashion_differences_markdown",
    "fashion_difference_panels",
    "FASHION_FIGURES",
    "README_COMMAND",
    "readme_toy_results",
    "readme_fashion_results",
    "replace_generated",
    "generated_marker",
    "training_length_claims",
    "fashion_training_length_claims",
    "fashion_training_length_markdown",
    "readme_training_length",
    "fashion_readme",
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


_fmt = format_mean_std


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


def _lost(c: Mapping) -> list[float]:
    return list(np.subtract(c["accuracy"], c["pruned_accuracy"]))


TOY_METRICS = {
    "accuracy": Metric(
        "accuracy",
        "unpruned accuracy",
        100.0,
        " points",
        2,
        "{a} is {x} ± {h} points {dir} accurate than {b} before pruning",
        "more",
        "less",
    ),
    "pruned_accuracy": Metric(
        "pruned_accuracy",
        "accuracy after pruning",
        100.0,
        " points",
        2,
        "{a} is {x} ± {h} points {dir} accurate than {b} after pruning",
        "more",
        "less",
    ),
    "accuracy_lost": Metric(
        "accuracy_lost",
        "accuracy lost by pruning",
        100.0,
        " points",
        2,
        "{a} loses {x} ± {h} points {dir} accuracy to pruning than {b}",
        "more",
        "less",
    ),
    "abs_measured": Metric(
        "abs_measured",
        "measured abs(ΔE)",
        1.0,
        "",
        4,
        "the measured |ΔE| of {a} is {x} ± {h} {dir} than that of {b}",
        "larger",
        "smaller",
    ),
}
NO_DIFFERENCE = "no difference within the seeds' spread"


def metric_values(column: Mapping, metric: Metric) -> list[float]:
    """Per-seed values of ``metric`` from one regulariser's column dict of ``table1.json``."""
    return _lost(column) if metric.key == "accuracy_lost" else list(column[metric.key])


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


def _capital(text: str) -> str:
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


def toy_difference_curves(results: Mapping) -> dict[str, dict[str, list]]:
    """For ``table1_differences.png``: per pruning kind, targeted dropout minus none and minus
    each control over the pruned fraction (``pruning_curves`` of ``table1.json``)."""
    rows = results.get("pruning_curves") or []
    names = _toy_names(results)
    regs = {r["regulariser"] for r in rows}
    out: dict[str, dict[str, list]] = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        out[f"{kind} pruning"] = {
            f"{names['targeted-weight']} − {names[b]}": paired_curve(
                rows,
                {"regulariser": "targeted-weight", "kind": kind},
                {"regulariser": b, "kind": kind},
                x="fraction",
            )
            for b in ("none", "dropout", "dropconnect")
            if b in regs and "targeted-weight" in regs
        }
    return out


# ----------------------------------------------------------------------------- toy (Table 1)
TOY_NAMES = {"none": "none", "targeted-weight": "targeted dropout"}


def toy_names(settings: Mapping) -> dict[str, str]:
    """Row labels of ``table1.md``: Table 1's two, then the controls at γ·α."""
    rate = settings["gamma"] * settings["alpha"]
    return {
        **TOY_NAMES,
        "dropout": f"dropout α = {rate:g}",
        "dropconnect": f"DropConnect α = {rate:g}",
    }


def _toy_names(results: Mapping) -> dict[str, str]:
    """:func:`toy_names`, with the controls' rates read from ``results["regularisers"]`` (the
    trained configs) when the JSON has them."""
    names = toy_names(results["settings"])
    for reg, cfg in (results.get("regularisers") or {}).items():
        if reg in ("dropout", "dropconnect"):
            names[reg] = (
                f"{'DropConnect' if reg == 'dropconnect' else 'dropout'} α = {cfg['alpha']:g}"
            )
    return names


def toy_comparisons(rows: Mapping, level: float = LEVEL) -> list[tuple[str, str, dict]]:
    """``(a, b, {metric key: PairedDifference})`` of targeted dropout vs none and vs each control
    present in ``rows`` (one split of ``table1.json``'s ``table1``), paired by seed."""
    out = []
    a = "targeted-weight"
    if a not in rows or len(rows[a]["accuracy"]) < 2:  # a difference over seeds needs two
        return out
    for b in ("none", "dropout", "dropconnect"):
        if b not in rows:
            continue
        out.append(
            (
                a,
                b,
                {
                    key: paired_difference(
                        metric_values(rows[a], m), metric_values(rows[b], m), level=level
                    )
                    for key, m in TOY_METRICS.items()
                },
            )
        )
    return out


def _toy_table_rows(rows: Mapping, names: Mapping[str, str], paper: Mapping) -> list[str]:
    lines = [
        "| regularisation | abs(ΔE) estimate | measured abs(ΔE) | unpruned accuracy | "
        "pruned accuracy | paper abs(ΔE) | paper unpruned | paper pruned |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for reg, r in rows.items():
        ref = paper.get(reg)
        paper_cells = (
            f"{ref['abs_delta_e']} | {ref['unpruned_accuracy']:.2%} | {ref['pruned_accuracy']:.2%}"
            if ref
            else "– | – | –"
        )
        lines.append(
            f"| {names.get(reg, reg)} | {_fmt(r['abs_estimate'])} | {_fmt(r['abs_measured'])} | "
            f"{_fmt(r['accuracy'], pct=True)} | {_fmt(r['pruned_accuracy'], pct=True)} | "
            f"{paper_cells} |"
        )
    return lines


def _paper_drop(paper: Mapping, reg: str) -> float:
    p = paper[reg]
    return 100 * (p["unpruned_accuracy"] - p["pruned_accuracy"])


def toy_split_markdown(split: str, rows: Mapping, results: Mapping, *, heading: str = "##") -> str:
    """One split of ``table1.md``: the table (Table 1's rows, then the controls), the accuracy
    lost and |ΔE| ratios, and the paired differences over seeds with the sentences they allow."""
    paper = results["paper_table1"]
    names = _toy_names(results)
    n = results["n_eval"][split]
    lines = [f"{heading} {split} split ({n:,} images)", ""]
    lines += _toy_table_rows(rows, names, paper)
    drops = {reg: 100 * mean_std(_lost(r))[0] for reg, r in rows.items()}
    none, td = rows.get("none"), rows.get("targeted-weight")
    if none and td:
        ratio_est = mean_std(none["abs_estimate"])[0] / max(mean_std(td["abs_estimate"])[0], 1e-12)
        ratio_meas = mean_std(none["abs_measured"])[0] / max(mean_std(td["abs_measured"])[0], 1e-12)
        paper_ratio = paper["none"]["abs_delta_e"] / paper["targeted-weight"]["abs_delta_e"]
        controls = "".join(
            f", {names[reg]} {drops[reg]:.2f} points" for reg in rows if reg not in TOY_NAMES
        )
        lines += [
            "",
            f"Accuracy lost by pruning (mean over seeds): none {drops['none']:.2f} points, "
            f"targeted dropout {drops['targeted-weight']:.2f} points{controls} (paper: "
            f"{_paper_drop(paper, 'none'):.2f} and {_paper_drop(paper, 'targeted-weight'):.2f}). "
            f"|ΔE| ratio none / TD: estimate {ratio_est:.1f}×, measured {ratio_meas:.1f}× "
            f"(paper: {paper_ratio:.1f}×).",
        ]
    comps = toy_comparisons(rows)
    if comps:
        n_seeds = comps[0][2]["accuracy"].n
        lines += [
            "",
            f"Paired differences, targeted dropout minus each other network of the same seed, "
            f"mean and {LEVEL:.0%} t interval over the {n_seeds} seeds ({split}):",
            "",
            "| comparison | "
            + " | ".join(
                f"{m.label} ({m.unit.strip()})" if m.unit else m.label for m in TOY_METRICS.values()
            )
            + " |",
            "|---" * (len(TOY_METRICS) + 1) + "|",
        ]
        for a, b, diffs in comps:
            cells = [interval_text(diffs[k], m) for k, m in TOY_METRICS.items()]
            lines.append(f"| {names[a]} − {names[b]} | " + " | ".join(cells) + " |")
        lines.append("")
        for a, b, diffs in comps:
            for k, m in TOY_METRICS.items():
                lines.append("- " + _capital(claim(names[a], names[b], m, diffs[k])))
    lines.append("")
    return "\n".join(lines)


def toy_claims(results: Mapping, split: str) -> list[str]:
    """Every sentence :func:`toy_split_markdown` states for ``split`` (for the README)."""
    names = _toy_names(results)
    return [
        _capital(claim(names[a], names[b], m, diffs[k]))
        for a, b, diffs in toy_comparisons(results["table1"][split])
        for k, m in TOY_METRICS.items()
    ]


def table1_markdown(results: Mapping, *, network: str) -> str:
    """``table1.md`` of the toy experiment, from ``table1.json`` alone: Table 1 per split next to
    the paper's values, the controls below, paired differences over seeds with t intervals."""
    settings = results["settings"]
    seeds, fig1_set = settings["seeds"], results["figure1_set_pruning_mean_loss"]
    paper = results["paper_table1"]
    rate = settings["gamma"] * settings["alpha"]
    trained = {reg for rows in results["table1"].values() for reg in rows}
    controls = (
        f"; below them the controls at the same expected drop rate γ·α = {rate:g}: plain "
        "dropout of the hidden units and DropConnect of every weight"
        if trained - set(TOY_NAMES)
        else ""
    )
    lines = [
        "# Table 1: change in loss and accuracy after pruning (toy network)",
        "",
        f"Made by `td-analysis reproduce` (settings in `table1.json`). Network {network}, "
        "unregularised vs targeted weight dropout "
        f"(γ = {settings['gamma']}, α = {settings['alpha']}){controls}. "
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), "
        f"{settings['epochs']} epochs. Pruning: {settings['prune_fraction']:.0%} of every "
        "output unit's incoming weights by |w|, in both weight matrices (biases kept). |ΔE| is "
        "the change of the *mean* cross-entropy over the split; the estimate is |−∇ᵀd + ½dᵀHd| "
        "with the exact gradient and Hessian-vector product in float64. Mean ± std over seeds; "
        f"differences are paired by seed with Student's t {LEVEL:.0%} interval "
        "(`td_analysis.statistics`), and a sentence states a difference only where its "
        f"interval excludes zero. `table1_differences.png` plots the differences over the "
        "pruned fraction.",
        "",
    ]
    for split, rows in results["table1"].items():
        lines.append(toy_split_markdown(split, rows, results))
    lines += _toy_differences_from_paper(results, fig1_set, paper)
    return "\n".join(lines)


def _toy_differences_from_paper(results: Mapping, fig1_set: Mapping, paper: Mapping) -> list[str]:
    settings = results["settings"]
    first = results["table1"][settings["splits"][0]]
    unpruned = ", ".join(
        f"{TOY_NAMES[reg]} {100 * mean_std(first[reg]['accuracy'])[0]:.2f}% (paper "
        f"{paper[reg]['unpruned_accuracy']:.2%})"
        for reg in TOY_NAMES
        if reg in first
    )
    rel = [
        abs(e - m) / abs(m)
        for rows in results["table1"].values()
        for r in rows.values()
        for e, m in zip(r["abs_estimate"], r["abs_measured"], strict=True)
        if m != 0
    ]
    sets = {reg: v for reg, v in fig1_set.items() if v}
    any_set = next(iter(sets.values()))[0] if sets else None
    lines = [
        "## Differences from the paper",
        "",
        f"- Unpruned accuracy on {settings['splits'][0]}: {unpruned}; the paper's training "
        "schedule is unpublished (ours: see `settings` in `table1.json`), and `test_batch` here "
        "is a rebuilt copy (images 1000–9999 decoded from JPEG).",
        f"- Our |ΔE| values differ from the paper's {paper['none']['abs_delta_e']} and "
        f"{paper['targeted-weight']['abs_delta_e']} (compare the estimate and measured "
        "columns). The paper does not say which parameters its ΔE deletes, over which data, or "
        f"with which loss reduction. We delete {settings['prune_fraction']:.0%} of the weights "
        "of *both* layers and use the mean cross-entropy over the split.",
    ]
    if any_set:
        n_out = settings["base"]["num_classes"]
        total = any_set["n_kept"] + any_set["n_pruned"]
        lines[-1] += (
            f" Deleting only the {any_set['n_pruned']} of the {total} hidden→output weights "
            f"of Figure 1 that this pruning removes ({any_set['n_pruned'] // n_out} of each "
            f"output unit's {total // n_out} inputs) instead gives ½dᵀHd = "
            + ", ".join(
                f"{_fmt([0.5 * b['pruned_pruned'] for b in v])} ({reg})" for reg, v in sets.items()
            )
            + f" on {settings['figure_split']} (`figure1_set_pruning_mean_loss` in "
            "`table1.json`)."
        )
    if rel:
        lines.append(
            f"- The estimate and the measurement differ by up to {max(rel):.0%} of the "
            f"measured |ΔE|: deleting {settings['prune_fraction']:.0%} of the weights is not a "
            "small step, so the O(‖d‖³) remainder and changes of the ReLU pattern matter "
            "(`estimates_pruning.png` shows where the second-order estimate stops tracking)."
        )
    lines.append("")
    return lines


# ----------------------------------------------------------------------------- fashion-mlp
def _bias_text(bias: bool) -> str:
    return "bias" if bias else "no bias"


def pruning_columns(records: Sequence[Mapping]) -> list[tuple[str, str, bool]]:
    """The (kind, regulariser, bias) columns of ``pruning.md``, in order of first appearance."""
    return list(dict.fromkeys((r["kind"], r["regulariser"], bool(r["bias"])) for r in records))


def pruning_cell(records: Sequence[Mapping], kind: str, reg: str, bias: bool, k: float) -> str:
    """``"mean ± std"`` test accuracy (%) over the seeds of one column at one k (``–`` if none)."""
    acc = [
        r["accuracy"]
        for r in records
        if r["kind"] == kind
        and r["regulariser"] == reg
        and bool(r["bias"]) == bias
        and float(r["k"]) == float(k)
    ]
    if not acc:
        return "–"
    m, s = mean_std(acc)
    return f"{100 * m:.2f} ± {100 * s:.2f}"


def fashion_pruning_markdown(
    records: Sequence[Mapping],
    *,
    network: str,
    n_test: int,
    settings: Mapping,
    command: str = "td-analysis reproduce --experiment fashion-mlp",
) -> str:
    """``pruning.md``: test accuracy (%) after pruning, rows k, columns kind × regulariser × bias,
    mean ± std over seeds."""
    cols = pruning_columns(records)
    ks = sorted({float(r["k"]) for r in records})
    seeds = sorted({int(r["seed"]) for r in records})
    head = "| k (%) | " + " | ".join(f"{kind} · {reg} · {_bias_text(b)}" for kind, reg, b in cols)
    lines = [
        "# Pruning the Fashion-MNIST MLP: test accuracy (%)",
        "",
        f"Made by `{command}` (records in `pruning.json`). "
        f"Network {network}, trained with protocol `{settings['protocol']}` of task "
        f"`{settings['task']}`; {len(seeds)} seed(s) ({', '.join(map(str, seeds))}); accuracy on "
        f"{n_test:,} test images, mean ± std over seeds. Weight pruning: the k% smallest |w| of "
        "each hidden weight matrix; unit pruning: the k% hidden units of each layer with the "
        "smallest L2 norm of their incoming weights, removed with their bias and outgoing "
        "weights. The output layer is never pruned.",
        "",
        head + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for k in ks:
        cells = [pruning_cell(records, kind, reg, b, k) for kind, reg, b in cols]
        lines.append(f"| {k:g} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += fashion_differences_markdown(records)
    return "\n".join(lines)


FASHION_NAMES = {
    "none": "none",
    "targeted-weight": "targeted weight dropout",
    "targeted-unit": "targeted unit dropout",
    "dropout": "dropout",
    "dropconnect": "DropConnect",
}
FASHION_ACCURACY = Metric(
    "accuracy",
    "test accuracy",
    100.0,
    " points",
    2,
    "{a} is {x} ± {h} points {dir} accurate than {b}",
    "more",
    "less",
)
CLAIM_KS = (50.0, 90.0, 95.0)  # the pruning levels whose differences the reports state in words


FASHION_CONTROLS = ("dropout", "dropconnect")


def fashion_comparisons(records: Sequence[Mapping]) -> list[tuple[str, str, str, bool]]:
    """``(kind, a, b, bias)``: every regulariser other than ``none`` minus ``none``, then every
    targeted regulariser minus each control (dropout, DropConnect at the same expected drop
    rate: what *targeting* adds), same seed, bias and pruning, for each pruning kind and bias
    setting in ``records`` where both networks exist."""
    kinds = list(dict.fromkeys(r["kind"] for r in records))
    out = []
    for bias in dict.fromkeys(bool(r["bias"]) for r in records):
        regs = list(dict.fromkeys(r["regulariser"] for r in records if bool(r["bias"]) == bias))
        pairs = [(a, "none") for a in regs if a != "none" and "none" in regs]
        pairs += [
            (a, c) for a in regs if a.startswith("targeted") for c in FASHION_CONTROLS if c in regs
        ]
        out += [(kind, a, b, bias) for kind in kinds for a, b in pairs]
    return out


def fashion_difference_curve(
    records: Sequence[Mapping], kind: str, a: str, b: str, bias: bool
) -> list[tuple[float, PairedDifference]]:
    """Accuracy of ``a`` minus ``b`` over k, paired by seed, at one pruning kind and bias."""
    return paired_curve(
        records,
        {"regulariser": a, "kind": kind, "bias": bias},
        {"regulariser": b, "kind": kind, "bias": bias},
        x="k",
    )


def _fashion_where(kind: str, bias: bool, k: float) -> str:
    return f"At k = {k:g} ({kind} pruning, {_bias_text(bias)}): "


def fashion_claims(
    records: Sequence[Mapping],
    *,
    ks: Sequence[float] | Mapping[str, Sequence[float]] = CLAIM_KS,
    bias: bool | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> list[str]:
    """The sentences on the paired differences at ``ks`` (or ``{kind: ks}``), for all biases
    or only ``bias``, all comparisons or only the ``(a, b)`` ``pairs``."""
    out = []
    for kind, a, b, bi in fashion_comparisons(records):
        if bias is not None and bi != bias:
            continue
        if pairs is not None and (a, b) not in pairs:
            continue
        at = ks.get(kind, ()) if isinstance(ks, Mapping) else ks
        for k, diff in fashion_difference_curve(records, kind, a, b, bi):
            if k in at:
                out.append(
                    claim(
                        FASHION_NAMES.get(a, a),
                        FASHION_NAMES.get(b, b),
                        FASHION_ACCURACY,
                        diff,
                        where=_fashion_where(kind, bi, k),
                    )
                )
    return out


def fashion_differences_markdown(records: Sequence[Mapping]) -> list[str]:
    """The paired-differences section of ``pruning.md``: each regulariser minus ``none`` per k,
    with t intervals over the seeds, and the sentences at :data:`CLAIM_KS`."""
    comps = fashion_comparisons(records)
    curves = {c: dict(fashion_difference_curve(records, *c)) for c in comps}
    comps = [c for c in comps if curves[c]]
    if not comps:
        return []
    ns = sorted({d.n for c in comps for d in curves[c].values()})
    lines = [
        "## Paired differences over seeds",
        "",
        "Test accuracy of each regularised network minus another of the same seed and bias "
        "(first the unregularised one, then each targeted kind minus the controls dropout and "
        f"DropConnect at the same expected drop rate), in points: mean [{LEVEL:.0%} t "
        f"interval] over the seeds both have ({_listed(ns)}; `td_analysis.statistics`). "
        + "; ".join(
            f"with {n} seeds t has {n - 1} degree(s) of freedom "
            f"(t = {float(stats.t.ppf(0.5 + LEVEL / 2, n - 1)):.2f})"
            for n in ns
        )
        + ". A sentence below states a difference only where its interval excludes zero.",
    ]
    for bias in dict.fromkeys(c[3] for c in comps):
        for kind in dict.fromkeys(c[0] for c in comps):
            group = [c for c in comps if c[0] == kind and c[3] == bias]
            if not group:
                continue
            ks = sorted({k for c in group for k in curves[c]})
            lines += [
                "",
                f"### {_capital(kind)} pruning, {_bias_text(bias)}",
                "",
                "| k (%) | "
                + " | ".join(
                    f"{kind} · {FASHION_NAMES.get(a, a)} − {FASHION_NAMES.get(b, b)} · "
                    f"{_bias_text(bias)}"
                    for kind, a, b, bias in group
                )
                + " |",
                "|---" * (len(group) + 1) + "|",
            ]
            for k in ks:
                cells = [
                    interval_text(curves[c][k], FASHION_ACCURACY) if k in curves[c] else "–"
                    for c in group
                ]
                lines.append(f"| {k:g} | " + " | ".join(cells) + " |")
    lines += ["", "### What the intervals allow", ""]
    lines += [*(f"- {c}" for c in fashion_claims(records)), ""]
    return lines


def fashion_difference_panels(records: Sequence[Mapping]) -> dict[str, dict[str, list]]:
    """For ``accuracy_differences.png``: a panel per pruning kind and bias, a line per
    regulariser minus ``none``."""
    panels: dict[str, dict[str, list]] = {}
    for kind, a, b, bias in fashion_comparisons(records):
        panel = panels.setdefault(f"{kind} pruning, {_bias_text(bias)}", {})
        panel[f"{FASHION_NAMES.get(a, a)} − {b}"] = fashion_difference_curve(
            records, kind, a, b, bias
        )
    return panels


FASHION_FIGURES = {
    "accuracy_vs_k.png": "test accuracy after weight pruning (left) and unit pruning (right) "
    "against the pruned percentage k of each hidden layer; one line per regulariser, solid with "
    "biases, dashed without; mean over seeds with a ±1 std band",
    "estimators.png": "Taylor estimates of the change in mean loss against the measured change "
    "ΔE for every pruning (k > 0) of every network: first order −∇ᵀd, second order ½dᵀHd (one "
    "Hessian-vector product), OBD ½Σ Hᵢᵢdᵢ² with the exact diagonal, their sum; Spearman ρ per "
    "regulariser in each panel (`taylor.json`)",
    "accuracy_differences.png": "test accuracy of each regulariser minus the unregularised "
    "network of the same seed and bias against k, weight and unit pruning, with biases and "
    "without: mean over seeds with its 95% t band (the intervals of `pruning.md`)",
    "coadaptation_pooled.png": "θᵀ⊙H⊙θ of all weights ordered by decreasing \\|θ\\|, pooled into "
    "B × B block sums through B Hessian-vector products (never the full Hessian), unregularised "
    "vs targeted weight vs targeted unit dropout; the dashed line marks the lowest-\\|θ\\| "
    "fraction γ",
    "coadaptation_layers.png": "layer × layer sums of the same matrix: over all weights (top) "
    "and over the weights that weight pruning at k = 100·γ deletes (bottom; ½ of its total is "
    "the second-order term ½dᵀHd of that deletion)",
}


def fashion_readme(
    settings: Mapping,
    *,
    network: str,
    command: str,
    summary: Mapping,
    training_length: Mapping | None = None,
) -> str:
    """``figures/fashion_mlp/README.md``: what each file shows and which command made it
    (``training_length``: the study's JSON, when it shares the folder)."""
    minutes = summary.get("seconds", float("nan")) / 60
    load = summary.get("load_average")
    load_text = (
        f", 1-minute load average {load[0]:.1f} at the start and {load[1]:.1f} at the end"
        if load and None not in load
        else ""
    )
    lines = [
        "# Fashion-MNIST MLP: pruning with and without targeted dropout (issue #11)",
        "",
        f"Everything here was made by `{command}` in {minutes:.1f} minutes of wall-clock time "
        f"on the 2-core machine{load_text} ({network}; settings in `summary.json`).",
        "",
        "| file | what it shows |",
        "|---|---|",
        "| `pruning.json` | one record per network and pruning: `regulariser`, `bias`, `seed`, "
        "`kind` (`weight`/`unit`), `k` (percent), test `accuracy` and mean `loss` |",
        "| `pruning.md` | the accuracy table: rows k, columns kind × regulariser × bias, "
        "mean ± std over seeds; then each regulariser minus none, paired by seed, with 95% t "
        "intervals, and the sentences they allow |",
        "| `taylor.json` | Taylor terms and measured ΔE of every pruning, and Spearman's ρ per "
        "regulariser, bias and kind |",
        "| `coadaptation.json` | pooled block sums and layer × layer sums behind the heatmaps |",
        "| `summary.json` | settings, timings and rank correlations |",
    ]
    for name, text in FASHION_FIGURES.items():
        lines.append(f"| `{name}` | {text} |")
    if training_length is not None:
        made = f"made by `{training_length['command']}`"
        lines += [
            f"| `training_length.json` | the training-length study ({made}): one record per "
            "network and pruning, `{regulariser, bias, seed, epochs, batch_size, protocol, kind, "
            "k, accuracy, loss}` on the holdout split |",
            "| `training_length.md` | its table (holdout accuracy against epochs) and each "
            "length minus the one before it, paired by seed |",
            "| `training_length.png` | holdout accuracy after pruning against epochs, one panel "
            "per pruning, a line per regulariser, mean ± std over seeds |",
        ]
    lines += [
        "",
        f"Settings: seeds {_listed(settings['seeds'])}; regularisers "
        f"{_listed(settings['regularisers'])}; biases "
        f"{_listed('on' if b else 'off' for b in settings['biases'])}"
        f"{_bias_off_text(settings)}; protocol `{settings['protocol']}`; k (%) "
        f"{_listed(f'{k:g}' for k in settings['ks'])}; Taylor terms on "
        f"{settings['analysis_examples']:,} {settings['analysis_split']} images in "
        f"{settings['taylor_dtype']}, pooled maps with B = {settings['pooled_bins']} in "
        f"{settings['pooled_dtype']} (seed {settings['seeds'][0]}).",
        "",
    ]
    return "\n".join(lines)


def _bias_off_text(settings: Mapping) -> str:
    """`` (without biases: …)``: which networks of a grid have no biases, when not all."""
    if False not in settings["biases"]:
        return ""
    regs = settings.get("bias_off_regularisers") or settings["regularisers"]
    count = settings.get("bias_off_seed_count")
    seeds = settings["seeds"][:count] if count else settings["seeds"]
    return f" (without biases: {_listed(regs)} × seeds {_listed(seeds)})"


def _listed(values) -> str:
    """``a, b, c``: a list or tuple of settings as plain text (the same from JSON or Python)."""
    return ", ".join(str(v) for v in values)


# ----------------------------------------------------------------------------- README blocks
README_COMMAND = "td-analysis reproduce --report-only --experiment all --readme README.md"


def _duration(seconds: float) -> str:
    """``"3 min 50 s"`` (rounded to the second)."""
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m else f"{s} s"


def readme_toy_results(results: Mapping) -> str:
    """The README's toy results, from ``table1.json``: how it was made, the first split's table,
    paired differences and the sentences they allow (the other split: ``figures/table1.md``)."""
    settings = results["settings"]
    split = settings["splits"][0]
    others = [s for s in settings["splits"] if s != split]
    n_nets = len(results.get("regularisers") or {}) * len(settings["seeds"])
    nets = f", {n_nets} networks" if n_nets else ""
    lines = [
        f"Made by `TD_ANALYSIS_DATA=../shared/data td-analysis reproduce` (defaults: "
        f"{len(settings['seeds'])} seeds, {settings['epochs']} epochs{nets}) in "
        f"{_duration(results['seconds'])} of wall-clock time from an empty checkpoint folder "
        "(`seconds` in `figures/table1.json`). Pruning removes "
        f"{settings['prune_fraction']:.0%} of every unit's incoming weights by magnitude in both "
        "layers; |ΔE| is the change of the mean cross-entropy, the estimate |−∇ᵀd + ½dᵀHd| uses "
        "the exact gradient and Hessian-vector product in float64; mean ± std over seeds "
        f"{', '.join(map(str, settings['seeds']))}.",
        "",
        toy_split_markdown(split, results["table1"][split], results, heading="###"),
    ]
    if others:
        lines.append(
            f"The {', '.join(others)} split, the settings and how the numbers differ from the "
            "paper's: `figures/table1.md`."
        )
    return "\n".join(lines)


FASHION_README_COLUMNS = (
    ("weight", "none"),
    ("weight", "targeted-weight"),
    ("weight", "dropconnect"),
    ("unit", "none"),
    ("unit", "targeted-unit"),
    ("unit", "dropout"),
)
#: The README's sentences: each targeted kind against none and against its untargeted control
#: (weights dropped at random: DropConnect; units: dropout), at the k where pruning bites.
FASHION_README_PAIRS = (
    ("targeted-weight", "none"),
    ("targeted-weight", "dropconnect"),
    ("targeted-unit", "none"),
    ("targeted-unit", "dropout"),
)
FASHION_README_CLAIM_KS = {"weight": (90.0, 95.0), "unit": (50.0, 70.0)}
FASHION_README_KS = (0.0, 25.0, 50.0, 70.0, 80.0, 90.0, 95.0)


def readme_fashion_results(records: Sequence[Mapping], summary: Mapping) -> str:
    """The README's Fashion-MNIST results, from ``pruning.json`` and ``summary.json``: run time,
    the with-bias accuracy table, the paired differences' sentences and Spearman's ρ."""
    seeds = sorted({int(r["seed"]) for r in records})
    cols = [
        (k, r) for k, r in FASHION_README_COLUMNS if any(x["regulariser"] == r for x in records)
    ]
    ks = [k for k in FASHION_README_KS if any(float(r["k"]) == k for r in records)]
    rho = [
        r["estimate"]
        for r in summary.get("rank_correlations", [])
        if r["kind"] == "all" and r["estimate"] == r["estimate"]
    ]
    n_all = {r["n"] for r in summary.get("rank_correlations", []) if r["kind"] == "all"}
    n_nets = len(summary.get("network_seconds", []))
    reused = summary.get("reused_networks", 0)
    made = (
        f"a run from an empty checkpoint folder that took {_duration(summary['seconds'])} of "
        "wall-clock time"
        if not reused
        else f"a run that took {_duration(summary['seconds'])} of wall-clock time and reused "
        f"{reused} of its {n_nets} trained networks and {summary.get('reused_analyses', 0)} "
        "analyses from the runs folder (how they were made, and their times: `BENCHMARKS.md`)"
    )
    command = summary.get("command", "td-analysis reproduce --experiment fashion-mlp")
    lines = [
        f"The committed results come from `{command}`, {made} (`seconds` in "
        f"`figures/fashion_mlp/summary.json`). Test accuracy (%), mean ± std over "
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), with biases (full table and the "
        "networks without biases: `figures/fashion_mlp/pruning.md`):",
        "",
        "| k (%) | "
        + " | ".join(f"{kind} · {FASHION_NAMES.get(reg, reg)}" for kind, reg in cols)
        + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for k in ks:
        cells = [pruning_cell(records, kind, reg, True, k) for kind, reg in cols]
        lines.append(f"| {k:g} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Paired by seed, with {LEVEL:.0%} t intervals over the {len(seeds)} seeds (with "
        "biases; every comparison and k: `figures/fashion_mlp/pruning.md`):",
        "",
        *(
            f"- {c}"
            for c in fashion_claims(
                records, bias=True, ks=FASHION_README_CLAIM_KS, pairs=FASHION_README_PAIRS
            )
        ),
    ]
    if rho and len(n_all) == 1:
        lines += [
            "",
            "The Taylor estimate −∇ᵀd + ½dᵀHd ranks the "
            f"{n_all.pop()} prunings of each setting (regulariser × bias) by their measured loss "
            f"change with Spearman ρ = {min(rho):.2f}–{max(rho):.2f} (`taylor.json`).",
        ]
    return "\n".join(lines)


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


# ----------------------------------------------------------------------------- training length
LENGTH_PANELS = (("weight", 0.0), ("weight", 50.0), ("weight", 90.0), ("unit", 50.0))
LENGTH_ACCURACY = Metric(
    "accuracy",
    "holdout accuracy",
    100.0,
    " points",
    2,
    "{a} is {x} ± {h} points {dir} accurate than {b}",
    "more",
    "less",
)


def _length_where(kind: str, k: float) -> str:
    return "Unpruned: " if k == 0 else f"{_capital(kind)} pruning at k = {k:g}: "


def _length_step_claims(
    sel: Sequence[Mapping], reg: str, name: str, long: int, short: int, kind: str, k: float
) -> list[str]:
    """``reg`` trained ``long`` epochs minus ``short``, paired by seed, as sentences."""
    return [
        claim(
            f"{name} trained {long} epochs",
            f"{name} trained {short}",
            LENGTH_ACCURACY,
            diff,
            where=_length_where(kind, k),
        )
        for _, diff in paired_curve(
            sel,
            {"regulariser": reg, "epochs": long},
            {"regulariser": reg, "epochs": short},
            x="k",
        )
    ]


def training_length_claims(records: Sequence[Mapping]) -> list[str]:
    """Sentences of the training-length study (``training_length.json``): for each regulariser
    the longest training minus the shortest, then targeted dropout minus none at the longest,
    paired by seed, at :data:`LENGTH_PANELS`."""
    epochs = sorted({int(r["epochs"]) for r in records})
    regs = list(dict.fromkeys(r["regulariser"] for r in records))
    if len(epochs) < 2:
        return []
    short, long = epochs[0], epochs[-1]
    names = {**TOY_NAMES}
    out = []
    for kind, k in LENGTH_PANELS:
        sel = [r for r in records if r["kind"] == kind and float(r["k"]) == k]
        for reg in regs:
            out += _length_step_claims(sel, reg, names.get(reg, reg), long, short, kind, k)
        if {"none", "targeted-weight"} <= set(regs):
            curve = paired_curve(
                sel,
                {"regulariser": "targeted-weight", "epochs": long},
                {"regulariser": "none", "epochs": long},
                x="k",
            )
            for _, diff in curve:
                out.append(
                    claim(
                        f"targeted dropout trained {long} epochs",
                        f"none trained {long}",
                        LENGTH_ACCURACY,
                        diff,
                        where=_length_where(kind, k),
                    )
                )
    return out


def readme_training_length(study: Mapping) -> str:
    """The README's training-length block, from ``training_length.json``."""
    records = study["records"]
    seeds = sorted({int(r["seed"]) for r in records})
    epochs = sorted({int(r["epochs"]) for r in records})
    lines = [
        f"`python -m td_analysis.training_length` trained the toy network for "
        f"{', '.join(map(str, epochs))} epochs "
        f"({', '.join(TOY_NAMES.get(r, r) for r in study.get('regularisers', []))}; seeds "
        f"{', '.join(map(str, seeds))}; {_duration(study['seconds'])} of wall-clock time, the "
        "checkpoints already in its runs folder reused) and pruned each on the holdout split "
        "(`figures/training_length.json`, "
        f"`figures/training_length.png`). Paired by seed, {LEVEL:.0%} t intervals:",
        "",
        *(f"- {c}" for c in training_length_claims(records)),
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- fashion length
FASHION_LENGTH_PANELS = (("weight", 0.0), ("weight", 90.0), ("unit", 50.0))


def _length_cell(records: Sequence[Mapping], reg: str, epochs: int, kind: str, k: float) -> str:
    acc = [
        float(r["accuracy"])
        for r in records
        if r["regulariser"] == reg
        and int(r["epochs"]) == epochs
        and r["kind"] == kind
        and float(r["k"]) == k
    ]
    if not acc:
        return "–"
    m, s = mean_std(acc)
    return f"{100 * m:.2f} ± {100 * s:.2f} ({len(acc)})"


def fashion_length_steps(records: Sequence[Mapping]) -> list[tuple[int, int]]:
    """``(longer, shorter)``: each training length against the one before it."""
    epochs = sorted({int(r["epochs"]) for r in records})
    return list(zip(epochs[1:], epochs[:-1], strict=True))


def fashion_training_length_claims(
    records: Sequence[Mapping],
    *,
    steps: Sequence[tuple[int, int]] | None = None,
    panels: Sequence[tuple[str, float]] = FASHION_LENGTH_PANELS,
) -> list[str]:
    """Sentences of the fashion-mlp study: for each panel (kind, k) and regulariser, the
    accuracy after each training length minus the one before it, paired by seed (does it still
    move?)."""
    steps = fashion_length_steps(records) if steps is None else steps
    regs = list(dict.fromkeys(r["regulariser"] for r in records))
    out = []
    for kind, k in panels:
        sel = [r for r in records if r["kind"] == kind and float(r["k"]) == k]
        for long, short in steps:
            for reg in regs:
                name = FASHION_NAMES.get(reg, reg)
                out += _length_step_claims(sel, reg, name, long, short, kind, k)
    return out


def fashion_training_length_markdown(study: Mapping, *, heading: str = "#") -> str:
    """The fashion-mlp training-length table (rows epochs; mean ± std (seeds) per regulariser
    and panel) and its sentences, from ``training_length.json``."""
    records = study["records"]
    regs = list(dict.fromkeys(r["regulariser"] for r in records))
    epochs = sorted({int(r["epochs"]) for r in records})
    cols = [(reg, kind, k) for kind, k in FASHION_LENGTH_PANELS for reg in regs]
    lines = [
        f"{heading} Training length of the fashion-mlp network (holdout accuracy, %)",
        "",
        f"Made by `{study['command']}` in {_duration(study['seconds'])} of wall-clock time "
        "(checkpoints already in its runs folder reused). Every network with biases, batch "
        f"{_listed(sorted({int(r['batch_size']) for r in records}))}; each shorter network is a "
        "snapshot of a longer run of the same seed (constant learning rate: the same network "
        "a shorter run trains). Mean ± std (number of seeds) on the holdout split; unpruned, "
        "weight pruning at k = 90 and unit pruning at k = 50 of every hidden layer.",
        "",
        "| epochs | "
        + " | ".join(
            f"{'unpruned' if k == 0 else f'{kind} k = {k:g}'} · {FASHION_NAMES.get(r, r)}"
            for r, kind, k in cols
        )
        + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for e in epochs:
        cells = [_length_cell(records, r, e, kind, k) for r, kind, k in cols]
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Does it still move? Per step, the paired differences below (unpruned, weight k = 90, "
        "unit k = 50, each regulariser) and how many of them leave zero out of their interval:",
        "",
        "| step (epochs) | differences | leaving zero out |",
        "|---|---|---|",
    ]
    for long, short in fashion_length_steps(records):
        claims = fashion_training_length_claims(records, steps=[(long, short)])
        moved = sum(NO_DIFFERENCE not in c for c in claims)
        lines.append(f"| {short} → {long} | {len(claims)} | {moved} |")
    lines += [
        "",
        f"Each length minus the one before it, paired by seed, {LEVEL:.0%} t intervals:",
        "",
        *(f"- {c}" for c in fashion_training_length_claims(records)),
        "",
    ]
    return "\n".join(lines)


def protocol_study_section(out_dir: str | Path) -> str:
    """The "Protocol study" section of ``table1.md`` (issue #19): from ``protocol_study.json`` in
    ``out_dir`` (:func:`td_analysis.protocol_study.study_markdown`), or "" without that file."""
    import json

    path = Path(out_dir) / "protocol_study.json"
    if not path.is_file():
        return ""
    from td_analysis.protocol_study import study_markdown

    return "\n" + study_markdown(json.loads(path.read_text()))
