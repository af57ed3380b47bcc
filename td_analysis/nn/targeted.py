"""Targeted dropout for the weights of any PyTorch model, as ``torch.nn.utils.parametrize``.

A weight of a Linear (``out × in``) or a Conv1d/2d/3d (``out × in/groups × k…``) is viewed as
``V = W.reshape(out, -1)``, one row per output unit or filter (the official TF code reshapes
``[kh, kw, in, out]`` to ``[-1, out]``: the same grouping).  With the official (for-ai/TD)
rule, at the rates ``(γ, α)`` in force:

* weight targeting: ``T_oi = |V_oi| < sort(|V_o,:|)[⌊γ·n⌋]`` (n = ``V.shape[1]``), per row;
* unit targeting: ``T_o,: = ‖V_o,:‖₂ < sort(‖V_·,:‖₂)[⌊γ·out⌋]``, whole rows;
* train mode: ``W̃ = W ⊙ M`` with ``M = 1[¬(T ∧ u < α)]``, one draw ``u`` per weight element,
  and the kept weights are **not** rescaled (the official rule: expected kept fraction
  ``1 − γα``; the targeted weights are meant to disappear);
* eval mode: the identity (``eval_mode="identity"``, the official reading for dense layers),
  or ``W ⊙ 1[¬T]``, every targeted entry zeroed without randomness (``eval_mode="zero-targeted"``,
  how the official ResNet code evaluates its conv layers).

The targeting and the draws are those of :mod:`td_analysis.nn.dropout` (the same functions), so on
a :class:`~td_analysis.nets.models.DenseNet` the wrapper reproduces, bit for bit, the masks of the
closed-form :class:`~td_analysis.nn.dropout.Regulariser` for the same generator and ``draws``.
The closed-form training path stays the fast one for dense networks.

**Step counter.** Each parametrization counts its *training evaluations*: every time the
parametrized weight is read in train mode (once per forward pass of a module that reads its
weight once) it uses the rates of step ``s = step`` (the ramp, :func:`ramp_schedule`, when
``ramp_steps`` is set) and then advances ``step`` by one.  A module whose weight is read several
times per forward draws a fresh mask each time, unless the forward runs inside
``torch.nn.utils.parametrize.cached()``.  Eval-mode reads never advance it.

**Default layers.** ``modules=None`` targets every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` except
the *output layer*, defined as the last of those modules in ``model.named_modules()`` order
(registration order; for DenseNet and torchvision classifiers the logits layer).  The official
code never targets the logits.

**state_dict.** A wrapped module saves its weight under the plain key (``fc.weight``, the
trained original, unmasked) and loads both plain keys and torch's parametrized ones
(``fc.parametrizations.weight.original``): checkpoints move freely between the wrapped and the
plain model.  The step counters are not in the state_dict (:func:`targeted_dropout_step`,
:func:`set_targeted_dropout_step`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from td_analysis.nn.dropout import (
    DRAWS,
    keep_factor,
    ramp_schedule,
    targeted_unit_mask,
    targeted_weight_mask,
    uniform_bits,
    validate_alpha,
    validate_gamma,
)

__all__ = [
    "LAYER_TYPES",
    "EVAL_MODES",
    "ModuleSelector",
    "TargetedWeightDropout",
    "TargetedUnitDropout",
    "apply_targeted_dropout",
    "parametrize_modules",
    "remove_targeted_dropout",
    "select_modules",
    "output_layer_name",
    "weight_rows",
    "targeted_dropout_step",
    "set_targeted_dropout_step",
    "as_generator",
]

LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
EVAL_MODES = ("identity", "zero-targeted")

#: ``modules=``: names, layer types (or a mix of both), or a predicate ``(name, module) -> bool``
ModuleSelector = str | type | Iterable[str | type] | Callable[[str, nn.Module], bool] | None


def as_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    """A ``torch.Generator`` from a seed (``int``), a generator as given, or ``None`` (the
    global RNG, seeded by ``torch.manual_seed``)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {generator!r}")


def output_layer_name(model: nn.Module) -> str | None:
    """Name of the output layer: the last Linear/Conv module in ``named_modules()`` order."""
    names = [n for n, m in model.named_modules() if isinstance(m, LAYER_TYPES)]
    return names[-1] if names else None


def select_modules(
    model: nn.Module,
    modules: ModuleSelector = None,
    *,
    exclude_output: bool = True,
    strict: bool = False,
) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` pairs chosen by ``modules``, in ``named_modules()`` order.

    ``None``: every Linear/Conv1d/2d/3d, except the output layer when ``exclude_output``
    (:func:`output_layer_name`).  A name or a list of names picks those modules (an unknown name
    is an error); a type or a list of types every module of those types; a callable is asked
    ``predicate(name, module)`` for every module.  Explicit choices are taken as given (the
    output layer too).

    ``strict`` (the rules of :func:`td_analysis.analysis.pruning.select_modules`): only Linear/Conv
    layers with a plain weight can be chosen; ``None`` always leaves out the output layer and needs
    another layer, a predicate is asked about the Linear/Conv layers only, and an unknown name,
    a type the model lacks, an empty choice or a module that is no such layer is a one-line
    ``ValueError`` naming the model's layers.
    """
    if strict:
        return _strict_selection(model, modules)
    named = [(n, m) for n, m in model.named_modules() if n]
    if modules is None:
        out = output_layer_name(model) if exclude_output else None
        return [(n, m) for n, m in named if isinstance(m, LAYER_TYPES) and n != out]
    if callable(modules) and not isinstance(modules, type):
        return [(n, m) for n, m in named if modules(n, m)]
    items = [modules] if isinstance(modules, (str, type)) else list(modules)
    names = {i for i in items if isinstance(i, str)}
    types = tuple(i for i in items if isinstance(i, type))
    bad = [i for i in items if not isinstance(i, (str, type))]
    if bad:
        raise TypeError(f"modules must be names, types or a predicate, got {bad[0]!r}")
    missing = sorted(names - {n for n, _ in named})
    if missing:
        raise ValueError(f"model has no module named {', '.join(map(repr, missing))}")
    return [(n, m) for n, m in named if n in names or (types and isinstance(m, types))]


def _describe_module(name: str, module: nn.Module) -> str:
    return f"module {name or '(root)'!r} ({type(module).__name__})"


def _check_prunable(name: str, module: nn.Module) -> None:
    if not isinstance(module, LAYER_TYPES):
        raise ValueError(
            f"{_describe_module(name, module)} cannot be pruned: only Linear and Conv1d/2d/3d "
            "layers can"
        )
    if "weight" not in module._parameters or module._parameters["weight"] is None:
        what = (
            "has a parametrization on its weight (call remove_targeted_dropout(model) first)"
            if hasattr(module, "parametrizations")
            else "has no plain weight parameter (already pruned by torch.nn.utils.prune? "
            "call prune.remove first)"
        )
        raise ValueError(f"{_describe_module(name, module)} {what}")


def _strict_selection(model: nn.Module, modules: ModuleSelector) -> list[tuple[str, nn.Module]]:
    """:func:`select_modules` with ``strict=True``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    layers = _all_layers(model)
    if modules is None:
        if len(layers) < 2:
            raise ValueError(
                f"{type(model).__name__} has {len(layers)} Linear/Conv layer(s): none to prune "
                "besides the output layer (pass modules= to choose)"
            )
        chosen = layers[:-1]
    elif isinstance(modules, type) or isinstance(modules, str):
        chosen = _by_names_or_types(model, [modules])
    elif callable(modules):
        chosen = [(n, m) for n, m in layers if modules(n, m)]
    else:
        chosen = _by_names_or_types(model, list(modules))
    if not chosen:
        raise ValueError(f"modules={modules!r} chooses no Linear/Conv layer of the model")
    for name, module in chosen:
        _check_prunable(name, module)
    return chosen


def _by_names_or_types(model: nn.Module, items: list) -> list[tuple[str, nn.Module]]:
    named = dict(model.named_modules())
    wanted: set[str] = set()
    for item in items:
        if isinstance(item, str):
            if item not in named:
                raise ValueError(
                    f"no module named {item!r} in {type(model).__name__} (Linear/Conv layers: "
                    f"{', '.join(n for n, _ in _all_layers(model)) or 'none'})"
                )
            wanted.add(item)
        elif isinstance(item, type) and issubclass(item, nn.Module):
            found = [n for n, m in named.items() if isinstance(m, item)]
            if not found:
                raise ValueError(f"modules: the model has no {item.__name__}")
            wanted.update(found)
        else:
            raise TypeError(
                f"modules must hold module names or nn.Module types, got {type(item).__name__}"
            )
    return [(n, m) for n, m in named.items() if n in wanted]


def _all_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every Linear/Conv1d/2d/3d in ``named_modules()`` order, the root module too."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LAYER_TYPES)]


def _check_target(name: str, module: nn.Module) -> None:
    """One-line ``ValueError`` unless ``module.weight`` is a 2-D matrix or a conv kernel."""
    kind = type(module).__name__
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        raise ValueError(
            f"module '{name}' ({kind}): transposed convolutions store (in, out, …) kernels; "
            f"only Linear-style (out, in) weights and Conv kernels can be targeted"
        )
    # first: reading a parametrized .weight would evaluate it (a draw in train mode)
    if parametrize.is_parametrized(module, "weight"):
        found = [type(p).__name__ for p in module.parametrizations["weight"]]
        if any(isinstance(p, WeightRegulariser) for p in module.parametrizations["weight"]):
            raise ValueError(
                f"module '{name}' is already regularised ({', '.join(found)}): "
                f"call remove_targeted_dropout / remove_regularisers first"
            )
        raise ValueError(f"module '{name}' weight is already parametrized ({', '.join(found)})")
    weight = getattr(module, "weight", None)
    if not isinstance(weight, Tensor):
        raise ValueError(f"module '{name}' ({kind}) has no weight tensor to target")
    if isinstance(weight, nn.parameter.UninitializedParameter):
        raise ValueError(f"module '{name}' ({kind}) has an uninitialised (lazy) weight")
    conv = isinstance(module, nn.modules.conv._ConvNd) and weight.ndim in (3, 4, 5)
    if weight.ndim != 2 and not conv:
        raise ValueError(
            f"module '{name}' ({kind}) has a weight of shape {tuple(weight.shape)}, "
            f"neither a 2-D (out, in) matrix nor a conv kernel"
        )
    if weight.numel() == 0:
        raise ValueError(f"module '{name}' ({kind}) has an empty weight")


def weight_rows(weight: Tensor) -> Tensor:
    """``W.reshape(out, -1)``: one row per output unit or filter (a view when contiguous)."""
    return weight.reshape(weight.shape[0], -1)


def _functorch_wrapped(t: Tensor) -> bool:
    """True inside ``torch.func`` transforms (``grad``, ``vmap``…): no numpy access there."""
    return torch._C._functorch.is_functorch_wrapped_tensor(t)


def _detached_rows(weight: Tensor) -> Tensor:
    return weight_rows(weight.detach())


class WeightRegulariser(nn.Module):
    """Base of the package's weight parametrizations: a multiplicative factor per step."""

    def __init__(self, generator: torch.Generator | int | None = None) -> None:
        super().__init__()
        self.generator = as_generator(generator)
        self.step = 0

    def _uniform(self, shape: tuple[int, ...], weight: Tensor) -> Tensor:
        """``u ~ U(0, 1)`` as :class:`~td_analysis.nn.dropout.Regulariser` draws it (in the
        weight's float type, on the generator's device, then moved to the weight's)."""
        dtype = weight.dtype if weight.dtype.is_floating_point else torch.float32
        device = self.generator.device if self.generator is not None else weight.device
        u = torch.rand(shape, generator=self.generator, dtype=dtype, device=device)
        return u.to(weight.device)


class _TargetedDropout(WeightRegulariser):
    kind = ""

    def __init__(
        self,
        gamma: float,
        alpha: float,
        *,
        ramp_steps: int | None = None,
        generator: torch.Generator | int | None = None,
        draws: str = "uniform",
        eval_mode: str = "identity",
    ) -> None:
        super().__init__(generator)
        self.gamma = validate_gamma(gamma)
        self.alpha = validate_alpha(alpha)
        if self.gamma == 0.0:
            raise ValueError("targeted dropout needs gamma > 0 (the targeted fraction)")
        if ramp_steps is not None and not (isinstance(ramp_steps, int) and ramp_steps > 0):
            raise ValueError(f"ramp_steps must be a positive integer or None, got {ramp_steps}")
        if draws not in DRAWS:
            raise ValueError(f"draws must be one of {DRAWS}, got {draws!r}")
        if eval_mode not in EVAL_MODES:
            raise ValueError(f"eval_mode must be one of {EVAL_MODES}, got {eval_mode!r}")
        self.ramp_steps = ramp_steps
        self.draws = draws
        self.eval_mode = eval_mode

    def extra_repr(self) -> str:
        ramp = f", ramp_steps={self.ramp_steps}" if self.ramp_steps else ""
        return (
            f"gamma={self.gamma:g}, alpha={self.alpha:g}{ramp}, draws={self.draws!r}, "
            f"eval_mode={self.eval_mode!r}, step={self.step}"
        )

    def rates(self, step: int | None = None) -> tuple[float, float]:
        """``(γ(s), α(s))`` at ``step`` (default: the current step); constant without ramp."""
        s = self.step if step is None else step
        if self.ramp_steps:
            return ramp_schedule(s, self.gamma, self.alpha, self.ramp_steps)
        return self.gamma, self.alpha

    def _row_targets(self, rows: Tensor, gamma: float) -> Tensor:
        raise NotImplementedError

    def targeted(self, weight: Tensor, gamma: float | None = None) -> Tensor:
        """Boolean, weight-shaped: the targeted entries at ``gamma`` (default γ(step))."""
        gamma = self.rates()[0] if gamma is None else gamma
        rows = _detached_rows(weight)
        if int(gamma * self._axis(rows)) == 0:
            return torch.zeros(weight.shape, dtype=torch.bool, device=rows.device)
        t = self._row_targets(rows, gamma)
        return t.expand(rows.shape).reshape(weight.shape)

    def _axis(self, rows: Tensor) -> int:
        return rows.shape[1] if self.kind == "weight" else rows.shape[0]

    @torch.compiler.disable
    def factor(self, weight: Tensor, gamma: float, alpha: float) -> Tensor | None:
        """``M`` (0/1 in the weight's float type, weight-shaped) for one training step, or
        ``None`` when nothing can drop (α = 0 or ⌊γ·n⌋ = 0: then nothing is drawn either, as
        in :meth:`td_analysis.nn.dropout.Regulariser.weight_factor`)."""
        rows = _detached_rows(weight)
        if alpha == 0.0 or int(gamma * self._axis(rows)) == 0:
            return None
        targeted = self._row_targets(rows, gamma)  # (out, n), or (out, 1) for units
        shape = tuple(rows.shape)
        if _functorch_wrapped(targeted):  # inside torch.func: no numpy, the same rule in torch
            if self.draws == "bits":
                with torch._C._DisableFuncTorch():  # plain int64 draws for numpy to read
                    k, threshold = uniform_bits(shape, alpha, self.generator)
                drop = torch.from_numpy(k < threshold).to(targeted.device)
            else:
                drop = self._uniform(shape, rows) < alpha
            m = (~(drop & targeted)).to(rows.dtype)
        elif self.draws == "bits":
            k, threshold = uniform_bits(shape, alpha, self.generator)
            keep = np.greater_equal(k, threshold)  # not drawn for dropping
            np.logical_or(keep, ~targeted.cpu().numpy(), out=keep)
            dtype = rows.dtype if rows.dtype.is_floating_point else torch.float32
            m = torch.from_numpy(keep).to(weight.device, dtype)
        else:
            m = keep_factor(self._uniform(shape, rows), alpha, targeted)
        return m.reshape(weight.shape)

    @torch.compiler.disable
    def _train_factor(self, weight: Tensor) -> Tensor | None:
        """:meth:`factor` at the step's rates, then ``step += 1`` (eager under torch.compile:
        the step is not a compiled constant, so nothing recompiles per step)."""
        gamma, alpha = self.rates()
        self.step += 1
        return self.factor(weight, gamma, alpha)

    @torch.compiler.disable
    def _eval_keep(self, weight: Tensor) -> Tensor:
        return (~self.targeted(weight)).to(device=weight.device, dtype=weight.dtype)

    def forward(self, weight: Tensor) -> Tensor:
        """Train: ``W ⊙ M`` at the step's rates (then ``step += 1``); eval: see ``eval_mode``."""
        if self.training:
            m = self._train_factor(weight)
            return weight if m is None else weight * m
        if self.eval_mode == "identity":
            return weight
        return weight * self._eval_keep(weight)


class TargetedWeightDropout(_TargetedDropout):
    """Weight-level targeted dropout (a parametrization of ``weight``).

    Per output unit / filter o of ``V = W.reshape(out, -1)``: targeted
    ``|V_oi| < sort(|V_o,:|)[⌊γ·n⌋]``; in training each targeted weight is dropped with
    probability α and kept weights are not rescaled (official for-ai/TD rule).  Module doc
    (:mod:`td_analysis.nn.targeted`) for the step counter, ``draws`` and ``eval_mode``.
    """

    kind = "weight"

    def _row_targets(self, rows: Tensor, gamma: float) -> Tensor:
        if _functorch_wrapped(rows):  # the torch branch of targeted_weight_mask (no numpy)
            mag = rows.abs()
            k = int(gamma * rows.shape[1])
            return mag < torch.kthvalue(mag, k + 1, dim=1, keepdim=True).values
        return targeted_weight_mask(rows, gamma)


class TargetedUnitDropout(_TargetedDropout):
    """Unit-level targeted dropout (a parametrization of ``weight``).

    Output units / filters with ``‖V_o,:‖₂ < sort(‖V_·,:‖₂)[⌊γ·out⌋]`` are targeted; in
    training the draw is per weight element within targeted rows (``u < α`` drops), kept
    weights are not rescaled (official for-ai/TD rule).
    """

    kind = "unit"

    def _row_targets(self, rows: Tensor, gamma: float) -> Tensor:
        return targeted_unit_mask(rows, gamma)[:, None]


# ------------------------------------------------------------------------------------------------
# state_dict under the plain names
# ------------------------------------------------------------------------------------------------


def _plain_keys_hook(module: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    key = prefix + "parametrizations.weight.original"
    if key in state_dict:
        state_dict[prefix + "weight"] = state_dict.pop(key)


def _load_plain_keys_hook(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    plain, param = prefix + "weight", prefix + "parametrizations.weight.original"
    if plain in state_dict and param not in state_dict:
        state_dict[param] = state_dict.pop(plain)


def _register(module: nn.Module, parametrization: WeightRegulariser) -> None:
    """Parametrize ``module.weight`` without evaluating it (``unsafe``: no draw, no step)."""
    parametrize.register_parametrization(module, "weight", parametrization, unsafe=True)
    module._td_handles = (  # type: ignore[attr-defined]
        module.register_state_dict_post_hook(_plain_keys_hook),
        module.register_load_state_dict_pre_hook(_load_plain_keys_hook),
    )


def unregister_regulariser(module: nn.Module) -> None:
    """Back to the plain parameter ``original`` itself (``leave_parametrized=False``)."""
    parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    for handle in getattr(module, "_td_handles", ()):
        handle.remove()
    if hasattr(module, "_td_handles"):
        del module._td_handles


def wrapped_modules(model: nn.Module, cls: type = WeightRegulariser) -> list[tuple[str, nn.Module]]:
    return [
        (n, m)
        for n, m in model.named_modules()
        if parametrize.is_parametrized(m, "weight")
        and any(isinstance(p, cls) for p in m.parametrizations["weight"])
    ]


def apply_targeted_dropout(
    model: nn.Module,
    kind: str = "weight",
    gamma: float = 0.5,
    alpha: float = 0.5,
    *,
    modules: ModuleSelector = None,
    ramp_steps: int | None = None,
    generator: torch.Generator | int | None = None,
    draws: str = "uniform",
    eval_mode: str = "identity",
) -> nn.Module:
    """Parametrize the chosen weights of ``model`` with targeted dropout, in place; returns it.

    ``kind``: ``"weight"`` (:class:`TargetedWeightDropout`) or ``"unit"``
    (:class:`TargetedUnitDropout`); ``gamma``/``alpha`` default to the official ResNet-32
    setting (0.5, 0.5).  ``modules``: :func:`select_modules` (default every Linear/Conv but the
    output layer).  ``generator`` (or an int seed; ``None`` = the global RNG) is shared by all
    layers, which draw in forward order.  ``ramp_steps``: the official piecewise ramp.
    ``draws``: ``"uniform"`` or ``"bits"`` (:class:`~td_analysis.nn.dropout.RegulariserConfig`).
    ``eval_mode``: ``"identity"`` or ``"zero-targeted"`` (the official conv evaluation).
    Every chosen module is checked before any is changed.
    """
    classes = {"weight": TargetedWeightDropout, "unit": TargetedUnitDropout}
    if kind not in classes:
        raise ValueError(f"kind must be 'weight' or 'unit', got {kind!r}")
    cls = classes[kind]
    gen = as_generator(generator)
    make = lambda: cls(  # noqa: E731 - validates once, before the model is touched
        gamma, alpha, ramp_steps=ramp_steps, generator=gen, draws=draws, eval_mode=eval_mode
    )
    make()
    return parametrize_modules(model, modules, make, "target")


def parametrize_modules(
    model: nn.Module,
    modules: ModuleSelector,
    make: Callable[[], nn.Module],
    verb: str = "regularise",
) -> nn.Module:
    """Register a fresh ``make()`` (in its module's train/eval mode) on the weight of every
    module ``modules`` chooses (:func:`select_modules`), after checking them all, so a bad
    choice changes nothing; in place.  ``verb`` names the job in the error for an empty choice.
    """
    chosen = select_modules(model, modules)
    if not chosen:
        raise ValueError(f"no module to {verb}: modules selects nothing in this model")
    for name, module in chosen:
        _check_target(name, module)
    for _, module in chosen:
        p = make()
        p.train(module.training)
        _register(module, p)
    return model


def remove_targeted_dropout(model: nn.Module) -> nn.Module:
    """Remove every targeted-dropout parametrization; weights are the trained originals, bit
    for bit (the same ``Parameter`` objects).  One-line ``ValueError`` if there is none."""
    found = wrapped_modules(model, _TargetedDropout)
    if not found:
        raise ValueError("model has no targeted dropout to remove")
    for _, module in found:
        unregister_regulariser(module)
    return model


def targeted_dropout_step(model: nn.Module) -> int:
    """The step counter of the model's targeted dropout (the largest over its layers)."""
    steps = [p.step for _, m in wrapped_modules(model) for p in m.parametrizations["weight"]]
    if not steps:
        raise ValueError("model has no targeted dropout or DropConnect")
    return max(steps)


def set_targeted_dropout_step(model: nn.Module, step: int) -> None:
    """Set every layer's step counter (resuming a run: the ramp continues from ``step``)."""
    found = wrapped_modules(model)
    if not found:
        raise ValueError("model has no targeted dropout or DropConnect")
    for _, m in found:
        for p in m.parametrizations["weight"]:
            if isinstance(p, WeightRegulariser):
                p.step = int(step)
