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


class HouseholderOperator:
    """A = R diag(λ) R with the reflection R = I − 2uuᵀ: a large symmetric operator with a known
    spectrum whose products cost O(P), applied in ``dtype`` (float32 by default)."""

    def __init__(self, eigenvalues: Tensor, seed: int = 0, dtype: torch.dtype = torch.float32):
        gen = torch.Generator().manual_seed(seed)
        u = torch.randn(eigenvalues.numel(), generator=gen, dtype=F64)
        self.u = (u / u.norm()).to(dtype)
        self.d = eigenvalues.to(dtype)
        self.shape = (eigenvalues.numel(), eigenvalues.numel())
        self.dtype = dtype
        self.device = torch.device("cpu")

    def __matmul__(self, V: Tensor) -> Tensor:
        W = V if V.ndim == 2 else V[:, None]
        W = W - 2 * self.u[:, None] * (self.u @ W)
        W = self.d[:, None] * W
        W = W - 2 * self.u[:, None] * (self.u @ W)
        return W if V.ndim == 2 else W[:, 0]

    def eigenvector(self, i: int) -> Tensor:
        """R eᵢ (float64)."""
        u = self.u.to(F64)
        return -2 * u[i] * u + torch.nn.functional.one_hot(torch.tensor(i), len(u)).to(F64)
