"""The ``td-analysis`` command line: download, train, prune, reproduce the paper's figure/table."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path

from td_analysis import cliargs
from td_analysis.cliargs import DATA_HELP
from td_analysis.io import atomic_write_json, atomic_write_text

__all__ = ["main", "build_parser", "output_stem", "DATA_HELP"]

EXACT_LIMIT = 4096  # `coadaptation` pools larger parameter sets unless --bins says otherwise
POOLED_BINS = 256

# the shared argument types live in td_analysis.cliargs (public); short local names for them
_fractions = cliargs.fractions
_ints = cliargs.ints


def _percents(text: str) -> list[float]:
    """Comma-separated percentages, each in [0, 100]."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers: {text}") from None
    if not values or not all(0.0 <= v <= 100.0 for v in values):  # also rejects NaN
        raise argparse.ArgumentTypeError(f"k must be percentages in [0, 100]: {text}")
    return values


def output_stem(out: Path | None, default: str) -> str:
    """The output path without extension: ``--out`` as given (only a trailing ``.csv``/``.json``/
    ``.png`` is dropped, so ``sweep_v1.2`` stays ``sweep_v1.2``), else ``default``."""
    if out is None:
        return default
    text = str(out)
    for ext in (".csv", ".json", ".png"):
        if text.lower().endswith(ext):
            return text[: -len(ext)]
    return text


def _checkpoint_stem(path: Path) -> str:
    """``runs/td_gamma0.75.pt`` → ``runs/td_gamma0.75`` (only a ``.pt`` suffix is removed)."""
    text = str(path)
    return text[:-3] if text.endswith(".pt") else text


def _check_input_size(ckpt, x, args: argparse.Namespace) -> None:
    """One-line error if the checkpoint's network does not take the data's input size."""
    want = ckpt.model.arch["in_features"]
    have = x[0].numel() if x.ndim > 1 and len(x) else None
    if have is not None and have != want:
        raise ValueError(
            f"checkpoint {args.checkpoint} takes {want} inputs per example, but the "
            f"--split {args.split} data have {have}: it was trained on other data"
        )


# ----------------------------------------------------------------------------- download
def _cmd_download(args: argparse.Namespace) -> int:
    from td_analysis.data import DATASETS, DataError, dataset_info, download_dataset, find_dataset

    # data.download_* remove a folder they created when the download fails, and their errors
    # never suggest running this very command again
    names = list(DATASETS) if args.dataset == "all" else [args.dataset]
    for name in names:
        info = dataset_info(name)
        if not args.force:
            try:
                folder = find_dataset(name, args.data_dir, download=False)
                print(f"{info.title} already present in {folder}")
                continue
            except (FileNotFoundError, DataError):
                pass  # missing, or a stale archive: download_dataset fetches a fresh copy
        folder = download_dataset(name, args.data_dir, force=args.force)
        print(f"{info.title} ready in {folder}")
    return 0


# ----------------------------------------------------------------------------- train
def _add_train_options(p: argparse.ArgumentParser) -> None:
    from td_analysis.dropout import REGULARISERS
    from td_analysis.tasks import DEFAULT_TASK, TASKS
    from td_analysis.training import TrainConfig

    d = TrainConfig()

    def per_task(field: str) -> str:  # "(default: the task's: toy 0.01, fashion-mlp 0.001)"
        values = ", ".join(f"{n} {_task_default(t, field)}" for n, t in TASKS.items())
        return f"(default: the task's: {values})"

    g = p.add_argument_group("experiment")
    g.add_argument(
        "--task",
        choices=list(TASKS),
        default=None,
        help=f"experiment whose data, network and defaults are used (default: {DEFAULT_TASK}, "
        "or the task of --dataset)",
    )
    g.add_argument(
        "--dataset",
        choices=sorted({t.dataset for t in TASKS.values()}),
        default=None,
        help="data set; picks its task ("
        + ", ".join(f"{t.dataset}: {n}" for n, t in TASKS.items())
        + ")",
    )
    g.add_argument(
        "--protocol",
        default="default",
        help="the task's named training protocol, e.g. 'seed' for fashion-mlp (the seed's "
        "batch 32, 100 epochs) (default: default)",
    )
    g = p.add_argument_group("network")
    g.add_argument(
        "--hidden",
        type=cliargs.positive_ints,
        default=None,
        help=f"hidden widths, comma-separated {per_task('hidden')}",
    )
    g.add_argument("--no-bias", action="store_true", help="layers without biases")
    g = p.add_argument_group("regulariser")
    g.add_argument(
        "--reg", choices=REGULARISERS, default="none", help="regulariser (default: none)"
    )
    g.add_argument(
        "--gamma",
        type=cliargs.unit_interval,
        default=None,
        help=f"targeted fraction γ for targeted-* {per_task('gamma')}",
    )
    g.add_argument(
        "--alpha",
        type=cliargs.unit_interval,
        default=None,
        help=f"drop probability α for targeted-*, dropout, dropconnect {per_task('alpha')}",
    )
    g.add_argument(
        "--l1", type=cliargs.non_negative_float, default=1e-4, help="L1 coefficient for --reg l1"
    )
    g.add_argument(
        "--ramp-steps",
        type=cliargs.positive_int,
        default=None,
        help="ramp γ and α over this many steps (the official 'piecewise' schedule)",
    )
    g.add_argument(
        "--layers",
        type=cliargs.non_negative_ints,
        default=None,
        help="indices of the weight matrices regularised (default: the task's: all for toy, "
        "the hidden layers for fashion-mlp)",
    )
    g = p.add_argument_group("optimisation (defaults: the task's protocol)")
    g.add_argument(
        "--optimizer",
        choices=("sgd", "adam"),
        default=None,
        help=f"optimiser {per_task('optimizer')}",
    )
    g.add_argument(
        "--lr", type=cliargs.positive_float, default=None, help=f"learning rate {per_task('lr')}"
    )
    g.add_argument(
        "--momentum", type=cliargs.momentum, default=None, help="SGD momentum, in [0, 1)"
    )
    g.add_argument(
        "--weight-decay",
        type=cliargs.non_negative_float,
        default=None,
        help="L2 weight decay",
    )
    g.add_argument(
        "--grad-clip", type=cliargs.positive_float, default=None, help="clip the gradient norm"
    )
    g.add_argument(
        "--batch-size",
        type=cliargs.positive_int,
        default=None,
        help=f"minibatch size {per_task('batch_size')}",
    )
    g.add_argument(
        "--epochs",
        type=cliargs.positive_int,
        default=None,
        help=f"passes over the data {per_task('epochs')}",
    )
    g.add_argument(
        "--seed",
        type=cliargs.non_negative_int,
        default=d.seed,
        help="seed of initialisation, shuffling and dropout",
    )
    g.add_argument(
        "--preprocessing",
        choices=("standardize", "unit", "raw"),
        default=None,
        help=f"input scaling {per_task('preprocessing')}",
    )
    g.add_argument(
        "--device",
        type=cliargs.device,
        default=d.device,
        help="cpu, cuda, cuda:N or auto (CUDA if available)",
    )


def _task_default(task, field: str):
    """A task's default for a ``train`` option (hidden widths comma-separated)."""
    value = task.protocol()[field] if field in task.protocol() else getattr(task, field)
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


def task_from_args(args: argparse.Namespace):
    """The :class:`~td_analysis.tasks.Task` of ``--task`` / ``--dataset`` (default: the toy)."""
    from td_analysis.tasks import DEFAULT_TASK, get_task, task_for_dataset

    dataset = getattr(args, "dataset", None)
    if getattr(args, "task", None):
        task = get_task(args.task)
        if dataset and dataset != task.dataset:
            raise ValueError(f"task {task.name} is trained on {task.dataset}, not on {dataset}")
        return task
    return task_for_dataset(dataset) if dataset else get_task(DEFAULT_TASK)


def config_from_args(args: argparse.Namespace):
    """The :class:`TrainConfig` that the ``train`` options describe (unset: the task's)."""
    from td_analysis.dropout import RegulariserConfig

    task = task_from_args(args)
    kind = args.reg
    gamma = task.gamma if args.gamma is None else args.gamma
    alpha = task.alpha if args.alpha is None else args.alpha
    reg = RegulariserConfig(
        kind=kind,
        gamma=gamma if kind.startswith("targeted") else 0.0,
        alpha=alpha
        if kind in ("targeted-weight", "targeted-unit", "dropout", "dropconnect")
        else 0.0,
        l1=args.l1 if kind == "l1" else 0.0,
        ramp_steps=args.ramp_steps if kind.startswith("targeted") else None,
        draws=task.draws,
        layers=args.layers
        if args.layers is not None or kind == "none"
        else task.regularised_layers,
    )
    overrides = {
        "hidden": None if args.hidden is None else tuple(args.hidden),
        "optimizer": args.optimizer,
        "lr": args.lr,
        "momentum": args.momentum,
        "weight_decay": args.weight_decay,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "preprocessing": args.preprocessing,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.no_bias:
        overrides["bias"] = False
    return task.config(
        args.protocol,
        regulariser=reg,
        grad_clip=args.grad_clip,
        seed=args.seed,
        device=args.device,
        **overrides,
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from td_analysis.runs import run_name
    from td_analysis.training import save_checkpoint, train

    config = config_from_args(args)
    # the default name carries a hash of the whole config: other settings never overwrite it
    out = args.out or Path("runs") / f"{run_name(config)}.pt"
    cliargs.check_output_file(out)  # before training, not after it
    # a diverging run raises FloatingPointError here: no checkpoint is written
    result = train(config, data_root=args.data_dir, progress=not args.quiet)
    save_checkpoint(out, result.model, config, {"history": result.history, **result.final})
    final = result.final
    print(
        f"{config.regulariser.label}, seed {config.seed}: train loss {final['train_loss']:.4f}, "
        f"{config.eval_split} accuracy {final.get('eval_accuracy', float('nan')):.2%}"
    )
    print(f"checkpoint written to {out}")
    return 0


# ----------------------------------------------------------------------------- prune
def _rows_to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _analysis_data(args: argparse.Namespace, ckpt):
    """``--split`` of ``--dataset`` (default: the checkpoint's data set), preprocessed as the
    network was trained; a network that does not take the data's inputs is a one-line error."""
    from td_analysis.data import load_dataset
    from td_analysis.training import check_features

    name = getattr(args, "dataset", None) or ckpt.config.dataset
    x, y = load_dataset(
        name, args.split, root=args.data_dir, preprocessing=ckpt.config.preprocessing
    )
    try:
        check_features(ckpt.config, x, name)
    except ValueError as exc:
        raise ValueError(f"checkpoint {args.checkpoint}: {exc}") from None
    return x, y


def _cmd_prune(args: argparse.Namespace) -> int:
    from td_analysis.pruning import pruning_curve
    from td_analysis.training import load_checkpoint

    if args.percent is not None:
        return _cmd_prune_percent(args)
    _rows_stem(args, f"prune-{args.kind}-{args.split}")  # writable? (before the work)
    ckpt = load_checkpoint(args.checkpoint)
    x, y = _analysis_data(args, ckpt)
    _check_input_size(ckpt, x, args)
    rows = pruning_curve(
        ckpt.model, x, y, args.fractions, args.kind, args.layers, progress=not args.quiet
    )
    print(
        f"{args.kind} pruning of {args.checkpoint} ({ckpt.config.regulariser.label}) "
        f"on {args.split} ({len(y)} images)"
    )
    print(f"{'fraction':>9} {'removed':>9} {'loss':>8} {'accuracy':>9}")
    for r in rows:
        print(
            f"{r['fraction']:>9.2f} {r['removed_share']:>9.2%} {r['loss']:>8.4f} "
            f"{r['accuracy']:>9.2%}"
        )
    _write_rows(args, rows, f"prune-{args.kind}-{args.split}")
    return 0


def _cmd_prune_percent(args: argparse.Namespace) -> int:
    """``prune --percent``: the seed's per-layer weight / unit pruning at k percent."""
    from td_analysis.pruning import SEED_KINDS, pruning_table
    from td_analysis.training import load_checkpoint

    if args.kind not in SEED_KINDS:
        raise ValueError(f"--percent prunes by --kind {' or '.join(SEED_KINDS)}, not {args.kind}")
    what = f"prune-{args.kind}-percent-{args.split}"
    _rows_stem(args, what)  # writable? (before the work)
    ckpt = load_checkpoint(args.checkpoint)
    x, y = _analysis_data(args, ckpt)
    rows = pruning_table(
        ckpt.model, x, y, args.percent, (args.kind,), args.layers, progress=not args.quiet
    )
    print(
        f"{args.kind} pruning (the smallest k% per layer, output layer kept) of "
        f"{args.checkpoint} ({ckpt.config.regulariser.label}) on {args.split} ({len(y)} images)"
    )
    print(f"{'k %':>6} {'removed':>9} {'loss':>8} {'accuracy':>9}")
    for r in rows:
        print(f"{r['k']:>6g} {r['removed_share']:>9.2%} {r['loss']:>8.4f} {r['accuracy']:>9.2%}")
    _write_rows(args, rows, what)
    return 0


def _default_stem(args: argparse.Namespace, what: str) -> str:
    """``<checkpoint without .pt>-<what>[-layers…][-limitN]``: the options that change the
    result are in the name, so runs that differ in them never overwrite each other."""
    stem = f"{_checkpoint_stem(args.checkpoint)}-{what}"
    if getattr(args, "layers", None) is not None:
        stem += "-layers" + "_".join(map(str, args.layers))
    if getattr(args, "limit", None) is not None:
        stem += f"-limit{args.limit}"
    return stem


def _rows_stem(args: argparse.Namespace, what: str) -> str:
    """``--out`` (whole stem), else :func:`_default_stem`; checked writable before any work."""
    stem = output_stem(args.out, _default_stem(args, what))
    for ext in (".csv", ".json"):
        cliargs.check_output_file(f"{stem}{ext}")
    return stem


def _write_rows(args: argparse.Namespace, rows: list[dict], what: str) -> None:
    """Rows to ``<stem>.csv`` and ``<stem>.json`` (stem: ``--out``, else :func:`_default_stem`)."""
    stem = _rows_stem(args, what)
    csv_path, json_path = Path(f"{stem}.csv"), Path(f"{stem}.json")
    atomic_write_text(csv_path, _rows_to_csv(rows))
    atomic_write_json(json_path, rows)
    print(f"wrote {csv_path} and {json_path}")


def _load_for_analysis(args: argparse.Namespace):
    from td_analysis.training import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    x, y = _analysis_data(args, ckpt)
    _check_input_size(ckpt, x, args)
    if args.limit is not None:  # ≥ 1 (checked while parsing)
        x, y = x[: args.limit], y[: args.limit]
    return ckpt, x, y


def _cmd_estimate(args: argparse.Namespace) -> int:
    from td_analysis.taylor import pruning_sweep

    _rows_stem(args, f"estimate-{args.kind}-{args.split}")  # writable? (before the work)
    ckpt, x, y = _load_for_analysis(args)
    rows = pruning_sweep(
        ckpt.model, x, y, args.fractions, args.kind, args.layers, progress=not args.quiet
    )
    print(
        f"Taylor estimates of the change in mean loss after {args.kind} pruning of "
        f"{args.checkpoint} ({ckpt.config.regulariser.label}) on {args.split} ({len(y)} images)"
    )
    print(
        f"{'fraction':>8} {'-grad.d':>9} {'½dHd':>9} {'OBD':>9} {'estimate':>9} "
        f"{'measured':>9} {'accuracy':>9} {'pruned':>8}"
    )
    for r in rows:
        print(
            f"{r.fraction:>8.2f} {r.first_order:>9.4f} {r.second_order:>9.4f} "
            f"{r.diagonal:>9.4f} {r.estimate:>9.4f} {r.measured:>9.4f} {r.accuracy:>9.2%} "
            f"{r.pruned_accuracy:>8.2%}"
        )
    _write_rows(args, [r.as_dict() for r in rows], f"estimate-{args.kind}-{args.split}")
    return 0


def _cmd_coadaptation(args: argparse.Namespace) -> int:
    import torch

    from td_analysis import plotting
    from td_analysis.coadaptation import (
        block_summary,
        magnitude_order,
        ordered_coadaptation,
        pooled_block_summary,
        pooled_coadaptation,
        pruned_set,
    )
    from td_analysis.curvature import hessian

    out = Path(output_stem(args.out, _coadaptation_stem(args)) + ".png")
    cliargs.check_output_file(out)  # before the Hessian, not after it
    ckpt, x, y = _load_for_analysis(args)
    params = args.params if args.params == "weights" else args.params.split(",")
    order = magnitude_order(ckpt.model, params)
    bins = args.bins
    if bins is None and order.size > EXACT_LIMIT:
        bins = POOLED_BINS
        print(
            f"{order.size:,} parameters: more than {EXACT_LIMIT:,}, so C is pooled into "
            f"{bins} × {bins} block sums (--bins) instead of the full {order.size:,}² matrix"
        )
    if bins is not None and not 1 <= bins <= order.size:
        raise ValueError(f"--bins must be between 1 and the {order.size} selected parameters")
    _check_matrix_memory(bins or order.size, order.size, "--bins" if bins else "--params")
    pruned = pruned_set(ckpt.model, order, args.gamma, "lowest")
    if bins is None:
        H = hessian(
            ckpt.model,
            x,
            y,
            params=order.names,
            reduction=args.reduction,
            dtype=torch.float64,
            progress=not args.quiet,
        )
        C = ordered_coadaptation(order, H)
        summary = block_summary(C, pruned[order.order])
        what = f"θᵀ⊙H⊙θ over {', '.join(order.names)} ({order.size} parameters)"
    else:
        C = pooled_coadaptation(ckpt.model, x, y, order, bins, reduction=args.reduction)
        summary = pooled_block_summary(ckpt.model, x, y, order, pruned, reduction=args.reduction)
        what = (
            f"θᵀ⊙H⊙θ over {', '.join(order.names)} ({order.size:,} parameters) in "
            f"{bins} × {bins} block sums by decreasing |θ|"
        )
    print(f"{what}, H of the {args.reduction} cross-entropy over {len(y)} {args.split} images")
    for key, value in summary.as_dict().items():
        if value == value:  # the |C| shares are NaN (unknown) for pooled views
            print(f"  {key:>26}: {value:.6g}")
    title, vmax = ckpt.config.regulariser.label, args.vmax
    if bins is not None:
        title += f": {bins} × {bins} block sums"
        if vmax is None:  # the few bins of large weights would wash out the rest
            vmax = plotting.symmetric_limit(C, quantile=0.99)
            title += ", colours clipped at the 99th percentile"
    fig = plotting.plot_coadaptation(C, vmax=vmax, gamma=args.gamma, title=title)
    for path in plotting.save_figure(fig, out, formats=("png",)):
        print(f"wrote {path}")
    return 0


def _coadaptation_stem(args: argparse.Namespace) -> str:
    """``<checkpoint>-coadaptation-<params>-<split>[-limitN][-binsB][-mean]``: one PNG per
    parameter set, split, data size, pooling and reduction."""
    params = "+".join(p.strip() for p in args.params.split(",") if p.strip())
    stem = f"{_checkpoint_stem(args.checkpoint)}-coadaptation-{params}-{args.split}"
    if args.limit is not None:
        stem += f"-limit{args.limit}"
    if args.bins is not None:
        stem += f"-bins{args.bins}"
    if args.reduction != "sum":
        stem += f"-{args.reduction}"
    return stem


# copies of a B × B float64 matrix alive at once: the sums, their symmetrisation, |C| for the
# colour limit and matplotlib's image
MATRIX_COPIES = 4


def _check_matrix_memory(size: int, num_params: int, option: str) -> None:
    """One-line error naming ``option`` unless ``MATRIX_COPIES`` float64 ``size × size``
    matrices and a few parameter-length work columns fit in the free memory."""
    from td_analysis.curvature import available_memory_bytes

    need = MATRIX_COPIES * size * size * 8 + 64 * num_params * 8
    avail = available_memory_bytes("cpu")
    if avail is not None and need > avail:
        raise MemoryError(
            f"{option}: a {size:,} × {size:,} coadaptation matrix needs about {need / 1e9:.1f} GB "
            f"({MATRIX_COPIES} float64 copies), but only {avail / 1e9:.1f} GB are free; "
            f"use fewer --bins (default {POOLED_BINS}) or fewer --params"
        )


def _add_dataset_option(p: argparse.ArgumentParser) -> None:
    from td_analysis.data import DATASETS

    p.add_argument(
        "--dataset",
        choices=list(DATASETS),
        default=None,
        help="data set to evaluate on (default: the one the checkpoint was trained on)",
    )


def _add_analysis_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="a checkpoint written by 'td-analysis train'")
    p.add_argument(
        "--split",
        choices=("holdout", "test", "train"),
        default="holdout",
        help="data the loss is taken over (default: holdout)",
    )
    _add_dataset_option(p)
    p.add_argument(
        "--limit",
        type=cliargs.positive_int,
        default=None,
        help="use only the first N images (default: all)",
    )
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# ----------------------------------------------------------------------------- parser
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

    from td_analysis.data import DATASET_NAMES

    p = sub.add_parser(
        "download",
        help="download and verify a data set (CIFAR-10 by default, Fashion-MNIST)",
        description="Download a data set from its official address into the data folder and "
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
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_HELP)
    p.add_argument("--force", action="store_true", help="download even if the data is present")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser(
        "train",
        help="train a dense network and write a checkpoint",
        description="Train the dense network of a task (--task/--dataset; by default the "
        "paper's toy CIFAR-10 network) on the training split (the first 80% of the official "
        "training set), evaluate on the holdout (the other 20%) and write a checkpoint "
        "(weights, config with task and data set, metrics).",
    )
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_HELP)
    p.add_argument(
        "--out",
        type=cliargs.output_file,
        default=None,
        help="checkpoint path (default: runs/<task>-<reg>-<bias>-seed<seed>-<config hash>.pt, "
        "so runs with other settings never overwrite it)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_train_options(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "prune",
        help="magnitude-prune a checkpoint and print a pruning curve",
        description="Prune a trained checkpoint by magnitude at several fractions "
        "and report loss and accuracy; writes CSV and JSON.",
    )
    p.add_argument("checkpoint", type=Path, help="a checkpoint written by 'td-analysis train'")
    p.add_argument(
        "--kind",
        choices=("weight", "unit", "global"),
        default="weight",
        help="weight: per output unit by |w|; unit: whole units by L2 norm; "
        "global: one magnitude threshold over all layers (default: weight)",
    )
    p.add_argument(
        "--fractions",
        type=_fractions,
        default=[0.0, 0.25, 0.5, 0.75, 0.9],
        help="comma-separated fractions in [0, 1) (default: 0,0.25,0.5,0.75,0.9)",
    )
    p.add_argument(
        "--percent",
        type=_percents,
        default=None,
        help="the seed's rules instead: comma-separated k in [0, 100]; --kind weight removes "
        "the smallest k%% of |w| in each hidden weight matrix, --kind unit the k%% hidden units "
        "of each layer with the smallest incoming L2 norm (with their bias and outgoing "
        "weights); the output layer is kept (e.g. 0,25,50,60,70,80,90,95,97,99)",
    )
    p.add_argument(
        "--layers",
        type=cliargs.non_negative_ints,
        default=None,
        help="indices of the weight matrices pruned (default: all)",
    )
    p.add_argument(
        "--split",
        choices=("holdout", "test", "train"),
        default="holdout",
        help="data to evaluate on (default: holdout)",
    )
    _add_dataset_option(p)
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_HELP)
    p.add_argument(
        "--out",
        type=cliargs.output_file,
        default=None,
        help="output stem: writes STEM.csv and STEM.json, the whole name kept (sweep_v1.2 → "
        "sweep_v1.2.csv) (default: <checkpoint without .pt>-prune-<kind>-<split>[-layers…])",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_prune)

    p = sub.add_parser(
        "estimate",
        help="Taylor estimates vs measured loss change after pruning",
        description="For each pruning fraction: the first-order term −∇ᵀd, the "
        "second-order term ½dᵀHd (one exact Hessian-vector product), the diagonal "
        "(OBD) estimate and the measured change in mean loss and accuracy; "
        "float64. Writes CSV and JSON.",
    )
    _add_analysis_options(p)
    p.add_argument(
        "--kind",
        choices=("weight", "unit", "global"),
        default="weight",
        help="pruning rule (default: weight)",
    )
    p.add_argument(
        "--fractions",
        type=_fractions,
        default=[0.25, 0.5, 0.75, 0.9],
        help="comma-separated fractions in [0, 1) (default: 0.25,0.5,0.75,0.9)",
    )
    p.add_argument(
        "--layers",
        type=cliargs.non_negative_ints,
        default=None,
        help="indices of the weight matrices pruned (default: all)",
    )
    p.add_argument(
        "--out",
        type=cliargs.output_file,
        default=None,
        help="output stem: writes STEM.csv and STEM.json, the whole name kept (default: "
        "<checkpoint without .pt>-estimate-<kind>-<split>[-layers…][-limitN])",
    )
    p.set_defaults(func=_cmd_estimate)

    p = sub.add_parser(
        "coadaptation",
        help="plot θᵀ⊙H⊙θ of a checkpoint, ordered by |θ|",
        description="Exact Hessian (float64) over a parameter set, the "
        "coadaptation matrix ordered by decreasing magnitude, its block sums "
        "for the lowest-|θ| fraction γ, and a heatmap (PNG). Large sets (e.g. "
        "--params weights, 30,820 weights) are pooled into B × B block sums.",
    )
    _add_analysis_options(p)
    p.add_argument(
        "--params",
        default="layers.1.weight",
        help="parameter name (comma-separated for several), or 'weights' for all weight "
        "matrices (default: layers.1.weight)",
    )
    p.add_argument(
        "--bins",
        type=cliargs.positive_int,
        default=None,
        help="pool C into B × B block sums of the |θ| ordering through B Hessian-vector "
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
    p.add_argument(
        "--vmax",
        type=cliargs.positive_float,
        default=None,
        help="colour limit ±vmax (default: the largest |entry|; 99th percentile when pooled)",
    )
    p.add_argument(
        "--out",
        type=cliargs.output_file,
        default=None,
        help="PNG path (default: <checkpoint without .pt>-coadaptation-<params>-<split>"
        "[-limitN][-binsB][-mean].png, so other parameter sets never overwrite it)",
    )
    p.set_defaults(func=_cmd_coadaptation)

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


def _add_analysis_commands(sub: argparse._SubParsersAction) -> None:
    """The analysis commands (reproduce, curves) live beside their orchestration code."""
    from td_analysis import experiments, explore, spectra

    experiments.add_commands(sub)
    explore.add_commands(sub)  # the explorer web app (notebook 03 with Voilà)
    spectra.add_commands(sub)  # Hessian eigenvalues, trace, density (issue 10)


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
    """Run ``td-analysis`` with ``argv``; returns the exit status (2 for bad input)."""
    from td_analysis.progress import set_progress_mode

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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        set_progress_mode(None)
        if previous is not None:
            _terminate_cleanly(previous)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
