"""``td-analysis spectrum`` on a small CIFAR-10 checkpoint: printed eigenvalues and trace against
``torch.linalg.eigh`` of an independently computed float64 ``torch.func`` Hessian; the
data-parallel run under ``torchrun`` against the single-process one."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from zoo import Reference

from td_analysis.cli import main
from td_analysis.training.loop import TrainConfig, build_model, load_data, save_checkpoint

LIMIT = 60
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A 3072 → 1 → 10 network (3,093 parameters) with its random initial weights."""
    config = TrainConfig(hidden=(1,), seed=3)
    model = build_model(config)
    with torch.no_grad():  # glorot init leaves zero biases: make every parameter count
        for layer in model.layers:
            layer.bias.normal_(0.0, 0.5)
    return save_checkpoint(tmp_path_factory.mktemp("spectrum") / "tiny.pt", model, config)


@pytest.fixture(scope="module")
def reference(checkpoint, data_root):
    """The float64 Hessian of the mean cross-entropy on the first LIMIT holdout images."""
    from td_analysis.training.loop import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    x, y = load_data(ckpt.config, "holdout", root=data_root)
    return ckpt.model, x[:LIMIT], y[:LIMIT]


def printed_eigenvalues(text: str) -> torch.Tensor:
    return torch.tensor(
        [float(m) for m in re.findall(r"^\s+λ\d+\s+(\S+)$", text, flags=re.M)], dtype=torch.float64
    )


def printed_trace(text: str) -> tuple[float, float]:
    m = re.search(r"^trace \(([^)]+)\): (\S+)(?: ± (\S+))?", text, flags=re.M)
    assert m, text
    return float(m.group(2)), float(m.group(3) or 0.0)


def run(argv, capsys) -> str:
    assert main([str(a) for a in argv]) == 0
    return capsys.readouterr().out


@pytest.mark.slow
def test_eigenvalues_and_trace_match_eigh(checkpoint, reference, data_root, tmp_path, capsys):
    model, x, y = reference
    H = Reference(model, x, y).hessian()
    lam = torch.linalg.eigvalsh((H + H.mT) / 2)
    base = ["spectrum", checkpoint, "--limit", LIMIT, "--data-dir", data_root, "--quiet", "--k", 6]
    out = tmp_path / "whole"
    text = run([*base, "--tol", "1e-10", "--trace-method", "exact", "--out", out], capsys)
    got = printed_eigenvalues(text)
    assert got.numel() == 6
    assert torch.allclose(got, lam.flip(0)[:6], rtol=1e-8, atol=1e-12)
    exact, se = printed_trace(text)
    assert se == 0 and exact == pytest.approx(float(H.trace()), rel=1e-9)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["num_params"] == 3093 and saved["num_examples"] == LIMIT
    assert torch.allclose(
        torch.tensor(saved["eigenvalues"], dtype=torch.float64), lam.flip(0)[:6], rtol=1e-8
    )

    argv = [*base, "--which", "magnitude", "--trace-matvecs", 30, "--block-size", 1]
    text = run([*argv, "--out", out], capsys)
    by_mag = lam[lam.abs().argsort(descending=True)][:6]
    assert torch.allclose(printed_eigenvalues(text), by_mag, rtol=1e-5, atol=1e-10)
    est, se = printed_trace(text)
    assert se > 0 and abs(est - float(H.trace())) <= 4 * se


def test_parameter_subset_smallest_and_density(checkpoint, reference, data_root, tmp_path, capsys):
    model, x, y = reference
    names = ["layers.1.weight", "layers.1.bias"]
    H = Reference(model, x, y, params=names).hessian()
    lam = torch.linalg.eigvalsh((H + H.mT) / 2)
    out = tmp_path / "sub"
    argv = ["spectrum", checkpoint, "--params", ",".join(names), "--which", "smallest", "--k", 3]
    argv += ["--density", "--steps", 20, "--probes", 4, "--limit", LIMIT, "--data-dir", data_root]
    text = run([*argv, "--quiet", "--tol", "1e-10", "--out", out], capsys)
    assert torch.allclose(printed_eigenvalues(text), lam[:3], rtol=1e-8, atol=1e-12)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["params"] == names and saved["num_params"] == 20
    grid = torch.tensor(saved["grid"], dtype=torch.float64)
    dens = torch.tensor(saved["density"], dtype=torch.float64)
    assert float(torch.trapezoid(dens, grid)) == pytest.approx(1.0, abs=1e-9)
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--k", "3093"], "--k must be between 1 and 3092"),
        (["--params", "layers.9.weight"], "layers.9.weight"),
        (["--distributed"], "torchrun"),
        (["--block-size", "0"], "--block-size"),
    ],
)
def test_bad_input_is_one_line_exit_2(checkpoint, data_root, tmp_path, capsys, extra, message):
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        assert var not in os.environ
    argv = ["spectrum", str(checkpoint), "--limit", "5", "--data-dir", str(data_root), "--quiet"]
    try:  # argparse refuses bad option values by exiting 2 itself
        status = main([*argv, "--out", str(tmp_path / "x"), *extra])
    except SystemExit as exc:
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_missing_checkpoint(tmp_path, capsys):
    assert main(["spectrum", str(tmp_path / "nope.pt"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_distributed_matches_single_process(checkpoint, data_root, tmp_path, capsys):
    """Two gloo processes on 127.0.0.1, each with half the images: the same eigenvalues."""
    argv = [checkpoint, "--limit", LIMIT, "--data-dir", data_root, "--k", 4, "--tol", "1e-10"]
    argv += ["--trace-method", "hutch++", "--trace-matvecs", 12, "--quiet"]
    single = run(["spectrum", *argv, "--out", tmp_path / "one"], capsys)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2"]
    cmd += ["--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
    cmd += ["-m", "td_analysis.cli", "spectrum", *map(str, argv), "--distributed"]
    cmd += ["--out", str(tmp_path / "two")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 2 processes" in proc.stdout and proc.stdout.count("top 4 eigenvalues") == 1
    assert torch.allclose(printed_eigenvalues(proc.stdout), printed_eigenvalues(single), rtol=1e-9)
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["num_examples"] == LIMIT
    assert two["trace"] == pytest.approx(one["trace"], rel=1e-9)


def test_spectra_figure_data_against_eigh(tmp_path):
    """The pipeline behind spectra.png: whole net, each layer and the pruned block H_SS."""
    from zoo import CASES

    from td_analysis.analysis.pruning import pruning_masks
    from td_analysis.analysis.spectra import spectra_figure_data
    from td_analysis.report import plotting

    case = next(c for c in CASES if c.name == "h3-bias-mean")
    model, x, y = case.build()
    masks = pruning_masks(model, 0.5, "weight")
    data = spectra_figure_data({"net": model}, x, y, {"net": masks}, k=3, tol=1e-10, num_steps=20)
    data = data["net"]

    def top3(H):
        return torch.linalg.eigvalsh((H + H.mT) / 2).flip(0)[:3]

    H = Reference(model, x, y).hessian()
    got = torch.tensor(data["whole"]["eigenvalues"], dtype=torch.float64)
    assert torch.allclose(got, top3(H), atol=1e-8)
    offset = 0
    for layer in range(4):  # a layer's Hessian is its diagonal block of H
        size = sum(p.numel() for p in model.layers[layer].parameters())
        block = H[offset : offset + size, offset : offset + size]
        offset += size
        got = torch.tensor(data["layers"][f"layers.{layer}"]["eigenvalues"], dtype=torch.float64)
        assert torch.allclose(got, top3(block), atol=1e-8), layer
    S = torch.cat(
        [
            masks[n].reshape(-1) if n in masks else torch.zeros(p.numel(), dtype=torch.bool)
            for n, p in model.named_parameters()
        ]
    )
    got = torch.tensor(data["pruned"]["eigenvalues"], dtype=torch.float64)
    assert torch.allclose(got, top3(H[S][:, S]), atol=1e-8)
    summary = data["pruned_summary"]
    assert summary["num_pruned"] == int(S.sum())
    assert summary["lambda_max_pruned"] == pytest.approx(float(top3(H[S][:, S])[0]), abs=1e-8)
    for part in (data["whole"], data["pruned"], *data["layers"].values()):
        grid = torch.tensor(part["grid"], dtype=torch.float64)
        dens = torch.tensor(part["density"], dtype=torch.float64)
        assert float(torch.trapezoid(dens, grid)) == pytest.approx(1.0, abs=1e-9)
    fig = plotting.plot_spectra({"net": data, "copy": data}, title="t")
    (path,) = plotting.save_figure(fig, tmp_path / "spectra.png", formats=("png",))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
