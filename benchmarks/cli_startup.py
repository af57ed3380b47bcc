"""Start-up of ``td-analysis``: ``--help`` and argument errors against ``import torch``.

    python benchmarks/cli_startup.py --repeats 7
    python benchmarks/cli_startup.py --repeats 7 --baseline /tmp/old   # also an older checkout

Each row is a fresh process, rows interleaved round by round (the machine is shared and noisy):
an empty interpreter, ``import torch`` (the peer: what every command paid before issue 24), and
three ``td-analysis`` invocations that must answer from the parser alone. The goal is < 1 s,
i.e. a small fraction of ``import torch``; the table gives medians and the ratio to it.
``--baseline DIR`` runs the same invocations with ``PYTHONPATH=DIR`` (e.g. ``git archive HEAD~1
td_analysis | tar -x -C DIR``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

INVOCATIONS = {
    "td-analysis --help": ["--help"],
    "td-analysis train --epochs 0": ["train", "--epochs", "0"],
    "td-analysis prune x.pt --fractions 0.5,0.5": ["prune", "x.pt", "--fractions", "0.5,0.5"],
}


def _seconds(argv: list[str], pythonpath: str | None = None) -> float:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    t0 = time.perf_counter()  # from an empty folder: `-m` puts the working folder on sys.path
    where = tempfile.gettempdir()
    subprocess.run([sys.executable, *argv], env=env, capture_output=True, check=False, cwd=where)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--baseline", default=None, help="an older td_analysis to compare")
    args = parser.parse_args()
    rows: dict[str, tuple[list[str], str | None]] = {
        "python -c pass": (["-c", "pass"], None),
        "python -c 'import torch'": (["-c", "import torch"], None),
    }
    for name, argv in INVOCATIONS.items():
        rows[name] = (["-m", "td_analysis.cli", *argv], None)
        if args.baseline:
            rows[f"{name} (baseline)"] = (["-m", "td_analysis.cli", *argv], args.baseline)
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, (argv, path) in rows.items():
            times[name].append(_seconds(argv, path))
    torch_s = statistics.median(times["python -c 'import torch'"])
    print(f"| invocation | median of {args.repeats} (s) | ÷ import torch |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| `{name}` | {median:.2f} | {median / torch_s:.2f} |")


if __name__ == "__main__":
    main()
