"""The training configuration: everything that defines one training run.

:class:`TrainConfig` is plain data (stored in checkpoints and hashed into their names by
:func:`td_analysis.training.runs.config_key`).  Tasks (:mod:`td_analysis.training.tasks`) build
configs; training (:mod:`td_analysis.training.loop`) runs them.  This module imports neither, so the
layers run one
way: config → tasks → training.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field

from td_analysis.catalog.regularisers import RegulariserConfig

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint).

    The defaults are those of the ``"toy"`` task's ``"sgd"`` protocol
    (:mod:`td_analysis.training.tasks`; a test holds the two to each other,
    ``tests/test_tasks.py``, which is also its default), the project's first choice
    for the paper's toy network (the paper does not publish them): 3072 → 10 → 10 ReLU network,
    Glorot-uniform weights and zero biases (as the official dense baseline), SGD with momentum
    0.9, learning rate 0.01, batch 128, 20 epochs, on the 40,000 standardized CIFAR-10 images of
    the seeded 80/20 split, evaluated on the other 10,000.  Other experiments start from their
    task: ``get_task("fashion-mlp").config(seed=1)``.

    ``train_limit`` trains on the first N examples only (quick runs).  ``task`` names the
    experiment the run belongs to (informative) and ``dataset`` the data set
    (:func:`td_analysis.data.load_dataset`) the network is trained on; both are stored in the
    checkpoint, so analyses load the data the network was trained on.

    ``num_threads`` is the number of CPU intra-op threads while training (1 by default: the toy
    network's products are too small to gain from more, a busy machine makes extra threads spin,
    and the trained weights then do not depend on the machine's core count); ``None`` leaves
    torch's setting alone.
    """

    hidden: tuple[int, ...] = (10,)
    in_features: int = 3072
    num_classes: int = 10
    bias: bool = True
    init: str = "glorot"
    regulariser: RegulariserConfig = field(default_factory=RegulariserConfig)
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    grad_clip: float | None = None
    batch_size: int = 128
    epochs: int = 20
    seed: int = 0
    preprocessing: str = "standardize"
    train_split: str = "train"
    eval_split: str = "holdout"
    device: str = "cpu"
    num_threads: int | None = 1
    dataset: str = "cifar10"
    task: str | None = "toy"
    train_limit: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.regulariser, dict):
            self.regulariser = RegulariserConfig(**self.regulariser)
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.init not in ("glorot", "torch"):
            raise ValueError(f"init must be 'glorot' or 'torch', got {self.init!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not self.weight_decay >= 0:  # also rejects NaN
            raise ValueError(f"weight_decay must be non-negative, got {self.weight_decay}")
        if self.batch_size < 1 or self.epochs < 0:
            raise ValueError(
                f"batch_size must be ≥ 1 and epochs ≥ 0, got {self.batch_size}, {self.epochs}"
            )
        if self.train_limit is not None and self.train_limit < 1:
            raise ValueError(f"train_limit must be ≥ 1 or None, got {self.train_limit}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be ≥ 1 or None, got {self.num_threads}")
        if self.grad_clip is not None and not self.grad_clip > 0:  # also rejects NaN
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")

    def to_dict(self) -> dict:
        """A JSON-able dict of the config (stored in checkpoints)."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output (unknown keys are an error)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
        return cls(**d)
