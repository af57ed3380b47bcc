"""BatchNorm statistics of the network as it is evaluated, re-estimated from data.

A network trained with targeted dropout (or DropConnect) before a BatchNorm layer keeps, in the
layer's running statistics, the mean and variance of features computed by the *dropped*
network: a filter dropped on a share α of the steps contributes a channel that was zero on those
steps.  Evaluated without the drops (or pruned, or with its targeted set zeroed), the network
normalises with the wrong statistics.  :func:`recalibrate_batchnorm` re-estimates them for the
network as it is evaluated: each BatchNorm's running mean and variance become the averages over
batches of the batch means μ_b and unbiased batch variances σ²_b of its input features (the
cumulative average of ``torch.optim.swa_utils.update_bn``, Izmailov et al. 2018), with every
other module in eval mode (dropout off, regularisers in their evaluation form).
"""

from __future__ import annotations

import copy as _copy

import torch
from torch import Tensor, nn

__all__ = ["has_batchnorm", "recalibrate_batchnorm"]


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


def has_batchnorm(model: nn.Module) -> bool:
    """True when ``model`` has a BatchNorm layer that keeps running statistics."""
    return bool(_batchnorms(model))


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, inputs: Tensor, *, batch_size: int = 256, copy: bool = True
) -> nn.Module:
    """``model`` (a copy unless ``copy=False``) in eval mode, with every BatchNorm's running
    statistics re-estimated on ``inputs`` in batches of ``batch_size``:
    ``running_mean = mean_b μ_b``, ``running_var = mean_b σ²_b`` (unbiased per batch).

    Only the BatchNorm layers run in train mode while the statistics are gathered; every other
    module (dropout, targeted-dropout parametrizations) stays in eval mode, so the statistics
    are those of the network as it is evaluated.  A model without BatchNorm comes back as it
    was (copied when asked), in eval mode."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if not isinstance(inputs, Tensor) or inputs.ndim < 1 or inputs.shape[0] < 1:
        raise ValueError("inputs must be a tensor with at least one example (first dimension)")
    out = _copy.deepcopy(model) if copy else model
    out.eval()
    bns = _batchnorms(out)
    if not bns:
        return out
    momenta = {}
    for bn in bns:
        bn.reset_running_stats()
        momenta[bn] = bn.momentum
        bn.momentum = None  # cumulative average over the batches
        bn.train()
    device = next((p.device for p in out.parameters()), inputs.device)
    try:
        for start in range(0, inputs.shape[0], batch_size):
            out(inputs[start : start + batch_size].to(device))
    finally:
        for bn, momentum in momenta.items():
            bn.momentum = momentum
        out.eval()
    return out
