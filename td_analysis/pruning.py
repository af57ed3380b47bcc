"""Post-hoc magnitude pruning as in the official evaluation, and pruning curves.

For a torch weight ``W`` (out × in) and a fraction k:

* ``"weight"``: per output unit o, remove ``{i : |W_oi| < sort(|W_o,:|)[⌊k·in⌋]}`` (the same
  rule that targets weights in training, so pruning at k = γ removes the targeted set);
* ``"unit"``: remove the rows (output units) with ``‖W_o,:‖₂ < sort(‖W‖₂)[⌊k·out⌋]``;
* ``"global"``: remove ``{(l, o, i) : |W^l_oi| < τ}`` with τ the ⌊k·n⌋-th smallest magnitude over
  all chosen layers together.

Biases are never pruned.  Pruning returns a pruned copy and the removed masks; the caller's model
is never mutated.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from td_analysis.dropout import targeted_unit_mask, targeted_weight_mask
from td_analysis.training import evaluate

__all__ = ["PRUNING_KINDS", "pruning_masks", "apply_masks", "prune", "pruning_curve"]

PRUNING_KINDS = ("weight", "unit", "global")


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
