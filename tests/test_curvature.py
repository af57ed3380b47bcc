"""td_analysis.curvature against independent float64 references built here with torch.func.

The reference Hessian is ``torch.func.hessian`` of the cross-entropy loss written as a function of
the flat vector of the selected parameters (``tests/zoo.py``, not the package's code).  The shared
dense cases (``zoo.CASES``) cover 0–3 hidden layers, with and without biases, both reductions and
parameter subsets; the general models are tested in ``test_operator.py``.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from zoo import CASE_IDS, CASES, F64, TOL, Case, Reference, rel, selected_names

from td_analysis import curvature
from td_analysis.curvature import dense as dense_mod
from td_analysis.curvature import memory as memory_mod
from td_analysis.training.tasks import get_task


@pytest.fixture(scope="module")
def references():
    """Reference Hessians, computed once per case."""
    out = {}
    for case in CASES:
        model, x, y = case.build()
        out[case.name] = Reference(model, x, y, case.params, case.reduction).hessian()
    return out


def tanh_net(dtype=F64) -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3)).to(dtype)


class TanhLayersNet(nn.Module):
    """Structurally DenseNet-like (``layers`` of nn.Linear) but with tanh: not the closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(7, 5), nn.Linear(5, 3)])

    def forward(self, x: Tensor) -> Tensor:
        return self.layers[1](torch.tanh(self.layers[0](x)))


# --------------------------------------------------------------------------- full Hessian
@pytest.mark.parametrize("method", ["dense", "autograd"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_hessian_matches_torch_func(case, method, references):
    model, x, y = case.build()
    H = curvature.hessian(model, x, y, method=method, chunk_size=5, **case.kwargs())
    H_ref = references[case.name]
    assert H.shape == H_ref.shape and H.dtype == F64
    assert rel(H, H_ref) < TOL
    assert torch.equal(H, H.T)


@pytest.mark.parametrize("case", CASES[:4], ids=CASE_IDS[:4])
def test_hessian_default_chunking_and_auto(case, references):
    model, x, y = case.build()
    H = curvature.hessian(model, x, y, **case.kwargs())
    assert rel(H, references[case.name]) < TOL


def test_residual_term_is_exercised():
    """The references are discriminative: H differs clearly from its Gauss–Newton part."""
    for case in (CASES[0], CASES[3], CASES[5]):
        model, x, y = case.build()
        ref = Reference(model, x, y, case.params, case.reduction)
        H, G = ref.hessian(), ref.ggn()
        assert rel(G, H) > 1e-2
        H_dense = curvature.hessian(model, x, y, method="dense", **case.kwargs())
        assert rel(H_dense, H) < TOL


def test_dense_tiling_paths(monkeypatch, references):
    """Tiny tiles exercise the unit-block triangles, the diagonal tiling and the mirrors."""
    monkeypatch.setattr(dense_mod, "DIAG_TILE", 2)
    monkeypatch.setattr(dense_mod, "MIRROR_TILE", 4)
    monkeypatch.setattr(dense_mod, "SMALL_TILE", 2)
    for case in CASES[:6]:
        model, x, y = case.build()
        P = references[case.name].shape[0]
        out = torch.full((P, P), float("nan"), dtype=F64)  # every entry must be written
        H = curvature.hessian(model, x, y, method="dense", chunk_size=7, out=out, **case.kwargs())
        assert rel(H, references[case.name]) < TOL
        assert torch.equal(H, H.T)


def test_out_is_filled_in_place(references):
    case = CASES[3]
    model, x, y = case.build()
    P = references[case.name].shape[0]
    out = torch.full((P, P), float("nan"), dtype=F64)
    H = curvature.hessian(model, x, y, method="dense", out=out, **case.kwargs())
    assert H.data_ptr() == out.data_ptr()
    assert rel(out, references[case.name]) < TOL
    with pytest.raises(ValueError, match="out must be"):
        curvature.hessian(model, x, y, out=torch.empty(P, P + 1, dtype=F64), **case.kwargs())


def test_prefaulted_output_allocation(monkeypatch, references):
    """Large outputs come from a pre-populated mapping: same numbers, an ordinary tensor."""
    monkeypatch.setattr(memory_mod, "_POPULATE_MIN_BYTES", 0)
    case = CASES[3]
    model, x, y = case.build()
    H = curvature.hessian(model, x, y, method="dense", **case.kwargs())
    assert rel(H, references[case.name]) < TOL and H.is_contiguous()
    H.add_(1.0)  # writable
    assert torch.linalg.eigvalsh(H).shape == (H.shape[0],)


def test_mm_writes_straight_into_strided_view():
    """The dense path relies on torch.mm(out=view) writing in place (no proxy, no copy)."""
    H = torch.zeros(64, 80)
    features, b = torch.randn(12, 10), torch.randn(12, 40)  # N × S and N × cols
    a = features.mT  # transposed left operand, as in the code
    view = H[8:18, 30:70]
    from torch.profiler import profile

    with profile() as prof:
        torch.mm(a, b, out=view)
        view.addmm_(a, b)
    names = {e.key for e in prof.key_averages()}
    assert not names & {"aten::copy_", "aten::clone", "aten::contiguous"}, names
    torch.testing.assert_close(view, 2 * (a @ b), rtol=1e-5, atol=1e-5)
    assert H[:8].abs().sum() == 0 and H[:, :30].abs().sum() == 0


def test_exactly_inactive_relus():
    """Pre-activations exactly 0 (zero inputs, zero bias) count as inactive, as in torch."""
    for bias in (True, False):
        model, x, y = Case("z", 7, (5, 4), 3, 16, bias, "mean").build()
        x[::3] = 0.0  # zero rows
        if bias:
            with torch.no_grad():
                model.layers[0].bias[:3] = 0.0
        a0 = model.layers[0](x)
        assert (a0 == 0).sum() >= 10  # the kink is really hit
        H_ref = Reference(model, x, y).hessian()
        for method in ("dense", "autograd"):
            assert rel(curvature.hessian(model, x, y, method=method), H_ref) < TOL
        diag = curvature.hessian_diagonal(model, x, y, method="dense")
        assert rel(diag, H_ref.diagonal()) < TOL
        V = torch.randn(H_ref.shape[0], 3, dtype=F64)
        assert rel(curvature.hvp(model, x, y, V, method="dense"), H_ref @ V) < TOL


def test_float32_model_analysed_in_float64():
    case = CASES[3]
    model32, x32, y = case.build(dtype=torch.float32)
    H_ref = Reference(model32, x32, y, case.params, case.reduction).hessian()
    for method in ("dense", "autograd"):
        H = curvature.hessian(model32, x32, y, method=method, dtype=F64, **case.kwargs())
        assert H.dtype == F64
        assert rel(H, H_ref) < TOL
    assert all(p.dtype == torch.float32 for p in model32.parameters())
    H32 = curvature.hessian(model32, x32, y, method="dense", **case.kwargs())
    assert H32.dtype == torch.float32 and rel(H32.double(), H_ref) < 1e-5


def test_auto_picks_dense_for_densenet_and_autograd_otherwise(monkeypatch):
    calls = []
    dense_into = dense_mod.DenseBackend.hessian_into

    def spy_dense(self, *args, **kwargs):
        calls.append("dense")
        return dense_into(self, *args, **kwargs)

    monkeypatch.setattr(dense_mod.DenseBackend, "hessian_into", spy_dense)

    model, x, y = CASES[0].build()
    H = curvature.hessian(model, x, y)
    assert calls == ["dense"] and rel(H, Reference(model, x, y).hessian()) < TOL
    assert curvature.dense_applicable(model, x)
    assert curvature.HessianOperator(model, (x, y)).backend == "dense"

    for other in (tanh_net(), TanhLayersNet().to(F64)):
        calls.clear()
        H = curvature.hessian(other, x, y)
        assert calls == []
        assert curvature.HessianOperator(other, (x, y)).backend == "autograd"
        assert rel(H, Reference(other, x, y).hessian()) < TOL
        assert not curvature.dense_applicable(other, x)
        with pytest.raises(ValueError, match="DenseNet-like"):
            curvature.hessian(other, x, y, method="dense")
        with pytest.raises(ValueError, match="DenseNet-like"):
            curvature.hessian_diagonal(other, x, y, method="dense")


def test_unknown_method_and_reduction():
    model, x, y = CASES[0].build()
    with pytest.raises(ValueError, match="method"):
        curvature.hessian(model, x, y, method="nope")
    with pytest.raises(ValueError, match="reduction"):
        curvature.hessian(model, x, y, reduction="max")
    with pytest.raises(ValueError, match="vectors"):
        curvature.hvp(model, x, y, torch.zeros(3, dtype=F64))


# --------------------------------------------------------------------------- memory check
def test_memory_check_refuses_with_sizes(monkeypatch):
    monkeypatch.setattr(memory_mod, "available_memory_bytes", lambda device="cpu": 2 * 10**9)
    toy = get_task("toy").network()  # 3072 → 10 → 10: P = 30,840, 3.8 GB in float32
    x, y = torch.randn(4, toy.layers[0].in_features), torch.randint(0, 10, (4,))
    with pytest.raises(curvature.HessianMemoryError) as info:
        curvature.hessian(toy, x, y)
    msg = str(info.value)
    assert isinstance(info.value, MemoryError)
    for part in ("30,840", "3.80 GB", "2.00 GB", "hvp", "projected_hessian"):
        assert part in msg, msg
    with pytest.raises(curvature.HessianMemoryError, match="7.61 GB"):
        curvature.hessian(toy, x, y, dtype=F64)
    # a small selection fits
    H = curvature.hessian(toy, x, y, params="layers.1.weight")
    assert H.shape == (100, 100)


def test_memory_check_unknown_memory_does_not_refuse(monkeypatch):
    monkeypatch.setattr(memory_mod, "available_memory_bytes", lambda device="cpu": None)
    model, x, y = CASES[0].build()
    assert curvature.hessian(model, x, y).shape[0] == sum(p.numel() for p in model.parameters())


def test_available_memory_is_plausible():
    avail = curvature.available_memory_bytes("cpu")
    assert avail is None or avail > 10**7


# --------------------------------------------------------------------------- products
@pytest.mark.parametrize("method", ["dense", "autograd"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_hvp_single_and_batched(case, method, references):
    model, x, y = case.build()
    H_ref = references[case.name]
    P = H_ref.shape[0]
    v = torch.randn(P, dtype=F64)
    V = torch.randn(P, 6, dtype=F64)
    hv = curvature.hvp(model, x, y, v, chunk_size=6, method=method, **case.kwargs())
    HV = curvature.hvp(model, x, y, V, method=method, **case.kwargs())
    assert hv.shape == (P,) and HV.shape == (P, 6)
    assert rel(hv, H_ref @ v) < TOL
    assert rel(HV, H_ref @ V) < TOL


def test_hvp_generic_module():
    model = tanh_net()
    x, y = torch.randn(13, 7, dtype=F64), torch.randint(0, 3, (13,))
    H_ref = Reference(model, x, y, reduction="sum").hessian()
    V = torch.randn(H_ref.shape[0], 4, dtype=F64)
    assert rel(curvature.hvp(model, x, y, V, reduction="sum", chunk_size=4), H_ref @ V) < TOL
    with pytest.raises(ValueError, match="DenseNet-like"):
        curvature.hvp(model, x, y, V, method="dense")


@pytest.mark.parametrize("method", ["dense", "autograd"])
@pytest.mark.parametrize("case", [CASES[0], CASES[4], CASES[6]], ids=lambda c: c.name)
def test_projected_hessian(case, method, references):
    model, x, y = case.build()
    H_ref = references[case.name]
    P = H_ref.shape[0]
    U = torch.randn(P, 5, dtype=F64)
    R = curvature.projected_hessian(model, x, y, U, chunk_size=4, method=method, **case.kwargs())
    assert R.shape == (5, 5) and torch.equal(R, R.T)
    assert rel(R, U.T @ H_ref @ U) < TOL
    # block sums of the coadaptation matrix θᵢ Hᵢⱼ θⱼ over magnitude-ordered bins
    theta = Reference(model, x, y, case.params).theta
    bins = torch.zeros(P, 4, dtype=F64)
    bins[theta.abs().argsort(), torch.arange(P) * 4 // P] = 1.0
    Ub = bins * theta[:, None]
    C = theta[:, None] * H_ref * theta[None, :]
    expected = bins.T @ C @ bins
    got = curvature.projected_hessian(model, x, y, Ub, method=method, **case.kwargs())
    assert rel(got, expected) < TOL


# --------------------------------------------------------------------------- diagonal
@pytest.mark.parametrize("method", ["dense", "autograd", "auto"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_hessian_diagonal_exact(case, method, references):
    model, x, y = case.build()
    d = curvature.hessian_diagonal(model, x, y, method=method, chunk_size=5, **case.kwargs())
    assert rel(d, references[case.name].diagonal()) < TOL


def test_hutchinson_diagonal_converges(references):
    case = CASES[0]
    model, x, y = case.build()
    H_ref = references[case.name]
    exact = H_ref.diagonal()
    off = (H_ref - torch.diag(exact)).square().sum()  # E‖err‖² = Σ_{i≠j} H_ij² / S

    def err(samples: int, seed: int = 0) -> float:
        est = curvature.hessian_diagonal(
            model, x, y, method="hutchinson", num_samples=samples, seed=seed, **case.kwargs()
        )
        return float((est - exact).norm())

    few, many = err(8), err(2000)
    assert many < few / 5
    assert many < 3 * math.sqrt(off / 2000)
    assert err(50, seed=1) == err(50, seed=1)  # seeded
    assert err(50, seed=1) != err(50, seed=2)


def test_hutchinson_on_generic_module():
    model = tanh_net()
    x, y = torch.randn(11, 7, dtype=F64), torch.randint(0, 3, (11,))
    H_ref = Reference(model, x, y).hessian()
    est = curvature.hessian_diagonal(model, x, y, method="hutchinson", num_samples=3000)
    off = (H_ref - torch.diag(H_ref.diagonal())).square().sum()
    assert float((est - H_ref.diagonal()).norm()) < 3 * math.sqrt(off / 3000)
    exact = curvature.hessian_diagonal(model, x, y)  # auto → autograd for a generic module
    assert rel(exact, H_ref.diagonal()) < TOL


# --------------------------------------------------------------------------- gradient, FD
@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[6]], ids=lambda c: c.name)
def test_gradient_against_finite_differences(case):
    model, x, y = case.build()
    ref = Reference(model, x, y, case.params, case.reduction)
    g = curvature.gradient(model, x, y, chunk_size=7, **case.kwargs())
    assert rel(g, ref.grad()) < TOL
    h = 1e-6
    for j in (0, ref.theta.numel() // 2, ref.theta.numel() - 1):
        e = torch.zeros_like(ref.theta)
        e[j] = h
        fd = (ref.loss(ref.theta + e) - ref.loss(ref.theta - e)) / (2 * h)
        assert abs(float(fd) - float(g[j])) < 1e-7 * (1 + abs(float(g[j])))


def perturbed(model: nn.Module, names: list[str], j: int, h: float) -> nn.Module:
    """A copy of ``model`` with flat coordinate j of the selection moved by h."""
    out = copy.deepcopy(model)
    named = dict(out.named_parameters())
    for n in names:
        k = named[n].numel()
        if j < k:
            with torch.no_grad():
                named[n].view(-1)[j] += h
            return out
        j -= k
    raise IndexError(j)


@pytest.mark.parametrize("case", [CASES[0], CASES[5]], ids=lambda c: c.name)
def test_hessian_columns_against_finite_differences(case):
    model, x, y = case.build()
    names = selected_names(model, case.params)
    H = curvature.hessian(model, x, y, method="dense", **case.kwargs())
    h = 1e-6
    for j in (0, H.shape[0] // 3, H.shape[0] - 1):
        gp = curvature.gradient(perturbed(model, names, j, h), x, y, **case.kwargs())
        gm = curvature.gradient(perturbed(model, names, j, -h), x, y, **case.kwargs())
        fd = (gp - gm) / (2 * h)
        assert float((fd - H[:, j]).abs().max()) < 1e-6 * (1 + float(H[:, j].abs().max()))


# --------------------------------------------------------------------------- side effects
def test_inputs_and_model_are_not_modified():
    case = CASES[3]
    model32, x, y = case.build(dtype=torch.float32)
    x.requires_grad_(False)
    before = {n: p.detach().clone() for n, p in model32.named_parameters()}
    flags = {n: p.requires_grad for n, p in model32.named_parameters()}
    x0, y0 = x.clone(), y.clone()
    P = sum(p.numel() for p in model32.parameters())
    v = torch.randn(P)
    for dtype in (None, F64):
        curvature.hessian(model32, x, y, dtype=dtype, method="dense")
        curvature.hessian(model32, x, y, dtype=dtype, method="autograd")
        curvature.hessian_diagonal(model32, x, y, dtype=dtype)
        curvature.hessian_diagonal(model32, x, y, dtype=dtype, method="hutchinson", num_samples=4)
        curvature.hvp(model32, x, y, v, dtype=dtype)
        curvature.projected_hessian(model32, x, y, v[:, None], dtype=dtype)
        curvature.gradient(model32, x, y, dtype=dtype)
    assert torch.equal(x, x0) and torch.equal(y, y0) and x.dtype == torch.float32
    for n, p in model32.named_parameters():
        assert torch.equal(p, before[n]) and p.dtype == torch.float32
        assert p.requires_grad == flags[n] and p.grad is None


def test_loss_helper():
    model, x, y = CASES[0].build()
    mean = curvature.loss(model, x, y)
    total = curvature.loss(model, x, y, reduction="sum")
    torch.testing.assert_close(mean, F.cross_entropy(model(x), y), rtol=1e-14, atol=0)
    torch.testing.assert_close(total, x.shape[0] * mean, rtol=1e-12, atol=0)
    model32 = copy.deepcopy(model).float()
    out = curvature.loss(model32, x.float(), y, dtype=F64)
    assert out.dtype == F64
    out.backward()  # differentiable in the model's parameters
    assert model32.layers[0].weight.grad is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(references):
    case = CASES[3]
    model, x, y = case.build()
    H = curvature.hessian(model.cuda(), x.cuda(), y.cuda(), method="dense", **case.kwargs())
    assert H.is_cuda and rel(H.cpu(), references[case.name]) < TOL
    d = curvature.hessian_diagonal(model, x.cuda(), y.cuda(), **case.kwargs())
    assert rel(d.cpu(), references[case.name].diagonal()) < TOL
