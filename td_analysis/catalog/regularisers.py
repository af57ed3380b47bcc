"""Which regulariser, how strong, on which layers: :class:`RegulariserConfig`, without torch.

Plain data (validated on construction), so that the task registry and the command line read it
before torch is imported; :mod:`td_analysis.nn.dropout` applies it (and re-exports every name
here), :mod:`td_analysis.nn` applies it to any model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

__all__ = ["REGULARISERS", "DRAWS", "RegulariserConfig", "validate_gamma", "validate_alpha"]

REGULARISERS = ("none", "targeted-weight", "targeted-unit", "dropout", "dropconnect", "l1")
DRAWS = ("uniform", "bits")


def validate_gamma(gamma: float) -> float:
    """γ, the targeted fraction, must lie in [0, 1) (γ = 1 would leave no threshold)."""
    gamma = float(gamma)
    if not (0.0 <= gamma < 1.0) or math.isnan(gamma):
        raise ValueError(f"gamma (targeted fraction) must be in [0, 1), got {gamma}")
    return gamma


def validate_alpha(alpha: float, *, name: str = "alpha", allow_one: bool = True) -> float:
    """α, a drop probability, must lie in [0, 1] ([0, 1) where kept units are rescaled)."""
    alpha = float(alpha)
    ok = 0.0 <= alpha <= 1.0 if allow_one else 0.0 <= alpha < 1.0
    if not ok or math.isnan(alpha):
        interval = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{name} (drop probability) must be in {interval}, got {alpha}")
    return alpha


@dataclass
class RegulariserConfig:
    """Which regulariser, its strength, and which layers it acts on.

    Attributes:
        kind: one of ``REGULARISERS``.
        gamma: targeted fraction γ ∈ [0, 1) (targeted kinds).
        alpha: drop probability α ∈ [0, 1] (targeted, dropout and dropconnect kinds).
        l1: L1 coefficient λ, penalty ``λ Σ|W|`` over the chosen weights (kind ``"l1"``).
        ramp_steps: if set, γ and α follow the official ramp over this many steps (targeted).
        layers: indices of the weight matrices it acts on; ``None`` = every layer, logits
            included.  For ``"dropout"`` the inputs of these layers are dropped, except the raw
            network input (layer 0), so that standard dropout acts on hidden units.
        draws: how the targeted kinds draw "drop with probability α": ``"uniform"`` (one
            ``u ~ U(0, 1)`` per weight from ``torch.rand``, ``u < α``; the project's original
            stream) or ``"bits"`` (one uniform b-bit integer ``K`` per weight from the same
            seeded generator, drop when ``K < α·2^b``, with b = 8, 16 or 32 the fewest bits that
            make ``α·2^b`` an integer, i.e. exactly Bernoulli(α), else b = 32 and α rounded up
            to a multiple of 2^-32).  Same distribution, a different stream; ``"bits"`` is ~25×
            cheaper per weight (it makes targeted dropout of a 2.4 M-weight MLP affordable).
    """

    kind: str = "none"
    gamma: float = 0.0
    alpha: float = 0.0
    l1: float = 0.0
    ramp_steps: int | None = None
    layers: list[int] | None = field(default=None)
    draws: str = "uniform"

    def __post_init__(self) -> None:
        if self.draws not in DRAWS:
            raise ValueError(f"draws must be one of {DRAWS}, got {self.draws!r}")
        if self.kind not in REGULARISERS:
            raise ValueError(f"unknown regulariser {self.kind!r}; choose one of {REGULARISERS}")
        validate_gamma(self.gamma)
        validate_alpha(self.alpha, allow_one=self.kind not in ("dropout", "dropconnect"))
        if self.l1 < 0 or math.isnan(self.l1):
            raise ValueError(f"l1 coefficient must be non-negative, got {self.l1}")
        if self.ramp_steps is not None and self.ramp_steps <= 0:
            raise ValueError(f"ramp_steps must be positive, got {self.ramp_steps}")
        if self.kind.startswith("targeted") and self.gamma == 0.0:
            raise ValueError(f"{self.kind} needs gamma > 0 (the targeted fraction)")
        if self.layers is not None:
            self.layers = [int(i) for i in self.layers]

    def to_dict(self) -> dict:
        """A JSON-able dict of the fields."""
        return asdict(self)

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``targeted-weight γ=0.75 α=0.5 (ramp)``."""
        if self.kind == "none":
            return "none"
        if self.kind == "l1":
            return f"L1 λ={self.l1:g}"
        if self.kind in ("dropout", "dropconnect"):
            return f"{self.kind} α={self.alpha:g}"
        ramp = " ramp" if self.ramp_steps else ""
        return f"{self.kind}{ramp} γ={self.gamma:g} α={self.alpha:g}"
