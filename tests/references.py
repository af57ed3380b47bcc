"""Independent references for the by-value tests, written from REFERENCE.md's definitions.

Nothing here imports ``td_analysis``: plain float64 torch (autograd through ``torch.func``),
numpy brute force and closed forms of the dense ReLU network, so that a test comparing a
pipeline output with these functions cannot pass because the pipeline and the reference share a
bug.  Shapes follow ``torch.nn.Linear``: a weight ``W`` is ``out × in``, so "per output unit"
means per *row* (the official TensorFlow code stores ``in × out`` and works per column).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, jacrev
from torch.nn.attention import SDPBackend, sdpa_kernel

F64 = torch.float64

# ------------------------------------------------------------------------------------------------
# The float64 torch.func reference of any model (re-exported by zoo.py)
# ------------------------------------------------------------------------------------------------


def selected_names(model: nn.Module, params=None) -> list[str]:
    """``None`` = the trainable parameters; a name, names or "weights" (2-D ones)."""
    named = list(model.named_parameters())
    if params is None:
        return [n for n, p in named if p.requires_grad]
    if params == "weights":
        wanted = {n for n, p in named if p.ndim == 2}
    elif isinstance(params, str):
        wanted = {params}
    else:
        wanted = set(params)
    return [n for n, _ in named if n in wanted]


class Reference:
    """ℓ(θ) on a float64 copy of the model: θ the flat selected parameters (row-major, in order).

    The loss is ``F.cross_entropy`` itself (so ``ignore_index`` has PyTorch's semantics).
    ``forward(params, x)`` (params: every parameter and buffer by name) replaces the model's own
    forward (``functional_call``) by one written in the test, e.g. a plain-tensor MLP.
    """

    def __init__(self, model, x, y, params=None, reduction="mean", ignore_index=-100, forward=None):
        self.model = copy.deepcopy(model).to(F64)
        self.names = selected_names(model, params)
        self.all = {n: p.detach() for n, p in self.model.named_parameters()}
        self.buffers = {n: b.detach() for n, b in self.model.named_buffers()}
        self.x = x.to(F64) if x.is_floating_point() else x
        self.y, self.reduction, self.ignore_index = y, reduction, ignore_index
        self.theta = torch.cat([self.all[n].reshape(-1) for n in self.names])
        self.forward = forward

    def _params(self, theta: Tensor) -> dict[str, Tensor]:
        out, offset = {**self.all, **self.buffers}, 0
        for n in self.names:
            k = self.all[n].numel()
            out[n] = theta[offset : offset + k].reshape(self.all[n].shape)
            offset += k
        return out

    def logits(self, theta: Tensor) -> Tensor:
        if self.forward is not None:
            return self.forward(self._params(theta), self.x)
        return functional_call(self.model, self._params(theta), (self.x,))

    def loss(self, theta: Tensor | None = None) -> Tensor:
        theta = self.theta if theta is None else theta
        return F.cross_entropy(
            self.logits(theta), self.y, reduction=self.reduction, ignore_index=self.ignore_index
        )

    def hessian(self) -> Tensor:
        """``torch.func.hessian`` (jacfwd of jacrev); for a model with LayerNorm plain
        double-backward autograd instead (``torch.autograd.functional.hessian``): in torch 2.13
        the vmapped reverse-over-reverse of ``layer_norm`` on 3-D inputs is wrong (asymmetric,
        off by O(1)), while one double-backward per row is right (finite differences agree).
        Attention runs on the math SDPA kernel (the fused kernels have no double backward)."""
        with sdpa_kernel(SDPBackend.MATH):
            if any(isinstance(m, nn.LayerNorm) for m in self.model.modules()):
                return torch.autograd.functional.hessian(self.loss, self.theta)
            return torch.func.hessian(self.loss)(self.theta)

    def grad(self) -> Tensor:
        return torch.func.grad(self.loss)(self.theta)

    def ggn(self) -> Tensor:
        """Σₙ Jₙᵀ (diag pₙ − pₙpₙᵀ) Jₙ (scaled like the loss; no ignored labels)."""
        J = jacrev(self.logits)(self.theta)  # N × K × P
        p = torch.softmax(self.logits(self.theta), dim=1)
        A = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        G = torch.einsum("nkp,nkl,nlq->pq", J, A, J)
        return G / self.x.shape[0] if self.reduction == "mean" else G


# ------------------------------------------------------------------------------------------------
# The dense ReLU network in float64
# ------------------------------------------------------------------------------------------------


def dense_params(model: torch.nn.Module) -> tuple[list[Tensor], list[Tensor | None]]:
    """Weights ``layers.{l}.weight`` and biases ``layers.{l}.bias`` (or None), float64 copies."""
    sd = model.state_dict()
    n = sum(1 for k in sd if k.startswith("layers.") and k.endswith(".weight"))
    ws = [sd[f"layers.{l}.weight"].detach().double().clone() for l in range(n)]
    bs = [
        None if f"layers.{l}.bias" not in sd else sd[f"layers.{l}.bias"].detach().double().clone()
        for l in range(n)
    ]
    return ws, bs


def logits64(ws: Sequence[Tensor], bs: Sequence[Tensor | None], x: Tensor) -> Tensor:
    """``W_L relu(… relu(W_1 x + b_1) …) + b_L`` in float64."""
    h = x.double().flatten(1)
    for l, (w, b) in enumerate(zip(ws, bs, strict=True)):
        h = h @ w.T
        if b is not None:
            h = h + b
        if l < len(ws) - 1:
            h = torch.relu(h)
    return h


def cross_entropy64(
    ws: Sequence[Tensor],
    bs: Sequence[Tensor | None],
    x: Tensor,
    y: Tensor,
    reduction: str = "mean",
) -> Tensor:
    """Cross-entropy of the float64 network (``F.cross_entropy``), mean or sum over the data."""
    return F.cross_entropy(logits64(ws, bs, x), y, reduction=reduction)


def accuracy_range(logits: Tensor, y: Tensor, margin: float = 1e-4) -> tuple[int, int]:
    """``(lo, hi)`` bounds on the number of correct predictions a float32 evaluation may count.

    Images whose two largest float64 logits are closer than ``margin`` could flip under float32
    rounding; all others are certain.
    """
    top2 = torch.topk(logits, 2, dim=1).values
    uncertain = (top2[:, 0] - top2[:, 1]) < margin
    correct = logits.argmax(1) == y
    return int((correct & ~uncertain).sum()), int((correct | uncertain).sum())


def assert_accuracy(got: float, logits: Tensor, y: Tensor) -> None:
    """``got`` is a count over ``len(y)`` images within :func:`accuracy_range` of the reference."""
    n = len(y)
    count = got * n
    assert abs(count - round(count)) < 1e-6, f"accuracy {got} is not a count over {n} images"
    lo, hi = accuracy_range(logits, y)
    assert lo <= round(count) <= hi, f"accuracy {got}: reference {lo / n}–{hi / n}"


# ------------------------------------------------------------------------------------------------
# Magnitude pruning by brute force (REFERENCE.md: per output unit by |w|; units by L2 norm)
# ------------------------------------------------------------------------------------------------


def weight_prune_mask(w: Tensor | np.ndarray, k: float) -> np.ndarray:
    """Removed (True): per row o, ``|W_oi| < sort(|W_o,:|)[int(k·in)]``."""
    mag = np.abs(np.asarray(w, dtype=np.float64))
    tau = np.sort(mag, axis=1)[:, int(k * mag.shape[1])]
    return mag < tau[:, None]


def layer_weight_prune_mask(w: Tensor | np.ndarray, k: float) -> np.ndarray:
    """Removed (True): ``|W_oi| < sort(|W|)[int(k·numel)]`` over the whole matrix (the seed's
    per-layer weight pruning)."""
    mag = np.abs(np.asarray(w, dtype=np.float64))
    return mag < np.sort(mag, axis=None)[int(k * mag.size)]


def unit_prune_mask(w: Tensor | np.ndarray, k: float) -> np.ndarray:
    """Removed (True): whole rows with ``‖W_o,:‖₂ < sort(norms)[int(k·out)]``, W-shaped."""
    w = np.asarray(w, dtype=np.float64)
    norms = np.sqrt((w * w).sum(axis=1))
    rows = norms < np.sort(norms)[int(k * w.shape[0])]
    return np.repeat(rows[:, None], w.shape[1], axis=1)


def lowest_set(theta: Tensor | np.ndarray, k: float) -> np.ndarray:
    """Boolean over a flat θ: the ``int(k·P)`` entries of smallest |θ| (argsort)."""
    mag = np.abs(np.asarray(theta, dtype=np.float64).reshape(-1))
    out = np.zeros(mag.size, dtype=bool)
    out[np.argsort(mag, kind="stable")[: int(k * mag.size)]] = True
    return out


def random_deletions(
    shapes: Sequence[tuple[int, ...]], n_masks: int, seed: int, lo: float = 0.05, hi: float = 0.95
) -> list[tuple[float, list[np.ndarray]]]:
    """The documented random-deletion protocol of ``random_mask_sweep``: one generator seeded with
    ``seed``; per mask a fraction ``lo + (hi − lo)·u`` then, per weight in network order, remove
    each entry with ``u < fraction``."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_masks):
        fraction = lo + (hi - lo) * float(torch.rand((), generator=gen))
        out.append((fraction, [(torch.rand(s, generator=gen) < fraction).numpy() for s in shapes]))
    return out


# ------------------------------------------------------------------------------------------------
# Taylor terms and curvature
# ------------------------------------------------------------------------------------------------


def hessian_diagonal_2layer(
    ws: Sequence[Tensor],
    bs: Sequence[Tensor | None],
    x: Tensor,
    y: Tensor,
    reduction: str = "mean",
) -> list[Tensor]:
    """Closed-form diag H of the cross-entropy of ``W₂ relu(W₁x + b₁) + b₂`` (ReLU'' = 0 a.e.).

    With ``u = W₁x + b₁``, ``a = relu(u)``, ``p = softmax(z)``:
    ``∂²L/∂W₂[c,o]² = Σ_n p_nc(1 − p_nc) a_no²`` and
    ``∂²L/∂W₁[o,i]² = Σ_n x_ni² 1[u_no > 0] (Σ_c p_nc W₂[c,o]² − (Σ_c p_nc W₂[c,o])²)``.
    """
    if len(ws) != 2:
        raise ValueError("the closed form is for one hidden layer")
    w1, w2 = ws
    x = x.double().flatten(1)
    u = x @ w1.T + (0 if bs[0] is None else bs[0])
    a = torch.relu(u)
    p = torch.softmax(a @ w2.T + (0 if bs[1] is None else bs[1]), dim=1)
    d2 = (p * (1 - p)).T @ (a * a)
    s = p @ (w2 * w2) - (p @ w2) ** 2
    d1 = ((u > 0).double() * s).T @ (x * x)
    scale = 1.0 / len(y) if reduction == "mean" else 1.0
    return [d1 * scale, d2 * scale]


def taylor_reference(
    ws: Sequence[Tensor],
    bs: Sequence[Tensor | None],
    x: Tensor,
    y: Tensor,
    masks: Sequence[np.ndarray | None],
) -> dict[str, float]:
    """Every Taylor term and measurement of deleting ``d = θ ⊙ mask`` (mean cross-entropy).

    ∇ by ``torch.func.grad``, ``Hd`` by ``torch.func.jvp`` of the gradient (forward over
    reverse), diag H in closed form; the measured ΔE = E(θ − d) − E(θ).
    """
    ws = tuple(w.double() for w in ws)
    d = tuple(
        torch.zeros_like(w) if m is None else w * torch.from_numpy(np.asarray(m)).to(w.dtype)
        for w, m in zip(ws, masks, strict=True)
    )

    def loss(wt: tuple[Tensor, ...]) -> Tensor:
        return cross_entropy64(list(wt), bs, x, y)

    g, hd = torch.func.jvp(torch.func.grad(loss), (ws,), (d,))
    diag = hessian_diagonal_2layer(ws, bs, x, y)
    first = -sum(float((gi * di).sum()) for gi, di in zip(g, d, strict=True))
    second = 0.5 * sum(float((di * hi).sum()) for di, hi in zip(d, hd, strict=True))
    with torch.no_grad():
        logits = logits64(ws, bs, x)
        pruned_logits = logits64([w - di for w, di in zip(ws, d, strict=True)], bs, x)
        base, pruned = F.cross_entropy(logits, y), F.cross_entropy(pruned_logits, y)
    return {
        "n_pruned": int(sum(0 if m is None else int(np.asarray(m).sum()) for m in masks)),
        "first_order": first,
        "second_order": second,
        "diagonal": 0.5 * sum(float((h * di * di).sum()) for h, di in zip(diag, d, strict=True)),
        "estimate": first + second,
        "magnitude": sum(float(di.abs().sum()) for di in d),
        "loss": float(base),
        "pruned_loss": float(pruned),
        "measured": float(pruned) - float(base),
        "logits": logits,
        "pruned_logits": pruned_logits,
    }


def last_layer_coadaptation(
    ws: Sequence[Tensor],
    bs: Sequence[Tensor | None],
    x: Tensor,
    y: Tensor,
    reduction: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``(θ, C)`` over the last weight matrix, flat row-major: ``C_ij = θ_i H_ij θ_j`` with H from
    ``torch.func.hessian`` of the float64 cross-entropy (``reduction``: "sum" or "mean")."""
    ws = [w.double() for w in ws]

    def loss(w: Tensor) -> Tensor:
        return cross_entropy64([*ws[:-1], w], bs, x, y, reduction)

    p = ws[-1].numel()
    H = torch.func.hessian(loss)(ws[-1]).reshape(p, p)
    theta = ws[-1].reshape(-1)
    return theta.numpy(), (theta[:, None] * H * theta[None, :]).numpy()


def block_sums(C: np.ndarray, pruned: np.ndarray) -> dict[str, float]:
    """Sums of C over kept×kept, both kept×pruned blocks and pruned×pruned, by index sets (no
    ordering), with the shares of Σ|C| and ½·pruned×pruned."""
    P = np.asarray(pruned, dtype=bool)
    K = ~P

    def block(M: np.ndarray, r: np.ndarray, c: np.ndarray) -> float:
        return float(M[np.ix_(r, c)].sum())

    A = np.abs(C)
    kk, kp, pp = block(C, K, K), block(C, K, P) + block(C, P, K), block(C, P, P)
    akk, akp, app = block(A, K, K), block(A, K, P) + block(A, P, K), block(A, P, P)
    total_abs = akk + akp + app
    return {
        "kept_kept": kk,
        "kept_pruned": kp,
        "pruned_pruned": pp,
        "abs_share_kept_kept": akk / total_abs,
        "abs_share_kept_pruned": akp / total_abs,
        "abs_share_pruned_pruned": app / total_abs,
        "n_kept": int(K.sum()),
        "n_pruned": int(P.sum()),
        "total": float(C.sum()),
        "second_order_estimate": 0.5 * pp,
    }


# ------------------------------------------------------------------------------------------------
# Targeted dropout of any Linear/Conv weight, the ramp, the CIFAR augmentation (issue 21)
# ------------------------------------------------------------------------------------------------


def targeted_reference(w: Tensor | np.ndarray, gamma: float, kind: str) -> np.ndarray:
    """Targeted entries (True), w-shaped: the for-ai/TD rule on ``V = w.reshape(out, -1)``
    (per row for ``kind="weight"``, whole rows by L2 norm for ``"unit"``), by np.sort."""
    w = np.asarray(w, dtype=np.float64)
    v = w.reshape(w.shape[0], -1)
    mask = weight_prune_mask(v, gamma) if kind == "weight" else unit_prune_mask(v, gamma)
    return mask.reshape(w.shape)


def ramp_reference(s: float, gamma: float, alpha: float, r: float) -> tuple[float, float]:
    """REFERENCE.md's piecewise ramp with R = r steps (40,000 there): (γ(s), α(s))."""
    a = alpha * min(1.0, s / r)
    g = 0.95 * gamma * min(1.0, s / (r / 2)) + 0.05 * gamma * min(
        max((s - r / 2) / (r / 2), 0.0), 1.0
    )
    return g, a


def crop_flip_reference(
    x: np.ndarray, i: Sequence[int], j: Sequence[int], flip: Sequence[bool], padding: int = 4
) -> np.ndarray:
    """Per image: zero-pad by ``padding``, crop H × W at (i, j), mirror left-right if flip."""
    n, c, h, w = x.shape
    out = np.empty_like(x)
    for k in range(n):
        p = np.pad(x[k], ((0, 0), (padding, padding), (padding, padding)))
        crop = p[:, i[k] : i[k] + h, j[k] : j[k] + w]
        out[k] = crop[:, :, ::-1] if flip[k] else crop
    return out


# ------------------------------------------------------------------------------------------------
# The official pre-activation CIFAR ResNet (REFERENCE.md), written from the text
# ------------------------------------------------------------------------------------------------


def preact_resnet_logits64(
    state: dict[str, Tensor],
    x: Tensor,
    units: Sequence[int],
    init_kernel: int = 7,
    batch_stats: dict[str, list[tuple[Tensor, Tensor]]] | None = None,
) -> Tensor:
    """Float64 logits of REFERENCE.md's ResNet from a plain state dict: init conv (stride 1),
    per unit ``h + conv2(relu(bn2(conv1(relu(bn1(h))))))`` with the 1×1 projection of
    ``relu(bn1(h))`` in each stage's first unit (stride 2 from the second stage), then
    BN → ReLU → global average pool → logits.  BN in evaluation mode (running statistics); with
    ``batch_stats`` (a dict) BN normalises by the batch's own mean and biased variance, as in
    training, and appends ``(mean, unbiased variance)`` per channel to ``batch_stats[bn name]``."""
    s = {k: v.double() for k, v in state.items() if v.is_floating_point()}

    def bn(h: Tensor, p: str) -> Tensor:
        if batch_stats is not None:
            m, v = h.mean(dim=(0, 2, 3)), h.var(dim=(0, 2, 3), correction=0)
            batch_stats.setdefault(p, []).append((m, h.var(dim=(0, 2, 3), correction=1)))
            z = (h - m[None, :, None, None]) / torch.sqrt(v[None, :, None, None] + 1e-5)
            return z * s[p + ".weight"][None, :, None, None] + s[p + ".bias"][None, :, None, None]
        return F.batch_norm(
            h, s[p + ".running_mean"], s[p + ".running_var"], s[p + ".weight"], s[p + ".bias"],
            training=False, eps=1e-5,
        )  # fmt: skip

    h = F.conv2d(x.double().reshape(-1, 3, 32, 32), s["init_conv.weight"], padding=init_kernel // 2)
    i = 0
    for stage, n in enumerate(units):
        for u in range(n):
            p = f"blocks.{i}."
            stride = 2 if stage > 0 and u == 0 else 1
            a = torch.relu(bn(h, p + "bn1"))
            shortcut = F.conv2d(a, s[p + "proj.weight"], stride=stride) if u == 0 else h
            t = F.conv2d(a, s[p + "conv1.weight"], stride=stride, padding=1)
            t = F.conv2d(torch.relu(bn(t, p + "bn2")), s[p + "conv2.weight"], padding=1)
            h, i = t + shortcut, i + 1
    h = torch.relu(bn(h, "bn")).mean(dim=(2, 3))
    return h @ s["logits.weight"].T + s["logits.bias"]


def recalibrated_resnet_state(
    state: dict[str, Tensor], x: Tensor, units: Sequence[int], batch_size: int = 256
) -> dict[str, Tensor]:
    """``state`` with every BN's running statistics re-estimated on ``x``: the plain mean over
    batches of ``batch_size`` of each batch's mean and unbiased variance, the network evaluated
    with those batch statistics (the definition ``recalibrate_batchnorm`` documents)."""
    stats: dict[str, list[tuple[Tensor, Tensor]]] = {}
    for start in range(0, x.shape[0], batch_size):
        preact_resnet_logits64(state, x[start : start + batch_size], units, batch_stats=stats)
    out = dict(state)
    for p, pairs in stats.items():
        out[p + ".running_mean"] = torch.stack([m for m, _ in pairs]).mean(0)
        out[p + ".running_var"] = torch.stack([v for _, v in pairs]).mean(0)
    return out
