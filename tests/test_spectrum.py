"""Spectrum algorithms (``td_analysis.curvature.spectrum``) against exact references: plain
symmetric matrices with known spectra, and ``torch.linalg.eigh`` of float64 ``torch.func``
Hessians of small networks.  Statistical estimates are checked against their exact values within
4 of their standard errors, and the standard errors against the exact variance."""

from __future__ import annotations

import math

import pytest
import torch
from spectrum_cases import (
    F64,
    HouseholderOperator,
    known_spectra,
    sorted_reference,
    with_spectrum,
)
from zoo import CASE_IDS, CASES, Reference

from td_analysis.curvature import (
    HessianOperator,
    hessian_trace,
    lanczos_quadrature,
    pruned_spectrum,
    restrict,
    spectral_density,
    top_eigenpairs,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class Counting:
    """A plain matrix as an operator that counts its products (and checks block shapes)."""

    def __init__(self, A):
        self.A, self.shape, self.calls, self.columns = A, A.shape, 0, 0

    def __matmul__(self, V):
        assert V.ndim in (1, 2) and V.shape[0] == self.shape[0]
        self.calls += 1
        self.columns += 1 if V.ndim == 1 else V.shape[1]
        return self.A @ V


def check_eigenpairs(A, lam_ref, lam, V, tol):
    norm = float(torch.linalg.matrix_norm(A, 2))
    assert V.shape == (A.shape[0], lam.numel())
    assert torch.allclose(V.mT @ V, torch.eye(lam.numel(), dtype=F64), atol=1e-8)
    residual = (A @ V - V * lam).norm(dim=0).max()
    assert residual <= tol * norm * 1.01
    # eigenvalue error ≤ residual (and ≤ residual²/gap where separated)
    assert torch.allclose(lam, lam_ref[: lam.numel()], rtol=0, atol=max(tol * norm, 1e-10))


@pytest.mark.parametrize("which", ["largest", "smallest", "magnitude"])
@pytest.mark.parametrize("case", ["separated", "degenerate", "clustered", "indefinite"])
def test_known_spectra(case, which):
    lam_true = known_spectra()[case]
    A, _ = with_spectrum(lam_true, seed=1)
    k = 5
    lam, V = top_eigenpairs(A, k, which=which, tol=1e-9)
    check_eigenpairs(A, sorted_reference(lam_true, which), lam, V, 1e-9)


def test_degenerate_eigenspace_is_recovered():
    """Multiplicity 3 at the top: the computed vectors span exactly the true eigenspace."""
    lam_true = known_spectra()["degenerate"]
    A, U = with_spectrum(lam_true, seed=2)
    lam, V = top_eigenpairs(A, 3, tol=1e-10)
    assert torch.allclose(lam, torch.full((3,), 9.0, dtype=F64), atol=1e-9)
    true_proj = U[:, :3] @ U[:, :3].mT
    assert torch.allclose(V @ V.mT, true_proj, atol=1e-7)


def test_eigenvectors_match_separated_eigenvectors_up_to_sign():
    lam_true = known_spectra()["separated"]
    A, U = with_spectrum(lam_true, seed=3)
    _, V = top_eigenpairs(A, 6, tol=1e-10)
    overlap = (V * U[:, :6]).sum(0).abs()
    assert torch.allclose(overlap, torch.ones(6, dtype=F64), atol=1e-9)


@pytest.mark.parametrize("k", [37, 39])
def test_k_close_to_p(k):
    lam_true = torch.linspace(-2.0, 3.0, 40, dtype=F64)
    A, _ = with_spectrum(lam_true, seed=4)
    lam, V = top_eigenpairs(A, k, which="smallest")
    check_eigenpairs(A, lam_true, lam, V, 1e-9)


def test_products_are_spent_in_blocks_and_restarts_converge():
    """Small basis forces thick restarts; every product is a (P, b) block, b = block_size."""
    lam_true = known_spectra(300)["separated"]
    A, _ = with_spectrum(lam_true, seed=5)
    op = Counting(A)
    lam, V = top_eigenpairs(op, 4, block_size=6, basis_size=16, tol=1e-10)
    check_eigenpairs(A, lam_true, lam, V, 1e-10)
    assert op.columns == 6 * op.calls and op.calls > 3
    ref = Counting(A)
    top_eigenpairs(ref, 4, block_size=6, tol=1e-10)  # default basis: fewer restarts
    assert ref.calls <= op.calls


def test_low_rank_operator_breakdown():
    """rank 3 < block: the Krylov space is exhausted at once and refilled with random vectors."""
    lam_true = torch.cat([torch.tensor([5.0, 3.0, 1.0]), torch.zeros(97)]).to(F64)
    A, _ = with_spectrum(lam_true, seed=6)
    lam, V = top_eigenpairs(A, 4, tol=1e-10)
    check_eigenpairs(A, lam_true, lam, V, 1e-10)


def test_seed_reproducible_and_float32_operator():
    A, _ = with_spectrum(known_spectra()["separated"], seed=7)
    a = top_eigenpairs(A, 3, seed=11)
    b = top_eigenpairs(A, 3, seed=11)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    lam32, _ = top_eigenpairs(A.float(), 3, tol=1e-5)  # float32 products and basis
    assert lam32.dtype == F64 and torch.allclose(lam32, a[0], rtol=1e-5)


def test_large_float32_operator_keeps_eigenvalue_accuracy():
    """P = 300,000, float32 products and basis: the float64 Rayleigh quotients of the Ritz
    vectors keep the eigenvalues to the products' accuracy (not the basis's length-P float32
    sums); eigenvectors orthonormal and aligned to float32 accuracy."""
    top = torch.tensor([10.0, 8, 6, 5, 4], dtype=F64)
    gen = torch.Generator().manual_seed(3)
    rest = torch.rand(300_000 - 5, generator=gen, dtype=F64) * 2 - 1
    op = HouseholderOperator(torch.cat([top, rest]), seed=4)
    lam, V = top_eigenpairs(op, 5, tol=1e-4)
    assert lam.dtype == F64 and V.dtype == F64 and V.shape == (300_000, 5)
    assert float(((lam - top).abs() / top).max()) < 1e-6
    # a float32 basis of length P loses orthogonality through its length-P float32 dot products:
    # |fl(xᵀy) − xᵀy| ≤ λ·√P·u·‖x‖‖y‖ with probability ≥ 1 − 2·exp(−λ²/2) (Higham & Mary 2019,
    # probabilistic rounding-error analysis); λ = 6 (failure ≈ 3e-8) and 2 for the projection
    # and its subtraction. A basis without reorthogonalisation is off by O(1).
    u32 = torch.finfo(torch.float32).eps / 2
    bound = 2 * 6 * math.sqrt(300_000) * u32  # ≈ 3.9e-4
    assert float((V.mT @ V - torch.eye(5, dtype=F64)).abs().max()) < bound
    for i in range(5):  # |cos| between computed and true eigenvector
        assert abs(float(V[:, i] @ op.eigenvector(i))) > 1 - 1e-5


def test_max_iter_warns_with_the_residual():
    A, _ = with_spectrum(known_spectra(300)["clustered"], seed=8)
    with pytest.warns(RuntimeWarning, match="residual"):
        top_eigenpairs(A, 5, tol=1e-12, max_iter=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_operator():
    A, _ = with_spectrum(known_spectra()["indefinite"], seed=9)
    lam, V = top_eigenpairs(A.cuda(), 4, which="magnitude", tol=1e-9)
    assert lam.is_cuda and V.is_cuda
    check_eigenpairs(
        A, sorted_reference(known_spectra()["indefinite"], "magnitude"), lam.cpu(), V.cpu(), 1e-9
    )


# ----------------------------------------------------------------------------- networks
def case_problem(case):
    """The operator of a shared dense case and its float64 torch.func Hessian."""
    model, x, y = case.build()
    H_ref = Reference(model, x, y, **case.kwargs()).hessian()
    op = HessianOperator(model, (x, y), dtype=F64, **case.kwargs())
    return op, (H_ref + H_ref.mT) / 2, model, x, y


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_network_eigenpairs_match_eigh(case):
    op, H_ref, *_ = case_problem(case)
    assert op.shape == H_ref.shape
    lam_ref = torch.linalg.eigvalsh(H_ref)
    k = min(3, H_ref.shape[0] - 1)
    for which in ("largest", "smallest", "magnitude"):
        lam, V = top_eigenpairs(op, k, which=which, tol=1e-9)
        check_eigenpairs(H_ref, sorted_reference(lam_ref, which), lam, V, 1e-9)


@pytest.mark.parametrize("case", CASES[:4], ids=CASE_IDS[:4])
def test_network_trace_exact_and_estimates(case):
    op, H_ref, *_ = case_problem(case)
    exact, se = hessian_trace(op, method="exact")
    assert se == 0.0 and exact == pytest.approx(float(H_ref.trace()), rel=1e-10, abs=1e-12)
    for method in ("hutchinson", "hutch++"):
        est, se = hessian_trace(op, method=method, num_matvecs=30, seed=1)
        assert se >= 0 and abs(est - exact) <= 4 * se + 1e-10 * abs(exact)


# ----------------------------------------------------------------------------- trace
def test_trace_exact_without_diagonal_uses_basis_blocks():
    A, _ = with_spectrum(known_spectra()["indefinite"], seed=10)
    op = Counting(A)  # no diagonal(): P products in blocks
    est, se = hessian_trace(op, method="exact", block_size=50)
    assert se == 0.0 and est == pytest.approx(float(A.trace()), abs=1e-10)
    assert op.calls == 3 and op.columns == 120


def test_hutchinson_standard_error_matches_exact_variance():
    """Var(zᵀAz) = 2(‖A‖_F² − Σ A_ii²) for Rademacher z: the reported SE² over many seeds
    averages to Var/m, and the z-scores of the estimates have unit spread."""
    A, _ = with_spectrum(known_spectra(60)["indefinite"], seed=11)
    m = 20
    var = 2 * (float((A**2).sum()) - float((A.diagonal() ** 2).sum()))
    ests, ses = [], []
    for seed in range(200):
        est, se = hessian_trace(A, method="hutchinson", num_matvecs=m, seed=seed)
        ests.append(est)
        ses.append(se)
    ests_t, ses_t = torch.tensor(ests), torch.tensor(ses)
    assert float((ses_t**2).mean()) == pytest.approx(var / m, rel=0.15)
    assert float(ests_t.mean()) == pytest.approx(float(A.trace()), abs=4 * math.sqrt(var / m / 200))
    assert float(ests_t.std()) == pytest.approx(math.sqrt(var / m), rel=0.15)


def test_hutchpp_exact_for_low_rank_and_better_than_hutchinson():
    lam = torch.cat([torch.tensor([50.0, 20, 10, 5]), torch.zeros(96)]).to(F64)
    A, _ = with_spectrum(lam, seed=12)
    est, se = hessian_trace(A, method="hutch++", num_matvecs=18)
    assert est == pytest.approx(85.0, abs=1e-9) and se < 1e-9
    # decaying spectrum: the deflated part is small, so the error and SE shrink
    lam = (0.6 ** torch.arange(100)).to(F64) * 100
    A, _ = with_spectrum(lam, seed=13)
    pp = [hessian_trace(A, method="hutch++", num_matvecs=30, seed=s) for s in range(20)]
    hu = [hessian_trace(A, method="hutchinson", num_matvecs=30, seed=s) for s in range(20)]
    err = lambda rs: sum(abs(e - float(lam.sum())) for e, _ in rs) / len(rs)  # noqa: E731
    assert err(pp) < 0.1 * err(hu)
    # its standard error (of the Hutchinson part on the deflated rest) is calibrated: z-scores
    # over many seeds have about unit spread and rarely exceed 4 (t with m/3 − 1 d.o.f.)
    lam = (0.9 ** torch.arange(100)).to(F64) * 100
    A, _ = with_spectrum(lam, seed=14)
    z = torch.tensor(
        [
            (e - float(lam.sum())) / s
            for e, s in (
                hessian_trace(A, method="hutch++", num_matvecs=30, seed=i) for i in range(100)
            )
        ]
    )
    assert 0.7 < float(z.std()) < 1.5 and int((z.abs() > 4).sum()) <= 3


# ----------------------------------------------------------------------------- density
def test_lanczos_quadrature_reproduces_moments():
    """Gauss quadrature with m nodes is exact for q₁ᵀAᵖq₁, p < 2m."""
    A, _ = with_spectrum(known_spectra(40)["indefinite"], seed=14)
    A = A / 30
    gen = torch.Generator().manual_seed(0)
    probes = torch.randn(40, 3, generator=gen, dtype=F64)
    m = 6
    nodes, weights = lanczos_quadrature(A, probes, m)
    assert nodes.shape == weights.shape == (3, m)
    assert torch.allclose(weights.sum(1), torch.ones(3, dtype=F64), atol=1e-12)
    q = probes / probes.norm(dim=0)
    Ap = torch.eye(40, dtype=F64)
    for p in range(2 * m):
        exact = (q * (Ap @ q)).sum(0)
        assert torch.allclose((weights * nodes**p).sum(1), exact, atol=1e-10), p
        Ap = Ap @ A


def test_lanczos_quadrature_breakdown_on_few_distinct_eigenvalues():
    lam = torch.tensor([1.0, 1.0, 2.0, 2.0, 3.0, 3.0], dtype=F64)
    A, U = with_spectrum(lam, seed=15)
    nodes, weights = lanczos_quadrature(A, torch.ones(6, dtype=F64), 6)
    support = weights[0] > 1e-12
    assert support.sum() == 3
    assert torch.allclose(nodes[0][support].sort().values, torch.tensor([1.0, 2.0, 3.0], dtype=F64))


def smoothed(lam: torch.Tensor, grid: torch.Tensor, sigma: float) -> torch.Tensor:
    z = (grid[:, None] - lam[None, :]) / sigma
    return torch.exp(-0.5 * z**2).sum(1) / (lam.numel() * sigma * math.sqrt(2 * math.pi))


def test_density_matches_smoothed_eigenvalue_histogram():
    P = 200
    lam = torch.cat([torch.linspace(-1, 1, 150), torch.linspace(4, 6, 50)]).to(F64)
    A, _ = with_spectrum(lam, seed=16)
    sigma = 0.3
    grid = torch.linspace(-3, 8, 800, dtype=F64)
    g, dens = spectral_density(A, num_probes=40, num_steps=40, grid=grid, sigma=sigma, seed=0)
    assert torch.equal(g, grid)
    assert float(torch.trapezoid(dens, g)) == pytest.approx(1.0, abs=1e-12)
    exact = smoothed(lam, grid, sigma)
    l1 = float(torch.trapezoid((dens - exact).abs(), g))
    assert l1 < 0.08, l1
    # the test can tell: a spectrum with the outlier bulk moved is far away
    moved = smoothed(torch.cat([lam[:150], lam[150:] - 1.5]), grid, sigma)
    assert float(torch.trapezoid((dens - moved).abs(), g)) > 5 * l1
    # the mean of the density is a Hutchinson estimate of tr(A)/P: within 4 standard errors
    var = 2 * (float((A**2).sum()) - float((A.diagonal() ** 2).sum())) / P**2
    mean = float(torch.trapezoid(g * dens, g))
    assert abs(mean - float(lam.mean())) <= 4 * math.sqrt(var / 40) + 1e-3


def test_density_default_grid_covers_the_spectrum():
    lam = torch.linspace(-2, 5, 60, dtype=F64)
    A, _ = with_spectrum(lam, seed=17)
    g, dens = spectral_density(A, num_probes=4, num_steps=60)
    assert g[0] < -2 and g[-1] > 5 and g.numel() == 1000
    assert float(torch.trapezoid(dens, g)) == pytest.approx(1.0, abs=1e-12)
    assert (dens >= 0).all()


def test_network_density_against_eigh():
    op, H_ref, *_ = case_problem(CASES[0])
    lam = torch.linalg.eigvalsh(H_ref)
    sigma = 0.05 * float(lam.max() - lam.min())
    grid = torch.linspace(float(lam.min()) - 5 * sigma, float(lam.max()) + 5 * sigma, 500)
    g, dens = spectral_density(op, num_probes=30, num_steps=lam.numel(), grid=grid, sigma=sigma)
    l1 = float(torch.trapezoid((dens - smoothed(lam, g, sigma)).abs(), g))
    assert l1 < 0.15, l1


# ----------------------------------------------------------------------------- subsets
def test_restrict_matches_indexing():
    A, _ = with_spectrum(known_spectra()["indefinite"], seed=18)
    idx = torch.tensor([3, 7, 8, 50, 119, 0])
    sub = restrict(A, idx)
    assert sub.shape == (6, 6)
    V = torch.randn(6, 4, dtype=F64)
    ref = A[idx][:, idx]
    assert torch.allclose(sub @ V, ref @ V, atol=1e-13)
    assert torch.allclose(sub @ V[:, 0], ref @ V[:, 0], atol=1e-13)
    assert torch.allclose(sub.diagonal(), ref.diagonal())
    mask = torch.zeros(120, dtype=torch.bool)
    mask[idx] = True
    by_mask = restrict(A, mask)
    srt = idx.sort().values
    assert torch.allclose(by_mask @ V, A[srt][:, srt] @ V, atol=1e-13)


def test_network_restriction_and_pruned_spectrum():
    case = next(c for c in CASES if c.name == "h2-bias-sum")
    op, H, model, x, y = case_problem(case)
    theta = Reference(model, x, y).theta
    P = theta.numel()
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(P, generator=gen) < 0.4
    H_SS = H[mask][:, mask]
    lam_sub, _ = top_eigenpairs(restrict(op, mask), 2, tol=1e-10)
    assert torch.allclose(lam_sub, torch.linalg.eigvalsh(H_SS).flip(0)[:2], atol=1e-9)

    res = pruned_spectrum(op, mask, theta=theta, k=3, tol=1e-10)
    lam_all, U = torch.linalg.eigh(H)
    assert res.num_pruned == int(mask.sum()) and res.num_params == P
    assert res.lambda_max_pruned == pytest.approx(float(torch.linalg.eigvalsh(H_SS)[-1]), abs=1e-9)
    assert res.top_eigenvalues == pytest.approx(lam_all.flip(0)[:3].tolist(), abs=1e-9)
    mass = (U[:, -3:].flip(1)[mask] ** 2).sum(0)
    assert res.pruned_mass == pytest.approx(mass.tolist(), abs=1e-7)
    d = torch.where(mask, theta, 0.0)
    assert res.second_order == pytest.approx(0.5 * float(d @ H @ d), rel=1e-10)
    assert res.bound == pytest.approx(0.5 * res.lambda_max_pruned * float(d @ d), rel=1e-12)
    assert res.second_order <= res.bound
    # index form of the same set
    res2 = pruned_spectrum(op, torch.nonzero(mask).flatten(), k=3, tol=1e-10)
    assert res2.lambda_max_pruned == pytest.approx(res.lambda_max_pruned, abs=1e-9)


def test_per_layer_operator_equals_diagonal_block():
    case = next(c for c in CASES if c.name == "h3-bias-mean")
    op, H, model, x, y = case_problem(case)
    layer = HessianOperator(model, (x, y), params=["layers.1.weight"], dtype=F64)
    sl = op.offsets["layers.1.weight"]
    idx = torch.arange(sl.start, sl.stop)
    lam_layer, _ = top_eigenpairs(layer, 2, tol=1e-10)
    lam_restr, _ = top_eigenpairs(restrict(op, idx), 2, tol=1e-10)
    ref = torch.linalg.eigvalsh(H[idx][:, idx]).flip(0)[:2]
    assert torch.allclose(lam_layer, ref, atol=1e-9) and torch.allclose(lam_restr, ref, atol=1e-9)


# ----------------------------------------------------------------------------- bad input
def test_bad_input_errors():
    A, _ = with_spectrum(torch.arange(10.0), seed=0)
    with pytest.raises(ValueError, match="k must be an integer with 1 <= k < P = 10"):
        top_eigenpairs(A, 10)
    with pytest.raises(ValueError, match="k must be"):
        top_eigenpairs(A, 0)
    with pytest.raises(ValueError, match="which must be one of"):
        top_eigenpairs(A, 2, which="top")
    with pytest.raises(ValueError, match="square"):
        top_eigenpairs(torch.randn(3, 4), 1)
    with pytest.raises(ValueError, match="operator"):
        top_eigenpairs([[1.0, 0.0], [0.0, 1.0]], 1)
    with pytest.raises(ValueError, match="tol must be positive"):
        top_eigenpairs(A, 2, tol=0)
    with pytest.raises(ValueError, match="method must be one of"):
        hessian_trace(A, method="girard")
    with pytest.raises(ValueError, match="hutch\\+\\+ needs num_matvecs >= 6"):
        hessian_trace(A, num_matvecs=3)
    with pytest.raises(ValueError, match="square"):
        spectral_density(torch.randn(3, 4))
    with pytest.raises(ValueError, match="sigma must be positive"):
        spectral_density(A, sigma=-1.0)
    with pytest.raises(ValueError, match="grid must be increasing"):
        spectral_density(A, grid=torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="indices must lie in"):
        restrict(A, torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="must not repeat"):
        restrict(A, torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="mask must have shape"):
        restrict(A, torch.ones(9, dtype=torch.bool))
    with pytest.raises(ValueError, match="pruned set is empty"):
        pruned_spectrum(A, torch.zeros(10, dtype=torch.bool))
