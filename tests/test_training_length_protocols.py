"""The training-length study's file holds several protocols
(:func:`td_analysis.pipelines.training_length.merge_protocol_runs`), and its report gives each
further protocol a table and paired sentences
(:func:`td_analysis.report.training_length.fashion_training_length_markdown`).

References: records built by hand with known per-seed accuracies, so every mean, std and
paired difference is known in closed form."""

from __future__ import annotations

import json
import re

import pytest

from td_analysis.pipelines.training_length import fashion_study, merge_protocol_runs
from td_analysis.report.training_length import (
    fashion_training_length_markdown,
    protocol_comparison_claims,
    readme_training_length,
)

PANELS = (("weight", 0.0), ("weight", 90.0), ("unit", 50.0))


def _records(protocol: str, batch: int, acc, epochs=(3, 10)) -> list[dict]:
    """One record per regulariser × seed × epochs × panel; accuracy ``acc(reg, seed, e, k)``."""
    return [
        {
            "regulariser": reg,
            "bias": True,
            "seed": seed,
            "epochs": e,
            "batch_size": batch,
            "protocol": protocol,
            "kind": kind,
            "k": k,
            "accuracy": acc(reg, seed, e, k),
            "loss": 1.0,
        }
        for reg in ("none", "targeted-weight")
        for seed in (0, 1, 2)
        for e in epochs
        for kind, k in PANELS
    ]


def _default_acc(reg, seed, e, k):
    return 0.80 - k / 1000 + 0.01 * seed


def _seed_acc(reg, seed, e, k):
    # batch 32 is exactly 2 points above batch 128 for none, 3 for targeted weight, every seed
    return _default_acc(reg, seed, e, k) + (0.02 if reg == "none" else 0.03)


def _run(protocol: str, seconds: float) -> dict:
    cmd = "python -m td_analysis.training_length --experiment fashion-mlp"
    if protocol != "default":
        cmd += f" --protocol {protocol}"
    return {"command": cmd, "experiment": "fashion-mlp", "seconds": seconds}


def test_a_run_replaces_only_its_own_protocol(tmp_path) -> None:
    path = tmp_path / "training_length.json"
    default = _records("default", 128, _default_acc)
    first = merge_protocol_runs(path, _run("default", 60.0), "default", default)
    assert first["records"] == default and first["seconds"] == 60.0
    path.write_text(json.dumps(first))
    seed = _records("seed", 32, _seed_acc)
    both = merge_protocol_runs(path, _run("seed", 600.0), "seed", seed)
    # the top level stays the default protocol's run; both runs are listed
    assert both["seconds"] == 60.0 and both["protocol"] == "default"
    assert set(both["protocols"]) == {"default", "seed"}
    assert [r["seconds"] for r in both["protocols"]["seed"]] == [600.0]
    assert both["records"] == default + seed
    path.write_text(json.dumps(both))
    # a second default run replaces the default records and keeps the seed's
    again = _records("default", 128, lambda *a: 0.5)
    third = merge_protocol_runs(path, _run("default", 70.0), "default", again)
    assert third["records"] == seed + again and third["seconds"] == 70.0
    # a file from another experiment is replaced whole
    other = merge_protocol_runs(path, {**_run("default", 1.0), "experiment": "toy"}, "default", [])
    assert other["records"] == [] and set(other["protocols"]) == {"default"}


def test_a_run_of_some_regularisers_keeps_the_others(tmp_path) -> None:
    """A run of targeted weight dropout alone under ``seed`` adds its networks to the ``none``
    ones an earlier run made; both runs stay listed until one re-makes the other's networks."""
    path = tmp_path / "training_length.json"
    seed = _records("seed", 32, _seed_acc)
    none = [r for r in seed if r["regulariser"] == "none"]
    tw = [r for r in seed if r["regulariser"] == "targeted-weight"]
    first = merge_protocol_runs(
        path, {**_run("seed", 100.0), "regularisers": ["none"], "seeds": [0, 1, 2]}, "seed", none
    )
    path.write_text(json.dumps(first))
    run2 = {**_run("seed", 200.0), "regularisers": ["targeted-weight"], "seeds": [0, 1, 2]}
    second = merge_protocol_runs(path, run2, "seed", tw)
    assert second["records"] == none + tw
    assert [r["seconds"] for r in second["protocols"]["seed"]] == [100.0, 200.0]
    md = fashion_training_length_markdown({**second, "protocol": "default"})
    assert "(none; 1 min 40 s of wall-clock time) and" in md
    assert "(targeted weight dropout; 3 min 20 s of wall-clock time), checkpoints" in md
    path.write_text(json.dumps(second))
    run3 = {**_run("seed", 300.0), "regularisers": ["none", "targeted-weight"], "seeds": [0, 1, 2]}
    third = merge_protocol_runs(path, run3, "seed", seed)
    assert third["records"] == seed
    assert [r["seconds"] for r in third["protocols"]["seed"]] == [300.0]


def test_a_file_written_before_protocols_were_kept_apart(tmp_path) -> None:
    path = tmp_path / "training_length.json"
    old = {**_run("default", 60.0), "records": _records("default", 128, _default_acc)}
    path.write_text(json.dumps(old))
    seed = _records("seed", 32, _seed_acc)
    merged = merge_protocol_runs(path, _run("seed", 600.0), "seed", seed)
    assert [r["seconds"] for r in merged["protocols"]["default"]] == [60.0]
    assert len(merged["records"]) == len(old["records"]) + len(seed)


def test_fashion_study_grids() -> None:
    seed = fashion_study("seed")
    assert (seed["epochs"], seed["regularisers"], seed["seeds"]) == (
        (3, 10, 30, 100),
        ("none", "targeted-weight"),
        (0, 1),
    )
    assert fashion_study("default", {"seeds": (7,)})["seeds"] == (7,)
    with pytest.raises(ValueError, match="no protocol 'adam'"):
        fashion_study("adam")


def test_protocol_section_states_the_known_differences(tmp_path) -> None:
    path = tmp_path / "training_length.json"
    path.write_text(
        json.dumps(
            merge_protocol_runs(
                path, _run("default", 60.0), "default", _records("default", 128, _default_acc)
            )
        )
    )
    study = merge_protocol_runs(path, _run("seed", 600.0), "seed", _records("seed", 32, _seed_acc))
    claims = protocol_comparison_claims(study["records"], "seed")
    # per panel: seed − default for each regulariser, targeted weight − none, 10 − 3 epochs each
    assert len(claims) == len(PANELS) * (2 + 1 + 2)
    unpruned = [c for c in claims if c.startswith("Unpruned: ")]
    # constant differences over 3 seeds: the interval has no width
    assert unpruned[:3] == [
        "Unpruned: none under protocol seed is 2.00 ± 0.00 points more accurate than under "
        "protocol default (10 epochs each) (95% t interval +2.00 to +2.00 points over 3 seeds).",
        "Unpruned: targeted weight dropout under protocol seed is 3.00 ± 0.00 points more "
        "accurate than under protocol default (10 epochs each) (95% t interval +3.00 to +3.00 "
        "points over 3 seeds).",
        "Unpruned: targeted weight dropout under protocol seed (10 epochs) is 1.00 ± 0.00 points "
        "more accurate than none (95% t interval +1.00 to +1.00 points over 3 seeds).",
    ]
    assert sum("no difference within the seeds' spread" in c for c in claims) == 2 * len(PANELS)
    md = fashion_training_length_markdown(study)
    assert "# Protocol `seed`: batch 32" in md and "600.0" not in md and "10 min 0 s" in md
    # the main table holds the default protocol only: unpruned none at 3 epochs is 81.00 ± 1.00
    mean = 100 * sum(_default_acc("none", s, 3, 0.0) for s in (0, 1, 2)) / 3
    row3 = next(line for line in md.splitlines() if line.startswith("| 3 |"))
    assert row3.split(" | ")[1] == f"{mean:.2f} ± 1.00 (3)"
    seed_rows = [line for line in md.splitlines() if line.startswith("| 3 |")]
    assert seed_rows[1].split(" | ")[1] == f"{mean + 2:.2f} ± 1.00 (3)"


def test_readme_block_reads_the_top_protocol_only(tmp_path) -> None:
    recs = [
        dict(r, protocol="default", optimizer="adam")
        for r in _records("default", 128, _default_acc)
    ]
    other = [dict(r, optimizer="sgd") for r in _records("sgd", 128, _seed_acc)]
    study = {
        **_run("default", 60.0),
        "protocol": "default",
        "regularisers": ["none"],
        "records": recs + other,
    }
    text = readme_training_length(study)
    assert "with Adam for 3, 10 epochs" in text and "SGD" not in text
    assert re.search(r"seeds 0, 1, 2;", text)
