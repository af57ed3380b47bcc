"""Utilities every layer may use: atomic files and JSON (``io``), progress bars and log lines
(``progress``), CPU-kernel pinning (``kernels``, ``reproducibility``), on-disk caches
(``cache``), notebook execution (``nbexec``), argument types (``cliargs``) and the aliases of
moved modules (``moved``).  Nothing here imports torch at import time of the package."""
