"""Report text of the ResNet experiment (:mod:`td_analysis.pipelines.resnet`): ``pruning.md``
next to the paper's ResNet-32 tables, and the output folder's ``README.md``.

Every function takes the records of ``pruning.json`` (and the settings) and returns markdown;
the paired differences over seeds are :func:`td_analysis.report.common.paired_curve`'s
(Student's t intervals).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from td_analysis.report.common import (
    LEVEL,
    NO_DIFFERENCE,
    Metric,
    capital,
    claim,
    duration,
    mean_std,
    paired_curve,
)

__all__ = [
    "PRUNING_KINDS",
    "READINGS",
    "PAPER_TABLES",
    "CLAIM_POINTS",
    "parse_paper_tables",
    "paper_tables",
    "pruning_markdown",
    "split_phrase",
    "answer",
    "readme",
    "run_time_text",
    "split_accuracy_text",
    "RESNET_ACCURACY",
    "BASELINES",
    "claim_points_of",
    "claim_differences",
    "claim_verdict",
    "claim_lines",
    "readme_resnet_results",
]

PRUNING_KINDS = ("weight", "unit")
#: the two readings of a targeted-dropout network: the trained weights, and the official conv
#: evaluation (the targeted set at the training γ zeroed first)
READINGS = ("trained", "zero-targeted")
#: the packaged copy of the paper's ResNet-32 tables (from the slides, seeds/001_*.txt)
PAPER_TABLES = Path(__file__).parents[1] / "paper_resnet32.json"

#: The Taylor estimators of the resnet records (no diagonal: P HVPs per network)
TAYLOR_ESTIMATORS = ("first_order", "second_order", "estimate")


def parse_paper_tables(text: str) -> dict:
    """The ResNet-32 weight and unit tables of the slides (seed 001) as
    ``{"weight"|"unit": {regulariser: {k: accuracy %}}}``; regulariser names as
    :data:`~td_analysis.training.tasks.RESNET_REGULARISERS` where the column is one of them, else
    the column's own header."""
    import re

    start = text.index("## ResNet-32 on CIFAR-10")
    out: dict[str, dict] = {}
    for kind, head in (
        ("weight", "## Weight Dropout/Pruning"),
        ("unit", "## Unit Dropout/Pruning"),
    ):
        lines = text[text.index(head, start) :].splitlines()[1:]
        rows = [ln for ln in lines if "\t" in ln][:11]
        columns = rows[0].split("\t")[1:]
        names = []
        for c in columns:
            m = re.search(r"alpha=([\d.]+), \\gamma=([\d.]+)", c)
            if m:
                names.append(f"targeted-{kind}-a{float(m[1]):g}-g{float(m[2]):g}")
            elif c.startswith("dropout"):
                names.append("dropout")
            else:
                names.append(c.strip())
        table: dict[str, dict] = {n: {} for n in names}
        for row in rows[1:]:
            cells = row.split("\t")
            k = float(cells[0].replace("%", "").strip())
            for n, v in zip(names, cells[1:], strict=True):
                table[n][f"{k:g}"] = float(v)
        out[kind] = table
    return out


def paper_tables() -> dict:
    """The packaged copy of :func:`parse_paper_tables` of the slides (``paper_resnet32.json``)."""
    return json.loads(PAPER_TABLES.read_text())


def _cell(records: Sequence[dict], reg: str, reading: str, kind: str, k: float) -> str:
    vals = [
        100 * r["accuracy"]
        for r in records
        if (r["regulariser"], r["reading"], r["kind"], r["k"]) == (reg, reading, kind, k)
    ]
    if not vals:
        return "–"
    m, s = mean_std(vals)
    return f"{m:.2f} ± {s:.2f}" if len(vals) > 1 else f"{m:.2f}"


def split_phrase(settings: dict) -> str:
    """Where ``pruning.json`` evaluates each pruning (``settings["pruning_split"]``; runs made
    before the setting existed evaluated on the whole test split), in words."""
    split = settings.get("pruning_split", "test")
    if split == "holdout":
        n = settings.get("eval_limit")
        size = "the" if n is None else f"{n:,}"
        return f"{size} holdout images (exact training images held out)"
    if split == "test-exact":
        return f"the first {settings['exact_test_images']:,} test images (the exact ones)"
    n = settings.get("test_limit")
    return "the whole test split" if n is None else f"the first {n:,} test images"


def _tables(records: Sequence[dict], paper: dict) -> list[str]:
    """Per kind, rows k, columns regulariser × reading: accuracy (%) mean ± std over seeds, the
    paper's number beside each (in brackets)."""
    regs = list(dict.fromkeys(r["regulariser"] for r in records))
    ks = sorted({r["k"] for r in records})
    lines = []
    for kind in PRUNING_KINDS:
        cols = [
            (reg, reading)
            for reg in regs
            for reading in READINGS
            if any(r["regulariser"] == reg and r["reading"] == reading for r in records)
        ]
        lines += [f"### {kind} pruning", ""]
        lines.append("| k (%) | " + " | ".join(f"{reg} · {rd}" for reg, rd in cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        for k in ks:
            cells = []
            for reg, reading in cols:
                ours = _cell(records, reg, reading, kind, k)
                ref = paper.get(kind, {}).get(reg, {}).get(f"{k:g}")
                cells.append(ours + (f" [{ref:.2f}]" if ref is not None else ""))
            lines.append(f"| {k:g} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def pruning_markdown(
    records: Sequence[dict],
    settings: dict,
    paper: dict | None = None,
    *,
    test_records: Sequence[dict] | None = None,
) -> str:
    """``pruning.md``: per kind, rows k, columns regulariser (× reading for targeted ones),
    accuracy (%) on the pruning split mean ± std over seeds, the paper's number beside each (in
    brackets), the paired differences; then the same tables on the whole test split
    (``test_records``, ``pruning_test.json``) when given."""
    paper = paper_tables() if paper is None else paper
    seeds = sorted({r["seed"] for r in records})
    p = settings["resolved"]
    lines = [
        "# ResNet on CIFAR-10: accuracy (%) after pruning",
        "",
        f"Preset `{settings['preset']}`: pre-activation ResNet, units {p['units']}, widths "
        f"{p['widths']}, {p['init_kernel']}×{p['init_kernel']} init conv with "
        f"{p['init_filters']} filters; {p['epochs']} epochs; seeds {', '.join(map(str, seeds))} "
        f"(mean ± std over seeds). Accuracy on {split_phrase(settings)}. Pruned: every conv "
        "but the init conv, per filter (weight: the "
        "k% smallest |w| of each filter; unit: the k% filters of smallest L2 norm); the logits "
        "are never pruned. Readings: `trained` = the trained weights; `zero-targeted` = the "
        "official conv evaluation (the targeted set at the training γ zeroed, then pruned). "
        "[In brackets: the paper's ResNet-32 test-set number for that column, seed 001 slides.]",
        "",
        f"## On {split_phrase(settings)}",
        "",
        *_tables(records, paper),
        *_differences(records),
    ]
    if test_records:
        lines += [
            "## The same prunings on the whole test split (`pruning_test.json`)",
            "",
            "The CIFAR-10 copy in `../shared/data` has its test images 1,000–9,999 decoded from "
            "JPEG copies (its README), which costs every network several points (`summary.json` "
            "`split_accuracy`); the tables above use exact images.",
            "",
            *_tables(test_records, paper),
        ]
    return "\n".join(lines)


#: where the paper's qualitative claim lives: weight pruning at 70–80 %, unit pruning at 40–60 %
CLAIM_POINTS = (("weight", 70.0), ("weight", 80.0), ("unit", 40.0), ("unit", 50.0), ("unit", 60.0))


def _differences(records: Sequence[dict]) -> list[str]:
    """Each targeted regulariser (official reading) minus none and minus dropout, paired by
    seed, with 95% t intervals, at :data:`CLAIM_POINTS` (≥ 2 seeds only)."""
    regs = list(dict.fromkeys(r["regulariser"] for r in records))
    targeted = [r for r in regs if r.startswith("targeted")]
    baselines = [b for b in ("none", "dropout") if b in regs]
    lines = ["## Targeted dropout minus the baselines (paired by seed, 95% t interval)", ""]
    found = False
    for reg in targeted:
        for base in baselines:
            for reading in READINGS:
                for kind, k in CLAIM_POINTS:
                    curve = paired_curve(
                        [r for r in records if r["kind"] == kind],
                        {"regulariser": reg, "reading": reading},
                        {"regulariser": base, "reading": "trained"},
                        x="k",
                    )
                    for kv, d in curve:
                        if kv == k:
                            found = True
                            lines.append(
                                f"- {kind} k = {k:g}%: {reg} ({reading}) − {base} = "
                                f"{100 * d.mean:+.2f} points, interval [{100 * d.lo:+.2f}, "
                                f"{100 * d.hi:+.2f}]" + (" (excludes 0)" if d.excludes_zero else "")
                            )
    if not found:
        lines.append("(fewer than 2 seeds: no intervals)")
    lines.append("")
    return lines


def answer(records: Sequence[dict]) -> str:
    """The README's answer, drawn from the data: does targeted dropout keep its accuracy under
    70–80 % weight and 40–60 % unit pruning where none and dropout collapse?"""

    def mean(reg, reading, kind, k):
        v = [
            r["accuracy"]
            for r in records
            if (r["regulariser"], r["reading"], r["kind"], r["k"]) == (reg, reading, kind, k)
        ]
        return float(np.mean(v)) if v else None

    parts = []
    regs = list(dict.fromkeys(r["regulariser"] for r in records))
    for kind, k in CLAIM_POINTS:
        cells = []
        for reg in regs:
            for reading in READINGS:
                m = mean(reg, reading, kind, k)
                if m is not None:
                    cells.append(f"{reg} ({reading}) {100 * m:.1f}%")
        if cells:
            parts.append(f"{kind} pruning at {k:g}%: " + "; ".join(cells) + ".")
    return " ".join(parts) if parts else "No pruning point of the claim was run."


def _bn_text(settings: dict) -> str:
    """The sentence on BatchNorm recalibration, when the run re-estimated the statistics."""
    n = settings.get("bn_recalibration") or 0
    if not n:
        return ""
    return (
        f" Before the analysis each network's BatchNorm statistics were re-estimated on {n:,} "
        "training images, per reading (`--bn-recalibration`)."
    )


def run_time_text(summary: dict) -> str:
    """How long the run took: its wall-clock time, and, when it reused networks trained by
    earlier runs or resumed them, how many and the networks' whole training time (the sum of
    their epochs' ``seconds`` in each ``history``)."""
    text = f"{duration(summary.get('seconds', float('nan')))} of wall-clock time"
    nets = summary.get("networks") or []
    reused = resumed = 0
    total = 0.0
    for n in nets:
        epochs = sum(h.get("seconds", 0.0) for h in n.get("history", []))
        total += epochs
        here = n.get("train_seconds", epochs)
        if here < 0.05 * epochs:
            reused += 1
        elif here < 0.95 * epochs:
            resumed += 1
    if not (reused or resumed):
        return text
    parts = [f"reused {reused} of its {len(nets)} networks from earlier runs"] if reused else []
    parts += [f"resumed {resumed} from their last saved epoch"] if resumed else []
    return (
        f"{text} for its last run, which {' and '.join(parts)}; training the {len(nets)} "
        f"networks took {total / 3600:.1f} hours in all (the sum of their epochs' times)"
    )


SPLIT_NAMES = {"holdout": "holdout", "test": "test", "test-exact": "test, exact images"}


def _split_means(records: Sequence[dict], reg: str, split: str) -> tuple[float, float, int, int]:
    """Mean and std (%) over the seeds, the seed count and ``n`` of one regulariser's split."""
    sel = [r for r in records if r["regulariser"] == reg and r["split"] == split]
    m, sd = mean_std([100 * float(r["accuracy"]) for r in sel])
    return m, sd, len(sel), int(sel[0]["n"]) if sel else 0


def _network_difference(records: Sequence[dict], a: str, b: str):
    """Split ``a`` minus split ``b`` over every network (paired by regulariser and seed)."""
    from td_analysis.analysis.statistics import paired_difference

    acc = {(r["regulariser"], r["seed"], r["split"]): float(r["accuracy"]) for r in records}
    nets = sorted({(reg, seed) for reg, seed, sp in acc if sp == a and (reg, seed, b) in acc})
    if len(nets) < 2:
        return None
    return paired_difference([acc[(*n, a)] for n in nets], [acc[(*n, b)] for n in nets])


def split_accuracy_text(records: Sequence[dict]) -> list[str]:
    """The unpruned accuracy by evaluation split (``summary.json`` ``split_accuracy``): a table
    (mean ± std over the seeds) and the paired differences over every network, test minus the
    exact test images and holdout minus them."""
    if not records:
        return []
    regs = list(dict.fromkeys(r["regulariser"] for r in records))
    splits = [sp for sp in SPLIT_NAMES if any(r["split"] == sp for r in records)]
    n_of = {sp: _split_means(records, regs[0], sp)[3] for sp in splits}
    head = {
        "holdout": f"holdout ({n_of.get('holdout', 0):,} images)",
        "test": f"test ({n_of.get('test', 0):,})",
        "test-exact": f"test images 0–{n_of.get('test-exact', 1) - 1:,} (exact)",
    }
    lines = [
        "Unpruned accuracy (%) of each network as analysed (trained reading), by evaluation "
        "split, mean ± std over the seeds:",
        "",
        "| regulariser | " + " | ".join(head[sp] for sp in splits) + " |",
        "|---" * (len(splits) + 1) + "|",
    ]
    for reg in regs:
        cells = []
        for sp in splits:
            m, sd, _, _ = _split_means(records, reg, sp)
            cells.append(f"{m:.2f} ± {sd:.2f}")
        lines.append(f"| {reg} | " + " | ".join(cells) + " |")
    sentences = []
    for a, b, what in (
        ("test-exact", "test", "the exact test images than on the whole test split"),
        ("holdout", "test-exact", "the holdout than on the exact test images"),
    ):
        d = _network_difference(records, a, b)
        if d is None:
            continue
        span = (
            f"{d.level:.0%} t interval {100 * d.lo:+.2f} to {100 * d.hi:+.2f} points over "
            f"{d.n} networks"
        )
        if d.excludes_zero:
            direction = "higher" if d.mean > 0 else "lower"
            sentences.append(
                f"Accuracy is {abs(100 * d.mean):.2f} ± {100 * d.half_width:.2f} points "
                f"{direction} on {what} ({span})."
            )
        else:
            sentences.append(
                f"Accuracy on {what.replace(' than on ', ' vs on ')}: {NO_DIFFERENCE} "
                f"(difference {100 * d.mean:+.2f} points, {span})."
            )
    return [*lines, "", *sentences]


def readme(results: dict, command: str) -> str:
    """``README.md`` of the output folder: what each file shows, the command, the answer."""
    s = results["settings"]
    p = s["resolved"]
    load = results.get("load_average") or [None, None]
    load_text = f", 1-minute load average {load[0]:.1f} at the start" if load[0] else ""
    return "\n".join(
        [
            "# ResNet on CIFAR-10: pruning with and without targeted dropout (issue 22)",
            "",
            f"Made by `{command}` in {run_time_text(results)}{load_text}. Preset `{s['preset']}`: "
            f"units {p['units']}, widths {p['widths']}, {p['epochs']} epochs, lr {p['lr']} "
            f"({p['schedule']}), batch {p['batch_size']}, weight decay {p['weight_decay']}, "
            f"label smoothing {p['label_smoothing']}, gradient clipping {p['grad_clip']}; "
            f"seeds {s['seeds']}; regularisers {', '.join(s['regularisers'])}. The init conv "
            "and the logits are never targeted or pruned (the official code)." + _bn_text(s),
            "",
            "| file | what it shows |",
            "|---|---|",
            "| `pruning.json` | one record per network, reading and pruning: `regulariser`, "
            "`seed`, `reading` (`trained` / `zero-targeted`), `split`, `kind`, `k`, "
            f"`accuracy` and mean `loss` on {split_phrase(s)}, `zero_share` |",
            *(
                ["| `pruning_test.json` | the same records on the whole test split |"]
                if results.get("test_records")
                else []
            ),
            "| `pruning.md` | the paper's layout (rows k, columns regulariser), ours mean ± std "
            "over seeds with the paper's ResNet-32 number in brackets; paired differences |",
            "| `accuracy_vs_k.png` | accuracy (`pruning.json`) vs k for weight and unit pruning |",
            "| `taylor.json`, `estimators.png` | −∇ᵀd, ½dᵀHd (HVPs) and their sum against the "
            f"measured ΔE on {s['analysis_examples']:,} {s['analysis_split']} images; Spearman ρ |",
            "| `coadaptation.json`, `coadaptation_pooled.png`, `coadaptation_layers.png` | "
            "pooled θᵀ⊙H⊙θ block sums and layer × layer sums, none vs targeted (first seed) |",
            "| `summary.json` | settings, per-network training histories and timings, ρ, "
            "`split_accuracy` (unpruned accuracy by evaluation split) |",
            "",
            "## Answer (from `pruning.json`)",
            "",
            answer(results["records"]),
            "",
            *claim_lines(results["records"]),
            "",
            *_split_section(results.get("split_accuracy") or []),
        ]
    )


def _split_section(records: Sequence[dict]) -> list[str]:
    """The output README's section on the evaluation splits (none without the records)."""
    if not records:
        return []
    return [
        "## Which test images (from `summary.json`)",
        "",
        "The CIFAR-10 copy in `../shared/data` has its test images 0–999 exact and 1,000–9,999 "
        "decoded from JPEG copies (its README); the training and holdout images are exact.",
        "",
        *split_accuracy_text(records),
        "",
    ]


# ----------------------------------------------------------------------------- README block
RESNET_ACCURACY = Metric(
    "accuracy",
    "accuracy",
    100.0,
    " points",
    2,
    "{a} is {x} ± {h} points {dir} accurate than {b}",
    "more",
    "less",
)
#: what targeted dropout is compared with: the paper's "none" and "dropout" columns
BASELINES = ("none", "dropout")


def claim_points_of(regulariser: str) -> tuple[tuple[str, float], ...]:
    """The :data:`CLAIM_POINTS` a targeted regulariser answers for: weight pruning at 70–80 %
    for targeted weight dropout, unit pruning at 40–60 % for targeted unit dropout."""
    for kind in PRUNING_KINDS:
        if regulariser.startswith(f"targeted-{kind}"):
            return tuple((kd, k) for kd, k in CLAIM_POINTS if kd == kind)
    return ()


def claim_differences(
    records: Sequence[dict], reading: str = "trained"
) -> list[tuple[str, str, str, float, object]]:
    """``[(regulariser, baseline, kind, k, PairedDifference)]``: each targeted regulariser's
    ``reading`` minus each baseline's trained network, paired by seed, at its claim points
    (points with fewer than 2 common seeds are left out)."""
    regs = list(dict.fromkeys(r["regulariser"] for r in records))
    out = []
    for reg in regs:
        for kind, k in claim_points_of(reg):
            for base in (b for b in BASELINES if b in regs):
                curve = paired_curve(
                    [r for r in records if r["kind"] == kind],
                    {"regulariser": reg, "reading": reading},
                    {"regulariser": base, "reading": "trained"},
                    x="k",
                )
                out += [(reg, base, kind, k, d) for kv, d in curve if kv == k]
    return out


def claim_verdict(differences: Sequence[tuple]) -> dict[str, int]:
    """Counts over the claim points (regulariser × kind × k) of :func:`claim_differences`:
    ``holds`` (more accurate than every baseline, each interval above 0), ``reversed`` (some
    baseline more accurate, interval below 0), ``unsettled`` (the rest), and ``points``."""
    points: dict[tuple, list] = {}
    for reg, _base, kind, k, d in differences:
        points.setdefault((reg, kind, k), []).append(d)
    holds = sum(all(d.excludes_zero and d.mean > 0 for d in ds) for ds in points.values())
    rev = sum(any(d.excludes_zero and d.mean < 0 for d in ds) for ds in points.values())
    return {
        "points": len(points),
        "holds": holds,
        "reversed": rev,
        "unsettled": len(points) - holds - rev,
    }


def _mean_pct(records: Sequence[dict], reg: str, reading: str, kind: str, k: float) -> str:
    vals = [
        100 * r["accuracy"]
        for r in records
        if (r["regulariser"], r["reading"], r["kind"], r["k"]) == (reg, reading, kind, k)
    ]
    if not vals:
        return "–"
    m, sd = mean_std(vals)
    return f"{m:.1f} ± {sd:.1f}" if len(vals) > 1 else f"{m:.1f}"


def readme_resnet_results(records: Sequence[dict], summary: dict) -> str:
    """The README's ResNet block, from ``pruning.json`` and ``summary.json``: the run, the
    accuracy at the claim points (both readings of a targeted network), the paired differences'
    sentences and the verdicts on the paper's qualitative claim."""
    s = summary["settings"]
    p = s["resolved"]
    seeds = sorted({int(r["seed"]) for r in records})
    regs = list(dict.fromkeys(r["regulariser"] for r in records))
    cols = [
        (reg, rd)
        for reg in regs
        for rd in READINGS
        if any(r["regulariser"] == reg and r["reading"] == rd for r in records)
    ]
    lines = [
        f"The committed results come from `td-analysis reproduce --experiment resnet-cifar10 "
        f"--preset {s['preset']}` ({run_time_text(summary)}, `figures/resnet_cifar10/"
        f"summary.json`): a pre-activation ResNet with units {tuple(p['units'])} and widths "
        f"{tuple(p['widths'])}, {p['epochs']} epochs, seeds {', '.join(map(str, seeds))}. "
        f"Accuracy (%) on {split_phrase(s)}, mean ± std over the seeds, every conv but the "
        "init conv pruned; a targeted network read two ways: `trained` (its trained weights) and "
        "`zero-targeted` (the official evaluation: its targeted set at the training γ zeroed "
        "first). Every k: `figures/resnet_cifar10/pruning.md`." + _bn_text(s),
        "",
        "| pruning | " + " | ".join(f"{reg} · {rd}" for reg, rd in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for kind, k in (("weight", 0.0), *CLAIM_POINTS):
        label = "unpruned" if k == 0 else f"{kind} {k:g}%"
        cells = [_mean_pct(records, reg, rd, kind, k) for reg, rd in cols]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    split = summary.get("split_accuracy") or []
    if split:
        split = [
            "",
            "The test split of the CIFAR-10 copy in `../shared/data` has its images 0–999 exact "
            "and 1,000–9,999 decoded from JPEG copies (its README); the training and holdout "
            "images are exact.",
            "",
            *split_accuracy_text(split),
        ]
    return "\n".join([*lines, "", *claim_lines(records), *split])


def claim_lines(records: Sequence[dict]) -> list[str]:
    """The paired differences at the claim points as bullets, for each reading of the targeted
    networks (trained weights; the official zero-targeted evaluation), then one verdict sentence
    per reading."""
    seeds = sorted({int(r["seed"]) for r in records})
    by_reading = [(rd, claim_differences(records, rd)) for rd in READINGS]
    by_reading = [(rd, diffs) for rd, diffs in by_reading if diffs]
    if not by_reading:
        return ["(fewer than 2 seeds: no paired differences)"]
    lines = [
        f"Paired by seed, {LEVEL:.0%} t intervals over {len(seeds)} seeds, each targeted "
        "network (both readings) against the baselines' trained networks at its claim points "
        "(weight pruning 70–80 % for targeted weight dropout, unit pruning 40–60 % for targeted "
        "unit dropout):",
        "",
    ]
    for reading, diffs in by_reading:
        lines += [
            f"- {capital(claim(f'{reg} ({reading})', base, RESNET_ACCURACY, d, where=where))}"
            for reg, base, kind, k, d in diffs
            for where in [f"at {kind} k = {k:g}%: "]
        ]
    lines.append("")
    for reading, diffs in by_reading:
        v = claim_verdict(diffs)
        lines.append(
            f"Reading `{reading}`: the paper's qualitative claim (targeted dropout keeps its "
            f"accuracy where none and dropout lose it) holds at {v['holds']} of {v['points']} "
            f"claim points (more accurate than both baselines, every interval above zero); at "
            f"{v['reversed']} a baseline is more accurate; at {v['unsettled']} there is "
            f"{NO_DIFFERENCE} from at least one baseline."
        )
    return lines


# ----------------------------------------------------------------------------- figures
def accuracy_figure(records: Sequence[dict], settings: dict):
    """``accuracy_vs_k.png``: test accuracy vs k, weight and unit pruning, every regulariser
    and reading (mean ± std over seeds)."""
    from td_analysis.report import plotting

    plot_rows = [
        {**r, "regulariser": f"{r['regulariser']} ({r['reading']})", "bias": True} for r in records
    ]
    fig = plotting.plot_accuracy_vs_k(
        plot_rows,
        title=f"ResNet ({settings['preset']} preset): accuracy on {split_phrase(settings)} "
        f"after pruning every conv but the init conv (mean ± std over "
        f"{len(settings['seeds'])} seed(s))",
    )
    for ax in fig.axes:
        if ax.get_xlabel():
            ax.set_xlabel("k: percent of each pruned conv's weights / filters removed")
    return fig


def estimators_figure(taylor: Sequence[dict], settings: dict):
    """``estimators.png``: each Taylor estimate of every pruning against its measured ΔE."""
    from td_analysis.report import plotting

    return plotting.plot_taylor_records(
        [{**r, "regulariser": f"{r['regulariser']} ({r['reading']})"} for r in taylor],
        TAYLOR_ESTIMATORS,
        title=f"Taylor estimates vs measured ΔE of every pruning (mean loss, "
        f"{settings['analysis_examples']:,} {settings['analysis_split']} images, "
        f"{settings['taylor_dtype']}, HVPs)",
    )


def coadaptation_figures(maps: Sequence[dict], settings: dict) -> tuple:
    """``coadaptation_pooled.png`` and ``coadaptation_layers.png`` (none vs targeted, first
    seed); ``()`` without maps."""
    from td_analysis.report import plotting

    if not maps:
        return ()
    pooled = plotting.coadaptation_panels(
        {m["regulariser"]: np.asarray(m["pooled"]) for m in maps},
        gamma=0.75,
        suptitle=f"θᵀ⊙H⊙θ of the {maps[0]['num_weights']:,} pruned conv weights ordered by "
        f"|θ|, {settings['pooled_bins']}² block sums (seed {settings['seeds'][0]})",
    )
    layers = plotting.plot_layer_maps(
        {m["regulariser"]: np.asarray(m["layer_sums"]) for m in maps},
        {m["regulariser"]: np.asarray(m["pruned_layer_sums"]) for m in maps},
        maps[0]["layers"],
        prune_k=maps[0]["prune_k"],
    )
    return pooled, layers
