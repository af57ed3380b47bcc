"""Progress reporting: a tqdm bar on a terminal, plain periodic lines in a log.

``tqdm(disable=None)`` only hides the bar when stderr is not a terminal; a log then shows
nothing for minutes. A redrawn bar written to a file fills it with carriage returns instead
(250 KB for one ``reproduce``). :func:`progress_bar` takes tqdm's arguments and chooses:

* ``bar``: a tqdm bar (the default when stderr is a terminal);
* ``lines``: one plain line ``desc: 120/313 step (38%), 4 s`` at most every
  ``TD_ANALYSIS_PROGRESS_INTERVAL`` seconds (default 30) and a last one when done (the default
  when stderr is a file or a pipe);
* ``off``: nothing.

The mode comes from :func:`set_progress_mode` (the CLI's ``--progress``/``--quiet``), else from
``$TD_ANALYSIS_PROGRESS`` (``auto``, ``bar``, ``lines``, ``off``), else ``auto``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["progress_bar", "set_progress_mode", "progress_mode", "LineProgress"]

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

    def _line(self) -> str:
        elapsed = time.monotonic() - self.start
        done = f"{self.n:,}" if self.total is None else f"{self.n:,}/{self.total:,}"
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        post = f", {self.postfix}" if self.postfix else ""
        head = f"{self.desc}: " if self.desc else ""
        return f"{head}{done} {self.unit}{share}, {elapsed:.0f} s{post}"

    def _emit(self) -> None:
        print(self._line(), file=self.file or sys.stderr, flush=True)
        self.last = time.monotonic()
        self.printed = True

    def update(self, n: float = 1) -> None:
        """Advance by ``n``; print a line if ``interval`` seconds passed since the last."""
        self.n += n
        if time.monotonic() - self.last >= self.interval:
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
        if not self.closed:
            self.closed = True
            if self.n or self.printed:
                self._emit()

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


class _Silent(LineProgress):
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
