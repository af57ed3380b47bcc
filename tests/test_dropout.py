"""Tests of ``td_analysis.nn.dropout`` against independent references.

The targeting rule of the official code (for-ai/TD, see /work/shared/REFERENCE.md) is
re-implemented here in plain numpy/python: for a torch weight ``W`` (out × in)

* weight level: per output unit (row) ``o``, ``τ_o = sorted(|W_o,:|)[int(γ·in)]`` and the
  targeted elements are ``|W_oi| < τ_o`` (strictly);
* unit level: ``n_o = ‖W_o,:‖₂``, ``τ = sorted(n)[int(γ·out)]``, targeted units ``n_o < τ``.

The statistical tests use fixed-seed generators and binomial tolerances of 5 sigma, so they are
deterministic and still fail for a wrong drop rate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from td_analysis.nn.dropout import (
    REGULARISERS,
    Regulariser,
    RegulariserConfig,
    ramp_schedule,
    targeted_unit_mask,
    targeted_weight_mask,
    validate_alpha,
    validate_gamma,
)

GAMMAS = (0.0, 0.1, 0.25, 0.3, 0.5, 0.6, 0.7, 0.75, 0.9, 0.95, 0.99)


# ------------------------------------------------------------------------------------------------
# Brute-force references (plain python / numpy, no torch)
# ------------------------------------------------------------------------------------------------


def ref_weight_mask(w: np.ndarray, gamma: float) -> np.ndarray:
    """Per row: threshold = sorted(|w_row|)[int(γ·in)], targeted = |w| < threshold."""
    out, n_in = w.shape
    k = int(gamma * n_in)
    mask = np.zeros((out, n_in), dtype=bool)
    for o in range(out):
        mags = [abs(float(v)) for v in w[o]]
        threshold = sorted(mags)[k]
        for i in range(n_in):
            mask[o, i] = mags[i] < threshold
    return mask


def ref_unit_norms(w: np.ndarray) -> list[float]:
    return [math.sqrt(sum(float(v) ** 2 for v in row)) for row in w]


def ref_unit_mask(w: np.ndarray, gamma: float) -> np.ndarray:
    """Rows with L2 norm < sorted(norms)[int(γ·out)]."""
    norms = ref_unit_norms(w)
    threshold = sorted(norms)[int(gamma * w.shape[0])]
    return np.array([n < threshold for n in norms], dtype=bool)


def _random_matrices(seed: int = 0):
    """Many (out, in) matrices: continuous, small-integer (ties), duplicated and constant rows."""
    rng = np.random.default_rng(seed)
    shapes = [(1, 1), (1, 7), (3, 4), (5, 10), (10, 10), (7, 33), (16, 64), (2, 100), (10, 3)]
    for out, n_in in shapes:
        yield "normal", rng.standard_normal((out, n_in))
        yield "ints", rng.integers(-3, 4, size=(out, n_in)).astype(np.float64)  # many ties
        yield "binary", rng.integers(0, 2, size=(out, n_in)).astype(np.float64)
        row = rng.standard_normal(n_in)
        yield "duplicated-rows", np.tile(row, (out, 1))
        yield "constant", np.full((out, n_in), -0.5)
        dup = rng.standard_normal((out, n_in))
        dup[:, : n_in // 2] = dup[:, :1]  # half of every row is one repeated value
        yield "duplicated-values", dup
        yield "zeros", np.zeros((out, n_in))
        mixed = rng.choice([-2.0, -1.0, 0.0, 1.0, 2.0], size=(out, n_in))
        yield "signed-ties", mixed
        yield "signed-zeros", rng.choice([-0.0, 0.0, -0.5, 0.5, 3.0], size=(out, n_in))


# ------------------------------------------------------------------------------------------------
# targeted_weight_mask / targeted_unit_mask
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weight_mask_matches_brute_force(dtype: torch.dtype) -> None:
    checked = 0
    for name, w in _random_matrices(1):
        wt = torch.tensor(w, dtype=dtype)
        # the reference sees exactly the values the code sees (float32 rounding included)
        w_seen = wt.double().numpy()
        for gamma in GAMMAS:
            got = targeted_weight_mask(wt, gamma)
            assert got.dtype == torch.bool and got.shape == wt.shape
            want = ref_weight_mask(w_seen, gamma)
            assert np.array_equal(got.numpy(), want), (name, w.shape, gamma)
            checked += 1
    assert checked > 500


def test_weight_mask_counts_for_distinct_magnitudes() -> None:
    """With distinct magnitudes exactly int(γ·in) weights per row are targeted."""
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(12, 257, generator=gen)
    for gamma in GAMMAS:
        mask = targeted_weight_mask(w, gamma)
        assert mask.sum(dim=1).tolist() == [int(gamma * 257)] * 12
        # the targeted ones are the smallest: max targeted |w| < min untargeted |w| per row
        for o in range(12):
            mags = w[o].abs()
            if 0 < mask[o].sum() < 257:
                assert mags[mask[o]].max() < mags[~mask[o]].min()


def test_weight_mask_is_per_row_not_global() -> None:
    # row 0 is tiny, row 1 is huge: a global threshold would target all of row 0
    w = torch.tensor([[0.001, 0.002, 0.003, 0.004], [10.0, 20.0, 30.0, 40.0]])
    mask = targeted_weight_mask(w, 0.5)
    assert mask.tolist() == [[True, True, False, False], [True, True, False, False]]


def test_weight_mask_ties_and_gamma_zero() -> None:
    w = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, 2.0], [-3.0, 3.0, 1.0, -1.0]])
    # γ=0.5 → k=2: row 0 threshold 1 (nothing < 1); row 1 threshold 1 → only the 0;
    # row 2 threshold sorted(1,1,3,3)[2]=3 → the two |1|'s
    assert targeted_weight_mask(w, 0.5).tolist() == [
        [False] * 4,
        [True, False, False, False],
        [False, False, True, True],
    ]
    assert not targeted_weight_mask(w, 0.0).any()
    assert not targeted_weight_mask(torch.full((3, 5), 2.0), 0.9).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_unit_mask_matches_brute_force(dtype: torch.dtype) -> None:
    checked = 0
    for name, w in _random_matrices(2):
        if name == "normal" and dtype == torch.float32:
            # float32 norms of continuous data may round differently from the float64
            # reference only for near-equal norms: use float64 for the continuous case
            continue
        wt = torch.tensor(w, dtype=dtype)
        for gamma in GAMMAS:
            got = targeted_unit_mask(wt, gamma)
            assert got.dtype == torch.bool and got.shape == (w.shape[0],)
            want = ref_unit_mask(wt.double().numpy(), gamma)
            assert np.array_equal(got.numpy(), want), (name, w.shape, gamma)
            checked += 1
    assert checked > 400


def test_unit_mask_ties_exact_integers() -> None:
    # squared norms 2, 2, 8, 1, 8 (exact in float32): sorted norms √1 √2 √2 √8 √8
    w = torch.tensor(
        [[1.0, 1.0], [-1.0, 1.0], [2.0, -2.0], [0.0, 1.0], [2.0, 2.0]], dtype=torch.float32
    )
    assert targeted_unit_mask(w, 0.2).tolist() == [False, False, False, True, False]  # k=1: √2
    assert targeted_unit_mask(w, 0.4).tolist() == [False, False, False, True, False]  # k=2: √2
    assert targeted_unit_mask(w, 0.6).tolist() == [True, True, False, True, False]  # k=3: √8
    assert targeted_unit_mask(w, 0.8).tolist() == [True, True, False, True, False]  # k=4: √8
    assert not targeted_unit_mask(w, 0.0).any()


def test_unit_mask_counts_for_distinct_norms() -> None:
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(40, 9, generator=gen, dtype=torch.float64)
    for gamma in GAMMAS:
        assert int(targeted_unit_mask(w, gamma).sum()) == int(gamma * 40)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_invalid_gamma_raises(bad: float) -> None:
    w = torch.randn(3, 4)
    for fn in (targeted_weight_mask, targeted_unit_mask):
        with pytest.raises(ValueError, match="gamma"):
            fn(w, bad)
    with pytest.raises(ValueError, match="gamma"):
        validate_gamma(bad)
    with pytest.raises(ValueError, match="gamma"):
        RegulariserConfig(kind="targeted-weight", gamma=bad, alpha=0.5)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_invalid_alpha_raises(bad: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        validate_alpha(bad)
    for kind in ("targeted-weight", "targeted-unit", "dropout", "dropconnect"):
        with pytest.raises(ValueError, match="alpha"):
            RegulariserConfig(kind=kind, gamma=0.5, alpha=bad)


def test_alpha_one_allowed_for_targeted_not_for_rescaling_kinds() -> None:
    RegulariserConfig(kind="targeted-weight", gamma=0.5, alpha=1.0)  # drops all targeted
    for kind in ("dropout", "dropconnect"):
        with pytest.raises(ValueError, match="alpha"):
            RegulariserConfig(kind=kind, alpha=1.0)


def test_other_invalid_configs_raise() -> None:
    with pytest.raises(ValueError, match="unknown regulariser"):
        RegulariserConfig(kind="targeted")
    with pytest.raises(ValueError, match="gamma"):
        RegulariserConfig(kind="targeted-unit", gamma=0.0, alpha=0.5)
    with pytest.raises(ValueError, match="l1"):
        RegulariserConfig(kind="l1", l1=-1.0)
    with pytest.raises(ValueError, match="ramp_steps"):
        RegulariserConfig(kind="targeted-weight", gamma=0.5, alpha=0.5, ramp_steps=0)
    with pytest.raises(ValueError, match="out of range"):
        Regulariser(RegulariserConfig(kind="dropconnect", alpha=0.5, layers=[2]), num_layers=2)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4), (0, 3), (3, 0)])
def test_non_2d_or_empty_weight_raises(shape: tuple[int, ...]) -> None:
    w = torch.zeros(shape)
    for fn in (targeted_weight_mask, targeted_unit_mask):
        with pytest.raises(ValueError):
            fn(w, 0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numpy_fast_path_equals_the_torch_path(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CPU float tensors take a numpy path (integer selection on the bits of |w|); every other
    tensor torch.kthvalue.  Both must give the same masks, NaN and signed zeros included."""
    import td_analysis.nn.dropout as D

    matrices = [w for _, w in _random_matrices(7)]
    with_nan = np.random.default_rng(1).standard_normal((6, 40))
    with_nan[:, ::7] = np.nan
    for w_np in [*matrices, with_nan]:
        w = torch.from_numpy(w_np).to(dtype)
        fast = {g: (targeted_weight_mask(w, g), targeted_unit_mask(w, g)) for g in GAMMAS}
        with monkeypatch.context() as m:
            m.setattr(D, "_numpy_fast_path", lambda t: False)
            for g in GAMMAS:
                slow = (targeted_weight_mask(w, g), targeted_unit_mask(w, g))
                assert torch.equal(fast[g][0], slow[0]), (g, w_np)
                assert torch.equal(fast[g][1], slow[1]), (g, w_np)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1.0, 1.0 / (1.0 - 0.3)])
@pytest.mark.parametrize("targeted_shape", [None, (20, 30), (20, 1)])
def test_keep_factor_against_the_definition(
    dtype: torch.dtype,
    scale: float,
    targeted_shape: tuple[int, int] | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``m = scale · 1[¬(t ∧ u < α)]`` elementwise, with u = α exactly kept (strict <)."""
    import td_analysis.nn.dropout as D

    alpha = 0.3
    gen = torch.Generator().manual_seed(2)
    u = torch.rand(20, 30, generator=gen, dtype=dtype)
    a = torch.tensor(alpha, dtype=dtype)
    u[0, :3] = a  # exactly α: kept
    u[1, :3] = torch.nextafter(a, torch.zeros((), dtype=dtype))  # just below α: dropped
    u[2, :3] = torch.nextafter(a, torch.ones((), dtype=dtype))  # just above: kept
    targeted = None
    if targeted_shape is not None:
        targeted = torch.rand(targeted_shape, generator=gen) < 0.7
        targeted[:3] = True
    un = u.double().numpy()
    t = np.ones(u.shape, bool) if targeted is None else np.broadcast_to(targeted.numpy(), u.shape)
    alpha_d = float(a)  # α in u's precision
    ref = np.array(
        [[0.0 if (t[i, j] and un[i, j] < alpha_d) else 1.0 for j in range(30)] for i in range(20)]
    )
    assert ref[0, :3].tolist() == [1.0] * 3 and ref[1, :3].tolist() == [0.0] * 3
    fast = D.keep_factor(u, alpha, targeted, scale)
    with monkeypatch.context() as m:
        m.setattr(D, "_numpy_fast_path", lambda t: False)
        slow = D.keep_factor(u, alpha, targeted, scale)
    for got in (fast, slow):
        assert got.dtype == dtype and got.shape == u.shape
        rtol = 1e-7 if dtype == torch.float32 else 1e-15
        np.testing.assert_allclose(got.double().numpy(), ref * scale, rtol=rtol)
    assert torch.equal(fast, slow)


def test_l1_penalty_gradient_is_the_autograd_gradient() -> None:
    gen = torch.Generator().manual_seed(4)
    w0 = torch.randn(5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    w1 = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    w1[0, :2] = 0.0  # |w| has no derivative at 0: autograd (and the closed form) use 0
    w1.requires_grad_(True)
    reg = Regulariser(RegulariserConfig("l1", l1=0.25, layers=[1]), 2)
    reg.penalty([w0, w1]).backward()
    assert w0.grad is None and reg.penalty_gradient(0, w0) is None
    assert torch.equal(reg.penalty_gradient(1, w1), w1.grad)
    assert Regulariser(RegulariserConfig("none"), 2).penalty_gradient(1, w1) is None


def test_masks_do_not_track_gradients_or_mutate() -> None:
    w = torch.randn(4, 6, requires_grad=True)
    before = w.detach().clone()
    m = targeted_weight_mask(w, 0.5)
    u = targeted_unit_mask(w, 0.5)
    assert not m.requires_grad and not u.requires_grad
    assert torch.equal(w.detach(), before)


# ------------------------------------------------------------------------------------------------
# Regulariser: the random drops
# ------------------------------------------------------------------------------------------------


def _five_sigma(n: int, p: float) -> float:
    return 5.0 * math.sqrt(n * p * (1.0 - p))


@pytest.mark.parametrize("alpha", [0.2, 0.5, 0.9])
def test_targeted_weight_drops_only_targeted_at_rate_alpha(alpha: float) -> None:
    gen = torch.Generator().manual_seed(11)
    w = torch.randn(20, 50, generator=torch.Generator().manual_seed(5))
    gamma = 0.6
    targeted = torch.from_numpy(ref_weight_mask(w.double().numpy(), gamma))
    reg = Regulariser(RegulariserConfig("targeted-weight", gamma=gamma, alpha=alpha), 1, gen)
    steps, dropped_total, ever_dropped = 200, 0, torch.zeros_like(targeted)
    for step in range(steps):
        eff = reg.weight(0, w, step)
        dropped = eff != w
        assert not (dropped & ~targeted).any(), "an untargeted weight was dropped"
        assert (eff[dropped] == 0).all()
        assert torch.equal(eff[~dropped], w[~dropped]), "kept weights must not be rescaled"
        dropped_total += int(dropped.sum())
        ever_dropped |= dropped
    n = steps * int(targeted.sum())
    assert abs(dropped_total - alpha * n) < _five_sigma(n, alpha)
    # per-element draws: every targeted weight is dropped at some step
    assert torch.equal(ever_dropped, targeted)


def test_targeted_weight_alpha_one_drops_exactly_the_targeted_set() -> None:
    w = torch.randn(8, 30, generator=torch.Generator().manual_seed(0))
    reg = Regulariser(RegulariserConfig("targeted-weight", gamma=0.75, alpha=1.0), 1)
    eff = reg.weight(0, w, 0)
    targeted = torch.from_numpy(ref_weight_mask(w.numpy(), 0.75))
    assert torch.equal(eff == 0, targeted)
    assert torch.equal(eff[~targeted], w[~targeted])


def test_targeted_unit_draws_per_element_within_targeted_rows() -> None:
    gen = torch.Generator().manual_seed(12)
    w = torch.randn(16, 40, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    gamma, alpha = 0.5, 0.5
    rows = torch.from_numpy(ref_unit_mask(w.numpy(), gamma))
    assert int(rows.sum()) == 8
    targeted = rows[:, None].expand_as(w)
    reg = Regulariser(RegulariserConfig("targeted-unit", gamma=gamma, alpha=alpha), 1, gen)
    steps, dropped_total, partial_rows = 100, 0, 0
    for step in range(steps):
        eff = reg.weight(0, w, step)
        dropped = eff != w
        assert not (dropped & ~targeted).any(), "an element of an untargeted unit was dropped"
        assert torch.equal(eff[~dropped], w[~dropped])
        dropped_total += int(dropped.sum())
        per_row = dropped[rows].sum(dim=1)
        partial_rows += int(((per_row > 0) & (per_row < w.shape[1])).sum())
    n = steps * int(targeted.sum())
    assert abs(dropped_total - alpha * n) < _five_sigma(n, alpha)
    # per element, not per unit: targeted rows are partly dropped (whole-row drops would give 0)
    assert partial_rows == steps * 8


@pytest.mark.parametrize("kind", ["targeted-weight", "targeted-unit", "dropconnect"])
def test_draws_are_independent_across_elements(kind: str) -> None:
    """Identical rows have identical targeted sets; their drops must still be independent:
    element (0, i) and (1, i) are dropped together with probability α², not α."""
    alpha = 0.5
    row = torch.randn(40, generator=torch.Generator().manual_seed(8))
    w = row.repeat(6, 1)
    w[3:] *= 10  # rows 0-2 (equal, small norm) are the targeted units of targeted-unit
    cfg = RegulariserConfig(kind, gamma=0.5, alpha=alpha)
    reg = Regulariser(cfg, 1, torch.Generator().manual_seed(15))
    if kind == "targeted-weight":
        cols = torch.from_numpy(ref_weight_mask(w[:1].numpy(), 0.5)[0])  # same in rows 0 and 1
    else:  # rows 0 and 1 are targeted units (targeted-unit) or everything is (dropconnect)
        cols = torch.ones(40, dtype=torch.bool)
    both, n = 0, 0
    for step in range(100):
        dropped = reg.weight(0, w, step) == 0  # w has no zeros of its own
        assert not torch.equal(dropped[0], dropped[1]), "rows share one draw"
        both += int((dropped[0] & dropped[1])[cols].sum())
        n += int(cols.sum())
    p = alpha * alpha
    assert abs(both - p * n) < _five_sigma(n, p)


def test_dropconnect_rescales_kept_weights() -> None:
    gen = torch.Generator().manual_seed(13)
    w = torch.randn(30, 40, generator=torch.Generator().manual_seed(7))
    alpha = 0.3
    reg = Regulariser(RegulariserConfig("dropconnect", alpha=alpha), 1, gen)
    dropped_total, steps = 0, 50
    for step in range(steps):
        eff = reg.weight(0, w, step)
        dropped = eff == 0
        torch.testing.assert_close(eff[~dropped], w[~dropped] / (1 - alpha), rtol=1e-6, atol=0)
        dropped_total += int(dropped.sum())
    n = steps * w.numel()
    assert abs(dropped_total - alpha * n) < _five_sigma(n, alpha)


def test_dropout_acts_only_on_hidden_inputs() -> None:
    gen = torch.Generator().manual_seed(14)
    alpha = 0.4
    reg = Regulariser(RegulariserConfig("dropout", alpha=alpha), 3, gen)
    z = torch.rand(64, 50) + 0.5  # no zeros of its own
    assert torch.equal(reg.activation(0, z, 0), z), "the raw network input must not be dropped"
    w = torch.randn(5, 50)
    assert torch.equal(reg.weight(1, w, 0), w), "dropout must leave weights alone"
    dropped_total = 0
    for layer in (1, 2):
        out = reg.activation(layer, z, 0)
        dropped = out == 0
        torch.testing.assert_close(out[~dropped], z[~dropped] / (1 - alpha), rtol=1e-6, atol=0)
        dropped_total += int(dropped.sum())
    n = 2 * z.numel()
    assert abs(dropped_total - alpha * n) < _five_sigma(n, alpha)
    # only the chosen layers
    only1 = Regulariser(RegulariserConfig("dropout", alpha=alpha, layers=[1]), 3, gen)
    assert torch.equal(only1.activation(2, z, 0), z)
    assert not torch.equal(only1.activation(1, z, 0), z)


@pytest.mark.parametrize("kind", ["targeted-weight", "targeted-unit", "dropconnect"])
def test_weight_regularisers_respect_layer_selection(kind: str) -> None:
    reg = Regulariser(
        RegulariserConfig(kind, gamma=0.5, alpha=1.0 if kind != "dropconnect" else 0.5, layers=[1]),
        2,
        torch.Generator().manual_seed(0),
    )
    w = torch.randn(6, 8)
    assert torch.equal(reg.weight(0, w, 0), w)
    assert not torch.equal(reg.weight(1, w, 0), w)


@pytest.mark.parametrize("kind", ["none", "l1"])
def test_none_and_l1_leave_weights_and_activations(kind: str) -> None:
    reg = Regulariser(RegulariserConfig(kind, l1=0.1 if kind == "l1" else 0.0), 2)
    w, z = torch.randn(3, 4), torch.randn(2, 4)
    assert reg.weight(0, w, 0) is w
    assert reg.activation(1, z, 0) is z


def test_l1_penalty_value() -> None:
    reg = Regulariser(RegulariserConfig("l1", l1=0.25, layers=[1]), 2)
    w0, w1 = torch.randn(3, 4), torch.randn(2, 3)
    torch.testing.assert_close(reg.penalty([w0, w1]), 0.25 * w1.abs().sum())
    assert Regulariser(RegulariserConfig("none"), 2).penalty([w0, w1]) is None


def test_draws_come_from_the_generator() -> None:
    w = torch.randn(10, 20, generator=torch.Generator().manual_seed(1))
    cfg = RegulariserConfig("targeted-weight", gamma=0.5, alpha=0.5)
    a = Regulariser(cfg, 1, torch.Generator().manual_seed(3))
    b = Regulariser(cfg, 1, torch.Generator().manual_seed(3))
    c = Regulariser(cfg, 1, torch.Generator().manual_seed(4))
    outs_a = [a.weight(0, w, s) for s in range(5)]
    outs_b = [b.weight(0, w, s) for s in range(5)]
    outs_c = [c.weight(0, w, s) for s in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(outs_a, outs_b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(outs_a, outs_c, strict=True))


# ------------------------------------------------------------------------------------------------
# Ramp schedule
# ------------------------------------------------------------------------------------------------


def ref_ramp(s: float, gamma: float, alpha: float) -> tuple[float, float]:
    """REFERENCE.md with R = 40000."""
    a = alpha * min(1.0, s / 40000)
    g = 0.95 * gamma * min(1.0, s / 20000) + 0.05 * gamma * min(max((s - 20000) / 20000, 0), 1)
    return g, a


@pytest.mark.parametrize(
    "step", [0, 1, 5000, 10000, 19999, 20000, 20001, 25000, 30000, 39999, 40000, 50000, 10**6]
)
def test_ramp_schedule_closed_form(step: int) -> None:
    for gamma, alpha in ((0.75, 0.5), (0.5, 0.25), (0.9, 1.0)):
        g, a = ramp_schedule(step, gamma, alpha, 40000)
        rg, ra = ref_ramp(step, gamma, alpha)
        assert g == pytest.approx(rg, rel=1e-12, abs=1e-15)
        assert a == pytest.approx(ra, rel=1e-12, abs=1e-15)


def test_ramp_schedule_landmarks() -> None:
    assert ramp_schedule(0, 0.75, 0.5, 40000) == (0.0, 0.0)
    g, a = ramp_schedule(20000, 0.75, 0.5, 40000)
    assert g == pytest.approx(0.95 * 0.75) and a == pytest.approx(0.25)
    g, a = ramp_schedule(40000, 0.75, 0.5, 40000)
    assert g == pytest.approx(0.75) and a == pytest.approx(0.5)
    with pytest.raises(ValueError, match="ramp_steps"):
        ramp_schedule(10, 0.5, 0.5, 0)


def test_regulariser_follows_the_ramp() -> None:
    cfg = RegulariserConfig("targeted-weight", gamma=0.75, alpha=0.5, ramp_steps=40000)
    reg = Regulariser(cfg, 1, torch.Generator().manual_seed(0))
    for step in (0, 10000, 30000, 80000):
        assert reg.rates(step) == pytest.approx(ref_ramp(step, 0.75, 0.5))
    w = torch.randn(4, 16)
    assert torch.equal(reg.weight(0, w, 0), w), "at step 0 the ramp has α = 0: nothing dropped"
    # late in the ramp only the ramped targeted set (γ(s)) may be dropped
    g, _ = ref_ramp(10000, 0.75, 0.5)
    targeted = torch.from_numpy(ref_weight_mask(w.numpy(), g))
    for _ in range(20):
        dropped = reg.weight(0, w, 10000) != w
        assert not (dropped & ~targeted).any()
    unramped = Regulariser(RegulariserConfig("targeted-weight", gamma=0.75, alpha=0.5), 1)
    assert unramped.rates(0) == (0.75, 0.5)


# ------------------------------------------------------------------------------------------------
# Gradients through the regularised weights; nothing masked at evaluation
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["targeted-weight", "targeted-unit"])
def test_dropped_weights_get_zero_gradient(kind: str) -> None:
    gen = torch.Generator().manual_seed(21)
    data = torch.Generator().manual_seed(22)
    w = torch.randn(6, 12, generator=data, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=data, dtype=torch.float64, requires_grad=True)
    x = torch.randn(9, 12, generator=data, dtype=torch.float64)
    c = torch.randn(9, 6, generator=data, dtype=torch.float64)
    reg = Regulariser(RegulariserConfig(kind, gamma=0.5, alpha=0.5), 1, gen)
    eff = reg.weight(0, w, 0)
    dropped = (eff.detach() == 0) & (w.detach() != 0)
    assert dropped.any() and (~dropped).any()
    loss = (F.linear(x, eff, b) * c).sum()
    loss.backward()
    # independent reference: d/dW_oi Σ_bo c_bo (Σ_i W̃_oi x_bi + b_o) = Σ_b c_bo x_bi if kept
    xn, cn = x.numpy(), c.numpy()
    ref = cn.T @ xn
    ref[dropped.numpy()] = 0.0
    np.testing.assert_allclose(w.grad.numpy(), ref, rtol=1e-12, atol=1e-12)
    assert (w.grad[dropped] == 0).all()
    np.testing.assert_allclose(b.grad.numpy(), cn.sum(axis=0), rtol=1e-12)


def test_training_steps_leave_dropped_weights_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside ``train``: with plain SGD a weight dropped at step s has zero gradient, so it is
    bit-for-bit unchanged by that step, while kept weights move."""
    import td_analysis.training.loop as T

    records: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []

    class Recording(Regulariser):  # the masks train uses (step_masks: buffers, cloned)
        def step_masks(self, weights, batch_size, step, masked):  # type: ignore[override]
            factors, inputs, products = super().step_masks(weights, batch_size, step, masked)
            for layer, (w, m) in enumerate(zip(weights, factors, strict=True)):
                records.append((step, layer, w.detach().clone(), (m == 0).clone()))
            return factors, inputs, products

    monkeypatch.setattr(T, "Regulariser", Recording)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 12, generator=gen)
    y = torch.randint(0, 3, (64,), generator=gen)
    cfg = T.TrainConfig(
        in_features=12,
        hidden=(8,),
        num_classes=3,
        regulariser=RegulariserConfig("targeted-weight", gamma=0.5, alpha=0.5),
        momentum=0.0,
        lr=0.1,
        batch_size=16,
        epochs=2,
        eval_split="",
    )
    result = T.train(cfg, train_data=(x, y), progress=False)
    by_layer: dict[int, list] = {0: [], 1: []}
    for step, layer, w, dropped in records:
        by_layer[layer].append((step, w, dropped))
    final = [result.model.layers[0].weight.detach(), result.model.layers[1].weight.detach()]
    for layer, recs in by_layer.items():
        assert [r[0] for r in recs] == list(range(8))  # one call per step and layer
        for i, (_, w, dropped) in enumerate(recs):
            w_next = recs[i + 1][1] if i + 1 < len(recs) else final[layer]
            assert dropped.any()
            assert torch.equal(w_next[dropped], w[dropped]), f"layer {layer} step {i}"
            assert (w_next[~dropped] != w[~dropped]).any()


def test_nothing_masked_at_evaluation() -> None:
    """A TD-trained model's eval forward is the plain forward of its (unmasked) weights."""
    from td_analysis.training.loop import TrainConfig, evaluate, train

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(200, 16, generator=gen)
    y = torch.randint(0, 4, (200,), generator=gen)
    cfg = TrainConfig(
        in_features=16,
        hidden=(10,),
        num_classes=4,
        regulariser=RegulariserConfig("targeted-weight", gamma=0.75, alpha=0.5),
        batch_size=32,
        epochs=2,
    )
    result = train(cfg, train_data=(x, y), eval_data=(x, y), progress=False)
    model = result.model
    assert not model.training
    w1, b1, w2, b2 = (p.detach().double().numpy() for p in model.parameters())
    # targeted weights are still there (not zeroed) after training
    assert (w1[ref_weight_mask(w1, 0.75)] != 0).all()
    xn = x.double().numpy()
    logits = np.maximum(xn @ w1.T + b1, 0) @ w2.T + b2
    with torch.no_grad():
        out = model(x).double().numpy()
        out_again = model(x).double().numpy()
    np.testing.assert_allclose(out, logits, rtol=1e-5, atol=1e-5)
    assert np.array_equal(out, out_again), "evaluation must be deterministic"
    acc = float((logits.argmax(1) == y.numpy()).mean())
    assert evaluate(model, x, y)["accuracy"] == pytest.approx(acc)
    assert result.final["eval_accuracy"] == pytest.approx(acc)


def test_regulariser_kinds_are_the_documented_ones() -> None:
    assert set(REGULARISERS) == {
        "none",
        "targeted-weight",
        "targeted-unit",
        "dropout",
        "dropconnect",
        "l1",
    }
