"""The fused targeted-dropout kernels (``td_analysis.utils.kernels``) and the training path using
them.

References: per-row thresholds by ``np.sort`` of the magnitudes (float values, and their
IEEE-754 bits with the sign cleared, which is how NaN rows are ordered); keep masks, ``W ⊙ M``
and ``∂L/∂W ⊙ M`` written out in numpy/torch from those thresholds and the same draws; the
package's numpy path (``TD_ANALYSIS_FUSED_KERNELS=0``) for whole training runs, bit for bit.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from td_analysis.nn.dropout import Regulariser, RegulariserConfig
from td_analysis.training.loop import DenseStep, TrainConfig, train
from td_analysis.utils import kernels


@pytest.fixture(autouse=True)
def _compiled() -> None:
    """Skip without a C compiler, except in CI (``CI`` set), which must run these tests."""
    if not kernels.available():
        if os.environ.get("CI"):
            pytest.fail("no C compiler: the fused kernels could not be built")
        pytest.skip("no C compiler for the kernels")


_UINT = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}


@pytest.fixture(autouse=True)
def _one_thread(one_thread) -> None:
    """One intra-op thread: bit-for-bit reproducible products."""


def _ref_tau_bits(w: np.ndarray, k: int) -> np.ndarray:
    """k-th smallest magnitude of each row, as bits (sign cleared; NaN bits sort last)."""
    u = _UINT[w.dtype]
    bits = w.view(u) & u(np.iinfo(u).max >> 1)
    return np.sort(bits, axis=1)[:, k]


def _rows(kind: str, rows: int, cols: int, dtype, rng: np.random.Generator) -> np.ndarray:
    """Random and adversarial rows: ties, signed zeros, NaN/inf, constant rows, tiny ranges."""
    if kind == "normal":
        return rng.standard_normal((rows, cols)).astype(dtype)
    if kind == "ties":
        return rng.integers(-3, 4, (rows, cols)).astype(dtype)
    if kind == "zeros":
        w = np.zeros((rows, cols), dtype)
        w[:, ::3] = -0.0
        w[:, 1::7] = 1.0
        return w
    if kind == "constant":
        return np.full((rows, cols), -0.25, dtype)
    if kind == "nonfinite":
        w = rng.standard_normal((rows, cols)).astype(dtype)
        w[rng.random(w.shape) < 0.1] = np.nan
        w[rng.random(w.shape) < 0.05] = -np.inf
        return w
    if kind == "denormal":  # magnitudes a few ULP apart, around the smallest normals
        tiny = np.finfo(dtype).tiny
        return (rng.integers(-5, 6, (rows, cols)) * tiny / 4).astype(dtype)
    raise ValueError(kind)


KINDS = ("normal", "ties", "zeros", "constant", "nonfinite", "denormal")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cols", [1, 2, 17, 255, 256, 1000])
def test_thresholds_equal_a_full_sort_with_and_without_hints(kind, cols, dtype) -> None:
    """Exact: the same τ as a sort, on the first call (no hint), while the weights move a little
    (the last step's τ as hint), and after the hints are overwritten with garbage."""
    rng = np.random.default_rng(cols * 31 + KINDS.index(kind))
    w = _rows(kind, 6, cols, dtype, rng)
    for k in sorted({0, cols // 4, cols // 2, int(0.99 * cols), cols - 1}):
        state: dict = {}
        for rep in range(5):
            if rep == 3:  # garbage hints: τ anywhere (NaN bit patterns included), any δ
                u = state["tau"].dtype
                state["tau"][:] = rng.integers(0, np.iinfo(u).max, 6, dtype=u)
                state["delta"][:] = rng.integers(0, 2**20, 6, dtype=u)
            got = kernels.row_thresholds(w, k, state)
            np.testing.assert_array_equal(got, _ref_tau_bits(w, k), err_msg=f"k={k} rep={rep}")
            if kind == "normal":  # the float values too: τ_o = sort(|W_o,:|)[k]
                np.testing.assert_array_equal(got.view(dtype), np.sort(np.abs(w), axis=1)[:, k])
            step = (rng.standard_normal(w.shape) * 10.0 ** -rng.integers(1, 4)).astype(dtype)
            w = (w + step * (rng.random(w.shape) < 0.7)).astype(dtype)


@pytest.mark.parametrize("cols", [20, 300, 3000])
def test_thresholds_at_the_edge_of_a_run_of_ties(cols: int) -> None:
    """Rows of two or three distinct magnitudes in shuffled order, k exactly at the end of a
    run of equal values and one before/after it (the quickselect's tie branches)."""
    rng = np.random.default_rng(cols)
    for share in (0.05, 0.5, 0.8, 0.97):
        m = max(1, int(share * cols))
        row = np.where(np.arange(cols) < m, np.float32(0.5), np.float32(-2.0))
        row[m + (cols - m) // 2 :] = 3.0
        w = np.stack([rng.permutation(row) for _ in range(4)])
        for k in {max(0, m - 1), m, min(cols - 1, m + 1), min(cols - 1, m + (cols - m) // 2)}:
            for state in (None, {}):  # no hints (sample band, quickselect) and hinted
                got = kernels.row_thresholds(w, k, state)
                got = kernels.row_thresholds(w, k, state)
                np.testing.assert_array_equal(got, _ref_tau_bits(w, k), err_msg=f"m={m} k={k}")


def test_thresholds_follow_a_drifting_row_exactly() -> None:
    """A long run of small steps (the case the hints are for), and a jump far outside the band."""
    rng = np.random.default_rng(7)
    w = (rng.random((40, 3072), dtype=np.float32) - 0.5) * 0.05
    state: dict = {}
    for step in range(60):
        k = int((0.5 + 0.4 * np.sin(step / 7)) * 3071)  # a ramp-like moving k too
        np.testing.assert_array_equal(kernels.row_thresholds(w, k, state), _ref_tau_bits(w, k))
        w += (rng.standard_normal(w.shape) * 1e-4).astype(np.float32)
        if step == 30:
            w *= 3.0
    with pytest.raises(ValueError, match="k must be in"):
        kernels.row_thresholds(w, 3072)


def _ref_keep(w, tau_bits, draws, threshold, alpha, rows=None):
    u = _UINT[w.dtype]
    mag = w.view(u) & u(np.iinfo(u).max >> 1)
    targeted = mag < tau_bits[:, None] if rows is None else np.broadcast_to(rows[:, None], w.shape)
    if draws.dtype.kind == "f":
        drawn = draws < draws.dtype.type(alpha)
    else:
        drawn = draws.astype(np.uint64) < np.uint64(threshold)
    return ~(targeted & drawn)


def _same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "draw,threshold,alpha",
    [
        ("u8", 128, 0.5),
        ("u8", 0, 0.0),
        ("u8", 256, 1.0),
        ("u16", 16384, 0.25),
        ("u32", 2**32, 1 - 2**-40),  # beyond uint32: every draw counts as drawn
        ("u32", 1_234_567_891, 0.2874),
        ("float", 0, 0.3),
    ],
)
@pytest.mark.parametrize("unit", [False, True])
def test_keep_mask_masked_weight_and_factor(dtype, draw, threshold, alpha, unit) -> None:
    """keep = ¬(targeted ∧ drawn), W ⊙ keep and the 0/1 factor, bit for bit (signed zeros of
    dropped negative weights and NaN included) against numpy from a sorted reference τ."""
    rng = np.random.default_rng(3)
    w = _rows("normal", 9, 300, dtype, rng)
    w[0, :5] = [-0.0, 0.0, np.nan, -np.inf, 1e-30]
    if draw == "float":
        draws = rng.random(w.shape).astype(dtype)
    else:
        u = {"u8": np.uint8, "u16": np.uint16, "u32": np.uint32}[draw]
        draws = rng.integers(0, np.iinfo(u).max, w.shape, dtype=u, endpoint=True)
    k = 150
    rows = (rng.random(9) < 0.5) if unit else None
    keep = np.empty(w.shape, np.uint8)
    masked = torch.empty(w.shape, dtype=torch.from_numpy(w).dtype)
    factor = np.empty_like(w)
    kernels.targeted_keep(
        w, k=k, draws=draws, threshold=threshold, alpha=alpha, targeted_rows=rows,
        state={}, keep=keep, masked=masked, factor=factor,
    )  # fmt: skip
    ref = _ref_keep(w, _ref_tau_bits(w, k), draws, threshold, alpha, rows)
    np.testing.assert_array_equal(keep, ref.astype(np.uint8))
    assert _same_bits(factor, ref.astype(dtype))
    expected = torch.from_numpy(w) * torch.from_numpy(ref.astype(dtype))  # torch's W ⊙ M
    assert _same_bits(masked.numpy(), expected.numpy())
    if 0 < alpha < 1:
        assert 0 < keep.sum() < keep.size
    # each output alone gives the same numbers (the kernel's separate loops)
    alone = np.empty_like(w)
    kernels.targeted_keep(
        w, k=k, draws=draws, threshold=threshold, alpha=alpha, targeted_rows=rows, factor=alone
    )
    assert _same_bits(alone, factor)


def test_mask_gradient_is_the_product_by_the_mask() -> None:
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        g = torch.randn(70, 33, generator=gen, dtype=dtype)
        g[0, 0], g[0, 1] = -0.0, float("nan")
        keep = (torch.rand(70, 33, generator=gen) < 0.6).to(torch.uint8)
        expected = g * keep.to(dtype)
        kernels.mask_gradient_(g, keep)
        assert _same_bits(g.numpy(), expected.numpy())
    with pytest.raises(ValueError, match="keep must be"):
        kernels.mask_gradient_(torch.zeros(3, 3), torch.ones(3, 3, dtype=torch.bool))


def test_bad_arguments_are_refused_with_a_clear_error() -> None:
    w = np.zeros((4, 8), np.float32)
    d = np.zeros((4, 8), np.uint8)
    with pytest.raises(ValueError, match="draws must be"):
        kernels.targeted_keep(w, k=1, draws=d[:, :4], threshold=1)
    with pytest.raises(ValueError, match="uniform draws"):
        kernels.targeted_keep(w, k=1, draws=np.zeros((4, 8)), alpha=0.5)
    with pytest.raises(ValueError, match="keep must be"):
        kernels.targeted_keep(w, k=1, draws=d, threshold=1, keep=np.zeros((4, 8), bool))
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.row_thresholds(np.zeros((8, 4), np.float32).T, 1)


CONFIGS = {
    "weight-bits": RegulariserConfig("targeted-weight", gamma=0.5, alpha=0.5, draws="bits"),
    "unit-bits": RegulariserConfig("targeted-unit", gamma=0.6, alpha=0.3, draws="bits"),
    "weight-uniform": RegulariserConfig("targeted-weight", gamma=0.75, alpha=0.5),
    "unit-uniform": RegulariserConfig("targeted-unit", gamma=0.5, alpha=0.75),
    "weight-ramp": RegulariserConfig("targeted-weight", gamma=0.9, alpha=1.0, ramp_steps=6),
    "weight-one-layer": RegulariserConfig(
        "targeted-weight", gamma=0.5, alpha=0.5, layers=[1], draws="bits"
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_masks_equal_step_factors(name: str, dtype: torch.dtype) -> None:
    """The fused masks of a step are step_factors' factors, W ⊙ M is torch's product, and the
    generator is left where step_factors leaves it (same draws), step after step."""
    gen = torch.Generator().manual_seed(5)
    weights = [torch.randn(s, generator=gen, dtype=dtype) for s in ((40, 300), (30, 40), (7, 30))]
    a = Regulariser(CONFIGS[name], 3, torch.Generator().manual_seed(11))
    b = Regulariser(CONFIGS[name], 3, torch.Generator().manual_seed(11))
    masked: list[torch.Tensor | None] = [None, None, None]
    for step in range(8):
        fa, ia = a.step_factors(weights, 4, step)
        fb, ib, products = b.step_masks(weights, 4, step, masked)
        for l in range(3):
            assert (fa[l] is None) == (fb[l] is None) and ia[l] is None and ib[l] is None
            if fa[l] is None:
                continue
            assert fb[l].dtype == torch.uint8 and products[l] is masked[l]
            assert torch.equal(fb[l].to(dtype), fa[l])
            assert _same_bits(products[l].numpy(), (weights[l] * fa[l]).numpy())
        assert torch.equal(a.generator.get_state(), b.generator.get_state())
        weights = [w + 1e-3 * torch.randn(w.shape, generator=gen, dtype=dtype) for w in weights]


def test_dense_step_with_fused_masks_equals_float_factors() -> None:
    """DenseStep given W ⊙ M and a uint8 M: the same loss, logits and gradients bit for bit as
    with the float factor."""
    torch.manual_seed(0)
    from td_analysis.nets.models import DenseNet

    model = DenseNet(50, (40, 30), 5, True)
    x, y = torch.randn(16, 50), torch.randint(0, 5, (16,))
    reg = Regulariser(CONFIGS["weight-bits"], 3, torch.Generator().manual_seed(1))
    weights = [layer.weight for layer in model.layers]
    fused = reg.step_masks(weights, 16, 0, [None, None, None])
    reg.generator.manual_seed(1)
    reg2 = Regulariser(CONFIGS["weight-bits"], 3, torch.Generator().manual_seed(1))
    floats = reg2.step_factors(weights, 16, 0)
    step = DenseStep(list(model.layers), 16)
    loss_a, logits_a = (t.clone() for t in step(x, y, *fused))
    grads_a = [p.grad.clone() for p in model.parameters()]
    loss_b, logits_b = step(x, y, *floats)
    assert torch.equal(loss_a, loss_b) and torch.equal(logits_a, logits_b)
    for ga, p in zip(grads_a, model.parameters(), strict=True):
        assert _same_bits(ga.numpy(), p.grad.numpy())


@pytest.mark.parametrize(
    "reg",
    [
        RegulariserConfig("targeted-weight", gamma=0.75, alpha=0.5),
        RegulariserConfig("targeted-unit", gamma=0.5, alpha=0.5, draws="bits"),
        RegulariserConfig("targeted-weight", gamma=0.5, alpha=0.5, draws="bits", ramp_steps=20),
    ],
    ids=["weight-uniform", "unit-bits", "weight-ramp"],
)
def test_training_is_bit_identical_with_and_without_kernels(monkeypatch, reg) -> None:
    """A short training run with the kernels and with the numpy path: identical weights."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 300, generator=gen)
    y = torch.randint(0, 10, (256,), generator=gen)
    cfg = TrainConfig(
        in_features=300, hidden=(64, 32), num_classes=10, regulariser=reg, optimizer="adam",
        lr=1e-3, batch_size=32, epochs=2, seed=3, eval_split="",
    )  # fmt: skip
    fused = train(cfg, train_data=(x, y), progress=False).model.state_dict()
    monkeypatch.setenv(kernels.ENV_SWITCH, "0")
    assert not kernels.available()
    plain = train(cfg, train_data=(x, y), progress=False).model.state_dict()
    for name, value in plain.items():
        assert _same_bits(fused[name].numpy(), value.numpy()), name


def test_build_is_cached_and_a_missing_compiler_falls_back(monkeypatch, tmp_path) -> None:
    """Compiled once into the cache folder (atomically: no temporary left), reused by a fresh
    load; with no compiler, available() is False and nothing else changes."""
    monkeypatch.setenv("TD_ANALYSIS_KERNEL_CACHE", str(tmp_path))
    kernels._library.cache_clear()
    try:
        assert kernels.available()
        built = sorted(p.name for p in tmp_path.iterdir())
        assert len(built) == 1 and built[0].startswith("td_kernels_")
        mtime = (tmp_path / built[0]).stat().st_mtime_ns
        kernels._library.cache_clear()
        assert kernels.available()
        assert (tmp_path / built[0]).stat().st_mtime_ns == mtime
        kernels._library.cache_clear()
        monkeypatch.setattr(kernels, "_compiler", lambda: None)
        assert not kernels.available()
        kernels._library.cache_clear()
        monkeypatch.setattr(kernels, "_compiler", lambda: "false")  # a compiler that fails
        monkeypatch.setenv("TD_ANALYSIS_KERNEL_CACHE", str(tmp_path / "other"))
        with pytest.warns(RuntimeWarning, match="numpy path"):
            assert not kernels.available()
        assert not any((tmp_path / "other").iterdir())
    finally:
        kernels._library.cache_clear()


@pytest.mark.parametrize("seed", [0, 1, 2**40 + 7])
def test_replayed_draws_are_torchs_own(seed: int, monkeypatch) -> None:
    """random_words_ / rand_ against torch's random_ / rand on a clone of the generator: the
    same numbers and the same state after, from odd offsets and across the state's
    regeneration every 624 words, for many lengths."""
    assert kernels._replay_verified()
    monkeypatch.setattr(kernels, "_REPLAY_MIN", 1)  # replay every length (default: ≥ 2048)
    ours, theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed % 2**32)
    for n in [1, 2, 3, 311, 312, 313, 623, 624, 625, 1248, 5000, 30_720]:
        for kind in ("words", "f32", "f64"):
            if rng.random() < 0.5:  # an odd number of 32-bit outputs between calls
                torch.rand(1, generator=ours), torch.rand(1, generator=theirs)
            if kind == "words":
                a = kernels.random_words_(torch.empty(n, dtype=torch.int64), ours)
                b = torch.empty(n, dtype=torch.int64).random_(-(2**63), None, generator=theirs)
            else:
                dtype = torch.float32 if kind == "f32" else torch.float64
                a = kernels.rand_(torch.empty(n, dtype=dtype), ours)
                b = torch.rand(n, generator=theirs, dtype=dtype)
            assert torch.equal(a, b), (n, kind)
            assert torch.equal(ours.get_state(), theirs.get_state()), (n, kind)


def test_draws_fall_back_to_torch_when_the_replay_is_not_verified(monkeypatch) -> None:
    """Without a verified replay (another torch, another generator layout) torch draws."""

    def refuse(*args, **kwargs):
        raise AssertionError("the replay must not run")

    monkeypatch.setattr(kernels, "_replay_verified", lambda: False)
    monkeypatch.setattr(kernels, "_replay", refuse)
    g, h = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = kernels.rand_(torch.empty(100), g)
    assert torch.equal(a, torch.rand(100, generator=h))
    a = kernels.random_words_(torch.empty(7, dtype=torch.int64), g)
    assert torch.equal(a, torch.empty(7, dtype=torch.int64).random_(-(2**63), None, generator=h))
    assert kernels.rand_(torch.empty(3), None).shape == (3,)  # no generator: torch's default
