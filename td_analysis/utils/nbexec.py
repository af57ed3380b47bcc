"""Headless notebook execution that does not stall on widget messages (needs the ``notebooks``
or ``test`` extra: nbclient).

nbclient waits for a cell's ``execute_reply`` with one long ``shell_channel.get_msg(timeout=T)``.
When a cell opens ipywidgets comms, that wait can miss the reply's arrival and return only when
``T`` runs out (nbclient issue #312; seen here as notebook 03 idling for the whole 600 s cell
timeout before passing). :func:`poll_shell_channel` makes the wait a loop of short slices, so a
missed wake-up costs at most ``interval`` seconds; the overall timeout is unchanged.
:class:`PollingNotebookClient` applies it to notebook runs, and ``python -m
td_analysis.utils.nbexec voila …`` to Voilà's executor (the explorer of ``td-analysis explore``).

``python -m td_analysis.nbexec voila …`` also makes a request that arrives while the preheated
kernel is still starting wait for that kernel (:func:`wait_for_preheated_kernel`), where Voilà
0.5 would start a second kernel that runs the whole notebook beside the first.
"""

from __future__ import annotations

import sys
from queue import Empty
from time import monotonic
from typing import Any

from nbclient import NotebookClient
from nbclient.util import ensure_async

__all__ = [
    "PollingNotebookClient",
    "poll_shell_channel",
    "polling_client_class",
    "wait_for_preheated_kernel",
    "voila_main",
]

POLL_INTERVAL = 1.0


def poll_shell_channel(kc: Any, interval: float = POLL_INTERVAL) -> Any:
    """Wrap ``kc.shell_channel.get_msg`` so that one wait of ``timeout`` seconds becomes waits of
    at most ``interval`` seconds until the same deadline (``timeout=None``: forever)."""
    channel = kc.shell_channel
    original = channel.get_msg

    async def get_msg(*args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            left = interval if deadline is None else max(0.0, deadline - monotonic())
            try:
                return await ensure_async(original(*args, timeout=min(interval, left), **kwargs))
            except Empty:
                if deadline is not None and monotonic() >= deadline:
                    raise

    channel.get_msg = get_msg
    return kc


def polling_client_class(base: type[NotebookClient]) -> type[NotebookClient]:
    """A subclass of the nbclient client ``base`` whose kernel clients poll the shell channel
    (:func:`poll_shell_channel`), same name and behaviour otherwise."""

    async def async_start_new_kernel_client(self: Any) -> Any:
        kc = await base.async_start_new_kernel_client(self)
        return poll_shell_channel(kc, getattr(self, "poll_interval", POLL_INTERVAL))

    return type(
        base.__name__,
        (base,),
        {
            "async_start_new_kernel_client": async_start_new_kernel_client,
            "__doc__": f"{base.__name__} whose shell-channel waits poll (nbclient#312).",
            "__module__": __name__,
        },
    )


class PollingNotebookClient(polling_client_class(NotebookClient)):  # type: ignore[misc]
    """:class:`nbclient.NotebookClient` whose shell-channel waits poll every ``poll_interval`` s."""

    poll_interval: float = POLL_INTERVAL


def wait_for_preheated_kernel(handler: type) -> type:
    """Patch Voilà's page handler class so that a request takes the pool's preheated kernel
    even while that kernel is still starting (then the page waits for it), instead of starting
    another kernel: Voilà 0.5 uses the pool only once the kernel has started
    (``notebook_data`` filled), so a page requested as the server comes up ran the notebook in
    two kernels at once, each at half the speed on a 2-core machine.  A request for another
    template or theme keeps Voilà's rule.  Returns ``handler``."""
    original = handler.should_use_rendered_notebook
    if getattr(original, "_waits_for_pool", False):
        return handler

    def should_use_rendered_notebook(
        self: Any,
        notebook_data: dict,
        pool_size: int,
        template_name: str | None,
        theme: str | None,
        request_args: dict,
    ) -> bool:
        if pool_size > 0 and not notebook_data and template_name is None and theme is None:
            return True  # the pool's kernel is on its way: wait for it
        return original(self, notebook_data, pool_size, template_name, theme, request_args)

    should_use_rendered_notebook._waits_for_pool = True  # type: ignore[attr-defined]
    handler.should_use_rendered_notebook = should_use_rendered_notebook
    return handler


def voila_main(argv: list[str] | None = None) -> Any:
    """Run Voilà's command line (``argv``, default ``sys.argv[1:]``) with its executor polling
    the shell channel (Voilà renders a page by running the notebook through nbclient, so the
    same missed wake-up made the explorer's first page take minutes in CI) and its page handler
    waiting for a preheated kernel that is still starting (:func:`wait_for_preheated_kernel`)."""
    import voila.app
    import voila.execute
    import voila.handler
    import voila.notebook_renderer

    polling = polling_client_class(voila.execute.VoilaExecutor)
    voila.execute.VoilaExecutor = polling
    voila.notebook_renderer.VoilaExecutor = polling  # the name the page renderer uses
    wait_for_preheated_kernel(voila.handler.VoilaHandler)
    sys.argv = [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
    return voila.app.main()


if __name__ == "__main__":
    if sys.argv[1:2] != ["voila"]:
        raise SystemExit("usage: python -m td_analysis.nbexec voila [voila arguments]")
    del sys.argv[1]
    from td_analysis.utils.reproducibility import pin_cpu_kernels

    pin_cpu_kernels()  # the kernels it starts inherit the pinned CPU kernels (no torch here)
    raise SystemExit(voila_main())
