"""Sentences and interval tables of the reports (``td_analysis.report.compat``) on synthetic
results.

Every printed difference and interval is recomputed here with ``scipy.stats.ttest_rel`` from
the per-seed numbers, and a sentence may state a difference only when that interval excludes
zero; otherwise it must say "no difference within the seeds' spread".
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from fashion_cases import synthetic_pruning_records
from scipy import stats

from td_analysis.report import compat as reports

NO_DIFF = "no difference within the seeds' spread"
CELL = re.compile(r"([+-][\d.]+) \[([+-][\d.]+), ([+-][\d.]+)\]")
SPAN = re.compile(r"95% t interval ([+-][\d.]+) to ([+-][\d.]+)(?: points)? over (\d+) seeds")


def ref_ci(a, b) -> tuple[float, float, float]:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    return float(np.mean(a - b)), float(ci.low), float(ci.high)


def toy_results(seeds=(0, 1, 2, 3, 4), seed: int = 0) -> dict:
    """A ``table1.json``-like dict: none loses ~14 points to pruning, targeted dropout ~0,
    dropout ~8, DropConnect ~ the same as targeted dropout (so one comparison has no effect)."""
    rng = np.random.default_rng(seed)
    n = len(seeds)
    drop = {"none": 0.14, "targeted-weight": 0.0, "dropout": 0.08, "dropconnect": 0.0}
    table = {}
    for split in ("holdout", "test"):
        table[split] = {}
        for reg, lost in drop.items():
            acc = 0.40 + rng.normal(0, 0.004, n)
            pruned = acc - lost - rng.normal(0, 0.01, n)
            meas = np.abs(rng.normal(4 * lost + 0.02, 0.01, n))
            table[split][reg] = {
                "abs_estimate": list(meas * 1.1),
                "abs_measured": list(meas),
                "estimate": list(meas * 1.1),
                "measured": list(meas),
                "first_order": list(meas * 0.1),
                "second_order": list(meas),
                "accuracy": list(acc),
                "pruned_accuracy": list(pruned),
            }
    fig1 = {
        reg: [
            {"n_kept": 30, "n_pruned": 70, "pruned_pruned": float(v)} for v in rng.uniform(0, 1, n)
        ]
        for reg in ("none", "targeted-weight")
    }
    return {
        "settings": {
            "seeds": list(seeds),
            "epochs": 20,
            "gamma": 0.75,
            "alpha": 0.5,
            "prune_fraction": 0.75,
            "splits": ["holdout", "test"],
            "figure_split": "holdout",
            "base": {"num_classes": 10},
        },
        "seconds": 123.4,
        "n_eval": {"holdout": 10000, "test": 10000},
        "table1": table,
        "paper_table1": {
            "none": {"abs_delta_e": 0.12, "unpruned_accuracy": 0.3811, "pruned_accuracy": 0.2613},
            "targeted-weight": {
                "abs_delta_e": 0.0146,
                "unpruned_accuracy": 0.4009,
                "pruned_accuracy": 0.4014,
            },
        },
        "figure1_set_pruning_mean_loss": fig1,
        "regularisers": {"dropout": {"alpha": 0.375}, "dropconnect": {"alpha": 0.375}},
    }


METRIC_VALUES = {
    "accuracy": lambda c: np.asarray(c["accuracy"]),
    "pruned_accuracy": lambda c: np.asarray(c["pruned_accuracy"]),
    "accuracy_lost": lambda c: np.subtract(c["accuracy"], c["pruned_accuracy"]),
    "abs_measured": lambda c: np.asarray(c["abs_measured"]),
}
SCALE = {"accuracy": 100, "pruned_accuracy": 100, "accuracy_lost": 100, "abs_measured": 1}
DIGITS = {"accuracy": 2, "pruned_accuracy": 2, "accuracy_lost": 2, "abs_measured": 4}
# how each metric's sentence reads (its wording in either form)
METRIC_WORDS = {
    "accuracy": ("before pruning", "unpruned accuracy:"),
    "pruned_accuracy": ("after pruning (", "accuracy after pruning:"),
    "accuracy_lost": ("to pruning than", "accuracy lost by pruning:"),
    "abs_measured": ("|ΔE| of", "measured abs(ΔE):"),
}
NAMES = {"none": "none", "dropout": "dropout α = 0.375", "dropconnect": "DropConnect α = 0.375"}


def check_sentence(text: str, ref: tuple[float, float, float], scale: float, digits: int) -> None:
    mean, lo, hi = ref
    half_ulp = 0.5 * 10.0**-digits * 1.001
    m = SPAN.search(text)
    assert m, text
    assert float(m.group(1)) == pytest.approx(scale * lo, abs=half_ulp), text
    assert float(m.group(2)) == pytest.approx(scale * hi, abs=half_ulp), text
    excludes = lo > 0 or hi < 0
    assert (NO_DIFF in text) == (not excludes), text
    if excludes:  # "X ± H": |mean| and the half width, the direction from the sign
        x, h = re.search(r"([\d.]+) ± ([\d.]+)", text).groups()
        assert float(x) == pytest.approx(scale * abs(mean), abs=half_ulp), text
        assert float(h) == pytest.approx(scale * (hi - lo) / 2, abs=half_ulp), text
        words = (" more ", " larger ") if mean > 0 else (" less ", " smaller ")
        assert any(w in text for w in words), text


@pytest.mark.parametrize("split", ["holdout", "test"])
def test_toy_differences_table_and_sentences(split: str) -> None:
    res = toy_results()
    md = reports.toy_split_markdown(split, res["table1"][split], res)
    rows = res["table1"][split]
    bullets = [ln[2:] for ln in md.splitlines() if ln.startswith("- ")]
    assert len(bullets) == 3 * 4
    for b in ("none", "dropout", "dropconnect"):
        (line,) = [
            ln for ln in md.splitlines() if ln.startswith(f"| targeted dropout − {NAMES[b]} |")
        ]
        cells = [c.strip() for c in line.strip().strip("|").split("|")][1:]
        for cell, key in zip(cells, METRIC_VALUES, strict=True):
            mean, lo, hi = ref_ci(
                METRIC_VALUES[key](rows["targeted-weight"]), METRIC_VALUES[key](rows[b])
            )
            got = [float(v) for v in CELL.fullmatch(cell).groups()]
            half_ulp = 0.5 * 10.0 ** -DIGITS[key] * 1.001
            for g, want in zip(got, (mean, lo, hi), strict=True):
                assert g == pytest.approx(SCALE[key] * want, abs=half_ulp), (b, key)
            (sentence,) = [
                s
                for s in bullets
                if any(w in s for w in METRIC_WORDS[key])
                and re.search(rf"(than|vs|that of) {re.escape(NAMES[b])}\b(?! α)", s)
            ]
            ref = ref_ci(METRIC_VALUES[key](rows["targeted-weight"]), METRIC_VALUES[key](rows[b]))
            check_sentence(sentence, ref, SCALE[key], DIGITS[key])
    # the synthetic effects: targeted dropout loses less than none and dropout, not DropConnect
    lost = [s for s in bullets if "to pruning than" in s or "lost by pruning:" in s]
    assert any("less accuracy to pruning than none" in s for s in lost)
    assert any(f"vs {NAMES['dropconnect']}, accuracy lost" in s and NO_DIFF in s for s in lost)


def test_toy_accuracy_lost_line_and_paper_drops() -> None:
    res = toy_results()
    md = reports.toy_split_markdown("holdout", res["table1"]["holdout"], res)
    m = re.search(
        r"none (-?[\d.]+) points, targeted dropout (-?[\d.]+) points, dropout α = 0.375 "
        r"(-?[\d.]+) points, DropConnect α = 0.375 (-?[\d.]+) points \(paper: (-?[\d.]+) and "
        r"(-?[\d.]+)\)",
        md,
    )
    assert m, md
    rows = res["table1"]["holdout"]
    regs = ("none", "targeted-weight", "dropout", "dropconnect")
    for printed, reg in zip(m.groups()[:4], regs, strict=True):
        want = 100 * np.mean(np.subtract(rows[reg]["accuracy"], rows[reg]["pruned_accuracy"]))
        assert float(printed) == pytest.approx(want, abs=0.005 * 1.001)
    assert float(m.group(5)) == pytest.approx(100 * (0.3811 - 0.2613), abs=0.005)
    assert float(m.group(6)) == pytest.approx(100 * (0.4009 - 0.4014), abs=0.005)


def test_table1_markdown_names_the_set_it_prunes_from_the_json() -> None:
    """'the 70 of the 100 hidden→output weights … (7 of each output unit's 10 inputs)': counts
    from the JSON's block summaries, not a hand-written 75 %."""
    res = toy_results()
    md = reports.table1_markdown(res, network="net")
    assert "Deleting only the 70 of the 100 hidden→output weights" in md
    assert "(7 of each output unit's 10 inputs)" in md
    assert "75% lowest" not in md
    res["figure1_set_pruning_mean_loss"] = {
        r: [{**b, "n_kept": 40, "n_pruned": 60} for b in v]
        for r, v in res["figure1_set_pruning_mean_loss"].items()
    }
    md = reports.table1_markdown(res, network="net")
    assert "the 60 of the 100" in md and "(6 of each output unit's 10 inputs)" in md


FASHION_LABELS = {
    "none": "none",
    "targeted weight dropout": "targeted-weight",
    "targeted unit dropout": "targeted-unit",
    "dropout": "dropout",
    "DropConnect": "dropconnect",
}


def _grid_records() -> list[dict]:
    """5 regularisers × 4 seeds with biases; 3 regularisers × the first 3 seeds without (the
    default grid's shape): pairs must use the seeds both networks have."""
    regs = ("none", "targeted-weight", "targeted-unit", "dropout", "dropconnect")
    recs = synthetic_pruning_records(seeds=(0, 1, 2, 3), regularisers=regs)
    return [r for r in recs if r["bias"] or (r["seed"] < 3 and r["regulariser"] in regs[:3])]


def test_fashion_differences_and_sentences() -> None:
    recs = _grid_records()
    md = reports.fashion_pruning_markdown(
        recs, network="net", n_test=2000, settings={"protocol": "default", "task": "t"}
    )
    section = md[md.index("## Paired differences") :]

    def acc(reg, kind, bias, k):
        return [
            r["accuracy"]
            for r in sorted(recs, key=lambda r: r["seed"])
            if (r["regulariser"], r["kind"], r["bias"], r["k"]) == (reg, kind, bias, k)
        ]

    tables = [t for t in section.split("\n### ")[1:] if "| k (%)" in t]
    seen = []
    for table in tables:
        lines = [ln for ln in table.splitlines() if ln.startswith("| ")]
        header = [c.strip() for c in lines[0].strip("|").split("|")][1:]
        body = {
            float(ln.strip("|").split("|")[0]): ln.strip("|").split("|")[1:] for ln in lines[1:]
        }
        assert sorted(body) == [0.0, 50.0, 90.0, 95.0]
        for col, name in enumerate(header):
            kind, comp, bias_text = (p.strip() for p in name.split("·"))
            a, b = (FASHION_LABELS[x] for x in comp.split(" − "))
            bias = bias_text == "bias"
            seen.append((kind, a, b, bias))
            for k, cells in body.items():
                ref = ref_ci(acc(a, kind, bias, k), acc(b, kind, bias, k))
                got = [float(v) for v in CELL.fullmatch(cells[col].strip()).groups()]
                for g, want in zip(got, ref, strict=True):
                    assert g == pytest.approx(100 * want, abs=0.005 * 1.001), (name, k)
    # with biases: 4 regularisers − none and 2 targeted × 2 controls, per kind; without
    # biases only the targeted kinds − none (no controls were trained without biases)
    want = {
        (kind, a, b, True)
        for kind in ("weight", "unit")
        for a, b in [
            ("targeted-weight", "none"),
            ("targeted-unit", "none"),
            ("dropout", "none"),
            ("dropconnect", "none"),
            ("targeted-weight", "dropout"),
            ("targeted-weight", "dropconnect"),
            ("targeted-unit", "dropout"),
            ("targeted-unit", "dropconnect"),
        ]
    } | {
        (kind, a, "none", False)
        for kind in ("weight", "unit")
        for a in ("targeted-weight", "targeted-unit")
    }
    assert sorted(seen) == sorted(want)
    bullets = [ln[2:] for ln in section.splitlines() if ln.startswith("- ")]
    assert len(bullets) == 3 * len(want)  # k = 50, 90, 95 × every comparison
    names = sorted(FASHION_LABELS, key=len, reverse=True)
    for s in bullets:
        k, kind, bias_text, rest = re.match(
            r"At k = ([\d.]+) \((\w+) pruning, (bias|no bias)\): (.*)", s
        ).groups()
        first = next(n for n in names if rest.startswith(n) or rest.startswith(n.capitalize()))
        second = next(n for n in names if f"than {n} (" in rest or f" vs {n}, " in rest)
        ref = ref_ci(
            acc(FASHION_LABELS[first], kind, bias_text == "bias", float(k)),
            acc(FASHION_LABELS[second], kind, bias_text == "bias", float(k)),
        )
        check_sentence(s, ref, 100, 2)
    # the planted effect (+18 points at k = 90 for targeted weight dropout, weight pruning) shows
    assert any(
        s.startswith("At k = 90 (weight pruning, bias): targeted weight dropout is")
        for s in bullets
    )


def test_a_single_seed_gives_no_differences() -> None:
    recs = synthetic_pruning_records(seeds=(0,))
    md = reports.fashion_pruning_markdown(
        recs, network="net", n_test=2000, settings={"protocol": "default", "task": "t"}
    )
    assert "Paired differences" not in md


def test_readme_blocks_are_replaced_in_place() -> None:
    text = (
        "intro 1\n"
        + reports.generated_marker("toy", "figures/table1.json")
        + "\nold 3.14\n<!-- end generated: toy -->\noutro 2\n"
    )
    new = reports.replace_generated(text, "toy", "new 2.72")
    assert "old" not in new and "new 2.72" in new
    assert new.startswith("intro 1\n<!-- begin generated: toy from figures/table1.json")
    assert new.endswith("<!-- end generated: toy -->\noutro 2\n")
    assert reports.replace_generated(new, "toy", "new 2.72") == new
    with pytest.raises(ValueError, match="no '<!-- begin generated: fashion-mlp"):
        reports.replace_generated(text, "fashion-mlp", "x")


def test_difference_plot_draws_each_interval() -> None:
    """The band of each line spans exactly [100·lo, 100·hi] of the paired differences (ttest_rel
    of the synthetic records), the line sits at 100·mean; zero is marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from td_analysis.report.plotting import plot_paired_differences

    recs = synthetic_pruning_records()
    panels = reports.fashion_difference_panels(recs)
    fig = plot_paired_differences(panels, xlabel="k")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == len(panels) == 4
    for ax, (title, lines) in zip(axes, panels.items(), strict=True):
        assert ax.get_title() == title
        kind, bias_text = title.replace(" pruning", "").split(", ")
        drawn = [ln for ln in ax.get_lines() if ln.get_label() in lines]
        assert [ln.get_label() for ln in drawn] == list(lines)
        for line, coll in zip(drawn, ax.collections, strict=True):
            a = "targeted-weight" if "weight dropout" in line.get_label() else "targeted-unit"
            xs = line.get_xdata()
            for x, y, path_y in zip(xs, line.get_ydata(), range(len(xs)), strict=True):
                rows = {
                    reg: [
                        r["accuracy"]
                        for r in sorted(recs, key=lambda r: r["seed"])
                        if (r["regulariser"], r["kind"], r["bias"], r["k"])
                        == (reg, kind, bias_text == "bias", x)
                    ]
                    for reg in (a, "none")
                }
                mean, lo, hi = ref_ci(rows[a], rows["none"])
                assert y == pytest.approx(100 * mean)
                verts = coll.get_paths()[0].vertices
                at_x = verts[np.isclose(verts[:, 0], x), 1]
                assert at_x.min() == pytest.approx(100 * lo) and at_x.max() == pytest.approx(
                    100 * hi
                ), path_y
        assert any(np.allclose(ln.get_ydata(), 0) for ln in ax.get_lines())
    plt.close(fig)
    with pytest.raises(ValueError, match="no panels"):
        plot_paired_differences({}, xlabel="k")


def test_report_only_rewrites_from_the_json_and_refuses_bad_input(tmp_path, monkeypatch) -> None:
    """``reproduce --report-only`` trains nothing: table1.md and the README block come from the
    JSON alone; a missing JSON or --readme without --report-only exit with status 2."""
    import json

    from td_analysis.cli import main

    monkeypatch.setenv("MPLBACKEND", "Agg")
    res = toy_results()
    from td_analysis.training.loop import TrainConfig

    res["settings"]["base"] = TrainConfig().to_dict()  # the toy network 3072 → 10 → 10
    (tmp_path / "table1.json").write_text(json.dumps(res))
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n" + reports.generated_marker("toy", "t") + "\nold\n<!-- end generated: toy -->\n"
    )
    rc = main(["reproduce", "--report-only", "--out", str(tmp_path), "--readme", str(readme)])
    assert rc == 0
    md = (tmp_path / "table1.md").read_text()
    assert "| targeted dropout − DropConnect α = 0.375 |" in md
    assert readme.read_text().count("### holdout split (10,000 images)") == 1
    assert "\nold\n" not in readme.read_text()
    assert "Network 3072 → 10 → 10 ReLU on CIFAR-10" in md
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["reproduce", "--report-only", "--out", str(empty)]) == 2
    assert not any(empty.iterdir())  # nothing half-written
    assert main(["reproduce", "--readme", str(readme)]) == 2


def test_one_seed_gives_the_table_without_differences() -> None:
    res = toy_results(seeds=(0,))
    md = reports.table1_markdown(res, network="net")
    assert md.count("| targeted dropout |") == 2 and "Paired differences" not in md
    assert not [ln for ln in md.splitlines() if ln.startswith("- ") and "t interval" in ln]
    assert reports.toy_difference_curves({**res, "pruning_curves": []}) == {}


# ----------------------------------------------------------------------------- resnet block
def _resnet_records(seeds=(0, 1, 2), seed: int = 3) -> list[dict]:
    """none and dropout collapse under weight pruning at 70–80 % where targeted weight dropout
    keeps ~80 %; targeted unit dropout is the baselines' equal under unit pruning (noise only)."""
    rng = np.random.default_rng(seed)
    regs = ("none", "dropout", "targeted-weight-a0.66-g0.75", "targeted-unit-a0.66-g0.75")
    recs = []
    for reg in regs:
        readings = ("trained", "zero-targeted") if reg.startswith("targeted") else ("trained",)
        for s in seeds:
            for reading in readings:
                for kind in ("weight", "unit"):
                    for k in (0.0, 10.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0):
                        base = 0.82 - (0.5 if k >= 70 and kind == "weight" else 0.0)
                        if reg.startswith("targeted-weight") and kind == "weight":
                            base = 0.80
                        acc = base + rng.normal(0, 0.01)
                        recs.append(
                            {
                                "regulariser": reg,
                                "seed": s,
                                "reading": reading,
                                "kind": kind,
                                "k": k,
                                "accuracy": float(acc),
                                "loss": 1.0,
                                "zero_share": 0.0,
                            }
                        )
    return recs


def test_resnet_claims_are_the_paired_intervals_and_the_verdict_counts_them() -> None:
    from td_analysis.report import resnet

    recs = _resnet_records()

    def acc(reg, reading, kind, k):
        return [
            r["accuracy"]
            for r in sorted(recs, key=lambda r: r["seed"])
            if (r["regulariser"], r["reading"], r["kind"], r["k"]) == (reg, reading, kind, k)
        ]

    lines = resnet.claim_lines(recs)
    bullets = [ln[2:] for ln in lines if ln.startswith("- ")]
    # per reading: TD-weight × {70, 80} and TD-unit × {40, 50, 60}, each vs none and dropout
    assert len(bullets) == 2 * (2 + 3) * 2
    outcome: dict[str, dict] = {"trained": {}, "zero-targeted": {}}
    for b in bullets:
        kind, k, reg, reading, base = re.match(
            r"At (\w+) k = ([\d.]+)%: (targeted-\w+-a[\d.]+-g[\d.]+) \(([\w-]+)\).*?"
            r"(none|dropout)\b",
            b,
        ).groups()
        assert reg.startswith(f"targeted-{kind}"), b
        ref = ref_ci(acc(reg, reading, kind, float(k)), acc(base, "trained", kind, float(k)))
        check_sentence(b, ref, 100, 2)
        outcome[reading].setdefault((reg, kind, k), []).append(ref)
    verdicts = [ln for ln in lines if ln.startswith("Reading `")]
    assert len(verdicts) == 2
    for reading, points in outcome.items():
        holds = sum(all(lo > 0 for _, lo, _ in refs) for refs in points.values())
        rev = sum(any(hi < 0 for _, _, hi in refs) for refs in points.values())
        assert holds == 2  # the planted collapse: both weight points, in both readings
        (verdict,) = [v for v in verdicts if v.startswith(f"Reading `{reading}`")]
        assert f"holds at {holds} of {len(points)} claim points" in verdict, verdict
        assert f"at {rev} a baseline" in verdict, verdict
        assert f"at {len(points) - holds - rev} there is {NO_DIFF}" in verdict, verdict


def test_resnet_readme_block_table_is_the_records_means() -> None:
    from td_analysis.report import resnet

    recs = _resnet_records(seeds=(0, 1))
    summary = {
        "seconds": 600.0,
        "settings": {
            "preset": "cpu",
            "resolved": {"units": [1, 1, 1], "widths": [16, 32, 64], "epochs": 20},
        },
    }
    text = resnet.readme_resnet_results(recs, summary)
    rows = [ln for ln in text.splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in rows[0].strip("|").split("|")][1:]
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        label, cells = cells[0], cells[1:]
        kind, k = (
            ("weight", 0.0)
            if label == "unpruned"
            else (label.split()[0], float(label.split()[1][:-1]))
        )
        for col, cell in zip(header, cells, strict=True):
            reg, reading = col.split(" · ")
            vals = [
                100 * r["accuracy"]
                for r in recs
                if (r["regulariser"], r["reading"], r["kind"], r["k"]) == (reg, reading, kind, k)
            ]
            m, sd = cell.split(" ± ")
            assert float(m) == pytest.approx(np.mean(vals), abs=0.05 * 1.001), (label, reg)
            assert float(sd) == pytest.approx(np.std(vals, ddof=1), abs=0.05 * 1.001)
    assert "10 min 0 s" in text and "seeds 0, 1" in text
    assert len(header) == 2 + 2 * 2  # none, dropout; both readings of the two targeted ones


def test_resnet_run_time_says_what_the_last_run_reused() -> None:
    from td_analysis.report.resnet import run_time_text

    def net(train_seconds: float, epochs: tuple[float, ...]) -> dict:
        return {"train_seconds": train_seconds, "history": [{"seconds": s} for s in epochs]}

    fresh = {"seconds": 3725.0, "networks": [net(100.0, (50.0, 50.0))] * 2}
    assert run_time_text(fresh) == "62 min 5 s of wall-clock time"
    # reused: trained before (0.1 s of 3,600); resumed: 1,800 s of 3,600 trained here
    mixed = {
        "seconds": 5795.2,
        "networks": [net(0.1, (1800.0, 1800.0)), net(1800.0, (1800.0, 1800.0)), net(3600, (3600,))],
    }
    assert run_time_text(mixed) == (
        "96 min 35 s of wall-clock time for its last run, which reused 1 of its 3 networks from "
        "earlier runs and resumed 1 from their last saved epoch; training the 3 networks took "
        "3.0 hours in all (the sum of their epochs' times)"
    )


def test_resnet_split_accuracy_text_is_the_records_means_and_paired_differences() -> None:
    from td_analysis.report.resnet import split_accuracy_text

    # 2 regularisers × 2 seeds; exact test images 9 ± 1 points above the whole test split,
    # holdout equal to the exact test images up to ±0.5
    acc = {
        ("none", 0): (0.84, 0.75, 0.84),
        ("none", 1): (0.85, 0.75, 0.845),
        ("dropout", 0): (0.78, 0.70, 0.785),
        ("dropout", 1): (0.77, 0.69, 0.77),
    }
    recs = [
        {"regulariser": reg, "seed": seed, "reading": "trained", "split": sp, "n": n, "accuracy": a,
         "loss": 1.0}
        for (reg, seed), values in acc.items()
        for sp, n, a in zip(("holdout", "test", "test-exact"), (10000, 10000, 1000), values,
                            strict=True)
    ]  # fmt: skip
    lines = split_accuracy_text(recs)
    assert (
        lines[2]
        == "| regulariser | holdout (10,000 images) | test (10,000) | test images 0–999 (exact) |"
    )
    assert lines[4] == "| none | 84.50 ± 0.71 | 75.00 ± 0.00 | 84.25 ± 0.35 |"
    assert lines[5] == "| dropout | 77.50 ± 0.71 | 69.50 ± 0.71 | 77.75 ± 1.06 |"
    d = np.array([0.09, 0.095, 0.085, 0.08])  # test-exact − test per network
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert lines[-2] == (
        f"Accuracy is {100 * d.mean():.2f} ± {100 * half:.2f} points higher on the exact test "
        "images than on the whole test split (95% t interval "
        f"{100 * (d.mean() - half):+.2f} to {100 * (d.mean() + half):+.2f} points over 4 networks)."
    )
    assert "no difference within the seeds' spread" in lines[-1] and "holdout vs on" in lines[-1]
    assert split_accuracy_text([]) == []
