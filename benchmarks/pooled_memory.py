"""Peak memory and time of the pooled coadaptation block sums of the fashion-mlp network.

``pooled_coadaptation`` (B × B block sums of θᵀ⊙H⊙θ over all 2.39 M weights, ordered by |θ|,
through B Hessian-vector products with U never stored) for B = 256 in float32 and float64, each
in a fresh process so that its peak resident memory (``ru_maxrss``) is its own.  Next to it, the
memory the old dense projection (``U`` of P × B entries, plus ``H U`` of the same size) needed.
The network is the task's architecture with its seeded initial weights (the cost does not depend
on training); the data are the first N holdout images.  Goal (issue #11): peak < 2 GB.

    TD_ANALYSIS_DATA=/work/shared/data python benchmarks/pooled_memory.py --examples 500
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

GOAL_GB = 2.0


def child(bins: int, dtype_name: str, examples: int) -> None:
    import torch

    from td_analysis.analysis.coadaptation import magnitude_order, pooled_coadaptation
    from td_analysis.pipelines.fashion_mlp import FashionSettings, load_split, network_config
    from td_analysis.training.loop import build_model

    torch.set_num_threads(1)
    dtype = {"float32": torch.float32, "float64": torch.float64}[dtype_name]
    cfg = network_config(FashionSettings(), "none", True, 0)
    model = build_model(cfg).eval()
    x, y = load_split(cfg, "holdout", limit=examples)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    order = magnitude_order(model, "weights")
    t0 = time.perf_counter()
    S = pooled_coadaptation(model, x, y, order, bins, reduction="mean", dtype=dtype)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "P": order.size,
                "bins": bins,
                "dtype": dtype_name,
                "seconds": seconds,
                "peak_gb": peak / 1e9,
                "before_gb": before / 1e9,
                "finite": bool(torch.isfinite(S).all()),
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bins", type=int, default=256)
    p.add_argument("--examples", type=int, default=500)
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1], int(args.child[2]))
        return
    import torch

    print(
        f"torch {torch.__version__}, python {platform.python_version()}, 1 thread; "
        f"B = {args.bins}, {args.examples} holdout images, mean loss"
    )
    print()
    print(
        "| dtype | P | B | seconds | peak RSS (GB) | RSS before (GB) | dense U + HU (GB) | goal |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for dtype in ("float32", "float64"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(args.bins), dtype, str(args.examples)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        item = 4 if dtype == "float32" else 8
        dense = 2 * r["P"] * r["bins"] * item / 1e9
        ok = "met" if r["peak_gb"] < GOAL_GB and r["finite"] else "MISSED"
        print(
            f"| {dtype} | {r['P']:,} | {r['bins']} | {r['seconds']:.0f} | {r['peak_gb']:.2f} | "
            f"{r['before_gb']:.2f} | {dense:.1f} | < {GOAL_GB} GB {ok} |"
        )


if __name__ == "__main__":
    main()
