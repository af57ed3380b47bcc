"""The ``estimate`` and ``coadaptation`` commands on a real checkpoint, against independent
recomputation (plain forward passes of the pruned weights, a torch.func Hessian)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, hessian, jvp

from td_analysis.cli import main
from td_analysis.data import load_cifar10
from td_analysis.training.loop import load_checkpoint

LIMIT = 400


@pytest.fixture(scope="module")
def checkpoint(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "td.pt"
    argv = [
        "train",
        "--reg",
        "targeted-weight",
        "--epochs",
        "1",
        "--data-dir",
        str(data_root),
        "--out",
        str(path),
        "--quiet",
    ]
    assert main(argv) == 0
    return path


def _printed(text: str) -> dict[str, float]:
    return {
        k.strip(): float(v)
        for k, v in (line.split(":") for line in text.splitlines() if line.startswith("  "))
    }


def _loss(w0, b0, w1, b1, x, y):
    return F.cross_entropy(torch.relu(x @ w0.T + b0) @ w1.T + b1, y).item()


def test_estimate_measured_change_matches_manual_pruning(checkpoint, data_root, tmp_path, capsys):
    out = tmp_path / "est"
    argv = [
        "estimate",
        str(checkpoint),
        "--fractions",
        "0.5,0.75",
        "--limit",
        str(LIMIT),
        "--data-dir",
        str(data_root),
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    assert "measured" in capsys.readouterr().out
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [r["fraction"] for r in rows] == [0.5, 0.75]
    assert out.with_suffix(".csv").read_text().count("\n") == 3

    model = load_checkpoint(checkpoint).model.double()
    x, y = load_cifar10(data_root, split="holdout")
    x, y = x[:LIMIT].double(), y[:LIMIT]
    w0, b0, w1, b1 = (p.detach() for p in model.parameters())
    base = _loss(w0, b0, w1, b1, x, y)
    for row in rows:
        pruned = []
        for w in (w0, w1):  # brute force: per row, drop |w| below the ⌊f·in⌋-th smallest
            k = int(row["fraction"] * w.shape[1])
            thr = w.abs().sort(dim=1).values[:, k : k + 1]
            pruned.append(torch.where(w.abs() < thr, 0.0, w))
        measured = _loss(pruned[0], b0, pruned[1], b1, x, y) - base
        assert row["measured"] == pytest.approx(measured, rel=1e-9, abs=1e-12)


def test_coadaptation_block_sums_match_torch_func(checkpoint, data_root, tmp_path, capsys):
    out = tmp_path / "c.png"
    argv = [
        "coadaptation",
        str(checkpoint),
        "--limit",
        str(LIMIT),
        "--data-dir",
        str(data_root),
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = _printed(text)
    model = load_checkpoint(checkpoint).model.double()
    x, y = load_cifar10(data_root, split="holdout")
    x, y = x[:LIMIT].double(), y[:LIMIT]
    w1 = model.layers[1].weight.detach()

    def loss(w):
        return F.cross_entropy(
            functional_call(model, {"layers.1.weight": w}, (x,)), y, reduction="sum"
        )

    H = hessian(loss)(w1).reshape(100, 100)
    theta = w1.reshape(-1)
    C = theta[:, None] * H * theta[None, :]
    pruned = torch.zeros(100, dtype=torch.bool)
    pruned[theta.abs().argsort()[:75]] = True  # the 75 lowest magnitudes
    assert printed["pruned_pruned"] == pytest.approx(C[pruned][:, pruned].sum().item(), rel=1e-5)
    assert printed["kept_kept"] == pytest.approx(C[~pruned][:, ~pruned].sum().item(), rel=1e-5)


def test_coadaptation_of_all_weights_is_pooled(checkpoint, data_root, tmp_path, capsys):
    """30,820 weights: pooled block sums by HVPs; signed sums equal dᵀHd from torch.func."""
    out = tmp_path / "all.png"
    argv = ["coadaptation", str(checkpoint), "--params", "weights", "--limit", str(LIMIT)]
    argv += ["--data-dir", str(data_root), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "pooled into 256 × 256 block sums" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = _printed(text)
    assert "abs_share_pruned_pruned" not in printed  # unknown without every entry

    model = load_checkpoint(checkpoint).model.double()
    x, y = load_cifar10(data_root, split="holdout")
    x, y = x[:LIMIT].double(), y[:LIMIT]
    params = {n: p.detach() for n, p in model.named_parameters()}
    names = ["layers.0.weight", "layers.1.weight"]
    theta = torch.cat([params[n].reshape(-1) for n in names])
    pruned = torch.zeros(theta.numel(), dtype=torch.bool)
    pruned[theta.abs().argsort()[: int(0.75 * theta.numel())]] = True

    def loss(flat):
        w0, w1 = flat[:30720].reshape(10, 3072), flat[30720:].reshape(10, 10)
        new = {**params, "layers.0.weight": w0, "layers.1.weight": w1}
        return F.cross_entropy(functional_call(model, new, (x,)), y, reduction="sum")

    def quad(u, v):  # uᵀ H v by forward-over-reverse
        return float(u @ jvp(grad(loss), (theta,), (v,))[1])

    d, k = theta * pruned, theta * ~pruned
    assert printed["pruned_pruned"] == pytest.approx(quad(d, d), rel=1e-5)
    assert printed["kept_kept"] == pytest.approx(quad(k, k), rel=1e-5)
    assert printed["kept_pruned"] == pytest.approx(2 * quad(k, d), rel=1e-5, abs=1e-6)
    assert printed["n_pruned"] == int(pruned.sum())


def test_coadaptation_bins_agree_with_the_exact_matrix(checkpoint, data_root, tmp_path, capsys):
    common = [str(checkpoint), "--limit", str(LIMIT), "--data-dir", str(data_root), "--quiet"]
    assert main(["coadaptation", *common, "--out", str(tmp_path / "e.png")]) == 0
    exact = _printed(capsys.readouterr().out)
    assert main(["coadaptation", *common, "--bins", "10", "--out", str(tmp_path / "p.png")]) == 0
    pooled = _printed(capsys.readouterr().out)
    for key in ("kept_kept", "kept_pruned", "pruned_pruned", "n_pruned"):
        assert pooled[key] == pytest.approx(exact[key], rel=1e-5, abs=1e-9)  # 6 digits printed
    assert main(["coadaptation", *common, "--bins", "101"]) == 2
    assert "--bins must be between 1 and the 100" in capsys.readouterr().err


def test_estimate_and_coadaptation_names_encode_what_differs(
    checkpoint, data_root, tmp_path, capsys
):
    """Whole stems (``td_gamma0.75``), one file per split / parameter set, ``--out`` kept whole."""
    import shutil

    ckpt = tmp_path / "td_gamma0.75.pt"
    shutil.copy(checkpoint, ckpt)
    common = ["--limit", "50", "--data-dir", str(data_root), "--quiet"]
    for split in ("holdout", "test"):
        argv = ["estimate", str(ckpt), "--fractions", "0.5", "--split", split, *common]
        assert main(argv) == 0
    argv = ["estimate", str(ckpt), "--fractions", "0.5", *common, "--out", str(tmp_path / "v1.2")]
    assert main(argv) == 0
    for params in ("layers.1.weight", "layers.1.bias", "layers.1.weight,layers.1.bias"):
        assert main(["coadaptation", str(ckpt), "--params", params, *common]) == 0
    capsys.readouterr()
    names = sorted(p.name for p in tmp_path.iterdir() if p.name != ckpt.name)
    assert names == sorted(
        [
            *(
                f"td_gamma0.75-estimate-weight-{split}-limit50-fractions0.5.{ext}"
                for split in ("holdout", "test")
                for ext in ("csv", "json")
            ),
            "v1.2.csv",
            "v1.2.json",
            "td_gamma0.75-coadaptation-layers.1.weight-holdout-limit50.png",
            "td_gamma0.75-coadaptation-layers.1.bias-holdout-limit50.png",
            "td_gamma0.75-coadaptation-layers.1.weight+layers.1.bias-holdout-limit50.png",
        ]
    )
