"""Shared curvature test cases: the dense ReLU cases and a curvlinops-style zoo of classifiers.

Importable by any test file (``from zoo import ...``; pytest puts ``tests/`` on the path).
Nothing here imports ``td_analysis.curvature``: the reference is ``torch.func`` on a float64 copy
of the model, written as a function of the flat vector θ of the selected parameters (buffers
included, as ``functional_call`` sees them), so a test comparing the package with it cannot pass
because both share a bug.

* :func:`dense_case`: one tiny float64 DenseNet with random data (the analysis tests' case);
  :class:`Reference`: ℓ(θ), ∇ and H of any model by ``torch.func``.
* :data:`CASES`: dense ReLU networks (``DenseNet``) of 0–3 hidden layers, biases on/off, both
  reductions, parameter subsets.
* :data:`ZOO`: general models (MLP, CNNs with Conv1d/2d/3d and eval-mode BatchNorm, a ResNet
  basic block with BatchNorm, a tiny Transformer encoder layer, weight sharing, nested modules,
  eval-mode BatchNorm and Dropout, frozen and unused parameters, LSTM, embeddings) and the *near
  misses* of the closed form (ReLU6, tanh, leaky ReLU, no activation, extra layers, a ``layers``
  list used out of order, a DenseNet subclass with its own forward), each with the backend it
  must get.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from references import Reference, selected_names  # noqa: F401 - re-exported for the tests
from torch import Tensor, nn

from td_analysis.nets.models import DenseNet

F64 = torch.float64
TOL = 1e-10


# --------------------------------------------------------------------------- reference
# the float64 torch.func reference lives in references.py (no td_analysis import there)


def dense_case(seed: int = 0, in_features: int = 7, hidden=(4,), n: int = 16, classes: int = 3):
    """``(model, x, y)``: a tiny float64 DenseNet with N random examples, its parameters drawn
    at 0.8 × N(0, 1) so that no two |θ| coincide (the magnitude orders are unambiguous)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DenseNet(in_features, hidden, classes).to(F64)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=F64) * 0.8)
    x = torch.randn(n, in_features, generator=gen, dtype=F64)
    y = torch.randint(0, classes, (n,), generator=gen)
    return model, x, y


def rel(a: Tensor, b: Tensor) -> float:
    """‖a − b‖ / ‖b‖."""
    return float((a - b).norm() / b.norm())


def state(model: nn.Module) -> dict[str, Tensor]:
    """Clones of every parameter and buffer (for bit-identity checks)."""
    return {n: t.detach().clone() for n, t in [*model.named_parameters(), *model.named_buffers()]}


def assert_unchanged(model: nn.Module, before: dict[str, Tensor]) -> None:
    after = dict([*model.named_parameters(), *model.named_buffers()])
    assert after.keys() == before.keys()
    for n, t in before.items():
        a = after[n]
        assert a.dtype == t.dtype and a.shape == t.shape, n
        assert torch.equal(a.detach(), t) or (t.isnan().all() and a.isnan().all()), n
        if isinstance(a, nn.Parameter):
            assert a.grad is None, n


# --------------------------------------------------------------------------- dense cases
@dataclass(frozen=True)
class Case:
    """A DenseNet with large weights (varied ReLU patterns, a sizeable residual term)."""

    name: str
    in_features: int
    hidden: tuple[int, ...]
    classes: int
    n: int
    bias: bool
    reduction: str
    params: object = None

    def build(self, dtype=F64, seed=0):
        torch.manual_seed(seed)
        model = DenseNet(self.in_features, self.hidden, self.classes, bias=self.bias)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.7)
        model = model.to(dtype)
        x = torch.randn(self.n, self.in_features, dtype=dtype)
        y = torch.randint(0, self.classes, (self.n,))
        return model, x, y

    def kwargs(self):
        return {"params": self.params, "reduction": self.reduction}


CASES = [
    Case("h1-bias-mean", 7, (5,), 3, 16, True, "mean"),
    Case("h1-nobias-sum", 7, (5,), 4, 12, False, "sum"),
    Case("h1-bias-mean-W2", 7, (5,), 3, 16, True, "mean", "layers.1.weight"),
    Case("h2-bias-sum", 7, (5, 4), 4, 20, True, "sum"),
    Case("h2-nobias-mean-weights", 7, (5, 4), 3, 14, False, "mean", "weights"),
    Case("h3-bias-mean", 6, (5, 4, 3), 4, 18, True, "mean"),
    Case(
        "h3-bias-sum-subset",
        6,
        (5, 4, 3),
        3,
        15,
        True,
        "sum",
        ["layers.3.weight", "layers.0.bias", "layers.1.weight"],
    ),
    Case("h0-logistic", 7, (), 3, 10, True, "mean"),
]
CASE_IDS = [c.name for c in CASES]


# --------------------------------------------------------------------------- zoo
@dataclass(frozen=True)
class ZooCase:
    """``make()`` → (model, inputs, targets); ``backend`` the one ``"auto"`` must choose."""

    name: str
    make: Callable[[], tuple[nn.Module, Tensor, Tensor]]
    backend: str
    params: object = None
    reduction: str = "mean"
    tags: frozenset[str] = field(default_factory=frozenset)

    def build(self):
        torch.manual_seed(0)
        return self.make()

    def kwargs(self):
        return {"params": self.params, "reduction": self.reduction}


def _xy(n: int, d: int, k: int, scale: float = 1.0) -> tuple[Tensor, Tensor]:
    return scale * torch.randn(n, d, dtype=F64), torch.randint(0, k, (n,))


class LayersNet(nn.Module):
    """A ``layers`` ModuleList of Linear (DenseNet-shaped) with a configurable forward."""

    def __init__(self, act: Callable[[Tensor], Tensor] | None, order=(0, 1), widths=(6, 5, 3)):
        super().__init__()
        self.act, self.order = act, order
        self.layers = nn.ModuleList(
            [nn.Linear(widths[0], widths[1]), nn.Linear(widths[1], widths[2])]
        )

    def forward(self, x: Tensor) -> Tensor:
        h = self.layers[self.order[0]](x)
        h = self.act(h) if self.act is not None else h
        return self.layers[self.order[1]](h)


class ExtraLayerNet(LayersNet):
    """DenseNet-shaped ``layers`` plus a module outside them (a trailing scale layer)."""

    def __init__(self) -> None:
        super().__init__(torch.relu)
        self.head = nn.Linear(3, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(super().forward(x))


class SquareLayersNet(nn.Module):
    """Two 5 × 5 layers: the same list used in reverse order fits the widths."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(5, 5), nn.Linear(5, 5)])

    def forward(self, x: Tensor) -> Tensor:
        return self.layers[0](torch.relu(self.layers[1](x)))


class Relu6DenseNet(DenseNet):
    """A DenseNet subclass whose own forward uses relu6: not the closed form."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for layer in self.layers[:-1]:
            x = F.relu6(layer(x))
        return self.layers[-1](x)


class DeclaredNet(nn.Module):
    """Declares the closed form through ``dense_relu_layers()``."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(6, 4), nn.Linear(4, 3)

    def dense_relu_layers(self) -> list[nn.Linear]:
        return [self.first, self.second]

    def forward(self, x: Tensor) -> Tensor:
        return self.second(torch.relu(self.first(x.flatten(1))))


class SharedNet(nn.Module):
    """Weight sharing: one Linear applied twice."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.shared, self.out = nn.Linear(6, 4), nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.shared(torch.relu(self.inp(x))))
        return self.out(torch.sigmoid(self.shared(h)))


class UnusedNet(nn.Module):
    """A parameter that never enters the forward pass (its Hessian rows are zero)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.unused = nn.Linear(6, 4), nn.Linear(4, 3), nn.Linear(2, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(torch.sigmoid(self.fc1(x)))


class LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


class EmbeddingNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(7, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.tanh(self.emb(x).mean(1)))


def _mlp():
    model = nn.Sequential(
        nn.Linear(6, 5), nn.Sigmoid(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)
    )
    return model.to(F64), *_xy(12, 6, 3)


def _seq_relu():
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU())
    model.append(nn.Linear(4, 3))
    x = torch.randn(12, 2, 3, dtype=F64)  # flattened to 6 features by nn.Flatten
    return model.to(F64), x, torch.randint(0, 3, (12,))


def _seq_relu_plain():
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(inplace=True), nn.Linear(5, 3))
    return model.to(F64), *_xy(11, 6, 3, 2.0)


def _densenet():
    model = DenseNet(6, (5, 4), 3)
    return model.to(F64), *_xy(12, 6, 3, 2.0)


def _declared():
    return DeclaredNet().to(F64), *_xy(10, 6, 3, 2.0)


def _cnn():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * 2 * 2, 3),
    )
    x = torch.randn(8, 1, 6, 6, dtype=F64)
    return model.to(F64), x, torch.randint(0, 3, (8,))


def _nested():
    inner = nn.Sequential(nn.Linear(6, 4), nn.Tanh())
    model = nn.Sequential(inner, nn.Sequential(nn.Linear(4, 4), nn.ReLU()), nn.Linear(4, 3))
    return model.to(F64), *_xy(10, 6, 3)


def _batchnorm_eval():
    model = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3)).to(F64)
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].weight.normal_()
    return model.eval(), *_xy(10, 6, 3)


def _dropout_eval():
    model = nn.Sequential(nn.Linear(6, 4), nn.Dropout(0.5), nn.Tanh(), nn.Linear(4, 3))
    return model.to(F64).eval(), *_xy(10, 6, 3)


def _frozen():
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)).to(F64)
    model[0].weight.requires_grad_(False)
    return model, *_xy(10, 6, 3, 2.0)


def _unused():
    return UnusedNet().to(F64), *_xy(10, 6, 3)


def _shared():
    return SharedNet().to(F64), *_xy(10, 6, 3)


def _lstm():
    x = torch.randn(6, 4, 3, dtype=F64)
    return LSTMNet().to(F64), x, torch.randint(0, 3, (6,))


def _embedding():
    x = torch.randint(0, 7, (9, 5))
    return EmbeddingNet().to(F64), x, torch.randint(0, 3, (9,))


def _near_miss_inputs(n_small: int = 12, n_large: int = 4) -> tuple[Tensor, Tensor]:
    """Small inputs first, large after (issue 13: a check on the first rows sees only those)."""
    x = torch.cat([0.05 * torch.rand(n_small, 6), 40 * torch.rand(n_large, 6)]).to(F64)
    return x, torch.randint(0, 3, (n_small + n_large,))


def _near(act):
    def make():
        return LayersNet(act).to(F64), *_near_miss_inputs()

    return make


def _extra():
    return ExtraLayerNet().to(F64), *_near_miss_inputs()


def _reversed():
    x, y = _near_miss_inputs()
    return SquareLayersNet().to(F64), x[:, :5].contiguous(), y.remainder(3)


def _relu6_subclass():
    model = Relu6DenseNet(6, (5,), 3).to(F64)
    return model, *_near_miss_inputs()


class BasicBlock(nn.Module):
    """The ResNet basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + x), no conv biases."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + x)


class ResNetBlockNet(nn.Module):
    """A stem conv + BN, one basic block, global average pooling and a Linear head."""

    def __init__(self, channels: int = 3, in_channels: int = 2, classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.block = BasicBlock(channels)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.block(torch.relu(self.bn(self.stem(x))))
        return self.head(h.mean((2, 3)))


class TinyTransformer(nn.Module):
    """A Linear embedding, one ``nn.TransformerEncoderLayer`` (no dropout), mean pool, head."""

    def __init__(self, features: int = 3, d_model: int = 4, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(features, d_model)
        self.encoder = nn.TransformerEncoderLayer(
            d_model, nhead=2, dim_feedforward=6, dropout=0.0, batch_first=True
        )
        self.head = nn.Linear(d_model, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(self.embed(x)).mean(1))


def _random_bn(model: nn.Module) -> nn.Module:
    """Eval mode, with non-trivial running statistics and affine parameters in every BatchNorm."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0.0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1.0, 0.3)
                m.bias.normal_(0.0, 0.3)
    return model.eval()


def _cnn_bn():
    """Conv → BN → ReLU → Conv → ReLU → MaxPool → Flatten → Linear (an nn.Sequential)."""
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Conv2d(3, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 2 * 2, 3),
    )
    x = torch.randn(7, 2, 6, 6, dtype=F64)
    return _random_bn(model.to(F64)), x, torch.randint(0, 3, (7,))


def _conv1d():
    model = nn.Sequential(
        nn.Conv1d(2, 3, 3), nn.Tanh(), nn.Conv1d(3, 4, 2), nn.ReLU(), nn.Flatten(), nn.Linear(12, 3)
    )
    x = torch.randn(8, 2, 6, dtype=F64)
    return model.to(F64), x, torch.randint(0, 3, (8,))


def _conv3d():
    model = nn.Sequential(
        nn.Conv3d(1, 3, 2), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(3, 3)
    )
    x = torch.randn(6, 1, 3, 3, 3, dtype=F64)
    return model.to(F64), x, torch.randint(0, 3, (6,))


def _resnet_block():
    x = torch.randn(6, 2, 4, 4, dtype=F64)
    return _random_bn(ResNetBlockNet().to(F64)), x, torch.randint(0, 3, (6,))


def _transformer():
    x = torch.randn(6, 5, 3, dtype=F64)  # 6 sequences of 5 tokens with 3 features
    return TinyTransformer().to(F64).eval(), x, torch.randint(0, 3, (6,))


ZOO = [
    ZooCase("densenet", _densenet, "dense"),
    ZooCase("sequential-flatten-relu", _seq_relu, "dense", reduction="sum"),
    ZooCase("sequential-relu", _seq_relu_plain, "dense"),
    ZooCase("declared", _declared, "dense", params=["second.weight", "first.bias"]),
    ZooCase("frozen", _frozen, "dense"),
    ZooCase("mlp-sigmoid", _mlp, "autograd"),
    ZooCase("cnn", _cnn, "autograd"),
    ZooCase("cnn-bn", _cnn_bn, "autograd"),
    ZooCase("conv1d", _conv1d, "autograd", reduction="sum"),
    ZooCase("conv3d", _conv3d, "autograd"),
    ZooCase("resnet-block-bn", _resnet_block, "autograd"),
    ZooCase("transformer-encoder", _transformer, "autograd"),
    ZooCase("nested", _nested, "autograd", reduction="sum"),
    ZooCase("weight-sharing", _shared, "autograd"),
    ZooCase("batchnorm-eval", _batchnorm_eval, "autograd"),
    ZooCase("dropout-eval", _dropout_eval, "autograd"),
    ZooCase("unused-param", _unused, "autograd"),
    ZooCase("lstm", _lstm, "autograd"),
    ZooCase("embedding", _embedding, "autograd"),
    ZooCase("near-relu6", _near(F.relu6), "autograd", tags=frozenset({"near-miss"})),
    ZooCase("near-tanh", _near(torch.tanh), "autograd", tags=frozenset({"near-miss"})),
    ZooCase("near-leaky", _near(F.leaky_relu), "autograd", tags=frozenset({"near-miss"})),
    ZooCase("near-linear", _near(None), "autograd", tags=frozenset({"near-miss"})),
    ZooCase("near-extra-layer", _extra, "autograd", tags=frozenset({"near-miss"})),
    ZooCase("near-out-of-order", _reversed, "autograd", tags=frozenset({"near-miss"})),
    ZooCase("near-relu6-subclass", _relu6_subclass, "autograd", tags=frozenset({"near-miss"})),
]
ZOO_IDS = [c.name for c in ZOO]


# --------------------------------------------------------------------------- factories
def cifar_cnn() -> nn.Module:
    """A small CIFAR-10 CNN (3 × 32 × 32 → 10 logits) for ``--model zoo:cifar_cnn``: conv → BN
    → ReLU → conv → ReLU → global average pool → Linear, float32, seeded, eval-mode BN with
    non-trivial statistics."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        model = nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 6, 3, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(6, 10),
        )
        return _random_bn(model)
