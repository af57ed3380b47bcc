"""``td-analysis explore``: the declaration and the run of the command (the explorer itself:
:mod:`td_analysis.explore`, a light module; torch is imported only when networks are trained)."""

from __future__ import annotations

import argparse
import importlib.util
import sys

from td_analysis import explore as ex
from td_analysis.cli.options import (
    add_cache_dir_option,
    add_command,
    add_data_dir_option,
    add_runs_option,
)

__all__ = ["add_explore_command"]


def _cmd_explore(args: argparse.Namespace) -> int:
    """Run ``td-analysis explore``: check Voilà, the port and the data, train the missing
    networks (``--quick``/``--train``), then serve the notebook until stopped."""
    if importlib.util.find_spec("voila") is None:
        print(
            "td-analysis explore: error: Voilà is not installed: pip install -e '.[explore]' "
            "(in the repository folder)",
            file=sys.stderr,
        )
        return 2
    notebook = ex.find_notebook(args.notebook)
    folders = ex.explorer_folders(
        notebook, runs=args.runs, cache=args.cache_dir, data=args.data_dir, quick=args.quick
    )
    ex.check_port(args.ip, args.port)  # before any training, so a taken port fails at once

    from td_analysis.data import find_cifar10

    try:
        find_cifar10(folders["data"], download=False)
    except FileNotFoundError:
        where = folders["data"] or "$TD_ANALYSIS_DATA / ~/.cache/td_analysis"
        raise FileNotFoundError(
            f"CIFAR-10 not found in {where}: run `td-analysis download` or pass --data-dir"
        ) from None

    settings = ex.explorer_settings(args.quick)
    explorer = notebook.name == ex.DEFAULT_NOTEBOOK  # the other notebooks train what they need
    missing = ex.missing_models(settings, folders["runs"]) if explorer else {}
    if missing and not (args.quick or args.train):
        names = " and ".join(missing)
        raise FileNotFoundError(
            f"no trained {names} network (seed {settings.seeds[0]}, {settings.epochs} epochs) in "
            f"{folders['runs']}: run `td-analysis reproduce` or notebook 01, or "
            f"`td-analysis explore --train` (about {15 * len(missing)} s), or try "
            "`td-analysis explore --quick`"
        )
    if missing:
        print(f"training the explorer's networks into {folders['runs']}", flush=True)
        ex.ensure_models(settings, folders["runs"], data_root=folders["data"])
    env = ex.kernel_environment(folders, args.quick)
    print(
        f"checkpoints: {folders['runs']}; cache: {folders['cache']}; "
        f"{'quick' if args.quick else 'full'} setting",
        flush=True,
    )
    # only the explorer is preheated: another notebook (e.g. 01, which trains) would run in full
    # at start and again after each visit, whether anyone looks or not
    return ex.serve(
        notebook,
        ip=args.ip,
        port=args.port,
        env=env,
        open_browser=not args.no_browser,
        preheat=explorer,
    )


def add_explore_command(sub: argparse._SubParsersAction) -> None:
    """Register ``explore`` on the ``td-analysis`` parser."""
    p = add_command(
        sub,
        "explore",
        _cmd_explore,
        "the interactive explorer (notebook 03) as a web app in the browser (Voilà)",
        "Serve notebook 03 (03_explore_dependence) with Voilà: its figures and live "
        "widgets, without code. Uses the same checkpoints (runs/), cache and data as the "
        "notebooks. Needs the explore extra: pip install -e '.[explore]'.",
    )
    p.add_argument(
        "--port", type=int, default=ex.DEFAULT_PORT, help=f"port (default: {ex.DEFAULT_PORT})"
    )
    p.add_argument(
        "--ip", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)"
    )
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument(
        "--quick",
        action="store_true",
        help="the small setting (1 seed, 2 epochs, 2,000 evaluation images); trains its two "
        "networks first if they are missing (a few seconds)",
    )
    p.add_argument(
        "--train",
        action="store_true",
        help="train the default networks if they are missing (full setting: about 30 s)",
    )
    p.add_argument(
        "--notebook",
        default=None,
        help=f"notebook to serve: a name or number in notebooks/, or a path (default: "
        f"{ex.DEFAULT_NOTEBOOK})",
    )
    add_runs_option(
        p,
        None,
        "checkpoint folder (default: $TD_ANALYSIS_RUNS, else <repo>/runs, as the notebooks; "
        "--quick: <repo>/runs/quick/checkpoints, as reproduce --quick)",
    )
    add_cache_dir_option(
        p,
        "Hessian cache (default: $TD_ANALYSIS_CACHE, else "
        "$XDG_CACHE_HOME/td_analysis/results, ~/.cache/td_analysis/results; reproduce's too)",
    )
    add_data_dir_option(p)
