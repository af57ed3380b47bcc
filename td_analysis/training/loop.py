"""Training of dense networks with targeted dropout or a baseline, from in-memory tensors.

Minimises ``(1/B) Σ_b CE(f_θ̃(x_b), y_b) + penalty`` with SGD (momentum) or Adam, where θ̃ are
the regularised weights of :class:`td_analysis.nn.dropout.Regulariser` for the step.  The gradient
of the dense ReLU network is computed in closed form (:func:`loss_and_gradients`: two matrix
products per layer, no autograd graph), which makes a targeted-dropout epoch of the toy network
1.3× faster than autograd (``BENCHMARKS.md``) and lets the dropout masks be plain factors.
Everything random (initialisation, shuffling, dropout draws) comes from the config's seed, so a
run on the CPU is bit-for-bit reproducible.  Checkpoints hold weights, the full config and the
metrics and are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from td_analysis.nets.models import DenseNet, relu_backward_
from td_analysis.nn.dropout import Regulariser, RegulariserConfig  # noqa: F401 - re-exported
from td_analysis.training.config import TrainConfig
from td_analysis.utils import kernels
from td_analysis.utils.io import atomic_open
from td_analysis.utils.progress import progress_bar

__all__ = [
    "TrainConfig",
    "TrainResult",
    "Checkpoint",
    "train",
    "loss_and_gradients",
    "evaluate",
    "build_model",
    "save_checkpoint",
    "load_checkpoint",
    "resolve_device",
    "load_data",
    "check_features",
    "check_finite",
    "DenseStep",
]

CHECKPOINT_FORMAT = "td_analysis.checkpoint/1"


@dataclass
class TrainResult:
    """The trained model (in eval mode) and one dict of metrics per epoch."""

    model: DenseNet
    config: TrainConfig
    history: list[dict]

    @property
    def final(self) -> dict:
        """The last epoch's metrics (empty before training)."""
        return self.history[-1] if self.history else {}


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns."""

    model: DenseNet
    config: TrainConfig
    metrics: dict
    path: Path | None = None


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA if available else CPU; anything else as given."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_model(config: TrainConfig) -> DenseNet:
    """A freshly initialised network for ``config`` (seeded, global RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = DenseNet(config.in_features, config.hidden, config.num_classes, config.bias)
        if config.init == "glorot":
            for layer in model.layers:
                nn.init.xavier_uniform_(layer.weight)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
    return model


@torch.no_grad()
def evaluate(
    model: nn.Module, inputs: Tensor, targets: Tensor, *, batch_size: int = 10000
) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(inputs, targets)``."""
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"{inputs.shape[0]} inputs but {targets.shape[0]} targets")
    if inputs.shape[0] == 0:
        raise ValueError("cannot evaluate on an empty data set")
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    loss, correct = 0.0, 0
    for start in range(0, inputs.shape[0], batch_size):
        x = inputs[start : start + batch_size].to(param.device, param.dtype)
        y = targets[start : start + batch_size].to(param.device)
        logits = model(x)
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    n = inputs.shape[0]
    return {"loss": loss / n, "accuracy": correct / n}


@torch.no_grad()
def loss_and_gradients(
    layers: Sequence[nn.Linear],
    x: Tensor,
    y: Tensor,
    weight_factors: Sequence[Tensor | None] | None = None,
    input_factors: Sequence[Tensor | None] | None = None,
) -> tuple[Tensor, Tensor, list[tuple[Tensor, Tensor | None]]]:
    """Mean cross-entropy of a dense ReLU network and its exact gradient, in closed form.

    Layer ``l`` computes ``z_l = ã_l W̃_lᵀ + b_l`` with ``W̃_l = W_l ⊙ M_l`` (``weight_factors``),
    ``ã_l = a_l ⊙ D_l`` (``input_factors``; ``None`` entries mean 1), ``a_0 = x`` and
    ``a_{l+1} = relu(z_l)``.  For ``L = (1/B) Σ_b CE(z_last[b], y_b)`` backpropagation gives
    ``g_last = (softmax(z_last) − onehot(y)) / B``, ``∂L/∂W_l = (g_lᵀ ã_l) ⊙ M_l``,
    ``∂L/∂b_l = Σ_b g_l`` and ``g_{l−1} = (g_l W̃_l) ⊙ D_l ⊙ 1[z_{l−1} > 0]``.

    Returns ``(L, logits, [(∂L/∂W_l, ∂L/∂b_l or None) for each layer])``; nothing is written
    into ``.grad``.
    """
    n = len(layers)
    weight_factors = weight_factors or [None] * n
    input_factors = input_factors or [None] * n
    if len(weight_factors) != n or len(input_factors) != n:
        raise ValueError(f"need one weight and one input factor (or None) for each of {n} layers")
    inputs: list[Tensor] = []
    weights: list[Tensor] = []
    pre: list[Tensor] = []
    h = x
    for l, layer in enumerate(layers):
        if input_factors[l] is not None:
            h = h * input_factors[l]
        w = layer.weight if weight_factors[l] is None else layer.weight * weight_factors[l]
        inputs.append(h)
        weights.append(w)
        h = F.linear(h, w, layer.bias)
        if l < n - 1:
            pre.append(h)
            h = torch.relu(h)
    logits = h
    logp = torch.log_softmax(logits, dim=1)
    loss = F.nll_loss(logp, y)
    g = logp.exp_()  # softmax; log-probabilities are not needed any more
    g[torch.arange(y.shape[0], device=y.device), y] -= 1.0
    g.mul_(1.0 / y.shape[0])
    grads: list[tuple[Tensor, Tensor | None]] = [None] * n  # type: ignore[list-item]
    for l in range(n - 1, -1, -1):
        grad_w = g.T @ inputs[l]
        if weight_factors[l] is not None:
            grad_w.mul_(weight_factors[l])
        grads[l] = (grad_w, g.sum(0) if layers[l].bias is not None else None)
        if l > 0:
            g = g @ weights[l]
            if input_factors[l] is not None:
                g.mul_(input_factors[l])
            relu_backward_(g, pre[l - 1])
    return loss, logits, grads


class DenseStep:
    """:func:`loss_and_gradients` for repeated steps, in buffers allocated once.

    Same arithmetic (bit for bit) as :func:`loss_and_gradients`, but pre-activations,
    activations, back-propagated errors, masked weights ``W ⊙ M`` and the gradients live in
    buffers made at construction for batches of up to ``batch_size`` rows, and the gradients are
    written into ``layer.weight.grad`` / ``layer.bias.grad`` (allocated here once).  A fresh
    multi-megabyte tensor per step costs page faults: for the 2.4 M-weight MLP of the
    fashion-mlp task that was about a quarter of a step.  The returned logits are a view of a
    buffer that the next call overwrites.  A boolean factor ``M`` (``RegulariserConfig.draws
    = "bits"``) is applied as ``where(M, ·, 0)``: the same values as multiplying by 0/1, up to
    the sign of zeros.
    """

    def __init__(self, layers: Sequence[nn.Linear], batch_size: int) -> None:
        self.layers = list(layers)
        w = self.layers[0].weight
        kw = {"dtype": w.dtype, "device": w.device}
        widths = [layer.weight.shape[0] for layer in self.layers]
        self.pre = [torch.empty(batch_size, m, **kw) for m in widths]
        self.act = [torch.empty(batch_size, m, **kw) for m in widths[:-1]]
        self.err = [torch.empty(batch_size, m, **kw) for m in widths]
        self.masked: list[Tensor | None] = [None] * len(self.layers)
        self.zero = torch.zeros((), **kw)
        self.batch_size = batch_size
        for layer in self.layers:
            layer.weight.grad = torch.zeros_like(layer.weight)
            if layer.bias is not None:
                layer.bias.grad = torch.zeros_like(layer.bias)

    @torch.no_grad()
    def __call__(
        self,
        x: Tensor,
        y: Tensor,
        weight_factors: Sequence[Tensor | None] | None = None,
        input_factors: Sequence[Tensor | None] | None = None,
        masked_weights: Sequence[Tensor | None] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``(L, logits)``; ``∂L/∂W_l`` and ``∂L/∂b_l`` written into the layers' ``.grad``.

        ``masked_weights[l]``, where given, is ``W_l ⊙ M_l`` already computed (as
        :meth:`td_analysis.nn.dropout.Regulariser.step_masks` writes it) and used as is; a uint8
        ``M_l`` (0/1) masks the gradient with :func:`td_analysis.utils.kernels.mask_gradient_`.
        """
        n, b = len(self.layers), x.shape[0]
        if b > self.batch_size:
            raise ValueError(f"batch of {b} rows, the buffers hold {self.batch_size}")
        weight_factors = weight_factors or [None] * n
        input_factors = input_factors or [None] * n
        masked_weights = masked_weights or [None] * n
        inputs: list[Tensor] = []
        weights: list[Tensor] = []
        h = x
        for l, layer in enumerate(self.layers):
            if input_factors[l] is not None:
                h = h * input_factors[l]
            w = layer.weight
            m = weight_factors[l]
            if masked_weights[l] is not None:
                w = masked_weights[l]
            elif m is not None:
                if self.masked[l] is None:
                    self.masked[l] = torch.empty_like(w)
                if m.dtype == torch.bool:  # a 0/1 mask (a float factor multiplies faster)
                    w = torch.where(m, w, self.zero, out=self.masked[l])
                else:
                    w = torch.mul(w, m, out=self.masked[l])
            inputs.append(h)
            weights.append(w)
            z = self.pre[l][:b]
            if layer.bias is not None:
                torch.addmm(layer.bias, h, w.T, out=z)
            else:
                torch.mm(h, w.T, out=z)
            if l < n - 1:
                h = torch.clamp_min(z, 0.0, out=self.act[l][:b])
        logits = self.pre[-1][:b]
        logp = torch.log_softmax(logits, dim=1)
        loss = F.nll_loss(logp, y)
        g = torch.exp(logp, out=self.err[-1][:b])  # softmax
        g[torch.arange(b, device=y.device), y] -= 1.0
        g.mul_(1.0 / b)
        for l in range(n - 1, -1, -1):
            layer = self.layers[l]
            grad = torch.mm(g.T, inputs[l], out=layer.weight.grad)
            m = weight_factors[l]
            if m is not None:
                if m.dtype == torch.uint8:  # a 0/1 keep mask of the fused kernels
                    kernels.mask_gradient_(grad, m)
                elif m.dtype == torch.bool:
                    torch.where(m, grad, self.zero, out=grad)
                else:
                    grad.mul_(m)
            if layer.bias is not None:
                torch.sum(g, 0, out=layer.bias.grad)
            if l > 0:
                g = torch.mm(g, weights[l], out=self.err[l - 1][:b])
                if input_factors[l] is not None:
                    g.mul_(input_factors[l])
                relu_backward_(g, self.pre[l - 1][:b])
        return loss, logits


def load_data(
    config: TrainConfig,
    split: str,
    *,
    root: str | Path | None = None,
    download: bool = False,
    dataset: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Split ``split`` of the run's data set, preprocessed as the run was trained.

    ``dataset`` (default ``config.dataset``) may name another data set to analyse the network
    on; its inputs must have the network's ``config.in_features`` features, else a
    ``ValueError`` names both data sets and feature counts.
    """
    from td_analysis import data

    name = dataset or config.dataset
    x, y = data.load_dataset(
        name, split, root=root, download=download, preprocessing=config.preprocessing
    )
    check_features(config, x, name)
    return x, y


def check_features(config: TrainConfig, inputs: Tensor, dataset: str | None = None) -> None:
    """Raise a one-line ``ValueError`` unless ``inputs`` (N × F) has the network's F features."""
    features = inputs.shape[1] if inputs.ndim == 2 else None
    if features != config.in_features:
        where = f"{dataset} has" if dataset else "the inputs have"
        got = f"{features} features" if features is not None else f"shape {tuple(inputs.shape)}"
        raise ValueError(
            f"the network was trained on {config.dataset} ({config.in_features} features) but "
            f"{where} {got}"
        )


def _optimizer(config: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """SGD (momentum) or Adam; the fused single-kernel update where this torch has one."""
    if config.optimizer == "sgd":
        cls, kw = torch.optim.SGD, {"momentum": config.momentum}
    else:
        cls, kw = torch.optim.Adam, {}
    kw.update(lr=config.lr, weight_decay=config.weight_decay)
    try:  # fused CPU optimisers exist from torch 2.4 on (~40% less time per update here)
        return cls(params, fused=True, **kw)
    except (TypeError, RuntimeError, ValueError):
        return cls(params, **kw)


def divergence_error(epoch: int, lr: float) -> FloatingPointError:
    """The error for a training run whose summed loss of (1-based) ``epoch`` is not finite."""
    return FloatingPointError(
        f"training diverged in epoch {epoch} (loss is not finite): lower the lr (now {lr})"
    )


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(num_threads)`` (``None``: unchanged) and put
    the previous count back afterwards, also on an error."""
    before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(
    config: TrainConfig,
    *,
    train_data: tuple[Tensor, Tensor] | None = None,
    eval_data: tuple[Tensor, Tensor] | None = None,
    data_root: str | Path | None = None,
    progress: bool = True,
    snapshots: Sequence[int] = (),
    on_snapshot: Callable[[TrainResult], None] | None = None,
) -> TrainResult:
    """Train a :class:`DenseNet` as ``config`` says.

    Without ``train_data``, ``config.train_split`` of ``config.dataset`` (and ``eval_split``,
    unless ``eval_data`` is given) are loaded from ``data_root`` (:func:`load_data`);
    with ``train_data`` only what is passed is used (no evaluation without ``eval_data``).
    Returns the model and a per-epoch history of train loss/accuracy (on the regularised
    network, running average) and eval loss/accuracy (on the unmasked network).

    ``snapshots``: epochs e < ``config.epochs`` after which ``on_snapshot`` receives the
    network as a :class:`TrainResult` whose config says ``epochs=e`` (the model is the live one,
    in eval mode only during the call: save it, do not keep it).  Nothing in a run depends on its
    total length (constant learning rate, per-step regulariser schedule), so that snapshot *is*
    the run of ``replace(config, epochs=e)``: one long run gives every shorter one.
    """
    snapshots = sorted({int(e) for e in snapshots})
    if snapshots and (snapshots[0] < 1 or on_snapshot is None):
        raise ValueError(
            f"snapshots must be epochs ≥ 1 with an on_snapshot callback, got {snapshots}"
        )
    with torch_threads(config.num_threads):
        return _train(config, train_data, eval_data, data_root, progress, snapshots, on_snapshot)


def _train(
    config: TrainConfig,
    train_data: tuple[Tensor, Tensor] | None,
    eval_data: tuple[Tensor, Tensor] | None,
    data_root: str | Path | None,
    progress: bool,
    snapshots: Sequence[int] = (),
    on_snapshot: Callable[[TrainResult], None] | None = None,
) -> TrainResult:
    device = resolve_device(config.device)
    if train_data is None:
        train_data = load_data(config, config.train_split, root=data_root)
        if eval_data is None and config.eval_split:
            eval_data = load_data(config, config.eval_split, root=data_root)
    x_train, y_train = train_data
    if config.train_limit is not None:
        x_train, y_train = x_train[: config.train_limit], y_train[: config.train_limit]
    if x_train.ndim != 2 or x_train.shape[1] != config.in_features:
        raise ValueError(
            f"training inputs must be N × {config.in_features}, got {tuple(x_train.shape)}"
        )
    if y_train.shape != (x_train.shape[0],):
        raise ValueError(
            f"targets must have shape ({x_train.shape[0]},), got {tuple(y_train.shape)}"
        )
    x_train = x_train.to(device, torch.float32)
    y_train = y_train.to(device, torch.long)

    model = build_model(config).to(device)
    gen = torch.Generator().manual_seed(config.seed + 1)
    reg = Regulariser(config.regulariser, len(model.layers), gen)
    params = list(model.parameters())
    opt = _optimizer(config, params)

    n = x_train.shape[0]
    steps_per_epoch = math.ceil(n / config.batch_size)
    history: list[dict] = []
    step = 0
    bar = progress_bar(
        total=config.epochs * steps_per_epoch,
        desc=f"train {config.regulariser.label} seed={config.seed}",
        disable=not progress,
        unit="step",
        leave=False,
    )
    layers = list(model.layers)
    weights = [layer.weight for layer in layers]  # the parameters themselves, updated in place
    # one gather buffer for the batches: no 1.5 MB allocation (and page faults) per step
    x_batch = x_train.new_empty((min(config.batch_size, n), x_train.shape[1]))
    dense_step = DenseStep(layers, x_batch.shape[0])  # and buffers for everything else
    model.train()
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for start in range(0, n, config.batch_size):
            idx = perm[start : start + config.batch_size]
            # masks, and W ⊙ M written by the fused kernels where they serve (same draws);
            # before the batch gather, while the weights are still in cache from the update
            factors = reg.step_masks(weights, idx.shape[0], step, dense_step.masked)
            xb = torch.index_select(x_train, 0, idx, out=x_batch[: idx.shape[0]])
            yb = y_train[idx]
            loss, logits = dense_step(xb, yb, *factors)  # gradients in the layers' .grad
            for l, layer in enumerate(layers):
                extra = reg.penalty_gradient(l, layer.weight)
                if extra is not None:
                    layer.weight.grad.add_(extra)
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            loss_sum += loss * yb.shape[0]
            correct += (logits.argmax(1) == yb).sum()
            step += 1
            bar.update(1)
        if not torch.isfinite(loss_sum):
            bar.close()
            raise divergence_error(epoch + 1, config.lr)
        record = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": loss_sum.item() / n,
            "train_accuracy": correct.item() / n,
            "seconds": time.perf_counter() - t0,
        }
        if eval_data is not None:
            ev = evaluate(model, *eval_data)
            record["eval_loss"], record["eval_accuracy"] = ev["loss"], ev["accuracy"]
            model.train()
        history.append(record)
        bar.set_postfix(
            loss=f"{record['train_loss']:.3f}",
            acc=f"{record.get('eval_accuracy', record['train_accuracy']):.3f}",
        )
        if epoch + 1 in snapshots and epoch + 1 < config.epochs:
            model.eval()
            check_finite(model, f"after epoch {epoch + 1}")
            on_snapshot(
                TrainResult(
                    model=model,
                    config=dataclasses.replace(config, epochs=epoch + 1),
                    history=[dict(h) for h in history],
                )
            )
            model.train()
    bar.close()
    model.eval()
    try:  # a finite loss can still hide an overflowed weight; never write such a network
        check_finite(model, "after training")
    except ValueError as exc:
        raise FloatingPointError(f"{exc}: lower the lr (now {config.lr})") from None
    return TrainResult(model=model, config=config, history=history)


def check_finite(model: nn.Module, where: str) -> None:
    """One-line ``ValueError`` naming the first parameter or buffer of ``model`` with a NaN or
    ±inf entry (how many, of how many): Hessians, pruning and plots of such a network are
    meaningless (NaN rows, a LinAlgError, zero shares)."""
    for name, t in (*model.named_parameters(), *model.named_buffers()):
        if t.is_floating_point() or t.is_complex():
            bad = int((~torch.isfinite(t.detach())).sum())
            if bad:
                raise ValueError(
                    f"{where}: parameter {name} has {bad:,} non-finite value(s) (NaN or inf) "
                    f"among {t.numel():,}"
                )


def _state_mismatch(model: nn.Module, state: dict) -> str:
    """A short description of how a state dict differs from ``model``'s (instead of torch's
    multi-line ``load_state_dict`` message)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        parts = [f"missing {', '.join(missing[:3])}" if missing else ""]
        parts.append(f"unexpected {', '.join(map(str, extra[:3]))}" if extra else "")
        return "; ".join(p for p in parts if p)
    for k, t in own.items():
        other = state[k]
        shape = tuple(getattr(other, "shape", ()))
        if shape != tuple(t.shape):
            want = "×".join(map(str, t.shape))
            return f"{k} is {'×'.join(map(str, shape)) or 'not a tensor'}, the network needs {want}"
    return "the weights do not fit the network"


def save_checkpoint(
    path: str | Path, model: DenseNet, config: TrainConfig, metrics: dict | None = None
) -> Path:
    """Write weights, config and metrics to ``path`` atomically; returns the path."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": model.arch,
        "config": config.to_dict(),
        "metrics": metrics or {},
        "state_dict": state,
    }
    with atomic_open(path, "wb") as f:
        torch.save(payload, f)
    return path


def read_checkpoint_file(
    path: Path,
    unreadable: Callable[[Exception], str],
    *,
    map_location: str | torch.device = "cpu",
    chain: bool = True,
) -> object:
    """``torch.load(path, weights_only=True)``: tensors and plain data only, no code runs.

    No such file: ``FileNotFoundError``; a file torch cannot read: ``ValueError(unreadable(exc))``
    (raised from torch's error when ``chain``, else with that error suppressed).
    """
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ValueError(unreadable(exc)) from (exc if chain else None)


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model of a checkpoint without the caller knowing its architecture."""
    path = Path(path)

    def unreadable(exc: Exception) -> str:
        # torch's weights-only message suggests weights_only=False, which is wrong here (a
        # td_analysis checkpoint holds only tensors and plain data): keep the gist only
        text = str(exc).strip()
        gist = text.splitlines()[0].split(". ")[0].rstrip(".") if text else "unreadable"
        return (
            f"checkpoint {path} is corrupt, truncated or not a td_analysis checkpoint "
            f"({type(exc).__name__}: {gist[:200]})"
        )

    payload = read_checkpoint_file(path, unreadable, map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a td_analysis checkpoint (format {CHECKPOINT_FORMAT})")
    try:
        arch = payload["arch"]
        model = DenseNet(arch["in_features"], arch["hidden"], arch["num_classes"], arch["bias"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"checkpoint {path} has no usable architecture ({exc!s:.120})") from None
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} is incomplete: it holds no weights")
    try:
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError):
        # torch's message lists every mismatch with reprs (~900 characters): one line instead
        raise ValueError(
            f"checkpoint {path} does not match the architecture it records: "
            f"{_state_mismatch(model, state)}"
        ) from None
    try:
        config = TrainConfig.from_dict(payload["config"])
        metrics = payload["metrics"]
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"checkpoint {path} is incomplete or inconsistent: {text:.160}") from exc
    check_finite(model, f"checkpoint {path}")
    model.eval()
    return Checkpoint(model=model, config=config, metrics=metrics, path=path)
