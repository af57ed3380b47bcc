"""``td-analysis reproduce``: its declaration and its run (:func:`_cmd_reproduce`, which imports
the experiments, and torch with them, only when the command runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from td_analysis.catalog import names
from td_analysis.cli import options
from td_analysis.utils import cliargs


def add_reproduce_command(sub: argparse._SubParsersAction) -> None:
    """Register ``reproduce`` (run by :func:`_cmd_reproduce`)."""
    p = options.add_command(
        sub,
        "reproduce",
        _cmd_reproduce,
        "the main job: reproduce the paper's Figure 1 and Table 1 (and the fashion-mlp experiment)",
        "Toy experiment (default): train (or reuse cached checkpoints of) the toy "
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
        "--bn-recalibration",
        type=cliargs.non_negative_int,
        default=None,
        metavar="N",
        help="resnet-cifar10 only: re-estimate each analysed network's BatchNorm statistics on "
        "N training images first, per reading (default 4000; 0: the statistics of training, as "
        "the official code evaluates, which leaves a targeted-unit network at chance)",
    )
    options.add_value_option(
        p,
        "--pruning-split",
        None,
        "resnet-cifar10 only: where the pruning tables evaluate (default holdout: 2,000 exact "
        "held-out training images; test-exact: the exact test images 0-999; test: the whole "
        "test split, whose images 1,000-9,999 are JPEG copies in the shared data)",
        choices=names.PRUNING_SPLITS,
    )
    options.add_value_option(
        p,
        "--ks",
        cliargs.percents,
        "fashion-mlp: distinct pruning percentages in [0, 100] (default: "
        "0,25,50,60,70,80,90,95,97,99)",
    )
    options.add_value_option(
        p,
        "--workers",
        cliargs.positive_int,
        "networks trained (fashion-mlp, resnet-cifar10: and analysed, evaluated) in parallel "
        "processes, one thread each (default: 2; toy --quick: 1)",
    )
    options.add_scheduler_option(
        p,
        "fashion-mlp, resnet-cifar10: train and analyse the networks on the Dask cluster of "
        "this scheduler (e.g. tcp://10.0.0.5:8786) instead of --workers local processes; the "
        'same results; needs pip install "td-analysis[dask]" and a --runs folder every worker '
        "sees",
    )
    options.add_bins_option(
        p,
        "fashion-mlp: B of the pooled B × B coadaptation block sums (default: 128)",
    )
    options.add_seeds_option(
        p,
        None,
        "distinct seeds, comma-separated (default toy and fashion-mlp: 0,1,2,3,4, "
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
        help="the task's named training protocol; toy: default (= adam: Adam lr 1e-3, 60 "
        "epochs, the protocol study's closest) or sgd (SGD lr 0.01, 20 epochs: the first "
        "results); fashion-mlp: default "
        "(Adam, batch 128, 20 epochs), seed (the seed's batch 32, 100 epochs) or short (3 epochs)",
    )
    options.add_value_option(
        p,
        "--epochs",
        cliargs.positive_int,
        "training epochs (default: the protocol's, toy 60, fashion-mlp 20; --quick: 2, "
        "fashion-mlp 1)",
    )
    options.add_limit_option(
        p,
        "use only the first N images of each evaluation split (default: all; --quick: 2000)",
        "--eval-limit",
    )
    options.add_vmax_option(
        p,
        "colour limit ±vmax of Figure 1 (default: the largest |entry|; the "
        "published figure used 3000)",
    )
    p.add_argument(
        "--no-curves", action="store_true", help="skip the baselines and the pruning-curve figure"
    )
    options.add_out_option(
        p,
        f"output folder, replaced as a whole when every output is written (default: "
        f"figures; --quick: {names.QUICK_OUT}, never over the committed figures)",
        folder=True,
    )
    options.add_runs_option(
        p,
        None,
        f"checkpoint folder, reused across runs (default: runs; --quick: {names.QUICK_RUNS})",
        output=True,
    )
    options.add_cache_dir_option(
        p,
        "cache of Hessians (default: $TD_ANALYSIS_CACHE, else "
        "$XDG_CACHE_HOME/td_analysis/results, ~/.cache/td_analysis/results)",
    )
    options.add_data_dir_option(p)
    options.add_quiet_option(p)
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


# ----------------------------------------------------------------------------- run


def _given_options(args: argparse.Namespace, fields: dict) -> dict:
    """The settings of the options given: ``{setting: convert(args.option)}`` for every
    ``option: setting`` (or ``option: (setting, convert)``) of ``fields`` not ``None``."""
    given = {}
    for option, field in fields.items():
        setting, convert = (field, None) if isinstance(field, str) else field
        value = getattr(args, option, None)
        if value is not None:
            given[setting] = value if convert is None else convert(value)
    return given


def _toy_settings(args: argparse.Namespace):
    """The toy experiment's :class:`~td_analysis.pipelines.toy.ReproduceSettings` from the
    options."""
    from td_analysis.pipelines.toy import ReproduceSettings

    overrides = _given_options(
        args,
        {
            "seeds": ("seeds", tuple),
            "epochs": "epochs",
            "eval_limit": "eval_limit",
            "vmax": "vmax",
            "protocol": "protocol",
            "workers": "workers",
        },
    )
    if args.no_curves:
        overrides["curves"] = False
    return ReproduceSettings.quick(**overrides) if args.quick else ReproduceSettings(**overrides)


def _fashion_command(args: argparse.Namespace) -> str:
    """The command line that made the results: the experiment and every option that shapes
    them (not where files go, nor how many processes)."""
    parts = ["td-analysis reproduce --experiment fashion-mlp"]
    if args.quick:
        parts.append("--quick")
    if args.seeds is not None:
        parts.append("--seeds " + ",".join(map(str, args.seeds)))
    for name in ("biases", "protocol", "epochs", "bins"):
        value = getattr(args, name, None)
        if value is not None:
            parts.append(f"--{name} {value}")
    if args.ks is not None:
        parts.append("--ks " + ",".join(f"{k:g}" for k in args.ks))
    return " ".join(parts)


def _fashion_settings(args: argparse.Namespace):
    """The fashion-mlp experiment's :class:`~td_analysis.pipelines.fashion_mlp.FashionSettings`
    from the options."""
    from td_analysis.pipelines.fashion_mlp import FashionSettings

    biases = {"on": (True,), "off": (False,), "both": (True, False)}
    overrides = _given_options(
        args,
        {
            "seeds": ("seeds", tuple),
            "epochs": "epochs",
            "ks": ("ks", tuple),
            "workers": "workers",
            "bins": "pooled_bins",
            "protocol": "protocol",
            "biases": ("biases", biases.__getitem__),
        },
    )
    return FashionSettings.quick(**overrides) if args.quick else FashionSettings(**overrides)


def _cmd_report_only(args: argparse.Namespace, experiments: tuple[str, ...]) -> int:
    """``reproduce --report-only``: rewrite the reports of ``experiments`` from their JSON."""
    from td_analysis.pipelines import toy as exp

    out = Path(args.out) if args.out is not None else Path("figures")
    if "toy" in experiments:
        exp.write_toy_reports(out)
        print(f"rewrote {out / 'table1.md'} and {out / 'table1_differences.png'} from table1.json")
    if "fashion-mlp" in experiments:
        from td_analysis.pipelines.fashion_mlp import write_reports

        write_reports(out / "fashion_mlp")
        print(f"rewrote the reports in {out / 'fashion_mlp'} from its JSON")
    if args.readme is not None:
        exp.refresh_readme(args.readme, out, experiments)
        print(f"rewrote the generated result blocks of {args.readme}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    """Run ``td-analysis reproduce``: check every setting, then train, analyse and write the
    chosen experiments (or only rewrite their reports)."""
    if args.experiment == "resnet-cifar10":  # issue 22: its own module, with --preset
        return cmd_reproduce_resnet(args)
    for flag in ("preset", "bn_recalibration", "pruning_split"):
        if getattr(args, flag, None) is not None:
            raise ValueError(
                f"--{flag.replace('_', '-')} works only with --experiment resnet-cifar10"
            )
    experiments = ("toy", "fashion-mlp") if args.experiment == "all" else (args.experiment,)
    if args.report_only:  # nothing is trained: the reports are rewritten from the JSON
        return _cmd_report_only(args, experiments)
    if args.readme is not None:
        raise ValueError("--readme works only with --report-only")
    if args.out is None:  # quick results never land on the committed full-run figures
        args.out = names.QUICK_OUT if args.quick else Path("figures")
    if args.runs is None:  # nor quick checkpoints next to the full ones: all under runs/quick
        args.runs = names.QUICK_RUNS if args.quick else Path("runs")
    experiments = ("toy", "fashion-mlp") if args.experiment == "all" else (args.experiment,)
    if getattr(args, "scheduler", None) is not None and "fashion-mlp" not in experiments:
        raise ValueError("--scheduler applies to --experiment fashion-mlp and resnet-cifar10")
    # every setting is validated before anything is trained or written
    toy = _toy_settings(args) if "toy" in experiments else None
    fashion = _fashion_settings(args) if "fashion-mlp" in experiments else None
    if fashion is not None:
        from td_analysis.pipelines.fashion_mlp import check_pooled_memory

        check_pooled_memory(fashion)
    if toy is not None:
        from td_analysis.pipelines import toy as exp

        results = exp.reproduce(
            toy,
            out_dir=args.out,
            runs_dir=args.runs,
            data_root=args.data_dir,
            cache_dir=args.cache_dir,
            progress=not args.quiet,
        )
        print((Path(args.out) / "table1.md").read_text())
        print(
            f"wrote Figure 1, Table 1 and the estimator plots to {args.out} "
            f"in {results['seconds']:.0f} s"
        )
    if fashion is not None:
        from td_analysis.pipelines.fashion_mlp import reproduce_fashion

        out = Path(args.out) / "fashion_mlp"
        command = _fashion_command(args)
        results = reproduce_fashion(
            fashion,
            out_dir=out,
            runs_dir=args.runs,
            data_root=args.data_dir,
            download=False,
            progress=not args.quiet,
            command=command,
            scheduler=getattr(args, "scheduler", None),
        )
        print((out / "pruning.md").read_text())
        print(f"wrote the fashion-mlp results to {out} in {results['seconds']:.0f} s")
    return 0


def cmd_reproduce_resnet(args: argparse.Namespace) -> int:
    """``td-analysis reproduce --experiment resnet-cifar10 [--preset cpu|paper] [--quick]``."""
    from td_analysis.catalog.names import QUICK_OUT, QUICK_RUNS
    from td_analysis.pipelines.resnet import ResNetSettings, reproduce_resnet, write_reports

    preset = args.preset or "cpu"
    split = getattr(args, "pruning_split", None)
    command = (
        f"td-analysis reproduce --experiment resnet-cifar10 --preset {preset}"
        + (" --quick" if args.quick else "")
        + (f" --pruning-split {split}" if split else "")
    )
    unused = [
        flag
        for flag, value in (
            ("--eval-limit", args.eval_limit),
            ("--vmax", args.vmax),
            ("--no-curves", args.no_curves or None),
            ("--cache-dir", args.cache_dir),
        )
        if value is not None
    ]
    if unused:
        raise ValueError(f"{', '.join(unused)} do(es) not apply to --experiment resnet-cifar10")
    out = Path(args.out if args.out is not None else QUICK_OUT if args.quick else "figures")
    out = out / "resnet_cifar10"
    if args.report_only:
        write_reports(out, command=command)
        print(f"rewrote the reports in {out} from its JSON")
        return 0
    if args.readme is not None:
        raise ValueError("--readme works only with --report-only")
    runs = Path(args.runs if args.runs is not None else QUICK_RUNS if args.quick else "runs")
    overrides: dict = {"preset": preset}
    for name, value in (
        ("seeds", args.seeds),
        ("epochs", args.epochs),
        ("ks", args.ks),
        ("workers", args.workers),
        ("pooled_bins", args.bins),
        ("bn_recalibration", getattr(args, "bn_recalibration", None)),
        ("pruning_split", split),
    ):
        if value is not None:
            overrides[name] = tuple(value) if isinstance(value, list) else value
    settings = ResNetSettings.quick(**overrides) if args.quick else ResNetSettings(**overrides)
    results = reproduce_resnet(
        settings,
        out_dir=out,
        runs_dir=runs,
        data_root=args.data_dir,
        progress=not args.quiet,
        command=command,
        scheduler=getattr(args, "scheduler", None),
    )
    if results is not None:  # rank 0
        print((out / "pruning.md").read_text())
        print(f"wrote the resnet-cifar10 results to {out} in {results['seconds']:.0f} s")
    return 0
