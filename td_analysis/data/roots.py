"""Where data lives: the data root (argument, ``$TD_ANALYSIS_DATA``, per-user cache) and what a
folder holding a data set looks like (no I/O beyond ``stat``)."""

from __future__ import annotations

import os
from pathlib import Path

from . import registry
from .registry import BATCHES_DIR, DATA_ENV_VAR, TEST_FILE, TRAIN_FILES

# --------------------------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------------------------


def default_data_root() -> Path:
    """The data folder used when none is given.

    ``$TD_ANALYSIS_DATA`` if set (and non-empty), else ``$XDG_CACHE_HOME/td_analysis``, else
    ``~/.cache/td_analysis``.
    """
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "td_analysis"


def resolve_data_root(root: str | os.PathLike[str] | None) -> Path:
    """``root`` as a :class:`Path` if given (non-empty), else :func:`default_data_root`."""
    if root is None or os.fspath(root) == "":
        return default_data_root()
    return Path(root).expanduser()


def looks_like_archive(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".tar.gz", ".tgz", ".tar"))


def is_batches_dir(path: Path) -> bool:
    """``path`` is (meant to be) a ``cifar-10-batches-py`` folder."""
    if not path.is_dir():
        return False
    if path.name == BATCHES_DIR:
        return True
    return any((path / name).is_file() for name in (*TRAIN_FILES, TEST_FILE))


def fashion_names() -> list[str]:
    return [record.name for record in registry.FASHION_MNIST_FILES.values()]
