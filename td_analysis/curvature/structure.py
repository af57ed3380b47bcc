"""What a model is, decided once from its structure: closed-form ReLU net or general classifier.

The closed form of :mod:`td_analysis.curvature.dense` is exact only for
``f(x) = W_L relu(… relu(W_1 flatten(x) + b_1) …) + b_L``.  Whether a model computes that is
decided here from its *structure*, never by comparing outputs on a sample (a sample can hide a
ReLU6, a leaky slope or a missing activation).  A model qualifies when it is

* a :class:`td_analysis.nets.models.DenseNet` whose ``forward`` is DenseNet's own (not overridden),
* an ``nn.Sequential`` (exactly that class) of an optional leading ``nn.Flatten()`` then
  ``nn.Linear``, ``nn.ReLU``, ``nn.Linear``, …, ``nn.Linear`` (ReLU between every two Linear
  layers, nothing else), or
* any module that *declares* it by defining ``dense_relu_layers()`` returning its ``nn.Linear``
  layers in forward order: the declaration promises that ``forward(x)`` is the formula above
  (inputs flattened from dimension 1) and is trusted.

and, in every case, every parameter of the model belongs to one of those layers, no layer is used
twice and the model has no buffers.  Anything else goes to the general ``torch.func`` backend.

:func:`check_model` refuses what no backend can analyse correctly: train-mode BatchNorm (batch
statistics couple the examples and its running statistics would be updated) and train-mode
Dropout (a random function has no Hessian).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..models import DenseNet

__all__ = ["DenseStructure", "dense_structure", "check_model", "STOCHASTIC_OR_BATCH_COUPLED"]

_DROPOUT = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
_INSTANCE_NORM = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
#: Modules whose train-mode forward is random or couples the examples of a batch.
STOCHASTIC_OR_BATCH_COUPLED: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    *_INSTANCE_NORM,
    *_DROPOUT,
)


@dataclass(frozen=True)
class DenseStructure:
    """A model recognised as ``W_L relu(… relu(W_1 flatten(x) + b_1) …) + b_L``.

    ``layers`` are the ``nn.Linear`` modules in forward order; ``roles`` maps every parameter name
    of the model to ``(layer index, "weight" | "bias")``; ``flatten`` says whether the model
    flattens its inputs from dimension 1 (otherwise inputs must be 2-D).
    """

    layers: tuple[nn.Linear, ...]
    roles: dict[str, tuple[int, str]]
    flatten: bool


def _sequential_layers(model: nn.Sequential) -> tuple[list[nn.Linear], bool] | str:
    mods = list(model)
    flatten = False
    if mods and type(mods[0]) is nn.Flatten:
        if (mods[0].start_dim, mods[0].end_dim) != (1, -1):
            return "its nn.Flatten does not flatten dimensions 1 to -1"
        flatten, mods = True, mods[1:]
    if not mods or len(mods) % 2 == 0:
        return "it is not Linear (ReLU Linear)*"
    for i, m in enumerate(mods):
        want = nn.Linear if i % 2 == 0 else nn.ReLU
        if type(m) is not want:
            return f"module {i} is {type(m).__name__}, expected {want.__name__}"
    return [m for m in mods[::2]], flatten  # type: ignore[misc]


def dense_structure(model: nn.Module) -> DenseStructure | str:
    """The closed-form structure of ``model`` or a string saying why it does not have one."""
    declared = getattr(model, "dense_relu_layers", None)
    if isinstance(model, DenseNet) and type(model).forward is DenseNet.forward:
        layers, flatten = list(model.layers), True
    elif type(model) is nn.Sequential:
        found = _sequential_layers(model)
        if isinstance(found, str):
            return f"nn.Sequential not of the closed form: {found}"
        layers, flatten = found
    elif callable(declared):
        layers, flatten = list(declared()), True
    else:
        return (
            f"{type(model).__name__} is neither a td_analysis DenseNet, an nn.Sequential of "
            "Linear/ReLU, nor declares dense_relu_layers()"
        )
    if not layers or not all(type(layer) is nn.Linear for layer in layers):
        return "the closed form needs a non-empty list of nn.Linear layers"
    if len({id(layer) for layer in layers}) != len(layers):
        return "a Linear layer is used twice (weight sharing)"
    for i in range(len(layers) - 1):
        if layers[i].out_features != layers[i + 1].in_features:
            return f"layers {i} and {i + 1} have mismatched widths"
    owner = {}
    for i, layer in enumerate(layers):
        owner[id(layer.weight)] = (i, "weight")
        if layer.bias is not None:
            owner[id(layer.bias)] = (i, "bias")
    roles = {}
    for name, p in model.named_parameters():
        if id(p) not in owner:
            return f"parameter {name} is outside the Linear layers"
        roles[name] = owner[id(p)]
    if len(roles) != len(owner):
        return "a layer's parameter is shared or missing from named_parameters()"
    if any(True for _ in model.buffers()):
        return "the model has buffers (e.g. normalisation statistics)"
    return DenseStructure(tuple(layers), roles, flatten)


def check_model(model: nn.Module) -> None:
    """Refuse train-mode BatchNorm / InstanceNorm with running statistics / Dropout (p > 0)."""
    for name, m in model.named_modules():
        if not m.training or not isinstance(m, STOCHASTIC_OR_BATCH_COUPLED):
            continue
        if isinstance(m, _DROPOUT) and m.p == 0:
            continue
        if isinstance(m, _INSTANCE_NORM) and not m.track_running_stats:
            continue  # per-example statistics: no coupling, nothing updated
        kind = type(m).__name__
        raise ValueError(
            f"module {name or '(root)'} ({kind}) is in training mode: its output is "
            f"{'random' if 'Dropout' in kind else 'coupled across the batch'} and has no "
            "per-example Hessian; call model.eval() first"
        )
