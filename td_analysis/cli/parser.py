"""The ``td-analysis`` parser (one sub-command per job) and :func:`main`, which runs a command
and turns its errors into one line and an exit status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from td_analysis.catalog import names
from td_analysis.cli.coadaptation import EXACT_LIMIT, POOLED_BINS, cmd_coadaptation
from td_analysis.cli.common import register_parser
from td_analysis.cli.download import cmd_download
from td_analysis.cli.options import (
    add_analysis_options,
    add_bins_option,
    add_checkpoint_options,
    add_command,
    add_data_dir_option,
    add_dataset_option,
    add_out_option,
    add_pruning_options,
    add_quiet_option,
    add_split_option,
    add_train_options,
    add_value_option,
    add_vmax_option,
)
from td_analysis.cli.prune import cmd_estimate, cmd_prune
from td_analysis.cli.reproduce import add_reproduce_command
from td_analysis.cli.spectrum import add_spectrum_command
from td_analysis.cli.train import cmd_train
from td_analysis.utils import cliargs
from td_analysis.utils.reproducibility import pin_cpu_kernels

# the shared argument types live in td_analysis.utils.cliargs (public); short local names for them
_fractions = cliargs.fractions
_ints = cliargs.ints
_percents = cliargs.percents


def build_parser() -> argparse.ArgumentParser:
    """The ``td-analysis`` argument parser with one sub-command per job."""
    parser = cliargs.OneLineErrorParser(
        prog="td-analysis",
        formatter_class=cliargs.DefaultsHelpFormatter,
        description=(
            "Measure targeted dropout (Gomez et al., 'Learning Sparse Networks Using Targeted "
            "Dropout'): train the paper's toy dense CIFAR-10 network, prune it, compute exact "
            "Hessians and the coadaptation matrix, and reproduce Figure 1 and Table 1."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    DATASET_NAMES = names.DATASET_NAMES

    p = add_command(
        sub,
        "download",
        cmd_download,
        "download and verify a data set (CIFAR-10 by default, Fashion-MNIST)",
        "Download a data set from its official address into the data folder and "
        "verify it: cifar10 (cifar-10-python.tar.gz, md5-checked, extracted safely) or "
        "fashion-mnist (the four official .gz files, md5-checked, into fashion-mnist/). "
        "Data already present is kept unless --force is given.",
    )
    p.add_argument(
        "--dataset",
        choices=(*DATASET_NAMES, "all"),
        default="cifar10",
        help="which data set (all: every one)",
    )
    add_data_dir_option(p)
    p.add_argument("--force", action="store_true", help="download even if the data is present")

    p = add_command(
        sub,
        "train",
        cmd_train,
        "train a dense network and write a checkpoint",
        "Train the dense network of a task (--task/--dataset; by default the "
        "paper's toy CIFAR-10 network) on the training split (the first 80% of the official "
        "training set), evaluate on the holdout (the other 20%) and write a checkpoint "
        "(weights, config with task and data set, metrics).",
    )
    add_data_dir_option(p)
    add_out_option(
        p,
        "checkpoint path (default: runs/<task>-<reg>-<bias>-seed<seed>-<config hash>.pt, "
        "so runs with other settings never overwrite it)",
    )
    add_quiet_option(p, "no progress bar")
    add_train_options(p)

    p = add_command(
        sub,
        "prune",
        cmd_prune,
        "magnitude-prune a checkpoint and print a pruning curve",
        "Prune a trained checkpoint by magnitude at several fractions "
        "and report loss and accuracy; writes CSV and JSON.",
    )
    add_checkpoint_options(p)
    add_pruning_options(
        p,
        kind_help="weight: per output unit by |w|; unit: whole units by L2 norm; "
        "global: one magnitude threshold over all layers (default: weight)",
        fractions=[0.0, 0.25, 0.5, 0.75, 0.9],
    )
    add_value_option(
        p,
        "--percent",
        _percents,
        "the seed's rules instead: comma-separated k in [0, 100]; --kind weight removes "
        "the smallest k%% of |w| in each hidden weight matrix, --kind unit the k%% hidden units "
        "of each layer with the smallest incoming L2 norm (with their bias and outgoing "
        "weights); the output layer is kept (e.g. 0,25,50,60,70,80,90,95,97,99)",
    )
    add_split_option(p, "data to evaluate on (default: holdout)")
    add_dataset_option(p)
    add_data_dir_option(p)
    add_out_option(
        p,
        "output stem: writes STEM.csv and STEM.json, the whole name kept (sweep_v1.2 → "
        "sweep_v1.2.csv) (default: <checkpoint without .pt>-prune-<kind>-<split>[-layers…])",
    )
    add_quiet_option(p, "no progress bar")

    p = add_command(
        sub,
        "estimate",
        cmd_estimate,
        "Taylor estimates vs measured loss change after pruning",
        "For each pruning fraction: the first-order term −∇ᵀd, the "
        "second-order term ½dᵀHd (one exact Hessian-vector product), the diagonal "
        "(OBD) estimate and the measured change in mean loss and accuracy; "
        "float64. Writes CSV and JSON.",
    )
    add_analysis_options(p)
    add_pruning_options(
        p, kind_help="pruning rule (default: weight)", fractions=[0.25, 0.5, 0.75, 0.9]
    )
    add_out_option(
        p,
        "output stem: writes STEM.csv and STEM.json, the whole name kept (default: "
        "<checkpoint without .pt>-estimate-<kind>-<split>[-layers…][-limitN])",
    )

    p = add_command(
        sub,
        "coadaptation",
        cmd_coadaptation,
        "plot θᵀ⊙H⊙θ of a checkpoint, ordered by |θ|",
        "Exact Hessian (float64) over a parameter set, the "
        "coadaptation matrix ordered by decreasing magnitude, its block sums "
        "for the lowest-|θ| fraction γ, and a heatmap (PNG). Large sets (e.g. "
        "--params weights, 30,820 weights) are pooled into B × B block sums.",
    )
    add_analysis_options(p)
    p.add_argument(
        "--params",
        default="layers.1.weight",
        help="parameter name (comma-separated for several), or 'weights' for all weight "
        "matrices (default: layers.1.weight)",
    )
    add_bins_option(
        p,
        "pool C into B × B block sums of the |θ| ordering through B Hessian-vector "
        f"products, without the full Hessian (default: exact C up to {EXACT_LIMIT:,} "
        f"parameters, else {POOLED_BINS} bins)",
    )
    p.add_argument(
        "--reduction",
        choices=("sum", "mean"),
        default="sum",
        help="loss summed (as the published figure) or averaged (default: sum)",
    )
    p.add_argument(
        "--gamma", type=cliargs.unit_interval, default=0.75, help="marked pruned fraction"
    )
    add_vmax_option(
        p,
        "colour limit ±vmax (default: the largest |entry|; 99th percentile when pooled)",
    )
    add_out_option(
        p,
        "PNG path (default: <checkpoint without .pt>-coadaptation-<params>-<split>"
        "[-limitN][-binsB][-mean].png, so other parameter sets never overwrite it)",
    )

    _add_analysis_commands(sub)
    for command in sub.choices.values():  # also the commands other modules register
        cliargs.show_defaults(command)
        if "--progress" not in command._option_string_actions:  # noqa: SLF001 - argparse API
            command.add_argument(
                "--progress",
                action="store_true",
                help="progress bars even when stderr is not a terminal (by default a log gets "
                "a plain line every $TD_ANALYSIS_PROGRESS_INTERVAL seconds, 30 unless set)",
            )
    return parser


register_parser(build_parser)  # the defaults the commands leave out of file names


def _add_analysis_commands(sub: argparse._SubParsersAction) -> None:
    """``reproduce``, ``explore`` and ``spectrum``; their code is imported when they run."""
    from td_analysis.cli.explore import add_explore_command  # light: torch only when it runs

    add_reproduce_command(sub)
    add_explore_command(sub)  # the explorer web app (notebook 03 with Voilà)
    add_spectrum_command(sub)  # Hessian eigenvalues, trace, density (issue 10)


def _terminate_cleanly(handler: object = None) -> object:
    """SIGTERM (``kill``, a batch system's time limit) unwinds like Ctrl-C, so staging folders
    and temporary files are removed instead of left behind (exit status 143). Returns the
    previous handler; ``_terminate_cleanly(previous)`` puts it back."""
    import signal
    import threading

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.signal(signal.SIGTERM, stop if handler is None else handler)
    except (ValueError, OSError, TypeError):  # pragma: no cover - no signals here
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``td-analysis`` with ``argv``; returns the exit status (2 for bad input).

    First it pins the CPU kernels (:func:`td_analysis.utils.reproducibility.pin_cpu_kernels`:
    nothing here has imported torch yet; called from Python after ``import torch`` it changes
    nothing),
    so every run of the command computes the same bits on any AVX2 machine; the processes a
    command spawns inherit the pinned environment."""
    pin_cpu_kernels()
    from td_analysis.utils.progress import set_progress_mode

    parser = build_parser()
    args = parser.parse_args(argv)
    quiet, forced = getattr(args, "quiet", False), getattr(args, "progress", False)
    set_progress_mode("off" if quiet else "bar" if forced else None)
    previous = _terminate_cleanly()
    try:
        return int(args.func(args) or 0)
    except (OSError, ValueError, KeyError, MemoryError, FloatingPointError) as exc:
        # missing/corrupt data, bad input, too large a request, a diverging run: one line
        print(f"td-analysis {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if "LinAlgError" not in type(exc).__name__:
            raise
        # an eigen/Cholesky solver that did not converge (non-finite or degenerate input):
        # torch's message in one line, never a traceback
        text = " ".join(str(exc).split())
        print(f"td-analysis {args.command}: error: {text[:300]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        set_progress_mode(None)
        if previous is not None:
            _terminate_cleanly(previous)


def entry() -> None:
    """The process entry point of ``td-analysis`` (console script and ``python -m
    td_analysis.cli``): :func:`main`, then exit with its status.

    An interrupted run (Ctrl-C: 130; SIGTERM: 143) leaves with ``os._exit`` once its own cleanup
    (staging folders, temporary files, worker processes) has run while the exception unwound:
    the interpreter's finalisation would otherwise join the worker pools' manager threads, which
    can wait for a worker that the interrupt stopped half-way through its start."""
    import os
    import signal

    stopped = (130, 128 + signal.SIGTERM)
    try:
        code = main()
    except SystemExit as exc:
        if exc.code not in stopped:
            raise
        code = int(exc.code)
    if code in stopped:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
