"""The buffered training step (``training.DenseStep``) and the ``"bits"`` dropout draws.

References: ``torch.func.grad`` of the float64 loss written out here; the reference closed form
``loss_and_gradients`` (itself tested against torch.func in ``test_training.py``); targeted sets
by explicit numpy sorting; Bernoulli frequencies within 5σ binomial bounds on fixed seeds; a
training loop written here that draws its masks from the same seeded generator.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import grad

from td_analysis.nets.models import DenseNet, relu_backward_
from td_analysis.nn.dropout import (
    Regulariser,
    RegulariserConfig,
    bernoulli_bits,
    targeted_unit_mask,
    targeted_weight_mask,
)
from td_analysis.training.loop import DenseStep, build_model, loss_and_gradients, train
from td_analysis.training.tasks import get_task


@pytest.fixture(autouse=True)
def _one_thread(one_thread) -> None:
    """One intra-op thread (conftest's ``one_thread``): bit-for-bit reproducible products."""


def _case(bias: bool, seed: int = 0, widths=(7, 6, 5, 3)):
    torch.manual_seed(seed)
    model = DenseNet(widths[0], widths[1:-1], widths[-1], bias)
    x = torch.randn(9, widths[0])
    y = torch.randint(0, widths[-1], (9,))
    return model, x, y


def _factors(model, kind: str, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for layer in model.layers:
        shape = layer.weight.shape
        if kind == "bool":
            out.append(torch.rand(shape, generator=gen) > 0.4)
        elif kind == "float":
            out.append((torch.rand(shape, generator=gen) > 0.4).float() * 1.5)
        else:
            out.append(None)
    return out


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", ["none", "bool", "float"])
def test_dense_step_matches_torch_func_in_float64(bias: bool, kind: str) -> None:
    model, x, y = _case(bias)
    model = model.double()
    x = x.double()
    factors = _factors(model, kind)
    step = DenseStep(list(model.layers), 16)
    loss, logits = step(x, y, factors)
    names = [n for n, _ in model.named_parameters()]

    def forward(params):  # the masked network, written out: W̃ = W ⊙ M
        h = x
        for l in range(len(model.layers)):
            w = params[f"layers.{l}.weight"]
            if factors[l] is not None:
                w = w * factors[l].double()
            h = h @ w.T + (params[f"layers.{l}.bias"] if bias else 0.0)
            if l < len(model.layers) - 1:
                h = torch.relu(h)
        return h

    def f(params):
        return F.cross_entropy(forward(params), y)

    params = {n: p.detach() for n, p in model.named_parameters()}
    ref = grad(f)(params)
    assert loss.item() == pytest.approx(f(params).item(), rel=1e-12)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref[n], rtol=1e-10, atol=1e-12, msg=n)
    assert names == list(ref)
    torch.testing.assert_close(logits, forward(params), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["none", "bool", "float"])
def test_dense_step_equals_loss_and_gradients_bit_for_bit(kind: str) -> None:
    """Same arithmetic as the closed form, also for a batch smaller than the buffers."""
    model, x, y = _case(True, 3)
    factors = _factors(model, kind)
    step = DenseStep(list(model.layers), 16)
    for rows in (9, 4):
        ref_loss, ref_logits, ref_grads = loss_and_gradients(
            list(model.layers), x[:rows], y[:rows], factors
        )
        loss, logits = step(x[:rows], y[:rows], factors)
        assert torch.equal(loss, ref_loss) and torch.equal(logits, ref_logits)
        for layer, (gw, gb) in zip(model.layers, ref_grads, strict=True):
            assert torch.equal(layer.weight.grad, gw)
            assert torch.equal(layer.bias.grad, gb)
    with pytest.raises(ValueError, match="buffers hold 16"):
        step(torch.zeros(17, 7), torch.zeros(17, dtype=torch.long))


def test_bits_thresholds_are_exact_bernoulli() -> None:
    """P(K < t) = t / 2^b: α = 0.5 (8 bits), 0.3 (32 bits), 0.25, 0 and 1, within 5σ."""
    n = 400_000
    for alpha in (0.5, 0.3, 0.25, 0.0, 1.0, 1e-3):
        drop = bernoulli_bits((n,), alpha, torch.Generator().manual_seed(7))
        assert drop.dtype == torch.bool
        sigma = math.sqrt(n * alpha * (1 - alpha))
        assert abs(int(drop.sum()) - n * alpha) <= 5 * sigma + 1e-9, alpha
    # the same seed gives the same draws; another seed others
    a = bernoulli_bits((1000,), 0.5, torch.Generator().manual_seed(1))
    b = bernoulli_bits((1000,), 0.5, torch.Generator().manual_seed(1))
    c = bernoulli_bits((1000,), 0.5, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # 8-bit draws of α = 0.5 read one byte per weight: drop iff the byte < 128
    raw = torch.empty(125, dtype=torch.int64).random_(
        -(2**63), None, generator=torch.Generator().manual_seed(1)
    )
    np.testing.assert_array_equal(a.numpy(), raw.numpy().view(np.uint8) < 128)


def _ref_targeted(w: torch.Tensor, gamma: float, kind: str) -> np.ndarray:
    a = w.detach().double().numpy()
    if kind == "targeted-weight":
        k = int(gamma * a.shape[1])
        return np.array([[abs(v) < sorted(map(abs, row))[k] for v in row] for row in a])
    norms = [math.sqrt(sum(v * v for v in row)) for row in a]
    tau = sorted(norms)[int(gamma * a.shape[0])]
    return np.repeat(np.array([n < tau for n in norms])[:, None], a.shape[1], 1)


@pytest.mark.parametrize("kind", ["targeted-weight", "targeted-unit"])
@pytest.mark.parametrize("alpha", [0.5, 0.3, 1.0])
def test_bits_factor_is_targeted_and_drawn(kind: str, alpha: float) -> None:
    w = torch.randn(30, 40)
    cfg = RegulariserConfig(kind, gamma=0.5, alpha=alpha, draws="bits")
    reg = Regulariser(cfg, 1, torch.Generator().manual_seed(5))
    for step in range(3):  # buffers reused from step to step
        state = reg.generator.get_state()
        keep = reg.weight_factor(0, w, step).clone()
        gen = torch.Generator()
        gen.set_state(state)
        drawn = bernoulli_bits(tuple(w.shape), alpha, gen).numpy()
        targeted = _ref_targeted(w, 0.5, kind)
        assert keep.dtype == w.dtype  # a 0/1 factor in the weight's type
        np.testing.assert_array_equal(keep.numpy(), (~(targeted & drawn)).astype(np.float32))
        w = w + 0.01 * torch.randn(30, 40)
    # the same targeted set as the "uniform" draws (and as the package's mask functions)
    ref = targeted_weight_mask(w, 0.5) if kind == "targeted-weight" else targeted_unit_mask(w, 0.5)
    assert ref.shape[0] == 30


def test_bits_draws_leave_the_targeted_fraction() -> None:
    """Expected kept fraction 1 − γα (REFERENCE.md), over 20 steps of a 200 × 300 weight."""
    w = torch.randn(200, 300)
    reg = Regulariser(
        RegulariserConfig("targeted-weight", gamma=0.5, alpha=0.5, draws="bits"),
        1,
        torch.Generator().manual_seed(0),
    )
    kept = sum(float(reg.weight_factor(0, w, s).float().mean()) for s in range(20)) / 20
    n = 20 * w.numel()
    assert abs(kept - 0.75) <= 5 * math.sqrt(0.25 * 0.75 / n) * 2


def _reference_factor(w: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    """The keep factor ``1[¬(targeted ∧ drawn)]`` of one layer and step, written out: γ = α =
    0.5, the targeted set by sorting in Python (:func:`_ref_targeted`), the drops from torch's
    own stream, one byte per weight (64-bit words from ``random_``; drop iff the byte < 128)."""
    n = w.numel()
    raw = torch.empty(-(-n // 8), dtype=torch.int64).random_(-(2**63), None, generator=gen)
    drawn = raw.numpy().view(np.uint8)[:n].reshape(tuple(w.shape)) < 128
    targeted = _ref_targeted(w, 0.5, kind)
    return torch.from_numpy(~(targeted & drawn)).to(w.dtype)


def _reference_loop(config, x, y):
    """Autograd + unfused Adam; masks drawn here (:func:`_reference_factor`, hidden layers
    only, the logits never) from the same generator sequence as ``train`` (shuffle per epoch,
    then each step the hidden layers' draws in order)."""
    kind = config.regulariser.kind
    if kind != "none":
        assert (config.regulariser.gamma, config.regulariser.alpha) == (0.5, 0.5)
        assert config.regulariser.draws == "bits"
    model = build_model(config)
    gen = torch.Generator().manual_seed(config.seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, foreach=False)
    hidden = len(model.layers) - 1
    for _ in range(config.epochs):
        perm = torch.randperm(x.shape[0], generator=gen)
        for start in range(0, x.shape[0], config.batch_size):
            idx = perm[start : start + config.batch_size]
            h = x[idx]
            masks = [
                None if kind == "none" or l == hidden else _reference_factor(la.weight, kind, gen)
                for l, la in enumerate(model.layers)
            ]
            for l, layer in enumerate(model.layers):
                w = layer.weight if masks[l] is None else layer.weight * masks[l]
                h = F.linear(h, w, layer.bias)
                if l < len(model.layers) - 1:
                    h = torch.relu(h)
            loss = F.cross_entropy(h, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


@pytest.mark.parametrize("kind", ["none", "targeted-weight", "targeted-unit"])
def test_train_with_bits_draws_matches_an_autograd_loop(kind: str) -> None:
    task = get_task("fashion-mlp").replace(name="tiny", hidden=(12, 9, 7))
    cfg = task.config(regulariser=kind, epochs=2, batch_size=16, eval_split="")
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(70, 784, generator=gen)
    y = torch.randint(0, 10, (70,), generator=gen)
    got = train(cfg, train_data=(x, y), progress=False).model
    ref = _reference_loop(cfg, x, y)
    for (n, p), q in zip(got.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=n)
    if kind != "none":  # the regulariser changed the result
        plain = train(
            task.config(epochs=2, batch_size=16, eval_split=""), train_data=(x, y), progress=False
        ).model
        assert not torch.allclose(plain.layers[0].weight, got.layers[0].weight)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relu_backward_in_place_equals_the_masked_product(dtype):
    """relu_backward_(g, z) = g ⊙ 1[z > 0] (relu'(0) = 0), in place, also for a broadcast z
    (the curvature backend passes z[:, None, :] against k tangents)."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(6, 7, generator=gen, dtype=dtype)
    z[0, :3] = 0.0  # exact zeros: no gradient, as autograd's relu
    for g, zz in [
        (torch.randn(6, 7, generator=gen, dtype=dtype), z),
        (torch.randn(6, 3, 7, generator=gen, dtype=dtype), z[:, None, :]),
    ]:
        expected = g * (zz > 0).to(dtype)
        out = relu_backward_(g, zz)
        assert out.data_ptr() == g.data_ptr()  # in place
        assert torch.equal(out, expected)
    x = torch.randn(6, 7, generator=gen, dtype=dtype, requires_grad=True)
    upstream = torch.randn(6, 7, generator=gen, dtype=dtype)
    (torch.relu(x) * upstream).sum().backward()
    assert torch.equal(relu_backward_(upstream.clone(), x.detach()), x.grad)
