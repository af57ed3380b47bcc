"""Top eigenpairs of a symmetric operator: restarted block Lanczos with full
reorthogonalisation and Rayleigh–Ritz, converged when every residual ‖Hv − λv‖ ≤ tol · ‖H‖."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor

from td_analysis.curvature.algorithms.base import (
    apply_block,
    basis_dtype,
    check_which,
    cpu_generator,
    dense_matrix,
    fix_signs,
    gaussian_block,
    operator_device,
    operator_dtype,
    operator_size,
    orthonormal_extension,
    rank_tol,
    select_ritz,
)
from td_analysis.utils.progress import progress_bar as tqdm  # a bar on a terminal only

__all__ = [
    "top_eigenpairs",
]

#: top_eigenpairs stops (with a warning) when its residual has not halved in this many products.
STAGNATION = 60
#: Gram–Schmidt is repeated when a row keeps less than this share of its norm (DGKS criterion).
DGKS = 2**-0.5


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
    P = operator_size(op)
    check_which(which)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < P:
        raise ValueError(f"k must be an integer with 1 <= k < P = {P}, got {k!r}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    device = operator_device(op)
    b = max(1, min(P, block_size if block_size is not None else min(k, 4)))
    keep = min(P, k + b)
    m = basis_size if basis_size is not None else max(keep + 3 * b, 2 * k + 20)
    if m < keep + b:
        raise ValueError(f"basis_size must be at least k + 2·block_size = {keep + b}, got {m}")
    if m >= P:
        evals, evecs = torch.linalg.eigh(dense_matrix(op, P, device))
        idx = select_ritz(evals, which, k)
        return evals[idx], fix_signs(evecs[:, idx])
    max_iter = max_iter if max_iter is not None else 500

    gen = cpu_generator(seed)
    work = basis_dtype(op)
    # basis and its image stored as rows (m × P) in the operator's precision: contiguous row
    # writes and GEMMs; the small projected matrices in float64
    Qt = torch.empty(m, P, dtype=work, device=device)
    HQt = torch.empty_like(Qt)
    T = torch.zeros(m, m, dtype=torch.float64, device=device)  # QᵀHQ
    G = torch.zeros(m, m, dtype=torch.float64, device=device)  # (HQ)ᵀ(HQ), for residual norms
    n = 0
    block = orthonormal_extension(Qt[:0].mT, gaussian_block(P, b, gen, device).to(work), gen).mT
    products, worst, best, best_at = 0, math.inf, math.inf, 0
    # below ~√ε of the products' precision yᵀGy − θ² is rounding: residuals computed explicitly
    floor = 10 * math.sqrt(torch.finfo(operator_dtype(op)).eps)
    bar = tqdm(total=max_iter, desc="eigenpairs", unit="block", disable=not progress)
    while True:
        # extend the basis by one block and its image
        nb = block.shape[0]
        Qt[n : n + nb] = block
        HQt[n : n + nb] = apply_block(op, block.mT, work).mT
        products += 1
        bar.update()
        T[: n + nb, n : n + nb] = Qt[: n + nb] @ HQt[n : n + nb].mT
        T[n : n + nb, :n] = T[:n, n : n + nb].mT
        G[: n + nb, n : n + nb] = HQt[: n + nb] @ HQt[n : n + nb].mT
        G[n : n + nb, :n] = G[:n, n : n + nb].mT
        n += nb
        # Rayleigh–Ritz; ‖HQy − θQy‖² = yᵀGy − θ² (QᵀHQy = θy, ‖y‖ = 1)
        theta, Y = torch.linalg.eigh((T[:n, :n] + T[:n, :n].mT) * 0.5)
        want = select_ritz(theta, which, k)
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
                f"of the operator's {operator_dtype(op)} products",
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
            kept = select_ritz(theta, which, min(keep, n))
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
            small = rank_tol(work, 1e-14) ** 2  # squared: eigenvalues of RRᵀ
            count = max(1, min(b, int((evals > small * evals.max().clamp_min(1e-300)).sum())))
            nxt, known = W[:, -count:].mT.to(work) @ Rk, None
        else:  # the new image: its coefficients on the basis are T's last block column
            nxt, known = HQt[n - nb : n], T[:n, n - nb : n].mT.to(work)
        block = _extend_rows(Qt[:n], nxt, gen, min(b, m - n), coeffs=known)
        if block.shape[0] == 0:  # the whole space is spanned: Rayleigh–Ritz was exact
            break
    bar.close()
    if work == torch.float64:
        return tw.clone(), fix_signs((Yw.mT @ Qt[:n]).mT)
    values, vecs = _rayleigh_quotients(Yw, Qt[:n], HQt[:n])
    order = select_ritz(values, which, k)
    return values[order], fix_signs(vecs[:, order])


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
    falls back to :func:`orthonormal_extension` (rank-revealing, random refill) when X is
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
        if bool((R.diagonal().abs() > rank_tol(X.dtype, 1e-8) * ref).all()):
            return Qx.mT
    return orthonormal_extension(Qt.mT, X.mT, gen, want=want).mT
