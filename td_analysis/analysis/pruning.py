"""Post-hoc magnitude pruning as in the official evaluation, and pruning curves.

For a torch weight ``W`` (out × in) and a fraction k:

* ``"weight"``: per output unit o, remove ``{i : |W_oi| < sort(|W_o,:|)[⌊k·in⌋]}`` (the same
  rule that targets weights in training, so pruning at k = γ removes the targeted set);
* ``"unit"``: remove the rows (output units) with ``‖W_o,:‖₂ < sort(‖W‖₂)[⌊k·out⌋]``;
* ``"global"``: remove ``{(l, o, i) : |W^l_oi| < τ}`` with τ the ⌊k·n⌋-th smallest magnitude over
  all chosen layers together.

Biases are never pruned by these rules.  Pruning returns a pruned copy and the removed masks; the
caller's model is never mutated.

The reference repository's rules (seed 002's code; ``REFERENCE_KINDS``, issue #11), with ``k``
a percentage in [0, 100] and the hidden layers pruned (the output layer kept) unless ``layers``
says otherwise:

* ``"weight"`` (:func:`weight_pruning_masks`): in each chosen weight matrix (n entries) the
  ``m = ⌊k·n/100⌋`` entries of smallest ``|w|`` are set to zero (ties broken by position,
  row-major), the others keep their value ``w``;
* ``"unit"`` (:func:`unit_pruning_masks`): in each chosen layer (``out`` units) the
  ``m = ⌊k·out/100⌋`` units with the smallest L2 norm ``‖W_o,:‖₂`` of their incoming weights are
  removed: their incoming weights (row o), their bias ``b_o`` and their outgoing weights
  (column o of the next layer's weight).

Masks are keyed by parameter name and may include biases and the next layer's weight.

Any model (issue #21): :func:`module_pruning_masks` prunes the Linear and Conv1d/2d/3d layers of
any ``nn.Module`` (conv filters are units; a filter before BatchNorm is pruned as the official
evaluation does).  :func:`weight_pruning_masks` and :func:`unit_pruning_masks` are calls of it;
:func:`pruning_masks` keeps the training-time threshold rule above (ties kept, ``int(k·n)``) for
the fraction API of the toy network; curves and tables use the module rules for models with
Conv layers or when given ``modules``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from td_analysis.nn.dropout import targeted_unit_mask, targeted_weight_mask
from td_analysis.nn.targeted import select_modules as nn_select_modules
from td_analysis.training.loop import evaluate
from td_analysis.utils.progress import progress_bar as tqdm

__all__ = [
    "PRUNING_KINDS",
    "REFERENCE_KINDS",
    "SEED_KINDS",
    "pruning_masks",
    "apply_masks",
    "prune",
    "pruning_curve",
    "validate_percent",
    "hidden_layers",
    "weight_pruning_masks",
    "unit_pruning_masks",
    "reference_pruning_masks",
    "seed_pruning_masks",
    "prune_percent",
    "pruning_table",
    "PRUNABLE_TYPES",
    "MODULE_KINDS",
    "SCOPES",
    "Successor",
    "prunable_modules",
    "select_modules",
    "successors",
    "module_pruning_masks",
    "prunable_weight_names",
    "module_rules",
]

PRUNING_KINDS = ("weight", "unit", "global")
REFERENCE_KINDS = ("weight", "unit")
#: the old name ("seed" meant the reference repository, seed 002; issue #20)
SEED_KINDS = REFERENCE_KINDS


def _linear_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """``(parameter name of the weight, layer)`` for every ``nn.Linear`` in order."""
    return [
        (f"{name}.weight" if name else "weight", m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear)
    ]


def _chosen_layers(model: nn.Module, layers: Iterable[int] | None) -> list[tuple[str, nn.Linear]]:
    linear = _linear_layers(model)
    if not linear:
        raise ValueError("the model has no nn.Linear layers to prune")
    if layers is None:
        return linear
    idx = list(layers)
    bad = [i for i in idx if not 0 <= i < len(linear)]
    if bad:
        raise ValueError(f"layer indices {bad} out of range: the model has {len(linear)} layers")
    return [linear[i] for i in sorted(set(idx))]


def _check_fraction(fraction: float) -> float:
    fraction = float(fraction)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"pruning fraction must be in [0, 1), got {fraction}")
    return fraction


def pruning_masks(
    model: nn.Module, fraction: float, kind: str = "weight", layers: Iterable[int] | None = None
) -> dict[str, Tensor]:
    """Boolean masks (True = removed) keyed by weight name, for the chosen ``layers``."""
    fraction = _check_fraction(fraction)
    if kind not in PRUNING_KINDS:
        raise ValueError(f"unknown pruning kind {kind!r}; choose one of {PRUNING_KINDS}")
    chosen = _chosen_layers(model, layers)
    if kind == "weight":
        return {n: targeted_weight_mask(m.weight, fraction) for n, m in chosen}
    if kind == "unit":
        return {
            n: targeted_unit_mask(m.weight, fraction)[:, None].expand_as(m.weight).clone()
            for n, m in chosen
        }
    mags = torch.cat([m.weight.detach().abs().reshape(-1) for _, m in chosen])
    k = int(fraction * mags.numel())
    if k == 0:
        return {n: torch.zeros_like(m.weight, dtype=torch.bool) for n, m in chosen}
    threshold = torch.kthvalue(mags.cpu(), k + 1).values.to(mags.device)
    return {n: m.weight.detach().abs() < threshold for n, m in chosen}


def apply_masks(model: nn.Module, masks: dict[str, Tensor]) -> nn.Module:
    """A deep copy of ``model`` with the masked weights set to zero."""
    pruned = copy.deepcopy(model)
    params = dict(pruned.named_parameters())
    unknown = set(masks) - set(params)
    if unknown:
        raise KeyError(f"masks name unknown parameters {sorted(unknown)}")
    with torch.no_grad():
        for name, mask in masks.items():
            if mask.shape != params[name].shape:
                raise ValueError(
                    f"mask for {name} has shape {tuple(mask.shape)}, "
                    f"the parameter {tuple(params[name].shape)}"
                )
            params[name].masked_fill_(mask.to(params[name].device), 0.0)
    return pruned


def prune(
    model: nn.Module, fraction: float, kind: str = "weight", layers: Iterable[int] | None = None
) -> tuple[nn.Module, dict[str, Tensor]]:
    """``(pruned copy, removed masks)``: magnitude pruning of ``fraction`` (see module doc)."""
    masks = pruning_masks(model, fraction, kind, layers)
    return apply_masks(model, masks), masks


def pruning_curve(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    fractions: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 0.9),
    kind: str = "weight",
    layers: Iterable[int] | None = None,
    *,
    progress: bool = False,
    modules: ModuleSelection | None = None,
) -> list[dict]:
    """Loss and accuracy of the pruned network at each fraction (one dict per fraction).

    With ``modules`` (or a model with Conv layers and no ``layers``) the masks are
    :func:`module_pruning_masks` at k = 100·fraction percent (``kind`` "weight" per unit or
    "unit"); ``removed_share`` then counts weights only (biases excluded).
    """
    rows = []
    layers = None if layers is None else list(layers)
    use_modules = module_rules(model, layers, modules)
    for fraction in tqdm(list(fractions), desc=f"prune {kind}", disable=not progress, leave=False):
        if use_modules:
            masks = module_pruning_masks(
                model, kind, 100.0 * _check_fraction(fraction), modules=modules
            )
            pruned = apply_masks(model, masks)
            removed, total = _weights_removed(masks)
        else:
            pruned, masks = prune(model, fraction, kind, layers)
            removed = sum(int(m.sum()) for m in masks.values())
            total = sum(m.numel() for m in masks.values())
        metrics = evaluate(pruned, inputs, targets)
        rows.append(
            {
                "kind": kind,
                "fraction": float(fraction),
                "removed": removed,
                "removed_share": removed / total,
                "loss": metrics["loss"],
                "accuracy": metrics["accuracy"],
            }
        )
    return rows


# ------------------------------------------------------------------------------------------------
# The reference repository's per-layer rules, k in percent
# ------------------------------------------------------------------------------------------------


def validate_percent(k: float) -> float:
    """``k``, a share in percent, must lie in [0, 100]."""
    value = float(k)
    if not 0.0 <= value <= 100.0:  # also rejects NaN
        raise ValueError(f"k must be a percentage in [0, 100], got {k}")
    return value


def _count(k: float, n: int) -> int:
    """``⌊k·n/100⌋``, exact for the usual k (the rounding guards 0.1-style binary fractions)."""
    return min(n, math.floor(round(k * n / 100.0, 9)))


def hidden_layers(model: nn.Module) -> list[int]:
    """Indices of every ``nn.Linear`` but the last (the output layer, which is kept)."""
    n = len(_linear_layers(model))
    if n == 0:
        raise ValueError("the model has no nn.Linear layers to prune")
    return list(range(n - 1))


def _layer_indices(model: nn.Module, layers: Iterable[int] | None) -> list[int]:
    if layers is None:
        return hidden_layers(model)
    n = len(_linear_layers(model))
    if n == 0:
        raise ValueError("the model has no nn.Linear layers to prune")
    idx = sorted({int(i) for i in layers})
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise ValueError(f"layer indices {bad} out of range: the model has {n} layers")
    return idx


def _smallest(values: Tensor, m: int) -> Tensor:
    """Boolean mask of the ``m`` smallest entries of a 1-D tensor (ties: lower index first)."""
    mask = torch.zeros(values.shape, dtype=torch.bool, device=values.device)
    if m > 0:
        mask[torch.argsort(values, stable=True)[:m]] = True
    return mask


@torch.no_grad()
def weight_pruning_masks(
    model: nn.Module, k: float, layers: Iterable[int] | None = None
) -> dict[str, Tensor]:
    """The reference repository's weight pruning: the ⌊k·n/100⌋ smallest ``|w|`` of each chosen
    weight matrix.

    ``layers`` (indices of the ``nn.Linear`` layers) defaults to the hidden layers; masks are
    True where a weight is removed, keyed by weight name.
    """
    k = validate_percent(k)
    linear = _linear_layers(model)
    names = [_module_of(linear[i][0]) for i in _layer_indices(model, layers)]
    return module_pruning_masks(model, "weight", k, modules=names, scope="layer")


def _module_of(weight_name: str) -> str:
    """``layers.0.weight`` → ``layers.0``; ``weight`` (a bare Linear) → ``""``."""
    return weight_name.removesuffix("weight").removesuffix(".")


@torch.no_grad()
def unit_pruning_masks(
    model: nn.Module, k: float, layers: Iterable[int] | None = None
) -> dict[str, Tensor]:
    """The reference repository's unit pruning: remove the ⌊k·out/100⌋ units of smallest
    incoming L2 norm.

    For each chosen layer l (default: the hidden layers) the units ``o`` with the smallest
    ``‖W_l[o, :]‖₂`` go, with their bias ``b_l[o]`` and their outgoing weights ``W_{l+1}[:, o]``.
    The output layer has no outgoing weights and cannot be unit-pruned.  Masks (True = removed)
    are keyed by parameter name; a weight touched twice (its rows pruned as layer l+1, its
    columns as the outgoing weights of layer l) gets the union.
    """
    k = validate_percent(k)
    linear = _linear_layers(model)
    chosen = _layer_indices(model, layers)
    if chosen and chosen[-1] == len(linear) - 1:
        raise ValueError(
            f"unit pruning removes hidden units with their outgoing weights: layer "
            f"{len(linear) - 1} is the output layer (choose among {hidden_layers(model)})"
        )
    readers = {}  # the reference network is a chain: layer l + 1 reads the units of layer l
    for i in chosen:
        name, layer = linear[i]
        next_name, nxt = linear[i + 1]
        if nxt.weight.shape[1] != layer.weight.shape[0]:
            raise ValueError(
                f"{next_name} has {nxt.weight.shape[1]} inputs but {name} has "
                f"{layer.weight.shape[0]} units: unit pruning needs a chain of nn.Linear layers"
            )
        readers[_module_of(name)] = Successor(_module_of(next_name))
    names = [_module_of(linear[i][0]) for i in chosen]
    return _module_masks(model, "unit", k, names, "unit", readers) if names else {}


def reference_pruning_masks(
    model: nn.Module, k: float, kind: str = "weight", layers: Iterable[int] | None = None
) -> dict[str, Tensor]:
    """:func:`weight_pruning_masks` (``kind="weight"``) or :func:`unit_pruning_masks`."""
    if kind == "weight":
        return weight_pruning_masks(model, k, layers)
    if kind == "unit":
        return unit_pruning_masks(model, k, layers)
    raise ValueError(f"unknown pruning kind {kind!r}; choose one of {REFERENCE_KINDS}")


#: the old name ("seed" meant the reference repository, seed 002; issue #20)
seed_pruning_masks = reference_pruning_masks


def prune_percent(
    model: nn.Module, k: float, kind: str = "weight", layers: Iterable[int] | None = None
) -> tuple[nn.Module, dict[str, Tensor]]:
    """``(pruned copy, removed masks)`` by the reference repository's rule ``kind`` at k percent."""
    masks = reference_pruning_masks(model, k, kind, layers)
    return apply_masks(model, masks), masks


def pruning_table(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    ks: Sequence[float] = (0, 25, 50, 60, 70, 80, 90, 95, 97, 99),
    kinds: Sequence[str] = REFERENCE_KINDS,
    layers: Iterable[int] | None = None,
    *,
    progress: bool = False,
    modules: ModuleSelection | None = None,
) -> list[dict]:
    """Loss and accuracy after the reference repository's pruning, one dict per (kind, k).

    Records: ``{"kind", "k", "removed", "removed_share", "loss", "accuracy"}``, where
    ``removed_share`` counts the removed weights (biases excluded) among the weights of the
    pruned layers (for unit pruning including the outgoing weights).  With ``modules`` (or a
    model with Conv layers and no ``layers``): :func:`module_pruning_masks` (weight pruning
    with ``scope="layer"``, the reference repository's rule; unit pruning of Linear/Conv units).
    """
    ks = [validate_percent(k) for k in ks]
    layers = None if layers is None else list(layers)
    for kind in kinds:
        if kind not in REFERENCE_KINDS:
            raise ValueError(f"unknown pruning kind {kind!r}; choose one of {REFERENCE_KINDS}")
    use_modules = module_rules(model, layers, modules)
    rows = []
    jobs = [(kind, k) for kind in kinds for k in ks]
    for kind, k in tqdm(jobs, desc="prune", disable=not progress, leave=False):
        if use_modules:
            scope = "layer" if kind == "weight" else "unit"
            masks = module_pruning_masks(model, kind, k, modules=modules, scope=scope)
            pruned = apply_masks(model, masks)
        else:
            pruned, masks = prune_percent(model, k, kind, layers)
        removed, total = _weights_removed(masks)  # biases are not counted
        metrics = evaluate(pruned, inputs, targets)
        rows.append(
            {
                "kind": kind,
                "k": k,
                "removed": removed,
                "removed_share": removed / total if total else 0.0,
                "loss": metrics["loss"],
                "accuracy": metrics["accuracy"],
            }
        )
    return rows


# ------------------------------------------------------------------------------------------------
# Any model: Linear and Conv1d/2d/3d layers (issue #21)
# ------------------------------------------------------------------------------------------------

#: Layers :func:`module_pruning_masks` prunes: their weight viewed as ``reshape(out, -1)``.
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
MODULE_KINDS = ("weight", "unit")
SCOPES = ("unit", "layer")
#: Modules that act on each unit (channel) separately and map 0 to 0, so a removed unit stays
#: removed through them: the next Linear/Conv after them in an ``nn.Sequential`` is its reader.
_UNITWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Hardtanh,
    nn.Softsign,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_NORMS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
)

ModuleSelection = (
    str | type[nn.Module] | Callable[[str, nn.Module], bool] | Iterable[str | type[nn.Module]]
)


@dataclass(frozen=True)
class Successor:
    """The layer that reads unit o of a pruned layer, and where: ``weight[:, cols(o)]``.

    ``next`` is the reading layer's module name (None: unknown); its input dimension 1 holds
    ``per_unit`` consecutive entries per unit (1, or the spatial size when an ``nn.Flatten`` sits
    between a conv and a Linear).  ``norm`` names a BatchNorm that follows the unit (then only
    its incoming weights are pruned, see :func:`module_pruning_masks`).
    """

    next: str | None
    per_unit: int = 1
    norm: str | None = None


def prunable_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every Linear and Conv1d/2d/3d, in ``named_modules()`` order (a shared
    module once)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)]


def select_modules(
    model: nn.Module, modules: ModuleSelection | None = None
) -> list[tuple[str, nn.Module]]:
    """The layers ``modules`` chooses, in ``named_modules()`` order.

    ``None``: every Linear and Conv1d/2d/3d except the output layer (the last of them in
    ``named_modules()`` order, i.e. registration order); a module name or names; a module type
    or types (every module of that type); or a predicate ``f(name, module) -> bool`` asked about
    each Linear/Conv layer.  A chosen module that is no Linear/Conv layer, an unknown name or an
    empty choice is a one-line ``ValueError``.  One implementation with
    :func:`td_analysis.nn.select_modules`: its ``strict=True`` rules.
    """
    return nn_select_modules(model, modules, strict=True)


def _unit_count(module: nn.Module) -> int:
    return int(module.weight.shape[0])


def _input_units(module: nn.Module) -> int | None:
    """Inputs (channels) of a layer that reads its input dimension 1 densely (groups = 1)."""
    if isinstance(module, nn.Linear):
        return int(module.in_features)
    if isinstance(module, PRUNABLE_TYPES[1:]) and module.groups == 1:
        return int(module.in_channels)
    return None


def successors(model: nn.Module) -> dict[str, Successor]:
    """For each Linear/Conv layer whose readers are known, the layer reading its units.

    Known from the structure only: a :class:`td_analysis.nets.models.DenseNet` (or another model the
    curvature code recognises as ``W_L relu(… relu(W_1 x))``) is a chain; inside an
    ``nn.Sequential`` (its own ``forward``) a layer is read by the next Linear/Conv child, past
    unit-wise children (activations, dropout, pooling, ``nn.Flatten`` from dim 1 before a Linear
    whose inputs are a multiple of the units) and BatchNorm (recorded in ``norm``).  Anything
    else (residual blocks, attention, weight sharing, a custom forward) has no known reader.
    """
    from td_analysis.curvature.structure import dense_structure

    names = {id(m): n for n, m in model.named_modules()}
    out: dict[str, Successor] = {}
    found = dense_structure(model)
    if not isinstance(found, str):
        layers = list(found.layers)
        for a, b in zip(layers[:-1], layers[1:], strict=True):
            out[names[id(a)]] = Successor(names[id(b)])
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential) or type(seq).forward is not nn.Sequential.forward:
            continue
        children = list(seq.children())
        for i, child in enumerate(children):
            if isinstance(child, PRUNABLE_TYPES) and id(child) in names:
                found_next = _reader(children[i + 1 :], _unit_count(child), names)
                if found_next is not None:
                    out.setdefault(names[id(child)], found_next)
    return out


def _reader(rest: list[nn.Module], units: int, names: dict) -> Successor | None:
    """The reader of ``units`` outputs among the modules ``rest`` that follow in a Sequential
    (``next=None`` with ``norm`` set when a BatchNorm follows but the reader is unknown)."""
    per_unit, norm, flat = 1, None, False
    for m in rest:
        unknown = Successor(None, norm=norm) if norm else None
        if isinstance(m, PRUNABLE_TYPES):
            width = _input_units(m)
            if width is None:
                return unknown
            if flat and isinstance(m, nn.Linear) and width % units == 0:
                per_unit = width // units
            elif flat or width != units:
                return unknown
            return Successor(names[id(m)], per_unit, norm)
        if isinstance(m, _NORMS) and not flat and m.num_features == units:
            norm = norm or names[id(m)]
        elif isinstance(m, nn.Flatten) and not flat and (m.start_dim, m.end_dim) == (1, -1):
            flat = True
        elif not isinstance(m, _UNITWISE):
            return unknown
    return Successor(None, norm=norm) if norm else None


def _smallest_rows(values: Tensor, m: int) -> Tensor:
    """Per row of a 2-D tensor, the ``m`` smallest entries (ties: lower index first)."""
    mask = torch.zeros(values.shape, dtype=torch.bool, device=values.device)
    if m > 0:
        idx = torch.argsort(values, dim=1, stable=True)[:, :m]
        mask.scatter_(1, idx, True)
    return mask


@torch.no_grad()
def module_pruning_masks(
    model: nn.Module,
    kind: str,
    k: float,
    *,
    modules: ModuleSelection | None = None,
    scope: str = "unit",
) -> dict[str, Tensor]:
    """Magnitude-pruning masks (True = removed) for the Linear and Conv layers of any model.

    Each chosen layer's weight is viewed as ``W = weight.reshape(out, -1)`` (a conv filter's
    incoming weights are its ``in × kernel`` entries, the grouping of the official TF code's
    ``reshape(-1, out)``), ``k`` is a percent in [0, 100]:

    * ``kind="weight"``: remove the ⌊k·n/100⌋ smallest ``|w|`` — with ``scope="unit"`` (the
      official evaluation) among each row of W (n = its length), with ``scope="layer"`` (seed
      002's rule) among the whole layer (n = ``weight.numel()``); ties by position.
    * ``kind="unit"``: remove the ⌊k·out/100⌋ units (rows of W: neurons, conv filters) of
      smallest ``‖W_o,:‖₂``: their incoming weights, their bias and the weights reading them in
      the next layer (``W_next[:, cols(o)]``) where that layer is known (:func:`successors`:
      DenseNet-like chains and ``nn.Sequential``; elsewhere only the unit's own incoming weights
      and bias go, and the unit then outputs ``act(0)``).  When a BatchNorm follows the unit the
      official evaluation (for-ai/TD ``prune.py``) is followed: only the filter's incoming
      weights are zeroed, not its bias, not the BN, not the next layer's weights, so the pruned
      filter still emits BN's constant ``β − γ·μ/√(σ²+ε)``.

    ``modules`` as :func:`select_modules` (default: every Linear/Conv but the output layer).
    Masks are keyed by parameter name (``named_parameters()``), one per touched parameter (a
    weight touched twice, as a layer and as a reader, gets the union); apply them with
    :func:`apply_masks` or ``torch.nn.utils.prune.custom_from_mask(module, "weight", ~mask)``
    (torch's masks mark what is kept).
    """
    return _module_masks(model, kind, k, modules, scope, None)


def _module_masks(
    model: nn.Module,
    kind: str,
    k: float,
    modules: ModuleSelection | None,
    scope: str,
    readers: dict[str, Successor] | None,
) -> dict[str, Tensor]:
    """:func:`module_pruning_masks` with the units' readers given (``None``: :func:`successors`;
    the reference repository's :func:`unit_pruning_masks` passes its chain of Linear layers)."""
    if kind not in MODULE_KINDS:
        raise ValueError(f"unknown pruning kind {kind!r}; choose one of {MODULE_KINDS}")
    if scope not in SCOPES:
        raise ValueError(f"unknown pruning scope {scope!r}; choose one of {SCOPES}")
    k = validate_percent(k)
    chosen = select_modules(model, modules)
    masks: dict[str, Tensor] = {}

    def add(name: str, mask: Tensor) -> None:
        masks[name] = masks[name] | mask if name in masks else mask

    def pname(module_name: str, attr: str) -> str:
        return f"{module_name}.{attr}" if module_name else attr

    if readers is None:
        readers = successors(model) if kind == "unit" else {}
    named = dict(model.named_modules())
    for name, module in chosen:
        w = module.weight.detach()
        rows = w.reshape(w.shape[0], -1)
        if kind == "weight":
            if scope == "unit":
                mask = _smallest_rows(rows.abs(), _count(k, rows.shape[1]))
            else:
                mask = _smallest(rows.abs().reshape(-1), _count(k, rows.numel()))
            add(pname(name, "weight"), mask.reshape(w.shape))
            continue
        units = _smallest(rows.norm(dim=1), _count(k, rows.shape[0]))
        add(pname(name, "weight"), units[:, None].expand_as(rows).reshape(w.shape).clone())
        reader = readers.get(name)
        if reader is not None and reader.norm is not None:
            continue  # the official evaluation: BN and everything after it untouched
        if module.bias is not None:
            add(pname(name, "bias"), units.clone())
        if reader is not None and reader.next is not None:
            nxt = named[reader.next].weight.detach()
            cols = units.repeat_interleave(reader.per_unit)
            shape = [1] * nxt.ndim
            shape[1] = cols.numel()
            add(pname(reader.next, "weight"), cols.reshape(shape).expand_as(nxt).clone())
    return {n: masks[n] for n, _ in model.named_parameters() if n in masks}


def prunable_weight_names(model: nn.Module, modules: ModuleSelection | None = None) -> list[str]:
    """Parameter names of the weights of the layers ``modules`` chooses (:func:`select_modules`),
    in ``named_parameters()`` order: the default parameter selection of the analysis on any
    model (conv kernels included, unlike ``"weights"``, the 2-D parameters)."""
    chosen = {f"{n}.weight" if n else "weight" for n, _ in select_modules(model, modules)}
    return [n for n, _ in model.named_parameters() if n in chosen]


def module_rules(model: nn.Module, layers: Iterable[int] | None, modules: object) -> bool:
    """Whether a curve or sweep prunes by :func:`module_pruning_masks` (``modules`` given, or a
    model with Conv layers and no ``layers``) rather than by the Linear-only rules above."""
    if modules is not None and layers is not None:
        raise ValueError("pass either layers (Linear layer indices) or modules, not both")
    if modules is not None:
        return True
    return layers is None and any(isinstance(m, PRUNABLE_TYPES[1:]) for m in model.modules())


def _weights_removed(masks: dict[str, Tensor]) -> tuple[int, int]:
    """(removed, total) over the weights among ``masks`` (biases are not counted)."""
    weights = [m for n, m in masks.items() if n == "weight" or n.endswith(".weight")]
    return sum(int(m.sum()) for m in weights), sum(m.numel() for m in weights)
