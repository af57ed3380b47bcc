"""The ``td-analysis`` command line: download, train, prune, reproduce the paper's figure/table."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path

from td_analysis.io import atomic_write_json, atomic_write_text

__all__ = ["main", "build_parser"]

EXACT_LIMIT = 4096  # `coadaptation` pools larger parameter sets unless --bins says otherwise
POOLED_BINS = 256

DATA_HELP = (
    "folder holding cifar-10-batches-py (or the official cifar-10-python.tar.gz); default: "
    "$TD_ANALYSIS_DATA, else ~/.cache/td_analysis"
)


def _fractions(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"fractions must be comma-separated numbers: {text}"
        ) from exc
    bad = [v for v in values if not 0.0 <= v < 1.0]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"fractions must lie in [0, 1): {text}")
    return values


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text}") from exc


# ----------------------------------------------------------------------------- download
def _cmd_download(args: argparse.Namespace) -> int:
    from td_analysis.data import download_cifar10, find_cifar10

    if not args.force:
        try:
            folder = find_cifar10(args.data_dir, download=False)
            print(f"CIFAR-10 already present in {folder}")
            return 0
        except FileNotFoundError:
            pass
    folder = download_cifar10(args.data_dir, force=args.force)
    print(f"CIFAR-10 ready in {folder}")
    return 0


# ----------------------------------------------------------------------------- train
def _add_train_options(p: argparse.ArgumentParser) -> None:
    from td_analysis.dropout import REGULARISERS
    from td_analysis.training import TrainConfig

    d = TrainConfig()
    g = p.add_argument_group("network")
    g.add_argument(
        "--hidden",
        type=_ints,
        default=list(d.hidden),
        help="hidden widths, comma-separated (default: 10, the paper's toy network)",
    )
    g.add_argument("--no-bias", action="store_true", help="layers without biases")
    g = p.add_argument_group("regulariser")
    g.add_argument(
        "--reg", choices=REGULARISERS, default="none", help="regulariser (default: none)"
    )
    g.add_argument(
        "--gamma",
        type=float,
        default=0.75,
        help="targeted fraction γ for targeted-* (default: 0.75)",
    )
    g.add_argument(
        "--alpha",
        type=float,
        default=0.5,
        help="drop probability α for targeted-*, dropout, dropconnect (default: 0.5)",
    )
    g.add_argument("--l1", type=float, default=1e-4, help="L1 coefficient for --reg l1")
    g.add_argument(
        "--ramp-steps",
        type=int,
        default=None,
        help="ramp γ and α over this many steps (the official 'piecewise' schedule)",
    )
    g.add_argument(
        "--layers",
        type=_ints,
        default=None,
        help="indices of the weight matrices regularised (default: all)",
    )
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", choices=("sgd", "adam"), default=d.optimizer)
    g.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default: {d.lr})")
    g.add_argument("--momentum", type=float, default=d.momentum)
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm")
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--epochs", type=int, default=d.epochs)
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument(
        "--preprocessing", choices=("standardize", "unit", "raw"), default=d.preprocessing
    )
    g.add_argument("--device", default=d.device, help="cpu, cuda or auto (default: cpu)")


def config_from_args(args: argparse.Namespace):
    """The :class:`TrainConfig` that the ``train`` options describe."""
    from td_analysis.dropout import RegulariserConfig
    from td_analysis.training import TrainConfig

    kind = args.reg
    reg = RegulariserConfig(
        kind=kind,
        gamma=args.gamma if kind.startswith("targeted") else 0.0,
        alpha=args.alpha
        if kind in ("targeted-weight", "targeted-unit", "dropout", "dropconnect")
        else 0.0,
        l1=args.l1 if kind == "l1" else 0.0,
        ramp_steps=args.ramp_steps if kind.startswith("targeted") else None,
        layers=args.layers,
    )
    return TrainConfig(
        hidden=tuple(args.hidden),
        bias=not args.no_bias,
        regulariser=reg,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=args.seed,
        preprocessing=args.preprocessing,
        device=args.device,
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from td_analysis.training import save_checkpoint, train

    config = config_from_args(args)
    result = train(config, data_root=args.data_dir, progress=not args.quiet)
    out = args.out or Path("runs") / f"{config.regulariser.kind}-seed{config.seed}.pt"
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


def _cmd_prune(args: argparse.Namespace) -> int:
    from td_analysis.data import load_cifar10
    from td_analysis.pruning import pruning_curve
    from td_analysis.training import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    x, y = load_cifar10(args.data_dir, split=args.split, preprocessing=ckpt.config.preprocessing)
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
    stem = args.out or Path(args.checkpoint).with_suffix("")
    stem = Path(f"{stem}-prune-{args.kind}-{args.split}") if args.out is None else Path(stem)
    atomic_write_text(stem.with_suffix(".csv"), _rows_to_csv(rows))
    atomic_write_json(stem.with_suffix(".json"), rows)
    print(f"wrote {stem.with_suffix('.csv')} and {stem.with_suffix('.json')}")
    return 0


def _load_for_analysis(args: argparse.Namespace):
    from td_analysis.data import load_cifar10
    from td_analysis.training import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    x, y = load_cifar10(args.data_dir, split=args.split, preprocessing=ckpt.config.preprocessing)
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    return ckpt, x, y


def _cmd_estimate(args: argparse.Namespace) -> int:
    from td_analysis.taylor import pruning_sweep

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
    stem = args.out or Path(f"{Path(args.checkpoint).with_suffix('')}-estimate-{args.kind}")
    dicts = [r.as_dict() for r in rows]
    atomic_write_text(Path(stem).with_suffix(".csv"), _rows_to_csv(dicts))
    atomic_write_json(Path(stem).with_suffix(".json"), dicts)
    print(f"wrote {Path(stem).with_suffix('.csv')} and {Path(stem).with_suffix('.json')}")
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
    out = args.out or Path(f"{Path(args.checkpoint).with_suffix('')}-coadaptation.png")
    for path in plotting.save_figure(fig, out, formats=("png",)):
        print(f"wrote {path}")
    return 0


def _add_analysis_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="a checkpoint written by 'td-analysis train'")
    p.add_argument(
        "--split",
        choices=("holdout", "test", "train"),
        default="holdout",
        help="data the loss is taken over (default: holdout)",
    )
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The ``td-analysis`` argument parser with one sub-command per job."""
    parser = argparse.ArgumentParser(
        prog="td-analysis",
        description=(
            "Measure targeted dropout (Gomez et al., 'Learning Sparse Networks Using Targeted "
            "Dropout'): train the paper's toy dense CIFAR-10 network, prune it, compute exact "
            "Hessians and the coadaptation matrix, and reproduce Figure 1 and Table 1."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "download",
        help="download and verify CIFAR-10 (python version)",
        description="Download cifar-10-python.tar.gz from the official address, "
        "verify its md5 and extract it into the data folder.",
    )
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_HELP)
    p.add_argument("--force", action="store_true", help="download even if the data is present")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser(
        "train",
        help="train a dense network and write a checkpoint",
        description="Train the toy dense network (3072-10-10 ReLU by default) on "
        "the 40,000-image training split, evaluate on the 10,000-image holdout, "
        "and write a checkpoint (weights, config, metrics).",
    )
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_HELP)
    p.add_argument(
        "--out", type=Path, default=None, help="checkpoint path (default: runs/<reg>-seed<seed>.pt)"
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
        "--layers",
        type=_ints,
        default=None,
        help="indices of the weight matrices pruned (default: all)",
    )
    p.add_argument(
        "--split",
        choices=("holdout", "test", "train"),
        default="holdout",
        help="data to evaluate on (default: holdout)",
    )
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_HELP)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output stem for .csv/.json (default: next to the checkpoint)",
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
        type=_ints,
        default=None,
        help="indices of the weight matrices pruned (default: all)",
    )
    p.add_argument("--out", type=Path, default=None, help="output stem for .csv/.json")
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
        type=int,
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
    p.add_argument("--gamma", type=float, default=0.75, help="marked pruned fraction")
    p.add_argument("--vmax", type=float, default=None, help="colour limit ±vmax")
    p.add_argument("--out", type=Path, default=None, help="PNG path")
    p.set_defaults(func=_cmd_coadaptation)

    _add_analysis_commands(sub)
    return parser


def _add_analysis_commands(sub: argparse._SubParsersAction) -> None:
    """The analysis commands (reproduce, curves) live beside their orchestration code."""
    from td_analysis import experiments

    experiments.add_commands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``td-analysis`` with ``argv``; returns the exit status (2 for bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (OSError, ValueError, KeyError, MemoryError) as exc:  # missing/corrupt data, bad input
        print(f"td-analysis {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
