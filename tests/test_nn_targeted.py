"""td_analysis.nn: targeted dropout (and dropout, DropConnect, L1) for any model.

References: the for-ai/TD targeting rule re-written with ``np.sort`` on ``w.reshape(out, -1)``
(``references.targeted_reference``), REFERENCE.md's ramp (``references.ramp_reference``),
``torch.func.grad`` of a float64 loss with the mask held fixed, 5σ binomial bounds for the
drop rates, and, on the DenseNet, the closed-form path's own factors
(``dropout.Regulariser.step_factors``, itself tested against numpy in ``test_dropout.py``),
compared bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from references import ramp_reference, targeted_reference
from torch import nn
from torch.func import functional_call, grad

from td_analysis.nets.models import DenseNet
from td_analysis.nn import (
    DropConnect,
    TargetedUnitDropout,
    TargetedWeightDropout,
    apply_dropconnect,
    apply_dropout,
    apply_regulariser,
    apply_targeted_dropout,
    l1_penalty,
    output_layer_name,
    remove_regularisers,
    remove_targeted_dropout,
    select_modules,
    set_targeted_dropout_step,
    targeted_dropout_step,
)
from td_analysis.nn.dropout import Regulariser, RegulariserConfig

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def small_cnn(dtype: torch.dtype = F64) -> nn.Sequential:
    """conv(3→6, 3×3) → ReLU → conv(6→5, grouped? no) → pool → Linear logits."""
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, groups=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 12),
        nn.ReLU(),
        nn.Linear(12, 4),
    ).to(dtype)


LAYERS = {
    "linear": lambda: nn.Linear(13, 7),
    "conv1d": lambda: nn.Conv1d(4, 6, 5),
    "conv2d": lambda: nn.Conv2d(3, 8, (3, 2)),
    "conv2d-grouped": lambda: nn.Conv2d(4, 6, 3, groups=2),
    "conv3d": lambda: nn.Conv3d(2, 5, 2),
}


def _wrap_one(layer: nn.Module, kind: str, **kw) -> nn.Module:
    holder = nn.Sequential(layer)
    apply_targeted_dropout(holder, kind, modules=["0"], **kw)
    return holder[0]


def _original(layer: nn.Module) -> torch.Tensor:
    return layer.parametrizations.weight.original.detach().clone()


# ------------------------------------------------------------------------------------------------
# The targeted set, the drops, the eval modes
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("kind", ["weight", "unit"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_alpha_one_drops_exactly_the_reference_targeted_set(name, kind, dtype):
    torch.manual_seed(0)
    for gamma in (0.25, 0.5, 0.75, 0.9):
        layer = _wrap_one(LAYERS[name]().to(dtype), kind, gamma=gamma, alpha=1.0, generator=0)
        w = _original(layer)
        ref = torch.from_numpy(targeted_reference(w.numpy(), gamma, kind))
        layer.train()
        assert torch.equal(layer.weight, torch.where(ref, torch.zeros_like(w), w))
        layer.eval()  # identity
        assert torch.equal(layer.weight, w)
        layer.parametrizations.weight[0].eval_mode = "zero-targeted"  # the official conv eval
        assert torch.equal(layer.weight, torch.where(ref, torch.zeros_like(w), w))


@pytest.mark.parametrize("kind", ["weight", "unit"])
def test_drops_only_targeted_entries_at_rate_alpha_without_rescaling(kind):
    alpha, gamma, steps = 0.3, 0.5, 40
    layer = _wrap_one(nn.Conv2d(8, 16, 3).double(), kind, gamma=gamma, alpha=alpha, generator=5)
    w = _original(layer)
    targeted = torch.from_numpy(targeted_reference(w.numpy(), gamma, kind))
    layer.train()
    dropped = 0
    for _ in range(steps):
        wt = layer.weight.detach()
        kept = wt != 0
        assert torch.equal(wt[kept], w[kept])  # kept weights are not rescaled
        assert not (~kept & ~targeted).any()  # only targeted entries are dropped
        dropped += int((~kept).sum())
    n = steps * int(targeted.sum())
    assert abs(dropped - alpha * n) < 5 * math.sqrt(n * alpha * (1 - alpha))
    assert targeted_dropout_step(nn.Sequential(layer)) == steps


def test_unit_targets_whole_filters_and_weight_targets_per_filter():
    conv = nn.Conv2d(3, 10, 3).double()
    with torch.no_grad():  # filter o has all weights of magnitude o + 1 except one tiny one
        for o in range(10):
            conv.weight[o] = (o + 1) * torch.sign(torch.randn(3, 3, 3, dtype=F64))
            conv.weight[o, 0, 0, 0] = 1e-3
    unit = _wrap_one(conv, "unit", gamma=0.3, alpha=1.0)
    unit.train()
    zeroed = (unit.weight == 0).flatten(1).all(1)
    assert zeroed.tolist() == [True] * 3 + [False] * 7
    remove_targeted_dropout(nn.Sequential(unit))
    weight = _wrap_one(unit, "weight", gamma=1 / 27 + 1e-9, alpha=1.0)  # ⌊γ·27⌋ = 1 per filter
    weight.train()
    assert torch.equal(weight.weight == 0, _original(weight).abs() == 1e-3)


def test_ramp_follows_the_official_schedule():
    r = 40
    layer = _wrap_one(nn.Linear(200, 50).double(), "weight", gamma=0.8, alpha=1.0, ramp_steps=r)
    p = layer.parametrizations.weight[0]
    w = _original(layer)
    layer.train()
    for s in range(0, 2 * r):
        g, a = ramp_reference(s, 0.8, 1.0, r)
        assert p.rates() == pytest.approx((g, a), rel=1e-12, abs=1e-15)
        assert p.step == s
        if a == 1.0:  # α(s) = 1: exactly the targeted set at γ(s) is dropped
            ref = torch.from_numpy(targeted_reference(w.numpy(), g, "weight"))
            assert torch.equal(layer.weight == 0, ref)
        else:
            layer.weight  # noqa: B018 - one training read advances the step
    layer.eval()
    layer.weight  # noqa: B018 - eval reads do not advance it
    assert p.step == 2 * r


def test_masks_are_reproducible_from_a_seed_and_differ_across_seeds():
    def masks(seed):
        model = small_cnn()
        apply_targeted_dropout(model, "weight", 0.5, 0.5, generator=seed)
        model.train()
        return [(model[i].weight == 0) for i in (0, 2, 6) for _ in range(3)]

    a, b, c = masks(7), masks(7), masks(8)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


# ------------------------------------------------------------------------------------------------
# The DenseNet: the closed-form path's masks, bit for bit
# ------------------------------------------------------------------------------------------------


def _closed_form_factors(config, weights, steps):
    reg = Regulariser(config, len(weights), torch.Generator().manual_seed(11))
    clone = lambda fs: [None if f is None else f.clone() for f in fs]  # noqa: E731 - buffers
    return [tuple(map(clone, reg.step_factors(weights, 5, s))) for s in range(steps)]


@pytest.mark.parametrize("draws", ["uniform", "bits"])
@pytest.mark.parametrize("ramp", [None, 6])
@pytest.mark.parametrize("kind", ["targeted-weight", "targeted-unit"])
@pytest.mark.parametrize("layers", [None, [0, 2], [1]])
def test_densenet_masks_equal_the_closed_form_path(kind, ramp, draws, layers):
    model = DenseNet(30, (12, 9), 5)
    weights = [layer.weight.detach().clone() for layer in model.layers]
    config = RegulariserConfig(
        kind=kind, gamma=0.6, alpha=0.5, ramp_steps=ramp, draws=draws, layers=layers
    )
    steps = 14
    expected = _closed_form_factors(config, weights, steps)
    apply_regulariser(model, config, generator=torch.Generator().manual_seed(11))
    model.train()
    for s in range(steps):
        factors, _ = expected[s]
        for l, layer in enumerate(model.layers):
            got = layer.weight
            want = weights[l] if factors[l] is None else weights[l] * factors[l]
            assert torch.equal(got, want), (s, l)


@pytest.mark.parametrize("kind", ["dropout", "dropconnect"])
def test_densenet_dropout_and_dropconnect_equal_the_closed_form_path(kind):
    model = DenseNet(30, (12, 9), 5)
    weights = [layer.weight.detach().clone() for layer in model.layers]
    biases = [layer.bias.detach().clone() for layer in model.layers]
    config = RegulariserConfig(kind=kind, alpha=0.4)
    x = torch.randn(5, 30)
    expected = _closed_form_factors(config, weights, 4)
    apply_regulariser(model, config, generator=11)
    model.train()
    for s in range(4):
        factors, inputs = expected[s]
        h = x
        for l in range(3):  # the closed form of Regulariser's doc, written out
            if inputs[l] is not None:
                h = h * inputs[l]
            w = weights[l] if factors[l] is None else weights[l] * factors[l]
            h = F.linear(h, w, biases[l])
            h = torch.relu(h) if l < 2 else h
        assert torch.equal(model(x), h), s
    model.eval()
    assert torch.equal(
        model(x),
        F.linear(F.linear(x, weights[0], biases[0]).relu(), weights[1], biases[1]).relu()
        @ weights[2].T
        + biases[2],
    )


# ------------------------------------------------------------------------------------------------
# Gradients, state_dict, removal
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["weight", "unit"])
def test_gradient_reaches_the_original_parameter(kind):
    model = small_cnn()
    apply_targeted_dropout(model, kind, 0.5, 0.5, generator=2)
    x, y = torch.randn(6, 3, 7, 7, dtype=F64), torch.randint(0, 4, (6,))
    model.train()
    with torch.nn.utils.parametrize.cached():  # the masked weights this forward used
        masked = {i: model[i].weight.detach().clone() for i in (0, 2, 6)}
        F.cross_entropy(model(x), y).backward()
    originals = {i: model[i].parametrizations.weight.original for i in (0, 2, 6)}
    masks = {i: (masked[i] == originals[i].detach()).to(F64) for i in masked}
    assert all(0 < m.mean() < 1 for m in masks.values())
    plain = small_cnn()  # the same weights, no parametrization
    params = {k: v.detach() for k, v in plain.named_parameters()}

    def loss(p):  # W̃ = W ⊙ M with the recorded masks held fixed
        q = dict(p)
        for i, m in masks.items():
            q[f"{i}.weight"] = p[f"{i}.weight"] * m
        return F.cross_entropy(functional_call(plain, q, (x,)), y)

    ref = grad(loss)(params)
    for i, orig in originals.items():
        torch.testing.assert_close(orig.grad, ref[f"{i}.weight"], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(model[8].weight.grad, ref["8.weight"], rtol=1e-12, atol=1e-14)


def test_state_dict_moves_between_wrapped_and_plain_models():
    wrapped = apply_targeted_dropout(small_cnn(), "unit", 0.5, 0.5, generator=0)
    plain = small_cnn()
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(1.0)
    sd = wrapped.state_dict()
    assert sorted(sd) == sorted(plain.state_dict())  # the plain keys
    plain.load_state_dict(sd)
    assert all(torch.equal(sd[k], v) for k, v in plain.state_dict().items())
    assert torch.equal(plain[0].weight, wrapped[0].parametrizations.weight.original)
    with torch.no_grad():
        for p in plain.parameters():
            p.mul_(2.0)
    wrapped.load_state_dict(plain.state_dict())  # plain keys into the wrapped model
    assert torch.equal(wrapped[0].parametrizations.weight.original, plain[0].weight)
    native = {
        k.replace("0.weight", "0.parametrizations.weight.original"): v
        for k, v in plain.state_dict().items()
    }
    wrapped.load_state_dict(native)  # torch's parametrized names load as well
    assert isinstance(wrapped[0].parametrizations.weight[0], TargetedUnitDropout)


def test_remove_leaves_the_trained_parameters_bit_identical():
    model = small_cnn(torch.float32)
    apply_targeted_dropout(model, "weight", 0.5, 0.5, generator=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(8, 3, 7, 7), torch.randint(0, 4, (8,))
    model.train()
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    originals = {i: model[i].parametrizations.weight.original for i in (0, 2, 6)}
    copies = {i: p.detach().clone() for i, p in originals.items()}
    remove_targeted_dropout(model)
    for i, p in originals.items():
        assert model[i].weight is p and torch.equal(p, copies[i])
        assert type(model[i]) in (nn.Conv2d, nn.Linear)
    assert sorted(model.state_dict()) == sorted(small_cnn().state_dict())
    with pytest.raises(ValueError, match="no targeted dropout"):
        remove_targeted_dropout(model)


# ------------------------------------------------------------------------------------------------
# torch.func and torch.compile
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("draws", ["uniform", "bits"])
@pytest.mark.parametrize("kind", ["weight", "unit"])
def test_torch_func_grad_through_the_parametrization(kind, draws):
    model = apply_targeted_dropout(small_cnn(), kind, 0.5, 0.5, generator=4, draws=draws)
    gen = model[0].parametrizations.weight[0].generator
    x, y = torch.randn(5, 3, 7, 7, dtype=F64), torch.randint(0, 4, (5,))
    params = dict(model.named_parameters())
    model.train()
    state = gen.get_state()
    g = grad(lambda p: F.cross_entropy(functional_call(model, p, (x,)), y))(params)
    gen.set_state(state)
    set_targeted_dropout_step(model, 0)
    F.cross_entropy(model(x), y).backward()  # the same masks, eagerly
    for name, p in model.named_parameters():
        torch.testing.assert_close(g[name], p.grad, rtol=1e-12, atol=1e-14)


def test_torch_compile_gives_the_eager_result():
    model = apply_targeted_dropout(small_cnn(), "weight", 0.5, 0.5, generator=4)
    gen = model[0].parametrizations.weight[0].generator
    x = torch.randn(5, 3, 7, 7, dtype=F64)
    compiled = torch.compile(model, backend="aot_eager")  # inductor: benchmarks/conv_td_speed.py
    model.train()
    state = gen.get_state()
    got = [compiled(x)]
    with torch._dynamo.config.patch(error_on_recompile=True):  # the step is no compiled constant
        got += [compiled(x) for _ in range(3)]
    gen.set_state(state)
    set_targeted_dropout_step(model, 0)
    want = [model(x) for _ in range(4)]
    assert not torch.equal(want[0], want[1])  # fresh masks per step
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    model.eval()
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------------------------------
# Selection of layers and the other regularisers
# ------------------------------------------------------------------------------------------------


def test_default_selection_spares_the_output_layer_only():
    model = small_cnn()
    assert output_layer_name(model) == "8"
    assert [n for n, _ in select_modules(model)] == ["0", "2", "6"]
    assert [n for n, _ in select_modules(model, nn.Conv2d)] == ["0", "2"]
    assert [n for n, _ in select_modules(model, ["8", nn.Conv2d])] == ["0", "2", "8"]
    assert [n for n, _ in select_modules(model, lambda n, m: n == "6")] == ["6"]
    apply_targeted_dropout(model)
    assert not torch.nn.utils.parametrize.is_parametrized(model[8])
    assert all(
        isinstance(model[i].parametrizations.weight[0], TargetedWeightDropout) for i in (0, 2, 6)
    )


def test_dropconnect_rescales_and_dropout_drops_inputs():
    model = nn.Sequential(nn.Linear(40, 300), nn.ReLU(), nn.Linear(300, 3)).double()
    apply_dropconnect(model, 0.25, generator=1)
    w = model[0].parametrizations.weight.original.detach()
    model.train()
    wt = model[0].weight.detach()
    kept = wt != 0
    torch.testing.assert_close(wt[kept], w[kept] / 0.75, rtol=1e-15, atol=0)
    n = w.numel()
    assert abs(int((~kept).sum()) - 0.25 * n) < 5 * math.sqrt(n * 0.25 * 0.75)
    assert isinstance(model[0].parametrizations.weight[0], DropConnect)
    remove_regularisers(model)
    apply_dropout(model, 0.5, generator=1)  # default: the inputs of every layer but the first
    seen = {}
    model[2].register_forward_pre_hook(lambda m, a: seen.setdefault("in", a[0].detach()))
    x = torch.randn(7, 40, dtype=F64)
    model(x)
    clean = torch.relu(model[0](x)).detach()
    kept = seen["in"] != 0
    torch.testing.assert_close(seen["in"][kept], 2 * clean[kept], rtol=1e-15, atol=0)
    assert 0 < int((~kept & (clean != 0)).sum()) < int((clean != 0).sum())
    model.eval()
    seen.clear()
    model(x)
    assert torch.equal(seen["in"], clean)


def test_l1_penalty_is_the_sum_of_absolute_original_weights():
    model = small_cnn()
    want = 0.01 * sum(float(np.abs(model[i].weight.detach().numpy()).sum()) for i in (0, 2, 6, 8))
    apply_targeted_dropout(model, "weight", 0.5, 1.0)
    model.train()
    assert float(l1_penalty(model, 0.01).detach()) == pytest.approx(want, rel=1e-12)
    assert l1_penalty(model, 0.0) is None


# ------------------------------------------------------------------------------------------------
# Bad input: one-line errors, nothing changed
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"modules": ["1"]}, "module '1' \\(ReLU\\) has no weight"),
        ({"modules": ["bn"]}, "module 'bn' \\(BatchNorm2d\\) has a weight of shape \\(3,\\)"),
        ({"modules": ["up"]}, "module 'up' \\(ConvTranspose2d\\)"),
        ({"modules": ["nope"]}, "no module named 'nope'"),
        ({"modules": nn.LSTM}, "selects nothing"),
        ({"gamma": 1.0}, "gamma"),
        ({"gamma": -0.1}, "gamma"),
        ({"gamma": 0.0}, "gamma > 0"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"kind": "filter"}, "kind must be"),
        ({"draws": "dice"}, "draws"),
        ({"eval_mode": "prune"}, "eval_mode"),
        ({"ramp_steps": 0}, "ramp_steps"),
        ({"generator": "seed"}, "generator"),
    ],
)
def test_bad_input_is_refused_in_one_line_and_changes_nothing(kwargs, match):
    model = nn.Sequential(nn.Conv2d(3, 3, 3), nn.ReLU(), nn.Linear(4, 2))
    model.add_module("bn", nn.BatchNorm2d(3))
    model.add_module("up", nn.ConvTranspose2d(3, 3, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises((ValueError, TypeError), match=match) as err:
        apply_targeted_dropout(model, **{"modules": ["0", "2"], **kwargs})
    assert "\n" not in str(err.value)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_applying_twice_is_refused():
    model = apply_targeted_dropout(small_cnn(), "weight", 0.5, 0.5, generator=0)
    gen = model[0].parametrizations.weight[0].generator
    model.train()
    state = gen.get_state()
    with pytest.raises(ValueError, match="module '0' is already regularised") as err:
        apply_targeted_dropout(model, "unit", 0.5, 0.5)
    assert "\n" not in str(err.value)
    assert targeted_dropout_step(model) == 0 and torch.equal(gen.get_state(), state)  # no draw
    with pytest.raises(ValueError, match="already regularised"):
        apply_dropconnect(model, 0.5)
    remove_targeted_dropout(model)
    apply_targeted_dropout(model, "unit", 0.5, 0.5)  # fine once removed
