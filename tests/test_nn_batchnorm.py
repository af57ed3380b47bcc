"""``td_analysis.nn.recalibrate_batchnorm`` against statistics computed here: the inputs each
BatchNorm sees in the evaluated network, captured batch by batch, their per-batch mean and
unbiased variance averaged over the batches."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from torch import nn

from td_analysis.nn import apply_targeted_dropout, has_batchnorm, recalibrate_batchnorm

F64 = torch.float64


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Dropout(0.5),  # must stay off while the statistics are gathered
        nn.Conv2d(6, 5, 3, padding=1),
        nn.BatchNorm2d(5),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 4 * 4, 3),
        nn.BatchNorm1d(3),
    ).to(F64)


def _reference(model: nn.Module, x: torch.Tensor, batch: int) -> dict[str, tuple]:
    """Per BatchNorm: (mean over batches of μ_b, mean over batches of unbiased σ²_b) of its
    inputs in one pass over the batches in which every BatchNorm normalises by its batch's
    statistics and every other module (dropout) is in eval mode (the SWA ``update_bn`` rule,
    dropout off)."""
    model = copy.deepcopy(model).eval()
    bns = [
        (n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    seen: dict[str, list] = {n: [] for n, _ in bns}
    hooks = []
    for name, bn in bns:
        bn.train()
        hooks.append(bn.register_forward_pre_hook(partial(_capture, seen[name])))
    with torch.no_grad():
        for s in range(0, x.shape[0], batch):
            model(x[s : s + batch])
    for h in hooks:
        h.remove()
    found = {}
    for name, batches in seen.items():
        dims = [0] + list(range(2, batches[0].ndim))
        means = torch.stack([t.mean(dims) for t in batches])
        vars_ = torch.stack([t.var(dims, unbiased=True) for t in batches])
        found[name] = (means.mean(0), vars_.mean(0))
    return found


def _capture(store: list, module: nn.Module, args: tuple) -> None:
    store.append(args[0].detach().clone())


@pytest.mark.parametrize("batch", [16, 25, 64])
def test_statistics_are_the_batch_averages_of_the_evaluated_network(batch):
    model = _net()
    x = torch.randn(64, 3, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(1)) * 2 + 1
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = recalibrate_batchnorm(model, x, batch_size=batch)
    for k, v in model.state_dict().items():  # the caller's model is untouched (a copy)
        assert torch.equal(v, before[k]), k
    ref = _reference(_net(), x, batch)
    named = dict(got.named_modules())
    for name, (mean, var) in ref.items():
        torch.testing.assert_close(named[name].running_mean, mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(named[name].running_var, var, rtol=1e-12, atol=1e-12)
        assert named[name].momentum == 0.1  # restored
    assert not got.training and not any(m.training for m in got.modules())


def test_in_place_and_without_batchnorm():
    model = _net()
    x = torch.randn(20, 3, 4, 4, dtype=F64)
    assert recalibrate_batchnorm(model, x, copy=False) is model
    plain = nn.Sequential(nn.Flatten(), nn.Linear(48, 3)).to(F64)
    assert not has_batchnorm(plain) and has_batchnorm(model)
    out = recalibrate_batchnorm(plain, x)
    assert out is not plain and torch.equal(out[1].weight, plain[1].weight)


def test_targeted_dropout_stays_in_its_evaluation_form():
    """A parametrized network is recalibrated as it evaluates (zero-targeted): the statistics
    equal those of a copy whose targeted weights were zeroed by hand."""
    model = _net(3)
    apply_targeted_dropout(
        model, "weight", gamma=0.5, alpha=0.5, generator=0, eval_mode="zero-targeted"
    )
    x = torch.randn(40, 3, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(2))
    got = recalibrate_batchnorm(model, x, batch_size=20)
    model.eval()
    zeroed = _net(3)
    plain = dict(zeroed.named_modules())
    with torch.no_grad():  # the evaluated weights, written into a plain copy
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                plain[name].weight.copy_(m.weight)
    assert any(bool((plain[n].weight == 0).any()) for n in ("0", "4", "8"))
    ref = _reference(zeroed, x, 20)
    named = dict(got.named_modules())
    for name, (mean, var) in ref.items():
        torch.testing.assert_close(named[name].running_mean, mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(named[name].running_var, var, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "inputs, batch, words",
    [
        (torch.zeros(0, 3, 4, 4), 8, "at least one example"),
        (torch.zeros(4, 3, 4, 4), 0, "batch_size"),
    ],
)
def test_bad_input_is_a_clear_error(inputs, batch, words):
    with pytest.raises(ValueError, match=words):
        recalibrate_batchnorm(_net(), inputs.to(F64), batch_size=batch)
