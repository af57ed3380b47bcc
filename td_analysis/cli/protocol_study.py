"""``python -m td_analysis.protocol_study``: the command line of the toy protocol study
(:mod:`td_analysis.pipelines.protocol_study` holds the study itself).

:func:`main` pins the CPU kernels before it imports the study (and with it torch).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from td_analysis.cli import options
from td_analysis.utils.reproducibility import pin_cpu_kernels

__all__ = ["PROG", "build_parser", "main"]

PROG = "python -m td_analysis.protocol_study"


def build_parser() -> argparse.ArgumentParser:
    """The study's options (its protocols from :mod:`td_analysis.pipelines.protocol_study`, which
    imports torch: call this after the kernels are pinned)."""
    from td_analysis.pipelines import protocol_study as ps

    p = argparse.ArgumentParser(PROG, description=ps.__doc__.split("\n\n")[0])
    p.add_argument("--protocols", default=",".join(ps.PROTOCOLS), help="comma-separated names")
    options.add_seeds_option(p, [0, 1, 2], "distinct seeds, comma-separated (default: 0,1,2)")
    options.add_runs_option(p)
    p.add_argument("--out", type=Path, default=Path("figures"))
    options.add_data_dir_option(p)
    options.add_cache_dir_option(p, "Hessians (default RUNS/cache)")
    p.add_argument("--quick", action="store_true", help="500 images, 1/20 of the epochs")
    options.add_quiet_option(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study, write OUT/protocol_study.json and print its markdown section."""
    pin_cpu_kernels()  # before the study's modules import torch
    from td_analysis.pipelines import protocol_study as ps
    from td_analysis.utils.io import atomic_write_json

    p = build_parser()
    args = p.parse_args(argv)
    names = [n.strip() for n in args.protocols.split(",") if n.strip()]
    if not names or any(n not in ps.PROTOCOLS for n in names):
        p.error(f"--protocols: choose from {', '.join(ps.PROTOCOLS)}")
    quick = {"train_limit": 500, "eval_limit": 500, "epochs_scale": 0.05} if args.quick else {}
    t0 = time.perf_counter()
    try:
        kw = {"runs_dir": args.runs, "data_root": args.data_dir, "progress": not args.quiet}
        kw["cache_dir"] = args.cache_dir or args.runs / "cache"
        records = ps.run_study({n: ps.PROTOCOLS[n] for n in names}, args.seeds, **kw, **quick)
    except KeyboardInterrupt:
        print("interrupted: finished networks stay in --runs; nothing written", file=sys.stderr)
        return 130
    command = PROG + (" --quick" if args.quick else "")
    extra = {"seconds": time.perf_counter() - t0, "protocols": {n: ps.PROTOCOLS[n] for n in names}}
    study = ps.study_json(records, command=command, seeds=args.seeds, **extra)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "protocol_study.json", study)
    print(ps.study_markdown(study))
    print(f"wrote {args.out / 'protocol_study.json'} in {study['seconds']:.0f} s")
    return 0
