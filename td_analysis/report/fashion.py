"""Report text of the Fashion-MNIST MLP experiment: ``pruning.md``, its ``README.md`` and the
README's fashion-mlp block.

Every function takes the records of ``pruning.json`` (and ``summary.json``) and returns markdown;
the sentences come from :func:`td_analysis.report.common.claim`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from td_analysis.analysis.statistics import PairedDifference
from td_analysis.report.common import (
    LEVEL,
    Metric,
    capital,
    claim,
    duration,
    interval_text,
    listed,
    mean_std,
    paired_curve,
)

__all__ = [
    "pruning_columns",
    "pruning_cell",
    "fashion_pruning_markdown",
    "FASHION_NAMES",
    "FASHION_ACCURACY",
    "CLAIM_KS",
    "FASHION_CONTROLS",
    "fashion_comparisons",
    "fashion_difference_curve",
    "fashion_claims",
    "fashion_differences_markdown",
    "fashion_difference_panels",
    "FASHION_FIGURES",
    "fashion_readme",
    "FASHION_README_COLUMNS",
    "FASHION_README_PAIRS",
    "FASHION_README_CLAIM_KS",
    "FASHION_README_KS",
    "readme_fashion_results",
]


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
    from scipy import stats  # here, not at import: 1.3 s of every start-up

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
        f"interval] over the seeds both have ({listed(ns)}; `td_analysis.analysis.statistics`). "
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
                f"### {capital(kind)} pruning, {_bias_text(bias)}",
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
        f"Settings: seeds {listed(settings['seeds'])}; regularisers "
        f"{listed(settings['regularisers'])}; biases "
        f"{listed('on' if b else 'off' for b in settings['biases'])}"
        f"{_bias_off_text(settings)}; protocol `{settings['protocol']}`; k (%) "
        f"{listed(f'{k:g}' for k in settings['ks'])}; Taylor terms on "
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
    return f" (without biases: {listed(regs)} × seeds {listed(seeds)})"


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
        f"a run from an empty checkpoint folder that took {duration(summary['seconds'])} of "
        "wall-clock time"
        if not reused
        else f"a run that took {duration(summary['seconds'])} of wall-clock time and reused "
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
