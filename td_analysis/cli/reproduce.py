"""Declaration of ``td-analysis reproduce`` (run by
:func:`td_analysis.experiments._cmd_reproduce`, imported when the command runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from td_analysis import cliargs, names
from td_analysis.cli.common import _lazy
from td_analysis.cliargs import DATA_HELP


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
