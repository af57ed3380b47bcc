"""End to end: ``td-analysis reproduce --experiment fashion-mlp --quick`` on the real
Fashion-MNIST data, every output checked by value against independent recomputations from the
checkpoints (hand-written float64 forward passes, brute-force per-layer pruning masks,
``torch.func`` gradients and Hessian-vector products, bins from an explicit |θ| sort), plus the
CLI's bad-input paths (exit code 2, nothing written).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fashion_cases import deletion, forward64, seed_unit_masks, seed_weight_masks, spearman

from td_analysis.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KS = [0.0, 25.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 97.0, 99.0]
REGS = ["none", "targeted-weight", "targeted-unit"]  # with and without biases
CONTROLS = ["dropout", "dropconnect"]  # with biases only (the default grid's shape)


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_root):
    base = tmp_path_factory.mktemp("fashion")
    args = [
        "reproduce",
        "--experiment",
        "fashion-mlp",
        "--quick",
        "--out",
        str(base / "out"),
        "--runs",
        str(base / "runs"),
        "--data-dir",
        str(data_root),
        "--quiet",
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MPLBACKEND", "Agg")
        assert main(args) == 0
    out = base / "out" / "fashion_mlp"
    return {
        "out": out,
        "runs": base / "runs",
        "data_root": data_root,
        "records": json.loads((out / "pruning.json").read_text()),
        "taylor": json.loads((out / "taylor.json").read_text()),
        "maps": json.loads((out / "coadaptation.json").read_text()),
        "summary": json.loads((out / "summary.json").read_text()),
    }


pytestmark = pytest.mark.slow


def checkpoint(run, reg: str, bias: bool, seed: int = 0):
    from td_analysis.training.loop import load_checkpoint

    for path in sorted(run["runs"].glob("*.pt")):
        ckpt = load_checkpoint(path)
        c = ckpt.config
        if c.regulariser.kind == reg and c.bias == bias and c.seed == seed:
            return ckpt
    raise AssertionError(f"no checkpoint for {reg}, bias={bias}, seed={seed}")


def split(run, ckpt, name: str, limit: int):
    from td_analysis.data import load_dataset

    x, y = load_dataset("fashion-mnist", name, root=run["data_root"], preprocessing="unit")
    assert ckpt.config.preprocessing == "unit" and ckpt.config.dataset == "fashion-mnist"
    return x[:limit].double(), y[:limit]


def test_files_and_records(run):
    out = run["out"]
    names = {p.name for p in out.iterdir()}
    for f in (
        "pruning.json",
        "pruning.md",
        "taylor.json",
        "coadaptation.json",
        "summary.json",
        "README.md",
        "accuracy_vs_k.png",
        "accuracy_vs_k.pdf",
        "estimators.png",
        "coadaptation_pooled.png",
        "coadaptation_layers.png",
    ):
        assert f in names, f
    assert not [n for n in names if n.startswith(".") or ".tmp" in n]
    for f in ("accuracy_vs_k.png", "estimators.png", "coadaptation_pooled.png"):
        assert (out / f).read_bytes().startswith(PNG_MAGIC)
    recs = run["records"]
    keys = {(r["regulariser"], r["bias"], r["seed"], r["kind"], r["k"]) for r in recs}
    want = {
        (g, b, 0, kind, k)
        for g in REGS + CONTROLS
        for b in ((True, False) if g in REGS else (True,))
        for kind in ("weight", "unit")
        for k in KS
    }
    assert keys == want and len(recs) == len(want)
    for r in recs:
        assert {"regulariser", "bias", "seed", "kind", "k", "accuracy", "loss"} <= set(r)
        # accuracies are counts over the 2,000 test images of the quick setting
        assert r["accuracy"] * 2000 == pytest.approx(round(r["accuracy"] * 2000), abs=1e-6)
    # k = 0 is the unpruned network: weight and unit pruning agree exactly
    for g in REGS:
        for b in (True, False):
            at0 = [r for r in recs if r["regulariser"] == g and r["bias"] == b and r["k"] == 0]
            assert at0[0]["accuracy"] == at0[1]["accuracy"] and at0[0]["loss"] == at0[1]["loss"]
    readme = (out / "README.md").read_text()
    assert "td-analysis reproduce --experiment fashion-mlp --quick" in readme
    for f in ("accuracy_vs_k.png", "estimators.png", "coadaptation_pooled.png", "pruning.md"):
        assert f"`{f}`" in readme


@pytest.mark.parametrize(
    "reg, bias, kind, k",
    [
        ("none", True, "weight", 50.0),
        ("targeted-unit", False, "unit", 70.0),
        ("targeted-weight", True, "unit", 25.0),
    ],
)
def test_pruning_entry_recomputed(run, reg, bias, kind, k):
    ckpt = checkpoint(run, reg, bias)
    x, y = split(run, ckpt, "test", 2000)
    rule = seed_weight_masks if kind == "weight" else seed_unit_masks
    masks = rule(ckpt.model, k)
    params = {n: p.detach().double() for n, p in ckpt.model.named_parameters()}
    pruned = {
        n: v * torch.from_numpy(~masks[n]).double() if n in masks else v for n, v in params.items()
    }
    logits = forward64(pruned, x)
    (rec,) = [
        r
        for r in run["records"]
        if (r["regulariser"], r["bias"], r["kind"], r["k"]) == (reg, bias, kind, k)
    ]
    assert rec["loss"] == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)
    top2 = torch.topk(logits, 2, dim=1).values
    sure = (top2[:, 0] - top2[:, 1]) > 1e-4
    correct = logits.argmax(1) == y
    lo, hi = int((correct & sure).sum()), int((correct | ~sure).sum())
    assert lo <= round(rec["accuracy"] * 2000) <= hi


def test_pruning_table_cells_are_mean_and_std_of_the_records(run):
    md = (run["out"] / "pruning.md").read_text()
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    # kind × (3 regularisers × bias on/off + 2 controls with biases)
    assert header[0] == "k (%)" and len(header) == 1 + 2 * (3 * 2 + 2)
    rows = {float(line.strip("|").split("|")[0]): line for line in lines[1:]}
    assert sorted(rows) == KS
    col = header.index("unit · targeted-weight · no bias")
    cell = rows[60.0].strip("|").split("|")[col].strip()
    acc = [
        r["accuracy"]
        for r in run["records"]
        if (r["kind"], r["regulariser"], r["bias"], r["k"])
        == ("unit", "targeted-weight", False, 60.0)
    ]
    m = sum(acc) / len(acc)
    s = math.sqrt(sum((a - m) ** 2 for a in acc) / (len(acc) - 1)) if len(acc) > 1 else 0.0
    assert cell == f"{100 * m:.2f} ± {100 * s:.2f}"


def test_taylor_entry_recomputed(run):
    """First and second order of one unit pruning, with ∇ and Hd from torch.func on the
    checkpoint (300 holdout images, mean loss, float64)."""
    reg, bias, kind, k = "targeted-weight", True, "unit", 50.0
    ckpt = checkpoint(run, reg, bias)
    n = run["summary"]["settings"]["analysis_examples"]
    x, y = split(run, ckpt, "holdout", n)
    names = [nm for nm, _ in ckpt.model.named_parameters()]
    params = {nm: p.detach().double() for nm, p in ckpt.model.named_parameters()}
    masks = seed_unit_masks(ckpt.model, k)
    d_flat = deletion(ckpt.model, masks, names)
    shapes = [(nm, params[nm].shape, params[nm].numel()) for nm in names]
    d = {}
    o = 0
    for nm, shape, size in shapes:
        d[nm] = d_flat[o : o + size].reshape(shape)
        o += size

    def loss(p):
        return F.cross_entropy(forward64(p, x), y)

    g, hd = torch.func.jvp(torch.func.grad(loss), (params,), (d,))
    first = -sum(float((g[nm] * d[nm]).sum()) for nm in names)
    second = 0.5 * sum(float((hd[nm] * d[nm]).sum()) for nm in names)
    pruned = {nm: params[nm] - d[nm] for nm in names}
    measured = float(loss(pruned) - loss(params))
    (rec,) = [
        r
        for r in run["taylor"]["records"]
        if (r["regulariser"], r["bias"], r["kind"], r["k"]) == (reg, bias, kind, k)
    ]
    assert rec["first_order"] == pytest.approx(first, rel=1e-8, abs=1e-10)
    assert rec["second_order"] == pytest.approx(second, rel=1e-8, abs=1e-10)
    assert rec["measured"] == pytest.approx(measured, rel=1e-8, abs=1e-10)


def test_rank_correlations_recomputed(run):
    rho = run["taylor"]["rank_correlations"]
    (row,) = [r for r in rho if (r["regulariser"], r["bias"], r["kind"]) == ("none", False, "all")]
    sub = [r for r in run["taylor"]["records"] if r["regulariser"] == "none" and not r["bias"]]
    assert row["n"] == len(sub) == 2 * 9
    for est in ("second_order", "estimate", "diagonal"):
        assert row[est] == pytest.approx(
            spearman([r[est] for r in sub], [r["measured"] for r in sub]), abs=1e-9
        )


def test_coadaptation_sums_recomputed(run):
    """Row sums of the pooled block sums and one layer-pair sum, from one torch.func HVP of θ
    (all weights) on the checkpoint, with bins from an explicit |θ| sort."""
    maps = {m["regulariser"]: m for m in run["maps"]}
    assert set(maps) == set(REGS)
    m = maps["targeted-unit"]
    ckpt = checkpoint(run, "targeted-unit", True)
    x, y = split(run, ckpt, "holdout", run["summary"]["settings"]["analysis_examples"])
    params = {nm: p.detach().double() for nm, p in ckpt.model.named_parameters()}
    wnames = [nm for nm in params if nm.endswith(".weight")]
    assert m["params"] == wnames
    theta = {nm: params[nm] for nm in wnames}

    def loss(w):
        return F.cross_entropy(forward64({**params, **w}, x), y)

    _, h_theta = torch.func.jvp(torch.func.grad(loss), (theta,), (theta,))
    flat_t = torch.cat([theta[nm].reshape(-1) for nm in wnames])
    flat_h = torch.cat([h_theta[nm].reshape(-1) for nm in wnames])
    P = flat_t.numel()
    B = m["bins"]
    order = np.lexsort((np.arange(P), -np.abs(flat_t.numpy())))  # |θ| descending, ties by index
    bins = np.empty(P, dtype=np.int64)
    bins[order] = np.arange(P) * B // P
    row_sums = np.bincount(bins, weights=(flat_t * flat_h).numpy(), minlength=B)
    pooled = np.asarray(m["pooled"])
    np.testing.assert_allclose(
        pooled.sum(1), row_sums, rtol=2e-3, atol=2e-4 * np.abs(row_sums).max()
    )
    # layer × layer: the row of layer 1 sums θ_i (Hθ)_i over layer 1's weights
    sizes = [theta[nm].numel() for nm in wnames]
    start = sum(sizes[:1])
    layer1 = float((flat_t * flat_h)[start : start + sizes[1]].sum())
    assert np.asarray(m["layer_sums"])[1].sum() == pytest.approx(layer1, rel=2e-3)


def test_bad_input_exits_2_and_writes_nothing(tmp_path, data_root, monkeypatch, capsys):
    out = tmp_path / "out"
    base = [
        "reproduce",
        "--out",
        str(out),
        "--runs",
        str(tmp_path / "runs"),
        "--quiet",
        "--data-dir",
        str(data_root),
    ]
    for bad in (
        ["--experiment", "mnist"],
        ["--experiment", "fashion-mlp", "--ks", "0,101"],
        ["--experiment", "fashion-mlp", "--ks", "-5"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(base + bad)
        assert exc.value.code == 2
    assert main(base + ["--experiment", "fashion-mlp", "--quick", "--bins", "10000000"]) == 2
    assert "pooled_bins" in capsys.readouterr().err
    import td_analysis.pipelines.fashion_mlp as ef

    monkeypatch.setattr(ef, "available_memory_bytes", lambda device="cpu": 1000)
    assert main(base + ["--experiment", "fashion-mlp", "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pooled projection" in err[0]
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_load_results_reads_back_the_run(run):
    from td_analysis.pipelines.fashion_mlp import load_results

    back = load_results(run["out"])
    assert back["records"] == run["records"]
    assert back["taylor"] == run["taylor"]["records"]
    assert back["coadaptation"] == run["maps"]
    assert back["settings"] == run["summary"]["settings"]
    with pytest.raises(FileNotFoundError, match="summary.json"):
        load_results(run["out"].parent / "nothing-here")


def test_network_seconds_split_into_stages_that_add_up(run):
    """``summary.json`` says where each network's time went: data, train, pruning, taylor and
    (only for the networks with maps) pooled; the stages add up to at most the network's total
    and cover most of it."""
    for entry in run["summary"]["network_seconds"]:
        st = entry["stages"]
        pooled = any(
            (m["regulariser"], m["bias"], m["seed"])
            == (entry["regulariser"], entry["bias"], entry["seed"])
            for m in run["maps"]
        )
        assert set(st) == {"data", "train", "pruning", "taylor"} | ({"pooled"} if pooled else set())
        assert all(v >= 0 for v in st.values()), st
        assert sum(st.values()) <= entry["total"] + 1e-6, (st, entry["total"])
        assert st["train"] <= entry["train"] + 1e-6  # entry["train"]: training-split load too
        assert sum(st.values()) >= 0.5 * entry["total"], "most of a network's time is unaccounted"


def test_a_second_run_reuses_networks_and_analyses(run, tmp_path):
    """Same settings, same runs folder: nothing is trained or analysed again, and every output
    record is the same (the analyses are read back from ``runs/analysis``)."""
    args = ["reproduce", "--experiment", "fashion-mlp", "--quick", "--quiet"]
    args += [
        "--out",
        str(tmp_path),
        "--runs",
        str(run["runs"]),
        "--data-dir",
        str(run["data_root"]),
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MPLBACKEND", "Agg")
        assert main(args) == 0
    out = tmp_path / "fashion_mlp"
    summary = json.loads((out / "summary.json").read_text())
    n = len(run["summary"]["network_seconds"])
    assert summary["reused_networks"] == summary["reused_analyses"] == n
    assert run["summary"]["reused_analyses"] == 0
    assert json.loads((out / "pruning.json").read_text()) == run["records"]
    assert json.loads((out / "taylor.json").read_text()) == run["taylor"]
    assert json.loads((out / "coadaptation.json").read_text()) == run["maps"]


def test_analysis_key_follows_network_and_settings(tmp_path):
    from td_analysis.pipelines.fashion_mlp import FashionSettings, analysis_path, network_jobs

    settings = FashionSettings.quick()
    (job,) = [
        j
        for j in network_jobs(settings, runs_dir=tmp_path)
        if j["regulariser"] == "none" and j["config"]["bias"]
    ]
    ckpt = tmp_path / "a.pt"
    ckpt.write_bytes(b"weights")
    base = analysis_path(job, ckpt)
    assert base.parent == tmp_path / "analysis" and base.suffix == ".json"
    assert analysis_path(job, ckpt) == base  # deterministic
    other = {**job, "settings": {**job["settings"], "ks": [0.0, 50.0]}}
    assert analysis_path(other, ckpt) != base  # another pruning grid
    same = {**job, "settings": {**job["settings"], "seeds": [7, 8], "workers": 1}}
    assert analysis_path(same, ckpt) == base  # settings that do not shape this network's analysis
    ckpt.write_bytes(b"weights, retrained")
    assert analysis_path(job, ckpt) != base  # another network under the same name
