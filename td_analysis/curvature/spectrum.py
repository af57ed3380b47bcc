"""Spectral algorithms for any symmetric linear operator: top eigenpairs, trace, spectral density.

An *operator* is anything with ``.shape == (P, P)`` whose ``op @ V`` accepts a ``(P,)`` vector or
a ``(P, k)`` block and returns the product of a symmetric matrix with it: a
:class:`td_analysis.curvature.HessianOperator`, a plain symmetric ``torch.Tensor``, or
:func:`restrict` of either.  The algorithms work in float64 on the operator's device (its
``device`` attribute when it has one), cast blocks to the operator's ``dtype`` for the product,
and spend their products in blocks (for the Hessian a ``(P, 16)`` block costs about 1.7 times one
vector, since it passes over the data once).

* :func:`top_eigenpairs`: restarted block Lanczos with full reorthogonalisation and
  Rayleigh–Ritz, converged when every residual ‖Hv − λv‖ ≤ tol · ‖H‖.
* :func:`hessian_trace`: Hutch++, Hutchinson or exact, with a standard error.
* :func:`spectral_density`: stochastic Lanczos quadrature with Gaussian smoothing.
* :func:`restrict`, :func:`pruned_spectrum`: the operator H_SS of a parameter subset S (e.g. the
  weights a pruning mask removes) and the curvature bound it gives.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from td_analysis.progress import progress_bar as tqdm  # a bar on a terminal only

__all__ = [
    "SymmetricOperator",
    "top_eigenpairs",
    "hessian_trace",
    "lanczos_quadrature",
    "spectral_density",
    "restrict",
    "RestrictedOperator",
    "PrunedSpectrum",
    "pruned_spectrum",
    "WHICH",
    "TRACE_METHODS",
]

WHICH = ("largest", "smallest", "magnitude")
TRACE_METHODS = ("hutch++", "hutchinson", "exact")
#: Columns per operator product when an algorithm needs many (basis blocks, trace probes).
MAX_BLOCK = 64
#: top_eigenpairs stops (with a warning) when its residual has not halved in this many products.
STAGNATION = 60
#: Gram–Schmidt is repeated when a row keeps less than this share of its norm (DGKS criterion).
DGKS = 2**-0.5
#: Memory budget (bytes) for the Lanczos bases of a group of density probes.
DENSITY_BYTES = 2 * 2**30


@runtime_checkable
class SymmetricOperator(Protocol):
    """What the algorithms need: a square ``shape`` and ``@`` on ``(P,)`` and ``(P, k)``."""

    shape: Any

    def __matmul__(self, other: Tensor) -> Tensor: ...


# ----------------------------------------------------------------------------- plumbing
def _size(op: Any) -> int:
    """P of a square operator; a clear ValueError for anything else."""
    shape = getattr(op, "shape", None)
    if shape is None or not hasattr(op, "__matmul__"):
        raise ValueError(
            f"expected an operator with .shape == (P, P) and '@', got {type(op).__name__}"
        )
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"the operator must be square (P, P), got shape {shape}")
    if shape[0] < 1:
        raise ValueError("the operator is empty (P = 0)")
    return shape[0]


def _device(op: Any) -> torch.device:
    device = getattr(op, "device", None)
    return torch.device(device) if device is not None else torch.device("cpu")


def _op_dtype(op: Any) -> torch.dtype:
    dtype = getattr(op, "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float64


def _apply(op: Any, V: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """op @ V for a block V (P × k), in the operator's dtype, returned in ``dtype``."""
    out = op @ V.to(_op_dtype(op))
    if out.shape != V.shape:
        raise ValueError(
            f"the operator returned shape {tuple(out.shape)} for a block of {tuple(V.shape)}"
        )
    return out.to(device=V.device, dtype=dtype)


def _work_dtype(op: Any) -> torch.dtype:
    """Precision of the Lanczos basis: float32 for an operator of float32 (or lower) precision,
    whose products carry only that many digits anyway; float64 otherwise."""
    dtype = _op_dtype(op)
    low = dtype.is_floating_point and torch.finfo(dtype).bits <= 32
    return torch.float32 if low else torch.float64


def _rank_tol(dtype: torch.dtype, float64_tol: float) -> float:
    """Relative size below which a direction counts as dependent: ``float64_tol`` in float64,
    the same multiple of √ε (at least 10 ε) in a lower precision."""
    if dtype == torch.float64:
        return float64_tol
    eps = torch.finfo(dtype).eps
    return max(10 * eps, float64_tol * math.sqrt(eps / torch.finfo(torch.float64).eps))


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(seed))


def _randn(P: int, k: int, gen: torch.Generator, device: torch.device) -> Tensor:
    return torch.randn(P, k, generator=gen, dtype=torch.float64).to(device)


def _rademacher(P: int, k: int, gen: torch.Generator, device: torch.device) -> Tensor:
    z = torch.randint(0, 2, (P, k), generator=gen).to(torch.float64).mul_(2).sub_(1)
    return z.to(device)


def _column_blocks(n: int, block: int):
    for start in range(0, n, block):
        yield start, min(n, start + block)


def _apply_blocked(op: Any, V: Tensor, block: int = MAX_BLOCK) -> Tensor:
    """op @ V in groups of at most ``block`` columns (bounded work space for wide V)."""
    if V.shape[1] <= block:
        return _apply(op, V)
    return torch.cat([_apply(op, V[:, a:b]) for a, b in _column_blocks(V.shape[1], block)], 1)


def _dense(op: Any, P: int, device: torch.device) -> Tensor:
    """The P × P matrix of ``op`` from products with blocks of basis vectors, symmetrised."""
    M = torch.empty(P, P, dtype=torch.float64, device=device)
    for a, b in _column_blocks(P, MAX_BLOCK):
        E = torch.zeros(P, b - a, dtype=torch.float64, device=device)
        E[torch.arange(a, b), torch.arange(b - a)] = 1.0
        M[:, a:b] = _apply(op, E)
    return (M + M.mT) * 0.5


def _orthonormal_extension(
    Q: Tensor, X: Tensor, gen: torch.Generator, *, want: int | None = None
) -> Tensor:
    """An orthonormal basis of span(X) ⊥ span(Q) (classical Gram–Schmidt twice, then an SVD
    that drops directions already in span(Q)); refilled with random directions up to ``want``
    columns when X is (nearly) inside span(Q) (Krylov breakdown, low-rank operators)."""
    P = X.shape[0]
    want = X.shape[1] if want is None else want
    want = min(want, P - Q.shape[1])
    out = X.new_zeros(P, 0)
    for _ in range(4):
        if want <= 0 or out.shape[1] >= want:
            break
        ref = X.norm(dim=0).max().clamp_min(torch.finfo(X.dtype).tiny)
        basis = torch.cat([Q, out], 1)
        for _ in range(2):
            X = X - basis @ (basis.mT @ X)
        U, s, _ = torch.linalg.svd(X, full_matrices=False)
        keep = s > _rank_tol(X.dtype, 1e-10) * ref
        U = U[:, keep][:, : want - out.shape[1]]
        U = U - basis @ (basis.mT @ U)  # one more pass against rounding
        U, _ = torch.linalg.qr(U)
        out = torch.cat([out, U], 1)
        X = _randn(P, want - out.shape[1], gen, X.device).to(X.dtype)
    return out


def _select(theta: Tensor, which: str, count: int) -> Tensor:
    """Indices of ``count`` Ritz values in the order ``which`` names."""
    if which == "largest":
        order = torch.argsort(theta, descending=True)
    elif which == "smallest":
        order = torch.argsort(theta)
    else:
        order = torch.argsort(theta.abs(), descending=True)
    return order[:count]


def _check_which(which: str) -> None:
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")


def _fix_signs(V: Tensor) -> Tensor:
    """Eigenvectors with their largest-|entry| component positive (a reproducible sign)."""
    idx = V.abs().argmax(dim=0)
    signs = torch.sign(V[idx, torch.arange(V.shape[1], device=V.device)])
    signs[signs == 0] = 1.0
    return V * signs


# ----------------------------------------------------------------------------- eigenpairs
def top_eigenpairs(
    op: Any,
    k: int,
    *,
    which: str = "largest",
    tol: float = 1e-6,
    max_iter: int | None = None,
    seed: int = 0,
    block_size: int | None = None,
    basis_size: int | None = None,
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """k eigenpairs of a symmetric operator, eigenvalues sorted in the order ``which`` names.

    ``which``: ``"largest"`` (algebraic, descending), ``"smallest"`` (ascending) or
    ``"magnitude"`` (by |λ|, descending).  Returns ``(eigenvalues (k,), eigenvectors (P, k))``,
    float64 on the operator's device, orthonormal columns.

    Restarted block Lanczos: the block Krylov space K_m(H, X₀) = span{X₀, HX₀, …, H^{m−1}X₀}
    (block of b = ``block_size`` columns, one operator product per block) is kept orthonormal by
    full reorthogonalisation; Rayleigh–Ritz on T = QᵀHQ gives Ritz pairs (θ, Qy).  When the
    basis reaches ``basis_size`` columns it is thick-restarted on the k + b wanted Ritz vectors
    (no products: HQy = (HQ)y) plus the dominant b directions of their residuals, which span
    the next Krylov block.  Converged when every wanted residual ‖Hv − θv‖₂ ≤ ``tol``·‖H‖
    (‖H‖ estimated by the largest |θ|); then |λ − θ| ≤ ‖r‖ and, away from other eigenvalues,
    |λ − θ| ≤ ‖r‖²/gap.  When ``basis_size`` ≥ P the P × P matrix is formed from basis blocks
    and diagonalised exactly.  ``max_iter`` (default 500) caps the number of block
    products; it stops early when the residual has not halved in 60 products (e.g. ``tol``
    below the precision of float32 products); either way a ``RuntimeWarning`` names the
    residual reached.  Degenerate eigenvalues of multiplicity up to b are resolved by the
    block.  Defaults: b = min(k, 4) (the Hessian's (P, b) products cost little more than one
    vector for small b), ``basis_size`` = max(k + 4b, 2k + 20) columns (memory 2·P·that
    numbers: basis and image).  The basis is kept in the operator's precision (float32 for a
    float32 operator, whose products carry no more digits: half the memory traffic of the
    reorthogonalisation); the projected matrices, Ritz values and eigenvectors are float64.
    The residuals ‖HQy − θQy‖² = yᵀ(HQ)ᵀ(HQ)y − θ² come from a small Gram matrix each step
    and are recomputed explicitly near convergence.
    """
    P = _size(op)
    _check_which(which)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < P:
        raise ValueError(f"k must be an integer with 1 <= k < P = {P}, got {k!r}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    device = _device(op)
    b = max(1, min(P, block_size if block_size is not None else min(k, 4)))
    keep = min(P, k + b)
    m = basis_size if basis_size is not None else max(keep + 3 * b, 2 * k + 20)
    if m < keep + b:
        raise ValueError(f"basis_size must be at least k + 2·block_size = {keep + b}, got {m}")
    if m >= P:
        evals, evecs = torch.linalg.eigh(_dense(op, P, device))
        idx = _select(evals, which, k)
        return evals[idx], _fix_signs(evecs[:, idx])
    max_iter = max_iter if max_iter is not None else 500

    gen = _generator(seed)
    work = _work_dtype(op)
    # basis and its image stored as rows (m × P) in the operator's precision: contiguous row
    # writes and GEMMs; the small projected matrices in float64
    Qt = torch.empty(m, P, dtype=work, device=device)
    HQt = torch.empty_like(Qt)
    T = torch.zeros(m, m, dtype=torch.float64, device=device)  # QᵀHQ
    G = torch.zeros(m, m, dtype=torch.float64, device=device)  # (HQ)ᵀ(HQ), for residual norms
    n = 0
    block = _orthonormal_extension(Qt[:0].mT, _randn(P, b, gen, device).to(work), gen).mT
    products, worst, best, best_at = 0, math.inf, math.inf, 0
    # below ~√ε of the products' precision yᵀGy − θ² is rounding: residuals computed explicitly
    floor = 10 * math.sqrt(torch.finfo(_op_dtype(op)).eps)
    bar = tqdm(total=max_iter, desc="eigenpairs", unit="block", disable=not progress)
    while True:
        # extend the basis by one block and its image
        nb = block.shape[0]
        Qt[n : n + nb] = block
        HQt[n : n + nb] = _apply(op, block.mT, work).mT
        products += 1
        bar.update()
        T[: n + nb, n : n + nb] = Qt[: n + nb] @ HQt[n : n + nb].mT
        T[n : n + nb, :n] = T[:n, n : n + nb].mT
        G[: n + nb, n : n + nb] = HQt[: n + nb] @ HQt[n : n + nb].mT
        G[n : n + nb, :n] = G[:n, n : n + nb].mT
        n += nb
        # Rayleigh–Ritz; ‖HQy − θQy‖² = yᵀGy − θ² (QᵀHQy = θy, ‖y‖ = 1)
        theta, Y = torch.linalg.eigh((T[:n, :n] + T[:n, :n].mT) * 0.5)
        want = _select(theta, which, k)
        Yw, tw = Y[:, want], theta[want]
        scale = float(theta.abs().max().clamp_min(torch.finfo(torch.float64).tiny))
        res2 = ((Yw * (G[:n, :n] @ Yw)).sum(0) - tw**2).clamp_min(0.0)
        worst = math.sqrt(float(res2.max())) / scale
        if worst <= max(tol, floor) or n >= P:  # confirm explicitly (the Gram form cancels)
            Yr = Yw.mT.to(work)
            R = Yr @ HQt[:n] - tw.to(work)[:, None] * (Yr @ Qt[:n])
            worst = float(R.norm(dim=1).max()) / scale
        bar.set_postfix(residual=f"{worst:.1e}")
        if worst <= tol or n >= P:
            break
        if worst < 0.5 * best:
            best, best_at = worst, products
        if products - best_at >= STAGNATION:
            warnings.warn(
                f"top_eigenpairs stagnated at relative residual {best:.2e} > tol={tol:.1e} (no "
                f"halving in {STAGNATION} block products): tol is likely below the precision "
                f"of the operator's {_op_dtype(op)} products",
                RuntimeWarning,
                stacklevel=2,
            )
            break
        if products >= max_iter:
            warnings.warn(
                f"top_eigenpairs stopped after max_iter={max_iter} block products with relative "
                f"residual {worst:.2e} > tol={tol:.1e}",
                RuntimeWarning,
                stacklevel=2,
            )
            break
        if n + b > m:  # thick restart on the wanted Ritz vectors (no products)
            kept = _select(theta, which, min(keep, n))
            Yk = Y[:, kept]
            Qt[: len(kept)] = Yk.mT.to(work) @ Qt[:n]
            HQt[: len(kept)] = Yk.mT.to(work) @ HQt[:n]
            Gk = Yk.mT @ G[:n, :n] @ Yk
            n = len(kept)
            T.zero_()
            T[:n, :n] = torch.diag(theta[kept])
            G.zero_()
            G[:n, :n] = (Gk + Gk.mT) * 0.5
            # the residuals HQy − θQy span the next Krylov block: keep their dominant b directions
            Rk = HQt[:n] - theta[kept].to(work)[:, None] * Qt[:n]
            evals, W = torch.linalg.eigh((Rk @ Rk.mT).double())
            small = _rank_tol(work, 1e-14) ** 2  # squared: eigenvalues of RRᵀ
            count = max(1, min(b, int((evals > small * evals.max().clamp_min(1e-300)).sum())))
            nxt, known = W[:, -count:].mT.to(work) @ Rk, None
        else:  # the new image: its coefficients on the basis are T's last block column
            nxt, known = HQt[n - nb : n], T[:n, n - nb : n].mT.to(work)
        block = _extend_rows(Qt[:n], nxt, gen, min(b, m - n), coeffs=known)
        if block.shape[0] == 0:  # the whole space is spanned: Rayleigh–Ritz was exact
            break
    bar.close()
    if work == torch.float64:
        return tw.clone(), _fix_signs((Yw.mT @ Qt[:n]).mT)
    values, vecs = _rayleigh_quotients(Yw, Qt[:n], HQt[:n])
    order = _select(values, which, k)
    return values[order], _fix_signs(vecs[:, order])


def _rayleigh_quotients(Y: Tensor, Qt: Tensor, HQt: Tensor, chunk: int = 2048) -> tuple:
    """Ritz vectors v = Qᵀy and their Rayleigh quotients vᵀHv / vᵀv, summed in float64 from a
    lower-precision basis (rows Qt) and its image HQt, in column chunks (float64 work space
    2·m × chunk, allocated once and small: fresh pages cost ~3 µs each on a VM).  The quotient
    is stationary at eigenvectors: the float32 rounding of the small projected problem moves y
    by δ and the value only by O(δ²), so the eigenvalues keep the accuracy of the products."""
    Y = Y.to(torch.float64)
    (m, P), k = Qt.shape, Y.shape[1]
    V = torch.empty(P, k, dtype=torch.float64, device=Qt.device)
    vhv = torch.zeros(k, dtype=torch.float64, device=Qt.device)
    q64 = torch.empty(m, min(chunk, P), dtype=torch.float64, device=Qt.device)
    h64 = torch.empty_like(q64)
    for a in range(0, P, chunk):
        w = min(chunk, P - a)
        q, h = q64[:, :w], h64[:, :w]
        q.copy_(Qt[:, a : a + w])
        h.copy_(HQt[:, a : a + w])
        v = Y.mT @ q
        vhv += (v * (Y.mT @ h)).sum(1)
        V[a : a + w] = v.mT
    return vhv / (V * V).sum(0), V


def _extend_rows(
    Qt: Tensor, X: Tensor, gen: torch.Generator, want: int, coeffs: Tensor | None = None
) -> Tensor:
    """Orthonormal rows spanning span(X) ⊥ span(Qt) (rows), by classical Gram–Schmidt and a QR;
    falls back to :func:`_orthonormal_extension` (rank-revealing, random refill) when X is
    (nearly) dependent on the basis.

    X ← X − (XQᵀ)Q, repeated once unless every row kept more than 1/√2 of its norm (the DGKS
    criterion: then one pass is orthogonal to working precision); ``coeffs`` = XQᵀ when the
    caller has it (a Lanczos image's coefficients are a column of T = QᵀHQ), which saves one
    pass over the basis.
    """
    norms = X.norm(dim=1)
    ref = norms.max().clamp_min(torch.finfo(X.dtype).tiny)
    X = X - (X @ Qt.mT if coeffs is None else coeffs) @ Qt
    if bool((X.norm(dim=1) < DGKS * norms).any()):
        X = X - (X @ Qt.mT) @ Qt
    if X.shape[0] <= want:
        Qx, R = torch.linalg.qr(X.mT)
        if bool((R.diagonal().abs() > _rank_tol(X.dtype, 1e-8) * ref).all()):
            return Qx.mT
    return _orthonormal_extension(Qt.mT, X.mT, gen, want=want).mT


# ----------------------------------------------------------------------------- trace
def _exact_diagonal(op: Any) -> Tensor | None:
    """``op.diagonal()`` where the operator has an exact one (a HessianOperator of a ReLU net,
    a tensor); ``None`` where it has none or refuses (ValueError: no closed form)."""
    diag = getattr(op, "diagonal", None)
    if not callable(diag):
        return None
    try:
        return diag()
    except (ValueError, NotImplementedError):
        return None


def hessian_trace(
    op: Any,
    *,
    method: str = "hutch++",
    num_matvecs: int = 99,
    seed: int = 0,
    block_size: int = MAX_BLOCK,
) -> tuple[float, float]:
    """tr H and a standard error of the estimate (0 for ``"exact"``).

    * ``"hutchinson"``: tr H ≈ (1/m) Σᵢ zᵢᵀHzᵢ with m = ``num_matvecs`` Rademacher probes
      (E[zzᵀ] = I); standard error = sample std / √m (Var zᵀHz = 2(‖H‖_F² − Σᵢ Hᵢᵢ²)).
    * ``"hutch++"`` (Meyer et al. 2021): with m/3 probes S, Q = orth(HS);
      tr H = tr(QᵀHQ) + tr((I−QQᵀ)H(I−QQᵀ)), the first exact, the second by Hutchinson on the
      remaining m/3 probes; the standard error is that of the Hutchinson part.  Exact when
      rank H ≤ m/3.
    * ``"exact"``: Σᵢ Hᵢᵢ from the operator's ``diagonal()`` when it has one, else from
      products with blocks of basis vectors (P products: small P only).
    """
    P = _size(op)
    if method not in TRACE_METHODS:
        raise ValueError(f"method must be one of {TRACE_METHODS}, got {method!r}")
    device = _device(op)
    if method == "exact":
        diag = _exact_diagonal(op)
        if diag is not None:
            return float(diag.to(torch.float64).sum()), 0.0
        total = 0.0
        for a, b in _column_blocks(P, block_size):
            E = torch.zeros(P, b - a, dtype=torch.float64, device=device)
            E[torch.arange(a, b), torch.arange(b - a)] = 1.0
            total += float(_apply(op, E)[a:b].diagonal().sum())
        return total, 0.0
    gen = _generator(seed)
    if method == "hutchinson":
        if num_matvecs < 2:
            raise ValueError(f"hutchinson needs num_matvecs >= 2, got {num_matvecs}")
        samples = []
        for a, b in _column_blocks(num_matvecs, block_size):
            Z = _rademacher(P, b - a, gen, device)
            samples.append((Z * _apply(op, Z)).sum(0))
        g = torch.cat(samples)
        return float(g.mean()), float(g.std() / math.sqrt(g.numel()))
    if num_matvecs < 6:
        raise ValueError(f"hutch++ needs num_matvecs >= 6, got {num_matvecs}")
    s = num_matvecs // 3
    g = num_matvecs - 2 * s
    S = _rademacher(P, s, gen, device)
    Q = _orthonormal_extension(S[:, :0], _apply_blocked(op, S, block_size), gen)
    low = float((Q * _apply_blocked(op, Q, block_size)).sum()) if Q.shape[1] else 0.0
    Z = _rademacher(P, g, gen, device)
    Z = Z - Q @ (Q.mT @ Z)
    samples = (Z * _apply_blocked(op, Z, block_size)).sum(0)
    return low + float(samples.mean()), float(samples.std() / math.sqrt(g))


# ----------------------------------------------------------------------------- density
def lanczos_quadrature(op: Any, probes: Tensor, num_steps: int) -> tuple[Tensor, Tensor]:
    """Gauss quadrature nodes and weights of the spectral measure seen by each probe.

    For each column v of ``probes`` (P × n, or a single (P,)), ``num_steps`` Lanczos steps with
    full reorthogonalisation give T = Vᵀ H V (tridiagonal); with T = U diag(θ) Uᵀ and q₁ = v/‖v‖,
    q₁ᵀ f(H) q₁ ≈ Σⱼ U₁ⱼ² f(θⱼ), exact for polynomials of degree < 2·``num_steps``.  Returns
    ``(nodes, weights)`` of shape (n, num_steps); the weights of each probe sum to 1 (padded
    with zero weights where the Krylov space was exhausted early).  All probes run together,
    one block product per step.
    """
    P = _size(op)
    if probes.ndim == 1:
        probes = probes[:, None]
    if probes.ndim != 2 or probes.shape[0] != P:
        raise ValueError(f"probes must have shape ({P},) or ({P}, n), got {tuple(probes.shape)}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be positive, got {num_steps}")
    device = _device(op)
    steps = min(num_steps, P)
    V = probes.to(device=device, dtype=torch.float64)
    n = V.shape[1]
    norms = V.norm(dim=0)
    if bool((norms == 0).any()):
        raise ValueError("a probe vector is zero")
    basis = torch.zeros(n, steps, P, dtype=torch.float64, device=device)
    alpha = torch.zeros(n, steps, dtype=torch.float64, device=device)
    beta = torch.zeros(n, steps, dtype=torch.float64, device=device)
    length = torch.full((n,), steps, dtype=torch.long)
    q = V / norms
    q_prev = torch.zeros_like(q)
    active = torch.ones(n, dtype=torch.bool, device=device)
    for j in range(steps):
        basis[:, j] = q.mT
        w = _apply(op, q)
        alpha[:, j] = (q * w).sum(0)
        w = w - alpha[:, j] * q - (beta[:, j - 1] * q_prev if j else 0.0)
        for _ in range(2):  # full reorthogonalisation, per probe, against its own basis
            B = basis[:, : j + 1]  # n × (j+1) × P
            w = w - torch.einsum("njp,nj->pn", B, torch.einsum("njp,pn->nj", B, w))
        bj = w.norm(dim=0)
        scale = alpha[:, : j + 1].abs().amax(1).clamp_min(1e-300)
        done = active & (bj <= 1e-10 * scale)
        for c in torch.nonzero(done).flatten().tolist():
            length[c] = j + 1
        active &= ~done
        if j + 1 == steps or not bool(active.any()):
            break
        beta[:, j] = torch.where(active, bj, torch.zeros_like(bj))
        q_prev, q = q, torch.where(active, w / bj.clamp_min(1e-300), torch.zeros_like(w))
    nodes = torch.zeros(n, steps, dtype=torch.float64, device=device)
    weights = torch.zeros_like(nodes)
    for c in range(n):
        L = int(length[c])
        Tc = torch.diag(alpha[c, :L])
        if L > 1:
            off = beta[c, : L - 1]
            Tc = Tc + torch.diag(off, 1) + torch.diag(off, -1)
        theta, U = torch.linalg.eigh(Tc)
        nodes[c, :L] = theta
        nodes[c, L:] = theta[-1]
        weights[c, :L] = U[0] ** 2
    return nodes, weights


def spectral_density(
    op: Any,
    *,
    num_probes: int = 8,
    num_steps: int = 64,
    grid: Tensor | int | None = None,
    sigma: float | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Smoothed spectral density φ(t) = (1/P) Σᵢ g_σ(t − λᵢ) by stochastic Lanczos quadrature.

    With unit probes v = z/√P (z Rademacher, E[vvᵀ] = I/P), φ(t) = E[vᵀ g_σ(t − H) v] ≈
    (1/n) Σ_probes Σⱼ wⱼ g_σ(t − θⱼ) from :func:`lanczos_quadrature` (``num_steps`` steps each),
    g_σ the Gaussian of width ``sigma``.  ``grid``: points (tensor) or a number of points
    (default 1000) spanning [θ_min − 5σ, θ_max + 5σ]; ``sigma`` defaults to 1% of that Ritz
    range.  Returns ``(grid, density)`` (float64, CPU), the density rescaled to integrate to 1
    over the grid (trapezoid rule).  Probes are run in groups whose Lanczos bases fit in 2 GiB.
    """
    P = _size(op)
    if num_probes < 1:
        raise ValueError(f"num_probes must be positive, got {num_probes}")
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    device = _device(op)
    gen = _generator(seed)
    steps = min(num_steps, P)
    group = max(1, min(num_probes, DENSITY_BYTES // max(1, P * steps * 8)))
    nodes, weights = [], []
    for a, b in tqdm(list(_column_blocks(num_probes, group)), desc="density", disable=not progress):
        z = _rademacher(P, b - a, gen, device) / math.sqrt(P)
        nd, wt = lanczos_quadrature(op, z, num_steps)
        nodes.append(nd.cpu())
        weights.append(wt.cpu())
    nodes_t, weights_t = torch.cat(nodes), torch.cat(weights)
    lo, hi = float(nodes_t.min()), float(nodes_t.max())
    width = hi - lo
    if sigma is None:
        sigma = 0.01 * width if width > 0 else max(abs(hi), 1.0) * 1e-3
    if grid is None or isinstance(grid, int):
        points = 1000 if grid is None else grid
        if points < 2:
            raise ValueError(f"the grid needs at least 2 points, got {points}")
        grid_t = torch.linspace(lo - 5 * sigma, hi + 5 * sigma, points, dtype=torch.float64)
    else:
        grid_t = torch.as_tensor(grid, dtype=torch.float64).flatten().cpu()
        if grid_t.numel() < 2 or not bool((grid_t.diff() > 0).all()):
            raise ValueError("grid must be increasing with at least 2 points")
    density = torch.zeros_like(grid_t)
    for nd, wt in zip(nodes_t, weights_t, strict=True):
        z = (grid_t[:, None] - nd[None, :]) / sigma
        density += (torch.exp(-0.5 * z**2) * wt).sum(1)
    density /= num_probes * sigma * math.sqrt(2 * math.pi)
    mass = float(torch.trapezoid(density, grid_t))
    if not mass > 0:
        raise ValueError(
            f"the grid [{float(grid_t[0]):.3g}, {float(grid_t[-1]):.3g}] holds none of the "
            f"spectrum (Ritz values in [{lo:.3g}, {hi:.3g}])"
        )
    return grid_t, density / mass


# ----------------------------------------------------------------------------- subsets
class RestrictedOperator:
    """H_SS: the operator restricted to the index set S (rows and columns).

    H_SS V = (H E V)[S], E the embedding of ℝ^|S| into ℝ^P by zero-padding.
    """

    def __init__(self, op: Any, indices: Tensor) -> None:
        P = _size(op)
        idx = torch.as_tensor(indices)
        if idx.dtype == torch.bool:
            if idx.shape != (P,):
                raise ValueError(f"a boolean mask must have shape ({P},), got {tuple(idx.shape)}")
            idx = torch.nonzero(idx).flatten()
        idx = idx.to(torch.long).flatten()
        if idx.numel() == 0:
            raise ValueError("the index set is empty")
        if int(idx.min()) < 0 or int(idx.max()) >= P:
            raise ValueError(
                f"indices must lie in [0, {P}), got [{int(idx.min())}, {int(idx.max())}]"
            )
        if torch.unique(idx).numel() != idx.numel():
            raise ValueError("indices must not repeat")
        self.op = op
        self.full_size = P
        self.indices = idx.to(_device(op))
        self.shape = (idx.numel(), idx.numel())
        self.dtype = _op_dtype(op)
        self.device = _device(op)

    def __matmul__(self, V: Tensor) -> Tensor:
        single = V.ndim == 1
        V2 = V[:, None] if single else V
        if V2.ndim != 2 or V2.shape[0] != self.shape[0]:
            raise ValueError(
                f"expected a vector ({self.shape[0]},) or block ({self.shape[0]}, k), got "
                f"{tuple(V.shape)}"
            )
        full = V2.new_zeros(self.full_size, V2.shape[1])
        full[self.indices.to(V2.device)] = V2
        out = (self.op @ full)[self.indices.to(V2.device)]
        return out[:, 0] if single else out

    def diagonal(self) -> Tensor:
        """diag H_SS = (diag H)[S], from the parent's ``diagonal()`` (its errors propagate)."""
        if not callable(getattr(self.op, "diagonal", None)):
            raise ValueError(f"{type(self.op).__name__} has no diagonal()")
        return self.op.diagonal()[self.indices]


def restrict(op: Any, indices: Tensor) -> RestrictedOperator:
    """The operator H_SS for an index tensor or a boolean mask S over the P coordinates."""
    return RestrictedOperator(op, indices)


@dataclass
class PrunedSpectrum:
    """Curvature of the pruned set S (see :func:`pruned_spectrum`)."""

    num_params: int
    num_pruned: int
    lambda_max_pruned: float
    top_eigenvalues: list[float]
    pruned_mass: list[float]
    second_order: float | None = None
    bound: float | None = None

    @property
    def expected_mass(self) -> float:
        """|S|/P: the mass a direction spread evenly over all parameters puts on S."""
        return self.num_pruned / self.num_params

    def as_dict(self) -> dict:
        return {
            "num_params": self.num_params,
            "num_pruned": self.num_pruned,
            "lambda_max_pruned": self.lambda_max_pruned,
            "top_eigenvalues": list(self.top_eigenvalues),
            "pruned_mass": list(self.pruned_mass),
            "expected_mass": self.expected_mass,
            "second_order": self.second_order,
            "bound": self.bound,
        }


def pruned_spectrum(
    op: Any,
    pruned: Tensor,
    *,
    theta: Tensor | None = None,
    k: int = 5,
    tol: float = 1e-6,
    seed: int = 0,
    eigenpairs: tuple[Tensor, Tensor] | None = None,
    lambda_max: float | None = None,
) -> PrunedSpectrum:
    """λ_max(H_SS) of the pruned set S, the bound it gives, and where H's top directions live.

    Deleting the weights S is the step −d with d = θ on S and 0 elsewhere, so the second-order
    change of the loss is ½dᵀHd = ½d_Sᵀ H_SS d_S ≤ ½ λ_max(H_SS) ‖d‖² (Rayleigh quotient).
    ``pruned_mass`` is ‖u_S‖² for each of H's top-k eigenvectors u (largest algebraic λ): how
    much of the sharpest curvature directions lies on the weights pruning removes (|S|/P for a
    direction spread evenly; near 0 when the kept and pruned weights do not interact).
    ``theta`` (flat parameters) adds ``second_order`` = ½dᵀHd and ``bound`` = ½λ_max‖d‖².
    ``eigenpairs`` (H's top-k from :func:`top_eigenpairs`) and ``lambda_max`` (of H_SS) reuse
    results the caller already has.
    """
    P = _size(op)
    mask = torch.as_tensor(pruned)
    if mask.dtype != torch.bool:
        m = torch.zeros(P, dtype=torch.bool)
        m[mask.to(torch.long).cpu()] = True
        mask = m
    if mask.shape != (P,):
        raise ValueError(f"the pruned mask must have shape ({P},), got {tuple(mask.shape)}")
    size = int(mask.sum())
    if size == 0:
        raise ValueError("the pruned set is empty")
    sub = restrict(op, mask)
    if lambda_max is not None:
        lam = float(lambda_max)
    elif size == 1:
        lam = float(_apply(sub, torch.ones(1, 1, dtype=torch.float64, device=sub.device)))
    else:
        lam = float(top_eigenpairs(sub, min(1, size - 1), tol=tol, seed=seed)[0][0])
    if eigenpairs is None:
        eigenpairs = top_eigenpairs(op, min(k, P - 1), tol=tol, seed=seed)
    evals, evecs = eigenpairs
    mass = (evecs[mask.to(evecs.device)] ** 2).sum(0)
    result = PrunedSpectrum(
        num_params=P,
        num_pruned=size,
        lambda_max_pruned=lam,
        top_eigenvalues=evals.cpu().tolist(),
        pruned_mass=mass.cpu().tolist(),
    )
    if theta is not None:
        theta = torch.as_tensor(theta).flatten()
        if theta.shape != (P,):
            raise ValueError(f"theta must have {P} entries, got {theta.numel()}")
        d = torch.where(mask, theta.detach().cpu().to(torch.float64), 0.0).to(_device(op))
        result.second_order = 0.5 * float(d @ _apply(op, d[:, None])[:, 0])
        result.bound = 0.5 * lam * float(d @ d)
    return result
