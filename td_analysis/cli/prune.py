"""``td-analysis prune`` (pruning curves, the seed's ``--percent`` table) and ``estimate``
(Taylor estimates of the loss change against the measured one)."""

from __future__ import annotations

import argparse

from td_analysis.cli.common import (
    analysis_data,
    check_input_size,
    load_checked_checkpoint,
    load_for_analysis,
    rows_stem,
    write_rows,
)


def cmd_prune(args: argparse.Namespace) -> int:
    from td_analysis.analysis.pruning import pruning_curve

    if args.percent is not None:
        return _cmd_prune_percent(args)
    rows_stem(args, f"prune-{args.kind}-{args.split}")  # writable? (before the work)
    ckpt = load_checked_checkpoint(args.checkpoint, getattr(args, "model", None))
    x, y = analysis_data(args, ckpt)
    check_input_size(ckpt, x, args)
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
    write_rows(args, rows, f"prune-{args.kind}-{args.split}")
    return 0


def _cmd_prune_percent(args: argparse.Namespace) -> int:
    """``prune --percent``: the seed's per-layer weight / unit pruning at k percent."""
    from td_analysis.analysis.pruning import REFERENCE_KINDS, pruning_table

    if args.kind not in REFERENCE_KINDS:
        kinds = " or ".join(REFERENCE_KINDS)
        raise ValueError(f"--percent prunes by --kind {kinds}, not {args.kind}")
    what = f"prune-{args.kind}-percent-{args.split}"
    rows_stem(args, what)  # writable? (before the work)
    ckpt = load_checked_checkpoint(args.checkpoint, getattr(args, "model", None))
    x, y = analysis_data(args, ckpt)
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
    write_rows(args, rows, what)
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from td_analysis.analysis.taylor import pruning_sweep

    rows_stem(args, f"estimate-{args.kind}-{args.split}")  # writable? (before the work)
    ckpt, x, y = load_for_analysis(args)
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
    write_rows(args, [r.as_dict() for r in rows], f"estimate-{args.kind}-{args.split}")
    return 0
