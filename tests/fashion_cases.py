"""Small cases and independent references for the fashion-mlp tests (``test_fashion_*.py``).

Nothing here imports ``td_analysis``: a deep float64 ReLU MLP as plain tensors, the seed's
per-layer pruning rules by brute force (python sorting), ``torch.func.hessian`` over the flat
vector of all parameters (the shared ``references.Reference`` with the plain-tensor forward),
and Spearman's ρ from explicit ranks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from references import Reference
from torch import Tensor, nn

F64 = torch.float64


class TinyMLP(nn.Module):
    """``layers`` of nn.Linear with ReLU between: the structure the package's DenseNet has."""

    def __init__(self, widths: Sequence[int], bias: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Linear(a, b, bias=bias) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)


def make_mlp(seed: int = 0, bias: bool = True, widths=(6, 5, 4, 3, 3), n: int = 24, factory=None):
    """A float64 ReLU MLP (3 hidden layers by default) with distinct |θ| and N examples.

    ``factory(widths, bias)`` builds the module (default :class:`TinyMLP`, which the package's
    closed forms do not recognise, so its generic autograd path is used; pass the package's
    DenseNet to exercise the closed forms).
    """
    gen = torch.Generator().manual_seed(seed)
    model = (factory or TinyMLP)(widths, bias).to(F64)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=F64) * 0.9)
    x = torch.randn(n, widths[0], generator=gen, dtype=F64)
    y = torch.randint(0, widths[-1], (n,), generator=gen)
    return model, x, y


def names_of(model: nn.Module, weights_only: bool = False) -> list[str]:
    return [n for n, p in model.named_parameters() if not weights_only or p.ndim == 2]


def flat(model: nn.Module, names: Sequence[str]) -> Tensor:
    named = dict(model.named_parameters())
    return torch.cat([named[n].detach().reshape(-1) for n in names])


def forward64(params: dict[str, Tensor], x: Tensor) -> Tensor:
    """``W_L relu(… relu(W_1 x + b_1) …) + b_L`` from a dict of ``layers.l.weight/bias``."""
    n = sum(1 for k in params if k.endswith(".weight"))
    h = x.double().flatten(1)
    for l in range(n):
        h = h @ params[f"layers.{l}.weight"].double().T
        b = params.get(f"layers.{l}.bias")
        if b is not None:
            h = h + b.double()
        if l < n - 1:
            h = torch.relu(h)
    return h


def ref_hessian(model: nn.Module, x: Tensor, y: Tensor, names: Sequence[str], reduction="mean"):
    """Full float64 Hessian, gradient and loss function of the cross-entropy over the flat θ of
    ``names``: the shared ``references.Reference`` (torch.func) through :func:`forward64`, the
    MLP written here as plain tensors."""
    ref = Reference(model, x, y, params=list(names), reduction=reduction, forward=forward64)
    assert ref.names == list(names), "the reference keeps the model's parameter order"
    return ref.hessian(), ref.grad(), ref.loss


def ref_order_rank(theta: Tensor) -> list[int]:
    """rank[i]: position of flat index i when sorted by decreasing |θ|, ties by index."""
    order = sorted(range(theta.numel()), key=lambda i: (-abs(float(theta[i])), i))
    rank = [0] * len(order)
    for pos, i in enumerate(order):
        rank[i] = pos
    return rank


def seed_count(k: float, n: int) -> int:
    """⌊k·n/100⌋ entries removed at k percent."""
    return min(n, math.floor(round(k * n / 100.0, 9)))


def seed_weight_masks(model: nn.Module, k: float) -> dict[str, np.ndarray]:
    """Per hidden weight matrix: the ⌊k·n/100⌋ smallest |w| (ties: row-major index first)."""
    ws = [(n, p.detach().numpy()) for n, p in model.named_parameters() if p.ndim == 2][:-1]
    out = {}
    for name, w in ws:
        flat_w = list(np.abs(w).reshape(-1))
        idx = sorted(range(len(flat_w)), key=lambda i: (flat_w[i], i))[: seed_count(k, w.size)]
        m = np.zeros(w.size, dtype=bool)
        m[idx] = True
        out[name] = m.reshape(w.shape)
    return out


def seed_unit_masks(model: nn.Module, k: float) -> dict[str, np.ndarray]:
    """Per hidden layer: the ⌊k·out/100⌋ units of smallest incoming L2 norm, removed with their
    bias and outgoing weights (union where two layers touch the same matrix)."""
    named = {n: p.detach().numpy() for n, p in model.named_parameters()}
    n_layers = sum(1 for n in named if n.endswith(".weight"))
    out: dict[str, np.ndarray] = {}

    def add(name: str, m: np.ndarray) -> None:
        out[name] = out[name] | m if name in out else m

    for l in range(n_layers - 1):
        w = named[f"layers.{l}.weight"]
        norms = [math.sqrt(sum(float(v) ** 2 for v in row)) for row in w]
        units = sorted(range(len(norms)), key=lambda o: (norms[o], o))[: seed_count(k, len(norms))]
        rows = np.zeros(w.shape[0], dtype=bool)
        rows[units] = True
        add(f"layers.{l}.weight", np.repeat(rows[:, None], w.shape[1], axis=1))
        nxt = named[f"layers.{l + 1}.weight"]
        add(f"layers.{l + 1}.weight", np.repeat(rows[None, :], nxt.shape[0], axis=0))
        if f"layers.{l}.bias" in named:
            add(f"layers.{l}.bias", rows.copy())
    return out


def deletion(model: nn.Module, masks: dict[str, np.ndarray], names: Sequence[str]) -> Tensor:
    """d = θ ⊙ mask over the flat ``names`` (zeros for unmasked parameters)."""
    named = dict(model.named_parameters())
    parts = []
    for n in names:
        v = named[n].detach().double()
        m = masks.get(n)
        parts.append((v * torch.from_numpy(m).double() if m is not None else 0 * v).reshape(-1))
    return torch.cat(parts)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman ρ from explicit ranks (no ties): Pearson correlation of the rank vectors."""
    ra = np.empty(len(a))
    rb = np.empty(len(b))
    ra[np.argsort(a)] = np.arange(len(a))
    rb[np.argsort(b)] = np.arange(len(b))
    ra -= ra.mean()
    rb -= rb.mean()
    return float((ra * rb).sum() / math.sqrt((ra * ra).sum() * (rb * rb).sum()))


def synthetic_pruning_records(
    seeds: Sequence[int] = (0, 1, 2),
    ks: Sequence[float] = (0.0, 50.0, 90.0, 95.0),
    regularisers: Sequence[str] = ("none", "targeted-weight", "targeted-unit"),
    effect: float = 0.2,
    seed: int = 5,
) -> list[dict]:
    """``pruning.json``-style records with a known structure: accuracy falls with k, a per-seed
    offset shared by every regulariser (so pairing by seed matters), and ``targeted-weight``
    ``effect`` × k/100 more accurate under weight pruning; rounded to 1/2000 like real counts."""
    rnd = np.random.default_rng(seed)
    offsets = {s: rnd.normal(0, 0.03) for s in seeds}
    out = []
    for reg in regularisers:
        for bias in (True, False):
            for s in seeds:
                for kind in ("weight", "unit"):
                    for k in ks:
                        acc = 0.85 - 0.5 * (k / 100) ** 3 + offsets[s] + rnd.normal(0, 0.005)
                        if reg == "targeted-weight" and kind == "weight":
                            acc += effect * k / 100
                        out.append(
                            {
                                "regulariser": reg,
                                "bias": bias,
                                "seed": s,
                                "kind": kind,
                                "k": float(k),
                                "accuracy": round(float(np.clip(acc, 0, 1)) * 2000) / 2000,
                                "loss": float(rnd.uniform(0.2, 2.0)),
                            }
                        )
    return out
