"""Data-parallel HessianOperator: 2 CPU processes (gloo on 127.0.0.1) vs one process, float64.

Each rank holds a different, unevenly sized shard (one rank also has ignored labels); H @ V,
the gradient, the loss, the diagonal and the dense Hessian must equal the single-process values
on the whole data set on *every* rank (for ``reduction="mean"`` the global count divides).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from zoo import F64, TOL, Case, rel

from td_analysis.curvature import HessianOperator, distributed

WORLD = 2
CASE = Case("h2-bias", 6, (5, 4), 3, 23, True, "mean")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _problem():
    model, x, y = CASE.build()
    y = y.clone()
    y[[2, 3]] = -100  # both on rank 0's shard: the global count is what divides
    V = torch.randn(sum(p.numel() for p in model.parameters()), 3, dtype=F64)
    return model, x, y, V


def _quantities(H: HessianOperator, V: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {"HV": H @ V, "hv": H @ V[:, 0], "grad": H.gradient(), "loss": H.loss()}
    out["dense"] = H.dense()
    if H.backend == "dense":
        out["diag"] = H.diagonal()
    out["hutch"] = H.hutchinson_diagonal(8, seed=3)
    return out


def _worker(rank: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        model, x, y, V = _problem()
        part = slice(0, 9) if rank == 0 else slice(9, None)  # uneven shards
        results = {}
        for backend in ("dense", "autograd"):
            for reduction in ("mean", "sum"):
                H = HessianOperator(
                    model,
                    (x[part], y[part]),
                    distributed=True,
                    backend=backend,
                    reduction=reduction,
                    chunk_size=4,
                )
                results[backend, reduction] = _quantities(H, V)
                results[backend, reduction]["N"] = torch.tensor(H.num_examples)
        # batches (a list) on the shard, as a DataLoader would give them
        xs, ys = x[part], y[part]
        batches = [(xs[:5], ys[:5]), (xs[5:], ys[5:])]
        H = HessianOperator(model, batches, distributed=True)
        results["batches"] = {"HV": H @ V}
        assert distributed.shard(10, rank, WORLD) == (slice(0, 5) if rank == 0 else slice(5, 10))
        torch.save(results, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path):
    model, x, y, V = _problem()
    singles = {}  # computed first: the forked children inherit torch.func's warmed-up state
    for backend in ("dense", "autograd"):
        for reduction in ("mean", "sum"):
            H = HessianOperator(model, (x, y), backend=backend, reduction=reduction)
            singles[backend, reduction] = _quantities(H, V)
    port = _free_port()
    # fork: the children inherit the imported torch (spawn would re-import it: seconds each)
    ctx = mp.start_processes(
        _worker, args=(port, str(tmp_path)), nprocs=WORLD, join=False, start_method="fork"
    )
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.terminate()
            pytest.fail("the 2-process run did not finish within 120 s")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for backend in ("dense", "autograd"):
        for reduction in ("mean", "sum"):
            single = singles[backend, reduction]
            for got in ranks:
                res = got[backend, reduction]
                assert int(res["N"]) == x.shape[0] - 2
                for key, value in single.items():
                    assert rel(res[key], value) < TOL, (backend, reduction, key)
    # every rank holds exactly the same numbers
    for key in ranks[0]["dense", "mean"]:
        assert torch.equal(ranks[0]["dense", "mean"][key], ranks[1]["dense", "mean"][key])
    single = HessianOperator(model, (x, y)) @ V
    for got in ranks:
        assert rel(got["batches"]["HV"], single) < TOL


def test_distributed_without_process_group_is_refused():
    model, x, y, _ = _problem()
    assert not distributed.is_initialized()
    with pytest.raises(RuntimeError, match="init_process_group"):
        HessianOperator(model, (x, y), distributed=True)


def test_shard_is_balanced_and_complete():
    for n in (0, 1, 5, 10, 11):
        for world in (1, 2, 3, 4):
            parts = [distributed.shard(n, r, world) for r in range(world)]
            covered = [i for p in parts for i in range(n)[p]]
            assert covered == list(range(n))
            sizes = [len(range(n)[p]) for p in parts]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="rank"):
        distributed.shard(10, 2, 2)
    assert distributed.rank_and_world() == (0, 1)


def test_init_from_env_needs_torchrun_variables(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        distributed.init_from_env()
