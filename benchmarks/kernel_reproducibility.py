"""Where runs diverge across x86-64 machines: one seed of the toy network trained under emulated
CPUs, weights compared bit for bit with the run on this machine.

    python benchmarks/kernel_reproducibility.py --epochs 3            # pinned kernels (default)
    python benchmarks/kernel_reproducibility.py --epochs 3 --native   # torch's and MKL's own choice

Each row is a fresh ``td-analysis train`` process with environment variables that make torch
and MKL behave as on another machine: ``ATEN_CPU_CAPABILITY`` (torch's kernels: default =
SSE, avx2, avx512), ``MKL_ENABLE_INSTRUCTIONS`` (the highest instruction set MKL may use),
``MKL_CBWR`` (MKL's reproducibility branch), thread counts, and oneDNN off. ``--native`` sets
``TD_ANALYSIS_NATIVE_KERNELS=1`` (no pinning, see :mod:`td_analysis.utils.reproducibility`).
Needs the data (``TD_ANALYSIS_DATA``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

MACHINES: dict[str, dict[str, str]] = {
    "this machine": {},
    "AVX2 machine (torch avx2, MKL AVX2)": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    },
    "torch kernels avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "torch kernels default (SSE)": {"ATEN_CPU_CAPABILITY": "default"},
    "MKL AVX2 only": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "MKL AVX only (pre-2013 CPU)": {"MKL_ENABLE_INSTRUCTIONS": "AVX"},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "OMP/MKL threads 2": {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
    "oneDNN off": {"_TD_MKLDNN_OFF": "1"},
}
# run the CLI, optionally with oneDNN disabled first (so torch is imported before the CLI's
# main(): the kernels are pinned explicitly first, as td_analysis.cli.main does)
CODE = (
    "import os, sys\n"
    "import td_analysis\n"
    "td_analysis.pin_cpu_kernels()\n"
    "import torch\n"
    "if os.environ.get('_TD_MKLDNN_OFF'): torch.backends.mkldnn.enabled = False\n"
    "from td_analysis.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--reg", default="none")
    parser.add_argument("--native", action="store_true", help="no kernel pinning")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="td-kernels-"))
    states, accs = {}, {}
    for name, extra in MACHINES.items():
        env = {**os.environ, **extra}
        if args.native:
            env["TD_ANALYSIS_NATIVE_KERNELS"] = "1"
        out = folder / f"{len(states)}.pt"
        argv = ["train", "--epochs", str(args.epochs), "--reg", args.reg, "--quiet"]
        proc = subprocess.run(
            [sys.executable, "-c", CODE, *argv, "--out", str(out)],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            print(f"{name}: failed: {proc.stderr.strip()[-300:]}")
            continue
        ckpt = torch.load(out, weights_only=True)
        states[name], accs[name] = ckpt["state_dict"], ckpt["metrics"]["eval_accuracy"]
    base = states["this machine"]
    mode = "native kernels" if args.native else "pinned kernels"
    print(f"{args.reg}, {args.epochs} epochs, seed 0, {mode}, torch {torch.__version__}")
    print("| emulated machine | weights bit-identical | max abs weight difference | holdout acc |")
    print("|---|---|---|---|")
    for name, state in states.items():
        same = all(torch.equal(state[k], base[k]) for k in base)
        diff = max(float((state[k] - base[k]).abs().max()) for k in base)
        print(f"| {name} | {'yes' if same else 'no'} | {diff:.3g} | {accs[name]:.4f} |")


if __name__ == "__main__":
    main()
