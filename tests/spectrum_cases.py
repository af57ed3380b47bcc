"""Shared cases for the spectrum algorithms: symmetric matrices with known spectra (networks'
Hessians come from the shared dense cases and references in ``zoo``)."""

from __future__ import annotations

import torch
from torch import Tensor

F64 = torch.float64


def with_spectrum(eigenvalues, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(A, U): A = U diag(λ) Uᵀ for a random orthogonal U (float64), columns of U = eigvecs."""
    lam = torch.as_tensor(eigenvalues, dtype=F64)
    gen = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(lam.numel(), lam.numel(), generator=gen, dtype=F64))
    A = (U * lam) @ U.mT
    return (A + A.mT) / 2, U


def known_spectra(P: int = 120) -> dict[str, Tensor]:
    """Spectra exercising separated, degenerate, clustered and indefinite cases."""
    rest = torch.linspace(-1.0, 1.0, P - 8, dtype=F64)
    return {
        "separated": torch.cat([torch.tensor([20.0, 15, 11, 8, 6, 4.5, 3.5, 2.5]), rest]),
        # top eigenvalue of multiplicity 3, the next of multiplicity 2
        "degenerate": torch.cat([torch.tensor([9.0, 9, 9, 7, 7, 5, 4, 3]), rest]),
        # a tight cluster at the top (relative gaps 1e-3)
        "clustered": torch.cat([torch.tensor([10.0, 9.99, 9.98, 9.97, 9.96, 5, 4, 3]), rest]),
        # large negative curvature: 'magnitude' and 'largest' differ
        "indefinite": torch.cat([torch.tensor([-30.0, -25, 12, 10, -9, 8, 6, 5]), rest]),
    }


def sorted_reference(lam: Tensor, which: str) -> Tensor:
    if which == "largest":
        return lam.sort(descending=True).values
    if which == "smallest":
        return lam.sort().values
    return lam[lam.abs().argsort(descending=True)]
