"""Helpers shared by the analysis commands: loading a checked checkpoint and its data, the
lazily imported command functions, and the ``<stem>.csv``/``<stem>.json`` row outputs."""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Callable
from pathlib import Path

from td_analysis.utils import cliargs
from td_analysis.utils.io import atomic_write_json, atomic_write_text


def lazy_command(target: str):
    """A command function imported when the command runs: ``"module:function"``."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        module, name = target.split(":")
        return getattr(importlib.import_module(module), name)(args)

    run.__qualname__ = run.__name__ = target.split(":")[1]
    return run


def load_checked_checkpoint(path: str | Path, model: str | None = None):
    """:func:`td_analysis.training.loop.load_checkpoint` (which refuses non-finite weights with a
    one-line ``ValueError`` naming the parameter): what every command loads a checkpoint with.
    With ``model`` (``--model module:callable``) any model that factory builds
    (:func:`td_analysis.training.usermodels.load_model_checkpoint`); a checkpoint holding weights
    but no architecture, without it, is a one-line error saying so."""
    from td_analysis.training import usermodels
    from td_analysis.training.loop import load_checkpoint

    if model is not None:
        return usermodels.load_model_checkpoint(path, model)
    try:
        return load_checkpoint(path)
    except ValueError:
        reason = usermodels.unbuildable_reason(path)
        if reason is None:
            raise
        raise ValueError(reason) from None


def check_input_size(ckpt, x, args: argparse.Namespace) -> None:
    """One-line error if the checkpoint's network does not take the data's input size."""
    if not hasattr(ckpt.model, "arch"):  # a --model network: checked by usermodels.model_data
        return
    want = ckpt.model.arch["in_features"]
    have = x[0].numel() if x.ndim > 1 and len(x) else None
    if have is not None and have != want:
        raise ValueError(
            f"checkpoint {args.checkpoint} takes {want} inputs per example, but the "
            f"--split {args.split} data have {have}: it was trained on other data"
        )


def _rows_to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def analysis_data(args: argparse.Namespace, ckpt):
    """``--split`` of ``--dataset`` (default: the checkpoint's data set), preprocessed as the
    network was trained; a network that does not take the data's inputs is a one-line error."""
    from td_analysis.data import load_dataset
    from td_analysis.training.loop import check_features

    if hasattr(ckpt, "factory"):  # --model: images N × C × H × W of --dataset
        from td_analysis.training.usermodels import model_data

        return model_data(ckpt, getattr(args, "dataset", None), args.split, args.data_dir)
    name = getattr(args, "dataset", None) or ckpt.config.dataset
    x, y = load_dataset(
        name, args.split, root=args.data_dir, preprocessing=ckpt.config.preprocessing
    )
    try:
        check_features(ckpt.config, x, name)
    except ValueError as exc:
        raise ValueError(f"checkpoint {args.checkpoint}: {exc}") from None
    return x, y


def _result_options(args: argparse.Namespace) -> list[tuple[str, object]]:
    """The options of ``prune``/``estimate`` that change the rows and are not already in
    ``what``: data set, layers, data size, fractions or percentages (default: left out)."""
    defaults = parser_defaults(args)
    options: list[tuple[str, object]] = [("", getattr(args, "dataset", None))]
    for name in ("layers", "limit", "fractions", "percent"):
        value = getattr(args, name, None)
        options.append((name, None if value == defaults.get(name) else value))
    model = getattr(args, "model", None)  # --model module:callable (a custom network)
    if model:
        options.append(("model-", model.replace(":", ".")))
    return options


#: the ``td-analysis`` parser's factory, :func:`td_analysis.cli.parser.build_parser`, registered
#: by that module when it is imported (it imports the commands, which import this module)
_PARSER_FACTORY: list[Callable[[], argparse.ArgumentParser]] = []


def register_parser(factory: Callable[[], argparse.ArgumentParser]) -> None:
    """Make ``factory`` the parser whose defaults :func:`parser_defaults` reads."""
    _PARSER_FACTORY[:] = [factory]


def parser_defaults(args: argparse.Namespace) -> dict:
    """The defaults of ``args.command``'s options (to leave defaults out of file names)."""
    parser = _PARSER_FACTORY[0]()  # registered: importing this module imports td_analysis.cli
    sub = next(
        a
        for a in parser._actions
        if isinstance(a, argparse._SubParsersAction)  # noqa: SLF001
    )
    command = sub.choices[args.command]
    return {a.dest: a.default for a in command._actions}  # noqa: SLF001


def rows_stem(args: argparse.Namespace, what: str) -> str:
    """:func:`td_analysis.utils.cliargs.command_stem`: ``--out`` (whole stem), else
    ``<checkpoint>-<what>[-<option><value>…]``; checked writable before any work."""
    return cliargs.command_stem(args, what, _result_options(args), (".csv", ".json"))


def write_rows(args: argparse.Namespace, rows: list[dict], what: str) -> None:
    """Rows to ``<stem>.csv`` and ``<stem>.json`` (stem: ``--out``, else :func:`_default_stem`)."""
    stem = rows_stem(args, what)
    csv_path, json_path = Path(f"{stem}.csv"), Path(f"{stem}.json")
    atomic_write_text(csv_path, _rows_to_csv(rows))
    atomic_write_json(json_path, rows)
    print(f"wrote {csv_path} and {json_path}")


def load_for_analysis(args: argparse.Namespace):
    ckpt = load_checked_checkpoint(args.checkpoint, getattr(args, "model", None))
    x, y = analysis_data(args, ckpt)
    check_input_size(ckpt, x, args)
    if args.limit is not None:  # ≥ 1 (checked while parsing)
        x, y = x[: args.limit], y[: args.limit]
    return ckpt, x, y
