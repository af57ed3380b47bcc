"""Spectral density of a symmetric operator by stochastic Lanczos quadrature: m Lanczos
steps from each Rademacher probe give Gauss nodes and weights, φ(t) ≈ Σ wⱼ g_σ(t − λⱼ)
(Gaussian smoothing)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from td_analysis.curvature.algorithms.base import (
    apply_block,
    column_blocks,
    cpu_generator,
    operator_device,
    operator_size,
    rademacher_block,
)
from td_analysis.utils.progress import progress_bar as tqdm  # a bar on a terminal only

__all__ = [
    "lanczos_quadrature",
    "spectral_density",
]

#: Memory budget (bytes) for the Lanczos bases of a group of density probes.
DENSITY_BYTES = 2 * 2**30


def lanczos_quadrature(op: Any, probes: Tensor, num_steps: int) -> tuple[Tensor, Tensor]:
    """Gauss quadrature nodes and weights of the spectral measure seen by each probe.

    For each column v of ``probes`` (P × n, or a single (P,)), ``num_steps`` Lanczos steps with
    full reorthogonalisation give T = Vᵀ H V (tridiagonal); with T = U diag(θ) Uᵀ and q₁ = v/‖v‖,
    q₁ᵀ f(H) q₁ ≈ Σⱼ U₁ⱼ² f(θⱼ), exact for polynomials of degree < 2·``num_steps``.  Returns
    ``(nodes, weights)`` of shape (n, num_steps); the weights of each probe sum to 1 (padded
    with zero weights where the Krylov space was exhausted early).  All probes run together,
    one block product per step.
    """
    P = operator_size(op)
    if probes.ndim == 1:
        probes = probes[:, None]
    if probes.ndim != 2 or probes.shape[0] != P:
        raise ValueError(f"probes must have shape ({P},) or ({P}, n), got {tuple(probes.shape)}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be positive, got {num_steps}")
    device = operator_device(op)
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
        w = apply_block(op, q)
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
    P = operator_size(op)
    if num_probes < 1:
        raise ValueError(f"num_probes must be positive, got {num_probes}")
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    device = operator_device(op)
    gen = cpu_generator(seed)
    steps = min(num_steps, P)
    group = max(1, min(num_probes, DENSITY_BYTES // max(1, P * steps * 8)))
    nodes, weights = [], []
    for a, b in tqdm(list(column_blocks(num_probes, group)), desc="density", disable=not progress):
        z = rademacher_block(P, b - a, gen, device) / math.sqrt(P)
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
