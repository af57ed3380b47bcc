"""Targeted dropout and the baseline regularisers, with the official (for-ai/TD) semantics.

Targeting (per layer, never global), for a torch weight ``W`` of shape ``out × in``:

* weight level: for every output unit ``o``, ``τ_o = sort(|W_o,:|)[⌊γ·in⌋]`` and the targeted
  set is ``{(o, i) : |W_oi| < τ_o}``;
* unit level: ``n_o = ‖W_o,:‖₂``, ``τ = sort(n)[⌊γ·out⌋]`` and the targeted units are
  ``{o : n_o < τ}``.

In training each targeted element is dropped independently with probability α and the kept
weights are *not* rescaled, so the expected kept fraction is ``1 − γα``.  Masks are recomputed
from the current weights at every step; biases are never touched; nothing is masked at evaluation
(dense layers in the official code only call the dropout in training).

The ramping ("piecewise") schedule of the official code, with ``R`` ramp steps (40,000 there):
``α(s) = α·min(1, s/R)`` and ``γ(s) = 0.95γ·min(1, 2s/R) + 0.05γ·clip((2s − R)/R, 0, 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from td_analysis.catalog.regularisers import (  # noqa: F401  (re-exported)
    DRAWS,
    REGULARISERS,
    RegulariserConfig,
    validate_alpha,
    validate_gamma,
)
from td_analysis.utils import kernels

__all__ = [
    "REGULARISERS",
    "RegulariserConfig",
    "Regulariser",
    "targeted_weight_mask",
    "targeted_unit_mask",
    "ramp_schedule",
    "validate_gamma",
    "validate_alpha",
    "DRAWS",
    "bernoulli_bits",
]


def _check_weight(weight: Tensor) -> None:
    if weight.ndim != 2:
        raise ValueError(
            f"expected a 2-D weight of shape (out, in) as torch.nn.Linear stores it, "
            f"got shape {tuple(weight.shape)}"
        )
    if weight.numel() == 0:
        raise ValueError("weight is empty")


def _numpy_fast_path(t: Tensor) -> bool:
    """CPU float32/float64 tensors: the mask logic runs in numpy on the same memory.

    torch's comparisons, logical ops and bool→float casts cost 10–20 µs each on a 10 × 3072
    CPU tensor, numpy's 1–6 µs; at every training step that is much of targeted dropout's cost.
    """
    return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)


def _has_storage(t: Tensor) -> bool:
    """False for tensors numpy cannot view (torch.func's wrapped tensors, meta/fake ones)."""
    try:
        t.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return False
    return True


def _kernel_path(t: Tensor) -> bool:
    """Whether the fused compiled kernels (:mod:`td_analysis.utils.kernels`) serve this weight: a
    contiguous CPU float32/float64 tensor and a C compiler (same results as the numpy path)."""
    return _numpy_fast_path(t) and t.is_contiguous() and _has_storage(t) and kernels.available()


def targeted_weight_mask(weight: Tensor, gamma: float) -> Tensor:
    """Targeted weights (True) of a weight (out × in): ``|W_oi| < sort(|W_o,:|)[⌊γ·in⌋]``."""
    _check_weight(weight)
    gamma = validate_gamma(gamma)
    k = int(gamma * weight.shape[1])
    if k == 0:
        return torch.zeros(weight.shape, dtype=torch.bool, device=weight.device)
    if _numpy_fast_path(weight):
        # introselect, O(in) per row: ~10× faster than torch.kthvalue on CPU rows of thousands.
        # A magnitude ≥ 0 orders like its IEEE-754 bits read as a signed integer (NaN last, as
        # numpy sorts floats), and numpy selects integers about twice as fast as floats.
        mag = np.abs(weight.detach().numpy())
        bits = mag.view(np.int32 if mag.dtype == np.float32 else np.int64)
        threshold = np.partition(bits, k, axis=1)[:, k : k + 1].view(mag.dtype)
        return torch.from_numpy(mag < threshold)
    mag = weight.detach().abs()
    return mag < torch.kthvalue(mag, k + 1, dim=1, keepdim=True).values


def keep_factor(u: Tensor, alpha: float, targeted: Tensor | None, scale: float = 1.0) -> Tensor:
    """``m = scale · 1[¬(t ∧ u < α)]`` in u's dtype; ``t`` = ``targeted`` (broadcast), or all True.

    The multiplicative factor of a random drop: ``W̃ = W ⊙ m`` (and ``∂L/∂W = ∂L/∂W̃ ⊙ m``).
    """
    if _numpy_fast_path(u) and (targeted is None or targeted.device.type == "cpu"):
        un = u.numpy()
        drop = un < un.dtype.type(alpha)  # compared in u's precision, as torch does
        if targeted is not None:
            np.logical_and(drop, targeted.numpy(), out=drop)
        m = np.logical_not(drop, out=drop).astype(un.dtype)
        if scale != 1.0:
            m *= un.dtype.type(scale)
        return torch.from_numpy(m)
    drop = u < alpha
    if targeted is not None:
        drop &= targeted
    m = (~drop).to(u.dtype)
    return m * scale if scale != 1.0 else m


def targeted_unit_mask(weight: Tensor, gamma: float) -> Tensor:
    """Targeted output units (True, shape ``out``): ``‖W_o,:‖₂ < sort(‖W_·,:‖₂)[⌊γ·out⌋]``."""
    _check_weight(weight)
    gamma = validate_gamma(gamma)
    norms = torch.linalg.vector_norm(weight.detach(), 2, dim=1)  # = .norm(dim=1), less overhead
    k = int(gamma * weight.shape[0])
    if k == 0:
        return torch.zeros_like(norms, dtype=torch.bool)
    if _numpy_fast_path(norms) and _has_storage(norms):  # the same k-th value, faster
        n = norms.numpy()
        return torch.from_numpy(n < np.partition(n, k)[k])
    threshold = torch.kthvalue(norms, k + 1).values
    return norms < threshold


def ramp_schedule(step: int, gamma: float, alpha: float, ramp_steps: int) -> tuple[float, float]:
    """(γ(s), α(s)) of the official piecewise ramp over R = ``ramp_steps`` (module doc)."""
    if ramp_steps <= 0:
        raise ValueError(f"ramp_steps must be positive, got {ramp_steps}")
    s, r = float(step), float(ramp_steps)
    half = r / 2.0
    a = alpha * min(1.0, s / r)
    g = 0.95 * gamma * min(1.0, s / half) + 0.05 * gamma * min(max((s - half) / half, 0.0), 1.0)
    return g, a


def _bits_for(alpha: float) -> tuple[int, int]:
    """``(b, t)``: the fewest bits b ∈ {8, 16, 32} with ``t = α·2^b`` an integer, else
    ``(32, ⌈α·2^32⌉)``; ``P(K < t) = t / 2^b`` for K uniform on ``{0, …, 2^b − 1}``."""
    for b in (8, 16, 32):
        t = alpha * 2.0**b
        if t == math.floor(t):
            return b, int(t)
    return 32, math.ceil(alpha * 2.0**32)


_UINT = {8: np.uint8, 16: np.uint16, 32: np.uint32}


def bernoulli_bits(
    shape: tuple[int, ...],
    alpha: float,
    generator: torch.Generator | None = None,
    *,
    buffer: Tensor | None = None,
) -> Tensor:
    """Boolean draws, True with probability α (exactly when α·2^b is an integer, b ≤ 32).

    Draws ``⌈n·b/64⌉`` full-range int64 from ``generator`` (``Tensor.random_``), reads them as
    ``n`` unsigned b-bit integers ``K`` (little-endian order of the bytes) and returns
    ``K < α·2^b`` (:func:`_bits_for`).  ``buffer``, an int64 CPU tensor of at least that many
    elements, is reused for the raw bits instead of a new allocation.
    """
    alpha = validate_alpha(alpha)
    k, threshold = uniform_bits(shape, alpha, generator, buffer)
    return torch.from_numpy(np.less(k, threshold))


def uniform_bits(
    shape: tuple[int, ...],
    alpha: float,
    generator: torch.Generator | None,
    buffer: Tensor | None = None,
) -> tuple[np.ndarray, np.integer | int]:
    """``(K, t)`` of :func:`bernoulli_bits`: K a numpy view of the raw bits, drop iff K < t."""
    n = math.prod(shape)
    b, threshold = _bits_for(alpha)
    words = -(-n * b // 64)
    if buffer is None or buffer.numel() < words:
        buffer = torch.empty(words, dtype=torch.int64)
    raw = kernels.random_words_(buffer[:words], generator)  # = .random_(-2**63, None, …)
    k = raw.numpy().view(_UINT[b])[:n].reshape(shape)
    # α = 1 gives t = 2^b, beyond the type: compare in a wider type (every K < 2^b)
    return k, (_UINT[b](threshold) if threshold < 2**b else np.uint64(threshold))


class Regulariser:
    """Applies a :class:`RegulariserConfig` during training of a layered network.

    Every random regulariser is a multiplicative factor drawn afresh at each step: layer ``l``
    computes ``z_l = (a_l ⊙ D_l) (W_l ⊙ M_l)ᵀ + b_l``, where ``M_l = weight_factor(l, W_l, step)``
    and ``D_l = input_factor(l, a_l.shape, …)`` (``None`` means 1).  ``weight(l, W, step)`` and
    ``activation(l, a, step)`` apply them; ``penalty(weights)`` is the additive loss term and
    ``penalty_gradient`` its gradient.  All randomness comes from ``generator``, drawn in the
    order of :meth:`step_factors`.
    """

    def __init__(
        self, config: RegulariserConfig, num_layers: int, generator: torch.Generator | None = None
    ) -> None:
        self.config = config
        self.num_layers = num_layers
        layers = range(num_layers) if config.layers is None else config.layers
        bad = [i for i in layers if not 0 <= i < num_layers]
        if bad:
            raise ValueError(f"layer indices {bad} out of range for a {num_layers}-layer network")
        self.layers = frozenset(layers)
        self.generator = generator
        self._work: dict[int, dict] = {}  # per layer: buffers of the "bits" draws
        self._hints: dict[int, dict] = {}  # per layer: last step's thresholds (kernels)
        self._fused: dict[int, dict] = {}  # per layer: buffers of step_masks

    def rates(self, step: int) -> tuple[float, float]:
        """(γ, α) in force at ``step`` (ramped when ``ramp_steps`` is set)."""
        c = self.config
        if c.ramp_steps:
            return ramp_schedule(step, c.gamma, c.alpha, c.ramp_steps)
        return c.gamma, c.alpha

    def _uniform(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        return torch.rand(shape, generator=self.generator, dtype=dtype).to(device)

    def weight_factor(self, layer: int, w: Tensor, step: int) -> Tensor | None:
        """``M`` with ``W̃ = W ⊙ M`` for this step, or ``None`` (no change).

        Targeted: ``M = 1[¬(targeted ∧ u < α)]``, u ~ U(0, 1) per weight, kept weights not
        rescaled.  DropConnect: ``M = 1[u ≥ α] / (1 − α)``.
        """
        kind = self.config.kind
        if layer not in self.layers or kind in ("none", "l1", "dropout"):
            return None
        gamma, alpha = self.rates(step)
        if alpha == 0.0:
            return None
        if kind == "dropconnect":
            u = self._uniform(w.shape, w.dtype, w.device)
            return keep_factor(u, alpha, None, 1.0 / (1.0 - alpha))
        if int(gamma * (w.shape[1] if kind == "targeted-weight" else w.shape[0])) == 0:
            return None
        if self.config.draws == "bits":
            return self._bits_factor(layer, w, gamma, alpha)
        if _kernel_path(w):  # fused: selection, comparison and factor in one pass
            u = self._uniform(w.shape, w.dtype, w.device)
            factor = np.empty(tuple(w.shape), dtype=u.numpy().dtype)
            self._kernel_keep(layer, w, gamma, u.numpy(), 0, alpha, factor=factor)
            return torch.from_numpy(factor)
        if kind == "targeted-weight":
            targeted = targeted_weight_mask(w, gamma)
        else:  # targeted-unit: whole rows targeted, the draw is per weight element
            targeted = targeted_unit_mask(w, gamma)[:, None]
        return keep_factor(self._uniform(w.shape, w.dtype, w.device), alpha, targeted)

    def _kernel_keep(
        self,
        layer: int,
        w: Tensor,
        gamma: float,
        draws: np.ndarray,
        threshold: int | np.integer,
        alpha: float,
        **out: np.ndarray | Tensor | None,
    ) -> None:
        """:func:`td_analysis.utils.kernels.targeted_keep` for this layer's targeting rule, with the
        layer's thresholds of the last step as the exact selection's starting guess."""
        a = w.detach().numpy()
        if self.config.kind == "targeted-weight":
            state = self._hints.setdefault(layer, {})
            k = int(gamma * a.shape[1])
            kernels.targeted_keep(
                a, k=k, draws=draws, threshold=threshold, alpha=alpha, state=state, **out
            )
        else:  # whole rows targeted (torch's norms, as targeted_unit_mask), the draw per weight
            rows = targeted_unit_mask(w, gamma).numpy()
            kernels.targeted_keep(
                a, k=0, draws=draws, threshold=threshold, alpha=alpha, targeted_rows=rows, **out
            )

    def _bits_factor(self, layer: int, w: Tensor, gamma: float, alpha: float) -> Tensor:
        """Targeted factor ``M`` (0/1, the weight's float type) with ``"bits"`` draws,
        computed in buffers kept for the next step.

        The returned tensor (on the CPU: a buffer of this Regulariser) is overwritten by the
        next call for the same layer.  Same targeting as :func:`targeted_weight_mask` /
        :func:`targeted_unit_mask`; drops from :func:`bernoulli_bits`.
        """
        shape = tuple(w.shape)
        ws = self._work.get(layer)
        dtype = w.dtype if w.dtype in (torch.float32, torch.float64) else torch.float32
        if ws is None or ws["shape"] != shape or ws["dtype"] != dtype:
            ws = self._work[layer] = {
                "shape": shape,
                "dtype": dtype,
                "raw": torch.empty(-(-math.prod(shape) * 32 // 64), dtype=torch.int64),
                "keep": np.empty(shape, dtype=bool),
                "factor": np.empty(shape, dtype=torch.empty((), dtype=dtype).numpy().dtype),
            }
        if _kernel_path(w):  # fused: selection, comparison and factor in one pass
            k, threshold = uniform_bits(shape, alpha, self.generator, ws["raw"])
            self._kernel_keep(layer, w, gamma, k, threshold, alpha, factor=ws["factor"])
            return torch.from_numpy(ws["factor"])
        if self.config.kind == "targeted-weight":
            if _numpy_fast_path(w):
                untargeted = self._weight_untargeted(ws, w, gamma)
            else:
                untargeted = ~targeted_weight_mask(w, gamma).cpu().numpy()
        else:  # whole rows targeted, the draw per weight element
            untargeted = ~targeted_unit_mask(w, gamma).cpu().numpy()[:, None]
        k, threshold = uniform_bits(shape, alpha, self.generator, ws["raw"])
        keep = ws["keep"]
        np.greater_equal(k, threshold, out=keep)  # not drawn for dropping
        np.logical_or(keep, untargeted, out=keep)  # kept = ¬(targeted ∧ drawn)
        # as a 0/1 float factor: W ⊙ M by a float multiply is ~7× faster than where(M, W, 0)
        np.copyto(ws["factor"], keep)
        factor = torch.from_numpy(ws["factor"])
        return factor if w.device.type == "cpu" else factor.to(w.device, w.dtype)

    @staticmethod
    def _weight_untargeted(ws: dict, w: Tensor, gamma: float) -> np.ndarray:
        """``|W_oi| ≥ sort(|W_o,:|)[⌊γ·in⌋]`` (not targeted) in preallocated buffers, as
        :func:`targeted_weight_mask` (magnitudes compared as their IEEE-754 bits)."""
        a = w.detach().numpy()
        int_type, sign_off = (
            (np.int32, np.int32(0x7FFFFFFF))
            if a.dtype == np.float32
            else (np.int64, np.int64(0x7FFFFFFFFFFFFFFF))
        )
        if "mag" not in ws:
            ws["mag"] = np.empty(a.shape, dtype=int_type)
            ws["part"] = np.empty(a.shape, dtype=int_type)
            ws["untargeted"] = np.empty(a.shape, dtype=bool)
        mag, part = ws["mag"], ws["part"]
        np.bitwise_and(a.view(int_type), sign_off, out=mag)
        np.copyto(part, mag)
        k = int(gamma * a.shape[1])
        part.partition(k, axis=1)
        np.greater_equal(mag, part[:, k : k + 1], out=ws["untargeted"])
        return ws["untargeted"]

    def input_factor(
        self, layer: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
    ) -> Tensor | None:
        """``D`` with ``ã = a ⊙ D`` for the input of ``layer``, or ``None``.

        Standard (inverted) dropout of hidden units: ``D = 1[u ≥ α] / (1 − α)``; the raw
        network input (layer 0) is never dropped.
        """
        if self.config.kind != "dropout" or layer == 0 or layer not in self.layers:
            return None
        alpha = self.config.alpha
        if alpha == 0.0:
            return None
        return keep_factor(self._uniform(shape, dtype, device), alpha, None, 1.0 / (1.0 - alpha))

    def step_factors(
        self, weights: Sequence[Tensor], batch_size: int, step: int
    ) -> tuple[list[Tensor | None], list[Tensor | None]]:
        """All factors of one step: ``([M_l], [D_l])``, drawn layer by layer, ``D_l`` first."""
        weight_factors: list[Tensor | None] = []
        input_factors: list[Tensor | None] = []
        for l, w in enumerate(weights):
            shape = (batch_size, w.shape[1])
            input_factors.append(self.input_factor(l, shape, w.dtype, w.device))
            weight_factors.append(self.weight_factor(l, w, step))
        return weight_factors, input_factors

    def step_masks(
        self,
        weights: Sequence[Tensor],
        batch_size: int,
        step: int,
        masked: list[Tensor | None],
    ) -> tuple[list[Tensor | None], list[Tensor | None], list[Tensor | None]]:
        """:meth:`step_factors` fused for a training step: ``([M_l], [D_l], [W_l ⊙ M_l])``.

        The same draws from the generator in the same order, hence the same ``M_l``, ``D_l`` and
        ``W_l ⊙ M_l`` bit for bit.  Where the compiled kernels serve a targeted layer
        (:mod:`td_analysis.utils.kernels`), ``M_l`` is a uint8 0/1 tensor and ``W_l ⊙ M_l`` is
        written in the same pass into ``masked[l]`` (a buffer of W's shape, allocated into the list
        when
        ``None``); elsewhere ``M_l`` is :meth:`weight_factor`'s and the product entry is
        ``None`` (the caller multiplies).  Returned tensors are buffers overwritten next step.
        """
        weight_factors: list[Tensor | None] = []
        input_factors: list[Tensor | None] = []
        products: list[Tensor | None] = []
        for l, w in enumerate(weights):
            shape = (batch_size, w.shape[1])
            input_factors.append(self.input_factor(l, shape, w.dtype, w.device))
            keep = self._fused_keep(l, w, step, masked)
            weight_factors.append(keep if keep is not None else self.weight_factor(l, w, step))
            products.append(masked[l] if keep is not None else None)
        return weight_factors, input_factors, products

    def _fused_keep(
        self, layer: int, w: Tensor, step: int, masked: list[Tensor | None]
    ) -> Tensor | None:
        """The kernel path of :meth:`step_masks` (uint8 keep mask, ``W ⊙ M`` into
        ``masked[layer]``), or ``None`` where :meth:`weight_factor` must serve the layer."""
        kind = self.config.kind
        if layer not in self.layers or not kind.startswith("targeted") or not _kernel_path(w):
            return None
        gamma, alpha = self.rates(step)
        n = w.shape[1] if kind == "targeted-weight" else w.shape[0]
        if alpha == 0.0 or int(gamma * n) == 0:
            return None
        shape = tuple(w.shape)
        fs = self._fused.get(layer)
        if fs is None or fs["keep"].shape != shape or fs["dtype"] != w.dtype:
            fs = self._fused[layer] = {
                "dtype": w.dtype,
                "keep": torch.empty(shape, dtype=torch.uint8),
                "raw": torch.empty(-(-math.prod(shape) * 32 // 64), dtype=torch.int64),
                "u": torch.empty(shape, dtype=w.dtype),
            }
        if masked[layer] is None or masked[layer].shape != w.shape:
            masked[layer] = torch.empty_like(w)
        if self.config.draws == "bits":
            draws, threshold = uniform_bits(shape, alpha, self.generator, fs["raw"])
        else:  # torch.rand into a buffer: the same stream as self._uniform
            draws, threshold = kernels.rand_(fs["u"], self.generator).numpy(), 0
        keep = fs["keep"].numpy()
        plans = fs.setdefault("plans", {})
        plan = plans.get(draws.dtype)
        if plan is None or not plan.matches(w, draws, keep, masked[layer]):
            plan = plans[draws.dtype] = kernels.KeepPlan(
                w, draws, keep, masked[layer], unit=kind == "targeted-unit"
            )
            plan.state = self._hints.setdefault(layer, plan.state)
            plan.tau, plan.delta = kernels._state(plan.state, w.shape[0], plan.ftype)
        if kind == "targeted-weight":
            plan(int(gamma * w.shape[1]), threshold, alpha)
        else:  # whole rows targeted (torch's norms, as targeted_unit_mask)
            plan(0, threshold, alpha, targeted_unit_mask(w, gamma).numpy())
        return fs["keep"]

    def weight(self, layer: int, w: Tensor, step: int) -> Tensor:
        """Effective weight ``W ⊙ M`` (differentiable in ``W``); ``w`` itself if unchanged."""
        m = self.weight_factor(layer, w, step)
        return w if m is None else w * m

    def activation(self, layer: int, z: Tensor, step: int) -> Tensor:
        """The (possibly dropped) input ``z ⊙ D`` of ``layer``; ``z`` itself if unchanged."""
        d = self.input_factor(layer, tuple(z.shape), z.dtype, z.device)
        return z if d is None else z * d

    def penalty(self, weights: Sequence[Tensor]) -> Tensor | None:
        """``λ Σ_l Σ |W_l|`` over the chosen layers for kind ``"l1"``, else ``None``."""
        if self.config.kind != "l1" or self.config.l1 == 0.0:
            return None
        return self.config.l1 * sum(weights[i].abs().sum() for i in sorted(self.layers))

    def penalty_gradient(self, layer: int, w: Tensor) -> Tensor | None:
        """``∂/∂W_l`` of :meth:`penalty`: ``λ sign(W_l)`` (0 at 0, as autograd), or ``None``."""
        if self.config.kind != "l1" or self.config.l1 == 0.0 or layer not in self.layers:
            return None
        return self.config.l1 * torch.sign(w.detach())
