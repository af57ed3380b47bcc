"""Seconds per training step of a small CIFAR-sized conv net: plain vs the parametrized
targeted dropout of :mod:`td_analysis.nn` (issue 21 / issue 23 item 1, goal ≤ 1.3× plain).

The network (float32, one intra-op thread, batch 128 of 3 × 32 × 32 images)::

    conv 3→32 3×3 pad 1 → ReLU → maxpool 2 → conv 32→64 3×3 pad 1 → ReLU → maxpool 2 →
    conv 64→128 3×3 pad 1 → ReLU → global average pool → Linear 128→10

A step is what :func:`td_analysis.training.fit.fit` does: forward, cross-entropy, backward, SGD with
momentum 0.9.  Variants, all on the same weights and batches:

* ``plain`` (contiguous NCHW) and ``plain channels_last`` (the peer that decides ``fit``'s
  ``channels_last`` default);
* ``targeted-weight`` / ``targeted-unit`` γ = 0.5, α = 0.5 on the three convs (the default
  selection: the logits layer is spared), ``"uniform"`` and ``"bits"`` draws,
  ``apply_targeted_dropout``;
* optionally (``--compile``) the plain and targeted-weight steps under ``torch.compile``
  (inductor; the mask selection stays eager, a graph break).

Random images (the speed does not depend on the values).  Each round runs one step of every
variant in turn (so load changes on a shared machine hit all alike); the table reports the
median and fastest milliseconds per step and the *paired* ratio: the median over rounds of a
variant's step time over its base's (``plain`` in the same memory format) in the same round.
The masks alone (reading every targeted weight in train mode) are timed separately.
``--profile`` adds a ``torch.profiler`` table of the targeted-weight step's CPU time.

Usage::

    python benchmarks/conv_td_speed.py [--repeats 7] [--steps 10] [--compile] [--profile]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from td_analysis.nn import apply_targeted_dropout  # noqa: E402


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, 10),
    )


def make_variant(
    kind: str | None, draws: str, channels_last: bool, compiled: bool
) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
    model = small_cnn()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if kind is not None:
        apply_targeted_dropout(model, kind, 0.5, 0.5, generator=1, draws=draws)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    net = torch.compile(model) if compiled else model
    return model, net, opt


def step(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randn(args.batch, 3, 32, 32, generator=g),
            torch.randint(0, 10, (args.batch,), generator=g),
        )
        for _ in range(4)
    ]
    specs = {
        "plain": (None, "uniform", False, False),
        "targeted-weight": ("weight", "uniform", False, False),
        "targeted-unit": ("unit", "uniform", False, False),
        "targeted-weight, bits draws": ("weight", "bits", False, False),
        "targeted-unit, bits draws": ("unit", "bits", False, False),
        "plain channels_last": (None, "uniform", True, False),
        "targeted-weight channels_last": ("weight", "uniform", True, False),
        "targeted-unit channels_last": ("unit", "uniform", True, False),
    }
    if args.compile:
        specs["plain compiled"] = (None, "uniform", False, True)
        specs["targeted-weight compiled"] = ("weight", "uniform", False, True)
    variants = {name: make_variant(*spec) for name, spec in specs.items()}
    for _, net, opt in variants.values():  # warm-up (and compilation)
        for x, y in batches[:2]:
            step(net, opt, x, y)
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.repeats * args.steps):  # one step of each variant per round
        x, y = batches[r % len(batches)]
        for name, (_, net, opt) in variants.items():
            t0 = time.perf_counter()
            step(net, opt, x, y)
            times[name].append(time.perf_counter() - t0)
    load_after = os.getloadavg()[0]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread, python "
        f"{platform.python_version()}, {platform.machine()}; batch {args.batch} × 3 × 32 × 32, "
        f"float32, {args.repeats * args.steps} rounds of one step per variant; "
        f"{os.cpu_count()} CPUs, 1-min load average {load_before:.1f} before, "
        f"{load_after:.1f} after\n"
    )

    def base_of(name: str) -> str:
        if "compiled" in name:
            return "plain compiled"
        return "plain channels_last" if "channels_last" in name else "plain"

    median = {name: statistics.median(t) for name, t in times.items()}
    paired = {  # the median over rounds of this step's time / the base's step in the same round
        name: statistics.median(a / b for a, b in zip(t, times[base_of(name)], strict=True))
        for name, t in times.items()
    }
    print("| variant | median ms/step | fastest ms/step | × base, paired by round |")
    print("|---|---:|---:|---:|")
    for name, t in times.items():
        print(
            f"| {name} | {1e3 * median[name]:.1f} | {1e3 * min(t):.1f} | "
            f"{paired[name]:.2f} (base: {base_of(name)}) |"
        )
    cl = statistics.median(
        a / b for a, b in zip(times["plain channels_last"], times["plain"], strict=True)
    )
    print(f"\nplain channels_last / plain NCHW = {cl:.2f} (paired by round)")
    worst = max(v for n, v in paired.items() if n.startswith("targeted"))
    verdict = "met" if worst <= 1.3 else "NOT met"
    print(f"worst targeted/plain = {worst:.2f} (goal ≤ 1.3: {verdict})")
    # the masks alone: reading every targeted weight in train mode (selection, draw, W ⊙ M)
    for name in ("targeted-weight", "targeted-unit", "targeted-weight, bits draws"):
        model = variants[name][0]
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        reads = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                with torch.no_grad():
                    for m in convs:
                        m.weight  # noqa: B018 - one training read: one mask
            reads.append((time.perf_counter() - t0) / args.steps)
        print(
            f"{name}: the masks alone take {1e3 * statistics.median(reads):.2f} ms per step "
            f"({statistics.median(reads) / median['plain']:.1%} of the plain step)"
        )
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        _, net, opt = variants["targeted-weight"]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for s in range(args.steps):
                step(net, opt, *batches[s % len(batches)])
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
