"""The toy training-length study (``td_analysis.pipelines.training_length``) on the real CIFAR-10
data, small: 1 and 2 epochs, one seed, the unregularised network.  Each record is recomputed from
the
checkpoint the study left in its runs folder (matched by its stored config, epochs included)
with brute-force masks and a float64 forward pass (``references.py``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from references import assert_accuracy, dense_params, logits64, unit_prune_mask, weight_prune_mask

pytestmark = pytest.mark.slow

KS = (0.0, 50.0, 90.0)


@pytest.fixture(scope="module")
def study(tmp_path_factory, data_root):
    from td_analysis.pipelines.training_length import main

    base = tmp_path_factory.mktemp("training-length")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MPLBACKEND", "Agg")
            rc = main(
                [
                    "--epochs",
                    "1,2",
                    "--seeds",
                    "3",
                    "--regularisers",
                    "none",
                    "--ks",
                    ",".join(f"{k:g}" for k in KS),
                    "--out",
                    str(base / "out"),
                    "--runs",
                    str(base / "runs"),
                    "--data-dir",
                    str(data_root),
                    "--quiet",
                ]
            )
        assert rc == 0
        yield base
    finally:
        torch.set_num_threads(threads)


def test_records_match_brute_force(study, data_root) -> None:
    from td_analysis.data import load_cifar10
    from td_analysis.training.loop import load_checkpoint

    out = json.loads((study / "out" / "training_length.json").read_text())
    recs = out["records"]
    assert (study / "out" / "training_length.png").read_bytes()[:4] == b"\x89PNG"
    want_keys = {"regulariser", "bias", "seed", "epochs", "batch_size", "kind", "k"}
    want_keys |= {"protocol", "optimizer"}
    assert all(want_keys | {"accuracy", "loss"} == set(r) for r in recs)
    assert {(r["epochs"], r["kind"], r["k"]) for r in recs} == {
        (e, kind, k) for e in (1, 2) for kind in ("weight", "unit") for k in KS
    }
    ckpts = {}
    for p in (study / "runs").glob("*.pt"):
        c = load_checkpoint(p)
        ckpts[(c.config.epochs, c.config.seed, c.config.regulariser.kind)] = c
    assert set(ckpts) == {(1, 3, "none"), (2, 3, "none")}
    (prep,) = {c.config.preprocessing for c in ckpts.values()}
    x, y = load_cifar10(data_root, split="holdout", preprocessing=prep)
    for r in recs:
        c = ckpts[(r["epochs"], r["seed"], "none")]
        assert r["batch_size"] == c.config.batch_size and r["bias"] == c.config.bias
        # the toy task's default protocol, as the checkpoint says it was trained
        assert (r["protocol"], r["optimizer"], c.config.optimizer) == ("default", "adam", "adam")
        ws, bs = dense_params(c.model)
        f = r["k"] / 100
        if r["kind"] == "weight":
            masks = [weight_prune_mask(w, f) for w in ws]
        else:
            masks = [unit_prune_mask(ws[0], f), np.zeros(ws[1].shape, bool)]
        logits = logits64([w * torch.from_numpy(~m) for w, m in zip(ws, masks, strict=True)], bs, x)
        loss = float(torch.nn.functional.cross_entropy(logits, y))
        assert r["loss"] == pytest.approx(loss, rel=2e-6, abs=1e-7)
        assert_accuracy(r["accuracy"], logits, y)


def test_bad_input_exits_with_status_2(tmp_path) -> None:
    from td_analysis.pipelines.training_length import main

    assert main(["--regularisers", "nonsense", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "training_length.json").exists()
