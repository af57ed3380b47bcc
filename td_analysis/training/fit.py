"""Training any ``nn.Module`` with autograd: the regularisers of :mod:`td_analysis.nn`,
SGD/Adam, LR schedules, CIFAR augmentation, AMP, ``channels_last`` and DDP.

Minimises ``(1/B) Σ_b CE_ε(f_θ̃(aug(x_b)), y_b) + λ Σ|W|`` per global batch of B examples
(``ε`` label smoothing, ``θ̃`` the regularised weights, ``λ`` the L1 coefficient).  With R
data-parallel processes (``torchrun``, :func:`td_analysis.curvature.distributed.init_from_env`)
each rank takes a contiguous shard of every global batch and scales its summed loss by
``R / B``, so DDP's gradient average is exactly the gradient of the global mean; every rank
draws the same shuffle, augmentation and regulariser masks (same seeds, synchronised weights).
The closed-form :func:`td_analysis.training.loop.train` stays the fast path for the dense network.

Everything random is seeded from ``FitConfig.seed``: the shuffle (``seed + 1``), the augmentation
(``seed + 2``) and, for a regulariser that :func:`fit` applies itself, its draws (``seed + 3``).
Checkpoints (one per epoch, atomic) hold the model (plain keys), optimiser, scheduler, scaler and
every generator, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from td_analysis.curvature.distributed import rank_and_world, shard
from td_analysis.nn.dropout import RegulariserConfig
from td_analysis.nn.regularisers import apply_regulariser, l1_penalty
from td_analysis.nn.targeted import EVAL_MODES, WeightRegulariser, wrapped_modules
from td_analysis.training.loop import (
    divergence_error,
    evaluate,
    read_checkpoint_file,
    resolve_device,
    torch_threads,
)
from td_analysis.utils.io import atomic_open
from td_analysis.utils.progress import progress_bar

__all__ = [
    "FitConfig",
    "FitResult",
    "fit",
    "augment_params",
    "crop_flip",
    "cifar_augment",
    "load_fit_checkpoint",
]

FIT_CHECKPOINT_FORMAT = "td_analysis.fit-checkpoint/1"
SCHEDULES = ("constant", "step", "cosine")


@dataclass
class FitConfig:
    """A training run of any model (stored in its checkpoints).

    ``batch_size`` is the global batch (split over DDP ranks).  ``schedule``: ``"constant"``,
    ``"step"`` (``lr × lr_decay`` at each optimiser step in ``milestones``, as the official
    ResNet's 40k/60k/80k) or ``"cosine"`` (``lr·(1 + cos(π t/T))/2`` over all T steps).
    ``regulariser``: applied by :func:`fit` to the model (``apply_regulariser``, its draws seeded
    by ``seed + 3``; ``layers`` index the Linear/Conv modules, ``None`` = all of them, logits
    included, as for the closed-form path); leave it ``"none"`` for a model already wrapped by
    the caller.  Its
    ``l1`` coefficient adds ``λ Σ|W|`` (every Linear/Conv) to the loss.  ``channels_last``:
    ``None`` = on for a CUDA model with Conv2d layers and image batches (N, C, H, W);
    ``amp``: ``None`` = on for CUDA (bfloat16 autocast, else float16 with a gradient scaler).
    ``num_threads``: CPU intra-op threads while training (``None`` leaves torch's setting).
    """

    epochs: int = 1
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()
    lr_decay: float = 0.1
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    augment: bool = False
    regulariser: RegulariserConfig = field(default_factory=RegulariserConfig)
    eval_mode: str = "identity"
    eval_batch_size: int = 500
    seed: int = 0
    device: str = "cpu"
    channels_last: bool | None = None
    amp: bool | None = None
    num_threads: int | None = 1

    def __post_init__(self) -> None:
        if isinstance(self.regulariser, dict):
            self.regulariser = RegulariserConfig(**self.regulariser)
        self.milestones = tuple(int(m) for m in self.milestones)
        rules = {
            "optimizer": (self.optimizer in ("sgd", "adam"), "'sgd' or 'adam'"),
            "schedule": (self.schedule in SCHEDULES, f"one of {SCHEDULES}"),
            "lr": (self.lr > 0 and math.isfinite(self.lr), "positive"),
            "momentum": (0 <= self.momentum < 1, "in [0, 1)"),
            "weight_decay": (self.weight_decay >= 0, "≥ 0"),
            "lr_decay": (0 < self.lr_decay <= 1, "in (0, 1]"),
            "label_smoothing": (0 <= self.label_smoothing < 1, "in [0, 1)"),
            "epochs": (self.epochs >= 0, "≥ 0"),
            "batch_size": (self.batch_size >= 1, "≥ 1"),
            "eval_batch_size": (self.eval_batch_size >= 1, "≥ 1"),
            "grad_clip": (self.grad_clip is None or self.grad_clip > 0, "positive or None"),
            "num_threads": (self.num_threads is None or self.num_threads >= 1, "≥ 1 or None"),
            "milestones": (all(m > 0 for m in self.milestones), "positive step numbers"),
            "eval_mode": (self.eval_mode in EVAL_MODES, f"one of {EVAL_MODES}"),
        }
        for name, (ok, expected) in rules.items():
            if not ok:  # `not ok` also catches NaN comparisons
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        """A JSON-able dict (stored in checkpoints)."""
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FitConfig:
        """Rebuild from :meth:`to_dict` output (unknown keys are an error)."""
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown FitConfig fields {sorted(unknown)}")
        return cls(**d)


@dataclass
class FitResult:
    """The trained model (eval mode, regularisers still attached) and per-epoch metrics."""

    model: nn.Module
    config: FitConfig
    history: list[dict]

    @property
    def final(self) -> dict:
        """The last epoch's metrics (empty before training)."""
        return self.history[-1] if self.history else {}


# ------------------------------------------------------------------------------------------------
# CIFAR augmentation on tensors
# ------------------------------------------------------------------------------------------------


def augment_params(
    n: int, generator: torch.Generator | None, padding: int = 4
) -> tuple[Tensor, Tensor, Tensor]:
    """``(i, j, flip)`` for n images: crop offsets uniform on ``{0, …, 2·padding}`` (rows i,
    columns j) and a horizontal flip with probability ½, drawn from ``generator`` in that order."""
    i = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    j = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.randint(0, 2, (n,), generator=generator).bool()
    return i, j, flip


def crop_flip(x: Tensor, i: Tensor, j: Tensor, flip: Tensor, padding: int = 4) -> Tensor:
    """``out[n] = flip_n(pad(x[n])[:, i_n : i_n + H, j_n : j_n + W])``: zero padding by
    ``padding`` pixels, the crop at ``(i_n, j_n)``, then a left-right flip where ``flip_n``."""
    if x.ndim != 4:
        raise ValueError(f"augmentation needs image batches (N, C, H, W), got {tuple(x.shape)}")
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dev = x.device
    i, j, flip = i.to(dev), j.to(dev), flip.to(dev)
    rows = i[:, None] + torch.arange(h, device=dev)  # (N, H)
    ar = torch.arange(w, device=dev)
    cols = j[:, None] + torch.where(flip[:, None], w - 1 - ar, ar)  # (N, W)
    index = (
        torch.arange(n, device=dev)[:, None, None, None],
        torch.arange(c, device=dev)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    )
    return padded[index]


def cifar_augment(x: Tensor, generator: torch.Generator | None, padding: int = 4) -> Tensor:
    """The standard CIFAR augmentation: random crop with ``padding``-pixel zero padding and a
    random horizontal flip (:func:`augment_params`, :func:`crop_flip`)."""
    return crop_flip(x, *augment_params(x.shape[0], generator, padding), padding=padding)


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


def _optimizer(config: FitConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _scheduler(config: FitConfig, opt: torch.optim.Optimizer, total_steps: int):
    sched = torch.optim.lr_scheduler
    if config.schedule == "step":
        return sched.MultiStepLR(opt, list(config.milestones), gamma=config.lr_decay)
    if config.schedule == "cosine":
        return sched.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    return sched.LambdaLR(opt, lambda _: 1.0)


def _generators(model: nn.Module) -> list[torch.Generator]:
    """The distinct generators of the model's regularisers, in module order."""
    found: dict[int, torch.Generator] = {}
    for _, m in wrapped_modules(model):
        for p in m.parametrizations["weight"]:
            if isinstance(p, WeightRegulariser) and p.generator is not None:
                found.setdefault(id(p.generator), p.generator)
    for m in model.modules():
        hook = getattr(m, "_td_dropout_hook", None)
        if hook is not None and hook.generator is not None:
            found.setdefault(id(hook.generator), hook.generator)
    return list(found.values())


def _steps(model: nn.Module) -> list[int]:
    return [
        p.step
        for _, m in wrapped_modules(model)
        for p in m.parametrizations["weight"]
        if isinstance(p, WeightRegulariser)
    ]


def _set_steps(model: nn.Module, steps: list[int]) -> None:
    ps = [
        p
        for _, m in wrapped_modules(model)
        for p in m.parametrizations["weight"]
        if isinstance(p, WeightRegulariser)
    ]
    if len(ps) != len(steps):
        raise ValueError(f"checkpoint has {len(steps)} regularised weights, the model {len(ps)}")
    for p, s in zip(ps, steps, strict=True):
        p.step = int(s)


def _label(model: nn.Module, config: FitConfig) -> str:
    """The regulariser in words: the config's, else the one the caller applied."""
    if config.regulariser.kind != "none" or not wrapped_modules(model):
        return config.regulariser.label
    p = wrapped_modules(model)[0][1].parametrizations["weight"][0]
    rates = [f"{k}={getattr(p, k):g}" for k in ("gamma", "alpha") if hasattr(p, k)]
    return " ".join([type(p).__name__, *rates])


def _use_channels_last(config: FitConfig, model: nn.Module, x: Tensor) -> bool:
    if config.channels_last is not None:
        return config.channels_last
    # default: on CUDA only. On CPU, oneDNN's channels_last convolutions of narrow layers
    # (4 channels) segfaulted or spun forever on an AVX2-only AMD EPYC (session 12)
    return (
        x.ndim == 4
        and x.device.type == "cuda"
        and any(isinstance(m, nn.Conv2d) for m in model.modules())
    )


def load_fit_checkpoint(path: str | Path) -> dict:
    """The payload of a :func:`fit` checkpoint (``model`` holds a plain-key state_dict that
    loads into the model with or without its regularisers)."""
    path = Path(path)
    payload = read_checkpoint_file(
        path, lambda exc: f"checkpoint {path} is corrupt or not a fit checkpoint"
    )
    if not isinstance(payload, dict) or payload.get("format") != FIT_CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a td_analysis fit checkpoint ({FIT_CHECKPOINT_FORMAT})")
    return payload


def fit(
    model: nn.Module,
    train_data: tuple[Tensor, Tensor],
    config: FitConfig | None = None,
    *,
    eval_data: tuple[Tensor, Tensor] | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> FitResult:
    """Train ``model`` in place on ``train_data = (x, y)`` as ``config`` says (module doc).

    Inputs keep their shape (images for a CNN: N × C × H × W).  ``checkpoint``: written
    atomically after every epoch (rank 0); with ``resume`` an existing one is loaded (same
    config up to ``epochs``; the model must be built as for the first run) and training
    continues after its epoch.  The history holds the train loss/accuracy of the regularised
    network and, with ``eval_data``, the eval loss/accuracy in eval mode.
    """
    config = config or FitConfig()
    with torch_threads(config.num_threads):
        return _fit(model, train_data, config, eval_data, checkpoint, resume, progress)


def _fit(model, train_data, config, eval_data, checkpoint, resume, progress) -> FitResult:
    device = resolve_device(config.device)
    rank, world = rank_and_world()
    x_train, y_train = train_data
    if x_train.shape[0] != y_train.shape[0] or y_train.ndim != 1 or x_train.shape[0] == 0:
        raise ValueError(
            f"need N inputs and N targets (N ≥ 1), got shapes {tuple(x_train.shape)} and "
            f"{tuple(y_train.shape)}"
        )
    if config.augment and x_train.ndim != 4:
        raise ValueError(f"augment needs images (N, C, H, W), got {tuple(x_train.shape)}")
    if config.batch_size < world:
        raise ValueError(f"batch_size {config.batch_size} is smaller than the {world} ranks")
    param = next(model.parameters())
    x_train, y_train = x_train.to(device, param.dtype), y_train.to(device, torch.long)
    channels_last = _use_channels_last(config, model, x_train)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if config.regulariser.kind not in ("none", "l1"):
        on_device = device.type != "cpu" and config.regulariser.draws == "uniform"
        gen_reg = torch.Generator(device if on_device else "cpu").manual_seed(config.seed + 3)
        apply_regulariser(model, config.regulariser, generator=gen_reg, eval_mode=config.eval_mode)
    gen = torch.Generator().manual_seed(config.seed + 1)
    gen_aug = torch.Generator().manual_seed(config.seed + 2)
    net = model
    if world > 1:
        ids = [device.index if device.index is not None else 0] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    opt = _optimizer(config, list(model.parameters()))
    n = x_train.shape[0]
    steps_per_epoch = math.ceil(n / config.batch_size)
    sched = _scheduler(config, opt, config.epochs * steps_per_epoch)
    amp = config.amp if config.amp is not None else device.type == "cuda"
    amp_dtype = torch.bfloat16
    if amp and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        amp_dtype = torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=amp and amp_dtype == torch.float16)

    history: list[dict] = []
    start_epoch, step = 0, 0
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        state = load_fit_checkpoint(checkpoint)
        saved = FitConfig.from_dict(state["config"])
        if dataclasses.replace(saved, epochs=config.epochs) != config or (
            config.schedule == "cosine" and saved.epochs != config.epochs
        ):
            raise ValueError(f"checkpoint {checkpoint} was written with another configuration")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        gen.set_state(state["generators"][0])
        gen_aug.set_state(state["generators"][1])
        for g, s in zip(_generators(model), state["generators"][2:], strict=True):
            g.set_state(s)
        torch.set_rng_state(state["rng"])
        _set_steps(model, state["regulariser_steps"])
        start_epoch, step, history = state["epoch"], state["step"], state["history"]

    bar = progress_bar(
        total=(config.epochs - start_epoch) * steps_per_epoch,
        desc=f"fit {_label(model, config)} seed={config.seed}",
        disable=not progress or rank != 0,
        unit="step",
        leave=False,
    )
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype) if amp else nullcontext()
    )  # re-entered every step
    try:
        for epoch in range(start_epoch, config.epochs):
            t0 = time.perf_counter()
            model.train()
            perm = torch.randperm(n, generator=gen).to(device)
            loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            correct = torch.zeros((), device=device, dtype=torch.long)
            for start in range(0, n, config.batch_size):
                idx = perm[start : start + config.batch_size]
                nb = idx.shape[0]
                xb = x_train[idx]
                if config.augment:
                    xb = cifar_augment(xb, gen_aug)
                part = shard(nb, rank, world)
                xb, yb = xb[part], y_train[idx][part]
                if channels_last:
                    xb = xb.contiguous(memory_format=memory_format)
                with autocast:
                    logits = net(xb)
                    ce = F.cross_entropy(
                        logits, yb, reduction="sum", label_smoothing=config.label_smoothing
                    )
                loss = ce * (world / nb)
                penalty = l1_penalty(model, config.regulariser.l1)
                if penalty is not None:
                    loss = loss + penalty
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.grad_clip is not None:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                scaler.step(opt)
                scaler.update()
                sched.step()
                loss_sum += ce.detach().double()
                correct += (logits.detach().argmax(1) == yb).sum()
                step += 1
                bar.update(1)
            if world > 1:
                dist.all_reduce(loss_sum)
                dist.all_reduce(correct)
            if not torch.isfinite(loss_sum):
                raise divergence_error(epoch + 1, config.lr)
            record = {
                "epoch": epoch + 1,
                "step": step,
                "lr": opt.param_groups[0]["lr"],
                "train_loss": loss_sum.item() / n,
                "train_accuracy": correct.item() / n,
                "seconds": time.perf_counter() - t0,
            }
            if eval_data is not None:
                record.update(_evaluate(model, eval_data, config, rank, world))
            history.append(record)
            bar.set_postfix(loss=f"{record['train_loss']:.3f}")
            if checkpoint is not None and rank == 0:
                _save(
                    checkpoint,
                    model,
                    config,
                    opt,
                    sched,
                    scaler,
                    gen,
                    gen_aug,
                    epoch + 1,
                    step,
                    history,
                )
            if world > 1:
                dist.barrier()
    finally:
        bar.close()
    model.eval()
    return FitResult(model=model, config=config, history=history)


def _evaluate(model, eval_data, config, rank, world) -> dict[str, float]:
    """Eval loss/accuracy (eval mode), each rank on its shard, summed over ranks."""
    x, y = eval_data
    part = shard(x.shape[0], rank, world)
    xs, ys = x[part], y[part]
    sums = torch.zeros(2, dtype=torch.float64)
    if xs.shape[0]:
        ev = evaluate(model, xs, ys, batch_size=config.eval_batch_size)
        sums += torch.tensor([ev["loss"], ev["accuracy"]], dtype=torch.float64) * xs.shape[0]
    if world > 1:
        p = next(model.parameters())
        sums = sums.to(p.device)
        dist.all_reduce(sums)
    return {
        "eval_loss": sums[0].item() / x.shape[0],
        "eval_accuracy": round(sums[1].item()) / x.shape[0],
    }


def _save(path, model, config, opt, sched, scaler, gen, gen_aug, epoch, step, history) -> None:
    payload = {
        "format": FIT_CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "epoch": epoch,
        "step": step,
        "history": history,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict(),
        "generators": [gen.get_state(), gen_aug.get_state()]
        + [g.get_state() for g in _generators(model)],
        "rng": torch.get_rng_state(),
        "regulariser_steps": _steps(model),
    }
    with atomic_open(path, "wb") as f:
        torch.save(payload, f)
