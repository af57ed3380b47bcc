"""The fashion-mlp training-length study (``td_analysis.pipelines.training_length``, ``--experiment
fashion-mlp``) on the real Fashion-MNIST data, small: a 784 → 16 → 8 → 10 MLP on 600 images,
none and targeted weight dropout at 1 and 2 epochs (seeds 0, 1) and the unregularised seed 0 on
to 3 epochs, every shorter network a snapshot of the longest run.

References: each network trained again here on its own, as the shorter config (its weights must
equal the study's checkpoint), and every record recomputed from those weights with brute-force
masks and a float64 forward pass (``references.py``): a record of the wrong network, epoch or
pruning fails."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from references import (
    assert_accuracy,
    dense_params,
    layer_weight_prune_mask,
    logits64,
    unit_prune_mask,
)

pytestmark = pytest.mark.slow

KS = (0.0, 50.0, 90.0)
STUDY = {
    "epochs": (1, 2),
    "regularisers": ("none", "targeted-weight"),
    "seeds": (0, 1),
    "long_epochs": 3,
    "long_regularisers": ("none",),
    "long_seeds": (0,),
}


def _settings():
    from td_analysis.pipelines.fashion_mlp import FashionSettings

    return FashionSettings(hidden=(16, 8), train_limit=600)


def test_records_are_the_networks_they_name(tmp_path, data_root) -> None:
    from td_analysis.pipelines.fashion_mlp import network_config
    from td_analysis.pipelines.training_length import (
        fashion_study_networks,
        fashion_training_length_records,
    )
    from td_analysis.training.loop import load_data, train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        recs = fashion_training_length_records(
            study=STUDY,
            ks=KS,
            runs_dir=tmp_path,
            data_root=data_root,
            progress=False,
            settings=_settings(),
            in_process=True,
        )
        nets = fashion_study_networks(STUDY)
        assert sorted(nets) == sorted(
            [(r, s, e) for e in (1, 2) for r in STUDY["regularisers"] for s in (0, 1)]
            + [("none", 0, 3)]
        )
        # one run per (regulariser, seed): 3 + 1 + 1 + 1 checkpoints... and no more
        assert len(list(tmp_path.glob("*.pt"))) == len(nets)
        assert {(r["regulariser"], r["seed"], r["epochs"]) for r in recs} == set(nets)
        assert len(recs) == len(nets) * 2 * len(KS)
        s = _settings()
        base = network_config(s, "none", True, 0)
        x_train, y_train = load_data(base, "train", root=data_root)
        x, y = load_data(base, "holdout", root=data_root)
        for reg, seed, e in nets:
            cfg = dataclasses.replace(network_config(s, reg, True, seed), epochs=e, train_limit=600)
            model = train(cfg, train_data=(x_train, y_train), progress=False).model
            ws, bs = dense_params(model)
            for r in (
                r for r in recs if (r["regulariser"], r["seed"], r["epochs"]) == (reg, seed, e)
            ):
                assert r["batch_size"] == cfg.batch_size and r["bias"] is True
                f = r["k"] / 100
                hidden = len(ws) - 1
                if r["kind"] == "weight":
                    masks = [layer_weight_prune_mask(w, f) for w in ws[:hidden]]
                    bmasks = [np.zeros(b.shape, bool) for b in bs[:hidden]]
                else:
                    masks = [unit_prune_mask(w, f) for w in ws[:hidden]]
                    bmasks = [m.all(axis=1) for m in masks]
                masks.append(np.zeros(ws[-1].shape, bool))
                bmasks.append(np.zeros(bs[-1].shape, bool))
                pw = [w * torch.from_numpy(~m) for w, m in zip(ws, masks, strict=True)]
                pb = [b * torch.from_numpy(~m) for b, m in zip(bs, bmasks, strict=True)]
                logits = logits64(pw, pb, x)
                loss = float(torch.nn.functional.cross_entropy(logits, y))
                assert r["loss"] == pytest.approx(loss, rel=2e-6, abs=1e-7), (reg, seed, e, r)
                assert_accuracy(r["accuracy"], logits, y)
    finally:
        torch.set_num_threads(threads)


def test_cli_writes_json_and_figure_and_refuses_bad_input(tmp_path, data_root) -> None:
    from td_analysis.pipelines.training_length import main

    assert (
        main(["--experiment", "fashion-mlp", "--regularisers", "nonsense", "--out", str(tmp_path)])
        == 2
    )
    assert not (tmp_path / "training_length.json").exists()


def test_seed_protocol_records_are_batch_32_networks(tmp_path, data_root) -> None:
    """``protocol="seed"``: the seed's batch 32; each record is the network trained again on its
    own under that protocol, pruned by brute force."""
    from td_analysis.pipelines.fashion_mlp import network_config
    from td_analysis.pipelines.training_length import fashion_training_length_records
    from td_analysis.training.loop import load_data, train

    study = {"epochs": (1, 2), "regularisers": ("none",), "seeds": (0, 1)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        recs = fashion_training_length_records(
            study=study,
            ks=(0.0, 90.0),
            runs_dir=tmp_path,
            data_root=data_root,
            progress=False,
            settings=_settings(),
            in_process=True,
            protocol="seed",
        )
        assert {(r["seed"], r["epochs"]) for r in recs} == {(s, e) for s in (0, 1) for e in (1, 2)}
        assert {(r["protocol"], r["batch_size"]) for r in recs} == {("seed", 32)}
        assert len(list(tmp_path.glob("*.pt"))) == 4  # one run per seed, one snapshot each
        s = dataclasses.replace(_settings(), protocol="seed")
        x_train, y_train = load_data(network_config(s, "none", True, 0), "train", root=data_root)
        x, y = load_data(network_config(s, "none", True, 0), "holdout", root=data_root)
        for seed in (0, 1):
            cfg = dataclasses.replace(
                network_config(s, "none", True, seed), epochs=2, train_limit=600
            )
            assert cfg.batch_size == 32
            ws, bs = dense_params(train(cfg, train_data=(x_train, y_train), progress=False).model)
            (r,) = (
                r
                for r in recs
                if (r["seed"], r["epochs"], r["kind"], r["k"]) == (seed, 2, "weight", 0.0)
            )
            logits = logits64(ws, bs, x)
            loss = float(torch.nn.functional.cross_entropy(logits, y))
            assert r["loss"] == pytest.approx(loss, rel=2e-6, abs=1e-7)
            assert_accuracy(r["accuracy"], logits, y)
    finally:
        torch.set_num_threads(threads)


def test_cli_refuses_a_protocol_the_study_lacks(tmp_path, capsys) -> None:
    from td_analysis.pipelines.training_length import main

    argv = ["--experiment", "fashion-mlp", "--protocol", "adam", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no protocol 'adam'" in err and "default, seed" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("argv", "long_seeds"),
    [([], (0, 1, 2)), (["--seeds", "2", "--long-seeds", "2"], (2,))],
)
def test_long_seeds_choose_the_long_runs(argv, long_seeds) -> None:
    """``--long-seeds``: the seeds trained on to 30 and 100 epochs (default 0, 1, 2); the study's
    networks are exactly the grid's and those long runs."""
    from td_analysis.cli.training_length import build_parser, study_from_args
    from td_analysis.pipelines.training_length import fashion_study_networks

    args = build_parser().parse_args(["--experiment", "fashion-mlp", *argv])
    study = study_from_args(args)
    assert study["long_seeds"] == long_seeds
    seeds = (2,) if argv else (0, 1, 2, 3, 4)
    regs = study["regularisers"]
    want = {(r, s, e) for e in (3, 10, 20) for r in regs for s in seeds}
    want |= {
        (r, s, e)
        for e in (30, 100)
        for r in ("none", "targeted-weight", "targeted-unit")
        for s in long_seeds
    }
    assert set(fashion_study_networks(study)) == want
