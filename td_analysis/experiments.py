"""The paper's toy experiment end to end: ``td-analysis reproduce`` (Figure 1, Table 1, estimator
plots, pruning curves), built from the package's modules.

Defaults (documented in the README and ``figures/README.md``):

* toy network 3072 → 10 → 10, trained as :class:`td_analysis.training.TrainConfig` says, for
  seeds 0, 1, 2, unregularised and with targeted weight dropout γ = 0.75, α = 0.5;
* Table 1: weight pruning of 75% of every output unit's incoming weights in *both* layers; the
  Taylor estimate ``|−∇ᵀd + ½dᵀHd|`` and the measured ``|E(θ−d) − E(θ)|`` use the mean
  cross-entropy on the split, in float64;
* Figure 1: ``C = θᵀ⊙H⊙θ`` over the 100 hidden→output weights (``layers.1.weight``), H of the
  cross-entropy *summed* over the 10,000 holdout images, float64, ordered by decreasing |θ|:
  this gives the published 100 × 100 picture with entries in the thousands.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from td_analysis.cache import cached, fingerprint
from td_analysis.coadaptation import (
    block_summary,
    magnitude_order,
    ordered_coadaptation,
    pooled_coadaptation,
    pruned_set,
)
from td_analysis.curvature import hessian
from td_analysis.data import load_cifar10
from td_analysis.dropout import RegulariserConfig
from td_analysis.io import atomic_write_json, atomic_write_text
from td_analysis.models import DenseNet
from td_analysis.pruning import pruning_curve, pruning_masks
from td_analysis.taylor import estimate_pruning, pruning_sweep, random_mask_sweep, rank_correlations
from td_analysis.training import TrainConfig, load_checkpoint, save_checkpoint, train

__all__ = [
    "PAPER_TABLE1",
    "ReproduceSettings",
    "regulariser_suite",
    "train_or_load",
    "figure1_matrices",
    "reproduce",
    "add_commands",
]

PAPER_TABLE1 = {
    "none": {"abs_delta_e": 0.120698, "unpruned_accuracy": 0.3811, "pruned_accuracy": 0.2613},
    "targeted-weight": {
        "abs_delta_e": 0.0145907,
        "unpruned_accuracy": 0.4009,
        "pruned_accuracy": 0.4014,
    },
}
FIGURE_PARAMS = "layers.1.weight"


@dataclass
class ReproduceSettings:
    """What ``td-analysis reproduce`` runs; ``quick()`` is the small setting for CI."""

    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 20
    gamma: float = 0.75
    alpha: float = 0.5
    prune_fraction: float = 0.75
    splits: tuple[str, ...] = ("holdout", "test")
    figure_split: str = "holdout"
    figure_reduction: str = "sum"
    eval_limit: int | None = None
    vmax: float | None = None
    curves: bool = True
    curve_fractions: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.9, 0.95)
    sweep_fractions: tuple[float, ...] = (0.05, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.85, 0.9, 0.95)
    random_masks: int = 40
    pooled_bins: int = 128
    base: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def quick(cls, **overrides) -> ReproduceSettings:
        """Two seeds, 2 epochs, 2,000 evaluation images: the whole pipeline in about a minute."""
        defaults = dict(
            seeds=(0, 1),
            epochs=2,
            eval_limit=2000,
            curve_fractions=(0.0, 0.5, 0.75, 0.95),
            sweep_fractions=(0.1, 0.5, 0.75, 0.95),
            random_masks=8,
            pooled_bins=32,
        )
        defaults.update(overrides)
        return cls(**defaults)

    def to_dict(self) -> dict:
        """A JSON-able dict of the settings."""
        d = asdict(self)
        d["base"] = self.base.to_dict()
        return d


def regulariser_suite(settings: ReproduceSettings) -> dict[str, RegulariserConfig]:
    """The regularisers compared: Table 1's two, and the pruning-curve baselines."""
    g, a = settings.gamma, settings.alpha
    steps = settings.epochs * math.ceil(40000 / settings.base.batch_size)
    suite = {
        "none": RegulariserConfig(),
        "targeted-weight": RegulariserConfig("targeted-weight", gamma=g, alpha=a),
    }
    if settings.curves:
        suite.update(
            {
                "targeted-weight ramp": RegulariserConfig(
                    "targeted-weight", gamma=g, alpha=a, ramp_steps=max(1, steps // 2)
                ),
                # units of the hidden layer only: unit pruning never removes logits
                "targeted-unit": RegulariserConfig("targeted-unit", gamma=g, alpha=a, layers=[0]),
                "dropout": RegulariserConfig("dropout", alpha=0.25),
                "L1": RegulariserConfig("l1", l1=1e-4),
            }
        )
    return suite


def train_or_load(
    config: TrainConfig,
    runs_dir: str | Path,
    *,
    data: dict[str, tuple[Tensor, Tensor]] | None = None,
    data_root: str | Path | None = None,
    progress: bool = True,
) -> DenseNet:
    """The trained model of ``config``: loaded from ``runs_dir`` if a checkpoint of exactly this
    config exists (the file name carries a hash of the config), else trained and saved."""
    key = fingerprint(config.to_dict())[:12]
    path = Path(runs_dir) / f"{config.regulariser.kind}-seed{config.seed}-{key}.pt"
    if path.is_file():
        ckpt = load_checkpoint(path)
        if ckpt.config.to_dict() == config.to_dict():
            return ckpt.model
    data = data or {}
    result = train(
        config,
        train_data=data.get(config.train_split),
        eval_data=data.get(config.eval_split),
        data_root=data_root,
        progress=progress,
    )
    save_checkpoint(path, result.model, config, {"history": result.history, **result.final})
    return result.model


def figure1_matrices(
    model: DenseNet,
    inputs: Tensor,
    targets: Tensor,
    *,
    params: str = FIGURE_PARAMS,
    reduction: str = "sum",
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> tuple[Tensor, object]:
    """Ordered C = θᵀ⊙H⊙θ over ``params`` (float64) and its :class:`MagnitudeOrder`."""
    order = magnitude_order(model, params)

    def compute() -> Tensor:
        return hessian(
            model, inputs, targets, params=order.names, reduction=reduction, dtype=torch.float64
        )

    H = cached(
        "hessian",
        compute,
        model,
        inputs,
        targets,
        order.names,
        reduction,
        "float64",
        cache_dir=cache_dir,
        enabled=use_cache,
    )
    return ordered_coadaptation(order, H), order


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def _fmt(values: Sequence[float], pct: bool = False, digits: int = 4) -> str:
    m, s = _mean_std(values)
    if pct:
        return f"{100 * m:.2f} ± {100 * s:.2f}%"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def _table_markdown(
    results: dict, settings: ReproduceSettings, n_eval: dict[str, int], fig1_set: dict
) -> str:
    lines = [
        "# Table 1: change in loss and accuracy after pruning (toy network)",
        "",
        "Made by `td-analysis reproduce` (settings in `table1.json`). Network 3072 → 10 → 10 "
        "ReLU on CIFAR-10, unregularised vs targeted weight dropout "
        f"(γ = {settings.gamma}, α = {settings.alpha}), {len(settings.seeds)} seeds "
        f"({', '.join(map(str, settings.seeds))}), {settings.epochs} epochs. Pruning: "
        f"{settings.prune_fraction:.0%} of every output unit's incoming weights by |w|, in "
        "both weight matrices (biases kept). |ΔE| is the change of the *mean* cross-entropy "
        "over the split; the estimate is |−∇ᵀd + ½dᵀHd| with the exact gradient and "
        "Hessian-vector product in float64. Mean ± std over seeds.",
        "",
    ]
    for split, rows in results.items():
        lines += [
            f"## {split} split ({n_eval[split]:,} images)",
            "",
            "| regularisation | abs(ΔE) estimate | measured abs(ΔE) | unpruned accuracy | "
            "pruned accuracy | paper abs(ΔE) | paper unpruned | paper pruned |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for reg, r in rows.items():
            paper = PAPER_TABLE1[reg]
            name = "none" if reg == "none" else "targeted dropout"
            lines.append(
                f"| {name} | {_fmt(r['abs_estimate'])} | {_fmt(r['abs_measured'])} | "
                f"{_fmt(r['accuracy'], pct=True)} | {_fmt(r['pruned_accuracy'], pct=True)} | "
                f"{paper['abs_delta_e']} | {paper['unpruned_accuracy']:.2%} | "
                f"{paper['pruned_accuracy']:.2%} |"
            )
        none, td = rows.get("none"), rows.get("targeted-weight")
        if none and td:
            ratio_est = _mean_std(none["abs_estimate"])[0] / max(
                _mean_std(td["abs_estimate"])[0], 1e-12
            )
            ratio_meas = _mean_std(none["abs_measured"])[0] / max(
                _mean_std(td["abs_measured"])[0], 1e-12
            )
            drop_none = _mean_std(np.subtract(none["accuracy"], none["pruned_accuracy"]))[0]
            drop_td = _mean_std(np.subtract(td["accuracy"], td["pruned_accuracy"]))[0]
            lines += [
                "",
                f"Accuracy lost by pruning: none {100 * drop_none:.2f} points, targeted dropout "
                f"{100 * drop_td:.2f} points (paper: 11.98 and −0.05). |ΔE| ratio none / TD: "
                f"estimate {ratio_est:.1f}×, measured {ratio_meas:.1f}× (paper: 8.3×).",
            ]
        lines.append("")
    lines += [
        "## Differences from the paper",
        "",
        "- Unpruned accuracies are within about two points of the paper's 38.11% and 40.09%; the "
        "paper's training schedule is unpublished (ours: see `settings` in `table1.json`), and "
        "`test_batch` here is a rebuilt copy (images 1000–9999 decoded from JPEG).",
        "- Our |ΔE| values differ from the paper's 0.1207 and 0.0146 (compare the estimate and "
        "measured columns), most for the unregularised network, so the ratio none / TD differs "
        "from the paper's 8.3× too. The paper does not say which parameters its ΔE deletes, "
        "over which data, or with which loss reduction. We delete 75% of the weights of *both* "
        "layers and use the mean cross-entropy over the split. Deleting only the 75% lowest of "
        "the 100 hidden→output weights of Figure 1 instead gives ½dᵀHd = "
        + ", ".join(
            f"{_fmt([0.5 * b['pruned_pruned'] for b in fig1_set[reg]])} ({reg})" for reg in fig1_set
        )
        + f" on {settings.figure_split} (`figure1_set_pruning_mean_loss` in `table1.json`).",
        "- The estimate and the measurement differ by up to tens of percent: deleting 75% of the "
        "weights is not a small step, so the O(‖d‖³) remainder and changes of the ReLU pattern "
        "matter (`estimates_pruning.png` shows where the second-order estimate stops tracking).",
        "",
    ]
    return "\n".join(lines)


def reproduce(
    settings: ReproduceSettings | None = None,
    *,
    out_dir: str | Path = "figures",
    runs_dir: str | Path = "runs",
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
    progress: bool = True,
) -> dict:
    """Train (or reuse) the models, then write Figure 1, Table 1, estimator plots and pruning
    curves into ``out_dir``.  Returns the numbers written to ``table1.json``.

    CIFAR-10 is downloaded into the data folder first if it is not there (``download``).
    """
    from td_analysis import plotting

    settings = settings or ReproduceSettings()
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    base = replace(settings.base, epochs=settings.epochs)
    pre = base.preprocessing
    data = {
        s: load_cifar10(data_root, split=s, preprocessing=pre, download=download)
        for s in {base.train_split, base.eval_split, *settings.splits}
    }
    evald = {
        s: (x[: settings.eval_limit], y[: settings.eval_limit]) if settings.eval_limit else (x, y)
        for s, (x, y) in data.items()
    }
    suite = regulariser_suite(settings)
    models: dict[str, list[DenseNet]] = {}
    jobs = [(name, reg, seed) for name, reg in suite.items() for seed in settings.seeds]
    for name, reg, seed in tqdm(jobs, desc="models", disable=not progress):
        cfg = replace(base, regulariser=reg, seed=seed)
        model = train_or_load(cfg, runs_dir, data=data, data_root=data_root, progress=progress)
        models.setdefault(name, []).append(model)

    stages = tqdm(total=5, desc="analysis", disable=not progress)
    # Table 1 ------------------------------------------------------------------------------
    table: dict[str, dict[str, dict[str, list[float]]]] = {}
    fig1_set: dict[str, list[dict]] = {}
    for split in settings.splits:
        x, y = evald[split]
        table[split] = {}
        for reg in ("none", "targeted-weight"):
            cols: dict[str, list[float]] = {}
            for model in models[reg]:
                masks = pruning_masks(model, settings.prune_fraction, "weight")
                est = estimate_pruning(
                    model, x, y, masks, label=reg, fraction=settings.prune_fraction
                )
                for k, v in {
                    "abs_estimate": est.abs_estimate,
                    "abs_measured": abs(est.measured),
                    "estimate": est.estimate,
                    "measured": est.measured,
                    "first_order": est.first_order,
                    "second_order": est.second_order,
                    "accuracy": est.accuracy,
                    "pruned_accuracy": est.pruned_accuracy,
                }.items():
                    cols.setdefault(k, []).append(v)
            table[split][reg] = cols
    stages.update()

    # Figure 1 -----------------------------------------------------------------------------
    xf, yf = evald[settings.figure_split]
    mats, summaries = {}, {}
    for reg in ("none", "targeted-weight"):
        C, order = figure1_matrices(
            models[reg][0], xf, yf, reduction=settings.figure_reduction, cache_dir=cache_dir
        )
        mats[reg] = C
        pruned = pruned_set(models[reg][0], order, settings.prune_fraction, "lowest")
        summaries[reg] = block_summary(C, pruned[order.order]).as_dict()
        for model in models[reg]:
            Cs, o = figure1_matrices(model, xf, yf, reduction="mean", cache_dir=cache_dir)
            s = block_summary(Cs, pruned_set(model, o, settings.prune_fraction, "weight")[o.order])
            fig1_set.setdefault(reg, []).append(s.as_dict())
    vmax = settings.vmax
    fig = plotting.figure1(
        mats["none"],
        mats["targeted-weight"],
        gamma=settings.gamma,
        vmax=vmax,
        suptitle=f"θᵀ⊙H⊙θ of the 100 hidden→output weights, H of the summed cross-entropy "
        f"over {len(yf):,} {settings.figure_split} images (seed {settings.seeds[0]})",
    )
    plotting.save_figure(fig, out_dir / "figure1.png")
    fig = plotting.figure1(
        mats["none"],
        mats["targeted-weight"],
        gamma=settings.gamma,
        vmax=plotting.PUBLISHED_VMAX,
        suptitle="the same, at the published colour scale ±3000",
    )
    plotting.save_figure(fig, out_dir / "figure1_published_scale.png", formats=("png",))
    stages.update()

    # Whole network, pooled ---------------------------------------------------------------
    pooled = {}
    for reg in ("none", "targeted-weight"):
        model = models[reg][0]
        order = magnitude_order(model, "weights")
        pooled[reg] = cached(
            "pooled",
            lambda m=model, o=order: pooled_coadaptation(
                m, xf, yf, o, settings.pooled_bins, reduction=settings.figure_reduction
            ),
            model,
            xf,
            yf,
            order.names,
            order.order,
            settings.pooled_bins,
            settings.figure_reduction,
            cache_dir=cache_dir,
        )
    fig = plotting.figure1(
        pooled["none"],
        pooled["targeted-weight"],
        gamma=settings.gamma,
        # the top bin dwarfs the rest: clip at the 99th percentile so the structure shows
        vmax=plotting.symmetric_limit(pooled["none"], pooled["targeted-weight"], quantile=0.99),
        suptitle=f"all {order.size:,} weights, ordered by |θ|, pooled into "
        f"{settings.pooled_bins}×{settings.pooled_bins} block sums of θᵀ⊙H⊙θ",
    )
    plotting.save_figure(fig, out_dir / "figure1_pooled.png", formats=("png",))
    stages.update()

    # Estimators vs measurement -------------------------------------------------------------
    xe, ye = evald[settings.splits[0]]
    sweeps, randoms = {}, {}
    for reg, label in (("none", "none"), ("targeted-weight", "targeted dropout")):
        model = models[reg][0]
        sweeps[label] = pruning_sweep(model, xe, ye, settings.sweep_fractions, "weight")
        randoms[label] = random_mask_sweep(
            model, xe, ye, settings.random_masks, seed=settings.seeds[0]
        )
    fig = plotting.plot_estimates(
        sweeps,
        title="magnitude weight pruning at 5–95%: Taylor estimates vs measured ΔE "
        f"(mean loss, {settings.splits[0]})",
    )
    plotting.save_figure(fig, out_dir / "estimates_pruning.png", formats=("png",))
    fig = plotting.plot_estimates(
        randoms,
        title=f"{settings.random_masks} random deletions of 5–95% of the weights: "
        "Taylor estimates vs measured ΔE",
    )
    plotting.save_figure(fig, out_dir / "estimates_random.png", formats=("png",))
    stages.update()

    # Pruning curves ----------------------------------------------------------------------
    curve_rows = []
    if settings.curves:
        x, y = evald[settings.splits[0]]
        for name, ms in models.items():
            for seed, model in zip(settings.seeds, ms, strict=True):
                for kind, layers in (("weight", None), ("unit", [0])):
                    for row in pruning_curve(model, x, y, settings.curve_fractions, kind, layers):
                        curve_rows.append({"regulariser": name, "seed": seed, **row})
        fig = plotting.plot_pruning_curves(
            curve_rows,
            title="toy network: accuracy after magnitude pruning "
            f"({settings.splits[0]}, mean ± std over {len(settings.seeds)} seeds; unit pruning "
            "of the hidden layer)",
        )
        plotting.save_figure(fig, out_dir / "pruning_curves.png")
    stages.update()
    stages.close()
    import matplotlib.pyplot as plt

    plt.close("all")

    results = {
        "settings": settings.to_dict(),
        "seconds": time.perf_counter() - t0,
        "n_eval": {s: len(evald[s][1]) for s in settings.splits},
        "table1": table,
        "paper_table1": PAPER_TABLE1,
        "figure1": {
            "params": FIGURE_PARAMS,
            "split": settings.figure_split,
            "n": len(yf),
            "reduction": settings.figure_reduction,
            "block_summary_lowest": summaries,
            "max_abs_entry": {k: float(v.abs().max()) for k, v in mats.items()},
        },
        "figure1_set_pruning_mean_loss": fig1_set,
        "rank_correlations": {
            "pruning": {k: rank_correlations(v) for k, v in sweeps.items()},
            "random": {k: rank_correlations(v) for k, v in randoms.items()},
        },
        "sweeps": {k: [e.as_dict() for e in v] for k, v in sweeps.items()},
        "pruning_curves": curve_rows,
    }
    atomic_write_json(out_dir / "table1.json", results)
    atomic_write_text(
        out_dir / "table1.md", _table_markdown(table, settings, results["n_eval"], fig1_set)
    )
    return results


# ----------------------------------------------------------------------------- CLI
def _cmd_reproduce(args: argparse.Namespace) -> int:
    overrides = {}
    if args.seeds is not None:
        overrides["seeds"] = tuple(args.seeds)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.eval_limit is not None:
        overrides["eval_limit"] = args.eval_limit
    if args.vmax is not None:
        overrides["vmax"] = args.vmax
    if args.no_curves:
        overrides["curves"] = False
    settings = (
        ReproduceSettings.quick(**overrides) if args.quick else ReproduceSettings(**overrides)
    )
    results = reproduce(
        settings,
        out_dir=args.out,
        runs_dir=args.runs,
        data_root=args.data_dir,
        cache_dir=args.cache_dir,
        progress=not args.quiet,
    )
    print((Path(args.out) / "table1.md").read_text())
    print(
        f"wrote Figure 1, Table 1 and the estimator plots to {args.out} "
        f"in {results['seconds']:.0f} s"
    )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``reproduce`` on the ``td-analysis`` parser."""
    from td_analysis.cli import DATA_HELP, _ints

    p = sub.add_parser(
        "reproduce",
        help="the main job: reproduce the paper's Figure 1 and Table 1",
        description="Train (or reuse cached checkpoints of) the toy network without "
        "regularisation and with targeted dropout (γ=0.75, α=0.5) for several seeds, compute "
        "exact Hessians, and write figure1.png/pdf, table1.md/json, estimator plots and pruning "
        "curves. Defaults take a few minutes on 2 CPU cores; --quick takes about one.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small setting (2 seeds, 2 epochs, 2,000 evaluation images) for CI",
    )
    p.add_argument("--seeds", type=_ints, default=None, help="seeds (default: 0,1,2)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: 20)")
    p.add_argument(
        "--eval-limit",
        type=int,
        default=None,
        help="use only the first N images of each evaluation split",
    )
    p.add_argument(
        "--vmax",
        type=float,
        default=None,
        help="colour limit ±vmax of Figure 1 (default: the largest |entry|; the "
        "published figure used 3000)",
    )
    p.add_argument(
        "--no-curves", action="store_true", help="skip the baselines and the pruning-curve figure"
    )
    p.add_argument(
        "--out", type=Path, default=Path("figures"), help="output folder (default: figures)"
    )
    p.add_argument(
        "--runs",
        type=Path,
        default=Path("runs"),
        help="checkpoint folder, reused across runs (default: runs)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache of Hessians (default: $TD_ANALYSIS_CACHE, else ~/.cache/td_analysis/results)",
    )
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_reproduce)
