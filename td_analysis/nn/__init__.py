"""Regularisers for any PyTorch model: targeted dropout (the official for-ai/TD rule) as
``torch.nn.utils.parametrize`` parametrizations, DropConnect, dropout and L1.

>>> model = apply_targeted_dropout(model, "weight", gamma=0.5, alpha=0.5, generator=0)
>>> ...  # train (td_analysis.training.fit.fit); eval mode is the identity
>>> remove_targeted_dropout(model)  # plain weights, the trained originals
>>> model = recalibrate_batchnorm(model, x_train[:4000])  # BN statistics of the evaluated net
"""

from td_analysis.nn.batchnorm import has_batchnorm, recalibrate_batchnorm
from td_analysis.nn.regularisers import (
    DropConnect,
    apply_dropconnect,
    apply_dropout,
    apply_regulariser,
    l1_penalty,
    layer_modules,
    remove_regularisers,
)
from td_analysis.nn.targeted import (
    EVAL_MODES,
    LAYER_TYPES,
    ModuleSelector,
    TargetedUnitDropout,
    TargetedWeightDropout,
    apply_targeted_dropout,
    as_generator,
    output_layer_name,
    remove_targeted_dropout,
    select_modules,
    set_targeted_dropout_step,
    targeted_dropout_step,
    weight_rows,
)

__all__ = [
    "TargetedWeightDropout",
    "TargetedUnitDropout",
    "DropConnect",
    "apply_targeted_dropout",
    "remove_targeted_dropout",
    "apply_dropconnect",
    "apply_dropout",
    "apply_regulariser",
    "remove_regularisers",
    "l1_penalty",
    "select_modules",
    "output_layer_name",
    "layer_modules",
    "weight_rows",
    "targeted_dropout_step",
    "set_targeted_dropout_step",
    "as_generator",
    "ModuleSelector",
    "LAYER_TYPES",
    "EVAL_MODES",
    "recalibrate_batchnorm",
    "has_batchnorm",
]
