"""Report text of the training-length studies (:mod:`td_analysis.pipelines.training_length`): the
toy study's README block and the fashion-mlp study's ``training_length.md``.

Every function takes ``training_length.json`` (or its records) and returns markdown or
sentences; each sentence is a paired difference over seeds
(:func:`~td_analysis.report.common.claim`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from td_analysis.report.common import (
    LEVEL,
    NO_DIFFERENCE,
    Metric,
    capital,
    claim,
    duration,
    listed,
    mean_std,
    paired_curve,
)
from td_analysis.report.fashion import FASHION_NAMES
from td_analysis.report.table1 import TOY_NAMES

__all__ = [
    "LENGTH_PANELS",
    "LENGTH_ACCURACY",
    "training_length_claims",
    "readme_training_length",
    "FASHION_LENGTH_PANELS",
    "fashion_length_steps",
    "fashion_training_length_claims",
    "fashion_training_length_markdown",
    "protocol_records",
    "protocol_comparison_claims",
]


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
    return "Unpruned: " if k == 0 else f"{capital(kind)} pruning at k = {k:g}: "


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
    """The README's training-length block, from ``training_length.json`` (its top-level
    protocol's records)."""
    records = protocol_records(study)
    seeds = sorted({int(r["seed"]) for r in records})
    epochs = sorted({int(r["epochs"]) for r in records})
    optimizers = sorted({str(r.get("optimizer", "sgd")) for r in records})
    named = {"sgd": "SGD", "adam": "Adam"}
    how = " and ".join(named.get(o, o) for o in optimizers)
    lines = [
        f"`{study.get('command', 'python -m td_analysis.training_length')}` trained the toy "
        f"network with {how} for {', '.join(map(str, epochs))} epochs "
        f"({', '.join(TOY_NAMES.get(r, r) for r in study.get('regularisers', []))}; seeds "
        f"{', '.join(map(str, seeds))}; {duration(study['seconds'])} of wall-clock time, the "
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


def protocol_records(study: Mapping, protocol: str | None = None) -> list[Mapping]:
    """The records of ``protocol`` (default: the study's top-level one, ``"default"``)."""
    protocol = protocol or study.get("protocol", "default")
    return [r for r in study["records"] if r.get("protocol", "default") == protocol]


def protocol_comparison_claims(
    records: Sequence[Mapping],
    protocol: str,
    *,
    reference: str = "default",
    panels: Sequence[tuple[str, float]] = FASHION_LENGTH_PANELS,
) -> list[str]:
    """Sentences on a second protocol of the fashion-mlp study, paired by seed: at its longest
    training, ``protocol`` minus ``reference`` for each regulariser (at the same epochs), then
    targeted weight dropout minus none under ``protocol``; then its longest length minus the one
    before it (does it still move?)."""
    mine = [r for r in records if r.get("protocol", "default") == protocol]
    epochs = sorted({int(r["epochs"]) for r in mine})
    if not epochs:
        return []
    long = epochs[-1]
    regs = list(dict.fromkeys(r["regulariser"] for r in mine))
    out = []
    for kind, k in panels:
        sel = [r for r in records if r["kind"] == kind and float(r["k"]) == k]
        for reg in regs:
            name = FASHION_NAMES.get(reg, reg)
            a = {"regulariser": reg, "epochs": long, "protocol": protocol}
            b = {"regulariser": reg, "epochs": long, "protocol": reference}
            for _, diff in paired_curve(sel, a, b, x="k"):
                out.append(
                    claim(
                        f"{name} under protocol {protocol}",
                        f"under protocol {reference} ({long} epochs each)",
                        LENGTH_ACCURACY,
                        diff,
                        where=_length_where(kind, k),
                    )
                )
        if {"none", "targeted-weight"} <= set(regs):
            a = {"regulariser": "targeted-weight", "epochs": long, "protocol": protocol}
            b = {"regulariser": "none", "epochs": long, "protocol": protocol}
            for _, diff in paired_curve(sel, a, b, x="k"):
                out.append(
                    claim(
                        f"targeted weight dropout under protocol {protocol} ({long} epochs)",
                        "none",
                        LENGTH_ACCURACY,
                        diff,
                        where=_length_where(kind, k),
                    )
                )
        if len(epochs) >= 2:
            mine_sel = [r for r in sel if r.get("protocol", "default") == protocol]
            for reg in regs:
                name = f"{FASHION_NAMES.get(reg, reg)} under protocol {protocol}"
                out += _length_step_claims(mine_sel, reg, name, long, epochs[-2], kind, k)
    return out


def _length_table(records: Sequence[Mapping]) -> list[str]:
    """Rows epochs, columns panel × regulariser: mean ± std (number of seeds) in %."""
    regs = list(dict.fromkeys(r["regulariser"] for r in records))
    cols = [(reg, kind, k) for kind, k in FASHION_LENGTH_PANELS for reg in regs]
    lines = [
        "| epochs | "
        + " | ".join(
            f"{'unpruned' if k == 0 else f'{kind} k = {k:g}'} · {FASHION_NAMES.get(r, r)}"
            for r, kind, k in cols
        )
        + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for e in sorted({int(r["epochs"]) for r in records}):
        cells = [_length_cell(records, r, e, kind, k) for r, kind, k in cols]
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    return lines


def _protocol_section(study: Mapping, protocol: str, heading: str) -> list[str]:
    """The table and sentences of one further protocol of the fashion-mlp study."""
    runs = study.get("protocols", {}).get(protocol, [])
    records = protocol_records(study, protocol)
    regs = list(dict.fromkeys(r["regulariser"] for r in records))
    epochs = sorted({int(r["epochs"]) for r in records})
    seeds = sorted({int(r["seed"]) for r in records})
    made = " and ".join(
        f"`{run['command']}` ("
        + (
            f"{listed(FASHION_NAMES.get(r, r) for r in run['regularisers'])}; "
            if run.get("regularisers")
            else ""
        )
        + f"{duration(run['seconds'])} of wall-clock time)"
        for run in runs
        if "command" in run
    )
    made = (
        f"Made by {made}, checkpoints already in a run's folder reused, not trained again. "
        if made
        else ""
    )
    lines = [
        "",
        f"{heading}# Protocol `{protocol}`: batch "
        f"{listed(sorted({int(r['batch_size']) for r in records}))}",
        "",
        f"{made}{capital(' and '.join(FASHION_NAMES.get(r, r) for r in regs))} with biases, seeds "
        f"{listed(seeds)}, each trained once to {epochs[-1]} epochs with snapshots at "
        f"{listed(epochs[:-1])}. Mean ± std (number of seeds) on the holdout split.",
        "",
        *_length_table(records),
    ]
    lines += [
        "",
        f"Paired by seed, {LEVEL:.0%} t intervals:",
        "",
        *(f"- {c}" for c in protocol_comparison_claims(study["records"], protocol)),
    ]
    return lines


def fashion_training_length_markdown(study: Mapping, *, heading: str = "#") -> str:
    """The fashion-mlp training-length table (rows epochs; mean ± std (seeds) per regulariser
    and panel) and its sentences, from ``training_length.json``; then a section per further
    protocol (e.g. the seed's batch 32) that the study holds."""
    records = protocol_records(study)
    lines = [
        f"{heading} Training length of the fashion-mlp network (holdout accuracy, %)",
        "",
        f"Made by `{study['command']}` in {duration(study['seconds'])} of wall-clock time "
        "(checkpoints already in its runs folder reused). Every network with biases, batch "
        f"{listed(sorted({int(r['batch_size']) for r in records}))}; each shorter network is a "
        "snapshot of a longer run of the same seed (constant learning rate: the same network "
        "a shorter run trains). Mean ± std (number of seeds) on the holdout split; unpruned, "
        "weight pruning at k = 90 and unit pruning at k = 50 of every hidden layer.",
        "",
        *_length_table(records),
    ]
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
    ]
    top = study.get("protocol", "default")
    for protocol in study.get("protocols", {}):
        if protocol != top and protocol_records(study, protocol):
            lines += _protocol_section(study, protocol, heading)
    lines.append("")
    return "\n".join(lines)
