"""Flat parameter layout of ``td_analysis.nets.models``: masks → the flat vector, against an entry
by entry walk over ``named_parameters()``."""

from __future__ import annotations

import pytest
import torch

from td_analysis.nets.models import DenseNet, flatten_masks, param_specs


def _walk(model, names, masks) -> list[bool]:
    """m over the selection, built one entry at a time (row-major within each parameter)."""
    out = []
    for name, p in model.named_parameters():
        if name not in names:
            continue
        m = masks.get(name)
        for i in range(p.numel()):
            out.append(bool(m.reshape(-1)[i]) if m is not None else False)
    return out


@pytest.mark.parametrize("names", [None, ["layers.0.weight", "layers.1.weight"], ["layers.1.bias"]])
def test_flatten_masks_is_the_entrywise_walk(names):
    torch.manual_seed(0)
    model = DenseNet(5, (4,), 3)
    gen = torch.Generator().manual_seed(1)
    specs = param_specs(model, names)
    chosen = [s.name for s in specs]
    masks = {
        n: torch.rand(s.shape, generator=gen) < 0.5
        for n, s in zip(chosen, specs, strict=True)
        if n != chosen[-1] or len(chosen) == 1
    }
    got = flatten_masks(specs, masks)
    assert got.dtype == torch.bool and got.tolist() == _walk(model, chosen, masks)


def test_flatten_masks_refuses_foreign_or_misshapen_masks():
    model = DenseNet(5, (4,), 3)
    specs = param_specs(model, ["layers.0.weight"])
    with pytest.raises(ValueError, match="outside the selection"):
        flatten_masks(specs, {"layers.1.weight": torch.ones(3, 4, dtype=torch.bool)})
    with pytest.raises(ValueError, match="has shape"):
        flatten_masks(specs, {"layers.0.weight": torch.ones(5, 4, dtype=torch.bool)})
