"""Seconds per training epoch of the toy network, with and without targeted dropout.

Times ``td_analysis.training.loop.train`` (3072 → 10 → 10 ReLU, batch 128, SGD momentum 0.9, the
40,000-image ``train`` split passed in as ``train_data``) with the regularisers

* ``none``;
* ``targeted-weight`` γ=0.75 α=0.5;
* ``targeted-unit`` γ=0.75 α=0.5;
* ``targeted-weight`` γ=0.75 α=0.5 with the official ramp (R = 40,000 steps);
* ``targeted-weight`` and ``targeted-unit`` on the numpy path (``TD_ANALYSIS_FUSED_KERNELS=0``: no
  fused C kernels, the code before issue #23; bit-identical results),

next to two peers in the same process:

* the textbook PyTorch loop over ``DataLoader(TensorDataset(x, y), batch_size=128,
  shuffle=True)`` training ``nn.Sequential(Linear, ReLU, Linear)`` with the same SGD settings
  (no TD);
* the same targeted dropout written the usual way: autograd through
  ``Regulariser.weight`` (``W ⊙ M``), ``loss.backward()`` and ``torch.optim.SGD``, batches sliced
  from the in-memory tensors (what ``train`` did before its closed-form gradient).

Every variant runs one epoch per repetition, the variants interleaved, so that load changes on a
shared machine hit all of them alike; the table reports the median (and the fastest) seconds per
epoch and the ratios of the medians.  ``train``'s epoch time is its own ``history[i]["seconds"]``
(the epoch loop only: no data loading, model building or evaluation, as for the peers).

Usage::

    TD_ANALYSIS_DATA=/path/to/data python benchmarks/train_speed.py [--repeats 5] [--threads 1]
        [--profile]

``--profile`` also prints the cost of the pieces of one targeted-weight step.
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
from td_analysis.nn.dropout import (  # noqa: E402
    Regulariser,
    RegulariserConfig,
    keep_factor,
    targeted_weight_mask,
)
from td_analysis.training.loop import (  # noqa: E402
    DenseStep,
    TrainConfig,
    build_model,
    loss_and_gradients,
    train,
)
from td_analysis.utils import kernels  # noqa: E402

GAMMA, ALPHA = 0.75, 0.5
VARIANTS: dict[str, RegulariserConfig] = {
    "none": RegulariserConfig(),
    "targeted-weight": RegulariserConfig("targeted-weight", gamma=GAMMA, alpha=ALPHA),
    "targeted-unit": RegulariserConfig("targeted-unit", gamma=GAMMA, alpha=ALPHA),
    "targeted-weight ramp": RegulariserConfig(
        "targeted-weight", gamma=GAMMA, alpha=ALPHA, ramp_steps=40_000
    ),
}
#: the same regularisers without the fused C kernels (``TD_ANALYSIS_FUSED_KERNELS=0``: numpy path)
NUMPY_PATH = {
    "targeted-weight, numpy path (no kernels)": "targeted-weight",
    "targeted-unit, numpy path (no kernels)": "targeted-unit",
}
DATALOADER = "DataLoader loop (no TD)"
AUTOGRAD_TD = "autograd loop, targeted-weight"


def td_epoch(
    reg: RegulariserConfig, data: tuple[torch.Tensor, torch.Tensor], seed: int, fused: bool = True
) -> float:
    """One epoch of the project's ``train``; its own epoch timer.  ``fused=False`` switches the
    compiled kernels off for this epoch (``TD_ANALYSIS_FUSED_KERNELS=0``)."""
    cfg = TrainConfig(epochs=1, regulariser=reg, seed=seed, eval_split="")
    before = os.environ.get(kernels.ENV_SWITCH)
    if not fused:
        os.environ[kernels.ENV_SWITCH] = "0"
    try:
        result = train(cfg, train_data=data, progress=False)
    finally:
        if before is None:
            os.environ.pop(kernels.ENV_SWITCH, None)
        else:
            os.environ[kernels.ENV_SWITCH] = before
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


def autograd_td_epoch(data: tuple[torch.Tensor, torch.Tensor], seed: int) -> float:
    """One epoch of targeted dropout through autograd: ``F.linear(h, reg.weight(l, W, s), b)``."""
    x, y = data
    cfg = TrainConfig(epochs=1, regulariser=VARIANTS["targeted-weight"], seed=seed)
    model = build_model(cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    reg = Regulariser(cfg.regulariser, len(model.layers), gen)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    layers = list(model.layers)
    t0 = time.perf_counter()
    perm = torch.randperm(x.shape[0], generator=gen)
    for step, start in enumerate(range(0, x.shape[0], cfg.batch_size)):
        idx = perm[start : start + cfg.batch_size]
        h = x[idx]
        for l, layer in enumerate(layers):
            h = F.linear(h, reg.weight(l, layer.weight, step), layer.bias)
            if l < len(layers) - 1:
                h = torch.relu(h)
        loss = F.cross_entropy(h, y[idx])
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
    """Microseconds of the pieces of one training step (3072 → 10 → 10, batch 128), timed in
    isolation (hot caches: inside the epoch loop the 1.5 MB batch evicts the weights, and the
    mask pieces cost up to ~1.5× more)."""
    x, y = data
    gen = torch.Generator().manual_seed(0)
    model = build_model(TrainConfig())
    layers = list(model.layers)
    w0, w1 = layers[0].weight, layers[1].weight
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, fused=True)
    plain_opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    idx = torch.randperm(x.shape[0], generator=gen)[:128]
    xb, yb = x[idx], y[idx]
    buffer = torch.empty_like(xb)
    reg = Regulariser(VARIANTS["targeted-weight"], 2, gen)
    factors = reg.step_factors([w0, w1], 128, 5)
    masked: list[torch.Tensor | None] = [None, None]
    fused = reg.step_masks([w0, w1], 128, 5, masked)
    dense = DenseStep(layers, 128)
    w0n, hints, keep = w0.detach().numpy(), {}, np.empty(tuple(w0.shape), np.uint8)
    mag = w0.detach().abs()
    bits = mag.numpy().view(np.int32)
    t, u = mask_of(w0), torch.rand(w0.shape, generator=gen)

    def autograd_fwd_bwd() -> None:
        h = torch.relu(F.linear(xb, w0, layers[0].bias))
        loss = F.cross_entropy(F.linear(h, w1, layers[1].bias), yb)
        model.zero_grad(set_to_none=True)
        loss.backward()

    def set_grads() -> None:
        for layer, (gw, gb) in zip(layers, loss_and_gradients(layers, xb, yb)[2], strict=True):
            layer.weight.grad, layer.bias.grad = gw, gb

    set_grads()
    rows = [
        ("batch gather x[idx] (new tensor)", _ms(lambda: x[idx])),
        (
            "batch gather into a buffer (train)",
            _ms(lambda: torch.index_select(x, 0, idx, out=buffer)),
        ),
        ("forward + backward, autograd (no TD)", _ms(autograd_fwd_bwd)),
        (
            "loss_and_gradients, closed form (no TD)",
            _ms(lambda: loss_and_gradients(layers, xb, yb)),
        ),
        (
            "loss_and_gradients with the TD factors",
            _ms(lambda: loss_and_gradients(layers, xb, yb, *factors)),
        ),
        ("SGD step, for-loop (torch default on CPU)", _ms(plain_opt.step)),
        ("SGD step, fused (train)", _ms(opt.step)),
        (
            "Regulariser.step_masks, both layers (train: fused kernels, W ⊙ M included)",
            _ms(lambda: reg.step_masks([w0, w1], 128, 5, masked)),
        ),
        (
            "DenseStep with the fused masks (train; no TD: see the closed form above)",
            _ms(lambda: dense(xb, yb, *fused)),
        ),
        (
            "  kernels.targeted_keep 10×3072 (selection with hints, compare, keep, W ⊙ M)",
            _ms(
                lambda: kernels.targeted_keep(
                    w0n,
                    k=2304,
                    draws=u.numpy(),
                    alpha=ALPHA,
                    state=hints,
                    keep=keep,
                    masked=masked[0],
                )
            ),
        ),  # fmt: skip
        (
            "Regulariser.step_factors, both layers (0/1 float factors)",
            _ms(lambda: reg.step_factors([w0, w1], 128, 5)),
        ),
        ("  weight_factor 10×3072", _ms(lambda: reg.weight_factor(0, w0, 5))),
        ("  weight_factor 10×10", _ms(lambda: reg.weight_factor(1, w1, 5))),
        ("  targeted_weight_mask 10×3072", _ms(lambda: mask_of(w0))),
        (
            "    threshold: numpy.partition of the magnitudes as int32 bits (numpy path)",
            _ms(lambda: np.partition(bits, 2304, 1)),
        ),
        (
            "    threshold: numpy.partition of the float32 magnitudes",
            _ms(lambda: np.partition(mag.numpy(), 2304, 1)),
        ),
        ("    threshold: torch.kthvalue", _ms(lambda: torch.kthvalue(mag, 2305, 1))),
        (
            "  torch.rand 10×3072 (the seeded draw)",
            _ms(lambda: torch.rand(w0.shape, generator=gen)),
        ),
        ("  keep factor from t and u, numpy (numpy path)", _ms(lambda: keep_factor(u, ALPHA, t))),
        (
            "  keep factor from t and u, torch ops ~(t & (u < α)).float()",
            _ms(lambda: (~(t & (u < ALPHA))).float()),
        ),
    ]
    lines = ["| piece of a step | µs |", "|---|---:|"]
    lines += [f"| {name} | {ms * 1e3:.1f} |" for name, ms in rows]
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
    names = [*VARIANTS, *NUMPY_PATH, AUTOGRAD_TD, DATALOADER]
    times: dict[str, list[float]] = {n: [] for n in names}
    # warm-up (allocator, first-call overheads), not recorded
    td_epoch(VARIANTS["targeted-weight"], (x[:2048], y[:2048]), 0)
    dataloader_epoch((x[:2048], y[:2048]), 0)
    for rep in range(args.repeats):
        for name in names:
            if name == DATALOADER:
                times[name].append(dataloader_epoch(data, rep))
            elif name == AUTOGRAD_TD:
                times[name].append(autograd_td_epoch(data, rep))
            elif name in NUMPY_PATH:
                reg = VARIANTS[NUMPY_PATH[name]]
                times[name].append(td_epoch(reg, data, rep, fused=False))
            else:
                times[name].append(td_epoch(VARIANTS[name], data, rep))
        print(
            f"repeat {rep + 1}/{args.repeats}: "
            + ", ".join(f"{n} {times[n][-1]:.3f}s" for n in names),
            file=sys.stderr,
        )

    med = {n: statistics.median(t) for n, t in times.items()}
    base, dl = med["none"], med[DATALOADER]
    # medians of the per-repetition ratios (the variants of a repetition ran back to back)
    paired = {
        n: statistics.median(a / b for a, b in zip(times[n], times["none"], strict=True))
        for n in names
    }
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s), "
        f"python {platform.python_version()}, {platform.machine()}; "
        f"{x.shape[0]} images, batch 128, {args.repeats} interleaved epochs per variant; "
        f"{os.cpu_count()} CPUs, 1-min load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after"
    )
    print()
    print(
        "| variant | median s/epoch | fastest s/epoch | × none (median of per-repetition "
        "ratios) | × DataLoader |"
    )
    print("|---|---:|---:|---:|---:|")
    for n in names:
        print(f"| {n} | {med[n]:.3f} | {min(times[n]):.3f} | {paired[n]:.2f} | {med[n] / dl:.2f} |")
    print()
    tw, tu = paired["targeted-weight"], paired["targeted-unit"]
    print(
        f"issue #23: targeted-weight/none = {tw:.2f}, targeted-unit/none = {tu:.2f} (goal ≤ 1.3: "
        f"{'met' if max(tw, tu) <= 1.3 else 'NOT met'}); without the kernels "
        f"{paired['targeted-weight, numpy path (no kernels)']:.2f} and "
        f"{paired['targeted-unit, numpy path (no kernels)']:.2f}"
    )
    td = med["targeted-weight"]
    print(
        f"TD/none = {td / base:.2f} (goal ≤ 1.5: {'met' if td / base <= 1.5 else 'NOT met'}); "
        f"none/DataLoader = {base / dl:.2f}; TD/DataLoader = {td / dl:.2f} "
        f"(goal < 1: {'met' if td < dl else 'NOT met'}); closed form vs autograd with TD: "
        f"{med[AUTOGRAD_TD] / td:.2f}× faster"
    )
    if args.profile:
        print()
        print(profile_step(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
