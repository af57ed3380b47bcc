"""Atomic file writing: write to a temporary file in the target folder, then rename.

A crash or an exception never leaves a half-written file under the final name. Temporary files
and staging folders carry the writing process's id (``.<name>.<pid>-….tmp``,
``.<name>.staging-<pid>-…``): what a process killed by SIGKILL or the OOM killer left behind is
removed by the next write of the same target, once that process is gone
(:func:`remove_stale`); a live process's (a concurrent run) is never touched.
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_path",
    "atomic_open",
    "atomic_write_text",
    "atomic_write_json",
    "staged_directory",
    "staged_output",
    "remove_stale",
    "KEEP_IN_RESULT_FOLDER",
]

# files of a result folder that are never a run's outputs: its README and git markers
KEEP_IN_RESULT_FOLDER = ("README*", ".gitignore", ".gitkeep", ".gitattributes")


#: leftovers without a process id in their name (older versions) count as stale after this long
STALE_SECONDS = 3600.0
_PID = re.compile(r"^(\d+)-")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale(
    folder: str | Path, prefixes: tuple[str, ...], *, folders: bool = False
) -> list[Path]:
    """Delete the entries of ``folder`` named ``<prefix><pid>-…`` whose process is gone (and
    those without a pid older than :data:`STALE_SECONDS`): the temporary files (``folders``
    false: only files with ``.tmp`` in the name) or staging folders (``folders`` true: only
    folders) of killed runs. Returns what was removed; never raises."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        prefix = next((p for p in prefixes if entry.name.startswith(p)), None)
        if prefix is None:
            continue
        is_dir = entry.is_dir() and not entry.is_symlink()
        if is_dir != folders or (not folders and ".tmp" not in entry.name[len(prefix) :]):
            continue
        match = _PID.match(entry.name[len(prefix) :])
        try:
            if match:
                if _alive(int(match.group(1))):
                    continue
            elif time.time() - entry.lstat().st_mtime < STALE_SECONDS:
                continue
            if is_dir:
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            continue
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    ``suffix`` keeps an extension on the temporary name for writers that infer the format from
    it (``matplotlib.savefig``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, (f".{path.name}.",))  # what a killed writer of this file left
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}-", suffix=f".tmp{suffix}", dir=path.parent
    )
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """``open`` for writing (``"w"`` or ``"wb"``) through :func:`atomic_path`."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes only ('w' or 'wb'), got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextmanager
def staged_directory(
    target: str | Path,
    *,
    owned: tuple[str, ...] = ("*",),
    keep: tuple[str, ...] = KEEP_IN_RESULT_FOLDER,
) -> Iterator[Path]:
    """Yield a staging folder beside ``target``; swap it in for ``target`` if the block succeeds,
    delete it if the block raises (``target`` then stays exactly as it was).

    ``owned`` globs name the run's outputs among ``target``'s files: those are left out of the
    staging folder, so after the swap ``target`` holds this run's outputs only, never a mix of
    old and new ones (an output this run did not write is gone, not stale). Everything else, the
    files matching ``keep`` (the README) or no ``owned`` glob and every sub-folder (e.g. another
    experiment's results), is carried over into the staging folder first, as hard links (copies
    where links are impossible): writers must replace files by renaming (the ``atomic_*``
    helpers do), never rewrite them in place.

    The swap is two renames in one folder (``target`` → a hidden ``.old`` name, staging →
    ``target``), then the old folder is deleted; between the renames ``target`` is briefly
    absent, never mixed. A ``.<name>.staging-<pid>-*`` or ``.<name>.old-<pid>-*`` folder left by
    a process killed with SIGKILL is removed by the next run once that process is gone
    (:func:`remove_stale`; a concurrent run's folders are kept).
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} is a file, not a result folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent, (f".{target.name}.staging-", f".{target.name}.old-"), folders=True)
    pid = os.getpid()
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-{pid}-", dir=target.parent))
    try:
        if target.is_dir():
            _carry_over(target, staging, owned, keep)
        yield staging
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; give the usual mode
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{pid}-", dir=target.parent))
            os.replace(target, old / target.name)
        try:
            os.replace(staging, target)
        except BaseException:
            if old is not None:  # put the old results back
                os.replace(old / target.name, target)
                shutil.rmtree(old, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _carry_over(target: Path, staging: Path, owned: tuple[str, ...], keep: tuple[str, ...]) -> None:
    """Link every entry of ``target`` that is not an owned output into ``staging``."""
    for item in target.iterdir():
        if item.name.startswith((f".{target.name}.staging-", f".{target.name}.old-")):
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.copytree(item, staging / item.name, symlinks=True, copy_function=_link_or_copy)
        elif any(fnmatch.fnmatch(item.name, k) for k in keep) or not any(
            fnmatch.fnmatch(item.name, o) for o in owned
        ):
            _link_or_copy(str(item), str(staging / item.name))


def staged_output(
    argument: str = "out_dir", *, owned: tuple[str, ...] = ("*",)
) -> Callable[[Callable], Callable]:
    """Decorator: the function writes its results into a :func:`staged_directory` of its
    ``argument`` (a folder path, default ``"out_dir"``), swapped in only when it returns.

    ``@staged_output("out_dir", owned=("figure1*", "table1.*"))`` on ``reproduce(…,
    out_dir="figures")`` makes an interrupted or failing run leave ``figures/`` exactly as it
    was, and a finished one leave its own outputs there, none of an earlier run's, next to the
    files it does not own (README, other commands' figures, sub-folders).
    """

    def decorate(func: Callable) -> Callable:
        signature = inspect.signature(func)
        if argument not in signature.parameters:
            raise TypeError(f"{func.__qualname__} has no argument {argument!r}")

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            with staged_directory(bound.arguments[argument], owned=owned) as staging:
                bound.arguments[argument] = staging
                return func(*bound.args, **bound.kwargs)

        return wrapper

    return decorate
