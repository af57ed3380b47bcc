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

from td_analysis.analysis.taylor import ESTIMATORS, PruningEstimate, rank_correlations
from td_analysis.utils.io import atomic_path

__all__ = [
    "PUBLISHED_VMAX",
    "symmetric_limit",
    "plot_coadaptation",
    "figure1",
    "plot_estimates",
    "plot_pruning_curves",
    "plot_unit_dependence",
    "save_figure",
    "plot_accuracy_vs_k",
    "plot_paired_differences",
    "plot_taylor_records",
    "coadaptation_panels",
    "plot_layer_maps",
    "plot_spectral_density",
    "plot_spectra",
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
        _finish_estimator_panel(ax, est, lines, fontsize=7.5)
    _finish_estimator_figure(fig, axes, title, legend_size=7)
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
    """Save ``fig`` as ``path`` with each suffix in ``formats`` (atomically); returns the paths.

    ``path`` is a stem, its whole name kept (``td_gamma0.75-spectrum`` →
    ``td_gamma0.75-spectrum.png``, never ``td_gamma0.png``); a trailing ``.png``/``.pdf`` is
    dropped first (:func:`td_analysis.utils.cliargs.output_stem`)."""
    from td_analysis.utils.cliargs import output_stem

    stem = output_stem(path, "")
    written = []
    for fmt in formats:
        target = Path(f"{stem}.{fmt}")
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


def plot_accuracy_vs_k(records: Sequence[Mapping], *, title: str | None = None) -> Figure:
    """Accuracy (%) vs pruned percentage k, one panel per kind (``weight``, ``unit``).

    ``records`` as in ``pruning.json`` (``regulariser``, ``bias``, ``seed``, ``kind``, ``k``,
    ``accuracy``): one colour per regulariser, solid with biases and dashed without; seaborn
    draws the mean over seeds with a ±1 std band.
    """
    import pandas as pd

    df = pd.DataFrame(list(records))
    need = {"regulariser", "bias", "kind", "k", "accuracy"}
    if df.empty or not need <= set(df.columns):
        raise ValueError(f"records must be dicts with keys {sorted(need)}")
    df = df.assign(
        accuracy_pct=100 * df["accuracy"],
        biases=df["bias"].map({True: "bias", False: "no bias"}),
    )
    kinds = list(dict.fromkeys(df["kind"]))
    fig, axes = plt.subplots(
        1, len(kinds), figsize=(5.2 * len(kinds), 3.9), squeeze=False, layout="constrained"
    )
    for ax, kind in zip(axes[0], kinds, strict=True):
        sns.lineplot(
            data=df[df["kind"] == kind],
            x="k",
            y="accuracy_pct",
            hue="regulariser",
            style="biases",
            style_order=["bias", "no bias"],
            errorbar="sd",
            marker="o",
            markersize=4,
            palette="colorblind",
            ax=ax,
        )
        ax.set_title(f"{kind} pruning", fontsize=10)
        ax.set_xlabel("k: percent of each hidden layer pruned")
        ax.set_ylabel("test accuracy (%)")
        ax.axhline(10, color="0.6", lw=0.7, ls=":")
        ax.legend(fontsize=7, title=None)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_paired_differences(
    panels: Mapping[str, Mapping[str, Sequence[tuple[float, object]]]],
    *,
    xlabel: str,
    ylabel: str = "difference in accuracy (points)",
    scale: float = 100.0,
    ncols: int = 2,
    title: str | None = None,
) -> Figure:
    """Paired differences against x with their confidence bands: one panel per key of
    ``panels``, one line per comparison, each a list of ``(x, d)`` with ``d`` a
    :class:`td_analysis.analysis.statistics.PairedDifference` (line at ``scale·d.mean``, band from
    ``scale·d.lo`` to ``scale·d.hi``); a dotted line marks 0 (no difference)."""
    if not panels:
        raise ValueError("no panels to plot")
    n = len(panels)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(5.0 * ncols, 3.7 * nrows),
        squeeze=False,
        layout="constrained",
        sharex=True,
    )
    colours = sns.color_palette("colorblind")
    for ax, (panel, lines) in zip(axes.flat, panels.items(), strict=False):
        for i, (label, curve) in enumerate(lines.items()):
            if not curve:
                continue
            xs = np.array([x for x, _ in curve], dtype=float)
            mean = scale * np.array([d.mean for _, d in curve])
            lo = scale * np.array([d.lo for _, d in curve])
            hi = scale * np.array([d.hi for _, d in curve])
            c = colours[i % len(colours)]
            level = curve[0][1].level
            ax.plot(xs, mean, marker="o", markersize=3, color=c, label=label)
            ax.fill_between(xs, lo, hi, color=c, alpha=0.2, lw=0)
        ax.axhline(0, color="0.3", lw=0.8, ls=":")
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, title=f"mean, {level:.0%} t band", title_fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_taylor_records(
    records: Sequence[Mapping],
    estimators: Sequence[str] = ("first_order", "second_order", "diagonal", "estimate"),
    *,
    title: str | None = None,
) -> Figure:
    """One panel per estimator: estimate vs measured ΔE of each pruning record (``taylor.json``),
    one colour per regulariser, circles for weight and crosses for unit pruning, Spearman's ρ of
    each regulariser printed on the panel and the line y = x."""
    from scipy import stats

    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimators {unknown}; choose from {ESTIMATORS}")
    if not records:
        raise ValueError("no records to plot")
    regs = list(dict.fromkeys(r["regulariser"] for r in records))
    palette = dict(zip(regs, sns.color_palette("colorblind", len(regs)), strict=True))
    markers = {"weight": "o", "unit": "x"}
    n = len(estimators)
    fig, axes = plt.subplots(1, n, figsize=(3.5 * n, 3.6), layout="constrained", squeeze=False)
    for ax, est in zip(axes[0], estimators, strict=True):
        lines = []
        x_all = np.array([r["measured"] for r in records])
        y_all = np.array([r[est] for r in records])
        for reg in regs:
            rows = [r for r in records if r["regulariser"] == reg]
            for kind, marker in markers.items():
                sub = [r for r in rows if r["kind"] == kind]
                if sub:
                    ax.scatter(
                        [r["measured"] for r in sub],
                        [r[est] for r in sub],
                        s=14,
                        marker=marker,
                        color=palette[reg],
                        alpha=0.8,
                        label=f"{reg} ({kind})",
                    )
            xs = np.array([r["measured"] for r in rows])
            ys = np.array([r[est] for r in rows])
            ok = len(rows) >= 3 and np.ptp(xs) > 0 and np.ptp(ys) > 0
            rho = stats.spearmanr(ys, xs).statistic if ok else float("nan")
            lines.append(f"{reg}: ρ={rho:.2f}")
        finite = np.isfinite(x_all) & np.isfinite(y_all)
        if finite.any():
            lo = min(x_all[finite].min(), y_all[finite].min())
            hi = max(x_all[finite].max(), y_all[finite].max())
            ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8, ls=":")
        ax.set_xscale("symlog", linthresh=1e-3)
        ax.set_yscale("symlog", linthresh=1e-3)
        _finish_estimator_panel(ax, est, lines, fontsize=7)
    _finish_estimator_figure(fig, axes, title, legend_size=6)
    return fig


def coadaptation_panels(
    matrices: Mapping[str, torch.Tensor | np.ndarray],
    *,
    gamma: float | None = None,
    quantile: float = 0.99,
    suptitle: str | None = None,
) -> Figure:
    """Ordered (pooled) coadaptation matrices side by side on one shared BrBG colour scale,
    clipped at the ``quantile`` of |entries| (the top bin dwarfs the rest)."""
    if not matrices:
        raise ValueError("no matrices to plot")
    vmax = symmetric_limit(*matrices.values(), quantile=quantile)
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 4.0), layout="constrained", squeeze=False)
    for i, (ax, (label, M)) in enumerate(zip(axes[0], matrices.items(), strict=True)):
        plot_coadaptation(M, ax=ax, vmax=vmax, gamma=gamma, title=label, colorbar=i == n - 1)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def plot_layer_maps(
    full: Mapping[str, np.ndarray],
    pruned: Mapping[str, np.ndarray] | None,
    layers: Sequence[str],
    *,
    prune_k: float | None = None,
) -> Figure:
    """Layer × layer sums of θᵀ⊙H⊙θ, one column per network: all weights (top row) and the
    weights deleted by pruning (bottom row, if ``pruned``), annotated, shared colour scale per
    row."""
    rows = [("all weights", full)] + ([] if pruned is None else [("pruned weights", pruned)])
    n = len(full)
    fig, axes = plt.subplots(
        len(rows), n, figsize=(3.6 * n, 3.2 * len(rows)), layout="constrained", squeeze=False
    )
    ticks = [name.rsplit(".", 1)[-1] for name in layers]
    for r, (what, maps) in enumerate(rows):
        vmax = symmetric_limit(*maps.values())
        for c, (label, M) in enumerate(maps.items()):
            ax = axes[r][c]
            sns.heatmap(
                np.asarray(M),
                ax=ax,
                cmap="BrBG",
                vmin=-vmax,
                vmax=vmax,
                annot=True,
                fmt=".2g",
                annot_kws={"fontsize": 6},
                xticklabels=ticks,
                yticklabels=ticks,
                cbar=c == n - 1,
                square=True,
            )
            where = f" (k = {prune_k:g}%)" if (what == "pruned weights" and prune_k) else ""
            ax.set_title(f"{label}: {what}{where}", fontsize=8)
            ax.set_xlabel("layer")
            ax.set_ylabel("layer")
    return fig


def plot_spectral_density(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    eigenvalues: Mapping[str, Sequence[float]] | None = None,
    ax: plt.Axes | None = None,
    title: str | None = None,
    floor: float = 1e-7,
) -> Figure:
    """Smoothed spectral densities ``{label: (grid, density)}`` on a log scale (clipped at
    ``floor`` × the peak), with each label's top eigenvalues as dotted vertical lines."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    else:
        fig = ax.figure
    colors = sns.color_palette("colorblind", max(1, len(curves)))
    peak = max((float(np.max(d)) for _, d in curves.values()), default=1.0)
    for (label, (grid, dens)), color in zip(curves.items(), colors, strict=False):
        d = np.maximum(np.asarray(dens, dtype=float), floor * peak)
        ax.semilogy(np.asarray(grid, dtype=float), d, color=color, lw=1.2, label=label)
        for v in (eigenvalues or {}).get(label, []):
            ax.axvline(v, color=color, lw=0.7, ls=":", alpha=0.9)
    ax.set_ylim(bottom=floor * peak)
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("density")
    if len(curves) > 1 or eigenvalues:
        ax.legend(
            fontsize=7, title="dotted: top eigenvalues" if eigenvalues else None, title_fontsize=7
        )
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def plot_spectra(data: Mapping[str, Mapping], *, title: str | None = None) -> Figure:
    """Hessian spectra of several networks (``td_analysis.analysis.spectra.spectra_figure_data``):
    one panel each for the whole network, every layer and the pruned set's block H_SS, one curve
    per network; the pruned panel lists λ_max(H_SS) and the top eigenvectors' mass on S."""
    names = list(data)
    if not names:
        raise ValueError("no spectra to plot")
    layers = list(data[names[0]]["layers"])
    panels = [("whole network", lambda e: e["whole"])]
    panels += [(f"layer {name}", lambda e, n=name: e["layers"][n]) for name in layers]
    panels.append(("pruned set: H_SS", lambda e: e["pruned"]))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.3 * len(panels), 3.6), layout="constrained", squeeze=False
    )
    for ax, (label, get) in zip(axes[0], panels, strict=True):
        curves = {n: (get(data[n])["grid"], get(data[n])["density"]) for n in names}
        plot_spectral_density(
            curves, eigenvalues={n: get(data[n])["eigenvalues"] for n in names}, ax=ax
        )
        ax.set_title(f"{label} ({get(data[names[0]])['num_params']:,} parameters)", fontsize=9)
    lines = []
    for n in names:
        s = data[n].get("pruned_summary")
        if s:
            mass = float(np.mean(s["pruned_mass"]))
            lines.append(
                f"{n}: λmax(H_SS) = {s['lambda_max_pruned']:.3g}, top-{len(s['pruned_mass'])} "
                f"eigvec mass on S = {mass:.2f} (even: {s['expected_mass']:.2f})"
            )
    if lines:
        axes[0][-1].text(
            0.02,
            0.02,
            "\n".join(lines),
            transform=axes[0][-1].transAxes,
            fontsize=6.5,
            va="bottom",
            ha="left",
            bbox={"facecolor": "white", "alpha": 0.8, "lw": 0},
        )
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _finish_estimator_panel(ax: plt.Axes, est: str, lines: list[str], *, fontsize: float) -> None:
    """The ρ box (one line per group), title and x label of one estimator panel."""
    ax.text(
        0.03,
        0.97,
        "\n".join(lines),
        transform=ax.transAxes,
        va="top",
        fontsize=fontsize,
        bbox={"boxstyle": "round", "fc": "white", "ec": "0.8", "alpha": 0.9},
    )
    ax.set_title(ESTIMATOR_LABELS[est], fontsize=9)
    ax.set_xlabel("measured ΔE")


def _finish_estimator_figure(fig: Figure, axes, title: str | None, *, legend_size: float) -> None:
    """y label, legend and title of a row of estimator panels."""
    axes[0][0].set_ylabel("estimate")
    axes[0][-1].legend(fontsize=legend_size, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
