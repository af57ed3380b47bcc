"""Figures: the coadaptation matrix in the paper's style, estimator scatter plots, pruning curves.

Every function returns a matplotlib ``Figure`` and never calls ``plt.show``; :func:`save_figure`
writes it atomically (PNG and PDF).  Works without a display (matplotlib falls back to Agg).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from matplotlib.figure import Figure

from td_analysis.io import atomic_path
from td_analysis.taylor import ESTIMATORS, PruningEstimate, rank_correlations

__all__ = [
    "PUBLISHED_VMAX",
    "symmetric_limit",
    "plot_coadaptation",
    "figure1",
    "plot_estimates",
    "plot_pruning_curves",
    "plot_unit_dependence",
    "save_figure",
]

PUBLISHED_VMAX = 3000.0
ESTIMATOR_LABELS = {
    "first_order": "first order  −∇ᵀd",
    "second_order": "second order  ½dᵀHd",
    "diagonal": "diagonal (OBD)  ½Σ Hᵢᵢdᵢ²",
    "estimate": "full  −∇ᵀd + ½dᵀHd",
    "magnitude": "magnitude  Σ|dᵢ|",
}


def _to_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def symmetric_limit(*matrices: torch.Tensor | np.ndarray, quantile: float = 1.0) -> float:
    """A shared symmetric colour limit: the ``quantile`` of |entries| over all matrices."""
    values = np.concatenate([np.abs(_to_numpy(m)).ravel() for m in matrices])
    limit = float(np.quantile(values, quantile)) if values.size else 1.0
    return limit if limit > 0 else 1.0


def plot_coadaptation(
    C: torch.Tensor | np.ndarray,
    *,
    ax: plt.Axes | None = None,
    vmax: float | None = None,
    gamma: float | None = 0.75,
    title: str | None = None,
    colorbar: bool = True,
    cmap: str = "BrBG",
) -> Figure:
    """Heatmap of an ordered coadaptation matrix, diverging BrBG with limits ±``vmax``.

    With ``gamma`` a dashed marker shows where the lowest-magnitude fraction γ starts (the last
    γ·P rows/columns, those meant to be pruned).
    """
    M = _to_numpy(C)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {M.shape}")
    vmax = symmetric_limit(M) if vmax is None else float(vmax)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.6, 3.8))
    fig = ax.figure
    im = ax.imshow(M, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
    if gamma is not None:
        edge = M.shape[0] - int(gamma * M.shape[0]) - 0.5
        ax.axhline(edge, color="0.35", lw=0.8, ls="--")
        ax.axvline(edge, color="0.35", lw=0.8, ls="--")
    if title:
        ax.set_title(title, fontsize=10)
    if colorbar:
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return fig


def figure1(
    C_none: torch.Tensor | np.ndarray,
    C_td: torch.Tensor | np.ndarray,
    *,
    gamma: float = 0.75,
    vmax: float | None = None,
    titles: tuple[str, str] = ("unregularised", "targeted dropout γ=0.75, α=0.5"),
    suptitle: str | None = None,
) -> Figure:
    """The paper's Figure 1: θᵀ⊙H⊙θ ordered by decreasing |θ|, without and with targeted dropout.

    Both panels share the symmetric colour limit (``vmax``; default the largest |entry| of the
    two, ``PUBLISHED_VMAX`` = 3000 reproduces the published scale).
    """
    vmax = symmetric_limit(C_none, C_td) if vmax is None else float(vmax)
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.0), layout="constrained")
    for ax, C, title in zip(axes, (C_none, C_td), titles, strict=True):
        plot_coadaptation(C, ax=ax, vmax=vmax, gamma=gamma, title=title, colorbar=False)
        ax.set_xlabel("parameter, by decreasing |θ|")
    axes[0].set_ylabel("parameter, by decreasing |θ|")
    im = axes[1].images[0]
    fig.colorbar(im, ax=axes, shrink=0.9, label="θᵢ Hᵢⱼ θⱼ")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def plot_unit_dependence(
    D: torch.Tensor | np.ndarray,
    labels: Sequence[str] | None = None,
    *,
    ax: plt.Axes | None = None,
    title: str | None = "summed dependence between units",
) -> Figure:
    """Units × units map of summed coadaptation (seaborn heatmap, symmetric BrBG)."""
    M = _to_numpy(D)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 4.4))
    vmax = symmetric_limit(M)
    sns.heatmap(
        M,
        ax=ax,
        cmap="BrBG",
        vmin=-vmax,
        vmax=vmax,
        center=0.0,
        square=True,
        xticklabels=labels if labels is not None else "auto",
        yticklabels=labels if labels is not None else "auto",
    )
    if title:
        ax.set_title(title, fontsize=10)
    return ax.figure


def plot_estimates(
    groups: Mapping[str, Sequence[PruningEstimate]],
    estimators: Sequence[str] = ESTIMATORS,
    *,
    title: str | None = None,
) -> Figure:
    """One panel per estimator: estimate vs measured ΔE, a point per deletion, one colour per
    group, with Spearman's ρ of each group printed on the panel and the line y = x."""
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimators {unknown}; choose from {ESTIMATORS}")
    n = len(estimators)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.4), layout="constrained", squeeze=False)
    palette = sns.color_palette("colorblind", len(groups))
    for ax, est in zip(axes[0], estimators, strict=True):
        lo, hi = np.inf, -np.inf
        lines = []
        for colour, (label, rows) in zip(palette, groups.items(), strict=True):
            if not rows:
                continue
            x = np.array([r.measured for r in rows])
            y = np.array([getattr(r, est) for r in rows])
            ax.scatter(x, y, s=14, color=colour, label=label, alpha=0.8, edgecolor="none")
            rho = rank_correlations(rows)[est]
            lines.append(f"{label}: ρ={rho:.2f}")
            if est != "magnitude":
                lo, hi = min(lo, x.min(), y.min()), max(hi, x.max(), y.max())
        if est != "magnitude" and np.isfinite(lo):
            ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8, ls=":")
        ax.text(
            0.03,
            0.97,
            "\n".join(lines),
            transform=ax.transAxes,
            va="top",
            fontsize=7.5,
            bbox={"boxstyle": "round", "fc": "white", "ec": "0.8", "alpha": 0.9},
        )
        ax.set_title(ESTIMATOR_LABELS[est], fontsize=9)
        ax.set_xlabel("measured ΔE")
    axes[0][0].set_ylabel("estimate")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_pruning_curves(rows: Sequence[Mapping], *, title: str | None = None) -> Figure:
    """Accuracy vs pruned fraction, one panel per pruning kind, one line per regulariser.

    ``rows`` are dicts with ``regulariser``, ``kind``, ``fraction``, ``accuracy`` (and any
    ``seed``): seaborn draws the mean over seeds with a ±1 std band.
    """
    import pandas as pd

    df = pd.DataFrame(list(rows))
    need = {"regulariser", "kind", "fraction", "accuracy"}
    if df.empty or not need <= set(df.columns):
        raise ValueError(f"rows must be dicts with keys {sorted(need)}")
    kinds = list(dict.fromkeys(df["kind"]))
    fig, axes = plt.subplots(
        1,
        len(kinds),
        figsize=(4.6 * len(kinds), 3.6),
        squeeze=False,
        layout="constrained",
        sharey=True,
    )
    for ax, kind in zip(axes[0], kinds, strict=True):
        sub = df[df["kind"] == kind].assign(accuracy_pct=lambda d: 100 * d["accuracy"])
        sns.lineplot(
            data=sub,
            x="fraction",
            y="accuracy_pct",
            hue="regulariser",
            errorbar="sd",
            marker="o",
            ax=ax,
            palette="colorblind",
            markersize=4,
        )
        ax.set_title(f"{kind} pruning", fontsize=10)
        ax.set_xlabel("fraction pruned")
        ax.set_ylabel("accuracy (%)")
        ax.axhline(10, color="0.6", lw=0.7, ls=":")
        ax.legend(fontsize=7, title=None)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def save_figure(
    fig: Figure, path: str | Path, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150
) -> list[Path]:
    """Save ``fig`` as ``path`` with each suffix in ``formats`` (atomically); returns the paths."""
    path = Path(path)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        with atomic_path(target, suffix=f".{fmt}") as tmp:
            fig.savefig(
                tmp,
                format=fmt,
                dpi=dpi,
                bbox_inches="tight",
                metadata={"CreationDate": None} if fmt == "pdf" else None,
            )
        written.append(target)
    return written
