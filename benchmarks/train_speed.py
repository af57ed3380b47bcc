"""Seconds per training epoch of the toy network, with and without targeted dropout.

Times ``td_analysis.training.train`` (3072 → 10 → 10 ReLU, batch 128, SGD momentum 0.9, the
40,000-image ``train`` split passed in as ``train_data``) with the regularisers

* ``none``;
* ``targeted-weight`` γ=0.75 α=0.5;
* ``targeted-unit`` γ=0.75 α=0.5;
* ``targeted-weight`` γ=0.75 α=0.5 with the official ramp (R = 40,000 steps),

next to a plain PyTorch loop over ``DataLoader(TensorDataset(x, y), batch_size=128,
shuffle=True)`` training ``nn.Sequential(Linear, ReLU, Linear)`` with the same SGD settings.
Every variant runs one epoch per repetition, the variants interleaved, so that load changes on a
shared machine hit all of them alike; the table reports the median (and the fastest) seconds per
epoch and the ratios of the medians.  ``train``'s epoch time is its own ``history[i]["seconds"]``
(the epoch loop only: no data loading, model building or evaluation, as for the DataLoader loop).

Usage::

    TD_ANALYSIS_DATA=/path/to/data python benchmarks/train_speed.py [--repeats 5] [--threads 1]
        [--profile]

``--profile`` also prints the cost of the pieces of one targeted-weight step (mask, random draw,
masking, forward/backward, optimiser step).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from td_analysis.data import load_cifar10  # noqa: E402
from td_analysis.dropout import Regulariser, RegulariserConfig, targeted_weight_mask  # noqa: E402
from td_analysis.training import TrainConfig, train  # noqa: E402

GAMMA, ALPHA = 0.75, 0.5
VARIANTS: dict[str, RegulariserConfig] = {
    "none": RegulariserConfig(),
    "targeted-weight": RegulariserConfig("targeted-weight", gamma=GAMMA, alpha=ALPHA),
    "targeted-unit": RegulariserConfig("targeted-unit", gamma=GAMMA, alpha=ALPHA),
    "targeted-weight ramp": RegulariserConfig(
        "targeted-weight", gamma=GAMMA, alpha=ALPHA, ramp_steps=40_000
    ),
}
DATALOADER = "DataLoader loop"


def td_epoch(reg: RegulariserConfig, data: tuple[torch.Tensor, torch.Tensor], seed: int) -> float:
    """One epoch of the project's ``train``; its own epoch timer."""
    cfg = TrainConfig(epochs=1, regulariser=reg, seed=seed, eval_split="")
    result = train(cfg, train_data=data, progress=False)
    return result.history[0]["seconds"]


def dataloader_epoch(data: tuple[torch.Tensor, torch.Tensor], seed: int) -> float:
    """One epoch of the textbook PyTorch loop over a DataLoader."""
    x, y = data
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3072, 10), nn.ReLU(), nn.Linear(10, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=128, shuffle=True
    )
    model.train()
    t0 = time.perf_counter()
    for xb, yb in loader:
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def _ms(fn: Callable[[], object], n: int = 300) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e3


def profile_step(data: tuple[torch.Tensor, torch.Tensor]) -> str:
    """Milliseconds of the pieces of one training step (3072 → 10 → 10, batch 128)."""
    x, y = data
    gen = torch.Generator().manual_seed(0)
    w0 = nn.Parameter(torch.randn(10, 3072) * 0.02)
    w1 = nn.Parameter(torch.randn(10, 10) * 0.3)
    b0, b1 = nn.Parameter(torch.zeros(10)), nn.Parameter(torch.zeros(10))
    opt = torch.optim.SGD([w0, w1, b0, b1], lr=0.01, momentum=0.9)
    idx = torch.randperm(x.shape[0], generator=gen)[:128]
    xb, yb = x[idx], y[idx]
    mask = targeted_weight_mask(w0, GAMMA)
    u = torch.rand(w0.shape, generator=gen)
    drop = mask & (u < ALPHA)

    def fwd_bwd(w_first):
        h = torch.relu(F.linear(xb, w_first, b0))
        loss = F.cross_entropy(F.linear(h, w1, b1), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()

    def step():
        fwd_bwd(w0)
        opt.step()

    keep = (~drop).to(w0.dtype)
    mag = w0.detach().abs()
    reg = Regulariser(VARIANTS["targeted-weight"], 2, gen)
    bern = torch.empty(w0.shape)
    rows = [
        ("batch gather x[idx]", _ms(lambda: x[idx])),
        ("forward + backward (no TD)", _ms(lambda: fwd_bwd(w0))),
        ("forward + backward + SGD step (no TD)", _ms(step)),
        ("targeted_weight_mask 10×3072 (threshold + compare)", _ms(lambda: mask_of(w0))),
        ("  torch.kthvalue 10×3072 (before the fix)", _ms(lambda: torch.kthvalue(mag, 2305, 1))),
        ("  numpy.partition 10×3072 (now)", _ms(lambda: np.partition(mag.numpy(), 2304, 1))),
        ("targeted_weight_mask 10×10", _ms(lambda: mask_of(w1))),
        ("torch.rand 10×3072 (generator)", _ms(lambda: torch.rand(w0.shape, generator=gen))),
        ("keep = ~(targeted & (u < α)) as float", _ms(lambda: (~(mask & (u < ALPHA))).float())),
        (
            "fwd + bwd through w.masked_fill(drop, 0) (before)",
            _ms(lambda: fwd_bwd(w0.masked_fill(drop, 0))),
        ),
        ("fwd + bwd through w * keep (now)", _ms(lambda: fwd_bwd(w0 * keep))),
        ("Regulariser.weight 10×3072 (all of TD for layer 0)", _ms(lambda: reg.weight(0, w0, 5))),
        ("Regulariser.weight 10×10 (layer 1)", _ms(lambda: reg.weight(1, w1, 5))),
        (
            "  alternative: bernoulli_(α) 10×3072",
            _ms(lambda: bern.bernoulli_(ALPHA, generator=gen)),
        ),
    ]
    lines = ["| piece of a step | ms |", "|---|---:|"]
    lines += [f"| {name} | {ms:.3f} |" for name, ms in rows]
    return "\n".join(lines)


def mask_of(w: torch.Tensor) -> torch.Tensor:
    return targeted_weight_mask(w, GAMMA)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="epochs per variant (default 5)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1; 0 keeps torch's default)",
    )
    parser.add_argument("--data-dir", default=None, help="default: $TD_ANALYSIS_DATA")
    parser.add_argument("--profile", action="store_true", help="also time the pieces of a step")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    load_before = os.getloadavg()[0]
    x, y = load_cifar10(args.data_dir, split="train")
    data = (x, y)
    names = [*VARIANTS, DATALOADER]
    times: dict[str, list[float]] = {n: [] for n in names}
    # warm-up (allocator, first-call overheads), not recorded
    td_epoch(VARIANTS["targeted-weight"], (x[:2048], y[:2048]), 0)
    dataloader_epoch((x[:2048], y[:2048]), 0)
    for rep in range(args.repeats):
        for name in names:
            if name == DATALOADER:
                times[name].append(dataloader_epoch(data, rep))
            else:
                times[name].append(td_epoch(VARIANTS[name], data, rep))
        print(
            f"repeat {rep + 1}/{args.repeats}: "
            + ", ".join(f"{n} {times[n][-1]:.3f}s" for n in names),
            file=sys.stderr,
        )

    med = {n: statistics.median(t) for n, t in times.items()}
    base, dl = med["none"], med[DATALOADER]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s), "
        f"python {platform.python_version()}, {platform.machine()}; "
        f"{x.shape[0]} images, batch 128, {args.repeats} interleaved epochs per variant; "
        f"{os.cpu_count()} CPUs, 1-min load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after"
    )
    print()
    print("| variant | median s/epoch | fastest s/epoch | × none | × DataLoader |")
    print("|---|---:|---:|---:|---:|")
    for n in names:
        print(
            f"| {n} | {med[n]:.3f} | {min(times[n]):.3f} | {med[n] / base:.2f} | "
            f"{med[n] / dl:.2f} |"
        )
    print()
    td = med["targeted-weight"]
    print(
        f"TD/none = {td / base:.2f} (goal ≤ 1.5: {'met' if td / base <= 1.5 else 'NOT met'}); "
        f"none/DataLoader = {base / dl:.2f}; TD/DataLoader = {td / dl:.2f} "
        f"(goal < 1: {'met' if td < dl else 'NOT met'})"
    )
    if args.profile:
        print()
        print(profile_step(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
