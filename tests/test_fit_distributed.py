"""fit over torch.distributed: 2 CPU processes (DDP, gloo on 127.0.0.1) against one process.

Float64, a small CNN with targeted weight dropout, augmentation, momentum, weight decay and a
step schedule; the global batch (an uneven last batch included: 50 = 3 × 16 + 2) is split
between the ranks.  Every rank must end with the single-process weights (up to float64
rounding of the split sums) and the same history, and both ranks with identical weights.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_fit import CONFIGS, cnn, data

from td_analysis.training.fit import fit

WORLD = 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        path = Path(folder) / "ckpt.pt"
        result = fit(
            cnn(),
            data(),
            CONFIGS["sgd-step-augment-td"],
            eval_data=data(21, seed=1),
            checkpoint=path,
            progress=False,
        )
        torch.save(
            {"state": result.model.state_dict(), "history": result.history},
            Path(folder) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path, monkeypatch):
    monkeypatch.setenv("TD_ANALYSIS_PROGRESS", "off")
    torch.set_num_threads(1)
    single = fit(cnn(), data(), CONFIGS["sgd-step-augment-td"], eval_data=data(21, seed=1))
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
    want = single.model.state_dict()
    for got in ranks:
        for k, v in want.items():
            torch.testing.assert_close(got["state"][k], v, rtol=1e-10, atol=1e-12, msg=k)
        for h, s in zip(got["history"], single.history, strict=True):
            assert h["train_loss"] == pytest.approx(s["train_loss"], rel=1e-10)
            assert h["eval_loss"] == pytest.approx(s["eval_loss"], rel=1e-10)
            assert h["train_accuracy"] == s["train_accuracy"]
            assert h["eval_accuracy"] == s["eval_accuracy"]
    for k in want:
        assert torch.equal(ranks[0]["state"][k], ranks[1]["state"][k])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "rank0.pt", "rank1.pt"]
