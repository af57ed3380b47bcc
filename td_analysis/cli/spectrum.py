"""Declaration of ``td-analysis spectrum`` (run by :func:`td_analysis.spectra._cmd_spectrum`,
imported when the command runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from td_analysis import cliargs, names
from td_analysis.cli.common import _lazy
from td_analysis.cli.options import _add_dataset_option, add_model_option


def add_spectrum_command(sub: argparse._SubParsersAction) -> None:
    """Register ``spectrum`` (run by :func:`td_analysis.spectra._cmd_spectrum`)."""
    p = sub.add_parser(
        "spectrum",
        help="top Hessian eigenvalues, trace and spectral density of a checkpoint",
        description="Top-k eigenvalues of the Hessian of the mean cross-entropy (block Lanczos, "
        "exact to --tol), its trace (Hutch++ with a standard error, or exact) and with --density "
        "its smoothed spectral density (stochastic Lanczos quadrature, PNG), float64, through "
        "Hessian-vector products only. Writes STEM.json (and STEM.png). Data-parallel: "
        "torchrun --nproc-per-node 2 $(which td-analysis) spectrum CKPT --distributed.",
        formatter_class=cliargs.DefaultsHelpFormatter,
    )
    p.add_argument("checkpoint", type=Path, help="a checkpoint written by 'td-analysis train'")
    add_model_option(p)
    _add_dataset_option(p)
    p.add_argument(
        "--params",
        default=None,
        help="parameter names (comma-separated) or 'weights' (default: all parameters)",
    )
    p.add_argument("--k", type=cliargs.positive_int, default=20, help="number of eigenvalues")
    p.add_argument(
        "--which", choices=names.WHICH, default="largest", help="which end of the spectrum"
    )
    p.add_argument(
        "--tol",
        type=cliargs.positive_float,
        default=1e-6,
        help="residual tolerance ‖Hv − λv‖ ≤ tol·‖H‖",
    )
    p.add_argument(
        "--block-size",
        type=cliargs.positive_int,
        default=None,
        help="vectors per Hessian product in the eigensolver (default: min(k, 4)); 1 suits wide "
        "networks, whose (P, b) products cost about b single ones",
    )
    p.add_argument("--trace-method", choices=names.TRACE_METHODS, default="hutch++")
    p.add_argument(
        "--trace-matvecs",
        type=cliargs.int_at_least(6),
        default=99,
        help="Hessian-vector products of the stochastic trace",
    )
    p.add_argument("--density", action="store_true", help="also plot the spectral density")
    p.add_argument("--probes", type=cliargs.positive_int, default=8, help="SLQ probe vectors")
    p.add_argument("--steps", type=cliargs.positive_int, default=64, help="Lanczos steps per probe")
    p.add_argument("--seed", type=int, default=0, help="seed of the random start and probes")
    p.add_argument(
        "--split",
        choices=("holdout", "test", "train"),
        default="holdout",
        help="data the loss is taken over",
    )
    p.add_argument(
        "--limit", type=cliargs.positive_int, default=None, help="use only the first N examples"
    )
    p.add_argument("--data-dir", type=Path, default=None, help=cliargs.DATA_HELP)
    p.add_argument(
        "--out",
        type=cliargs.output_file,
        default=None,
        help="output stem for .json/.png, the whole name kept (sweep_v1.2 → sweep_v1.2.json) "
        "(default: <checkpoint without .pt>-spectrum-<split>[-<params>][-limitN][-<option>"
        "<value>…], every option that changes the result and is not at its default)",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="under torchrun: each process takes its shard of the data, products are summed "
        "with all_reduce (gloo on CPU, NCCL on CUDA); rank 0 prints and writes",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_lazy("td_analysis.spectra:_cmd_spectrum"))
