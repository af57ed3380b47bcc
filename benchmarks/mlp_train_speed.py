"""Seconds per training epoch of the fashion-mlp task, against the GEMM rate of this machine.

Times ``td_analysis.training.loop.train`` on the ``fashion-mlp`` task (784 → 1000 → 1000 → 500 →
200 → 10 ReLU with biases, float32, batch 128, Adam lr 1e-3, one intra-op thread) for

* ``none`` (the plain MLP);
* ``targeted-weight`` and ``targeted-unit`` γ = 0.5, α = 0.5 on the four hidden layers with the
  task's ``"bits"`` draws;
* ``targeted-weight`` with ``"uniform"`` draws (one ``torch.rand`` float per weight);
* ``targeted-weight`` and ``targeted-unit`` on the numpy path (``TD_ANALYSIS_FUSED_KERNELS=0``: no
  fused C kernels, the code before issue #23; bit-identical results);

next to two peers in the same process:

* **GEMM**: only the matrix products of an epoch, ``torch.mm`` of the same shapes into
  preallocated outputs (per step: ``x W_lᵀ`` for every layer, ``g_lᵀ a_l`` for every layer and
  ``g_l W_l`` for every layer but the first): the rate that a training epoch cannot beat;
* the **textbook loop**: ``DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True)``,
  ``nn.Sequential(Linear, ReLU, …)``, ``F.cross_entropy``, ``loss.backward()``,
  ``torch.optim.Adam`` (torch's default implementation).

The variants run one epoch each per repetition, interleaved, so that load changes on a shared
machine hit all of them alike; the table reports the median and fastest seconds per epoch, the
share of the GEMM rate (GEMM time / epoch time: the epoch's useful flops per second over the
GEMM rate) and the ratios to the plain epoch (the median over repetitions of each repetition's
ratio).  ``train``'s time is its own per-epoch timer (the
epoch loop: no data loading, model building or evaluation).

Usage::

    TD_ANALYSIS_DATA=/path/to/data python benchmarks/mlp_train_speed.py [--repeats 3]
        [--images 48000] [--seed-protocol]

``--seed-protocol`` also times one epoch of the seed's protocol (batch 32) for the plain and the
targeted networks and extrapolates to its 100 epochs.
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

from td_analysis.training.loop import load_data, train  # noqa: E402
from td_analysis.training.tasks import get_task  # noqa: E402
from td_analysis.utils import kernels  # noqa: E402

TASK = get_task("fashion-mlp")
GEMM = "GEMM only (torch.mm, same shapes)"
GEMM_ADAM = "GEMM + torch's fused Adam (floor of an Adam loop)"
TEXTBOOK = "textbook loop (DataLoader, autograd, Adam)"
VARIANTS = {
    "none": TASK.regulariser("none"),
    "targeted-weight": TASK.regulariser("targeted-weight"),
    "targeted-unit": TASK.regulariser("targeted-unit"),
    "targeted-weight, uniform draws": TASK.regulariser("targeted-weight").__class__(
        **{**TASK.regulariser("targeted-weight").to_dict(), "draws": "uniform"}
    ),
}
#: the same regularisers without the fused C kernels (``TD_ANALYSIS_FUSED_KERNELS=0``: numpy path)
NUMPY_PATH = {
    "targeted-weight, numpy path (no kernels)": "targeted-weight",
    "targeted-unit, numpy path (no kernels)": "targeted-unit",
}


def step_flops(batch: int) -> int:
    """Multiply-add flops (2 per MAC) of one step's matrix products."""
    widths = (TASK.in_features, *TASK.hidden, TASK.num_classes)
    macs = 0
    for l, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        macs += batch * a * b * (3 if l > 0 else 2)
    return 2 * macs


def gemm_epoch(x: torch.Tensor, batch: int, adam: bool = False) -> float:
    """Only the products of an epoch (forward, weight gradients, back-propagated errors);
    with ``adam`` also torch's fused Adam update of the weights from those gradients after every
    step (the floor of any loop that trains with torch's Adam: products + optimiser)."""
    widths = (TASK.in_features, *TASK.hidden, TASK.num_classes)
    ws = [torch.randn(b, a) * 0.03 for a, b in zip(widths[:-1], widths[1:], strict=True)]
    z = [torch.empty(batch, w.shape[0]) for w in ws]
    gw = [torch.empty_like(w) for w in ws]
    params: list[nn.Parameter] = []
    for l, w in enumerate(ws):
        weight, bias = nn.Parameter(w), nn.Parameter(torch.zeros(w.shape[0]))
        weight.grad, bias.grad = gw[l], torch.zeros_like(bias)  # the products write gw
        params += [weight, bias]
    ws = params[::2]
    opt = torch.optim.Adam(params, lr=TASK.lr, fused=True) if adam else None
    ge = [torch.empty(batch, w.shape[1]) for w in ws]
    n = x.shape[0]
    ws = [w.detach() for w in ws]  # the same memory, outside autograd (out= products)
    t0 = time.perf_counter()
    for start in range(0, n - batch + 1, batch):
        h = x[start : start + batch]
        acts = []
        for l, w in enumerate(ws):
            acts.append(h)
            h = torch.mm(h, w.T, out=z[l])
        g = h
        for l in range(len(ws) - 1, -1, -1):
            torch.mm(g.T, acts[l], out=gw[l])
            if l > 0:
                g = torch.mm(g, ws[l], out=ge[l])
        if opt is not None:
            opt.step()
    elapsed = time.perf_counter() - t0
    return elapsed * n / (n - n % batch)  # scaled to the whole epoch (a partial last batch)


def train_epoch(reg, data, seed: int, batch: int = 128, fused: bool = True) -> float:
    """One epoch of the project's ``train`` on the task; its own epoch timer.  ``fused=False``
    switches the compiled kernels off for this epoch (``TD_ANALYSIS_FUSED_KERNELS=0``)."""
    cfg = TASK.config(regulariser=reg, epochs=1, seed=seed, eval_split="", batch_size=batch)
    before = os.environ.get(kernels.ENV_SWITCH)
    if not fused:
        os.environ[kernels.ENV_SWITCH] = "0"
    try:
        return train(cfg, train_data=data, progress=False).history[0]["seconds"]
    finally:
        if before is None:
            os.environ.pop(kernels.ENV_SWITCH, None)
        else:
            os.environ[kernels.ENV_SWITCH] = before


def textbook_epoch(data, seed: int) -> float:
    """The usual PyTorch loop over a DataLoader with autograd and torch's Adam."""
    x, y = data
    torch.manual_seed(seed)
    widths = (TASK.in_features, *TASK.hidden, TASK.num_classes)
    mods: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        mods += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*mods[:-1])
    opt = torch.optim.Adam(model.parameters(), lr=TASK.lr)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=128, shuffle=True
    )
    t0 = time.perf_counter()
    for xb, yb in loader:
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="epochs per variant (default 3)")
    parser.add_argument(
        "--images", type=int, default=None, help="first N training images (default: all 48,000)"
    )
    parser.add_argument("--data-dir", default=None, help="default: $TD_ANALYSIS_DATA")
    parser.add_argument(
        "--seed-protocol", action="store_true", help="also time an epoch at batch 32"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    x, y = load_data(TASK.config(), "train", root=args.data_dir)
    if args.images:
        x, y = x[: args.images], y[: args.images]
    data = (x, y)
    names = [GEMM, GEMM_ADAM, *VARIANTS, *NUMPY_PATH, TEXTBOOK]
    times: dict[str, list[float]] = {n: [] for n in names}
    warm = (x[:2048], y[:2048])
    for reg in VARIANTS.values():  # warm-up (allocator, first calls), not recorded
        train_epoch(reg, warm, 0)
    textbook_epoch(warm, 0)
    gemm_epoch(warm[0], 128)
    gemm_epoch(warm[0], 128, adam=True)
    for rep in range(args.repeats):
        for name in names:
            if name in (GEMM, GEMM_ADAM):
                times[name].append(gemm_epoch(x, 128, adam=name == GEMM_ADAM))
            elif name == TEXTBOOK:
                times[name].append(textbook_epoch(data, rep))
            elif name in NUMPY_PATH:
                reg = VARIANTS[NUMPY_PATH[name]]
                times[name].append(train_epoch(reg, data, rep, fused=False))
            else:
                times[name].append(train_epoch(VARIANTS[name], data, rep))
        print(
            f"repeat {rep + 1}/{args.repeats}: "
            + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in names),
            file=sys.stderr,
        )
    seed_epochs: dict[str, float] = {}
    if args.seed_protocol:
        for name in ("none", "targeted-weight", "targeted-unit"):
            seed_epochs[name] = train_epoch(VARIANTS[name], data, 0, batch=32)

    med = {n: statistics.median(t) for n, t in times.items()}
    # the goal's ratios: medians of the per-repetition ratios (each repetition's variants ran
    # back to back, so a load change hits both sides of a ratio alike)
    paired = {
        n: statistics.median(a / b for a, b in zip(times[n], times["none"], strict=True))
        for n in names
    }
    steps = -(-x.shape[0] // 128)
    gemm_rate = step_flops(128) * (x.shape[0] / 128) / med[GEMM] / 1e9
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread, python "
        f"{platform.python_version()}, {platform.machine()}; fashion-mlp "
        f"{TASK.in_features}-{'-'.join(map(str, TASK.hidden))}-{TASK.num_classes}, "
        f"{x.shape[0]} images, batch 128 ({steps} steps), float32, {args.repeats} interleaved "
        f"epochs per variant; {os.cpu_count()} CPUs, 1-min load average {load_before:.1f} "
        f"before, {os.getloadavg()[0]:.1f} after; GEMM rate {gemm_rate:.1f} GFLOP/s"
    )
    print()
    print(
        "| variant | median s/epoch | fastest s/epoch | % of GEMM rate | × none "
        "(median of per-repetition ratios) |"
    )
    print("|---|---:|---:|---:|---:|")
    for n in names:
        print(
            f"| {n} | {med[n]:.2f} | {min(times[n]):.2f} | {100 * med[GEMM] / med[n]:.0f}% | "
            f"{paired[n]:.2f} |"
        )
    print()
    plain = med[GEMM] / med["none"]
    td, unit = paired["targeted-weight"], paired["targeted-unit"]
    print(
        f"plain epoch at {plain:.0%} of the GEMM rate (goal ≥ 80%: "
        f"{'met' if plain >= 0.8 else 'NOT met'}); textbook loop at "
        f"{med[GEMM] / med[TEXTBOOK]:.0%}; products + Adam alone at "
        f"{med[GEMM] / med[GEMM_ADAM]:.0%}; targeted-weight/none = {td:.2f}, targeted-unit/none "
        f"= {unit:.2f} (goal ≤ 1.3: {'met' if max(td, unit) <= 1.3 else 'NOT met'})"
    )
    if seed_epochs:
        scale = 48000 / x.shape[0]
        total = 0.0
        for name, sec in seed_epochs.items():
            minutes = 100 * sec * scale / 60
            total += 4 * minutes  # bias on/off × 2 seeds of the default protocol's grid
            print(
                f"seed protocol (batch 32, 100 epochs of the 48,000-image split), {name}: "
                f"{sec:.1f} s for this epoch of {x.shape[0]} images ≈ {minutes:.0f} min per "
                "network (extrapolated)"
            )
        print(
            f"the default grid (3 regularisers × bias on/off × 2 seeds) under the seed protocol ≈ "
            f"{total / 60:.1f} h of one core, ≈ {total / 120:.1f} h on 2 processes (extrapolated)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
