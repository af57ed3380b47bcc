"""``prune``, ``estimate``, ``coadaptation`` and ``spectrum`` on a user model (issue #21):
``--model module:callable`` with a checkpoint holding its state_dict.

The factory is ``zoo:cifar_cnn`` (a small conv net with BatchNorm).  References: the same
model rebuilt here, images reshaped to 3 × 32 × 32 by hand, masks by brute force
(``test_module_pruning``), losses by a plain float64 forward pass, Taylor terms and the Hessian
by the float64 ``torch.func`` reference of ``zoo.py``.  Bad input: exit status 2 and one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_module_pruning import ref_unit_masks, ref_weight
from zoo import Reference, cifar_cnn

from td_analysis.cli import main
from td_analysis.data import load_dataset

LIMIT = 8
STRUCTURE_CNN = {"0": "bn", "3": ("7", 1)}  # conv0 → BN; conv3 → ReLU → pool → Flatten → Linear


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A bare state_dict of the factory's model with its weights perturbed (not the init)."""
    model = cifar_cnn()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    path = tmp_path_factory.mktemp("anymodel") / "cnn.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    return path


def _trained(path: Path) -> torch.nn.Module:
    model = cifar_cnn()
    model.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    return model.eval()


def _data(root: Path):
    x, y = load_dataset("cifar10", "holdout", root=root)
    return x[:LIMIT].reshape(LIMIT, 3, 32, 32), y[:LIMIT]


def _masks(model, kind: str, k: int) -> dict[str, torch.Tensor]:
    import test_module_pruning as tmp

    tmp.STRUCTURE["cifar-cnn"] = (["0", "3"], STRUCTURE_CNN)
    if kind == "unit":
        return ref_unit_masks(model, "cifar-cnn", k)
    return {f"{m}.weight": ref_weight(model, m, k, "unit") for m in ("0", "3")}


def _args(cmd: str, saved: Path, root: Path, *extra: str) -> list[str]:
    return [
        cmd,
        str(saved),
        "--model",
        "zoo:cifar_cnn",
        "--dataset",
        "cifar10",
        "--data-dir",
        str(root),
        "--quiet",
        *extra,
    ]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["weight", "unit"])
def test_estimate_on_a_user_cnn(saved, data_root, tmp_path, kind):
    out = tmp_path / "est"
    argv = _args("estimate", saved, data_root, "--kind", kind, "--fractions", "0.5")
    assert main([*argv, "--limit", str(LIMIT), "--out", str(out)]) == 0
    row = json.loads(Path(f"{out}.json").read_text())[0]
    model = _trained(saved)
    x, y = _data(data_root)
    masks = _masks(model, kind, 50)
    names = [n for n, _ in model.named_parameters() if n in masks]
    ref = Reference(model, x, y, params=names)
    d = ref.theta * torch.cat([masks[n].reshape(-1) for n in names]).double()
    H = ref.hessian()
    assert row["first_order"] == pytest.approx(float(-(ref.grad() @ d)), rel=1e-7, abs=1e-10)
    assert row["second_order"] == pytest.approx(float(0.5 * d @ H @ d), rel=1e-7)
    assert row["measured"] == pytest.approx(float(ref.loss(ref.theta - d) - ref.loss()), rel=1e-6)
    assert row["n_pruned"] == sum(int(m.sum()) for m in masks.values())


@pytest.mark.slow
def test_prune_curve_on_a_user_cnn(saved, data_root, tmp_path):
    out = tmp_path / "prune"
    argv = _args("prune", saved, data_root, "--kind", "unit", "--fractions", "0,0.5")
    assert main([*argv, "--split", "holdout", "--out", str(out)]) == 0
    rows = json.loads(Path(f"{out}.json").read_text())
    x, y = load_dataset("cifar10", "holdout", root=data_root)
    x = x.reshape(len(x), 3, 32, 32).double()
    for row, k in zip(rows, (0, 50), strict=True):
        model = _trained(saved).double()
        with torch.no_grad():
            for name, mask in _masks(model, "unit", k).items():
                model.get_parameter(name)[mask] = 0.0
            logits = torch.cat([model(x[i : i + 2000]) for i in range(0, len(x), 2000)])
        assert row["loss"] == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)
        assert row["accuracy"] == pytest.approx(
            float((logits.argmax(1) == y).double().mean()), abs=2 / len(y)
        )


@pytest.mark.slow
def test_coadaptation_and_spectrum_on_a_user_cnn(saved, data_root, tmp_path, capsys):
    out = tmp_path / "coad"
    argv = _args("coadaptation", saved, data_root, "--limit", str(LIMIT), "--out", str(out))
    assert main([*argv, "--params", "weights"]) == 0
    printed = capsys.readouterr().out
    model = _trained(saved)
    x, y = _data(data_root)
    names = ["0.weight", "3.weight", "7.weight"]  # "weights": kernels and matrices
    assert ", ".join(names) in printed
    ref = Reference(model, x, y, params=names, reduction="sum")
    theta = ref.theta.numpy()
    C = theta[:, None] * ref.hessian().numpy() * theta[None, :]
    assert f"{C.sum():.6g}" in printed  # total = θᵀHθ
    assert Path(f"{out}.png").is_file()
    spec = tmp_path / "spec"
    argv = _args("spectrum", saved, data_root, "--limit", str(LIMIT), "--k", "2")
    assert main([*argv, "--params", ",".join(names), "--out", str(spec), "--tol", "1e-9"]) == 0
    report = json.loads(Path(f"{spec}.json").read_text())
    H = Reference(model, x, y, params=names).hessian().numpy()
    want = np.sort(np.linalg.eigvalsh(H))[::-1][:2]
    np.testing.assert_allclose(report["eigenvalues"], want, rtol=1e-6)


def _refused(argv: list[str], capsys) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:  # refused while parsing
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_models_and_checkpoints_are_one_line_errors(saved, data_root, tmp_path, capsys):
    base = ["estimate", str(saved), "--data-dir", str(data_root), "--limit", "4"]
    err = _refused(base, capsys)
    assert "no architecture" in err and "--model module:callable" in err
    err = _refused([*base, "--model", "zoo"], capsys)
    assert "module:callable" in err
    err = _refused([*base, "--model", "no_such_module_td:make", "--dataset", "cifar10"], capsys)
    assert "no_such_module_td" in err
    err = _refused([*base, "--model", "zoo:nothing_here", "--dataset", "cifar10"], capsys)
    assert "nothing_here" in err
    err = _refused([*base, "--model", "zoo:TinyTransformer", "--dataset", "cifar10"], capsys)
    assert "does not fit" in err and "missing" in err
    err = _refused([*base, "--model", "zoo:cifar_cnn"], capsys)
    assert "--dataset" in err
    err = _refused([*base, "--model", "zoo:cifar_cnn", "--dataset", "fashion-mnist"], capsys)
    assert "fashion-mnist" in err


def test_a_fit_checkpoint_needs_and_takes_its_factory(tmp_path):
    """A :func:`td_analysis.training.fit.fit` checkpoint records weights, not the architecture."""
    from td_analysis.cli import load_checked_checkpoint
    from td_analysis.nn.dropout import RegulariserConfig
    from td_analysis.training.fit import FitConfig, fit

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 32, 32, generator=gen), torch.randint(0, 10, (16,), generator=gen)
    model = cifar_cnn().train()
    reg = RegulariserConfig(kind="targeted-weight", gamma=0.5, alpha=0.5)
    config = FitConfig(epochs=1, batch_size=8, lr=0.01, regulariser=reg)
    path = tmp_path / "fit.pt"
    fit(model, (x, y), config, checkpoint=path, progress=False)
    with pytest.raises(ValueError) as exc:
        load_checked_checkpoint(path)
    assert "fit checkpoint" in str(exc.value) and "--model" in str(exc.value)
    assert "\n" not in str(exc.value)
    loaded = load_checked_checkpoint(path, "zoo:cifar_cnn")
    assert not loaded.model.training
    assert loaded.config.regulariser.label == reg.label
    trained = dict(model.state_dict())  # plain keys with or without the regulariser
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(value, trained[name]), name
    assert not torch.equal(loaded.model[0].weight, cifar_cnn()[0].weight)  # not the init
