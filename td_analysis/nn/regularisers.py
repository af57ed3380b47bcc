"""The baseline regularisers for any model: dropout, DropConnect and L1, plus one entry point
for a :class:`~td_analysis.nn.dropout.RegulariserConfig`.

* DropConnect (a parametrization of ``weight``): train ``W̃ = W ⊙ 1[u ≥ α] / (1 − α)``, one draw
  per weight; eval the identity.
* Dropout (a forward pre-hook on the module): the module's input ``a`` becomes
  ``a ⊙ 1[u ≥ α] / (1 − α)`` in train mode (inverted dropout of the units it reads).
* L1: the penalty ``λ Σ_l Σ |W_l|`` over the chosen weights (the trained originals), added to
  the loss by the training loop (:func:`l1_penalty`).

Draws come from ``torch.rand`` on the given generator as in
:class:`~td_analysis.nn.dropout.Regulariser`, so on a DenseNet the factors equal the closed-form
path's bit for bit.  Default layers (``modules=None``): DropConnect every Linear/Conv but the
output layer (as targeted dropout); dropout the inputs of every Linear/Conv but the first one
(which reads the raw network input); L1 every Linear/Conv weight, the output layer's included.
:func:`apply_regulariser` reads ``RegulariserConfig.layers`` as indices of the model's
Linear/Conv modules in ``named_modules()`` order (on a DenseNet, its layer numbers), ``None``
meaning all of them, as for the closed-form path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from td_analysis.nn.dropout import RegulariserConfig, keep_factor, validate_alpha
from td_analysis.nn.targeted import (
    LAYER_TYPES,
    ModuleSelector,
    WeightRegulariser,
    apply_targeted_dropout,
    as_generator,
    parametrize_modules,
    select_modules,
    unregister_regulariser,
    wrapped_modules,
)

__all__ = [
    "DropConnect",
    "apply_dropconnect",
    "apply_dropout",
    "l1_penalty",
    "apply_regulariser",
    "remove_regularisers",
    "layer_modules",
]


class DropConnect(WeightRegulariser):
    """DropConnect parametrization: train ``W ⊙ 1[u ≥ α] / (1 − α)`` (u ~ U(0, 1) per weight),
    eval the identity.  ``step`` counts training evaluations, as targeted dropout."""

    def __init__(self, alpha: float, *, generator: torch.Generator | int | None = None) -> None:
        super().__init__(generator)
        self.alpha = validate_alpha(alpha, allow_one=False)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}, step={self.step}"

    @torch.compiler.disable
    def factor(self, weight: Tensor) -> Tensor | None:
        """``M = 1[u ≥ α] / (1 − α)`` for one step (then ``step += 1``), or ``None`` (α = 0:
        nothing drawn)."""
        self.step += 1
        if self.alpha == 0.0:
            return None
        u = self._uniform(tuple(weight.shape), weight.detach())
        return keep_factor(u, self.alpha, None, 1.0 / (1.0 - self.alpha))

    def forward(self, weight: Tensor) -> Tensor:
        if not self.training:
            return weight
        m = self.factor(weight)
        return weight if m is None else weight * m


class _InputDropout:
    """Forward pre-hook: inverted dropout of the module's first input in train mode."""

    def __init__(self, alpha: float, generator: torch.Generator | None) -> None:
        self.alpha = alpha
        self.generator = generator

    @torch.compiler.disable
    def _factor(self, a: Tensor) -> Tensor:
        dtype = a.dtype if a.dtype.is_floating_point else torch.float32
        device = self.generator.device if self.generator is not None else a.device
        u = torch.rand(a.shape, generator=self.generator, dtype=dtype, device=device)
        return keep_factor(u.to(a.device), self.alpha, None, 1.0 / (1.0 - self.alpha))

    def __call__(self, module: nn.Module, args: tuple) -> tuple | None:
        if not module.training or self.alpha == 0.0 or not args:
            return None
        return (args[0] * self._factor(args[0]), *args[1:])


def layer_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every Linear/Conv1d/2d/3d of ``model`` in ``named_modules()`` order (the indices of
    ``RegulariserConfig.layers``)."""
    return [(n, m) for n, m in model.named_modules() if n and isinstance(m, LAYER_TYPES)]


def apply_dropconnect(
    model: nn.Module,
    alpha: float,
    *,
    modules: ModuleSelector = None,
    generator: torch.Generator | int | None = None,
) -> nn.Module:
    """Parametrize the chosen weights with :class:`DropConnect` (shared generator); in place."""
    gen = as_generator(generator)
    DropConnect(alpha)  # validates α before the model is touched
    return parametrize_modules(model, modules, lambda: DropConnect(alpha, generator=gen))


def apply_dropout(
    model: nn.Module,
    alpha: float,
    *,
    modules: ModuleSelector = None,
    generator: torch.Generator | int | None = None,
) -> nn.Module:
    """Inverted dropout (rate α ∈ [0, 1)) of the inputs of the chosen modules; in place.

    Default: the inputs of every Linear/Conv except the first one (the raw network input).
    """
    alpha = validate_alpha(alpha, allow_one=False)
    gen = as_generator(generator)
    if modules is None:
        chosen = layer_modules(model)[1:]
    else:
        chosen = select_modules(model, modules)
    if not chosen:
        raise ValueError("no module to regularise: modules selects nothing in this model")
    for name, module in chosen:
        if getattr(module, "_td_dropout_handle", None) is not None:
            raise ValueError(f"module '{name}' already has dropout: call remove_regularisers")
    for _, module in chosen:
        hook = _InputDropout(alpha, gen)
        module._td_dropout_hook = hook
        module._td_dropout_handle = module.register_forward_pre_hook(hook)
    return model


def _original_weight(module: nn.Module) -> Tensor:
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations["weight"].original
    return module.weight


def l1_penalty(
    model: nn.Module, coefficient: float, *, modules: ModuleSelector = None
) -> Tensor | None:
    """``λ Σ_l Σ |W_l|`` over the chosen weights (default every Linear/Conv), on the trained
    originals (not the masked weights); ``None`` when λ = 0."""
    if not coefficient >= 0:
        raise ValueError(f"l1 coefficient must be non-negative, got {coefficient}")
    if coefficient == 0:
        return None
    chosen = layer_modules(model) if modules is None else select_modules(model, modules)
    for name, module in chosen:  # (reading a parametrized .weight would draw a mask)
        if not parametrize.is_parametrized(module, "weight") and not isinstance(
            getattr(module, "weight", None), Tensor
        ):
            raise ValueError(f"module '{name}' ({type(module).__name__}) has no weight tensor")
    return coefficient * sum(_original_weight(m).abs().sum() for _, m in chosen)


def _config_modules(model: nn.Module, layers: Sequence[int] | None) -> list[str]:
    all_layers = layer_modules(model)
    if layers is None:
        return [n for n, _ in all_layers]
    bad = [i for i in layers if not 0 <= i < len(all_layers)]
    if bad:
        raise ValueError(
            f"layer indices {bad} out of range for a model with {len(all_layers)} Linear/Conv "
            f"layers"
        )
    return [all_layers[i][0] for i in layers]


def apply_regulariser(
    model: nn.Module,
    config: RegulariserConfig,
    *,
    generator: torch.Generator | int | None = None,
    eval_mode: str = "identity",
) -> nn.Module:
    """Apply ``config`` (kind, γ, α, ramp, draws, layers) to any model, in place.

    ``"none"`` and ``"l1"`` change nothing (the L1 term is :func:`l1_penalty`, added by the
    training loop).  ``config.layers`` indexes :func:`layer_modules`; ``None`` means every
    layer, the output layer included, as ``RegulariserConfig`` documents it for the closed-form
    path (so one config gives the same masks on a DenseNet): pass ``layers`` to spare the
    logits, or call :func:`apply_targeted_dropout` (whose default spares them).
    """
    modules = _config_modules(model, config.layers)
    if config.kind.startswith("targeted"):
        return apply_targeted_dropout(
            model,
            config.kind.removeprefix("targeted-"),
            config.gamma,
            config.alpha,
            modules=modules,
            ramp_steps=config.ramp_steps,
            generator=generator,
            draws=config.draws,
            eval_mode=eval_mode,
        )
    if config.kind == "dropconnect":
        return apply_dropconnect(model, config.alpha, modules=modules, generator=generator)
    if config.kind == "dropout":  # as Regulariser: the raw input (layer 0) is never dropped
        first = layer_modules(model)[0][0] if layer_modules(model) else None
        modules = [m for m in modules if m != first]
        if not modules:
            return model
        return apply_dropout(model, config.alpha, modules=modules, generator=generator)
    return model


def remove_regularisers(model: nn.Module) -> nn.Module:
    """Remove every regulariser of this package (targeted dropout, DropConnect, dropout);
    weights are the trained originals, bit for bit.  A model without any is returned as is."""
    for _, module in wrapped_modules(model):
        unregister_regulariser(module)
    for _, module in model.named_modules():
        handle = getattr(module, "_td_dropout_handle", None)
        if handle is not None:
            handle.remove()
            del module._td_dropout_handle, module._td_dropout_hook
    return model
