"""Full Hessian of the toy network (3072 → 10 → 10, P = 30,840) on real CIFAR-10: speed and memory.

Compares, at each N, the closed-form dense path of :func:`td_analysis.curvature.hessian` (full
matrix, really computed) with two peers timed on a block of columns and extrapolated linearly to
all P columns (their full P × P computation would take minutes to hours):

* torch.func: ``jacfwd(jacrev(loss))`` (what ``torch.func.hessian`` does) restricted to a column
  block,
* curvlinops: ``HessianLinearOperator @ E`` for a block E of basis vectors.

Also measures the machine's float32 GEMM rate in the same run (a ``3072 × N @ N × 30720`` product,
the shape of the dominant block), peak RSS against the 3.8 GB matrix, and a 256 × 256
``projected_hessian`` at N = 10,000.  Each dense measurement runs in a fresh child process so
its peak RSS is not polluted by the data set, the training or the peers.

Usage (not a test; heavy, run deliberately):

    TD_ANALYSIS_DATA=/work/shared/data python benchmarks/hessian_speed.py --sizes 500,1000,2000
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, jacfwd, jacrev

from td_analysis import curvature
from td_analysis.curvature import dense as dense_mod
from td_analysis.nets.models import DenseNet, flatten_params
from td_analysis.training.tasks import get_task

D, HIDDEN, K = 3072, 10, 10
P = D * HIDDEN + HIDDEN + HIDDEN * K + K  # 30,840
REPO = Path(__file__).resolve().parents[1]
SECTION = "## Hessian"


def rss_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def rss_now_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def dense_flops(n: int) -> float:
    """2 · N · D² · H(H+1)/2: the first-layer weight block (dominant), upper unit blocks.

    The nominal cost of the issue's formula; "effective" GFLOP/s divide it by the time.
    """
    return 2.0 * n * D * D * HIDDEN * (HIDDEN + 1) / 2


def executed_flops(n: int) -> float:
    """Flops the dense path really executes for the first-layer block (the dominant GEMMs).

    Each of the H(H+1)/2 upper unit blocks is symmetric, so only its upper triangle is computed,
    in row tiles of ``DIAG_TILE``: Σ_tiles rows·(D − first row) columns, N deep.
    """
    tile = dense_mod.DIAG_TILE
    per_block = sum(min(tile, D - t0) * (D - t0) for t0 in range(0, D, tile))
    return 2.0 * n * per_block * HIDDEN * (HIDDEN + 1) / 2


def gemm_rate(n: int, repeats: int = 3) -> float:
    """Best float32 GFLOP/s of ``(3072 × n) @ (n × 30720)`` into a preallocated output."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, D, generator=gen)
    g = torch.randn(n, D * HIDDEN, generator=gen)
    out = torch.empty(D, D * HIDDEN)
    torch.mm(x.T, g, out=out)  # warm up, touch the output
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(x.T, g, out=out)
        best = min(best, time.perf_counter() - t)
    return 2.0 * D * n * D * HIDDEN / best / 1e9


# ------------------------------------------------------------------------------------ data
def load_data() -> tuple[torch.Tensor, torch.Tensor, str]:
    """Standardized CIFAR-10 training images (float32 N × 3072) and labels."""
    try:
        from td_analysis.data import load_cifar10

        x, y = load_cifar10(split="train", preprocessing="standardize")
        return x.float().contiguous(), y.long(), "td_analysis.data.load_cifar10(split='train')"
    except Exception as exc:  # the loader is being written by a colleague: read a batch file
        root = os.environ.get("TD_ANALYSIS_DATA")
        if not root:
            raise SystemExit(
                "set TD_ANALYSIS_DATA to the folder holding cifar-10-batches-py"
            ) from exc
        path = Path(root) / "cifar-10-batches-py" / "data_batch_1"
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        data = batch.get("data", batch.get(b"data"))
        labels = batch.get("labels", batch.get(b"labels"))
        x = torch.from_numpy(np.asarray(data, dtype=np.float32) / 255.0).view(-1, 3, 1024)
        x = (x - x.mean(dim=(0, 2), keepdim=True)) / x.std(dim=(0, 2), keepdim=True)
        source = f"fallback: {path} (per-channel standardized; loader failed: {exc!r})"
        return x.reshape(-1, D).contiguous(), torch.tensor(labels, dtype=torch.long), source


def train(x: torch.Tensor, y: torch.Tensor, steps: int, seed: int) -> tuple[DenseNet, str]:
    """A few hundred SGD steps (batch 128, lr 0.01, momentum 0.9) from a seeded init."""
    torch.manual_seed(seed)
    model = get_task("toy").network()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (128,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    with torch.no_grad():
        logits = model(x[:5000])
        acc = (logits.argmax(1) == y[:5000]).float().mean().item()
        loss = F.cross_entropy(logits, y[:5000]).item()
    return model, f"{steps} SGD steps: loss {loss:.3f}, accuracy {acc:.1%} on 5,000 train images"


# ------------------------------------------------------------------------------------ child
def child(state_path: str, n: int, block: int, out_path: str) -> None:
    """Dense full Hessian at N = n in a clean process: cold (allocating) and warm (``out=``)."""
    saved = torch.load(state_path)
    model = get_task("toy").network()
    model.load_state_dict(saved["model"])
    x, y = saved["x"][:n].clone(), saved["y"][:n].clone()
    del saved
    rates = [gemm_rate(n)]
    base = rss_now_bytes()
    t = time.perf_counter()
    H = curvature.hessian(model, x, y, method="dense")
    cold = time.perf_counter() - t
    peak = rss_peak_bytes()
    t = time.perf_counter()
    curvature.hessian(model, x, y, method="dense", out=H)
    warm = time.perf_counter() - t
    torch.save(H[:, :block].clone(), out_path + ".block.pt")
    # Reference for the cold overhead: first touch of another, fresh P × P buffer (the VM backs
    # memory lazily, so fresh pages can cost far more than the arithmetic).
    t = time.perf_counter()
    probe = torch.empty_like(H).fill_(0.0)
    touch = time.perf_counter() - t
    del probe
    info = {
        "n": n,
        "cold_s": cold,
        "warm_s": warm,
        "touch_s": touch,
        "peak_rss": peak,
        "base_rss": base,
        "matrix_bytes": H.numel() * H.element_size(),
        "symmetric": bool(torch.equal(H[:2000, :2000], H[:2000, :2000].T)),
    }
    del H
    rates.append(gemm_rate(n))
    info["gemm_gflops"] = max(rates)
    info["gemm_gflops_all"] = rates
    Path(out_path).write_text(json.dumps(info))


# ------------------------------------------------------------------------------------ peers
def torch_func_block(model: DenseNet, x: torch.Tensor, y: torch.Tensor, block: int):
    """H[:, :block] as ``jacfwd(jacrev(loss))`` w.r.t. the first ``block`` coordinates of θ."""
    named = dict(model.named_parameters())
    names = list(named)
    shapes = [named[k].shape for k in names]
    sizes = [named[k].numel() for k in names]
    theta = flatten_params(model)

    def loss(th: torch.Tensor) -> torch.Tensor:
        params = {k: t.view(s) for k, t, s in zip(names, th.split(sizes), shapes, strict=True)}
        return F.cross_entropy(functional_call(model, params, (x,)), y)

    def grad_at(u: torch.Tensor) -> torch.Tensor:
        return jacrev(loss)(torch.cat([u, theta[block:]]))

    t = time.perf_counter()
    out = jacfwd(grad_at)(theta[:block])
    return out, time.perf_counter() - t


def curvlinops_block(model: DenseNet, x: torch.Tensor, y: torch.Tensor, block: int):
    from curvlinops import HessianLinearOperator

    op = HessianLinearOperator(
        model,
        torch.nn.CrossEntropyLoss(),
        [p for p in model.parameters() if p.requires_grad],
        [(x, y)],
        check_deterministic=False,
    )
    basis = torch.zeros(P, block)
    basis[torch.arange(block), torch.arange(block)] = 1.0
    t = time.perf_counter()
    out = op @ basis
    return out, time.perf_counter() - t


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


# ------------------------------------------------------------------------------------ report
def write_section(path: Path, body: str) -> None:
    """Replace (or append) the ``## Hessian`` section of BENCHMARKS.md, leaving others alone."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"{SECTION}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}[ \t]*\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="500,1000,2000", help="comma-separated N for the full H")
    ap.add_argument("--block", type=int, default=1024, help="peer column block (extrapolated)")
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--proj-n", type=int, default=10_000, help="N for projected_hessian")
    ap.add_argument("--proj-bins", type=int, default=256, help="B for projected_hessian")
    ap.add_argument("--no-peers", action="store_true", help="skip torch.func and curvlinops")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    ap.add_argument("--bench-file", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the raw measurements to this JSON file")
    ap.add_argument(
        "--child", nargs=4, metavar=("STATE", "N", "BLOCK", "OUT"), help=argparse.SUPPRESS
    )
    args = ap.parse_args(argv)
    if args.child:
        state, n, block, out = args.child
        child(state, int(n), int(block), out)
        return

    command = "python benchmarks/hessian_speed.py " + " ".join(argv or sys.argv[1:])
    sizes = [int(s) for s in args.sizes.split(",") if s]
    load_start = os.getloadavg()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cores {os.cpu_count()}")
    x_all, y_all, source = load_data()
    print(f"data: {source}: {tuple(x_all.shape)}")
    model, train_note = train(x_all, y_all, args.train_steps, args.seed)
    print(f"model: {train_note}")
    model.requires_grad_(True)
    n_max = max([*sizes, args.proj_n])
    x_all, y_all = x_all[:n_max].clone(), y_all[:n_max].clone()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        state_path = os.path.join(tmp, "state.pt")
        torch.save({"model": model.state_dict(), "x": x_all[: max(sizes)], "y": y_all}, state_path)
        for n in sizes:
            out_path = os.path.join(tmp, f"dense_{n}.json")
            cmd = [sys.executable, __file__, "--child", state_path, str(n), str(args.block)]
            subprocess.run([*cmd, out_path], check=True, cwd=REPO)
            info = json.loads(Path(out_path).read_text())
            ours = torch.load(out_path + ".block.pt")
            print(f"N={n}: dense cold {info['cold_s']:.2f}s warm {info['warm_s']:.2f}s", flush=True)
            x, y = x_all[:n], y_all[:n]
            for name, fn in (("torch.func", torch_func_block), ("curvlinops", curvlinops_block)):
                if args.no_peers:
                    continue
                blk, secs = fn(model, x, y, args.block)
                info[name] = {"block_s": secs, "full_s": secs * P / args.block}
                info[name]["rel_diff"] = rel_diff(ours, blk)
                print(f"  {name}: block {secs:.2f}s → {secs * P / args.block:.0f}s", flush=True)
                del blk
            rows.append(info)

    # projected Hessian: U = 256 magnitude-ordered bins of θ, indicator scaled by θ
    theta = flatten_params(model)
    order = theta.abs().argsort()
    U = torch.zeros(P, args.proj_bins)
    U[order, torch.arange(P) * args.proj_bins // P] = theta[order]
    xp, yp = x_all[: args.proj_n], y_all[: args.proj_n]
    proj = {}
    for method in ("dense", "autograd"):
        t = time.perf_counter()
        R = curvature.projected_hessian(model, xp, yp, U, method=method)
        proj[method] = time.perf_counter() - t
        proj[method + "_R"] = R
        print(
            f"projected_hessian {args.proj_bins}² at N={args.proj_n} ({method}): "
            f"{proj[method]:.2f}s",
            flush=True,
        )
    proj_diff = rel_diff(proj["dense_R"], proj["autograd_R"])
    load_end = os.getloadavg()

    if args.json:
        raw = {"rows": rows, "projected": {k: v for k, v in proj.items() if not k.endswith("_R")}}
        Path(args.json).write_text(json.dumps(raw, indent=1))
    body = report(rows, proj, proj_diff, args, command, source, train_note, load_start, load_end)
    print("\n" + body)
    if not args.no_write:
        write_section(Path(args.bench_file), body)
        print(f"\nwrote the {SECTION!r} section of {args.bench_file}")


def report(rows, proj, proj_diff, args, command, source, train_note, load_start, load_end) -> str:
    gb = 1e9
    lines = [
        f"Command: `TD_ANALYSIS_DATA=/work/shared/data {command.strip()}`",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores (a VM), "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), float32, shared with "
        f"other jobs (load average {load_start[0]:.1f} at start, {load_end[0]:.1f} at end: "
        "timings are noisy).",
        f"Model: `get_task('toy').network()` 3072→10→10, P = {P:,}; {train_note}. Data: "
        f"{source}; the first N "
        "images.",
        "",
        'Full Hessian (P × P, 3.80 GB in float32). *dense*: `hessian(method="dense")`, real '
        "full matrix; *cold* includes allocating and first-touching the 3.8 GB output, *warm* "
        "reuses it via `out=`. Peers are timed on the first "
        f"{args.block} columns and **extrapolated linearly** to all P columns. *Effective* "
        "GFLOP/s = the nominal 2·N·D²·H(H+1)/2 flops of the first-layer block (its upper unit "
        "blocks, the issue's cost model) / time. The dense path computes only the upper "
        "triangle of each of those symmetric unit blocks, in row tiles of "
        f"{dense_mod.DIAG_TILE}: {executed_flops(1) / dense_flops(1):.1%} of the nominal flops; "
        "*% of GEMM* = executed flops / time / GEMM rate, the efficiency of the implementation. "
        "GEMM = best float32 rate of a 3072×N @ N×30720 matmul measured in the same child "
        "process. Peak RSS is the child process's `ru_maxrss` (Python + torch + data + "
        "Hessian).",
        "",
        "| N | dense cold (s) | dense warm (s) | first touch of 3.8 GB (s) | effective GFLOP/s "
        "cold / warm | GEMM GFLOP/s | % of GEMM cold / warm (executed) | "
        "torch.func (s, extrap.) | speed-up | curvlinops (s, extrap.) | speed-up | "
        "peak RSS (GB) | / matrix | rel. diff vs peers |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        fl, ex = dense_flops(r["n"]), executed_flops(r["n"])
        cold_rate, warm_rate = fl / r["cold_s"] / 1e9, fl / r["warm_s"] / 1e9
        gemm = r["gemm_gflops"]
        cold_ex, warm_ex = (ex / r[k] / 1e9 / gemm for k in ("cold_s", "warm_s"))
        cells = [
            f"{r['n']:,}",
            f"{r['cold_s']:.2f}",
            f"{r['warm_s']:.2f}",
            f"{r['touch_s']:.2f}",
            f"{cold_rate:.0f} / {warm_rate:.0f}",
            f"{gemm:.0f}",
            f"{cold_ex:.0%} / {warm_ex:.0%}",
        ]
        diffs = []
        for name in ("torch.func", "curvlinops"):
            if name in r:
                full = r[name]["full_s"]
                cold_x, warm_x = full / r["cold_s"], full / r["warm_s"]
                cells += [f"{full:.0f}", f"{cold_x:.1f}× / {warm_x:.1f}×"]
                diffs.append(f"{r[name]['rel_diff']:.0e}")
            else:
                cells += ["–", "–"]
        cells += [
            f"{r['peak_rss'] / gb:.2f}",
            f"{r['peak_rss'] / r['matrix_bytes']:.2f}",
            " / ".join(diffs) or "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Speed-ups are peer time / dense time (cold / warm). Rel. diff: ‖H_dense[:, block] − "
        "H_peer[:, block]‖_F / ‖H_peer[:, block]‖_F (torch.func / curvlinops), float32. "
        "*First touch*: `torch.empty(P, P).fill_(0)` of a second, fresh buffer in the same "
        "child. A VM that backs memory lazily can make fresh pages cost far more than reused "
        "ones, so cold − warm varies from run to run; that part of *cold* is the machine's, not "
        "the algorithm's. The peers' extrapolated times include no output allocation at all, so "
        "*warm* is the like-for-like comparison.",
        "",
        f"`projected_hessian` ({args.proj_bins} × {args.proj_bins}, U = magnitude-ordered bins "
        f"scaled by θ) at N = {args.proj_n:,}: **{proj['dense']:.2f} s** with the closed-form "
        f'R-operator (`method="dense"`, the default for DenseNet), {proj["autograd"]:.2f} s with '
        f'torch.func vmap\'d forward-over-reverse HVPs (`method="autograd"`); rel. diff '
        f"{proj_diff:.0e}.",
        "",
        *goals(rows),
    ]
    return "\n".join(lines)


def goals(rows: list[dict], n_goal: int = 1000) -> list[str]:
    """One line per goal, evaluated at N = ``n_goal`` (or the size closest to it)."""
    if not rows:
        return []
    r = min(rows, key=lambda row: abs(row["n"] - n_goal))
    fl = executed_flops(r["n"])
    verdict = {True: "met", False: "not met"}
    out = [f"Goals at N = {r['n']:,} (cold / warm):"]
    for name in ("torch.func", "curvlinops"):
        if name in r:
            c, w = r[name]["full_s"] / r["cold_s"], r[name]["full_s"] / r["warm_s"]
            out.append(
                f"- ≥ 10× faster than {name}: {c:.1f}× / {w:.1f}× "
                f"({verdict[c >= 10]} / {verdict[w >= 10]})"
            )
    c, w = (fl / r[k] / 1e9 / r["gemm_gflops"] for k in ("cold_s", "warm_s"))
    out.append(
        f"- ≥ 70% of the GEMM rate (executed flops): {c:.0%} / {w:.0%} "
        f"({verdict[c >= 0.7]} / {verdict[w >= 0.7]})"
    )
    nominal = dense_flops(r["n"])
    c, w = (nominal / r[k] / 1e9 / r["gemm_gflops"] for k in ("cold_s", "warm_s"))
    out.append(
        f"- ≥ 70% of the GEMM rate (the issue's cost model N·D²·H(H+1)/2, i.e. effective "
        f"GFLOP/s): {c:.0%} / {w:.0%} ({verdict[c >= 0.7]} / {verdict[w >= 0.7]})"
    )
    ratio = r["peak_rss"] / r["matrix_bytes"]
    out.append(f"- peak RSS ≤ 1.3 × matrix: {ratio:.2f}× ({verdict[ratio <= 1.3]})")
    return out


if __name__ == "__main__":
    main()
