"""The paper's toy experiment end to end: ``td-analysis reproduce`` (Figure 1, Table 1, estimator
plots, pruning curves), built from the package's modules.

Defaults (documented in the README and ``figures/README.md``):

* toy network 3072 → 10 → 10, trained by the toy task's protocol (default and ``"sgd"``: SGD,
  20 epochs; ``"adam"``: Adam, 60 epochs, ``td_analysis.training.tasks``), for seeds 0–4,
  unregularised and with targeted weight dropout γ = 0.75, α = 0.5, and (with the pruning
  curves) the controls dropout and DropConnect at the same expected drop rate γ·α;
* every comparison is a paired difference over seeds with a 95% t interval
  (:mod:`td_analysis.analysis.statistics`); the report text comes from ``table1.json`` alone
  (:func:`write_toy_reports`, ``reproduce --report-only``);
* Table 1: weight pruning of 75% of every output unit's incoming weights in *both* layers; the
  Taylor estimate ``|−∇ᵀd + ½dᵀHd|`` and the measured ``|E(θ−d) − E(θ)|`` use the mean
  cross-entropy on the split, in float64;
* Figure 1: ``C = θᵀ⊙H⊙θ`` over the 100 hidden→output weights (``layers.1.weight``), H of the
  cross-entropy *summed* over the 10,000 holdout images, float64, ordered by decreasing |θ|:
  this gives the published 100 × 100 picture with entries in the thousands.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from td_analysis.analysis.coadaptation import (
    block_summary,
    magnitude_order,
    ordered_coadaptation,
    pooled_coadaptation,
    pruned_set,
)
from td_analysis.analysis.pruning import pruning_curve, pruning_masks
from td_analysis.analysis.taylor import (
    estimate_pruning,
    pruning_sweep,
    random_mask_sweep,
    rank_correlations,
)
from td_analysis.catalog.names import EXPERIMENTS, QUICK_OUT, QUICK_RUNS  # noqa: F401 - public here
from td_analysis.curvature import hessian
from td_analysis.nets.models import DenseNet
from td_analysis.nn.dropout import RegulariserConfig
from td_analysis.report import compat as reports
from td_analysis.training.loop import TrainConfig, load_data
from td_analysis.training.runs import checkpoint_path, train_many, train_or_load  # noqa: F401
from td_analysis.training.tasks import get_task
from td_analysis.utils.cache import cached
from td_analysis.utils.io import atomic_write_json, atomic_write_text, staged_output
from td_analysis.utils.moved import moved_names
from td_analysis.utils.progress import progress_bar

__all__ = [
    "PAPER_TABLE1",
    "ReproduceSettings",
    "regulariser_suite",
    "train_or_load",
    "figure1_matrices",
    "ToyRun",
    "prepare_toy",
    "table1_numbers",
    "figure1_outputs",
    "pooled_figure",
    "estimator_outputs",
    "pruning_curve_outputs",
    "spectra_outputs",
    "write_table1",
    "write_toy_reports",
    "refresh_readme",
    "reproduce",
    "add_commands",  # noqa: F822 - from td_analysis.cli.reproduce, looked up when asked for
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
#: the task (training/tasks.py) this experiment trains: network, data set, protocols
TOY_TASK = "toy"
# the files `reproduce` writes into its folder (replaced together; other files there are kept)
TOY_OUTPUTS = (
    "figure1*.png",
    "figure1*.pdf",
    "estimates_*.png",
    "pruning_curves.*",
    "table1.*",
    "table1_*.png",
)
TABLE1_REGULARISERS = ("none", "targeted-weight")
# controls at targeted dropout's expected drop rate γ·α, reported below Table 1's two rows
CONTROL_REGULARISERS = ("dropout", "dropconnect")


@dataclass
class ReproduceSettings:
    """What ``td-analysis reproduce`` runs; ``quick()`` is the small setting for CI.

    ``protocol`` names the toy task's training protocol (:mod:`td_analysis.training.tasks`:
    ``"default"`` = ``"sgd"``, SGD lr 0.01 for 20 epochs; ``"adam"``, Adam lr 1e-3 for 60 epochs);
    ``base`` (its :class:`TrainConfig`) and ``epochs`` follow from it unless given.
    ``workers``: processes that train the networks not yet in the runs folder, one thread and
    one fresh process per network (:func:`td_analysis.training.runs.train_many`; the same
    weights, bit for bit, as training them one after the other here: checked for every
    regulariser, ``tests/test_reproduce.py``); 1 trains them in this process.
    """

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    epochs: int | None = None
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
    protocol: str = "default"
    base: TrainConfig | None = None
    workers: int = 2

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be ≥ 1, got {self.workers}")
        if self.base is None:
            self.base = get_task(TOY_TASK).config(self.protocol)
        if self.epochs is None:
            self.epochs = self.base.epochs
        if self.epochs < 1:
            raise ValueError(f"epochs must be positive, got {self.epochs}")

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
            workers=1,  # seconds of training per network: a process would cost more than it saves
        )
        defaults.update(overrides)
        return cls(**defaults)

    def to_dict(self) -> dict:
        """A JSON-able dict of the settings."""
        d = asdict(self)
        d["base"] = self.base.to_dict()
        return d


def regulariser_suite(settings: ReproduceSettings) -> dict[str, RegulariserConfig]:
    """The regularisers compared: Table 1's two, and the pruning-curve baselines; among them the
    controls plain dropout (hidden units) and DropConnect (every weight) at the expected drop
    rate γ·α of targeted dropout, so that the data can say whether *targeting* is what helps."""
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
                "dropout": RegulariserConfig("dropout", alpha=g * a),
                "dropconnect": RegulariserConfig("dropconnect", alpha=g * a),
                "L1": RegulariserConfig("l1", l1=1e-4),
            }
        )
    return suite


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


def toy_network_text(config: TrainConfig) -> str:
    """``"3072 → 10 → 10 ReLU"``: the layer widths of ``config``."""
    widths = (config.in_features, *config.hidden, config.num_classes)
    return " → ".join(map(str, widths)) + " ReLU"


@dataclass
class ToyRun:
    """What the toy pipeline's outputs share: settings, data, trained models, folders."""

    settings: ReproduceSettings
    data: dict[str, tuple[Tensor, Tensor]]
    evald: dict[str, tuple[Tensor, Tensor]]
    models: dict[str, list[DenseNet]]
    out_dir: Path
    cache_dir: str | Path | None = None


def prepare_toy(
    settings: ReproduceSettings,
    *,
    out_dir: str | Path = "figures",
    runs_dir: str | Path = "runs",
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
    progress: bool = True,
) -> ToyRun:
    """Load the splits and train (or reuse) one model per regulariser × seed."""
    base = replace(settings.base, epochs=settings.epochs)
    data = {
        s: load_data(base, s, root=data_root, download=download)
        for s in {base.train_split, base.eval_split, *settings.splits}
    }
    evald = {
        s: (x[: settings.eval_limit], y[: settings.eval_limit]) if settings.eval_limit else (x, y)
        for s, (x, y) in data.items()
    }
    models: dict[str, list[DenseNet]] = {}
    jobs = [(n, r, seed) for n, r in regulariser_suite(settings).items() for seed in settings.seeds]
    if settings.workers > 1:  # the networks not yet trained, in parallel processes
        configs = [replace(base, regulariser=reg, seed=seed) for _, reg, seed in jobs]
        given = {s: data[s] for s in (base.train_split, base.eval_split)}  # sent to each worker
        train_many(configs, runs_dir, processes=settings.workers, data=given, progress=progress)
    for name, reg, seed in progress_bar(jobs, desc="models", disable=not progress):
        cfg = replace(base, regulariser=reg, seed=seed)
        model = train_or_load(cfg, runs_dir, data=data, data_root=data_root, progress=progress)
        models.setdefault(name, []).append(model)
    return ToyRun(settings, data, evald, models, Path(out_dir), cache_dir)


def table1_numbers(run: ToyRun) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Table 1 per split and regulariser (Table 1's two, then the controls if trained): one list
    over seeds per column (``table1.json``)."""
    settings = run.settings
    table: dict[str, dict[str, dict[str, list[float]]]] = {}
    for split in settings.splits:
        x, y = run.evald[split]
        table[split] = {}
        regs = TABLE1_REGULARISERS + tuple(c for c in CONTROL_REGULARISERS if c in run.models)
        for reg in regs:
            cols: dict[str, list[float]] = {}
            for model in run.models[reg]:
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
    return table


def figure1_outputs(run: ToyRun) -> dict:
    """Figure 1 (``figure1.png/pdf``, ``figure1_published_scale.png``), its block summaries and
    the per-seed pruned-set sums of the mean loss."""
    from td_analysis.report import plotting

    settings = run.settings
    xf, yf = run.evald[settings.figure_split]
    mats, summaries, fig1_set = {}, {}, {}
    for reg in TABLE1_REGULARISERS:
        model0 = run.models[reg][0]
        C, order = figure1_matrices(
            model0, xf, yf, reduction=settings.figure_reduction, cache_dir=run.cache_dir
        )
        mats[reg] = C
        pruned = pruned_set(model0, order, settings.prune_fraction, "lowest")
        summaries[reg] = block_summary(C, pruned[order.order]).as_dict()
        for model in run.models[reg]:
            Cs, o = figure1_matrices(model, xf, yf, reduction="mean", cache_dir=run.cache_dir)
            s = block_summary(Cs, pruned_set(model, o, settings.prune_fraction, "weight")[o.order])
            fig1_set.setdefault(reg, []).append(s.as_dict())
    fig = plotting.figure1(
        mats["none"],
        mats["targeted-weight"],
        gamma=settings.gamma,
        vmax=settings.vmax,
        suptitle=f"θᵀ⊙H⊙θ of the 100 hidden→output weights, H of the summed cross-entropy "
        f"over {len(yf):,} {settings.figure_split} images (seed {settings.seeds[0]})",
    )
    plotting.save_figure(fig, run.out_dir / "figure1.png")
    fig = plotting.figure1(
        mats["none"],
        mats["targeted-weight"],
        gamma=settings.gamma,
        vmax=plotting.PUBLISHED_VMAX,
        suptitle="the same, at the published colour scale ±3000",
    )
    plotting.save_figure(fig, run.out_dir / "figure1_published_scale.png", formats=("png",))
    figure1 = {
        "params": FIGURE_PARAMS,
        "split": settings.figure_split,
        "n": len(yf),
        "reduction": settings.figure_reduction,
        "block_summary_lowest": summaries,
        "max_abs_entry": {k: float(v.abs().max()) for k, v in mats.items()},
    }
    return {"figure1": figure1, "figure1_set_pruning_mean_loss": fig1_set}


def pooled_figure(run: ToyRun) -> dict[str, Tensor]:
    """``figure1_pooled.png``: all weights, B × B block sums of C through B HVPs."""
    from td_analysis.report import plotting

    settings = run.settings
    xf, yf = run.evald[settings.figure_split]
    pooled = {}
    for reg in TABLE1_REGULARISERS:
        model = run.models[reg][0]
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
            cache_dir=run.cache_dir,
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
    plotting.save_figure(fig, run.out_dir / "figure1_pooled.png", formats=("png",))
    return pooled


def estimator_outputs(run: ToyRun) -> dict:
    """``estimates_pruning.png`` and ``estimates_random.png``; sweeps and rank correlations."""
    from td_analysis.report import plotting

    settings = run.settings
    xe, ye = run.evald[settings.splits[0]]
    sweeps, randoms = {}, {}
    for reg, label in (("none", "none"), ("targeted-weight", "targeted dropout")):
        model = run.models[reg][0]
        sweeps[label] = pruning_sweep(model, xe, ye, settings.sweep_fractions, "weight")
        randoms[label] = random_mask_sweep(
            model, xe, ye, settings.random_masks, seed=settings.seeds[0]
        )
    fig = plotting.plot_estimates(
        sweeps,
        title="magnitude weight pruning at 5–95%: Taylor estimates vs measured ΔE "
        f"(mean loss, {settings.splits[0]})",
    )
    plotting.save_figure(fig, run.out_dir / "estimates_pruning.png", formats=("png",))
    fig = plotting.plot_estimates(
        randoms,
        title=f"{settings.random_masks} random deletions of 5–95% of the weights: "
        "Taylor estimates vs measured ΔE",
    )
    plotting.save_figure(fig, run.out_dir / "estimates_random.png", formats=("png",))
    return {
        "rank_correlations": {
            "pruning": {k: rank_correlations(v) for k, v in sweeps.items()},
            "random": {k: rank_correlations(v) for k, v in randoms.items()},
        },
        "sweeps": {k: [e.as_dict() for e in v] for k, v in sweeps.items()},
    }


def pruning_curve_outputs(run: ToyRun) -> list[dict]:
    """``pruning_curves.png/pdf`` (if ``settings.curves``): one row per model, kind and fraction."""
    from td_analysis.report import plotting

    settings = run.settings
    curve_rows: list[dict] = []
    if not settings.curves:
        return curve_rows
    x, y = run.evald[settings.splits[0]]
    for name, ms in run.models.items():
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
    plotting.save_figure(fig, run.out_dir / "pruning_curves.png")
    return curve_rows


def spectra_outputs(run) -> dict:
    """``spectra.png`` of ``td-analysis reproduce`` and its numbers (for ``table1.json``), from
    :func:`td_analysis.analysis.spectra.spectra_figure_data`.

    ``run``: the toy pipeline's :class:`ToyRun`.  Seed 0 of the
    unregularised and the targeted-dropout network; H of the mean cross-entropy over the first
    :data:`FIGURE_EXAMPLES` images of the figure split; the pruned set is the weight-pruning mask
    at the Table 1 fraction (both layers).
    """
    from td_analysis.analysis.spectra import FIGURE_EXAMPLES, FIGURE_NETWORKS, spectra_figure_data
    from td_analysis.report import plotting

    settings = run.settings
    x, y = run.evald[settings.figure_split]
    x, y = x[:FIGURE_EXAMPLES], y[:FIGURE_EXAMPLES]
    models = {label: run.models[reg][0] for reg, label in FIGURE_NETWORKS.items()}
    masks = {
        label: pruning_masks(model, settings.prune_fraction, "weight")
        for label, model in models.items()
    }
    data = spectra_figure_data(models, x, y, masks)
    fig = plotting.plot_spectra(
        data,
        title=f"Hessian spectra (SLQ densities, dotted: top eigenvalues) of the mean "
        f"cross-entropy over {len(y):,} {settings.figure_split} images; pruned set: "
        f"{settings.prune_fraction:.0%} weight pruning",
    )
    plotting.save_figure(fig, run.out_dir / "spectra.png", formats=("png",))
    return {
        label: {
            "top_eigenvalues": entry["whole"]["eigenvalues"],
            "layers": {k: v["eigenvalues"] for k, v in entry["layers"].items()},
            "pruned_set": entry["pruned_summary"],
        }
        for label, entry in data.items()
    }


def write_table1(run: ToyRun, results: dict) -> None:
    """``table1.json`` (``results``), then ``table1.md`` and ``table1_differences.png`` from it."""
    atomic_write_json(run.out_dir / "table1.json", results)
    write_toy_reports(run.out_dir, results)


def write_toy_reports(out_dir: str | Path = "figures", results: dict | None = None) -> dict:
    """``table1.md`` and ``table1_differences.png`` from ``table1.json`` alone (read from
    ``out_dir`` unless ``results`` is given): every number and sentence comes from the JSON, so
    the report is rewritten without training (``td-analysis reproduce --report-only``)."""
    from td_analysis.report import plotting

    out = Path(out_dir)
    if results is None:
        results = _read_json(out / "table1.json", "td-analysis reproduce")
    network = f"{toy_network_text(TrainConfig.from_dict(results['settings']['base']))} on CIFAR-10"
    text = reports.table1_markdown(results, network=network) + reports.protocol_study_section(out)
    atomic_write_text(out / "table1.md", text)
    curves = reports.toy_difference_curves(results)
    if any(any(c for c in lines.values()) for lines in curves.values()):
        import matplotlib.pyplot as plt

        split = results["settings"]["splits"][0]
        fig = plotting.plot_paired_differences(
            curves,
            xlabel="fraction pruned",
            title=f"toy network, {split}: accuracy of targeted dropout minus the network of the "
            f"same seed, mean and {reports.LEVEL:.0%} t band over "
            f"{len(results['settings']['seeds'])} seeds",
        )
        plotting.save_figure(fig, out / "table1_differences.png", formats=("png",))
        plt.close(fig)
    return results


def _read_json(path: Path, command: str) -> dict:
    import json

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `{command}` first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})") from exc


@staged_output("out_dir", owned=TOY_OUTPUTS)  # all or none: old results stay whole if interrupted
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
    import matplotlib.pyplot as plt

    settings = settings or ReproduceSettings()
    t0 = time.perf_counter()
    run = prepare_toy(
        settings,
        out_dir=out_dir,
        runs_dir=runs_dir,
        data_root=data_root,
        cache_dir=cache_dir,
        download=download,
        progress=progress,
    )
    stages = progress_bar(total=5, desc="analysis", disable=not progress)
    table = table1_numbers(run)
    stages.update()
    fig1 = figure1_outputs(run)
    stages.update()
    pooled_figure(run)
    stages.update()
    estimators = estimator_outputs(run)
    stages.update()
    curve_rows = pruning_curve_outputs(run)
    stages.update()
    spectra = spectra_outputs(run)  # spectra.png (issue 10)
    stages.close()
    plt.close("all")
    results = {
        "settings": settings.to_dict(),
        "seconds": time.perf_counter() - t0,
        "n_eval": {s: len(run.evald[s][1]) for s in settings.splits},
        "table1": table,
        "paper_table1": PAPER_TABLE1,
        "regularisers": {n: r.to_dict() for n, r in regulariser_suite(settings).items()},
        **fig1,
        **estimators,
        "pruning_curves": curve_rows,
        "spectra": spectra,
    }
    write_table1(run, results)
    return results


# ----------------------------------------------------------------------------- README


def refresh_readme(
    readme: str | Path, out_dir: str | Path = "figures", experiments: Sequence[str] = ("toy",)
) -> None:
    """Rewrite the generated result blocks of ``readme`` from the JSON in ``out_dir`` (toy:
    ``table1.json``; fashion-mlp: ``fashion_mlp/pruning.json`` and ``summary.json``; the
    training-length studies and the ResNet block whenever their JSON and markers exist)."""
    readme, out = Path(readme), Path(out_dir)
    if not readme.is_file():
        raise FileNotFoundError(f"README {readme} not found")
    text = readme.read_text()
    if "toy" in experiments:
        results = _read_json(out / "table1.json", "td-analysis reproduce")
        text = reports.replace_generated(text, "toy", reports.readme_toy_results(results))
        study = out / "training_length.json"
        if study.is_file() and "generated: training-length" in text:
            text = reports.replace_generated(
                text,
                "training-length",
                reports.readme_training_length(
                    _read_json(study, "python -m td_analysis.training_length")
                ),
            )
    if "fashion-mlp" in experiments:
        fashion, command = out / "fashion_mlp", "td-analysis reproduce --experiment fashion-mlp"
        records = _read_json(fashion / "pruning.json", command)
        summary = _read_json(fashion / "summary.json", command)
        text = reports.replace_generated(
            text, "fashion-mlp", reports.readme_fashion_results(records, summary)
        )
        study = fashion / "training_length.json"
        if study.is_file() and "generated: fashion-training-length" in text:
            text = reports.replace_generated(
                text,
                "fashion-training-length",
                reports.fashion_training_length_markdown(
                    _read_json(study, "python -m td_analysis.training_length"), heading="####"
                ),
            )
    resnet = out / "resnet_cifar10"
    if (resnet / "pruning.json").is_file() and "generated: resnet " in text:
        from td_analysis.report.resnet import readme_resnet_results

        command = "td-analysis reproduce --experiment resnet-cifar10"
        text = reports.replace_generated(
            text,
            "resnet",
            readme_resnet_results(
                _read_json(resnet / "pruning.json", command),
                _read_json(resnet / "summary.json", command),
            ),
        )
    atomic_write_text(readme, text)


#: the ``td-analysis reproduce`` command (argparse namespaces in, exit status out) lives in
#: :mod:`td_analysis.cli.reproduce`; its old names stay importable from here, looked up when asked
#: for so that the experiment does not depend on its command line
_COMMAND_LINE = "td_analysis.cli.reproduce"
__getattr__ = moved_names(
    __name__,
    {
        **{
            name: (_COMMAND_LINE, name)
            for name in (
                "_toy_settings",
                "_fashion_command",
                "_fashion_settings",
                "_cmd_report_only",
                "_cmd_reproduce",
            )
        },
        "add_commands": (_COMMAND_LINE, "add_reproduce_command"),
    },
)
