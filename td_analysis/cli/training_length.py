"""``python -m td_analysis.training_length``: the command line of the training-length study
(:mod:`td_analysis.pipelines.training_length` holds the study itself).

:func:`main` pins the CPU kernels before it imports the study (and with it torch), so the
study's networks are bit for bit those of ``td-analysis reproduce``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from td_analysis.cli import options
from td_analysis.utils import cliargs
from td_analysis.utils.reproducibility import pin_cpu_kernels

__all__ = ["PROG", "build_parser", "study_from_args", "main"]

PROG = "python -m td_analysis.training_length"


def build_parser() -> argparse.ArgumentParser:
    """The study's options (defaults from :mod:`td_analysis.pipelines.training_length`, which
    imports torch: call this after the kernels are pinned)."""
    from td_analysis.pipelines.training_length import FASHION_STUDY, STUDY_KS, STUDY_REGULARISERS

    p = argparse.ArgumentParser(
        prog=PROG,
        description="The training-length study: accuracy after pruning against training "
        "length. toy: 20, 60 and 200 epochs, writes OUT/training_length.json and .png (OUT: "
        "figures); fashion-mlp: every network of the default grid (with biases) at 3, 10 and "
        "20 epochs and none/targeted weight/targeted unit of seeds 0, 1, 2 at 30 and 100 epochs, "
        "trained in parallel processes with snapshots (OUT: figures/fashion_mlp); with "
        "--protocol seed: none/targeted weight of seeds 0, 1 under the seed's batch 32 at 3, 10, "
        "30 and 100 epochs. A run replaces the records of the networks it makes in "
        "OUT/training_length.json and keeps every other network's (other protocols, "
        "regularisers or seeds).",
    )
    p.add_argument("--experiment", choices=("toy", "fashion-mlp"), default="toy")
    p.add_argument("--epochs", type=cliargs.seeds, default=None)
    options.add_seeds_option(p)
    p.add_argument(
        "--regularisers",
        type=lambda t: [v.strip() for v in t.split(",") if v.strip()],
        default=None,
        help="comma-separated regularisers (toy: names of reproduce's suite, default "
        f"{','.join(STUDY_REGULARISERS)}; fashion-mlp: default "
        f"{','.join(FASHION_STUDY['regularisers'])})",
    )
    options.add_value_option(
        p,
        "--long-epochs",
        cliargs.seeds,
        "fashion-mlp: comma-separated lengths of the long runs (default "
        f"{','.join(map(str, FASHION_STUDY['long_epochs']))})",
    )
    options.add_value_option(
        p,
        "--long-seeds",
        cliargs.seeds,
        "fashion-mlp: comma-separated seeds of the long runs (default "
        f"{','.join(map(str, FASHION_STUDY['long_seeds']))})",
    )
    options.add_processes_option(p)
    options.add_scheduler_option(
        p,
        "fashion-mlp: train the networks on the Dask cluster of this scheduler (e.g. "
        "tcp://10.0.0.5:8786) instead of --processes local processes; the same networks; needs "
        'pip install "td-analysis[dask]" and a --runs folder every worker sees',
    )
    p.add_argument(
        "--ks",
        type=cliargs.percents,
        default=list(STUDY_KS),
        help="pruning percentages (default: %(default)s)",
    )
    p.add_argument(
        "--protocol",
        default="default",
        help="the task's training protocol; toy: default (= adam: Adam lr 1e-3, the protocol "
        "study's closest) or sgd (SGD lr 0.01, the first results), only the epochs change; "
        "fashion-mlp: default (batch 128) or seed (the seed's batch 32) (default: %(default)s)",
    )
    p.add_argument("--out", type=Path, default=None)
    options.add_runs_option(p)
    options.add_data_dir_option(p)
    options.add_quiet_option(p)
    return p


def study_from_args(args: argparse.Namespace) -> dict | None:
    """Fill in the defaults of ``args`` (epochs, seeds, regularisers, out); the fashion-mlp
    study's grid (None for toy)."""
    from td_analysis.pipelines.training_length import (
        STUDY_EPOCHS,
        STUDY_REGULARISERS,
        fashion_study,
        long_lengths,
    )

    fashion = args.experiment == "fashion-mlp"
    if args.out is None:
        args.out = Path("figures/fashion_mlp" if fashion else "figures")
    if not fashion:
        args.epochs = args.epochs or list(STUDY_EPOCHS)
        args.seeds = args.seeds or [0, 1, 2]
        args.regularisers = args.regularisers or list(STUDY_REGULARISERS)
        return None
    grid = (("epochs", args.epochs), ("seeds", args.seeds), ("regularisers", args.regularisers))
    study = {k: tuple(v) for k, v in grid if v is not None}
    if args.long_epochs is not None:
        study["long_epochs"] = tuple(args.long_epochs)
    if args.long_seeds is not None:
        study["long_seeds"] = tuple(args.long_seeds)
    study = fashion_study(args.protocol, study)  # raises on a protocol the study lacks
    args.epochs = sorted({*study["epochs"], *long_lengths(study)})
    args.seeds = list(study["seeds"])
    args.regularisers = list(study["regularisers"])
    return study


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study, write OUT/training_length.json (fashion-mlp: and .md) and the figure."""
    pin_cpu_kernels()  # before the study's modules import torch
    from td_analysis.pipelines import training_length as tl
    from td_analysis.report import plotting
    from td_analysis.utils.io import atomic_write_json, atomic_write_text

    args = build_parser().parse_args(argv)
    # the grid the user chose, for the command the JSON records
    chosen = [
        f" --{name.replace('_', '-')} {','.join(map(str, getattr(args, name)))}"
        for name in ("regularisers", "seeds", "long_seeds")
        if getattr(args, name, None) is not None
    ]
    try:
        study = study_from_args(args)
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    fashion = study is not None
    if args.scheduler is not None and not fashion:
        print(f"{PROG}: error: --scheduler applies to --experiment fashion-mlp", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        if fashion:
            records = tl.fashion_training_length_records(
                study=study,
                ks=args.ks,
                runs_dir=args.runs,
                data_root=args.data_dir,
                processes=args.processes,
                progress=not args.quiet,
                scheduler=args.scheduler,
                protocol=args.protocol,
            )
        else:
            records = tl.training_length_records(
                epochs=args.epochs,
                seeds=args.seeds,
                regularisers=args.regularisers,
                ks=args.ks,
                runs_dir=args.runs,
                data_root=args.data_dir,
                progress=not args.quiet,
                protocol=args.protocol,
                processes=args.processes,
            )
    except KeyboardInterrupt:
        print(
            "interrupted: finished networks are kept in --runs; nothing else was written",
            file=sys.stderr,
        )
        return 130
    except (ValueError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    command = (
        PROG
        + (" --experiment fashion-mlp" if fashion else "")
        + (f" --protocol {args.protocol}" if args.protocol != "default" else "")
        + "".join(chosen)
    )
    grid = {"epochs": list(args.epochs), "seeds": list(args.seeds)}
    grid["regularisers"] = list(args.regularisers)
    if fashion:
        grid["study"] = {k: list(v) if isinstance(v, tuple) else v for k, v in study.items()}
    payload = tl.merge_protocol_runs(
        args.out / "training_length.json",
        {"command": command, "experiment": args.experiment, "seconds": seconds, **grid},
        args.protocol,
        records,
    )
    atomic_write_json(args.out / "training_length.json", payload)
    if fashion:
        from td_analysis.report import compat as reports

        atomic_write_text(
            args.out / "training_length.md", reports.fashion_training_length_markdown(payload)
        )
    network = "fashion-mlp network (with biases)" if fashion else "toy network"
    fig = tl.plot_training_length(
        records,
        title=f"{network}: holdout accuracy after pruning against training length "
        f"(mean ± std over the seeds, up to {len(args.seeds)})",
    )
    plotting.save_figure(fig, args.out / "training_length.png", formats=("png",))
    print(f"wrote {args.out / 'training_length.json'} and .png in {seconds:.0f} s")
    return 0
