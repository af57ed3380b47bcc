"""The analysis on any model (issue #21): Taylor estimates, sweeps, magnitude orderings, pooled
coadaptation, unit and layer maps and pruned-set spectra of CNNs, a ResNet block with
BatchNorm, weight sharing and a Transformer encoder layer, with conv filters as units.

Reference: the float64 ``torch.func`` loss of ``tests/zoo.py`` (``Reference``: ∇ and the full
Hessian of ℓ(θ) over the selected parameters; see its note on LayerNorm), masks by brute force
(``test_module_pruning``), orderings by ``numpy.argsort``, block sums by explicit loops over
index sets, eigenvalues by ``numpy.linalg.eigvalsh``.  float64 on both sides: ``rel=1e-9``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_module_pruning import STRUCTURE, ref_unit_masks, ref_weight
from zoo import ZOO, Reference

from td_analysis.analysis.coadaptation import (
    layer_coadaptation,
    magnitude_order,
    pooled_block_summary,
    pooled_coadaptation,
    pooled_unit_dependence,
    pruned_set,
    selection_mask,
)
from td_analysis.analysis.taylor import estimate_pruning, pruning_sweep, random_mask_sweep
from td_analysis.curvature import HessianOperator, pruned_spectrum

CASES = {c.name: c for c in ZOO}
NAMES = ["cnn-bn", "conv1d", "resnet-block-bn", "weight-sharing", "transformer-encoder"]
REL = 1e-9


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ref_masks(model, name: str, kind: str, k: int) -> dict[str, torch.Tensor]:
    if kind == "unit":
        return ref_unit_masks(model, name, k)
    return {f"{m}.weight": ref_weight(model, m, k, "unit") for m in STRUCTURE[name][0]}


def ordered(model, names: list[str]) -> list[str]:
    return [n for n, _ in model.named_parameters() if n in set(names)]


def ref_terms(model, x, y, masks, reduction):
    """−∇ᵀd, ½dᵀHd, ½Σ H_ii d_i², and the measured E(θ − d) − E(θ), all float64 torch.func."""
    names = ordered(model, list(masks))
    ref = Reference(model, x, y, params=names, reduction=reduction)
    mask = torch.cat([masks[n].reshape(-1) for n in names]).to(torch.float64)
    d = ref.theta * mask
    H = ref.hessian()
    g = ref.grad()
    return {
        "first_order": float(-(g @ d)),
        "second_order": float(0.5 * d @ H @ d),
        "diagonal": float(0.5 * (H.diagonal() * d * d).sum()),
        "measured": float(ref.loss(ref.theta - d) - ref.loss()),
    }


@pytest.mark.parametrize("kind", ["weight", "unit"])
@pytest.mark.parametrize("name", NAMES)
def test_estimate_pruning_matches_torch_func(name, kind):
    case = CASES[name]
    model, x, y = case.build()
    masks = ref_masks(model, name, kind, 50)
    got = estimate_pruning(model, x, y, masks, reduction=case.reduction)
    want = ref_terms(model, x, y, masks, case.reduction)
    for key, value in want.items():
        assert getattr(got, key) == pytest.approx(value, rel=REL, abs=1e-12), key
    assert got.estimate == pytest.approx(want["first_order"] + want["second_order"], rel=REL)
    assert got.n_pruned == sum(int(m.sum()) for m in masks.values())


@pytest.mark.parametrize("kind", ["weight", "unit"])
@pytest.mark.parametrize("name", ["cnn-bn", "resnet-block-bn"])
def test_pruning_sweep_of_a_conv_net_prunes_by_module_rules(name, kind):
    """A model with Conv layers sweeps with the module rules (k = 100·fraction)."""
    case = CASES[name]
    model, x, y = case.build()
    rows = pruning_sweep(model, x, y, (0.0, 0.5, 0.75), kind, reduction=case.reduction)
    for row, k in zip(rows, (0, 50, 75), strict=True):
        want = ref_terms(model, x, y, ref_masks(model, name, kind, k), case.reduction)
        for key, value in want.items():
            assert getattr(row, key) == pytest.approx(value, rel=REL, abs=1e-12), (k, key)


def test_sweeps_with_modules_on_a_linear_model():
    """``modules=`` selects layers of a Linear-only model (weight sharing) by the module rules."""
    model, x, y = CASES["weight-sharing"].build()
    rows = pruning_sweep(model, x, y, (0.5,), "unit", modules=["shared"])
    masks = {k: v for k, v in ref_unit_masks(model, "weight-sharing", 50).items() if "shared" in k}
    want = ref_terms(model, x, y, masks, "mean")
    assert rows[0].second_order == pytest.approx(want["second_order"], rel=REL)
    assert rows[0].measured == pytest.approx(want["measured"], rel=REL)
    randoms = random_mask_sweep(model, x, y, n_masks=3, modules=["inp", "shared"], seed=4)
    assert len(randoms) == 3 and all(r.n_pruned > 0 for r in randoms)
    with pytest.raises(ValueError, match="layers .* or modules"):
        pruning_sweep(model, x, y, (0.5,), "unit", [0], modules=["shared"])


def ref_order(theta: np.ndarray) -> np.ndarray:
    """Decreasing |θ|, ties by flat index."""
    return np.argsort(-np.abs(theta), kind="stable")


@pytest.mark.parametrize("name", NAMES)
def test_pooled_coadaptation_and_block_summary(name):
    case = CASES[name]
    model, x, y = case.build()
    names = [f"{m}.weight" for m in STRUCTURE[name][0]]
    order = magnitude_order(model, names)
    ref = Reference(model, x, y, params=ordered(model, names), reduction="sum")
    theta = ref.theta.numpy()
    C = theta[:, None] * ref.hessian().numpy() * theta[None, :]
    np.testing.assert_array_equal(order.order.numpy(), ref_order(theta))
    P, B = len(theta), 5
    rank = np.empty(P, dtype=int)
    rank[ref_order(theta)] = np.arange(P)
    bins = rank * B // P
    want = np.zeros((B, B))
    for i in range(P):
        for j in range(P):
            want[bins[i], bins[j]] += C[i, j]
    got = pooled_coadaptation(model, x, y, order, B, reduction="sum").numpy()
    np.testing.assert_allclose(got, want, rtol=REL, atol=1e-12 * np.abs(C).sum())
    pruned = pruned_set(model, order, 0.5, "weight").numpy()
    masks = ref_masks(model, name, "weight", 50)
    np.testing.assert_array_equal(
        pruned, np.concatenate([masks[n].reshape(-1).numpy() for n in ordered(model, names)])
    )
    summary = pooled_block_summary(model, x, y, order, torch.from_numpy(pruned), reduction="sum")
    p = pruned.astype(float)
    assert summary.pruned_pruned == pytest.approx(p @ C @ p, rel=REL, abs=1e-12)
    assert summary.kept_pruned == pytest.approx(2 * (1 - p) @ C @ p, rel=REL, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_unit_and_layer_maps_with_filters_as_units(name):
    case = CASES[name]
    model, x, y = case.build()
    names = ordered(model, [n for n, p in model.named_parameters() if "norm" not in n])
    order = magnitude_order(model, names)
    ref = Reference(model, x, y, params=names, reduction="sum")
    theta = ref.theta.numpy()
    C = theta[:, None] * ref.hessian().numpy() * theta[None, :]
    unit_of, layer_of, units, layers = [], [], [], []
    for n in names:  # unit = (layer, output row / filter); a bias entry o is unit o
        p = model.get_parameter(n)
        layer = n.rsplit(".", 1)[0]
        if layer not in layers:
            layers.append(layer)
        for flat in range(p.numel()):
            o = np.unravel_index(flat, tuple(p.shape))[0]
            if (layer, o) not in units:
                units.append((layer, o))
            unit_of.append(units.index((layer, o)))
            layer_of.append(layers.index(layer))
    U = np.zeros((len(units), len(units)))
    L = np.zeros((len(layers), len(layers)))
    for i in range(len(theta)):
        for j in range(len(theta)):
            U[unit_of[i], unit_of[j]] += C[i, j]
            L[layer_of[i], layer_of[j]] += C[i, j]
    scale = 1e-12 * np.abs(C).sum()
    got = pooled_unit_dependence(model, x, y, order, reduction="sum").numpy()
    np.testing.assert_allclose(got, U, rtol=REL, atol=scale)
    got, got_layers = layer_coadaptation(model, x, y, order, reduction="sum")
    assert got_layers == layers
    np.testing.assert_allclose(got.numpy(), L, rtol=REL, atol=scale)


@pytest.mark.parametrize("kind", ["weight", "unit"])
@pytest.mark.parametrize("name", ["cnn-bn", "resnet-block-bn", "transformer-encoder"])
def test_spectrum_on_the_pruned_set(name, kind):
    case = CASES[name]
    model, x, y = case.build()
    masks = ref_masks(model, name, kind, 50)
    names = ordered(model, list(masks))
    op = HessianOperator(model, (x, y), params=names, dtype=torch.float64)
    order = magnitude_order(model, names)
    flat = selection_mask(order, masks)
    ref = Reference(model, x, y, params=names)
    H = ref.hessian().numpy()
    S = flat.numpy()
    result = pruned_spectrum(op, flat, theta=order.theta, k=2, tol=1e-10)
    lam = np.linalg.eigvalsh(H[np.ix_(S, S)])[-1]
    assert result.lambda_max_pruned == pytest.approx(lam, rel=1e-8)
    d = np.where(S, ref.theta.numpy(), 0.0)
    assert result.second_order == pytest.approx(0.5 * d @ H @ d, rel=REL)
    assert result.top_eigenvalues[0] == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-8)


def test_a_model_in_train_mode_is_refused():
    model, x, y = CASES["resnet-block-bn"].build()
    masks = ref_masks(model, "resnet-block-bn", "weight", 50)
    model.train()
    with pytest.raises(ValueError, match="training mode") as exc:
        estimate_pruning(model, x, y, masks)
    assert "\n" not in str(exc.value) and "bn" in str(exc.value)
    order = magnitude_order(model, list(masks))
    with pytest.raises(ValueError, match="training mode"):
        pooled_coadaptation(model, x, y, order, 4)
