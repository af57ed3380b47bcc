"""Option groups shared by several commands: the ``train`` options (with per-task defaults
worked out when ``--help`` prints them), ``--dataset``, ``--model`` and the analysis options."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from td_analysis.catalog import names
from td_analysis.utils import cliargs
from td_analysis.utils.cliargs import DATA_HELP


def add_train_options(p: argparse.ArgumentParser) -> None:
    REGULARISERS = names.REGULARISERS

    def per_task(field: str, text: str = "") -> cliargs.Deferred:
        """``text (default: the task's: toy 0.01, fashion-mlp 0.001)``, worked out when --help
        prints it (the task registry imports torch)."""

        def make() -> str:
            values = ", ".join(f"{n} {_task_default(t, field)}" for n, t in _dense_tasks().items())
            return f"{text} (default: the task's: {values})".strip()

        return cliargs.Deferred(make)

    def tasks_text(make) -> cliargs.Deferred:
        def text() -> str:
            from td_analysis.training.tasks import DEFAULT_TASK

            return make(DEFAULT_TASK, _dense_tasks())

        return cliargs.Deferred(text)

    g = p.add_argument_group("experiment")
    g.add_argument(
        "--task",
        default=None,
        help=tasks_text(
            lambda default, tasks: (
                f"experiment whose data, network and defaults are used: "
                f"{', '.join(tasks)} (default: {default}, or the task of --dataset)"
            )
        ),
    )
    g.add_argument(
        "--dataset",
        choices=names.DATASET_NAMES,
        default=None,
        help=tasks_text(
            lambda default, tasks: (
                "data set; picks its task ("
                + ", ".join(f"{d}: {n}" for d, n in _first_task_of_dataset(tasks).items())
                + ")"
            )
        ),
    )
    g.add_argument(
        "--protocol",
        default="default",
        help="the task's named training protocol, e.g. 'seed' for fashion-mlp (the seed's "
        "batch 32, 100 epochs) (default: default)",
    )

    def task_option(group, flag: str, kind, field: str, text: str, **extra) -> None:
        """An option whose default is the task's ``field`` (shown by ``--help``)."""
        group.add_argument(flag, type=kind, default=None, help=per_task(field, text), **extra)

    g = p.add_argument_group("network")
    task_option(g, "--hidden", cliargs.positive_ints, "hidden", "hidden widths, comma-separated")
    g.add_argument("--no-bias", action="store_true", help="layers without biases")
    g = p.add_argument_group("regulariser")
    g.add_argument(
        "--reg", choices=REGULARISERS, default="none", help="regulariser (default: none)"
    )
    task_option(g, "--gamma", cliargs.unit_interval, "gamma", "targeted fraction γ for targeted-*")
    task_option(
        g,
        "--alpha",
        cliargs.unit_interval,
        "alpha",
        "drop probability α for targeted-*, dropout, dropconnect",
    )
    g.add_argument(
        "--l1", type=cliargs.non_negative_float, default=1e-4, help="L1 coefficient for --reg l1"
    )
    add_value_option(
        g,
        "--ramp-steps",
        cliargs.positive_int,
        "ramp γ and α over this many steps (the official 'piecewise' schedule)",
    )
    add_value_option(
        g,
        "--layers",
        cliargs.non_negative_ints,
        "indices of the weight matrices regularised (default: the task's: all for toy, "
        "the hidden layers for fashion-mlp)",
    )
    g = p.add_argument_group("optimisation (defaults: the task's protocol)")
    task_option(g, "--optimizer", None, "optimizer", "optimiser", choices=("sgd", "adam"))
    task_option(g, "--lr", cliargs.positive_float, "lr", "learning rate")
    add_value_option(g, "--momentum", cliargs.momentum, "SGD momentum, in [0, 1)")
    add_value_option(g, "--weight-decay", cliargs.non_negative_float, "L2 weight decay")
    add_value_option(g, "--grad-clip", cliargs.positive_float, "clip the gradient norm")
    task_option(g, "--batch-size", cliargs.positive_int, "batch_size", "minibatch size")
    task_option(g, "--epochs", cliargs.positive_int, "epochs", "passes over the data")
    add_value_option(
        g,
        "--seed",
        cliargs.non_negative_int,
        "seed of initialisation, shuffling and dropout (default: TrainConfig's, 0)",
    )
    task_option(
        g,
        "--preprocessing",
        None,
        "preprocessing",
        "input scaling",
        choices=("standardize", "unit", "raw"),
    )
    add_value_option(
        g,
        "--device",
        cliargs.device,
        "cpu, cuda, cuda:N or auto (CUDA if available) (default: TrainConfig's, cpu)",
    )


def _dense_tasks() -> dict:
    """The registered tasks that ``train`` can train (dense networks; the ResNet task trains
    through ``reproduce --experiment resnet-cifar10``)."""
    from td_analysis.training.tasks import TASKS, ResNetTask

    return {n: t for n, t in TASKS.items() if not isinstance(t, ResNetTask)}


def _first_task_of_dataset(tasks: dict) -> dict[str, str]:
    """Data set → the first of ``tasks`` on it (what ``--dataset`` picks)."""
    first: dict[str, str] = {}
    for n, t in tasks.items():
        first.setdefault(t.dataset, n)
    return first


def _task_default(task, field: str):
    """A task's default for a ``train`` option (hidden widths comma-separated)."""
    value = task.protocol()[field] if field in task.protocol() else getattr(task, field)
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


def add_dataset_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        choices=names.DATASET_NAMES,
        default=None,
        help="data set to evaluate on (default: the one the checkpoint was trained on)",
    )


def add_model_option(p: argparse.ArgumentParser) -> None:
    """``--model module:callable``: the factory of a user model
    (:mod:`td_analysis.training.usermodels`)."""
    p.add_argument(
        "--model",
        default=None,
        metavar="MODULE:CALLABLE",
        help="factory (module:callable or file.py:callable) returning the nn.Module whose "
        "state_dict CHECKPOINT holds (e.g. a 'fit' checkpoint); needs --dataset; Conv filters "
        "are units (default: the checkpoint's own DenseNet)",
    )


def add_analysis_options(p: argparse.ArgumentParser) -> None:
    add_checkpoint_options(p)
    add_split_option(p, "data the loss is taken over (default: holdout)")
    add_dataset_option(p)
    add_limit_option(p, "use only the first N images (default: all)")
    add_data_dir_option(p)
    add_quiet_option(p, "no progress bar")


# ----------------------------------------------------------------------------- run options
# the options every command that trains or reads data shares, declared once here


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    func: Callable[[argparse.Namespace], int],
    text: str,
    description: str,
    **extra: object,
) -> argparse.ArgumentParser:
    """The sub-command ``name`` (``text``: its line in the command list), run by ``func``."""
    p = sub.add_parser(name, help=text, description=description, **extra)
    p.set_defaults(func=func)
    return p


def add_value_option(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    kind: Callable[[str], object] | None,
    text: str,
    **extra: object,
) -> None:
    """``flag VALUE`` parsed by ``kind``, default ``None`` (the command works the value out)."""
    p.add_argument(flag, type=kind, default=None, help=text, **extra)


def add_out_option(p: argparse.ArgumentParser, text: str, *, folder: bool = False) -> None:
    """``--out``: an output file (stem) or, with ``folder``, an output folder, checked up front
    (one that cannot be created is refused before any work)."""
    add_value_option(p, "--out", cliargs.output_folder if folder else cliargs.output_file, text)


def add_limit_option(p: argparse.ArgumentParser, text: str, flag: str = "--limit") -> None:
    """``--limit N``: only the first N examples of the data evaluated on."""
    add_value_option(p, flag, cliargs.positive_int, text)


def add_bins_option(p: argparse.ArgumentParser, text: str) -> None:
    """``--bins B``: B × B block sums of the pooled coadaptation matrix."""
    add_value_option(p, "--bins", cliargs.positive_int, text)


def add_vmax_option(p: argparse.ArgumentParser, text: str) -> None:
    """``--vmax``: the colour limit ±vmax of a coadaptation heatmap."""
    add_value_option(p, "--vmax", cliargs.positive_float, text)


def add_data_dir_option(p: argparse.ArgumentParser) -> None:
    """``--data-dir``: the folder of the data sets (default: ``$TD_ANALYSIS_DATA``, …)."""
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_HELP)


def add_quiet_option(p: argparse.ArgumentParser, text: str = "no progress bars") -> None:
    """``--quiet``: no progress output."""
    p.add_argument("--quiet", action="store_true", help=text)


def add_runs_option(
    p: argparse.ArgumentParser,
    default: Path | None = Path("runs"),
    text: str = "checkpoint folder, reused across runs (default: runs)",
    *,
    output: bool = False,
) -> None:
    """``--runs``: the checkpoint folder (``output``: checked as an output folder)."""
    kind = cliargs.output_folder if output else Path
    p.add_argument("--runs", type=kind, default=default, help=text)


def add_cache_dir_option(p: argparse.ArgumentParser, text: str) -> None:
    """``--cache-dir``: the cache of Hessians."""
    p.add_argument("--cache-dir", type=Path, default=None, help=text)


def add_seeds_option(
    p: argparse.ArgumentParser,
    default: list[int] | None = None,
    text: str = "distinct seeds, comma-separated",
) -> None:
    """``--seeds 0,1,2``: distinct non-negative seeds."""
    p.add_argument("--seeds", type=cliargs.seeds, default=default, help=text)


def add_processes_option(p: argparse.ArgumentParser, text: str | None = None) -> None:
    """``--processes N``: networks trained in parallel (spawned) processes."""
    add_value_option(
        p,
        "--processes",
        cliargs.positive_int,
        text or "networks trained in parallel processes (default: one per available core)",
    )


def scheduler_address(text: str) -> str:
    """A Dask scheduler address (``tcp://host:8786``, ``host:8786``), refused up front when the
    ``dask`` extra is not installed (found without importing it)."""
    import importlib.util

    text = text.strip()
    if not text:
        raise argparse.ArgumentTypeError("a scheduler address like tcp://10.0.0.5:8786")
    if importlib.util.find_spec("distributed") is None:
        raise argparse.ArgumentTypeError(
            'a scheduler needs Dask: pip install "td-analysis[dask]" (package distributed)'
        )
    return text


def add_scheduler_option(p: argparse.ArgumentParser, text: str | None = None) -> None:
    """``--scheduler ADDRESS``: the networks go to a Dask cluster instead of local processes
    (:mod:`td_analysis.training.executors`; needs the ``dask`` extra)."""
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        type=scheduler_address,
        default=None,
        help=text
        or "train on the Dask cluster of this scheduler (e.g. tcp://10.0.0.5:8786) instead of "
        'local processes; the same results; needs pip install "td-analysis[dask]" and a '
        "--runs folder every worker sees",
    )


def add_checkpoint_options(p: argparse.ArgumentParser) -> None:
    """The ``CHECKPOINT`` argument and ``--model`` (the factory of a user model's checkpoint)."""
    p.add_argument("checkpoint", type=Path, help="a checkpoint written by 'td-analysis train'")
    add_model_option(p)


def add_split_option(p: argparse.ArgumentParser, text: str) -> None:
    """``--split holdout|test|train`` (default: holdout): the data evaluated on."""
    p.add_argument("--split", choices=("holdout", "test", "train"), default="holdout", help=text)


def add_pruning_options(
    p: argparse.ArgumentParser, *, kind_help: str, fractions: list[float]
) -> None:
    """``--kind``, ``--fractions`` (default ``fractions``) and ``--layers``: which weights a
    pruning removes, at which fractions, in which weight matrices."""
    p.add_argument("--kind", choices=("weight", "unit", "global"), default="weight", help=kind_help)
    shown = ",".join(f"{f:g}" for f in fractions)
    p.add_argument(
        "--fractions",
        type=cliargs.fractions,
        default=list(fractions),
        help=f"comma-separated fractions in [0, 1) (default: {shown})",
    )
    add_value_option(
        p,
        "--layers",
        cliargs.non_negative_ints,
        "indices of the weight matrices pruned (default: all)",
    )
