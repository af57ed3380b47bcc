"""Argument types, help formatting and up-front checks shared by every ``td-analysis`` command.

Every type here raises :class:`argparse.ArgumentTypeError`, so a bad value is reported by
argparse as one line naming the option (``td-analysis train: error: argument --epochs: …``)
with exit status 2, *before* any data is loaded or any training starts.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

__all__ = [
    "DATA_HELP",
    "Deferred",
    "OneLineErrorParser",
    "DefaultsHelpFormatter",
    "show_defaults",
    "show_default",
    "ints",
    "fractions",
    "percents",
    "seeds",
    "int_at_least",
    "positive_int",
    "non_negative_int",
    "positive_ints",
    "non_negative_ints",
    "momentum",
    "positive_float",
    "non_negative_float",
    "unit_interval",
    "device",
    "output_file",
    "check_output_file",
    "output_folder",
    "output_stem",
    "result_stem",
    "command_stem",
]

DATA_HELP = (
    "folder holding the data set (e.g. cifar-10-batches-py or the official archive); "
    "default: $TD_ANALYSIS_DATA, else ~/.cache/td_analysis"
)


class OneLineErrorParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose usage errors are one line (plus exit status 2).

    The full usage of ``train`` is twenty lines; a log then shows the error at the bottom of a
    screenful. Here the error names the option and points at ``--help``.
    """

    def error(self, message: str) -> NoReturn:  # noqa: D102 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Deferred:
    """A help text worked out only when ``--help`` prints it (e.g. the task registry's defaults,
    which import torch): parsing never pays for it. :class:`DefaultsHelpFormatter` resolves it."""

    def __init__(self, make: Callable[[], str]) -> None:
        self.make = make

    def __call__(self) -> str:
        return self.make()

    def strip(self) -> Deferred:  # argparse tests ``action.help.strip()`` for truth
        return self

    def __bool__(self) -> bool:
        return True

    def __str__(self) -> str:
        return self.make()


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Append ``(default: …)`` to every option's help unless the help already states it.

    :class:`argparse.ArgumentDefaultsHelpFormatter` would repeat a default that the text already
    explains, and prints ``(default: False)`` for flags; this one skips both.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help() if isinstance(action.help, Deferred) else action.help
        text = (text or "").strip()
        default = action.default
        if (
            "default" in text.lower()
            or default is False
            or default is argparse.SUPPRESS
            or not action.option_strings
            or action.nargs == 0  # flags
        ):
            return text
        shown = "none" if default is None else show_default(default)
        return f"{text} (default: {shown})" if text else f"default: {shown}"


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Use :class:`DefaultsHelpFormatter` for ``parser`` and give options without a help text
    one, so that their default is printed too (argparse skips options whose help is ``None``)."""
    parser.formatter_class = DefaultsHelpFormatter
    for action in parser._actions:  # noqa: SLF001 - argparse keeps its options there
        if action.help is None and action.option_strings and action.nargs != 0:
            if action.default is not False and action.default is not argparse.SUPPRESS:
                shown = "none" if action.default is None else show_default(action.default)
                action.help = f"(default: {shown})"


def show_default(value: object) -> str:
    """A default as the user would type it (``%`` escaped for argparse)."""
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    return str(value).replace("%", "%%")


def _typed(name: str, check: Callable[[str], object]) -> Callable[[str], object]:
    check.__name__ = name  # argparse names the type in "invalid <name> value" messages
    return check


def ints(text: str) -> list[int]:
    """Comma-separated integers (empty entries ignored)."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from exc


def _distinct(values: list, what: str, text: str) -> list:
    """``values`` unless one repeats: a repeated entry is a typo (or a duplicate row), refused
    with one line naming it, by every list option alike."""
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in repeated)
        raise argparse.ArgumentTypeError(f"{what} must be distinct (repeated: {shown}): {text!r}")
    return values


def _numbers(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{what} must be comma-separated numbers: {text}") from exc
    if not values:
        raise argparse.ArgumentTypeError(f"give at least one of the {what}: {text!r}")
    return values


def fractions(text: str) -> list[float]:
    """Comma-separated distinct numbers in [0, 1), at least one."""
    values = _numbers(text, "fractions")
    if not all(0.0 <= v < 1.0 for v in values):  # also rejects NaN
        raise argparse.ArgumentTypeError(f"fractions must lie in [0, 1): {text}")
    return _distinct(values, "fractions", text)


def percents(text: str) -> list[float]:
    """Comma-separated distinct percentages in [0, 100], at least one (``--percent``,
    ``--ks``)."""
    values = _numbers(text, "percentages")
    if not all(0.0 <= v <= 100.0 for v in values):  # also rejects NaN
        raise argparse.ArgumentTypeError(f"k must be percentages in [0, 100]: {text}")
    return _distinct(values, "percentages", text)


def seeds(text: str) -> list[int]:
    """Comma-separated non-negative integers, at least one, no repeats (a spread needs them)."""
    values = ints(text)
    if not values:
        raise argparse.ArgumentTypeError("give at least one seed, e.g. 0,1,2")
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"seeds must be non-negative: {text!r}")
    return _distinct(values, "seeds", text)


def int_at_least(low: int) -> Callable[[str], int]:
    """An integer ``≥ low``."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from exc
        if value < low:
            raise argparse.ArgumentTypeError(f"must be ≥ {low}, got {value}")
        return value

    return _typed("integer", check)


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def _ints_at_least(low: int, what: str) -> Callable[[str], list[int]]:
    def check(text: str) -> list[int]:
        values = ints(text)
        bad = [v for v in values if v < low]
        if bad:
            raise argparse.ArgumentTypeError(f"{what} must be ≥ {low}, got {text!r}")
        return values

    return _typed("integer list", check)


positive_ints = _ints_at_least(1, "widths")
non_negative_ints = _ints_at_least(0, "indices")


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from exc
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number ``> 0``."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite positive number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number ``≥ 0``."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number ≥ 0, got {text!r}")
    return value


def momentum(text: str) -> float:
    """A number in [0, 1)."""
    value = _float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text!r}")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1]."""
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text!r}")
    return value


def device(text: str) -> str:
    """``cpu``, ``auto`` or a device this torch build can use (``cuda`` needs a GPU build and a
    visible GPU; ``cuda:N`` needs at least N + 1 of them)."""
    if text == "auto":
        return text
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device (cpu, cuda, auto)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                "this torch is a CPU-only build"
                if torch.version.cuda is None
                else "no CUDA GPU is visible"
            )
            raise argparse.ArgumentTypeError(f"{text!r} is not available: {why}; use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text!r} is not available: only {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise argparse.ArgumentTypeError(f"{text!r} is not available on this machine")
    elif dev.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text!r} is not supported (cpu, cuda, auto)")
    return text


def check_output_file(path: str | os.PathLike[str]) -> Path:
    """``path`` if a file can be written there: not an existing folder, and its nearest existing
    parent is a writable folder. Raises :class:`ValueError` naming the problem otherwise."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"cannot create {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: folder {parent} is not writable")
    try:  # permissions can lie (root, /proc, a read-only mount): create and remove a file there
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise ValueError(
            f"cannot write {path}: no file can be created in {parent} ({exc.strerror or exc})"
        ) from None
    return path


def output_file(text: str) -> Path:
    """argparse type of an output file path (see :func:`check_output_file`)."""
    try:
        return check_output_file(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def output_folder(text: str) -> Path:
    """argparse type of an output folder: not an existing file, nearest existing parent
    writable."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file, not a folder")
    try:
        check_output_file(path / "x") if path.is_dir() else check_output_file(path)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return path


# ----------------------------------------------------------------------------- output names
def output_stem(out: str | os.PathLike[str] | None, default: str) -> str:
    """The output path without extension: ``--out`` as given, the whole name kept (only a
    trailing ``.csv``/``.json``/``.png``/``.pdf`` is dropped, so ``sweep_v1.2`` stays
    ``sweep_v1.2``, never ``sweep_v1``), else ``default``."""
    if out is None:
        return default
    text = str(out)
    for ext in (".csv", ".json", ".png", ".pdf"):
        if text.lower().endswith(ext):
            return text[: -len(ext)]
    return text


def _name_part(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return "_".join(_name_part(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return "+".join(p.strip() for p in str(value).split(",") if p.strip())


def result_stem(
    checkpoint: str | os.PathLike[str], what: str, options: Sequence[tuple[str, object]] = ()
) -> str:
    """``<checkpoint without .pt>-<what>[-<name><value>…]``: the whole stem of the checkpoint
    (``td_gamma0.75.pt`` → ``td_gamma0.75``, only ``.pt`` removed) and one part per option that
    changes the result and is set (``None`` and ``False`` options are left out; ``True`` adds
    the name alone), so runs that differ in them never overwrite each other."""
    text = str(checkpoint)
    stem = text[:-3] if text.endswith(".pt") else text
    parts = [what] if what else []
    for name, value in options:
        if value is None or value is False:
            continue
        parts.append(name if value is True else f"{name}{_name_part(value)}")
    return "-".join([stem, *parts])


def command_stem(
    args: argparse.Namespace,
    what: str,
    options: Sequence[tuple[str, object]] = (),
    extensions: Sequence[str] = (".json",),
) -> str:
    """The one naming rule of every command that writes results of a checkpoint: ``--out``
    (:func:`output_stem`), else :func:`result_stem` of ``args.checkpoint``; every
    ``STEM<extension>`` is checked writable here, before any work (``ValueError`` otherwise)."""
    stem = output_stem(getattr(args, "out", None), result_stem(args.checkpoint, what, options))
    for ext in extensions:
        check_output_file(f"{stem}{ext}")
    return stem
