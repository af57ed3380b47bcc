"""Targeted dropout's per-step mask work on the fashion-mlp weights: the options side by side.

For the four targeted layers of the fashion-mlp task (784 → 1000 → 1000 → 500 → 200, 2.38 M
weights, γ = 0.5, α = 0.5, ``"bits"`` draws), inside a real training run (``DenseStep`` and
torch's fused Adam on Fashion-MNIST, batch 128, the masks of the fused kernels), every step times
each option on the *same* current weights and draws:

* **numpy path** (the code before the kernels, ``TD_ANALYSIS_FUSED_KERNELS=0``): per-row
  ``ndarray.partition`` of the magnitudes' bits, the mask and the 0/1 factor in numpy, then
  ``W ⊙ M`` with ``torch.mul`` into a buffer;
* **torch.compile**: the same numpy selection, then the comparison, the mask and ``W ⊙ M`` as
  one function compiled by inductor (CPU, ``dynamic=False``; compile time reported);
* **C kernel, full selection**: ``kernels.targeted_keep`` without hints (every row selected
  from scratch: a sample band, else quickselect);
* **C kernel, incremental selection**: the same with the last step's thresholds as hints (what
  ``train`` runs).

Each option's keep masks are checked equal to the numpy path's at every step (exactness).  The
draws (the same for all: torch's generator replayed in C, ``kernels.random_words_``; torch's own
``Tensor.random_`` of as many words next to it) and the gradient mask are timed as separate rows.
Reported: median milliseconds per step over the steps after the first (``--steps``).

Usage::

    TD_ANALYSIS_DATA=/path/to/data python benchmarks/td_mask_options.py [--steps 60]
        [--no-compile]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from td_analysis.nn.dropout import uniform_bits  # noqa: E402
from td_analysis.training.loop import DenseStep, _optimizer, build_model, load_data  # noqa: E402
from td_analysis.training.tasks import get_task  # noqa: E402
from td_analysis.utils import kernels  # noqa: E402

TASK = get_task("fashion-mlp")
GAMMA, ALPHA = TASK.gamma, TASK.alpha


def numpy_path(w: np.ndarray, k: int, draws: np.ndarray, t, buf: dict) -> np.ndarray:
    """Today's numpy code (``Regulariser._bits_factor``), then ``torch.mul`` for ``W ⊙ M``."""
    if "mag" not in buf:
        buf.update(
            mag=np.empty(w.shape, np.int32),
            part=np.empty(w.shape, np.int32),
            keep=np.empty(w.shape, bool),
            factor=np.empty(w.shape, np.float32),
            masked=torch.empty(w.shape),
        )
    mag, part, keep = buf["mag"], buf["part"], buf["keep"]
    np.bitwise_and(w.view(np.int32), np.int32(0x7FFFFFFF), out=mag)
    np.copyto(part, mag)
    part.partition(k, axis=1)
    untargeted = mag >= part[:, k : k + 1]
    np.greater_equal(draws, t, out=keep)
    np.logical_or(keep, untargeted, out=keep)
    np.copyto(buf["factor"], keep)
    torch.mul(torch.from_numpy(w), torch.from_numpy(buf["factor"]), out=buf["masked"])
    return keep


def compiled_mask():
    def mask(w: torch.Tensor, tau: torch.Tensor, draws: torch.Tensor, t: int):
        drop = ((w.view(torch.int32) & 0x7FFFFFFF) < tau) & (draws < t)
        return (~drop).to(torch.uint8), torch.where(drop, w * 0.0, w)

    return torch.compile(mask, dynamic=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps (default 60)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile option")
    parser.add_argument("--data-dir", default=None, help="default: $TD_ANALYSIS_DATA")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if not kernels.available():
        raise SystemExit("error: the compiled kernels are not available (no C compiler)")
    load_before = os.getloadavg()[0]
    x, y = load_data(TASK.config(), "train", root=args.data_dir)
    cfg = TASK.config(regulariser=TASK.regulariser("targeted-weight"))
    model = build_model(cfg)
    layers = list(model.layers)
    targeted = layers[:4]
    step_fn = DenseStep(layers, 128)
    opt = _optimizer(cfg, list(model.parameters()))
    gen = torch.Generator().manual_seed(0)
    raw = torch.empty(2_400_000 // 8 + 8, dtype=torch.int64)
    raw_torch, gen_torch = torch.empty_like(raw), torch.Generator().manual_seed(1)
    names = ["numpy path", "C kernel, full selection", "C kernel, incremental selection"]
    compile_s = None
    if not args.no_compile:
        names.insert(1, "torch.compile mask pass (+ numpy selection)")
        cmask = compiled_mask()
    times: dict[str, list[float]] = {n: [] for n in names}
    times["draws (torch's generator replayed in C, all options)"] = []
    times["draws by torch's own Tensor.random_ (not used)"] = []
    times["gradient mask (C kernel)"] = []
    bufs = [dict() for _ in targeted]
    states = [dict() for _ in targeted]
    keeps = [np.empty(tuple(la.weight.shape), np.uint8) for la in targeted]
    masked = [torch.empty_like(la.weight) for la in targeted]
    perm = torch.randperm(x.shape[0], generator=gen)
    for s in range(args.steps):
        idx = perm[s * 128 : (s + 1) * 128]
        per = dict.fromkeys(times, 0.0)
        for l, layer in enumerate(targeted):
            w = layer.weight.detach().numpy()
            k = int(GAMMA * w.shape[1])
            t0 = time.perf_counter()
            draws, t = uniform_bits(w.shape, ALPHA, gen, raw)
            per["draws (torch's generator replayed in C, all options)"] += time.perf_counter() - t0
            t0 = time.perf_counter()  # torch's own draw of as many words, for comparison
            raw_torch[: -(-w.size // 8)].random_(-(2**63), None, generator=gen_torch)
            per["draws by torch's own Tensor.random_ (not used)"] += time.perf_counter() - t0
            draws = draws.copy()  # the options below all read the same draws
            t0 = time.perf_counter()
            ref = numpy_path(w, k, draws, t, bufs[l])
            per["numpy path"] += time.perf_counter() - t0
            if not args.no_compile:
                name = names[1]
                if compile_s is None:
                    c0 = time.perf_counter()
                    cmask(layer.weight.detach(), torch.zeros(w.shape[0], 1, dtype=torch.int32),
                          torch.from_numpy(draws), int(t))  # fmt: skip
                    compile_s = time.perf_counter() - c0
                t0 = time.perf_counter()
                part = np.partition(w.view(np.int32) & np.int32(0x7FFFFFFF), k, axis=1)
                tau = torch.from_numpy(np.ascontiguousarray(part[:, k : k + 1]))
                keep_c, _ = cmask(layer.weight.detach(), tau, torch.from_numpy(draws), int(t))
                per[name] += time.perf_counter() - t0
                if not np.array_equal(keep_c.numpy().astype(bool), ref):
                    raise AssertionError(f"{name}: masks differ at step {s}")
            for name, state in (
                ("C kernel, full selection", None),
                ("C kernel, incremental selection", states[l]),
            ):
                t0 = time.perf_counter()
                kernels.targeted_keep(
                    w, k=k, draws=draws, threshold=t, state=state, keep=keeps[l], masked=masked[l]
                )
                per[name] += time.perf_counter() - t0
                if not np.array_equal(keeps[l].astype(bool), ref):
                    raise AssertionError(f"{name}: masks differ at step {s}")
        # train on the incremental kernel's masks (the real training path)
        factors = [torch.from_numpy(kp) for kp in keeps] + [None]
        step_fn(x[idx], y[idx], factors, None, [*masked, None])
        t0 = time.perf_counter()
        for l, layer in enumerate(targeted):
            kernels.mask_gradient_(layer.weight.grad, factors[l])
        per["gradient mask (C kernel)"] = time.perf_counter() - t0  # a second time: timing only
        opt.step()
        if s > 0:
            for name, v in per.items():
                times[name].append(v)
    print(
        f"torch {torch.__version__}, 1 intra-op thread, python {platform.python_version()}, "
        f"{platform.machine()}; fashion-mlp targeted layers (2.38 M weights), γ = {GAMMA}, "
        f"α = {ALPHA}, bits draws; {args.steps} training steps (Adam, batch 128); "
        f"{os.cpu_count()} CPUs, 1-min load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after"
        + (f"; torch.compile took {compile_s:.1f} s to compile" if compile_s else "")
    )
    print()
    base = statistics.median(times["numpy path"])
    print("| per step (4 layers) | median ms | fastest ms | × numpy path |")
    print("|---|---:|---:|---:|")
    for name, v in times.items():
        med = statistics.median(v)
        print(f"| {name} | {med * 1e3:.2f} | {min(v) * 1e3:.2f} | {med / base:.2f} |")
    print()
    print("every option's masks equal the numpy path's at every step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
