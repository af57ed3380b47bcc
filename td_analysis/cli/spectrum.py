"""``td-analysis spectrum``: its declaration and its run (:func:`_cmd_spectrum`, which imports
the analysis, :mod:`td_analysis.analysis.spectra`, and torch with it, only when the command
runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from td_analysis.catalog import names
from td_analysis.cli.common import load_checked_checkpoint, parser_defaults
from td_analysis.cli.options import (
    add_checkpoint_options,
    add_command,
    add_data_dir_option,
    add_dataset_option,
    add_limit_option,
    add_out_option,
    add_quiet_option,
    add_split_option,
    add_value_option,
)
from td_analysis.utils import cliargs
from td_analysis.utils.io import atomic_write_json


def add_spectrum_command(sub: argparse._SubParsersAction) -> None:
    """Register ``spectrum`` (run by :func:`_cmd_spectrum`)."""
    p = add_command(
        sub,
        "spectrum",
        _cmd_spectrum,
        "top Hessian eigenvalues, trace and spectral density of a checkpoint",
        "Top-k eigenvalues of the Hessian of the mean cross-entropy (block Lanczos, "
        "exact to --tol), its trace (Hutch++ with a standard error, or exact) and with --density "
        "its smoothed spectral density (stochastic Lanczos quadrature, PNG), float64, through "
        "Hessian-vector products only. Writes STEM.json (and STEM.png). Data-parallel: "
        "torchrun --nproc-per-node 2 $(which td-analysis) spectrum CKPT --distributed.",
        formatter_class=cliargs.DefaultsHelpFormatter,
    )
    add_checkpoint_options(p)
    add_dataset_option(p)
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
    add_value_option(
        p,
        "--block-size",
        cliargs.positive_int,
        "vectors per Hessian product in the eigensolver (default: min(k, 4)); 1 suits wide "
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
    add_split_option(p, "data the loss is taken over")
    add_limit_option(p, "use only the first N examples")
    add_data_dir_option(p)
    add_out_option(
        p,
        "output stem for .json/.png, the whole name kept (sweep_v1.2 → sweep_v1.2.json) "
        "(default: <checkpoint without .pt>-spectrum-<split>[-<params>][-limitN][-<option>"
        "<value>…], every option that changes the result and is not at its default)",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="under torchrun: each process takes its shard of the data, products are summed "
        "with all_reduce (gloo on CPU, NCCL on CUDA); rank 0 prints and writes",
    )
    add_quiet_option(p)


# ----------------------------------------------------------------------------- run
#: ``spectrum`` options that change the result, as (name in the file name, option dest)
_SPECTRUM_OPTIONS = (
    ("limit", "limit"),
    ("k", "k"),
    ("", "which"),
    ("tol", "tol"),
    ("block", "block_size"),
    ("trace-", "trace_method"),
    ("matvecs", "trace_matvecs"),
    ("probes", "probes"),
    ("steps", "steps"),
    ("seed", "seed"),
)


def spectrum_stem(args: argparse.Namespace) -> str:
    """``--out`` (whole stem), else ``<checkpoint>-spectrum-<split>[-<params>][-<option><value>
    …]`` with every option that changes the numbers and differs from its default
    (:func:`td_analysis.utils.cliargs.command_stem`); probes and steps only with ``--density``."""
    defaults = parser_defaults(args)
    options: list[tuple[str, object]] = [("", args.split), ("", args.params)]
    for name, dest in _SPECTRUM_OPTIONS:
        value = getattr(args, dest)
        if dest in ("probes", "steps") and not args.density:
            value = None
        options.append((name, None if value == defaults.get(dest) else value))
    options.append(("density", bool(args.density)))
    model = getattr(args, "model", None)
    if model:
        options.append(("model-", model.replace(":", ".")))
    extensions = (".json", ".png") if args.density else (".json",)
    return cliargs.command_stem(args, "spectrum", options, extensions)


def _cmd_spectrum(args: argparse.Namespace) -> int:
    """Run ``td-analysis spectrum``: eigenvalues, trace (and density) of a checkpoint's Hessian,
    printed and written to STEM.json (and STEM.png)."""
    from td_analysis.analysis.spectra import report_text, spectrum_report
    from td_analysis.curvature import distributed as dist_utils
    from td_analysis.report import plotting
    from td_analysis.training.loop import load_data

    stem = spectrum_stem(args)  # whole stem; .json (and .png) checked writable before the work
    json_path, png_path = Path(f"{stem}.json"), Path(f"{stem}.png")
    rank, world = 0, 1
    if args.distributed:
        try:
            rank, world = dist_utils.init_from_env()
        except RuntimeError as exc:  # not started by torchrun: one line, exit 2
            raise ValueError(f"--distributed: {exc}") from exc
    try:
        ckpt = load_checked_checkpoint(args.checkpoint, getattr(args, "model", None))
        if hasattr(ckpt, "factory"):  # --model: images of --dataset
            from td_analysis.training.usermodels import model_data

            x, y = model_data(ckpt, getattr(args, "dataset", None), args.split, args.data_dir)
        else:
            x, y = load_data(
                ckpt.config, args.split, root=args.data_dir, dataset=getattr(args, "dataset", None)
            )
        if args.limit is not None:
            x, y = x[: args.limit], y[: args.limit]
        n = len(y)
        if args.distributed:
            part = dist_utils.shard(n, rank, world)
            x, y = x[part], y[part]
        params = None
        if args.params:
            params = args.params if args.params == "weights" else args.params.split(",")
        report = spectrum_report(
            ckpt.model,
            (x, y),
            params=params,
            k=args.k,
            which=args.which,
            tol=args.tol,
            trace_method=args.trace_method,
            trace_matvecs=args.trace_matvecs,
            density=args.density,
            num_probes=args.probes,
            num_steps=args.steps,
            seed=args.seed,
            num_examples=n,
            distributed=args.distributed,
            progress=not args.quiet and rank == 0,
            block_size=args.block_size,
        )
        if rank != 0:
            return 0
        where = f" on {world} processes" if args.distributed else ""
        print(report_text(report, f"{args.checkpoint} ({args.split}{where}): "))
        atomic_write_json(json_path, report.as_dict())
        print(f"wrote {json_path}")
        if args.density:
            fig = plotting.plot_spectral_density(
                {ckpt.config.regulariser.label: (report.grid, report.density)},
                eigenvalues={ckpt.config.regulariser.label: report.eigenvalues},
                title=f"Hessian spectral density (SLQ, {args.probes} probes × {args.steps} "
                f"steps), {report.num_params:,} parameters, {n:,} {args.split} examples",
            )
            for path in plotting.save_figure(fig, png_path, formats=("png",)):
                print(f"wrote {path}")
        return 0
    finally:
        if args.distributed and dist_utils.is_initialized():
            import torch.distributed as dist

            dist.destroy_process_group()
