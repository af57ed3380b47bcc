"""``td-analysis train``: the :class:`TrainConfig` the options describe, trained and saved."""

from __future__ import annotations

import argparse
from pathlib import Path

from td_analysis.utils import cliargs


def task_from_args(args: argparse.Namespace):
    """The :class:`~td_analysis.training.tasks.Task` of ``--task`` / ``--dataset`` (default: the
    toy)."""
    from td_analysis.training.tasks import DEFAULT_TASK, get_task, task_for_dataset

    dataset = getattr(args, "dataset", None)
    if getattr(args, "task", None):
        task = get_task(args.task)
        if dataset and dataset != task.dataset:
            raise ValueError(f"task {task.name} is trained on {task.dataset}, not on {dataset}")
        return task
    return task_for_dataset(dataset) if dataset else get_task(DEFAULT_TASK)


def config_from_args(args: argparse.Namespace):
    """The :class:`TrainConfig` that the ``train`` options describe (unset: the task's)."""
    from td_analysis.nn.dropout import RegulariserConfig

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


def cmd_train(args: argparse.Namespace) -> int:
    from td_analysis.training.loop import save_checkpoint, train
    from td_analysis.training.runs import run_name

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
