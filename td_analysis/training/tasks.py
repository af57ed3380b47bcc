"""Experiments as data: the registry of tasks (data set, network, training protocol, pruning).

A :class:`Task` is everything that defines one experiment of the project, and the only place
where a data set, an input size or a layer width is named.  Training, pruning, the analyses, the
CLI and the notebooks read a task (or the :class:`td_analysis.training.loop.TrainConfig` it makes);
adding a third experiment is one more :func:`register_task` call.

Registered tasks:

* ``"toy"``: the paper's toy network on CIFAR-10, ``3072 → 10 → 10`` ReLU with biases,
  standardized inputs, batch 128; targeted dropout γ = 0.75, α = 0.5 (the paper's setting for
  Figure 1 / Table 1) on both layers.  Default protocol (also named ``"adam"``): Adam lr 1e-3
  for 60 epochs, the protocol study's closest to the paper (``figures/protocol_study.json``).
  Protocol ``"sgd"``: the first results' SGD (momentum 0.9) lr 0.01 for 20 epochs, exactly the
  defaults of ``TrainConfig()``.
* ``"fashion-mlp"``: the "wide, vanilla" ReLU MLP of seed 002 on Fashion-MNIST,
  ``784 → 1000 → 1000 → 500 → 200 → 10`` (with or without biases), inputs ÷ 255 (``"unit"``),
  Adam lr 1e-3, no run-time dropout; targeted weight / unit dropout with γ = 0.5, α = 0.5 (the
  paper's setting for such networks) on every hidden layer.  Protocols:

  - ``"seed"``: the seed's exact protocol, batch 32 for 100 epochs;
  - ``"default"``: batch 128 for 3 epochs, chosen so that the whole default experiment
    (3 regularisers × bias on/off × 2 seeds = 12 networks, two processes on this 2-core machine)
    fits the 30-minute budget with its analyses.  Measured on the shared 2-core machine under
    heavy load (``BENCHMARKS.md``): 58–65 s per plain epoch and 79–112 s per targeted-dropout
    epoch, i.e. 3–6 min per network; a quiet machine needs about a fifth of that.  Holdout
    accuracy after 2 epochs: 85.6% (none), 86.4% (targeted weight).

Pruning (the reference repository's rules,
:func:`td_analysis.analysis.pruning.reference_pruning_masks`):
the weight matrices of the hidden layers, ``layers.0 … layers.{L-2}``; the output (logits) layer
is kept.  In the
fashion-mlp task targeted dropout acts on the same matrices (``regularised="hidden"``), so that
targeted unit dropout targets hidden units only, never the logits.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from td_analysis.catalog.datasets import dataset_info
from td_analysis.catalog.regularisers import RegulariserConfig
from td_analysis.training.config import TrainConfig

if TYPE_CHECKING:  # torch: only where a network is built (``--help`` reads tasks without it)
    from td_analysis.nets.models import DenseNet

__all__ = [
    "Task",
    "TASKS",
    "DEFAULT_TASK",
    "PROTOCOL_FIELDS",
    "register_task",
    "get_task",
    "task_names",
    "task_for_dataset",
    "ResNetTask",
    "RESNET_REGULARISERS",
]

#: The training settings a protocol may set (fields of :class:`TrainConfig`).
PROTOCOL_FIELDS = (
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "grad_clip",
    "batch_size",
    "epochs",
    "init",
)


@dataclass(frozen=True)
class Task:
    """One experiment: data, network, training protocols, regulariser settings, pruning.

    Attributes:
        name: registry key (``"toy"``, ``"fashion-mlp"``).
        dataset: name understood by :func:`td_analysis.data.load_dataset`.
        in_features, hidden, num_classes, bias: the :class:`~td_analysis.nets.models.DenseNet`.
        preprocessing: input preprocessing of the data set (``"standardize"``, ``"unit"``, …).
        init: ``"glorot"`` (Glorot-uniform weights, zero biases) or ``"torch"``.
        optimizer, lr, momentum, weight_decay, grad_clip, batch_size, epochs: the ``"default"``
            training protocol.
        protocols: further named protocols, each a mapping of :data:`PROTOCOL_FIELDS` that
            replace the defaults (e.g. ``{"seed": {"batch_size": 32, "epochs": 100}}``).
        gamma, alpha: default targeted fraction γ and drop probability α of targeted dropout.
        regularised: the weight matrices a regulariser acts on: ``"hidden"`` (the hidden
            layers, :attr:`prune_layers`; never the logits) or ``"all"`` (every layer, as the toy
            experiment has always done: its Table 1 prunes both layers).
        draws: how targeted dropout draws its drops (``RegulariserConfig.draws``):
            ``"uniform"`` (the toy's original stream) or ``"bits"`` (exact Bernoulli(α) from
            random bits, ~25× cheaper per weight: the fashion MLP has 2.4 M of them).
        train_split, eval_split: data the network is trained on and evaluated on each epoch.
        test_split: the split final results (pruning tables) are reported on.
        description: one line for listings and reports.
    """

    name: str
    dataset: str
    in_features: int
    hidden: tuple[int, ...]
    num_classes: int
    bias: bool = True
    preprocessing: str = "standardize"
    init: str = "glorot"
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    grad_clip: float | None = None
    batch_size: int = 128
    epochs: int = 20
    protocols: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    gamma: float = 0.5
    alpha: float = 0.5
    regularised: str = "hidden"
    draws: str = "uniform"
    train_split: str = "train"
    eval_split: str = "holdout"
    test_split: str = "test"
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not self.name or not self.dataset:
            raise ValueError("a task needs a name and a data set")
        if self.in_features < 1 or self.num_classes < 1 or any(h < 1 for h in self.hidden):
            raise ValueError(
                f"task {self.name!r}: sizes must be positive, got in_features="
                f"{self.in_features}, hidden={self.hidden}, num_classes={self.num_classes}"
            )
        if "default" in self.protocols:
            raise ValueError(f"task {self.name!r}: 'default' is the task's own fields")
        frozen = {}
        for pname, overrides in self.protocols.items():
            unknown = set(overrides) - set(PROTOCOL_FIELDS)
            if unknown:
                raise ValueError(
                    f"task {self.name!r}, protocol {pname!r}: unknown fields {sorted(unknown)}; "
                    f"a protocol may set {', '.join(PROTOCOL_FIELDS)}"
                )
            frozen[pname] = MappingProxyType(dict(overrides))
        object.__setattr__(self, "protocols", MappingProxyType(frozen))
        if self.regularised not in ("hidden", "all"):
            raise ValueError(
                f"task {self.name!r}: regularised must be 'hidden' or 'all', got "
                f"{self.regularised!r}"
            )
        # the regulariser defaults must be valid settings
        RegulariserConfig("targeted-weight", gamma=self.gamma, alpha=self.alpha)

    # ------------------------------------------------------------------ network
    @property
    def num_layers(self) -> int:
        """Number of weight matrices (hidden layers + the output layer)."""
        return len(self.hidden) + 1

    @property
    def prune_layers(self) -> tuple[int, ...]:
        """Indices of the weight matrices that are pruned and regularised: every hidden layer's
        incoming weights; the output (logits) layer is kept."""
        return tuple(range(len(self.hidden)))

    @property
    def regularised_layers(self) -> list[int] | None:
        """``RegulariserConfig.layers`` of the task: the hidden layers, or ``None`` (all)."""
        return None if self.regularised == "all" else list(self.prune_layers)

    @property
    def prune_params(self) -> tuple[str, ...]:
        """Parameter names of :attr:`prune_layers` (``layers.{l}.weight``)."""
        return tuple(f"layers.{l}.weight" for l in self.prune_layers)

    @property
    def num_weights(self) -> int:
        """Number of weights in the pruned matrices."""
        widths = (self.in_features, *self.hidden)
        return sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))

    def arch(self, *, bias: bool | None = None) -> dict:
        """Constructor arguments of the :class:`~td_analysis.nets.models.DenseNet`."""
        return {
            "in_features": self.in_features,
            "hidden": list(self.hidden),
            "num_classes": self.num_classes,
            "bias": self.bias if bias is None else bool(bias),
        }

    # ------------------------------------------------------------------ protocols
    @property
    def protocol_names(self) -> tuple[str, ...]:
        """``"default"`` and the task's named protocols."""
        return ("default", *self.protocols)

    def protocol(self, name: str = "default") -> dict[str, Any]:
        """The training settings (:data:`PROTOCOL_FIELDS`) of protocol ``name``."""
        if name not in self.protocol_names:
            raise ValueError(
                f"task {self.name!r} has no protocol {name!r}; choose one of "
                f"{', '.join(self.protocol_names)}"
            )
        settings = {f: getattr(self, f) for f in PROTOCOL_FIELDS}
        if name != "default":
            settings.update(self.protocols[name])
        return settings

    def steps(self, train_size: int, protocol: str = "default") -> int:
        """Optimiser steps of a whole run on ``train_size`` examples: epochs · ⌈N / batch⌉."""
        p = self.protocol(protocol)
        return int(p["epochs"]) * math.ceil(train_size / int(p["batch_size"]))

    # ------------------------------------------------------------------ networks
    def network(self, bias: bool | None = None) -> DenseNet:
        """A fresh :class:`~td_analysis.nets.models.DenseNet` of this task's architecture,
        initialised by ``torch.nn.Linear`` from the global RNG (``training.build_model`` seeds it
        and applies
        the task's initialisation)."""
        from td_analysis.nets.models import DenseNet

        return DenseNet(
            self.in_features, self.hidden, self.num_classes, self.bias if bias is None else bias
        )

    # ------------------------------------------------------------------ regularisers
    def regulariser(
        self,
        kind: str = "none",
        *,
        gamma: float | None = None,
        alpha: float | None = None,
        ramp_steps: int | None = None,
        l1: float = 0.0,
    ) -> RegulariserConfig:
        """A :class:`RegulariserConfig` on :attr:`regularised_layers` with the task's γ, α.

        ``kind`` as in :data:`td_analysis.nn.dropout.REGULARISERS`; ``ramp_steps`` turns on the
        official ramp of γ and α (targeted kinds).  ``"dropout"`` drops the inputs of the chosen
        layers other than the raw network input, i.e. hidden activations.
        """
        g = self.gamma if gamma is None else gamma
        a = self.alpha if alpha is None else alpha
        layers = self.regularised_layers
        if kind == "none":
            return RegulariserConfig()
        if kind.startswith("targeted"):
            return RegulariserConfig(
                kind, gamma=g, alpha=a, ramp_steps=ramp_steps, layers=layers, draws=self.draws
            )
        if kind in ("dropout", "dropconnect"):
            return RegulariserConfig(kind, alpha=a, layers=layers)
        if kind == "l1":
            return RegulariserConfig(kind, l1=l1, layers=layers)
        return RegulariserConfig(kind)  # raises: unknown kind, with the valid ones

    # ------------------------------------------------------------------ configs
    def config(self, protocol: str = "default", **overrides: Any):
        """The :class:`~td_analysis.training.loop.TrainConfig` of this task and ``protocol``.

        ``overrides`` replace any field (``seed``, ``bias``, ``regulariser``, ``epochs``, …);
        a ``regulariser`` given as a kind name (``"targeted-unit"``) is made with
        :meth:`regulariser`.
        """
        reg = overrides.pop("regulariser", None)
        if isinstance(reg, str):
            reg = self.regulariser(reg)
        fields: dict[str, Any] = {
            "task": self.name,
            "dataset": self.dataset,
            "in_features": self.in_features,
            "hidden": self.hidden,
            "num_classes": self.num_classes,
            "bias": self.bias,
            "preprocessing": self.preprocessing,
            "train_split": self.train_split,
            "eval_split": self.eval_split,
            **self.protocol(protocol),
        }
        if reg is not None:
            fields["regulariser"] = reg
        fields.update(overrides)
        return TrainConfig(**fields)

    def replace(self, **changes: Any) -> Task:
        """A copy with some fields changed (e.g. a smaller network for a quick run)."""
        return dataclasses.replace(self, **changes)


TASKS: dict[str, Task] = {}
DEFAULT_TASK = "toy"


def register_task(task: Task, *, replace: bool = False) -> Task:
    """Add ``task`` to :data:`TASKS` (an existing name only with ``replace=True``).

    The network must fit the data set: ``in_features`` and ``num_classes`` equal the data set's
    (:func:`td_analysis.data.dataset_info`).
    """
    if task.name in TASKS and not replace:
        raise ValueError(f"a task named {task.name!r} is already registered")
    info = dataset_info(task.dataset)
    if (task.in_features, task.num_classes) != (info.num_features, info.num_classes):
        raise ValueError(
            f"task {task.name!r}: a {task.in_features} → … → {task.num_classes} network does "
            f"not fit {info.name} ({info.num_features} features, {info.num_classes} classes)"
        )
    TASKS[task.name] = task
    return task


def task_names() -> tuple[str, ...]:
    """Names of the registered tasks."""
    return tuple(TASKS)


def get_task(name: str | Task) -> Task:
    """The registered task ``name`` (a :class:`Task` is returned as is)."""
    if isinstance(name, Task):
        return name
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(
            f"unknown task {name!r}; choose one of {', '.join(task_names())}"
        ) from None


def task_for_dataset(dataset: str) -> Task:
    """The first registered task on ``dataset`` (``cifar10`` → toy, ``fashion-mnist`` → MLP)."""
    for task in TASKS.values():
        if task.dataset == dataset:
            return task
    known = sorted({t.dataset for t in TASKS.values()})
    raise ValueError(f"no task uses dataset {dataset!r}; choose one of {', '.join(known)}")


register_task(
    Task(
        name="toy",
        dataset="cifar10",
        in_features=3072,
        hidden=(10,),
        num_classes=10,
        bias=True,
        preprocessing="standardize",
        init="glorot",
        # the protocol study's closest to the paper (figures/protocol_study.json: adam-60ep);
        # the first results' protocol stays available as "sgd" (= TrainConfig()'s defaults)
        optimizer="adam",
        lr=1e-3,
        momentum=0.9,  # used by "sgd"
        batch_size=128,
        epochs=60,
        protocols={
            "adam": {"optimizer": "adam", "lr": 1e-3, "epochs": 60},
            "sgd": {"optimizer": "sgd", "lr": 0.01, "epochs": 20},
        },
        gamma=0.75,
        alpha=0.5,
        regularised="all",
        description="the paper's toy network: CIFAR-10, 3072 → 10 → 10 ReLU",
    )
)

register_task(
    Task(
        name="fashion-mlp",
        dataset="fashion-mnist",
        in_features=784,
        hidden=(1000, 1000, 500, 200),
        num_classes=10,
        bias=True,
        preprocessing="unit",
        init="glorot",
        optimizer="adam",
        lr=1e-3,
        momentum=0.9,  # unused by Adam
        batch_size=128,
        epochs=20,
        protocols={"seed": {"batch_size": 32, "epochs": 100}, "short": {"epochs": 3}},
        gamma=0.5,
        alpha=0.5,
        draws="bits",
        description="seed 002: Fashion-MNIST, 784 → 1000 → 1000 → 500 → 200 → 10 ReLU, Adam",
    )
)


# ---------------------------------------------------------------------------------------------
# The third experiment: the official pre-activation ResNet on CIFAR-10 (issue 22)
# ---------------------------------------------------------------------------------------------

#: The regularisers of the paper's ResNet-32 tables, by the names the resnet pipeline uses:
#: ``RegulariserConfig`` fields (``layers`` is added by the pipeline: every conv but the init
#: conv; never the logits).  ``a``/``g`` are the paper's (α, γ).  "dropout" is the official
#: *untargeted weight* dropout at α = 0.25 (``dropconnect``: each weight dropped with
#: probability α, the rest scaled by 1/(1 − α)); the L1 λ and the ramp length are this
#: project's reading (the paper gives "L1 0.1", no loss scale; the official ramp spans 40k
#: steps).
RESNET_REGULARISERS: dict[str, dict[str, Any]] = {
    "none": {"kind": "none"},
    "dropout": {"kind": "dropconnect", "alpha": 0.25},
    "targeted-weight-a0.5-g0.5": {"kind": "targeted-weight", "alpha": 0.5, "gamma": 0.5},
    "targeted-weight-a0.33-g0.75": {"kind": "targeted-weight", "alpha": 0.33, "gamma": 0.75},
    "targeted-weight-a0.66-g0.75": {"kind": "targeted-weight", "alpha": 0.66, "gamma": 0.75},
    "targeted-weight-a0.75-g0.9": {"kind": "targeted-weight", "alpha": 0.75, "gamma": 0.9},
    "targeted-unit-a0.5-g0.5": {"kind": "targeted-unit", "alpha": 0.5, "gamma": 0.5},
    "targeted-unit-a0.66-g0.75": {"kind": "targeted-unit", "alpha": 0.66, "gamma": 0.75},
    "targeted-unit-a0.9-g0.75": {"kind": "targeted-unit", "alpha": 0.9, "gamma": 0.75},
    "l1": {"kind": "l1", "l1": 1e-5},
    "ramp-targeted-weight-a0.99-g0.99": {
        "kind": "targeted-weight",
        "alpha": 0.99,
        "gamma": 0.99,
        "ramp_steps": 40_000,
    },
}


@dataclass(frozen=True)
class ResNetTask(Task):
    """A task whose network is a :class:`td_analysis.nets.resnet.PreActResNet`.

    ``presets`` name complete training settings (``FitConfig`` fields plus ``units``,
    ``widths``, ``init_filters``, ``init_kernel``, ``seeds``, ``regularisers``: keys of
    :data:`RESNET_REGULARISERS`).  The DenseNet fields of :class:`Task` (``hidden``) are unused.
    """

    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        for pname, p in self.presets.items():
            unknown = [r for r in p.get("regularisers", ()) if r not in RESNET_REGULARISERS]
            if unknown:
                raise ValueError(f"task {self.name!r}, preset {pname!r}: unknown {unknown}")
        object.__setattr__(
            self, "presets", MappingProxyType({k: dict(v) for k, v in self.presets.items()})
        )

    def preset(self, name: str) -> dict[str, Any]:
        """The settings of preset ``name`` (a copy)."""
        if name not in self.presets:
            raise ValueError(
                f"task {self.name!r} has no preset {name!r}; choose one of "
                f"{', '.join(self.presets)}"
            )
        return dict(self.presets[name])

    def config(self, protocol: str = "default", **overrides: Any):
        """Refused: the dense-network ``TrainConfig`` does not describe a ResNet (its training
        settings are the presets, run by ``reproduce --experiment resnet-cifar10``)."""
        raise ValueError(
            f"task {self.name!r} is a ResNet, not a dense network: run `td-analysis reproduce "
            f"--experiment {self.name} --preset {'|'.join(self.presets)}`"
        )

    def network(self, bias: bool | None = None, *, preset: str = "paper"):  # type: ignore[override]
        """A fresh :class:`~td_analysis.nets.resnet.PreActResNet` of ``preset``'s size
        (initialised from the global RNG)."""
        from td_analysis.nets.resnet import PreActResNet

        p = self.preset(preset)
        return PreActResNet(
            p["units"],
            p["widths"],
            init_filters=p["init_filters"],
            init_kernel=p["init_kernel"],
            num_classes=self.num_classes,
        )


_RESNET_TRAINING = {
    "batch_size": 128,
    "optimizer": "sgd",
    "momentum": 0.9,
    "grad_clip": 1.0,
    "label_smoothing": 0.1,
    "augment": True,
    "init_filters": 16,
    "init_kernel": 7,
}

register_task(
    ResNetTask(
        name="resnet-cifar10",
        dataset="cifar10",
        in_features=3072,
        hidden=(),
        num_classes=10,
        preprocessing="standardize",
        init="glorot",
        optimizer="sgd",
        lr=0.4,
        momentum=0.9,
        weight_decay=2e-4,
        grad_clip=1.0,
        batch_size=128,
        epochs=256,
        gamma=0.75,
        alpha=0.66,
        draws="bits",
        presets={
            # REFERENCE.md's ResNet-32 and the official schedule (for a GPU; torchrun for DDP)
            "paper": {
                **_RESNET_TRAINING,
                "units": (5, 5, 5),
                "widths": (32, 64, 128),
                "epochs": 256,
                "lr": 0.4,
                "schedule": "step",
                "milestones": (40_000, 60_000, 80_000),
                "weight_decay": 2e-4,
                "seeds": (0, 1),
                "regularisers": tuple(RESNET_REGULARISERS),
            },
            # sized by measurement (BENCHMARKS.md): 8 networks, 2 processes, within 2 hours
            "cpu": {
                **_RESNET_TRAINING,
                "units": (1, 1, 1),
                "widths": (16, 32, 64),
                "epochs": 20,
                "lr": 0.2,
                "schedule": "cosine",
                "milestones": (),
                "weight_decay": 5e-4,
                "seeds": (0, 1),
                "regularisers": (
                    "none",
                    "dropout",
                    "targeted-weight-a0.66-g0.75",
                    "targeted-unit-a0.66-g0.75",
                ),
            },
        },
        description="the official pre-activation ResNet (ResNet-32 for the paper) on CIFAR-10",
    )
)
