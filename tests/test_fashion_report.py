"""``pruning.md`` of the fashion experiment from synthetic records with several seeds: every
cell is the mean ± sample std (ddof = 1) of the matching records, computed here by hand."""

from __future__ import annotations

import math
import random

from td_analysis.report.compat import fashion_pruning_markdown

KS = [0.0, 25.0, 50.0, 99.0]
REGS = ["none", "targeted-weight", "targeted-unit"]


def records():
    rnd = random.Random(5)
    out = []
    for reg in REGS:
        for bias in (True, False):
            for seed in (0, 1, 2):
                for kind in ("weight", "unit"):
                    for k in KS:
                        acc = round(rnd.uniform(0.1, 0.9) * 2000) / 2000
                        out.append(
                            {
                                "regulariser": reg,
                                "bias": bias,
                                "seed": seed,
                                "kind": kind,
                                "k": k,
                                "accuracy": acc,
                                "loss": rnd.uniform(0.2, 2.0),
                            }
                        )
    return out


def test_every_cell_is_mean_and_sample_std():
    recs = records()
    md = fashion_pruning_markdown(
        recs, network="net", n_test=2000, settings={"protocol": "default", "task": "t"}
    )
    first_table = md[: md.index("## Paired differences")]  # the differences are tested elsewhere
    lines = [line for line in first_table.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert len(header) == 1 + 2 * len(REGS) * 2
    body = {float(line.strip("|").split("|")[0]): line.strip("|").split("|") for line in lines[1:]}
    assert sorted(body) == KS
    for col, name in enumerate(header[1:], start=1):
        kind, reg, bias = (part.strip() for part in name.split("·"))
        for k in KS:
            acc = [
                r["accuracy"]
                for r in recs
                if (r["kind"], r["regulariser"], "bias" if r["bias"] else "no bias", r["k"])
                == (kind, reg, bias, k)
            ]
            assert len(acc) == 3
            m = sum(acc) / 3
            s = math.sqrt(sum((a - m) ** 2 for a in acc) / 2)
            assert body[k][col].strip() == f"{100 * m:.2f} ± {100 * s:.2f}", (name, k)
    assert "3 seed(s) (0, 1, 2)" in md and "2,000 test images" in md


def test_missing_column_entry_is_a_dash():
    recs = [r for r in records() if not (r["k"] == 50.0 and r["regulariser"] == "none")]
    md = fashion_pruning_markdown(
        recs, network="net", n_test=2000, settings={"protocol": "default", "task": "t"}
    )
    row = next(line for line in md.splitlines() if line.startswith("| 50 |"))
    assert row.count("–") == 4  # none × bias on/off × weight/unit
