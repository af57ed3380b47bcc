"""The task layer (``td_analysis.training.tasks``), the task/data set in ``TrainConfig`` and
checkpoints, and the ``--dataset``/``--task`` options of the CLI.

References: the issue's and the seed's stated settings (784 → 1000-1000-500-200 → 10, Adam
1e-3, batch 32 × 100 epochs, inputs ÷ 255), the toy defaults as they were before tasks existed
(written out here), ``data.dataset_info`` for feature counts, and targeted sets recomputed with
explicit numpy loops.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from td_analysis.cli import main
from td_analysis.data import dataset_info
from td_analysis.nn.dropout import Regulariser, RegulariserConfig
from td_analysis.training.loop import (
    TrainConfig,
    build_model,
    check_features,
    load_checkpoint,
    save_checkpoint,
    train,
)
from td_analysis.training.tasks import (
    DEFAULT_TASK,
    PROTOCOL_FIELDS,
    TASKS,
    Task,
    get_task,
    register_task,
    task_for_dataset,
    task_names,
)

# TrainConfig() before the task layer existed (commit 572677f), field by field
TOY_BEFORE = dict(
    hidden=(10,),
    in_features=3072,
    num_classes=10,
    bias=True,
    init="glorot",
    regulariser=RegulariserConfig(),
    optimizer="sgd",
    lr=0.01,
    momentum=0.9,
    weight_decay=0.0,
    grad_clip=None,
    batch_size=128,
    epochs=20,
    seed=0,
    preprocessing="standardize",
    train_split="train",
    eval_split="holdout",
    device="cpu",
    num_threads=1,
)


def test_toy_sgd_protocol_is_exactly_the_old_defaults() -> None:
    # the first results' protocol is the toy's "sgd" protocol, and TrainConfig()'s defaults
    cfg = get_task("toy").config("sgd")
    for name, value in TOY_BEFORE.items():
        assert getattr(cfg, name) == value, name
        assert getattr(TrainConfig(), name) == value, name
    assert cfg == TrainConfig()
    # the default is "adam": the protocol study's closest to the paper (adam-60ep), nothing
    # else changed
    adam = get_task("toy").config("adam")
    assert get_task("toy").config() == adam != cfg
    assert (adam.optimizer, adam.lr, adam.epochs) == ("adam", 1e-3, 60)
    assert replace(adam, optimizer="sgd", lr=0.01, epochs=20) == TrainConfig()
    assert (cfg.dataset, cfg.task) == ("cifar10", "toy")
    assert DEFAULT_TASK == "toy"
    reg = get_task("toy").regulariser("targeted-weight")
    # the paper's toy setting, on both layers, with the original uniform draws
    assert reg == RegulariserConfig("targeted-weight", gamma=0.75, alpha=0.5)


def test_fashion_task_is_the_seed_network() -> None:
    task = get_task("fashion-mlp")
    assert task.dataset == "fashion-mnist" and task.preprocessing == "unit"
    assert (task.in_features, task.hidden, task.num_classes) == (784, (1000, 1000, 500, 200), 10)
    seed = task.config("seed")
    assert (seed.optimizer, seed.lr, seed.batch_size, seed.epochs) == ("adam", 1e-3, 32, 100)
    assert seed.regulariser.kind == "none"  # no run-time dropout
    for bias in (True, False):
        model = build_model(task.config(bias=bias))
        assert [tuple(layer.weight.shape) for layer in model.layers] == [
            (1000, 784),
            (1000, 1000),
            (500, 1000),
            (200, 500),
            (10, 200),
        ]
        assert all((layer.bias is not None) == bias for layer in model.layers)
    default = task.config()
    assert (default.optimizer, default.lr, default.batch_size) == ("adam", 1e-3, 128)
    assert 1 <= default.epochs < 100
    # 2.39 M weights in the pruned (hidden) matrices
    assert task.num_weights == 784 * 1000 + 1000 * 1000 + 1000 * 500 + 500 * 200


@pytest.mark.parametrize("name", ["toy", "fashion-mlp"])
def test_tasks_fit_their_data_sets(name: str) -> None:
    task = get_task(name)
    info = dataset_info(task.dataset)
    assert task.in_features == math.prod(info.image_shape)
    assert task.num_classes == len(info.class_names)
    assert task_for_dataset(task.dataset) is task


def test_fashion_regularisers_act_on_every_hidden_layer_never_the_logits() -> None:
    task = get_task("fashion-mlp")
    for kind in ("targeted-weight", "targeted-unit"):
        reg = task.regulariser(kind)
        assert (reg.gamma, reg.alpha, reg.layers) == (0.5, 0.5, [0, 1, 2, 3])
        ramp = task.regulariser(kind, ramp_steps=1000)
        assert ramp.ramp_steps == 1000 and ramp.layers == reg.layers
    assert task.prune_layers == (0, 1, 2, 3)
    assert task.prune_params == tuple(f"layers.{l}.weight" for l in range(4))


def test_unit_dropout_targets_units_of_each_hidden_layer_only() -> None:
    """With α = 1 every targeted element is dropped: the dropped rows of each hidden layer are
    exactly the ⌊γ·out⌋ rows of smallest norm (explicit numpy), the logits layer is untouched."""
    small = get_task("fashion-mlp").replace(name="small", hidden=(12, 10, 8))
    reg_cfg = small.regulariser("targeted-unit", alpha=1.0)
    model = build_model(small.config(regulariser=reg_cfg))
    reg = Regulariser(reg_cfg, len(model.layers), torch.Generator().manual_seed(0))
    weights = [layer.weight for layer in model.layers]
    factors, inputs = reg.step_factors(weights, 4, 0)
    assert factors[-1] is None and all(f is None for f in inputs)
    for l, (w, m) in enumerate(zip(weights[:-1], factors[:-1], strict=True)):
        w = w.detach().numpy().astype(np.float64)
        norms = np.array([math.sqrt(sum(v * v for v in row)) for row in w])
        tau = sorted(norms)[int(0.5 * w.shape[0])]
        dropped_rows = np.array([n < tau for n in norms])
        kept = m.numpy().astype(bool)
        np.testing.assert_array_equal(~kept, np.repeat(dropped_rows[:, None], w.shape[1], 1))
        assert dropped_rows.sum() == w.shape[0] // 2, l


def test_registry_errors() -> None:
    with pytest.raises(ValueError, match="unknown task 'mnist'.*toy.*fashion-mlp"):
        get_task("mnist")
    with pytest.raises(ValueError, match="no task uses dataset 'svhn'"):
        task_for_dataset("svhn")
    with pytest.raises(ValueError, match="already registered"):
        register_task(get_task("toy"))
    with pytest.raises(ValueError, match="does not fit fashion-mnist"):
        register_task(get_task("toy").replace(name="bad", dataset="fashion-mnist"))
    with pytest.raises(ValueError, match="no protocol 'fast'"):
        get_task("fashion-mlp").config("fast")
    with pytest.raises(ValueError, match="unknown fields"):
        Task("t", "cifar10", 3072, (4,), 10, protocols={"p": {"hidden": (3,)}})
    with pytest.raises(ValueError, match="sizes must be positive"):
        Task("t", "cifar10", 3072, (0,), 10)
    with pytest.raises(ValueError, match="regularised"):
        Task("t", "cifar10", 3072, (4,), 10, regularised="logits")
    assert set(task_names()) >= {"toy", "fashion-mlp"}
    assert set(PROTOCOL_FIELDS) <= {f.name for f in fields(TrainConfig)}


def test_register_a_third_task() -> None:
    task = Task("cifar-wide", "cifar10", 3072, (64, 32), 10, epochs=3)
    try:
        assert register_task(task) is get_task("cifar-wide")
        cfg = get_task("cifar-wide").config(seed=4)
        assert (cfg.hidden, cfg.epochs, cfg.seed, cfg.task) == ((64, 32), 3, 4, "cifar-wide")
    finally:
        TASKS.pop("cifar-wide", None)


def _tiny_run(tmp_path: Path, **kw) -> Path:
    task = get_task("fashion-mlp").replace(name="tiny", hidden=(6, 5))
    cfg = task.config(epochs=1, eval_split="", **kw)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 784, generator=gen)
    y = torch.randint(0, 10, (64,), generator=gen)
    result = train(cfg, train_data=(x, y), progress=False)
    return save_checkpoint(tmp_path / "tiny.pt", result.model, cfg, result.final)


def test_checkpoints_record_task_and_dataset(tmp_path: Path) -> None:
    path = _tiny_run(tmp_path, regulariser="targeted-weight", bias=False)
    ckpt = load_checkpoint(path)
    assert (ckpt.config.dataset, ckpt.config.task) == ("fashion-mnist", "tiny")
    assert ckpt.config.regulariser.draws == "bits"
    assert ckpt.model.arch == {
        "in_features": 784,
        "hidden": [6, 5],
        "num_classes": 10,
        "bias": False,
    }
    # a checkpoint written before the task layer (no dataset/task fields) is a CIFAR-10 one
    payload = torch.load(path, weights_only=True)
    for key in ("dataset", "task", "train_limit"):
        payload["config"].pop(key)
    payload["config"].update(in_features=3072, hidden=[10], regulariser={"kind": "none"})
    payload["arch"].update(in_features=3072, hidden=[10], bias=True)
    payload["state_dict"] = build_model(TrainConfig()).state_dict()
    torch.save(payload, tmp_path / "old.pt")
    old = load_checkpoint(tmp_path / "old.pt")
    assert (old.config.dataset, old.config.task) == ("cifar10", "toy")


def test_feature_mismatch_names_both_counts() -> None:
    cfg = get_task("toy").config()
    with pytest.raises(ValueError, match=r"cifar10 \(3072 features\).*fashion-mnist has 784"):
        check_features(cfg, torch.zeros(2, 784), "fashion-mnist")
    check_features(cfg, torch.zeros(2, 3072), "cifar10")


def test_train_limit_trains_on_the_first_examples() -> None:
    task = get_task("toy").replace(name="tiny", hidden=(4,))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(80, 3072, generator=gen)
    y = torch.randint(0, 10, (80,), generator=gen)
    a = train(
        task.config(epochs=2, train_limit=50, eval_split=""), train_data=(x, y), progress=False
    )
    b = train(task.config(epochs=2, eval_split=""), train_data=(x[:50], y[:50]), progress=False)
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="train_limit"):
        task.config(train_limit=0)


# ------------------------------------------------------------------------------ CLI
@pytest.mark.slow
def test_cli_train_and_prune_on_fashion_mnist(data_root: Path, tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / "fm.pt"
    args = ["train", "--dataset", "fashion-mnist", "--hidden", "16", "--epochs", "1"]
    assert main([*args, "--data-dir", str(data_root), "--out", str(ckpt), "--quiet"]) == 0
    cfg = load_checkpoint(ckpt).config
    assert (cfg.dataset, cfg.task, cfg.in_features, cfg.hidden) == (
        "fashion-mnist",
        "fashion-mlp",
        784,
        (16,),
    )
    assert (cfg.optimizer, cfg.lr, cfg.preprocessing) == ("adam", 1e-3, "unit")
    capsys.readouterr()
    # analysis commands default to the checkpoint's data set
    out = tmp_path / "p"
    prune = ["prune", str(ckpt), "--percent", "0,50", "--data-dir", str(data_root), "--quiet"]
    assert main([*prune, "--out", str(out)]) == 0
    assert "(12000 images)" in capsys.readouterr().out
    # …and refuse another data set with a one-line error naming both feature counts
    for cmd in (prune, ["estimate", str(ckpt), "--data-dir", str(data_root), "--limit", "5"]):
        assert main([*cmd, "--dataset", "cifar10"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "784" in err and "3072" in err, err


def test_cli_bad_task_options(tmp_path: Path, capsys) -> None:
    assert (
        main(
            [
                "train",
                "--task",
                "toy",
                "--dataset",
                "fashion-mnist",
                "--epochs",
                "1",
                "--out",
                str(tmp_path / "x.pt"),
            ]
        )
        == 2
    )
    assert "toy is trained on cifar10, not on fashion-mnist" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--dataset",
                "fashion-mnist",
                "--protocol",
                "fast",
                "--out",
                str(tmp_path / "x.pt"),
            ]
        )
        == 2
    )
    assert "no protocol 'fast'" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(SystemExit) as exc:
        main(["prune", str(tmp_path / "x.pt"), "--percent", "0,101"])
    assert exc.value.code == 2
    assert "[0, 100]" in capsys.readouterr().err


def test_cli_config_follows_the_task() -> None:
    from td_analysis.cli import build_parser, config_from_args

    parser = build_parser()
    toy = config_from_args(parser.parse_args(["train"]))
    assert toy == get_task("toy").config() == get_task("toy").config("adam")
    adam = config_from_args(parser.parse_args(["train", "--protocol", "adam"]))
    assert adam == toy and adam.optimizer == "adam"
    assert config_from_args(parser.parse_args(["train", "--protocol", "sgd"])) == TrainConfig()
    fm = config_from_args(
        parser.parse_args(["train", "--dataset", "fashion-mnist", "--reg", "targeted-unit"])
    )
    assert fm == get_task("fashion-mlp").config(regulariser="targeted-unit")
    seed = config_from_args(
        parser.parse_args(
            ["train", "--task", "fashion-mlp", "--protocol", "seed", "--no-bias", "--epochs", "3"]
        )
    )
    assert (seed.batch_size, seed.epochs, seed.bias) == (32, 3, False)


@pytest.mark.parametrize("name", ["toy", "fashion-mlp"])
def test_network_has_the_task_architecture(name):
    """Task.network(): the layer shapes the task names, biases as asked (no size elsewhere)."""
    task = get_task(name)
    widths = (task.in_features, *task.hidden, task.num_classes)
    for bias in (True, False):
        model = task.network(bias=bias)
        shapes = [tuple(layer.weight.shape) for layer in model.layers]
        assert shapes == [(b, a) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        assert all((layer.bias is not None) == bias for layer in model.layers)
    assert all((layer.bias is not None) == task.bias for layer in task.network().layers)
