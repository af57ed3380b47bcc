"""Checkpoints of any model for the analysis commands (``prune``, ``estimate``,
``coadaptation``, ``spectrum``): the project's own, or the user's through a factory.

* A checkpoint of ``td-analysis train`` records its architecture: the project rebuilds it
  (:func:`td_analysis.training.loop.load_checkpoint`).
* Any other model: ``--model module:callable`` (or ``path/to/file.py:callable``) names a factory
  that returns the ``nn.Module`` whose ``state_dict`` the checkpoint holds
  (:func:`load_model_checkpoint`).  The checkpoint may be a :func:`td_analysis.training.fit.fit`
  checkpoint, a ``td-analysis train`` checkpoint, a dict with a ``"state_dict"`` (or
  ``"model_state_dict"``) entry, or a bare ``state_dict``; it is read with
  ``torch.load(weights_only=True)`` (tensors and plain data only, no code runs).
* A checkpoint that holds weights but no architecture, given without ``--model``, is refused by
  :func:`unbuildable_reason` with a one-line message saying what is missing.

The user model's data: ``--dataset`` (required: such a checkpoint does not record it), loaded by
:func:`td_analysis.data.load_dataset` (the data set's default preprocessing) and reshaped to its
``C × H × W`` images (:func:`model_data`).  The model is analysed in eval mode.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = [
    "ModelLabel",
    "ModelConfig",
    "ModelCheckpoint",
    "import_factory",
    "read_state_dict",
    "load_model_checkpoint",
    "unbuildable_reason",
    "model_data",
]

_STATE_KEYS = ("state_dict", "model_state_dict")


@dataclass(frozen=True)
class ModelLabel:
    """What the commands print for a model (``config.regulariser.label`` of a checkpoint)."""

    label: str


@dataclass(frozen=True)
class ModelConfig:
    """The little a user model's checkpoint says about its run (the commands read these)."""

    dataset: str | None
    preprocessing: str | None
    regulariser: object  # has .label


@dataclass
class ModelCheckpoint:
    """A user model rebuilt by its factory with the checkpoint's weights (eval mode)."""

    model: nn.Module
    config: ModelConfig
    path: Path
    factory: str


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def import_factory(spec: str) -> Callable[[], nn.Module]:
    """The callable named by ``module:callable`` or ``path/to/file.py:callable`` (one-line
    ``ValueError`` naming what is wrong)."""
    module_name, sep, attr = str(spec).rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--model must be module:callable (or file.py:callable), got {spec!r}")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ValueError(f"--model {spec}: file {path} does not exist")
            name = f"td_analysis_user_{path.stem}"
            loader = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(loader)
            sys.modules[name] = module
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - any import error becomes one line
        raise ValueError(
            f"--model {spec}: cannot import {module_name} ({_one_line(exc)})"
        ) from None
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise ValueError(f"--model {spec}: {module_name} has no attribute {attr!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ValueError(f"--model {spec}: {attr} is a {type(factory).__name__}, not callable")
    return factory


def read_state_dict(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """``(state_dict, payload)`` of a checkpoint file (see the module doc for the forms)."""
    from td_analysis.training.fit import FIT_CHECKPOINT_FORMAT
    from td_analysis.training.loop import read_checkpoint_file

    path = Path(path)
    payload = read_checkpoint_file(
        path,
        lambda exc: f"checkpoint {path} is corrupt or unreadable ({_one_line(exc)})",
        chain=False,
    )
    if not isinstance(payload, dict):
        raise ValueError(f"checkpoint {path} holds a {type(payload).__name__}, not a state_dict")
    if payload.get("format") == FIT_CHECKPOINT_FORMAT:
        state = payload.get("model")
    else:
        state = next((payload[k] for k in _STATE_KEYS if k in payload), payload)
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items())
    ):
        raise ValueError(f"checkpoint {path} holds no state_dict (names → tensors)")
    return state, payload


def _mismatch(model: nn.Module, state: dict[str, Tensor]) -> str:
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in want.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    parts = []
    for what, items in (("missing", missing), ("unexpected", unexpected), ("shapes", shapes)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            parts.append(f"{what}: {', '.join(items[:3])}{more}")
    return "; ".join(parts) or "the tensors do not load"


def load_model_checkpoint(path: str | Path, factory: str) -> ModelCheckpoint:
    """The model ``factory()`` returns, with the checkpoint's weights, in eval mode.

    Weights that do not fit the model (missing or unexpected keys, other shapes) or are not
    finite are a one-line ``ValueError`` naming them.
    """
    from td_analysis.nn.dropout import RegulariserConfig

    path = Path(path)
    make = import_factory(factory)
    state, payload = read_state_dict(path)
    try:
        model = make()
    except Exception as exc:  # noqa: BLE001 - the user's code: any error becomes one line
        raise ValueError(f"--model {factory}: calling it failed ({_one_line(exc)})") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"--model {factory} returned a {type(model).__name__}, not an nn.Module")
    try:
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"checkpoint {path} does not fit the model of --model {factory}: "
            f"{_mismatch(model, state)}"
        ) from None
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"checkpoint {path}: {name} holds non-finite values")
    label: object = ModelLabel(factory)
    config = payload.get("config")
    if isinstance(config, dict) and isinstance(config.get("regulariser"), dict):
        try:
            label = RegulariserConfig(**config["regulariser"])
        except (TypeError, ValueError):
            pass
    dataset = config.get("dataset") if isinstance(config, dict) else None
    return ModelCheckpoint(
        model=model.eval(),
        config=ModelConfig(dataset=dataset, preprocessing=None, regulariser=label),
        path=path,
        factory=factory,
    )


def unbuildable_reason(path: str | Path) -> str | None:
    """For a checkpoint with weights but no architecture the project knows (a :func:`fit`
    checkpoint, a bare ``state_dict``): a one-line message saying what is missing; else
    ``None`` (a readable td_analysis checkpoint, or a file that holds no weights at all)."""
    from td_analysis.training.fit import FIT_CHECKPOINT_FORMAT

    try:
        state, payload = read_state_dict(path)
    except (OSError, ValueError):
        return None
    if payload.get("format") == FIT_CHECKPOINT_FORMAT:
        what = "a td_analysis fit checkpoint: the weights of a model, not its architecture"
    elif "arch" in payload:
        return None
    else:
        what = f"a state_dict of {len(state)} tensors but no architecture the project can rebuild"
    return (
        f"checkpoint {path} holds {what}; pass --model module:callable, a factory returning "
        "the nn.Module whose state_dict it holds"
    )


def model_data(
    ckpt: ModelCheckpoint,
    dataset: str | None,
    split: str,
    root: str | Path | None = None,
) -> tuple[Tensor, Tensor]:
    """``split`` of ``dataset`` as images ``N × C × H × W`` for a user model, and the labels.

    One-line ``ValueError`` when no data set is known or the model does not map two of these
    images to ``2 × classes`` logits.
    """
    from td_analysis.data import dataset_info, load_dataset

    name = dataset or ckpt.config.dataset
    if name is None:
        raise ValueError(
            f"--model {ckpt.factory}: pass --dataset (checkpoint {ckpt.path} does not record "
            "the data set it was trained on)"
        )
    info = dataset_info(name)
    x, y = load_dataset(name, split, root=root)
    x = x.reshape(len(x), *info.image_shape)
    param = next(iter(ckpt.model.parameters()), None)
    probe = x[:2] if param is None else x[:2].to(param.device, param.dtype)
    try:
        with torch.no_grad():
            out = ckpt.model(probe)
    except Exception as exc:  # noqa: BLE001 - the user's model: any error becomes one line
        raise ValueError(
            f"the model of --model {ckpt.factory} does not take {name} images of shape "
            f"{tuple(info.image_shape)} ({_one_line(exc)})"
        ) from None
    classes = len(info.class_names)
    if not isinstance(out, Tensor) or tuple(out.shape) != (len(probe), classes):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"the model of --model {ckpt.factory} maps {name} images to {shape}, not to "
            f"N × {classes} logits"
        )
    return x, y
