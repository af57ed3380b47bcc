"""Post-hoc magnitude pruning as in the official evaluation, and pruning curves.

For a torch weight ``W`` (out × in) and a fraction k:

* ``"weight"``: per output unit o, remove ``{i : |W_oi| < sort(|W_o,:|)[⌊k·in⌋]}`` (the same
  rule that targets weights in training, so pruning at k = γ removes the targeted set);
* ``"unit"``: remove the rows (output units) with ``‖W_o,:‖₂ < sort(‖W‖₂)[⌊k·out⌋]``;
* ``"global"``: remove ``{(l, o, i) : |W^l_oi| < τ}`` with τ the ⌊k·n⌋-th smallest magnitude over
  all chosen layers together.

Biases are never pruned by these rules.  Pruning returns a pruned copy and the removed masks; the
caller's model is never mutated.

The seed's rules (``SEED_KINDS``, issue #11), with ``k`` a percentage in [0, 100] and the hidden
layers pruned (the output layer kept) unless ``layers`` says otherwise:

* ``"weight"`` (:func:`weight_pruning_masks`): in each chosen weight matrix (n entries) the
  ``m = ⌊k·n/100⌋`` entries of smallest ``|w|`` are set to zero (ties broken by position,
  row-major), the others keep their value ``w``;
* ``"unit"`` (:func:`unit_pruning_masks`): in each chosen layer (``out`` units) the
  ``m = ⌊k·out/100⌋`` units with the smallest L2 norm ``‖W_o,:‖₂`` of their incoming weights are
  removed: their incoming weights (row o), their bias ``b_o`` and their outgoing weights
  (column o of the next layer's weight).

Masks are keyed by parameter name and may include biases and the next layer's weight.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from td_analysis.dropout import targeted_unit_mask, targeted_weight_mask
from td_analysis.progress import progress_bar as tqdm
from td_analysis.training import evaluate

__all__ = [
    "PRUNING_KINDS",
    "SEED_KINDS",
    "pruning_masks",
    "apply_masks",
    "prune",
    "pruning_curve",
    "validate_percent",
    "hidden_layers",
    "weight_pruning_masks",
    "unit_pruning_masks",
    "seed_pruning_masks",
    "prune_percent",
    "pruning_table",
]

PRUNING_KINDS = ("weight", "unit", "global")
SEED_KINDS = ("weight", "unit")


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
) -> list[dict]:
    """Loss and accuracy of the pruned network at each fraction (one dict per fraction)."""
    rows = []
    layers = None if layers is None else list(layers)
    for fraction in tqdm(list(fractions), desc=f"prune {kind}", disable=not progress, leave=False):
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
# The seed's per-layer rules, k in percent
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


def _seed_layers(model: nn.Module, layers: Iterable[int] | None) -> list[int]:
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
    """The seed's weight pruning: the ⌊k·n/100⌋ smallest ``|w|`` of each chosen weight matrix.

    ``layers`` (indices of the ``nn.Linear`` layers) defaults to the hidden layers; masks are
    True where a weight is removed, keyed by weight name.
    """
    k = validate_percent(k)
    linear = _linear_layers(model)
    masks = {}
    for i in _seed_layers(model, layers):
        name, layer = linear[i]
        w = layer.weight.detach()
        flat = _smallest(w.abs().reshape(-1), _count(k, w.numel()))
        masks[name] = flat.reshape(w.shape)
    return masks


@torch.no_grad()
def unit_pruning_masks(
    model: nn.Module, k: float, layers: Iterable[int] | None = None
) -> dict[str, Tensor]:
    """The seed's unit pruning: remove the ⌊k·out/100⌋ units of smallest incoming L2 norm.

    For each chosen layer l (default: the hidden layers) the units ``o`` with the smallest
    ``‖W_l[o, :]‖₂`` go, with their bias ``b_l[o]`` and their outgoing weights ``W_{l+1}[:, o]``.
    The output layer has no outgoing weights and cannot be unit-pruned.  Masks (True = removed)
    are keyed by parameter name; a weight touched twice (its rows pruned as layer l+1, its
    columns as the outgoing weights of layer l) gets the union.
    """
    k = validate_percent(k)
    linear = _linear_layers(model)
    chosen = _seed_layers(model, layers)
    if chosen and chosen[-1] == len(linear) - 1:
        raise ValueError(
            f"unit pruning removes hidden units with their outgoing weights: layer "
            f"{len(linear) - 1} is the output layer (choose among {hidden_layers(model)})"
        )
    masks: dict[str, Tensor] = {}

    def add(name: str, mask: Tensor) -> None:
        masks[name] = masks[name] | mask if name in masks else mask

    for i in chosen:
        name, layer = linear[i]
        next_name, nxt = linear[i + 1]
        w = layer.weight.detach()
        if nxt.weight.shape[1] != w.shape[0]:
            raise ValueError(
                f"{next_name} has {nxt.weight.shape[1]} inputs but {name} has {w.shape[0]} "
                "units: unit pruning needs a chain of nn.Linear layers"
            )
        units = _smallest(w.norm(dim=1), _count(k, w.shape[0]))
        add(name, units[:, None].expand_as(w).clone())
        add(next_name, units[None, :].expand_as(nxt.weight).clone())
        if layer.bias is not None:
            add(f"{name.removesuffix('weight')}bias", units.clone())
    return masks


def seed_pruning_masks(
    model: nn.Module, k: float, kind: str = "weight", layers: Iterable[int] | None = None
) -> dict[str, Tensor]:
    """:func:`weight_pruning_masks` (``kind="weight"``) or :func:`unit_pruning_masks`."""
    if kind == "weight":
        return weight_pruning_masks(model, k, layers)
    if kind == "unit":
        return unit_pruning_masks(model, k, layers)
    raise ValueError(f"unknown pruning kind {kind!r}; choose one of {SEED_KINDS}")


def prune_percent(
    model: nn.Module, k: float, kind: str = "weight", layers: Iterable[int] | None = None
) -> tuple[nn.Module, dict[str, Tensor]]:
    """``(pruned copy, removed masks)`` by the seed's rule ``kind`` at k percent."""
    masks = seed_pruning_masks(model, k, kind, layers)
    return apply_masks(model, masks), masks


def pruning_table(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    ks: Sequence[float] = (0, 25, 50, 60, 70, 80, 90, 95, 97, 99),
    kinds: Sequence[str] = SEED_KINDS,
    layers: Iterable[int] | None = None,
    *,
    progress: bool = False,
) -> list[dict]:
    """Loss and accuracy after the seed's pruning, one dict per (kind, k).

    Records: ``{"kind", "k", "removed", "removed_share", "loss", "accuracy"}``, where
    ``removed_share`` counts the removed weights (biases excluded) among the weights of the
    pruned layers (for unit pruning including the outgoing weights).
    """
    ks = [validate_percent(k) for k in ks]
    layers = None if layers is None else list(layers)
    for kind in kinds:
        if kind not in SEED_KINDS:
            raise ValueError(f"unknown pruning kind {kind!r}; choose one of {SEED_KINDS}")
    linear = _linear_layers(model)
    rows = []
    jobs = [(kind, k) for kind in kinds for k in ks]
    for kind, k in tqdm(jobs, desc="prune", disable=not progress, leave=False):
        pruned, masks = prune_percent(model, k, kind, layers)
        weights = [n for n, _ in linear if n in masks]  # biases are not counted
        removed = sum(int(masks[n].sum()) for n in weights)
        total = sum(masks[n].numel() for n in weights)
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
