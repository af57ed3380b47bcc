"""Progress reporting: a tqdm bar on a terminal, plain periodic lines in a log.

``tqdm(disable=None)`` only hides the bar when stderr is not a terminal; a log then shows
nothing for minutes. A redrawn bar written to a file fills it with carriage returns instead
(250 KB for one ``reproduce``). :func:`progress_bar` takes tqdm's arguments and chooses:

* ``bar``: a tqdm bar (the default when stderr is a terminal);
* ``lines``: one plain line ``desc: 120/313 step (38%), 4 s`` at most every
  ``TD_ANALYSIS_PROGRESS_INTERVAL`` seconds (default 30) and a last one when done (the default
  when stderr is a file or a pipe); a *heartbeat* repeats the line every interval while a step
  is still running (one pooled Hessian product, one network in a worker process), so a log is
  never silent for longer than the interval while a bar is open;
* ``off``: nothing.

The mode comes from :func:`set_progress_mode` (the CLI's ``--progress``/``--quiet``), else from
``$TD_ANALYSIS_PROGRESS`` (``auto``, ``bar``, ``lines``, ``off``), else ``auto``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["progress_bar", "set_progress_mode", "progress_mode", "LineProgress", "stoppable_pool"]

MODES = ("auto", "bar", "lines", "off")
_mode: str | None = None


def set_progress_mode(mode: str | None) -> None:
    """Force ``auto``/``bar``/``lines``/``off`` for this process (``None``: back to the
    environment's choice)."""
    global _mode
    if mode is not None and mode not in MODES:
        raise ValueError(f"progress mode must be one of {MODES}, got {mode!r}")
    _mode = mode


def progress_mode() -> str:
    """The effective mode: ``bar``, ``lines`` or ``off`` (``auto`` resolved against stderr)."""
    mode = _mode or os.environ.get("TD_ANALYSIS_PROGRESS", "auto").strip().lower() or "auto"
    if mode not in MODES:
        mode = "auto"
    if mode == "auto":
        try:
            return "bar" if sys.stderr.isatty() else "lines"
        except (AttributeError, ValueError):
            return "lines"
    return mode


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("TD_ANALYSIS_PROGRESS_INTERVAL", "30")))
    except ValueError:
        return 30.0


class LineProgress:
    """The tqdm calls the package uses (``update``, ``set_postfix``, ``close``, iterating,
    ``with``), printed as plain lines at most every ``interval`` seconds, and once at the end."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: float | None = None,
        desc: str | None = None,
        unit: str = "it",
        interval: float | None = None,
        file: Any = None,
        **_: Any,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.desc = desc or ""
        self.unit = unit
        self.n = 0
        self.postfix = ""
        self.interval = _interval() if interval is None else interval
        self.file = file
        self.start = self.last = time.monotonic()
        self.closed = False
        self.printed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        if self.interval > 0 and self._beats():
            self._beat = threading.Thread(
                target=_heartbeat,
                args=(weakref.ref(self), self._stop),
                name="progress",
                daemon=True,
            )
            self._beat.start()

    def _beats(self) -> bool:
        return True

    def _line(self) -> str:
        elapsed = time.monotonic() - self.start
        done = f"{self.n:,}" if self.total is None else f"{self.n:,}/{self.total:,}"
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        post = f", {self.postfix}" if self.postfix else ""
        head = f"{self.desc}: " if self.desc else ""
        return f"{head}{done} {self.unit}{share}, {elapsed:.0f} s{post}"

    def _emit(self) -> None:
        try:
            print(self._line(), file=self.file or sys.stderr, flush=True)
        except ValueError:  # the stream was closed under a heartbeat (interpreter exit)
            pass
        self.last = time.monotonic()
        self.printed = True

    def update(self, n: float = 1) -> None:
        """Advance by ``n``; print a line if ``interval`` seconds passed since the last."""
        self.n += n
        if time.monotonic() - self.last >= self.interval:
            with self._lock:
                self._emit()

    def set_postfix(
        self, ordered_dict: dict | None = None, refresh: bool = True, **kw: Any
    ) -> None:
        """Text after the counts (``loss=0.42, acc=0.38``), as tqdm."""
        items = {**(ordered_dict or {}), **kw}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        """Replace the label."""
        self.desc = desc or ""

    def close(self) -> None:
        """Print the final line (if any time passed or something was counted) once."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if self.n or self.printed:
                self._emit()
        self._stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join(timeout=1.0)

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("LineProgress without an iterable cannot be iterated")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _heartbeat(ref: weakref.ref, stop: threading.Event) -> None:
    """Every ``interval`` seconds without a line, print the bar's current one; ends when the bar
    is closed or garbage (a bar abandoned by an exception never beats on forever)."""
    wait = 0.05
    while not stop.wait(wait):
        bar = ref()
        if bar is None or bar.closed:
            return
        idle = time.monotonic() - bar.last
        if idle >= bar.interval:
            with bar._lock:  # noqa: SLF001 - the bar's own lock
                if not bar.closed:
                    bar._emit()  # noqa: SLF001
            idle = 0.0
        wait = min(max(0.05, bar.interval - idle), 1.0)
        del bar


class _Silent(LineProgress):
    def _beats(self) -> bool:
        return False

    def _emit(self) -> None:
        self.last = time.monotonic()


def progress_bar(iterable: Iterable | None = None, *, disable: bool | None = False, **kwargs: Any):
    """``tqdm(iterable, **kwargs)`` on a terminal, :class:`LineProgress` in a log, nothing when
    ``disable`` is true or the mode is ``off``. ``disable=None`` means "not disabled" here: the
    choice between bar and lines is the mode's."""
    mode = progress_mode()
    if disable or mode == "off":
        return _Silent(iterable, **kwargs)
    if mode == "lines":
        return LineProgress(iterable, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


# ----------------------------------------------------------------------------- worker pools
#: seconds the workers of a stopped pool get to unwind (SIGTERM) before they are killed
STOP_SECONDS = 3.0


def _stoppable_worker(initializer: Any, initargs: tuple) -> None:
    """In a worker: Ctrl-C is the parent's to handle (the whole process group receives it);
    SIGTERM unwinds like an exception (``SystemExit``), so ``atomic_*`` writes remove their
    temporary files; then the pool's own initializer."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    if initializer is not None:
        initializer(*initargs)


@contextmanager
def stoppable_pool(max_workers: int, **kwargs: Any) -> Iterator[Any]:
    """A ``ProcessPoolExecutor`` (spawned workers) that stops within :data:`STOP_SECONDS` + a
    little when the parent is interrupted (Ctrl-C, SIGTERM turned into ``SystemExit`` by the
    CLI) or fails: pending jobs are cancelled and the workers terminated (SIGTERM, then
    SIGKILL), instead of ``with ProcessPoolExecutor(…)`` waiting for every running job (minutes).
    ``kwargs`` as for the executor (``initializer``/``initargs`` run after the signal set-up).
    The workers inherit this process's environment, so the CPU kernels the command pinned
    before torch started are theirs too (:mod:`td_analysis.utils.reproducibility`)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    init, initargs = kwargs.pop("initializer", None), kwargs.pop("initargs", ())
    kwargs.setdefault("mp_context", get_context("spawn"))
    pool = ProcessPoolExecutor(
        max_workers, initializer=_stoppable_worker, initargs=(init, initargs), **kwargs
    )
    try:
        yield pool
    except BaseException:
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for proc in processes:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        raise
    else:
        pool.shutdown(wait=True)
