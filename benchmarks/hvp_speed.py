"""Hessian-vector products: HessianOperator against its peers, same process, one thread.

Two networks (random weights and inputs, seeded; float32):

* the toy network 3072 → 10 → 10 (``get_task("toy").network()``, P = 30,840) at N = 2,000;
* the Fashion-MNIST MLP 784 → 1000 → 1000 → 500 → 200 → 10 (P ≈ 2.39 M) at N = 10,000.

Timed (best of ``--repeats``, after a warm-up): one ``H @ v`` of a ``HessianOperator`` built
once (closed-form R-operator; first product fills the forward cache, later ones reuse it; also
with ``cache_bytes=0``: the forward recomputed every product), ``H @ V`` with k = 16 columns,
the one-call ``curvature.hvp`` (builds an operator each call), PyTorch's plain double-backward
HVP (``autograd.grad`` of ⟨∇ℓ, v⟩ with ``create_graph=True``), ``torch.func`` forward-over-reverse
(``jvp`` of ``grad``), curvlinops' ``HessianLinearOperator @ v``, and one gradient
(``autograd.grad`` of the loss).  Errors are relative to the float64 double-backward HVP (toy) or
to our float64 operator (MLP; the float64 autograd graph of N = 10,000 would need ~3 GB).

Usage (not a test; prints a table):

    python benchmarks/hvp_speed.py            # both networks
    python benchmarks/hvp_speed.py --quick    # fewer repeats, N = 2,000 for the MLP
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp

from td_analysis import curvature
from td_analysis.curvature import HessianOperator, top_eigenpairs
from td_analysis.training.tasks import get_task


def best_of(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def double_backward(model: nn.Module, x, y, v: torch.Tensor) -> torch.Tensor:
    params = list(model.parameters())
    loss = F.cross_entropy(model(x), y)
    g = torch.autograd.grad(loss, params, create_graph=True)
    vs = torch.split(v, [p.numel() for p in params])
    dot = sum((gi * vi.view_as(gi)).sum() for gi, vi in zip(g, vs, strict=True))
    return torch.cat([h.reshape(-1) for h in torch.autograd.grad(dot, params)])


def plain_gradient(model: nn.Module, x, y) -> torch.Tensor:
    params = list(model.parameters())
    g = torch.autograd.grad(F.cross_entropy(model(x), y), params)
    return torch.cat([t.reshape(-1) for t in g])


def func_hvp(model: nn.Module, x, y) -> Callable[[torch.Tensor], torch.Tensor]:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(th):
        parts = torch.split(th, [s.numel() for s in shapes])
        params = {n: t.view(s) for n, t, s in zip(names, parts, shapes, strict=True)}
        return F.cross_entropy(functional_call(model, params, (x,)), y)

    return lambda v: jvp(grad(loss), (theta,), (v,))[1]


def curvlinops_op(model: nn.Module, x, y):
    from curvlinops import HessianLinearOperator

    op = HessianLinearOperator(
        model, nn.CrossEntropyLoss(), list(model.parameters()), [(x, y)], check_deterministic=False
    )
    return lambda v: op @ v


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def run(name: str, model: nn.Module, n: int, repeats: int, peers: bool, ref64: bool) -> list:
    torch.manual_seed(0)
    features = model.layers[0].in_features
    x = torch.randn(n, features)
    y = torch.randint(0, model.layers[-1].out_features, (n,))
    rows = []
    rss0 = rss_peak_mb()
    t = time.perf_counter()
    H = HessianOperator(model, (x, y))
    build = time.perf_counter() - t
    P = H.num_params
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(P, generator=gen)
    V = torch.randn(P, 16, generator=gen)
    t = time.perf_counter()
    hv = H @ v
    first = time.perf_counter() - t
    t_op = best_of(lambda: H @ v, repeats)
    rss_op = rss_peak_mb() - rss0
    H0 = HessianOperator(model, (x, y), cache_bytes=0)
    t_nocache = best_of(lambda: H0 @ v, repeats)
    t_block = best_of(lambda: H @ V, max(1, repeats // 2))
    t_block0 = best_of(lambda: H0 @ V, max(1, repeats // 2))
    t_grad = best_of(lambda: plain_gradient(model, x, y), repeats)
    t_gemm = first_layer_block_gemms(x, model.layers[0].out_features, 16, repeats)
    if ref64:
        m64 = _copy64(model)
        reference = double_backward(m64, x.double(), y, v.double())
    else:
        reference = HessianOperator(model, (x, y), dtype=torch.float64) @ v.double()
    rows.append(("HessianOperator H @ v (cached forward)", t_op, rel(hv, reference)))
    rows.append(("HessianOperator H @ v, cache_bytes=0", t_nocache, rel(H0 @ v, reference)))
    rows.append(("HessianOperator H @ V, k = 16 (cached)", t_block, None))
    rows.append(("HessianOperator H @ V, k = 16, cache_bytes=0", t_block0, None))
    t_fn = best_of(lambda: curvature.hvp(model, x, y, v), max(1, repeats // 2))
    rows.append(("curvature.hvp (builds the operator each call)", t_fn, None))
    rows.append(("one gradient, autograd.grad", t_grad, None))
    rows.append(("first-layer GEMMs of a k = 16 block alone (x Ẇᵀ, ėᵀx)", t_gemm, None))
    if peers:
        rows.append(
            (
                "double-backward autograd HVP",
                best_of(lambda: double_backward(model, x, y, v), repeats),
                rel(double_backward(model, x, y, v), reference),
            )
        )
        fh = func_hvp(model, x, y)
        rows.append(
            ("torch.func jvp(grad) HVP", best_of(lambda: fh(v), repeats), rel(fh(v), reference))
        )
        cl = curvlinops_op(model, x, y)
        rows.append(
            (
                "curvlinops HessianLinearOperator @ v",
                best_of(lambda: cl(v), repeats),
                rel(cl(v), reference),
            )
        )
    print(f"\n### {name}: P = {P:,}, N = {n:,}, float32\n")
    print(
        f"operator built in {build:.3f} s; first H @ v (fills the cache) {first:.3f} s; "
        f"peak RSS grew {rss_op:.0f} MB during the operator's products"
    )
    print("\n| variant | s | × one H @ v (cached) | × double-backward | rel. error |")
    print("|---|---:|---:|---:|---:|")
    dbl = next((t for label, t, _ in rows if label.startswith("double-backward")), None)
    for label, t, err in rows:
        ratio_dbl = f"{t / dbl:.2f}" if dbl else "–"
        err_s = "–" if err is None else f"{err:.0e}"
        print(f"| {label} | {t:.4f} | {t / t_op:.2f} | {ratio_dbl} | {err_s} |")
    print(
        f"\nH @ V (k = 16) / H @ v: {t_block / t_op:.2f} cached, {t_block0 / t_nocache:.2f} "
        f"uncached; H @ v / gradient: {t_op / t_grad:.2f} cached, {t_nocache / t_grad:.2f} "
        "uncached"
    )
    return rows


def first_layer_block_gemms(x: torch.Tensor, width: int, k: int, repeats: int) -> float:
    """Seconds of the two first-layer products of a (P, k) block, nothing else: the tangent
    inputs x Ẇᵀ (N × in times in × k·width) and the weight-gradient term ėᵀx (k·width × N
    times N × in), a floor under H @ V that no pass over the data avoids."""
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(x.shape[1], k * width, generator=gen)
    e = torch.randn(x.shape[0], k * width, generator=gen)
    out = torch.empty(k * width, x.shape[1])
    return best_of(lambda: (x @ w, torch.mm(e.mT, x, out=out)), repeats)


def _copy64(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).double()


def _dist_worker(rank: int, world: int, port: int, n: int, repeats: int, queue) -> None:
    import torch.distributed as dist

    from td_analysis.curvature import distributed

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.manual_seed(0)
        model = get_task("fashion-mlp").network()
        x, y = torch.randn(n, 784), torch.randint(0, 10, (n,))
        part = distributed.shard(n)
        H = HessianOperator(model, (x[part], y[part]), distributed=True)
        v = torch.randn(H.num_params, generator=torch.Generator().manual_seed(1))
        t = best_of(lambda: H @ v, repeats)
        t0 = best_of(
            lambda: HessianOperator(model, (x[part], y[part]), distributed=True, cache_bytes=0) @ v,
            1,
        )
        norm = float((H @ v).norm())  # collective: every rank calls it
        # top-5 eigenvalues: every rank runs the same Lanczos, its products all-reduced
        start = time.perf_counter()
        lam, _ = top_eigenpairs(H, 5, tol=1e-3, block_size=1)
        te = time.perf_counter() - start
        if rank == 0:
            queue.put((t, t0, norm, te, float(lam[0])))
    finally:
        dist.destroy_process_group()


def distributed_table(n: int, repeats: int, world: int) -> None:
    """One H @ v and the top-5 eigenvalues of the MLP, examples split over 1 … ``world`` gloo
    processes."""
    import socket

    import torch.multiprocessing as mp

    print(f"\n### Data-parallel H @ v, Fashion MLP, N = {n:,} (gloo, 127.0.0.1, 1 thread each)\n")
    print(
        "| processes | H @ v cached (s) | H @ v incl. building, cache_bytes=0 (s) | ‖Hv‖ "
        "| top-5 eigenvalues, tol 1e-3, b = 1 (s) | λ₁ |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for r in range(1, world + 1):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        procs = [
            ctx.Process(target=_dist_worker, args=(i, r, port, n, repeats, queue)) for i in range(r)
        ]
        for proc in procs:
            proc.start()
        t, t0, norm, te, lam1 = queue.get(timeout=3600)
        for proc in procs:
            proc.join()
        print(f"| {r} | {t:.3f} | {t0:.3f} | {norm:.6g} | {te:.1f} | {lam1:.6g} |")


def interleaved(n: int, rounds: int) -> None:
    """MLP: gradient, H @ v (cached / uncached) and double-backward timed round-robin.

    On a shared machine the load changes within seconds; interleaving the variants and keeping
    each one's fastest round makes their ratios comparable.
    """
    torch.manual_seed(0)
    model = get_task("fashion-mlp").network()
    x, y = torch.randn(n, 784), torch.randint(0, 10, (n,))
    H = HessianOperator(model, (x, y))
    H0 = HessianOperator(model, (x, y), cache_bytes=0)
    v = torch.randn(H.num_params, generator=torch.Generator().manual_seed(1))
    variants = {
        "one gradient, autograd.grad": lambda: plain_gradient(model, x, y),
        "HessianOperator H @ v (cached forward)": lambda: H @ v,
        "HessianOperator H @ v, cache_bytes=0": lambda: H0 @ v,
        "double-backward autograd HVP": lambda: double_backward(model, x, y, v),
    }
    for fn in variants.values():
        fn()  # warm-up (fills the cache)
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(rounds):
        for label, fn in variants.items():
            t = time.perf_counter()
            fn()
            best[label] = min(best[label], time.perf_counter() - t)
    g = best["one gradient, autograd.grad"]
    print(f"\n### Fashion MLP, N = {n:,}: interleaved, best of {rounds} rounds\n")
    print("| variant | s | × one gradient |")
    print("|---|---:|---:|")
    for label, t in best.items():
        print(f"| {label} | {t:.3f} | {t / g:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="3 repeats, MLP at N = 2,000")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--only", choices=["toy", "mlp", "distributed", "interleaved"], default=None)
    ap.add_argument("--processes", type=int, default=2, help="max processes, distributed table")
    args = ap.parse_args()
    torch.set_num_threads(1)
    repeats = 3 if args.quick else args.repeats
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread, python "
        f"{platform.python_version()}, {platform.machine()}"
    )
    torch.manual_seed(0)
    if args.only in (None, "toy"):
        run(
            "toy network 3072-10-10",
            get_task("toy").network(),
            2000,
            repeats,
            not args.no_peers,
            True,
        )
    if args.only in (None, "mlp"):
        torch.manual_seed(0)
        mlp = get_task("fashion-mlp").network()
        n = 2000 if args.quick else 10000
        run("Fashion MLP 784-1000-1000-500-200-10", mlp, n, repeats, not args.no_peers, False)
    if args.only in (None, "interleaved"):
        interleaved(2000 if args.quick else 10000, max(3, repeats))
    if args.only in (None, "distributed"):
        distributed_table(2000 if args.quick else 10000, repeats, args.processes)


if __name__ == "__main__":
    main()
