"""The toy network's training-length study (issue #19): does the pruning result still move?

For each regulariser × seed × training length (20, 60 and 200 epochs by default) the toy network
of ``td-analysis reproduce`` is trained under the toy task's protocol (``--protocol``; with
the default the 20-epoch networks are the ones ``reproduce`` trains, reused from ``--runs``)
and pruned on the holdout split by weight (both layers, per output unit) and by unit (hidden
layer) at k = 0, 50, 90, 95 %.  One record per network and pruning::

    {regulariser, bias, seed, epochs, batch_size, protocol, optimizer, kind, k, accuracy, loss}

goes to ``figures/training_length.json`` (next to ``table1.json``: the toy experiment's output
folder is ``figures/`` itself, as fashion-mlp's is ``figures/fashion_mlp/``), and
``training_length.png`` plots accuracy against epochs, mean ± std over seeds.  Run it with
``python -m td_analysis.training_length`` (``--help``; the options:
:mod:`td_analysis.cli.training_length`); it is resumable (finished networks are
reused from ``--runs``) and writes its outputs only when every network is done.
"""

from __future__ import annotations

import importlib
import json

if __name__ == "__main__":  # pragma: no cover - ``python -m``: the command line (td_analysis.cli.
    # <this module>), run before this module's imports below: it pins the CPU kernels before torch
    raise SystemExit(importlib.import_module(__spec__.name.replace(".", ".cli.", 1)).main())

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from td_analysis.analysis.pruning import pruning_curve
from td_analysis.pipelines.toy import ReproduceSettings, regulariser_suite
from td_analysis.training.loop import load_data
from td_analysis.training.runs import train_many, train_or_load
from td_analysis.utils.progress import progress_bar

#: the module of the command line (``python -m``, :func:`main`), looked up when it runs: the study
#: does not depend on its command line (which imports the study)
COMMAND_LINE = "td_analysis.cli.training_length"

__all__ = [
    "STUDY_EPOCHS",
    "STUDY_REGULARISERS",
    "STUDY_KS",
    "FASHION_STUDY",
    "training_length_records",
    "fashion_study_networks",
    "fashion_training_length_records",
    "FASHION_PROTOCOL_STUDIES",
    "fashion_study",
    "merge_protocol_runs",
    "main",
]

STUDY_EPOCHS = (20, 60, 200)
STUDY_REGULARISERS = ("none", "targeted-weight", "targeted-unit", "dropout", "dropconnect")
STUDY_KS = (0.0, 50.0, 90.0, 95.0)


def training_length_records(
    *,
    epochs: Sequence[int] = STUDY_EPOCHS,
    seeds: Sequence[int] = (0, 1, 2),
    regularisers: Sequence[str] = STUDY_REGULARISERS,
    ks: Sequence[float] = STUDY_KS,
    runs_dir: str | Path = "runs",
    data_root: str | Path | None = None,
    split: str = "holdout",
    progress: bool = True,
    protocol: str = "default",
    processes: int | None = None,
    in_process: bool = False,
) -> list[dict]:
    """Train (or reuse) every network and prune it: the study's records (module docstring).

    The regulariser configs are those of ``reproduce``'s suite (γ = 0.75, α = 0.5; controls at
    γ·α) and the toy task's ``protocol``; only ``epochs`` changes.  Each (regulariser, seed) is
    trained once, to the longest length, in ``processes`` parallel processes (``in_process``:
    here), saving the shorter lengths on the way (``train_many(snapshots=…)``: the toy's
    learning rate is constant, so a snapshot *is* the shorter run).
    """
    settings = ReproduceSettings(protocol=protocol)
    suite = regulariser_suite(settings)
    unknown = [r for r in regularisers if r not in suite]
    if unknown:
        raise ValueError(f"unknown regulariser(s) {unknown}; choose from {sorted(suite)}")
    if not epochs or min(epochs) < 1:
        raise ValueError(f"epochs must be positive, got {list(epochs)}")
    base = settings.base
    data = {s: load_data(base, s, root=data_root) for s in {base.train_split, split}}
    x, y = data[split]
    longest, shorter = max(epochs), sorted(set(epochs) - {max(epochs)})
    train_many(
        [
            replace(base, epochs=longest, regulariser=suite[r], seed=s)
            for r in regularisers
            for s in seeds
        ],
        runs_dir,
        processes=processes,
        data_root=data_root,
        data=data,
        progress=progress,
        in_process=in_process,
        snapshots=shorter,
    )
    records = []
    jobs = [(e, r, s) for e in sorted(epochs) for r in regularisers for s in seeds]
    for n_epochs, reg, seed in progress_bar(jobs, desc="networks", disable=not progress):
        cfg = replace(base, epochs=n_epochs, regulariser=suite[reg], seed=seed)
        model = train_or_load(cfg, runs_dir, data=data, data_root=data_root, progress=progress)
        for kind, layers in (("weight", None), ("unit", [0])):
            rows = pruning_curve(model, x, y, [k / 100 for k in ks], kind, layers)
            for k, row in zip(ks, rows, strict=True):
                records.append(
                    {
                        "regulariser": reg,
                        "bias": cfg.bias,
                        "seed": seed,
                        "epochs": n_epochs,
                        "batch_size": cfg.batch_size,
                        "protocol": protocol,
                        "optimizer": cfg.optimizer,
                        "kind": kind,
                        "k": float(k),
                        "accuracy": row["accuracy"],
                        "loss": row["loss"],
                    }
                )
    return records


#: The fashion-mlp study: every network of the default grid (with biases) at ``epochs`` (the
#: snapshots its runs save on the way) and ``long_regularisers`` × ``long_seeds`` trained on to
#: every length in ``long_epochs`` (one run each to the longest, snapshots at every shorter
#: length; the learning rate is constant, so a snapshot *is* the shorter run).
FASHION_STUDY: dict = {
    "epochs": (3, 10, 20),
    "regularisers": ("none", "targeted-weight", "targeted-unit", "dropout", "dropconnect"),
    "seeds": (0, 1, 2, 3, 4),
    "long_epochs": (30, 100),
    "long_regularisers": ("none", "targeted-weight", "targeted-unit"),
    "long_seeds": (0, 1, 2),
}


#: The fashion-mlp study under the task's other protocols (``--protocol NAME``): each
#: regulariser × seed trained once to the longest length, snapshots at the shorter ones.
#: ``"seed"`` is the seed's exact protocol (batch 32, 100 epochs) for none and targeted weight.
FASHION_PROTOCOL_STUDIES: dict[str, dict] = {
    "seed": {
        "epochs": (3, 10, 30, 100),
        "regularisers": ("none", "targeted-weight"),
        "seeds": (0, 1),
        "long_epochs": (),
        "long_regularisers": (),
        "long_seeds": (),
    },
}


def fashion_study(protocol: str = "default", study: dict | None = None) -> dict:
    """The fashion-mlp study's grid under ``protocol`` (:data:`FASHION_STUDY` for
    ``"default"``, else :data:`FASHION_PROTOCOL_STUDIES`), with ``study``'s entries replaced."""
    if protocol == "default":
        base = FASHION_STUDY
    elif protocol in FASHION_PROTOCOL_STUDIES:
        base = FASHION_PROTOCOL_STUDIES[protocol]
    else:
        known = ", ".join(["default", *FASHION_PROTOCOL_STUDIES])
        raise ValueError(
            f"the fashion-mlp training-length study has no protocol {protocol!r}; choose {known}"
        )
    return {**base, **(study or {})}


def long_lengths(study: dict) -> tuple[int, ...]:
    """The study's ``long_epochs`` as a sorted tuple (one length or several)."""
    e = study["long_epochs"]
    return tuple(sorted({int(v) for v in ((e,) if isinstance(e, int) else e)}))


def fashion_study_networks(
    study: dict | None = None, protocol: str = "default"
) -> list[tuple[str, int, int]]:
    """``(regulariser, seed, epochs)`` of every network of the fashion study (with biases)."""
    st = fashion_study(protocol, study)
    nets = [(r, s, e) for e in st["epochs"] for r in st["regularisers"] for s in st["seeds"]]
    nets += [
        (r, s, e)
        for e in long_lengths(st)
        for r in st["long_regularisers"]
        for s in st["long_seeds"]
    ]
    return list(dict.fromkeys(nets))


def fashion_training_length_records(
    *,
    study: dict | None = None,
    ks: Sequence[float] = STUDY_KS,
    runs_dir: str | Path = "runs",
    data_root: str | Path | None = None,
    split: str = "holdout",
    processes: int | None = None,
    progress: bool = True,
    settings=None,
    in_process: bool = False,
    scheduler: object = None,
    protocol: str | None = None,
) -> list[dict]:
    """Train (or reuse) the fashion-mlp study's networks and prune each on ``split``.

    ``settings``: the :class:`~td_analysis.pipelines.fashion_mlp.FashionSettings` whose networks
    are studied (default: the default grid's; ``hidden``/``train_limit`` make a small study);
    ``protocol``: the task's training protocol (default: ``settings.protocol``), e.g. ``"seed"``
    for the seed's batch 32 (its grid: :data:`FASHION_PROTOCOL_STUDIES`);
    ``in_process`` trains in this process (small runs, tests); ``scheduler``: a Dask scheduler
    address (or ``distributed.Client``) whose cluster trains instead (:func:`train_many`).

    The longest run of each (regulariser, seed) is trained by
    :func:`td_analysis.training.runs.train_many` with snapshots at the shorter lengths, so the
    default grid's checkpoints (``reproduce --experiment fashion-mlp``) are reused and shared.
    Records as the toy study's, with ``protocol``.
    """
    from td_analysis.analysis.pruning import pruning_table
    from td_analysis.pipelines.fashion_mlp import PRUNING_KINDS, FashionSettings, network_config
    from td_analysis.training.loop import load_checkpoint
    from td_analysis.training.runs import checkpoint_path, train_many

    settings = settings or FashionSettings()
    if protocol is not None and protocol != settings.protocol:
        settings = replace(settings, protocol=protocol)
    nets = fashion_study_networks(study, settings.protocol)

    def config(reg: str, seed: int, epochs: int):
        cfg = replace(network_config(settings, reg, True, seed), epochs=epochs)
        return replace(cfg, train_limit=settings.train_limit) if settings.train_limit else cfg

    longest: dict[tuple[str, int], int] = {}
    for reg, seed, e in nets:
        longest[reg, seed] = max(e, longest.get((reg, seed), 0))
    lengths = sorted({e for _, _, e in nets})
    configs = [config(reg, seed, e) for (reg, seed), e in longest.items()]
    train_many(
        configs,
        runs_dir,
        processes=processes,
        data_root=data_root,
        snapshots=lengths,
        progress=progress,
        in_process=in_process,
        scheduler=scheduler,
    )
    first = configs[0]
    x, y = load_data(first, split, root=data_root)
    records = []
    for reg, seed, e in progress_bar(nets, desc="prune", disable=not progress):
        cfg = config(reg, seed, e)
        model = load_checkpoint(checkpoint_path(cfg, runs_dir)).model
        for row in pruning_table(model, x, y, ks, PRUNING_KINDS):
            records.append(
                {
                    "regulariser": reg,
                    "bias": cfg.bias,
                    "seed": seed,
                    "epochs": e,
                    "batch_size": cfg.batch_size,
                    "protocol": settings.protocol,
                    "kind": row["kind"],
                    "k": float(row["k"]),
                    "accuracy": row["accuracy"],
                    "loss": row["loss"],
                }
            )
    return records


#: what names one network of a training-length study (a record of each pruning of it)
NETWORK_KEY = ("protocol", "regulariser", "bias", "seed", "epochs")


def _network(record: dict) -> tuple:
    return tuple(record.get(k, "default" if k == "protocol" else None) for k in NETWORK_KEY)


def _covers(new: dict, old: dict) -> bool:
    """True when run ``new`` re-made every network of run ``old`` (same protocol)."""
    return all(set(old.get(k, ())) <= set(new.get(k, ())) for k in ("regularisers", "seeds"))


def merge_protocol_runs(
    path: str | Path, run: dict, protocol: str, records: Sequence[dict]
) -> dict:
    """The study's ``training_length.json`` after a run of ``protocol``: the networks this run
    made replace their records (:data:`NETWORK_KEY`), every other network's records in ``path``
    are kept (other protocols, or regularisers and seeds this run left out).

    ``run``: what describes the run (``command``, ``experiment``, ``seconds``, ``regularisers``,
    ``seeds``, ``epochs``); ``protocols`` maps each protocol to the runs whose records the file
    holds (a run that this one re-made whole is dropped), and the top-level fields are the last
    ``"default"`` protocol run's (or this one's when there is none)."""
    path = Path(path)
    old = json.loads(path.read_text()) if path.exists() else None
    if old is not None and old.get("experiment") != run.get("experiment"):
        old = None  # another experiment's study: replaced whole
    runs: dict[str, list] = {}
    if old is not None:
        runs = {name: list(entry) for name, entry in old.get("protocols", {}).items()}
        if not runs:  # written before protocols were kept apart
            legacy = {k: v for k, v in old.items() if k not in ("records", "protocols")}
            runs[old.get("protocol", "default")] = [legacy]
    run = {**run, "protocol": protocol}
    runs[protocol] = [r for r in runs.get(protocol, []) if not _covers(run, r)] + [run]
    made = {_network(r) for r in records}
    kept = [r for r in (old or {}).get("records", []) if _network(r) not in made]
    top = (runs.get("default") or runs[protocol])[-1]
    return {**top, "protocols": runs, "records": [*kept, *records]}


def plot_training_length(records: Sequence[dict], *, title: str | None = None):
    """Accuracy (%) against epochs (log scale): a panel per kind × k, a line per regulariser,
    mean ± std over seeds (seaborn)."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    df = pd.DataFrame(list(records)).assign(accuracy_pct=lambda d: 100 * d["accuracy"])
    if "protocol" not in df:
        df["protocol"] = "default"
    # several protocols (e.g. fashion-mlp's batch 128 and the seed's batch 32): a dash each
    style = "protocol" if df["protocol"].nunique() > 1 else None
    # k = 0 is the same unpruned network for every kind: one panel for it
    panels = [("unpruned", 0.0)] if (df["k"] == 0).any() else []
    panels += [p for p in dict.fromkeys(zip(df["kind"], df["k"], strict=True)) if p[1] != 0]
    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.4 * ncols, 3.0 * nrows), squeeze=False, layout="constrained"
    )
    for ax, (kind, k) in zip(axes.flat, panels, strict=False):
        first_kind = df["kind"].iloc[0]
        sub = (
            df[(df["k"] == 0) & (df["kind"] == first_kind)]
            if k == 0
            else df[(df["kind"] == kind) & (df["k"] == k)]
        )
        sns.lineplot(
            data=sub,
            x="epochs",
            y="accuracy_pct",
            hue="regulariser",
            style=style,
            errorbar="sd",
            marker="o",
            markersize=4,
            palette="colorblind",
            ax=ax,
            legend=ax is axes.flat[0],
        )
        ax.set_xscale("log")
        epochs = sorted(df["epochs"].unique())
        ax.set_xticks(epochs, [str(e) for e in epochs])
        ax.minorticks_off()
        ax.set_title("unpruned" if k == 0 else f"{kind} pruning, k = {k:g}%", fontsize=9)
        ax.set_ylabel("holdout accuracy (%)")
    if axes.flat[0].get_legend():
        axes.flat[0].legend(fontsize=6)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m td_analysis.training_length``: run the study, write JSON and figure (the
    options: :mod:`td_analysis.cli.training_length`)."""
    return importlib.import_module(COMMAND_LINE).main(argv)
