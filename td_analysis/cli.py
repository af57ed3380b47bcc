"""The ``td-analysis`` command line: download, train, prune, reproduce the paper's figure/table.

The parser is built from light modules only (:mod:`td_analysis.cliargs`,
:mod:`td_analysis.names`): ``--help`` and every argument error answer before torch, scipy or
matplotlib is imported; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path

from td_analysis import cliargs, names
from td_analysis.cliargs import DATA_HELP, output_stem
from td_analysis.io import atomic_write_json, atomic_write_text

__all__ = ["main", "build_parser", "output_stem", "DATA_HELP", "load_checked_checkpoint"]

EXACT_LIMIT = 4096  # `coadaptation` pools larger parameter sets unless --bins says otherwise
POOLED_BINS = 256

# the shared argument types live in td_analysis.cliargs (public); short local names for them
_fractions = cliargs.fractions
_ints = cliargs.ints
_percents = cliargs.percents


def _lazy(target: str):
    """A command function imported when the command runs: ``"module:function"``."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        module, name = target.split(":")
        return getattr(importlib.import_module(module), name)(args)

    run.__qualname__ = run.__name__ = target.split(":")[1]
    return run


def load_checked_checkpoint(path: str | Path, model: str | None = None):
    """:func:`td_analysis.training.load_checkpoint` (which refuses non-finite weights with a
    one-line ``ValueError`` naming the parameter): what every command loads a checkpoint with.
    With ``model`` (``--model module:callable``) any model that factory builds
    (:func:`td_analysis.usermodels.load_model_checkpoint`); a checkpoint holding weights but no
    architecture, without it, is a one-line error saying so."""
    from td_analysis import usermodels
    from td_analysis.training import load_checkpoint

    if model is not None:
        return usermodels.load_model_checkpoint(path, model)
    try:
        return load_checkpoint(path)
    except ValueError:
        reason = usermodels.unbuildable_reason(path)
        if reason is None:
            raise
        raise ValueError(reason) from None


def _check_input_size(ckpt, x, args: argparse.Namespace) -> None:
    """One-line error if the checkpoint's network does not take the data's input size."""
    if not hasattr(ckpt.model, "arch"):  # a --model network: checked by usermodels.model_data
        return
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
            from td_analysis.tasks import DEFAULT_TASK

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
    g = p.add_argument_group("network")
    g.add_argument(
        "--hidden",
        type=cliargs.positive_ints,
        default=None,
        help=per_task("hidden", "hidden widths, comma-separated"),
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
        help=per_task("gamma", "targeted fraction γ for targeted-*"),
    )
    g.add_argument(
        "--alpha",
        type=cliargs.unit_interval,
        default=None,
        help=per_task("alpha", "drop probability α for targeted-*, dropout, dropconnect"),
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
        help=per_task("optimizer", "optimiser"),
    )
    g.add_argument(
        "--lr", type=cliargs.positive_float, default=None, help=per_task("lr", "learning rate")
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
        help=per_task("batch_size", "minibatch size"),
    )
    g.add_argument(
        "--epochs",
        type=cliargs.positive_int,
        default=None,
        help=per_task("epochs", "passes over the data"),
    )
    g.add_argument(
        "--seed",
        type=cliargs.non_negative_int,
        default=None,
        help="seed of initialisation, shuffling and dropout (default: TrainConfig's, 0)",
    )
    g.add_argument(
        "--preprocessing",
        choices=("standardize", "unit", "raw"),
        default=None,
        help=per_task("preprocessing", "input scaling"),
    )
    g.add_argument(
        "--device",
        type=cliargs.device,
        default=None,
        help="cpu, cuda, cuda:N or auto (CUDA if available) (default: TrainConfig's, cpu)",
    )


def _dense_tasks() -> dict:
    """The registered tasks that ``train`` can train (dense networks; the ResNet task trains
    through ``reproduce --experiment resnet-cifar10``)."""
    from td_analysis.tasks import TASKS, ResNetTask

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
    for name in ("seed", "device"):  # unset: TrainConfig's defaults
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    return task.config(args.protocol, regulariser=reg, grad_clip=args.grad_clip, **overrides)


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

    if hasattr(ckpt, "factory"):  # --model: images N × C × H × W of --dataset
        from td_analysis.usermodels import model_data

        return model_data(ckpt, getattr(args, "dataset", None), args.split, args.data_dir)
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

    if args.percent is not None:
        return _cmd_prune_percent(args)
    _rows_stem(args, f"prune-{args.kind}-{args.split}")  # writable? (before the work)
    ckpt = load_checked_checkpoint(args.checkpoint, getattr(args, "model", None))
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

    if args.kind not in SEED_KINDS:
        raise ValueError(f"--percent prunes by --kind {' or '.join(SEED_KINDS)}, not {args.kind}")
    what = f"prune-{args.kind}-percent-{args.split}"
    _rows_stem(args, what)  # writable? (before the work)
    ckpt = load_checked_checkpoint(args.checkpoint, getattr(args, "model", None))
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


def _result_options(args: argparse.Namespace) -> list[tuple[str, object]]:
    """The options of ``prune``/``estimate`` that change the rows and are not already in
    ``what``: data set, layers, data size, fractions or percentages (default: left out)."""
    defaults = _parser_defaults(args)
    options: list[tuple[str, object]] = [("", getattr(args, "dataset", None))]
    for name in ("layers", "limit", "fractions", "percent"):
        value = getattr(args, name, None)
        options.append((name, None if value == defaults.get(name) else value))
    model = getattr(args, "model", None)  # --model module:callable (a custom network)
    if model:
        options.append(("model-", model.replace(":", ".")))
    return options


def _parser_defaults(args: argparse.Namespace) -> dict:
    """The defaults of ``args.command``'s options (to leave defaults out of file names)."""
    parser = build_parser()
    sub = next(
        a
        for a in parser._actions
        if isinstance(a, argparse._SubParsersAction)  # noqa: SLF001
    )
    command = sub.choices[args.command]
    return {a.dest: a.default for a in command._actions}  # noqa: SLF001


def _rows_stem(args: argparse.Namespace, what: str) -> str:
    """:func:`td_analysis.cliargs.command_stem`: ``--out`` (whole stem), else
    ``<checkpoint>-<what>[-<option><value>…]``; checked writable before any work."""
    return cliargs.command_stem(args, what, _result_options(args), (".csv", ".json"))


def _write_rows(args: argparse.Namespace, rows: list[dict], what: str) -> None:
    """Rows to ``<stem>.csv`` and ``<stem>.json`` (stem: ``--out``, else :func:`_default_stem`)."""
    stem = _rows_stem(args, what)
    csv_path, json_path = Path(f"{stem}.csv"), Path(f"{stem}.json")
    atomic_write_text(csv_path, _rows_to_csv(rows))
    atomic_write_json(json_path, rows)
    print(f"wrote {csv_path} and {json_path}")


def _load_for_analysis(args: argparse.Namespace):
    ckpt = load_checked_checkpoint(args.checkpoint, getattr(args, "model", None))
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

    out = Path(_coadaptation_stem(args) + ".png")  # checked writable before the Hessian
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
    _check_matrix_memory(bins or order.size, order.size, "--bins" if bins else "--params", bins)
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
        del H  # C alone from here on (the budget counts both only while C is made)
        summary = block_summary(C, pruned[order.order])
        what = f"θᵀ⊙H⊙θ over {', '.join(order.names)} ({order.size} parameters)"
    else:
        C = pooled_coadaptation(
            ckpt.model, x, y, order, bins, reduction=args.reduction, progress=not args.quiet
        )
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
    size = C.shape[0]
    C = display_matrix(C)  # at most DISPLAY_BINS² pixels: a picture cannot show more
    if C.shape[0] < size:
        title += f", shown as {C.shape[0]} × {C.shape[0]} sums"
    if bins is not None and vmax is None:  # the few bins of large weights wash out the rest
        vmax = plotting.symmetric_limit(C, quantile=0.99)
        title += ", colours clipped at the 99th percentile"
    fig = plotting.plot_coadaptation(C, vmax=vmax, gamma=args.gamma, title=title)
    for path in plotting.save_figure(fig, out, formats=("png",)):
        print(f"wrote {path}")
    return 0


def _coadaptation_stem(args: argparse.Namespace) -> str:
    """``<checkpoint>-coadaptation-<params>-<split>[-<dataset>][-limitN][-binsB][-mean]
    [-gammaG]``: one PNG per parameter set, split, data, pooling, reduction and marked γ
    (:func:`td_analysis.cliargs.command_stem`)."""
    options: list[tuple[str, object]] = [
        ("", args.params),
        ("", args.split),
        ("", getattr(args, "dataset", None)),
        ("limit", args.limit),
        ("bins", args.bins),
        ("", None if args.reduction == "sum" else args.reduction),
        ("gamma", None if args.gamma == 0.75 else args.gamma),
        ("vmax", args.vmax),
    ]
    model = getattr(args, "model", None)
    if model:
        options.append(("model-", model.replace(":", ".")))
    return cliargs.command_stem(args, "coadaptation", options, (".png",))


#: the picture of C has at most this many rows/columns: a larger C is summed into this many
#: contiguous blocks of the |θ| ordering first (a 20,000² image is 3.2 GB per copy, and a PNG of
#: the figure's size shows fewer than 1,000 pixels a side)
DISPLAY_BINS = 512
#: float64 copies of the exact P × P matrix alive at the peak: H, H[o], H[o][:, o] and the
#: θ-product's temporary while the ordered C is made
EXACT_COPIES = 4
#: float64 copies of the shown D × D matrix while it is drawn: C, |C| for the limit and its
#: quantile's partition, matplotlib's masked, scaled and resampled arrays and the RGBA image
PLOT_COPIES = 12
#: bytes of drawing a figure whatever its matrix (canvas, colour bar, PNG encoder)
PLOT_FIXED = 16 * 2**20
#: float64 P × k arrays alive in one block of k Hessian-vector products (V, HV, the forward and
#: backward tangents of the product; 7.3 measured for the dense networks)
HVP_COPIES = 9


def display_matrix(C, limit: int = DISPLAY_BINS):
    """``C`` itself if it has at most ``limit`` rows, else its D × D block sums (D = ``limit``)
    over contiguous index ranges ``⌊a·D/B⌋`` (row a of C goes to row ⌊a·D/B⌋): for a
    magnitude-ordered C these are again block sums of the |θ| ordering. Work space D·B + D²."""
    import torch

    B = C.shape[0]
    if B <= limit:
        return C
    index = torch.arange(B, device=C.device) * limit // B
    rows = torch.zeros(limit, B, dtype=C.dtype, device=C.device).index_add_(0, index, C)
    return torch.zeros(limit, limit, dtype=C.dtype, device=C.device).index_add_(1, index, rows)


def coadaptation_bytes(size: int, num_params: int, bins: int | None) -> int:
    """Peak bytes ``coadaptation`` allocates after loading the model and data: the larger of
    making C (exact: :data:`EXACT_COPIES` float64 P × P; pooled: the projection's work space,
    :func:`td_analysis.coadaptation.projection_bytes` at the column count it will use) and
    drawing it (C, the D·B display sums and :data:`PLOT_COPIES` D × D copies)."""
    from td_analysis.coadaptation import MAX_PROJECTION_COLUMNS

    if bins is None:
        make = EXACT_COPIES * 8 * size * size
    else:  # the sums (one extra row) and a block of at most k products (group_sums's columns)
        k = min(bins, MAX_PROJECTION_COLUMNS)
        make = 8 * bins * (bins + 1) + HVP_COPIES * 8 * num_params * k
        make += 2 * 8 * 256 * 256  # the in-place symmetrisation's two blocks
        make += HVP_COPIES * 8 * num_params * 2  # the block summary's 2 products (C alive)
    make += 4 * 8 * num_params  # θ, the order, the bin ids, the pruned mask
    shown = min(size, DISPLAY_BINS)
    summed = 8 * size * size + 8 * shown * size if size > shown else 0  # display_matrix
    draw = PLOT_COPIES * 8 * shown * shown + PLOT_FIXED
    return max(make, summed, draw)


def _check_matrix_memory(size: int, num_params: int, option: str, bins: int | None) -> None:
    """One-line error naming ``option`` unless the whole command's :func:`coadaptation_bytes`
    fit in the free memory (checked before any Hessian product)."""
    from td_analysis.curvature import available_memory_bytes

    need = coadaptation_bytes(size, num_params, bins)
    avail = available_memory_bytes("cpu")
    if avail is not None and need > avail:
        raise MemoryError(
            f"{option}: a {size:,} × {size:,} coadaptation matrix needs about {need / 1e9:.1f} GB "
            f"(made, summed for the picture and drawn), but only {avail / 1e9:.1f} GB are free; "
            f"use fewer --bins (default {POOLED_BINS}) or fewer --params"
        )


def _add_dataset_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        choices=names.DATASET_NAMES,
        default=None,
        help="data set to evaluate on (default: the one the checkpoint was trained on)",
    )


def add_model_option(p: argparse.ArgumentParser) -> None:
    """``--model module:callable``: the factory of a user model (:mod:`td_analysis.usermodels`)."""
    p.add_argument(
        "--model",
        default=None,
        metavar="MODULE:CALLABLE",
        help="factory (module:callable or file.py:callable) returning the nn.Module whose "
        "state_dict CHECKPOINT holds (e.g. a 'fit' checkpoint); needs --dataset; Conv filters "
        "are units (default: the checkpoint's own DenseNet)",
    )


def _add_analysis_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="a checkpoint written by 'td-analysis train'")
    add_model_option(p)
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

    DATASET_NAMES = names.DATASET_NAMES

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
    add_model_option(p)
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
    """``reproduce``, ``explore`` and ``spectrum``; their code is imported when they run."""
    from td_analysis import explore  # light: imports torch only inside its commands

    add_reproduce_command(sub)
    explore.add_commands(sub)  # the explorer web app (notebook 03 with Voilà)
    add_spectrum_command(sub)  # Hessian eigenvalues, trace, density (issue 10)


def add_reproduce_command(sub: argparse._SubParsersAction) -> None:
    """Register ``reproduce`` (run by :func:`td_analysis.experiments._cmd_reproduce`)."""
    p = sub.add_parser(
        "reproduce",
        help="the main job: reproduce the paper's Figure 1 and Table 1 (and the fashion-mlp "
        "experiment)",
        description="Toy experiment (default): train (or reuse cached checkpoints of) the toy "
        "network without regularisation and with targeted dropout (γ=0.75, α=0.5) for several "
        "seeds, compute exact Hessians, and write figure1.png/pdf, table1.md/json, estimator "
        "plots and pruning curves; a few minutes on 2 CPU cores, --quick about one. "
        "--experiment fashion-mlp: the MLP of seed 002 on Fashion-MNIST, every regulariser × "
        "bias on/off × seed, pruned by weight and by unit, analysed through Hessian-vector "
        "products, into <out>/fashion_mlp/ (under 30 minutes; --quick under 2). "
        f"--quick keeps everything it writes under {names.QUICK_DIR}/.",
    )
    p.add_argument(
        "--experiment",
        choices=names.EXPERIMENTS,
        default="toy",
        help="toy: Figure 1 / Table 1 into --out (default); fashion-mlp: the Fashion-MNIST MLP "
        "pruning experiment into --out/fashion_mlp; resnet-cifar10: the ResNet pruning "
        "experiment (issue 22, --preset) into --out/resnet_cifar10; all: toy and fashion-mlp",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small setting (toy: 2 seeds, 2 epochs, 2,000 evaluation images; fashion-mlp: one "
        f"seed, a narrower network, 1 epoch) for CI; figures and checkpoints under "
        f"{names.QUICK_DIR}/",
    )
    p.add_argument(
        "--preset",
        choices=names.RESNET_PRESETS,
        default=None,
        help="resnet-cifar10 only: cpu (a small ResNet sized for this machine, the default) or "
        "paper (ResNet-32 and the official 256-epoch schedule, for a GPU; torchrun for DDP)",
    )
    p.add_argument(
        "--ks",
        type=cliargs.percents,
        default=None,
        help="fashion-mlp: distinct pruning percentages in [0, 100] (default: "
        "0,25,50,60,70,80,90,95,97,99)",
    )
    p.add_argument(
        "--workers",
        type=cliargs.positive_int,
        default=None,
        help="fashion-mlp: networks trained and analysed in parallel processes (default: 2)",
    )
    p.add_argument(
        "--bins",
        type=cliargs.positive_int,
        default=None,
        help="fashion-mlp: B of the pooled B × B coadaptation block sums (default: 128)",
    )
    p.add_argument(
        "--seeds",
        type=cliargs.seeds,
        default=None,
        help="distinct seeds, comma-separated (default toy and fashion-mlp: 0,1,2,3,4, "
        "fashion-mlp without biases: the first 3; --quick: 0,1, fashion-mlp 0)",
    )
    p.add_argument(
        "--biases",
        choices=("on", "off", "both"),
        default=None,
        help="fashion-mlp: networks with biases (on), without (off) or both (the default: "
        "every regulariser with biases, none/targeted weight/targeted unit of the first 3 seeds "
        "without)",
    )
    p.add_argument(
        "--protocol",
        default=None,
        help="fashion-mlp: the task's named training protocol: default (Adam, batch 128, "
        "20 epochs), seed (the seed's batch 32, 100 epochs) or short (3 epochs)",
    )
    p.add_argument(
        "--epochs",
        type=cliargs.positive_int,
        default=None,
        help="training epochs (default toy: 20, fashion-mlp: its protocol's; --quick: 2, "
        "fashion-mlp 1)",
    )
    p.add_argument(
        "--eval-limit",
        type=cliargs.positive_int,
        default=None,
        help="use only the first N images of each evaluation split (default: all; --quick: 2000)",
    )
    p.add_argument(
        "--vmax",
        type=cliargs.positive_float,
        default=None,
        help="colour limit ±vmax of Figure 1 (default: the largest |entry|; the "
        "published figure used 3000)",
    )
    p.add_argument(
        "--no-curves", action="store_true", help="skip the baselines and the pruning-curve figure"
    )
    p.add_argument(
        "--out",
        type=cliargs.output_folder,
        default=None,
        help=f"output folder, replaced as a whole when every output is written (default: "
        f"figures; --quick: {names.QUICK_OUT}, never over the committed figures)",
    )
    p.add_argument(
        "--runs",
        type=cliargs.output_folder,
        default=None,
        help=f"checkpoint folder, reused across runs (default: runs; --quick: {names.QUICK_RUNS})",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache of Hessians (default: $TD_ANALYSIS_CACHE, else "
        "$XDG_CACHE_HOME/td_analysis/results, ~/.cache/td_analysis/results)",
    )
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: rewrite the reports from the JSON already in --out (toy: "
        "table1.md, table1_differences.png; fashion-mlp: pruning.md, accuracy_differences.png, "
        "README.md)",
    )
    p.add_argument(
        "--readme",
        type=Path,
        default=None,
        help="with --report-only: also rewrite the generated result blocks of this README "
        "(e.g. README.md) from the same JSON",
    )
    p.set_defaults(func=_lazy("td_analysis.experiments:_cmd_reproduce"))


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


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
