"""A Hessian-vector product of a ResNet-20 against a gradient, same process, same images (issue 21).

The goal: one ``H @ v`` of the any-model curvature operator (``HessianOperator``, torch.func
forward-over-reverse backend) over 1,000 CIFAR-10 holdout images costs at most 3× one gradient of
the mean cross-entropy over the same images.

The network is He et al.'s CIFAR ResNet-20 shape in the project's pre-activation form
(``PreActResNet((3, 3, 3), (16, 32, 64), init_kernel=3)``: 3 stages of 3 basic units, 16/32/64
filters, BatchNorm in eval mode, P ≈ 0.27 M), seeded weights, float32, one thread. Timed (best of
``--repeats`` after a warm-up), each over the same images in the same chunks:

* ``gradient``: ``torch.autograd.grad`` of the mean loss (the operator's own ``gradient()`` too);
* ``H @ v``: ``HessianOperator(model, data) @ v`` (built once);
* ``H @ V``: the same with ``--columns`` vectors in one pass;
* ``double backward``: PyTorch's HVP through ``create_graph=True`` (the textbook peer).

Errors of ``H @ v`` are relative to the double-backward HVP (float64 would need a float64 copy of
the whole graph; the two float32 paths agree to float32 rounding).

Usage (not a test; prints a table)::

    OMP_NUM_THREADS=1 TD_ANALYSIS_DATA=../shared/data python benchmarks/resnet_hvp_speed.py
    python benchmarks/resnet_hvp_speed.py --images 200 --repeats 2   # a quick look
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from td_analysis.curvature import HessianOperator
from td_analysis.data import load_dataset
from td_analysis.nets.resnet import PreActResNet


def best_of(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--chunk", type=int, default=250, help="images per pass (all paths)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--columns", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    x, y = load_dataset("cifar10", "holdout")
    x, y = x[: args.images].view(-1, 3, 32, 32).contiguous(), y[: args.images]
    model = PreActResNet((3, 3, 3), (16, 32, 64), init_kernel=3).eval()
    params = [p for p in model.parameters() if p.requires_grad]
    num = sum(p.numel() for p in params)
    chunks = [(x[i : i + args.chunk], y[i : i + args.chunk]) for i in range(0, len(y), args.chunk)]
    n = len(y)

    def gradient() -> list[torch.Tensor]:
        total = [torch.zeros_like(p) for p in params]
        for xc, yc in chunks:
            loss = F.cross_entropy(model(xc), yc, reduction="sum") / n
            for t, g in zip(total, torch.autograd.grad(loss, params), strict=True):
                t.add_(g)
        return total

    op = HessianOperator(model, chunks, chunk_size=args.chunk)
    v = torch.randn(num)
    V = torch.randn(num, args.columns)

    def double_backward() -> torch.Tensor:
        out = torch.zeros(num)
        vs = torch.split(v, [p.numel() for p in params])
        for xc, yc in chunks:
            loss = F.cross_entropy(model(xc), yc, reduction="sum") / n
            g = torch.autograd.grad(loss, params, create_graph=True)
            dot = sum((gi * vi.view_as(gi)).sum() for gi, vi in zip(g, vs, strict=True))
            out += torch.cat([h.reshape(-1) for h in torch.autograd.grad(dot, params)])
        return out

    ref = double_backward()
    hv = op @ v
    err = float((hv - ref).norm() / ref.norm())

    t_grad = best_of(gradient, args.repeats)
    t_opgrad = best_of(op.gradient, args.repeats)
    t_hv = best_of(lambda: op @ v, args.repeats)
    t_hV = best_of(lambda: op @ V, args.repeats)
    t_db = best_of(double_backward, args.repeats)

    print(f"ResNet-20 (pre-activation), P = {num:,}, N = {n:,} CIFAR-10 holdout images, ")
    print(f"chunks of {args.chunk}, {torch.get_num_threads()} thread(s), torch {torch.__version__}")
    print()
    print("| path | seconds | × gradient |")
    print("|---|---:|---:|")
    rows = [
        ("gradient (autograd.grad)", t_grad),
        ("operator.gradient()", t_opgrad),
        ("H @ v (HessianOperator)", t_hv),
        (f"H @ V, {args.columns} columns", t_hV),
        ("double-backward HVP (peer)", t_db),
    ]
    for name, t in rows:
        print(f"| {name} | {t:.2f} | {t / t_grad:.2f} |")
    print()
    print(f"H @ v relative to the double-backward HVP: {err:.1e}")


if __name__ == "__main__":
    main()
