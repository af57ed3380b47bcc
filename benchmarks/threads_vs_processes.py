"""Two cores, two ways (issue 23 item 2): is a grid faster as two one-thread processes side by
side, or as one two-thread process after another?

For one training step of an experiment's network (its real configuration: ``--workload
resnet`` the resnet-cifar10 cpu preset, ``--workload fashion`` the fashion-mlp network; random
inputs of the right shape, ``--steps`` steps of one epoch through the experiment's own trainer),
the script times

* ``1 × 1``: one process, one thread (the grid's unit of work alone on the machine);
* ``1 × 2``: one process, two threads;
* ``2 × 1``: two one-thread processes at once (what ``reproduce --workers 2`` does),

each in fresh subprocesses started together, and prints the machine's throughput in steps per
second for each layout and as a ratio to ``1 × 1``.  A grid of independent networks gets
throughput ``2 × 1`` from two workers and ``1 × 2`` from one two-thread worker: the larger
is the better layout, and ``2 × 1`` / (2 · ``1 × 1``) is how far two workers fall short of the
ideal (networks × one-network time / cores) on this machine, whatever the grid's own overhead.

Usage (from the repository root; prints Markdown)::

    python benchmarks/threads_vs_processes.py --workload resnet --steps 40 --repeats 3
    python benchmarks/threads_vs_processes.py --workload fashion --steps 60 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _train_steps(workload: str, steps: int, threads: int) -> float:
    """Seconds for ``steps`` training steps (after 3 warm-up steps) in this process."""
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    if workload == "resnet":
        from dataclasses import replace

        from td_analysis.pipelines.resnet import ResNetSettings, build_network, fit_config
        from td_analysis.training.fit import fit

        settings = ResNetSettings()
        config = replace(fit_config(settings, "none", 0), num_threads=threads, epochs=1)
        b = config.batch_size

        def run(n: int) -> None:
            x = torch.randn(n * b, 3, 32, 32)
            y = torch.randint(0, 10, (n * b,))
            fit(build_network(settings, 0), (x, y), config, progress=False)

    elif workload == "fashion":
        from dataclasses import replace

        from td_analysis.pipelines.fashion_mlp import FashionSettings, network_config
        from td_analysis.training.loop import train

        settings = FashionSettings()
        config = network_config(settings, "targeted-weight", True, 0)
        config = replace(config, epochs=1, num_threads=threads)
        b = config.batch_size

        def run(n: int) -> None:
            x = torch.rand(n * b, settings.task_def.in_features)
            y = torch.randint(0, settings.task_def.num_classes, (n * b,))
            train(config, train_data=(x, y), progress=False)

    else:
        raise SystemExit(f"--workload is resnet or fashion, got {workload!r}")
    run(3)
    t0 = time.perf_counter()
    run(steps)
    return time.perf_counter() - t0


def _layout(workload: str, steps: int, processes: int, threads: int) -> list[float]:
    """Seconds of each of ``processes`` subprocesses started together."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, __file__, "--child", workload, str(steps), str(threads)]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(processes)
    ]
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"a timing process failed (exit {p.returncode})")
        out.append(json.loads(stdout.strip().splitlines()[-1])["seconds"])
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        workload, steps, threads = argv[1], int(argv[2]), int(argv[3])
        print(json.dumps({"seconds": _train_steps(workload, steps, threads)}))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", choices=("resnet", "fashion"), default="resnet")
    p.add_argument("--steps", type=int, default=40, help="timed steps per process")
    p.add_argument("--repeats", type=int, default=3, help="rounds of the three layouts")
    args = p.parse_args(argv)
    layouts = {"1 × 1": (1, 1), "1 × 2": (1, 2), "2 × 1": (2, 1)}
    rates: dict[str, list[float]] = {k: [] for k in layouts}
    load0 = os.getloadavg()[0]
    for r in range(args.repeats):
        for name, (procs, threads) in layouts.items():
            secs = _layout(args.workload, args.steps, procs, threads)
            rates[name].append(sum(args.steps / s for s in secs))  # steps/s of the machine
            print(f"round {r + 1}: {name}: {secs}", file=sys.stderr)
    load1 = os.getloadavg()[0]
    print(
        f"{args.workload}, {args.steps} steps per process, {args.repeats} rounds; torch "
        f"{__import__('torch').__version__}, python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, 1-min load {load0:.1f} before, {load1:.1f} after\n"
    )
    base = statistics.median(rates["1 × 1"])
    print("| processes × threads | steps/s of the machine (median; rounds) | × 1 × 1 |")
    print("|---|---|---:|")
    for name, rs in rates.items():
        med = statistics.median(rs)
        each = ", ".join(f"{x:.2f}" for x in rs)
        print(f"| {name} | {med:.2f} ({each}) | {med / base:.2f} |")
    two = statistics.median(rates["2 × 1"]) / base
    print(
        f"\ntwo one-thread workers reach {two / 2:.2f} of the ideal 2 × (one process alone); "
        f"one two-thread process {statistics.median(rates['1 × 2']) / base / 2:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
