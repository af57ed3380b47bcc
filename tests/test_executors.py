"""``td_analysis.training.executors.map_jobs``: a Dask cluster gives the results of local processes.

The cluster is a real one: ``distributed.LocalCluster`` of 2 worker processes on 127.0.0.1.
References: the same jobs on the local executor (worker processes of this machine), and for
the probe and the networks, the same computation in this process.  Skipped without the
``dask`` extra (``pip install "td-analysis[dask]"``), but for the missing-extra message.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import torch
from test_runs import _configs, _data

from td_analysis.training.executors import DASK_HINT, dask_client, map_jobs
from td_analysis.training.loop import load_checkpoint, train
from td_analysis.training.runs import train_many


def _probe(seed: int) -> dict:
    """What a job's process computes and sees: the bits of a seeded product (kernels), its
    intra-op threads and CPU kernel settings."""
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(96, 80, generator=gen), torch.randn(80, 72, generator=gen)
    prod = torch.nn.functional.softmax(a @ b, dim=1)
    return {
        "seed": seed,
        "product": prod.numpy().tobytes(),
        "threads": torch.get_num_threads(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "kernels": {k: os.environ.get(k) for k in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")},
    }


def _fail(x: int) -> int:
    if x == 1:
        raise ValueError(f"job {x} failed")
    return x


def _sleep_or_fail(job: tuple[str, str]) -> None:
    """``("sleep", folder)``: mark ``started``, sleep, mark ``stopped`` when stopped (SIGTERM
    unwinds as ``SystemExit``); ``("fail", folder)``: fail once the sleeper has started."""
    kind, folder = job
    if kind == "fail":
        deadline = time.monotonic() + 120
        while not (Path(folder) / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        raise ValueError("failed while the other job runs")
    (Path(folder) / "started").touch()
    try:
        time.sleep(120)
    finally:
        (Path(folder) / "stopped").touch()


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        yield cluster


def test_a_trivial_job_gives_the_same_results_locally_and_on_dask(cluster) -> None:
    seeds = [3, 1]
    local = dict(map_jobs(_probe, seeds, processes=2))
    remote = dict(map_jobs(_probe, seeds, scheduler=cluster.scheduler_address))
    here = [_probe(s) for s in seeds]  # this process: one thread, the same kernels
    assert sorted(local) == sorted(remote) == [0, 1]
    for i, ref in enumerate(here):
        assert local[i] == remote[i] == ref
    assert here[0]["threads"] == 1 and here[0]["product"] != here[1]["product"]


def test_a_failing_job_raises_its_error_here(cluster) -> None:
    import distributed

    with pytest.raises(ValueError, match="job 1 failed"):
        list(map_jobs(_fail, [0, 1], processes=2))
    with distributed.Client(cluster, set_as_default=False) as client:  # a client is kept open
        with pytest.raises(ValueError, match="job 1 failed"):
            list(map_jobs(_fail, [0, 1], scheduler=client))
        assert client.status == "running"
        assert list(map_jobs(_fail, [], scheduler=client)) == []


def test_a_failed_grid_stops_the_jobs_still_running_on_the_cluster(cluster, tmp_path) -> None:
    """As a local pool: an error (or Ctrl-C) here stops the other jobs' processes (SIGTERM,
    so they unwind) instead of leaving them running for minutes on the workers."""
    t0 = time.monotonic()
    jobs = [("sleep", str(tmp_path)), ("fail", str(tmp_path))]
    with pytest.raises(ValueError, match="failed while the other job runs"):
        list(map_jobs(_sleep_or_fail, jobs, scheduler=cluster.scheduler_address))
    while not (tmp_path / "stopped").exists() and time.monotonic() - t0 < 60:
        time.sleep(0.1)
    assert (tmp_path / "started").exists() and (tmp_path / "stopped").exists()
    assert time.monotonic() - t0 < 60  # not the sleeper's 120 s


@pytest.mark.slow
def test_train_many_on_dask_equals_local_processes_bit_for_bit(cluster, tmp_path: Path) -> None:
    """2 runs (none, targeted weight): each in a fresh process, locally and on the cluster;
    the checkpoints agree tensor for tensor, and with training in this process up to MKL's
    last bits."""
    data = _data()
    configs = [_configs()[0], _configs()[3]]
    local = train_many(configs, tmp_path / "local", processes=2, data=data, progress=False)
    remote = train_many(
        configs, tmp_path / "dask", data=data, progress=False, scheduler=cluster.scheduler_address
    )
    assert [r.config for r in remote] == configs
    assert not any(r.reused for r in local + remote)
    for cfg, a, b in zip(configs, local, remote, strict=True):
        assert a.path.name == b.path.name and b.path.parent == tmp_path / "dask"
        ma, mb = load_checkpoint(a.path), load_checkpoint(b.path)
        assert mb.config == cfg
        sa, sb = ma.model.state_dict(), mb.model.state_dict()
        assert list(sa) == list(sb)
        for name in sa:
            assert torch.equal(sa[name], sb[name]), name
        for key in ("train_loss", "eval_loss", "eval_accuracy"):
            assert a.metrics[key] == b.metrics[key]
        direct = train(cfg, train_data=data["train"], progress=False).model
        for name, ref in direct.state_dict().items():
            torch.testing.assert_close(sb[name], ref, rtol=1e-5, atol=1e-6)
    # trained once: a second grid on the cluster reuses every checkpoint
    again = train_many(
        configs, tmp_path / "dask", data=data, progress=False, scheduler=cluster.scheduler_address
    )
    assert all(r.reused for r in again)


def test_bad_schedulers_are_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="in_process"):
        train_many(_configs()[:1], "unused", in_process=True, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="processes must be"):
        list(map_jobs(_fail, [0], processes=0))
    monkeypatch.setitem(sys.modules, "distributed", None)  # the extra is not installed
    with pytest.raises(ImportError, match=r"td-analysis\[dask\]"):
        list(map_jobs(_fail, [0], scheduler="tcp://127.0.0.1:8786"))
    assert "distributed" in DASK_HINT


def test_an_unreachable_scheduler_is_one_clear_error() -> None:
    pytest.importorskip("distributed")
    with pytest.raises(ConnectionError, match="no Dask scheduler answered at tcp://127.0.0.1:9"):
        dask_client("tcp://127.0.0.1:9", timeout=2)
    with pytest.raises(ValueError, match="scheduler must be an address"):
        dask_client("  ")


def test_the_commands_hand_the_scheduler_to_the_pipelines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """``--scheduler`` reaches ``reproduce_fashion``/``reproduce_resnet`` as an argument (not a
    setting of the results), and is refused where nothing runs on workers."""
    pytest.importorskip("distributed")  # the option checks that the extra is there
    from td_analysis.cli import main
    from td_analysis.cli.training_length import main as study_main
    from td_analysis.pipelines import fashion_mlp as experiments_fashion
    from td_analysis.pipelines import resnet as experiments_resnet

    seen = {}

    def record(settings, **kwargs):
        seen.update(settings=settings, scheduler=kwargs.get("scheduler"))
        raise KeyboardInterrupt  # stop here: nothing trained, nothing written

    monkeypatch.setattr(experiments_fashion, "reproduce_fashion", record)
    monkeypatch.setattr(experiments_fashion, "check_pooled_memory", lambda settings: None)
    monkeypatch.setattr(experiments_resnet, "reproduce_resnet", record)
    monkeypatch.chdir(tmp_path)
    address = "tcp://10.0.0.5:8786"
    for experiment in ("fashion-mlp", "resnet-cifar10"):
        seen.clear()
        argv = ["reproduce", "--experiment", experiment, "--quick", "--scheduler", address]
        assert main(argv) == 130
        assert seen["scheduler"] == address
        assert "scheduler" not in seen["settings"].to_dict()
    assert main(["reproduce", "--quick", "--scheduler", address]) == 2  # toy: serial
    assert "--scheduler applies to" in capsys.readouterr().err
    assert study_main(["--experiment", "toy", "--scheduler", address]) == 2
    assert "--scheduler applies to --experiment fashion-mlp" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reproduce", "--experiment", "fashion-mlp", "--scheduler", " "])
    assert list(tmp_path.iterdir()) == []
