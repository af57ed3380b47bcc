"""One executor for grids of runs: local worker processes, or a Dask distributed cluster.

:func:`map_jobs` applies ``fn`` to every job and yields ``(index, fn(jobs[index]))`` as the jobs
finish, wherever they run:

* **locally** (the default): ``processes`` spawned worker processes
  (:func:`td_analysis.utils.progress.stoppable_pool`: Ctrl-C or SIGTERM stop them within seconds);
  ``fresh=True`` gives every job a fresh process of its own;
* **on a Dask cluster** (``scheduler="tcp://host:8786"`` or a ``distributed.Client``): each job
  becomes one task, and the task runs the job in a fresh Python process on its worker, started
  with this process's kernel and thread settings (``ATEN_CPU_CAPABILITY``, ``MKL_CBWR``,
  ``TD_ANALYSIS_NATIVE_KERNELS``, ``TD_ANALYSIS_FUSED_KERNELS``, ``OMP_NUM_THREADS``, …;
  :mod:`td_analysis.utils.reproducibility`) and the worker's ``sys.path``.  A job thus sees what a
  local worker sees, whatever the worker process ran before, and its result is bit-for-bit a
  local worker's (on CPUs of the same kernels).  An interrupted grid sets a
  ``distributed.Event`` that the tasks poll: their processes are stopped (SIGTERM) as local
  workers are.

**Why Dask distributed** (not Ray, not a home-made engine): it is pure Python and installs with
``pip install "td-analysis[dask]"`` (the ``distributed`` package, no compiled runtime nor
server binaries); ``distributed.LocalCluster`` starts a real multi-process cluster inside a test;
a cluster anywhere else is one address (``dask scheduler`` plus ``dask worker ADDRESS`` on each
machine, or dask-jobqueue/dask-kubernetes for batch systems); and its futures API
(``submit``, ``as_completed``, ``cancel``) is the one of :mod:`concurrent.futures` that the local
pools use, so both paths share one loop.  It stays an optional extra: nothing imports
``distributed`` unless a scheduler is given.

The jobs' files (checkpoints, data) must be on a file system every worker sees, under the same
paths (absolute paths are safest); results come back to this process through the scheduler.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "available_cores",
    "map_jobs",
    "dask_client",
    "shipped_environment",
    "SHIPPED_VARIABLES",
    "DASK_HINT",
]

J = TypeVar("J")
R = TypeVar("R")

#: environment variables a job's process gets from this process (not from the Dask worker's):
#: the CPU kernels (:mod:`td_analysis.utils.reproducibility`, :mod:`td_analysis.utils.kernels`) and
# threads
SHIPPED_VARIABLES = (
    "ATEN_CPU_CAPABILITY",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "TD_ANALYSIS_NATIVE_KERNELS",
    "TD_ANALYSIS_FUSED_KERNELS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)
DASK_HINT = 'a scheduler address needs Dask: pip install "td-analysis[dask]" (package distributed)'
#: seconds between a running Dask task's looks at the stop event
POLL_SECONDS = 0.5


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def shipped_environment() -> dict[str, str | None]:
    """:data:`SHIPPED_VARIABLES` as this process has them (``None``: unset here, so unset in
    the job's process too)."""
    return {name: os.environ.get(name) for name in SHIPPED_VARIABLES}


def dask_client(scheduler: Any, timeout: float = 30.0) -> tuple[Any, bool]:
    """``(client, owned)``: ``scheduler`` itself if it is a ``distributed.Client`` (not owned),
    else a new client of the scheduler at that address (owned: the caller closes it)."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(DASK_HINT) from exc
    if isinstance(scheduler, distributed.Client):
        return scheduler, False
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise ValueError(f"scheduler must be an address like tcp://host:8786, got {scheduler!r}")
    try:
        client = distributed.Client(scheduler.strip(), timeout=timeout, set_as_default=False)
    except OSError as exc:
        raise ConnectionError(f"no Dask scheduler answered at {scheduler}: {exc}") from exc
    return client, True


def map_jobs(
    fn: Callable[[J], R],
    jobs: Sequence[J],
    *,
    processes: int | None = None,
    scheduler: Any = None,
    fresh: bool = False,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
) -> Iterator[tuple[int, R]]:
    """``(i, fn(jobs[i]))`` for every job, in the order the jobs finish.

    Args:
        fn: a module-level function (pickled by reference) of one job.
        jobs: plain data (pickled to the workers).
        processes: local worker processes (default: one per available core); at most one per
            job.  Ignored with ``scheduler``: the cluster's workers decide.
        scheduler: ``None`` (local processes), a Dask scheduler address or a
            ``distributed.Client``.
        fresh: locally, every job in a fresh worker process (``max_tasks_per_child=1``); on
            Dask every job always has one.
        initializer: run as ``initializer(*initargs)`` in a job's process before ``fn`` (once
            per local worker process; ``initargs`` go to a cluster once, scattered).

    Consume it inside ``with contextlib.closing(map_jobs(...)) as results:``: leaving the loop
    by an exception (Ctrl-C) then closes the generator at once, which stops the workers (local)
    or cancels and stops the tasks (Dask). A plain ``for`` loop would leave that to the garbage
    collector, seconds or minutes later.
    """
    jobs = list(jobs)
    if processes is not None and processes < 1:
        raise ValueError(f"processes must be ≥ 1, got {processes}")
    if not jobs:
        return
    if scheduler is not None:
        yield from _map_dask(fn, jobs, scheduler, initializer, initargs)
        return
    from td_analysis.utils.progress import stoppable_pool

    if processes is None:
        processes = available_cores()
    kwargs: dict[str, Any] = {"initializer": initializer, "initargs": initargs}
    if fresh:
        kwargs["max_tasks_per_child"] = 1  # a job never depends on what its worker did before
    with stoppable_pool(max(1, min(processes, len(jobs))), **kwargs) as pool:
        futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


def _map_dask(
    fn: Callable, jobs: list, scheduler: Any, initializer: Callable | None, initargs: tuple
) -> Iterator[tuple[int, Any]]:
    client, owned = dask_client(scheduler)  # first: a missing extra is one clear error
    import distributed

    stop_name = f"td-analysis-stop-{uuid.uuid4().hex}"
    stop = distributed.Event(stop_name, client=client)
    futures: list = []
    try:
        env = shipped_environment()
        init = initargs
        if initializer is not None and initargs:
            [init] = client.scatter([initargs], hash=False)  # sent once, not with every job
        futures = [
            client.submit(
                _dask_task,
                fn,
                job,
                initializer,
                init,
                env,
                stop_name,
                key=f"{getattr(fn, '__name__', 'job')}-{i}-{uuid.uuid4().hex[:8]}",
                pure=False,
            )
            for i, job in enumerate(jobs)
        ]
        index = {fut.key: i for i, fut in enumerate(futures)}
        for fut in distributed.as_completed(futures, loop=client.loop):
            yield index[fut.key], fut.result()
    except BaseException:
        try:
            stop.set()  # running tasks stop their processes
            client.cancel(futures)
        except Exception:  # noqa: BLE001 - the scheduler may be gone; the first error matters
            pass
        raise
    finally:
        if owned:
            client.close()


def _dask_task(
    fn: Callable,
    job: Any,
    initializer: Callable | None,
    initargs: tuple,
    env: dict[str, str | None],
    stop_name: str,
) -> Any:
    """On a Dask worker: ``fn(job)`` in a fresh Python process with ``env``'s variables."""
    import distributed

    stop = distributed.Event(stop_name)
    child_env = {k: v for k, v in os.environ.items() if k not in env}
    child_env.update({k: v for k, v in env.items() if v is not None})
    # the job's process imports what its worker imports (``fn`` came pickled by reference)
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    with tempfile.TemporaryDirectory(prefix="td-analysis-job-") as tmp:
        out = Path(tmp) / "result.pickle"
        payload = pickle.dumps((fn, job, initializer, initargs), protocol=pickle.HIGHEST_PROTOCOL)
        proc = subprocess.Popen(
            [sys.executable, "-m", "td_analysis.training.executors", str(out)],
            stdin=subprocess.PIPE,
            env=child_env,
        )
        try:
            proc.stdin.write(payload)  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
            while proc.poll() is None:
                try:
                    if stop.wait(timeout=POLL_SECONDS):
                        break
                except Exception:  # noqa: BLE001 - no scheduler to ask: keep waiting
                    time.sleep(POLL_SECONDS)
        finally:
            _stop_process(proc)
        if not out.is_file():
            raise RuntimeError(f"the job's process ended with exit code {proc.returncode}")
        status, value, text = pickle.loads(out.read_bytes())
    if status == "ok":
        return value
    if isinstance(value, BaseException):
        raise value
    raise RuntimeError(f"the job failed in its process:\n{text}")


def _stop_process(proc: subprocess.Popen, seconds: float = 3.0) -> None:
    """SIGTERM (the job unwinds: temporary files go), then SIGKILL after ``seconds``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _child(out: str) -> int:
    """A job's own process: read ``(fn, job, initializer, initargs)`` from stdin, write
    ``(status, value, traceback)`` to ``out``."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the client's to handle
    signal.signal(signal.SIGTERM, stop)
    fn, job, initializer, initargs = pickle.loads(sys.stdin.buffer.read())
    try:
        if initializer is not None:
            initializer(*initargs)
        result: tuple = ("ok", fn(job), "")
    except Exception as exc:  # noqa: BLE001 - sent back to the client as it is
        result = ("error", exc, traceback.format_exc())
    try:
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - an exception that does not pickle: its text
        data = pickle.dumps(("error", None, result[2] or traceback.format_exc()))
    tmp = Path(f"{out}.part")
    tmp.write_bytes(data)
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
