"""HessianOperator and the function API on the shared zoo, against float64 torch.func references.

Every method of the operator and every curvature function runs on every model of
``tests/zoo.py`` (dense ReLU nets, general classifiers and the near misses of the closed form)
and is compared with ``torch.func`` on a float64 copy; the model must be bit-identical after each
call; bad input must fail with a clear one-line error before any work.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from zoo import (
    CASE_IDS,
    CASES,
    F64,
    TOL,
    ZOO,
    ZOO_IDS,
    LayersNet,
    Reference,
    assert_unchanged,
    rel,
    state,
)

from td_analysis import curvature
from td_analysis.curvature import HessianOperator
from td_analysis.nets.models import DenseNet


@pytest.fixture(scope="module")
def zoo_refs():
    """(model, x, y, reference Hessian, reference gradient, reference loss) per zoo case."""
    out = {}
    for case in ZOO:
        model, x, y = case.build()
        ref = Reference(model, x, y, case.params, case.reduction)
        out[case.name] = (ref.hessian(), ref.grad(), ref.loss().detach())
    return out


# --------------------------------------------------------------------------- the zoo
@pytest.mark.parametrize("case", ZOO, ids=ZOO_IDS)
def test_operator_on_zoo(case, zoo_refs):
    model, x, y = case.build()
    H_ref, g_ref, l_ref = zoo_refs[case.name]
    before = state(model)
    P = H_ref.shape[0]
    H = HessianOperator(model, (x, y), chunk_size=5, **case.kwargs())
    assert H.backend == case.backend, H.why_not_dense
    assert H.shape == (P, P) and H.dtype == F64 and H.num_params == P
    gen = torch.Generator().manual_seed(1)
    v, V = torch.randn(P, dtype=F64, generator=gen), torch.randn(P, 5, dtype=F64, generator=gen)
    hv, HV = H @ v, H @ V
    assert hv.shape == (P,) and HV.shape == (P, 5)
    assert rel(hv, H_ref @ v) < TOL and rel(HV, H_ref @ V) < TOL
    assert rel(H.gradient(), g_ref) < TOL
    assert abs(float(H.loss()) - float(l_ref)) < TOL * abs(float(l_ref))
    D = H.dense()
    assert rel(D, H_ref) < TOL and torch.equal(D, D.T)
    assert rel(H.diagonal(method="columns"), H_ref.diagonal()) < TOL
    if case.backend == "dense":
        assert rel(H.diagonal(), H_ref.diagonal()) < TOL
    else:
        with pytest.raises(ValueError, match="hutchinson_diagonal"):
            H.diagonal()
    U = torch.randn(P, 3, dtype=F64, generator=gen)
    R = H.projected(U)
    assert rel(R, U.T @ H_ref @ U) < TOL and torch.equal(R, R.T)
    A = H.to_scipy()
    assert A.shape == (P, P) and A.dtype == np.float64
    out = A.matvec(v.numpy())
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    assert rel(torch.from_numpy(out), H_ref @ v) < TOL
    assert rel(torch.from_numpy(A.matmat(V.numpy())), H_ref @ V) < TOL
    assert_unchanged(model, before)


@pytest.mark.parametrize("case", ZOO, ids=ZOO_IDS)
def test_functions_on_zoo(case, zoo_refs):
    """The function API (thin calls on the operator) on every zoo model; the model untouched."""
    model, x, y = case.build()
    H_ref, g_ref, _ = zoo_refs[case.name]
    before = state(model)
    P = H_ref.shape[0]
    V = torch.randn(P, 3, dtype=F64)
    kw = case.kwargs()
    assert rel(curvature.hvp(model, x, y, V, **kw), H_ref @ V) < TOL
    assert rel(curvature.hvp(model, x, y, V, method="autograd", **kw), H_ref @ V) < TOL
    assert rel(curvature.hessian(model, x, y, **kw), H_ref) < TOL
    assert rel(curvature.hessian_diagonal(model, x, y, **kw), H_ref.diagonal()) < TOL
    assert rel(curvature.gradient(model, x, y, **kw), g_ref) < TOL
    assert rel(curvature.projected_hessian(model, x, y, V, **kw), V.T @ H_ref @ V) < TOL
    est = curvature.hessian_diagonal(model, x, y, method="hutchinson", num_samples=4, **kw)
    assert est.shape == (P,) and torch.isfinite(est).all()
    assert curvature.dense_applicable(model, x) == (case.backend == "dense")
    assert_unchanged(model, before)


def test_near_miss_would_be_wrong_with_the_closed_form():
    """The near misses are discriminative: the closed form of the same layers is off."""
    for act in (F.relu6, None):
        model = LayersNet(act).to(F64)
        x = torch.cat([0.05 * torch.rand(12, 6), 40 * torch.rand(4, 6)]).to(F64)
        y = torch.randint(0, 3, (16,))
        relu_twin = DenseNet(6, (5,), 3).to(F64)
        relu_twin.load_state_dict(model.state_dict())
        H_true = Reference(model, x, y).hessian()
        H_relu = Reference(relu_twin, x, y).hessian()
        assert rel(H_relu, H_true) > 1e-2  # a closed-form answer would be visibly wrong
        got = HessianOperator(model, (x, y)).dense()
        assert rel(got, H_true) < TOL
        with pytest.raises(ValueError, match="DenseNet-like"):
            HessianOperator(model, (x, y), backend="dense")


# --------------------------------------------------------------------------- dense cases
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_operator_on_dense_cases(case):
    model, x, y = case.build()
    ref = Reference(model, x, y, case.params, case.reduction)
    H_ref = ref.hessian()
    P = H_ref.shape[0]
    V = torch.randn(P, 4, dtype=F64)
    for backend in ("dense", "autograd"):
        H = HessianOperator(model, (x, y), backend=backend, chunk_size=6, **case.kwargs())
        assert H.backend == backend
        assert rel(H @ V, H_ref @ V) < TOL
        assert rel(H.dense(), H_ref) < TOL
        assert rel(H.gradient(), ref.grad()) < TOL
    H = HessianOperator(model, (x, y), **case.kwargs())
    assert H.backend == "dense"
    assert rel(H.diagonal(), H_ref.diagonal()) < TOL
    names = [s.name for s in H.specs]
    assert H.param_names == names
    parts = H.unflatten(H.theta)
    for n, p in model.named_parameters():
        if n in parts:
            assert torch.equal(parts[n], p.detach())
    assert sum(sl.stop - sl.start for sl in H.offsets.values()) == P


def test_float32_model_in_float64_and_float32():
    case = CASES[3]
    model, x, y = case.build(dtype=torch.float32)
    H_ref = Reference(model, x, y, case.params, case.reduction).hessian()
    v = torch.randn(H_ref.shape[0], dtype=F64)
    H64 = HessianOperator(model, (x, y), dtype=F64, **case.kwargs())
    assert H64.dtype == F64 and rel(H64 @ v, H_ref @ v) < TOL
    H32 = HessianOperator(model, (x, y), **case.kwargs())
    out = H32 @ v  # cast to the analysis dtype
    assert out.dtype == torch.float32 and rel(out.double(), H_ref @ v) < 1e-5


# --------------------------------------------------------------------------- data forms
def test_batches_and_dataloader_equal_the_pair():
    case = CASES[5]
    model, x, y = case.build()
    H_ref = Reference(model, x, y, case.params, case.reduction).hessian()
    V = torch.randn(H_ref.shape[0], 3, dtype=F64)
    batches = [(x[:7], y[:7]), (x[7:], y[7:])]
    loader = DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True)
    for data in (batches, loader):
        for backend in ("dense", "autograd"):
            H = HessianOperator(model, data, backend=backend, chunk_size=3, **case.kwargs())
            assert H.num_examples == x.shape[0]
            assert rel(H @ V, H_ref @ V) < TOL
            assert rel(H.dense(), H_ref) < TOL
    with pytest.raises(TypeError, match="re-iterable"):
        HessianOperator(model, iter(batches))


def test_data_that_changes_between_passes_is_refused():
    model, x, y = CASES[0].build()

    class Shrinking:
        def __init__(self):
            self.calls = 0

        def __iter__(self):
            self.calls += 1
            n = 16 if self.calls == 1 else 8
            return iter([(x[:n], y[:n])])

    H = HessianOperator(model, Shrinking())
    with pytest.raises(RuntimeError, match="must not change"):
        H @ torch.zeros(H.num_params, dtype=F64)


# --------------------------------------------------------------------------- labels
@pytest.mark.parametrize("backend", ["dense", "autograd"])
def test_bad_labels_name_label_and_position(backend):
    model, x, y = CASES[0].build()  # K = 3
    for bad in (-1, 3, 7):
        yb = y.clone()
        yb[5] = bad
        with pytest.raises(
            ValueError, match=rf"targets\[5\] = {bad} is not a class label in \[0, 3\)"
        ):
            HessianOperator(model, (x, yb), backend=backend)
    yb = y.clone()
    yb[9] = 3
    with pytest.raises(ValueError, match=r"targets\[9\] = 3"):
        HessianOperator(model, [(x[:4], y[:4]), (x[4:], yb[4:])], backend=backend)
    with pytest.raises(ValueError, match=r"targets\[5\] = -100"):
        yb = y.clone()
        yb[5] = -100
        HessianOperator(model, (x, yb), backend=backend, ignore_index=None)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("backend", ["dense", "autograd"])
def test_ignore_index_has_pytorch_semantics(backend, reduction):
    model, x, y = CASES[0].build()
    y = y.clone()
    y[[0, 4, 11]] = -100
    ref = Reference(model, x, y, reduction=reduction)  # F.cross_entropy(ignore_index=-100)
    H_ref = ref.hessian()
    H = HessianOperator(model, (x, y), backend=backend, reduction=reduction, chunk_size=5)
    assert H.num_examples == x.shape[0] - 3
    V = torch.randn(H.num_params, 2, dtype=F64)
    assert rel(H @ V, H_ref @ V) < TOL
    assert rel(H.gradient(), ref.grad()) < TOL
    assert abs(float(H.loss() - ref.loss())) < 1e-12
    assert rel(H.dense(), H_ref) < TOL
    assert rel(H.diagonal(method="columns"), H_ref.diagonal()) < TOL
    if backend == "dense":
        assert rel(H.diagonal(), H_ref.diagonal()) < TOL
    custom = y.clone()
    custom[custom == -100] = 2  # a class used as ignore_index
    ref2 = Reference(model, x, custom, reduction=reduction, ignore_index=2)
    H2 = HessianOperator(model, (x, custom), backend=backend, reduction=reduction, ignore_index=2)
    assert rel(H2.gradient(), ref2.grad()) < TOL
    with pytest.raises(ValueError, match="every label is ignore_index"):
        HessianOperator(model, (x, torch.full_like(y, -100)), backend=backend)


def test_targets_and_inputs_errors():
    model, x, y = CASES[0].build()
    with pytest.raises(ValueError, match="soft / probability targets"):
        HessianOperator(model, (x, torch.softmax(torch.randn(16, 3), 1)))
    with pytest.raises(ValueError, match="integer class labels"):
        HessianOperator(model, (x, y.double()))
    with pytest.raises(ValueError, match="same number of examples"):
        HessianOperator(model, (x, y[:-1]))
    with pytest.raises(TypeError, match="dict inputs"):
        HessianOperator(model, ({"x": x}, y))
    with pytest.raises(TypeError, match="not an \\(inputs, targets\\) pair"):
        HessianOperator(model, [x, y, y])
    with pytest.raises(ValueError, match="reduction"):
        HessianOperator(model, (x, y), reduction="max")
    with pytest.raises(ValueError, match="backend"):
        HessianOperator(model, (x, y), backend="nope")
    with pytest.raises(ValueError, match="chunk_size"):
        HessianOperator(model, (x, y), chunk_size=0)
    with pytest.raises(KeyError, match="unknown parameter"):
        HessianOperator(model, (x, y), params="nope")
    H = HessianOperator(model, (x, y))
    with pytest.raises(ValueError, match="vectors must have shape"):
        H @ torch.zeros(3, dtype=F64)
    with pytest.raises(ValueError, match="U must have shape"):
        H.projected(torch.zeros(3, 2, dtype=F64))
    with pytest.raises(ValueError, match="method"):
        H.diagonal(method="nope")
    with pytest.raises(ValueError, match="N × K logits"):
        HessianOperator(nn.Sequential(nn.Linear(7, 3), nn.Flatten(0)).to(F64), (x, y))


# --------------------------------------------------------------------------- model state
def test_train_mode_batchnorm_and_dropout_are_refused_before_any_work():
    x, y = torch.randn(8, 6, dtype=F64), torch.randint(0, 3, (8,))
    for layer, word in ((nn.BatchNorm1d(4), "BatchNorm1d"), (nn.Dropout(0.3), "Dropout")):
        model = nn.Sequential(nn.Linear(6, 4), layer, nn.ReLU(), nn.Linear(4, 3)).to(F64)
        model.train()
        before = state(model)
        with pytest.raises(ValueError, match=rf"{word}.*model\.eval\(\)"):
            HessianOperator(model, (x, y))
        with pytest.raises(ValueError, match="model.eval"):
            curvature.hvp(model, x, y, torch.zeros(sum(p.numel() for p in model.parameters())))
        with pytest.raises(ValueError, match="model.eval"):
            curvature.gradient(model, x, y)
        assert_unchanged(model, before)
    no_stats = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4, track_running_stats=False))
    with pytest.raises(ValueError, match="model.eval"):
        HessianOperator(no_stats.to(F64).train(), (x, y))
    # Dropout(p=0) in train mode is the identity: allowed
    ok = nn.Sequential(nn.Linear(6, 4), nn.Dropout(0.0), nn.Linear(4, 3)).to(F64).train()
    H = HessianOperator(ok, (x, y))
    assert rel(H.dense(), Reference(ok, x, y).hessian()) < TOL


def test_functional_dropout_gets_a_hint():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            return F.dropout(self.fc(x), 0.5, training=True)

    x, y = torch.randn(8, 6, dtype=F64), torch.randint(0, 3, (8,))
    with pytest.raises(ValueError, match="model.eval"):
        HessianOperator(Functional().to(F64), (x, y))


def test_params_none_means_trainable():
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)).to(F64)
    model[2].bias.requires_grad_(False)
    x, y = torch.randn(9, 6, dtype=F64), torch.randint(0, 3, (9,))
    H = HessianOperator(model, (x, y))
    assert H.param_names == ["0.weight", "0.bias", "2.weight"]
    everything = HessianOperator(model, (x, y), params=["0.weight", "0.bias", "2.weight", "2.bias"])
    assert everything.num_params == H.num_params + 3
    ref = Reference(model, x, y, params=["0.weight", "0.bias", "2.weight", "2.bias"])
    assert rel(everything.dense(), ref.hessian()) < TOL
    frozen_all = nn.Linear(6, 3).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        HessianOperator(frozen_all, (x.float(), y))


def test_inputs_are_not_modified_and_buffers_are_copies():
    model, x, y = ZOO[ZOO_IDS.index("batchnorm-eval")].build()
    x0, y0 = x.clone(), y.clone()
    before = state(model)
    H = HessianOperator(model, (x, y))
    H @ torch.randn(H.num_params, dtype=F64)
    H.dense()
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert_unchanged(model, before)
    with torch.no_grad():  # the operator keeps its own copies: later edits do not leak in
        model[1].running_mean.add_(1.0)
    assert rel(H.dense(), Reference(model, x, y).hessian()) > 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_float64_reference():
    for case in (ZOO[0], ZOO[ZOO_IDS.index("cnn")]):
        model, x, y = case.build()
        H_ref = Reference(model, x, y, case.params, case.reduction).hessian()
        V = torch.randn(H_ref.shape[0], 3, dtype=F64)
        H = HessianOperator(model.cuda(), (x, y), device="cuda", **case.kwargs())
        assert H.device.type == "cuda" and H.backend == case.backend
        assert rel((H @ V.cuda()).cpu(), H_ref @ V) < TOL
        assert rel(H.dense().cpu(), H_ref) < TOL
