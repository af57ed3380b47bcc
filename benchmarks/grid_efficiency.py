"""A grid of networks against the ideal use of the machine (issue 23 item 2).

Runs ``reproduce_fashion`` (train, evaluate, prune, Taylor estimates, pooled maps of the
first seed: the whole per-network job, then the outputs) on a small grid twice, each time into
fresh folders so that nothing is reused:

* ``--workers 1``: the networks one after the other; each network's own time (its entry of
  ``summary.json``'s ``network_seconds``) is then the time of one network with the machine to
  itself;
* ``--workers N`` (default: every core): the grid as ``reproduce`` runs it.

The ideal wall time of the parallel grid is Σ(one-network times) / cores; the script prints the
parallel grid's wall time over that ideal (goal ≤ 1.10) and over the sequential run's wall time
/ cores, and a profile: where the time went, stage by stage (``stage_seconds``: data loading,
training, the pruning table, Taylor estimates, pooled maps), summed over the networks, in the
sequential and the parallel runs (their ratio is what sharing the machine costs each stage),
and the rest of the wall time (process start, the outputs, waiting for the last network).

Usage (from the repository root; prints Markdown)::

    TD_ANALYSIS_DATA=/path/to/data python benchmarks/grid_efficiency.py
    TD_ANALYSIS_DATA=... python benchmarks/grid_efficiency.py --seeds 0,1 --hidden full --epochs 1

The default grid is the ``--quick`` setting of ``reproduce --experiment fashion-mlp`` (a 4×
narrower network, 1 epoch on 6,000 images) over every regulariser and seeds 0–2: 15 networks.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from td_analysis import pin_cpu_kernels  # noqa: E402

STAGES = ("data", "train", "pruning", "taylor", "pooled")


def run_grid(settings, workers: int, data_root: str | None) -> tuple[float, list[dict]]:
    """Wall seconds of one ``reproduce_fashion`` into fresh folders, and its network_seconds."""
    from dataclasses import replace

    from td_analysis.pipelines.fashion_mlp import reproduce_fashion

    with tempfile.TemporaryDirectory(prefix="td-grid-") as tmp:
        t0 = time.perf_counter()
        results = reproduce_fashion(
            replace(settings, workers=workers),
            out_dir=Path(tmp) / "out",
            runs_dir=Path(tmp) / "runs",
            data_root=data_root,
            progress=False,
        )
        wall = time.perf_counter() - t0
    return wall, results["network_seconds"]


def stage_sums(networks: list[dict]) -> dict[str, float]:
    """Σ over the networks of each stage's seconds."""
    return {s: sum(n["stages"].get(s, 0.0) for n in networks) for s in STAGES}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2", help="seeds of the grid (default 0,1,2)")
    p.add_argument(
        "--regularisers", default=None, help="comma-separated (default: every fashion-mlp one)"
    )
    p.add_argument("--epochs", type=int, default=1, help="epochs per network (default 1)")
    p.add_argument(
        "--hidden",
        default="quick",
        help="'quick' (250-250-125-50, 6,000 training images) or 'full' (the task's network, "
        "every training image)",
    )
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--data-dir", default=None, help="default: $TD_ANALYSIS_DATA")
    args = p.parse_args(argv)
    pin_cpu_kernels()

    from td_analysis.pipelines.fashion_mlp import FashionSettings

    overrides: dict = {"seeds": tuple(int(s) for s in args.seeds.split(",")), "epochs": args.epochs}
    if args.regularisers:
        overrides["regularisers"] = tuple(args.regularisers.split(","))
        regs = overrides["regularisers"]
        pooled = tuple(r for r in ("none", "targeted-weight", "targeted-unit") if r in regs)
        overrides["pooled_regularisers"] = pooled or None
        overrides["bias_off_regularisers"] = None
    if args.hidden == "quick":
        settings = FashionSettings.quick(**overrides)
    elif args.hidden == "full":
        settings = FashionSettings(biases=(True,), **overrides)
    else:
        p.error("--hidden is 'quick' or 'full'")
    cores = min(args.workers, os.cpu_count() or 1)
    load0 = os.getloadavg()[0]
    print(f"sequential run (1 worker) of {len(settings.grid())} networks …", file=sys.stderr)
    wall1, nets1 = run_grid(settings, 1, args.data_dir)
    print(f"  {wall1:.1f} s; parallel run ({args.workers} workers) …", file=sys.stderr)
    wallp, netsp = run_grid(settings, args.workers, args.data_dir)
    print(f"  {wallp:.1f} s", file=sys.stderr)
    load1 = os.getloadavg()[0]
    one = sum(n["total"] for n in nets1)
    ideal = one / cores
    print(
        f"torch {__import__('torch').__version__}, python {platform.python_version()}, "
        f"{platform.machine()}; {os.cpu_count()} CPUs, 1-min load average {load0:.1f} before, "
        f"{load1:.1f} after; {len(nets1)} networks ({args.hidden} size, {args.epochs} epoch(s), "
        f"seeds {args.seeds}), {args.workers} workers\n"
    )
    print("| | seconds | × ideal |")
    print("|---|---:|---:|")
    print(f"| ideal: Σ one-network times / {cores} cores | {ideal:.1f} | 1.00 |")
    print(f"| parallel grid, wall | {wallp:.1f} | {wallp / ideal:.2f} |")
    seq = wall1 / cores
    print(f"| sequential grid, wall / {cores} | {seq:.1f} | {seq / ideal:.2f} |")
    print()
    s1, sp = stage_sums(nets1), stage_sums(netsp)
    print("| stage (Σ over networks) | sequential s | parallel s | parallel / sequential |")
    print("|---|---:|---:|---:|")
    for s in STAGES:
        if s1[s] or sp[s]:
            ratio = sp[s] / s1[s] if s1[s] else float("nan")
            print(f"| {s} | {s1[s]:.1f} | {sp[s]:.1f} | {ratio:.2f} |")
    rest1 = wall1 - sum(n["total"] for n in nets1)
    restp = wallp * cores - sum(n["total"] for n in netsp)
    print(
        f"| rest of the wall time (× {cores} cores in parallel: start-up, outputs, idle "
        f"workers) | {rest1:.1f} | {restp:.1f} | |"
    )
    verdict = "met" if wallp / ideal <= 1.10 else "NOT met"
    print(f"\nissue #23: parallel grid / ideal = {wallp / ideal:.2f} (goal ≤ 1.10: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
