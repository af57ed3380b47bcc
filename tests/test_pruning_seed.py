"""The seed's pruning rules (``td_analysis.analysis.pruning``: per-layer weight pruning, unit
pruning with biases and outgoing weights, k in percent) against brute force.

References: ``fashion_cases.seed_weight_masks`` / ``seed_unit_masks`` (python sorting by
``(|w|, index)`` and explicit L2 norms), a physically smaller network built by deleting the
pruned units, and a numpy forward pass for the reported accuracies.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fashion_cases import seed_count, seed_unit_masks, seed_weight_masks
from torch import nn

from td_analysis.analysis.pruning import (
    REFERENCE_KINDS,
    hidden_layers,
    prune_percent,
    pruning_table,
    reference_pruning_masks,
    unit_pruning_masks,
    validate_percent,
    weight_pruning_masks,
)
from td_analysis.nets.models import DenseNet

KS = (0, 10, 25, 50, 60, 70, 80, 90, 95, 97, 99, 100)


@pytest.fixture(autouse=True)
def _one_thread(one_thread) -> None:
    """Small products: one intra-op thread (conftest's ``one_thread``)."""


def _net(seed: int = 0, widths=(9, 7, 6, 5, 4), bias: bool = True, tied: bool = False) -> DenseNet:
    torch.manual_seed(seed)
    model = DenseNet(widths[0], widths[1:-1], widths[-1], bias).double()
    if tied:  # magnitudes from a small set: many ties, both signs
        rng = np.random.default_rng(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.from_numpy(rng.integers(-2, 3, size=p.shape).astype(np.float64)))
    return model


def _np(masks: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in masks.items()}


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("k", KS)
def test_weight_masks_match_brute_force(k: float, tied: bool) -> None:
    model = _net(1, tied=tied)
    got = _np(weight_pruning_masks(model, k))
    ref = seed_weight_masks(model, k)
    assert got.keys() == ref.keys()  # the hidden layers only: the output layer is kept
    assert "layers.3.weight" not in got
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=f"{name} at k={k}")
        assert got[name].sum() == seed_count(k, got[name].size)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("k", KS)
def test_unit_masks_match_brute_force(k: float, tied: bool, bias: bool) -> None:
    model = _net(2, bias=bias, tied=tied)
    got = _np(unit_pruning_masks(model, k))
    ref = seed_unit_masks(model, k)
    assert got.keys() == ref.keys()
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=f"{name} at k={k}")


def test_unit_pruning_equals_a_smaller_network() -> None:
    """Removing units with their bias and outgoing weights is the network without those units."""
    model = _net(3, widths=(8, 10, 9, 6, 3))
    x = torch.randn(40, 8, dtype=torch.float64)
    for k in (10, 30, 50, 90):
        pruned, _ = prune_percent(model, k, "unit")
        # brute force: the kept units of each hidden layer, by explicit norms
        lin = list(model.layers)
        keep = []
        for layer in lin[:-1]:
            w = layer.weight.detach().numpy()
            norms = [math.sqrt(sum(v * v for v in row)) for row in w]
            gone = sorted(range(len(norms)), key=lambda o: (norms[o], o))[
                : seed_count(k, len(norms))
            ]
            keep.append([o for o in range(len(norms)) if o not in gone])
        h = x
        prev = list(range(8))
        for l, layer in enumerate(lin):
            rows = keep[l] if l < len(keep) else list(range(layer.weight.shape[0]))
            w = layer.weight.detach()[rows][:, prev]
            h = h @ w.T + layer.bias.detach()[rows]
            if l < len(keep):
                h = torch.relu(h)
            prev = rows
        torch.testing.assert_close(pruned(x), h, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", REFERENCE_KINDS)
def test_pruning_keeps_w_not_abs_w(kind: str) -> None:
    """The seed author's bug kept |w|: the kept weights must keep their sign and value."""
    model = _net(4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    pruned, masks = prune_percent(model, 40, kind)
    for name, p in pruned.named_parameters():
        mask = masks.get(name, torch.zeros_like(p, dtype=torch.bool))
        expected = torch.where(mask, torch.zeros_like(p), before[name])
        assert torch.equal(p.detach(), expected), name
        assert (p.detach() < 0).any(), f"{name} lost its negative weights"
    for name, p in model.named_parameters():  # the caller's model is untouched
        assert torch.equal(p.detach(), before[name])


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Four Gaussian blobs in 20 dimensions (fixed centres), ``n`` samples drawn with ``seed``."""
    centres = torch.randn(4, 20, generator=torch.Generator().manual_seed(99)) * 3
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=gen)
    return centres[y] + torch.randn(n, 20, generator=gen), y


def _numpy_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    h = x.double().numpy()
    layers = list(model.layers)
    for l, layer in enumerate(layers):
        h = h @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()
        if l < len(layers) - 1:
            h = np.maximum(h, 0)
    return float((h.argmax(1) == y.numpy()).mean())


def test_weight_pruning_at_small_k_keeps_the_accuracy() -> None:
    """A trained network pruned by 10–25% per layer keeps its accuracy; keeping |w| (the seed's
    bug) does not."""
    x, y = _blobs(2000, 0)
    xt, yt = _blobs(1000, 1)
    torch.manual_seed(0)
    model = DenseNet(20, (64, 64), 4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    base = _numpy_accuracy(model, xt, yt)
    assert base > 0.9
    for k in (10, 25):
        pruned, masks = prune_percent(model, k, "weight")
        assert _numpy_accuracy(pruned, xt, yt) >= base - 0.01
        buggy = prune_percent(model, k, "weight")[0]
        with torch.no_grad():
            for name, p in buggy.named_parameters():
                if name in masks:
                    p.copy_(p.abs())
        assert _numpy_accuracy(buggy, xt, yt) < base - 0.2  # the check can fail


def test_pruning_table_against_independent_evaluation() -> None:
    model = _net(5, widths=(20, 16, 12, 4)).float()
    x, y = _blobs(300, 2)
    rows = pruning_table(model, x, y, ks=(0, 50, 90), kinds=("weight", "unit"))
    assert [(r["kind"], r["k"]) for r in rows] == [
        (kind, float(k)) for kind in ("weight", "unit") for k in (0, 50, 90)
    ]
    for r in rows:
        ref = (seed_weight_masks if r["kind"] == "weight" else seed_unit_masks)(model, r["k"])
        brute = _net(5, widths=(20, 16, 12, 4)).float()
        with torch.no_grad():
            for name, p in brute.named_parameters():
                if name in ref:
                    p[torch.from_numpy(ref[name])] = 0.0
        assert r["accuracy"] == pytest.approx(_numpy_accuracy(brute, x, y), abs=1e-12)
        h = x.double().numpy()
        for l, layer in enumerate(brute.layers):
            h = h @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()
            if l < 2:
                h = np.maximum(h, 0)
        logp = h - h.max(1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
        assert r["loss"] == pytest.approx(-logp[np.arange(len(y)), y.numpy()].mean(), rel=1e-5)
        weights = [n for n in ref if n.endswith("weight")]
        removed = sum(int(ref[n].sum()) for n in weights)
        assert r["removed"] == removed
        assert r["removed_share"] == pytest.approx(removed / sum(ref[n].size for n in weights))


def test_k_zero_changes_nothing_and_k_100_removes_every_hidden_weight() -> None:
    model = _net(6)
    for kind in REFERENCE_KINDS:
        pruned, masks = prune_percent(model, 0, kind)
        assert not any(m.any() for m in masks.values())
        assert all(
            torch.equal(a, b) for a, b in zip(pruned.parameters(), model.parameters(), strict=True)
        )
    pruned, _ = prune_percent(model, 100, "weight")
    for l in hidden_layers(model):
        assert not pruned.layers[l].weight.any()
    assert torch.equal(pruned.layers[-1].weight, model.layers[-1].weight)


@pytest.mark.parametrize("k", [-1, -1e-9, 100.5, float("nan"), float("inf")])
def test_k_outside_0_100_is_refused(k: float) -> None:
    model = _net(0)
    for kind in REFERENCE_KINDS:
        with pytest.raises(ValueError, match=r"percentage in \[0, 100\]"):
            reference_pruning_masks(model, k, kind)
    with pytest.raises(ValueError, match=r"percentage in \[0, 100\]"):
        validate_percent(k)


def test_bad_kind_and_layers_are_refused() -> None:
    model = _net(0)
    with pytest.raises(ValueError, match="unknown pruning kind"):
        reference_pruning_masks(model, 10, "global")
    with pytest.raises(ValueError, match="output layer"):
        unit_pruning_masks(model, 10, layers=[3])
    with pytest.raises(ValueError, match="out of range"):
        weight_pruning_masks(model, 10, layers=[7])
    with pytest.raises(ValueError, match="no nn.Linear"):
        weight_pruning_masks(nn.Sequential(nn.ReLU()), 10)


def test_explicit_layers_and_the_output_layer() -> None:
    """``layers`` may name the output layer for weight pruning (the caller's choice)."""
    model = _net(7)
    got = _np(weight_pruning_masks(model, 30, layers=[1, 3]))
    assert sorted(got) == ["layers.1.weight", "layers.3.weight"]
    for name, w in (("layers.1.weight", model.layers[1]), ("layers.3.weight", model.layers[3])):
        flat = list(np.abs(w.weight.detach().numpy()).reshape(-1))
        order = sorted(range(len(flat)), key=lambda i: (flat[i], i))[: seed_count(30, len(flat))]
        ref = np.zeros(len(flat), dtype=bool)
        ref[order] = True
        np.testing.assert_array_equal(got[name].reshape(-1), ref)


def test_the_old_seed_names_stay_importable():
    """ "seed" meant the reference repository (issue #20): the old names are the new objects."""
    from td_analysis.analysis import pruning

    assert pruning.seed_pruning_masks is pruning.reference_pruning_masks
    assert pruning.SEED_KINDS is pruning.REFERENCE_KINDS
