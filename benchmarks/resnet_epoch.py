"""Size the resnet-cifar10 cpu preset: seconds per training epoch (40,000 CIFAR-10 images,
batch 128, one thread) of candidate pre-activation ResNets, none and targeted weight dropout,
as ratios against the toy network's epoch (3072 → 10 → 10 through ``fit``) timed in the same
process (the machine is shared: only the ratios carry over).

    OMP_NUM_THREADS=1 python benchmarks/resnet_epoch.py [--steps 6] [--only N] [--out FILE.json]

A candidate's epoch is extrapolated from ``--steps`` timed steps (after 2 warm-up steps) to the
313 steps of an epoch; the toy epoch is timed whole.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch

from td_analysis.nets.resnet import PreActResNet, targeted_layers
from td_analysis.nn.dropout import RegulariserConfig
from td_analysis.training.fit import FitConfig, fit
from td_analysis.training.tasks import get_task

CANDIDATES = [
    ((1, 1, 1), (16, 32, 64)),
    ((2, 2, 2), (16, 32, 64)),
    ((1, 1, 1), (32, 64, 128)),
    ((2, 2, 2), (32, 64, 128)),
    ((5, 5, 5), (32, 64, 128)),
]
N_TRAIN, BATCH = 40_000, 128


def time_fit(model, x, y, config) -> float:
    t0 = time.perf_counter()
    fit(model, (x, y), config, progress=False)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--out", default=None)
    p.add_argument("--only", type=int, default=None, help="time only the first N candidates")
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    steps_per_epoch = math.ceil(N_TRAIN / BATCH)
    toy = get_task("toy").network()
    xt, yt = torch.randn(N_TRAIN, 3072), torch.randint(0, 10, (N_TRAIN,))
    toy_s = time_fit(toy, xt, yt, FitConfig(epochs=1, batch_size=BATCH, lr=0.01))
    rows = []
    for units, widths in CANDIDATES[: args.only]:
        for kind in ("none", "targeted-weight"):
            reg = RegulariserConfig()
            if kind != "none":
                reg = RegulariserConfig(
                    kind, gamma=0.75, alpha=0.66, layers=targeted_layers(units), draws="bits"
                )
            model = PreActResNet(units, widths)
            n = (2 + args.steps) * BATCH
            x, y = torch.randn(n, 3, 32, 32), torch.randint(0, 10, (n,))
            cfg = dict(epochs=1, batch_size=BATCH, lr=0.1, augment=True, regulariser=reg)
            warm = time_fit(model, x[: 2 * BATCH], y[: 2 * BATCH], FitConfig(**cfg))
            model = PreActResNet(units, widths)
            total = time_fit(model, x, y, FitConfig(**cfg))
            per_step = total / (2 + args.steps)
            epoch = per_step * steps_per_epoch
            params = sum(p.numel() for p in model.parameters())
            rows.append(
                {
                    "units": units,
                    "widths": widths,
                    "regulariser": kind,
                    "params": params,
                    "epoch_s": epoch,
                    "ratio_to_toy_epoch": epoch / toy_s,
                    "warmup_s": warm,
                }
            )
            print(
                f"units={units} widths={widths} {kind:16s} P={params:8,d} "
                f"epoch≈{epoch:7.1f} s  ({epoch / toy_s:6.1f}× toy epoch)",
                flush=True,
            )
    out = {"toy_epoch_s": toy_s, "load_average": os.getloadavg(), "rows": rows}
    print(f"toy epoch {toy_s:.2f} s, load average {os.getloadavg()}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
