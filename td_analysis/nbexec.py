"""Headless notebook execution that does not stall on widget messages (needs the ``notebooks``
or ``test`` extra: nbclient).

nbclient waits for a cell's ``execute_reply`` with one long ``shell_channel.get_msg(timeout=T)``.
When a cell opens ipywidgets comms, that wait can miss the reply's arrival and return only when
``T`` runs out (nbclient issue #312; seen here as notebook 03 idling for the whole 600 s cell
timeout before passing). :class:`PollingNotebookClient` waits in short slices instead, so a
missed wake-up costs at most ``poll_interval`` seconds; the overall timeout is unchanged.
"""

from __future__ import annotations

from queue import Empty
from time import monotonic
from typing import Any

from nbclient import NotebookClient
from nbclient.util import ensure_async

__all__ = ["PollingNotebookClient"]


class PollingNotebookClient(NotebookClient):
    """:class:`nbclient.NotebookClient` whose shell-channel waits poll every ``poll_interval`` s."""

    poll_interval: float = 1.0

    async def async_start_new_kernel_client(self) -> Any:
        """Start the kernel client, then wrap its shell channel's ``get_msg`` in short polls."""
        kc = await super().async_start_new_kernel_client()
        channel = kc.shell_channel
        original = channel.get_msg
        interval = self.poll_interval

        async def get_msg(*args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
            deadline = None if timeout is None else monotonic() + timeout
            while True:
                left = interval if deadline is None else max(0.0, deadline - monotonic())
                try:
                    return await ensure_async(
                        original(*args, timeout=min(interval, left), **kwargs)
                    )
                except Empty:
                    if deadline is not None and monotonic() >= deadline:
                        raise

        channel.get_msg = get_msg
        return kc
