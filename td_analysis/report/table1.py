"""Report text of the toy experiment (Table 1): ``table1.md`` and the README's toy block.

Every function takes ``table1.json`` (as written by :mod:`td_analysis.pipelines.toy`) and returns
markdown; the only arithmetic is the statistics over seeds (:mod:`td_analysis.report.common`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from td_analysis.analysis.statistics import paired_difference
from td_analysis.report.common import (
    LEVEL,
    Metric,
    capital,
    claim,
    duration,
    format_mean_std,
    interval_text,
    mean_std,
    paired_curve,
)

__all__ = [
    "TOY_METRICS",
    "TOY_NAMES",
    "metric_values",
    "toy_difference_curves",
    "toy_names",
    "toy_comparisons",
    "toy_split_markdown",
    "toy_claims",
    "training_text",
    "table1_markdown",
    "readme_toy_results",
    "protocol_study_section",
]

_fmt = format_mean_std


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


def metric_values(column: Mapping, metric: Metric) -> list[float]:
    """Per-seed values of ``metric`` from one regulariser's column dict of ``table1.json``."""
    return _lost(column) if metric.key == "accuracy_lost" else list(column[metric.key])


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
                lines.append("- " + capital(claim(names[a], names[b], m, diffs[k])))
    lines.append("")
    return "\n".join(lines)


def toy_claims(results: Mapping, split: str) -> list[str]:
    """Every sentence :func:`toy_split_markdown` states for ``split`` (for the README)."""
    names = _toy_names(results)
    return [
        capital(claim(names[a], names[b], m, diffs[k]))
        for a, b, diffs in toy_comparisons(results["table1"][split])
        for k, m in TOY_METRICS.items()
    ]


def training_text(settings: Mapping) -> str:
    """``"Adam (lr 0.001), batch 128, 60 epochs"``: how the networks of ``settings`` (a
    ``table1.json``'s) were trained, from its ``base`` config (SGD with momentum otherwise)."""
    base = settings.get("base") or {}
    opt = str(base.get("optimizer", "sgd"))
    name = {"sgd": "SGD", "adam": "Adam"}.get(opt, opt)
    extra = f", momentum {base['momentum']}" if opt == "sgd" and "momentum" in base else ""
    lr = f" (lr {base['lr']}{extra})" if "lr" in base else ""
    batch = f", batch {base['batch_size']}" if "batch_size" in base else ""
    protocol = settings.get("protocol")
    named = f", protocol `{protocol}`" if protocol else ""
    return f"{name}{lr}{batch}, {settings['epochs']} epochs{named}"


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
        f"trained with {training_text(settings)}. Pruning: "
        f"{settings['prune_fraction']:.0%} of every output unit's incoming weights by |w|, in "
        "both weight matrices (biases kept). |ΔE| is "
        "the change of the *mean* cross-entropy over the split; the estimate is |−∇ᵀd + ½dᵀHd| "
        "with the exact gradient and Hessian-vector product in float64. Mean ± std over seeds; "
        f"differences are paired by seed with Student's t {LEVEL:.0%} interval "
        "(`td_analysis.analysis.statistics`), and a sentence states a difference only where its "
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
        f"{len(settings['seeds'])} seeds, {training_text(settings)}{nets}) in "
        f"{duration(results['seconds'])} of wall-clock time from an empty checkpoint folder "
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


def protocol_study_section(out_dir: str | Path) -> str:
    """The "Protocol study" section of ``table1.md`` (issue #19): from ``protocol_study.json`` in
    ``out_dir`` (:mod:`td_analysis.report.protocol_study`), or "" without that file."""
    import json

    path = Path(out_dir) / "protocol_study.json"
    if not path.is_file():
        return ""
    from td_analysis.report.protocol_study import study_markdown

    return "\n" + study_markdown(json.loads(path.read_text()))
