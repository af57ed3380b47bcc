"""Taylor estimates of the change in loss after pruning, next to the measured change.

Deleting the sub-network d (θ → θ − d, d = θ on the pruned parameters, 0 elsewhere):

    ΔE = E(θ − d) − E(θ) = −∇ᵀd + ½ dᵀHd + O(‖d‖³).

Estimators, all on the same data and loss reduction as the measurement:

* ``first_order``  −∇ᵀd;
* ``second_order`` ½ dᵀHd (one Hessian-vector product, no full Hessian);
* ``diagonal``     ½ Σᵢ Hᵢᵢ dᵢ² (Optimal Brain Damage: weights treated as independent; NaN for
  a model without the closed-form diagonal and more than ``DIAGONAL_COLUMNS_LIMIT`` selected
  parameters, unless ``diag`` is passed);
* ``estimate``     −∇ᵀd + ½ dᵀHd (the paper's |ΔE| is its absolute value);
* ``magnitude``    Σᵢ |dᵢ| (zeroth order: the pruning criterion itself, a ranking score).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from td_analysis.analysis.coadaptation import hessian_operator
from td_analysis.analysis.pruning import (
    REFERENCE_KINDS,
    ModuleSelection,
    apply_masks,
    module_pruning_masks,
    module_rules,
    prunable_weight_names,
    pruning_masks,
    reference_pruning_masks,
)
from td_analysis.curvature import SymmetricOperator, gradient, hessian_diagonal, loss
from td_analysis.nets.models import flatten_masks, flatten_params, param_specs
from td_analysis.training.loop import evaluate
from td_analysis.utils.progress import progress_bar as tqdm

__all__ = [
    "ESTIMATORS",
    "PruningEstimate",
    "deletion_vector",
    "taylor_terms",
    "deletion_terms",
    "estimate_pruning",
    "pruning_sweep",
    "random_mask_sweep",
    "rank_correlations",
    "grouped_rank_correlations",
    "deletion_vector_all",
    "taylor_records",
]

ESTIMATORS = ("first_order", "second_order", "diagonal", "estimate", "magnitude")


@dataclass
class PruningEstimate:
    """Taylor terms of one deletion and what pruning it really does (in the same reduction)."""

    label: str
    fraction: float
    n_pruned: int
    first_order: float
    second_order: float
    diagonal: float
    estimate: float
    magnitude: float
    loss: float
    pruned_loss: float
    accuracy: float
    pruned_accuracy: float

    @property
    def measured(self) -> float:
        """Measured ΔE = E(θ − d) − E(θ)."""
        return self.pruned_loss - self.loss

    @property
    def abs_estimate(self) -> float:
        """The paper's |ΔE| estimate |−∇ᵀd + ½ dᵀHd|."""
        return abs(self.estimate)

    def as_dict(self) -> dict:
        """The fields plus the derived estimates, JSON-able."""
        d = asdict(self)
        d["measured"] = self.measured
        d["abs_estimate"] = self.abs_estimate
        return d


def deletion_vector(
    model: nn.Module, masks: dict[str, Tensor], *, dtype: torch.dtype | None = None
) -> Tensor:
    """d over the parameters named in ``masks`` (in ``named_parameters()`` order): θ ⊙ mask."""
    names = list(masks)
    theta = flatten_params(model, names, dtype=dtype)
    return theta * flatten_masks(param_specs(model, names), masks).to(theta.device)


def taylor_terms(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    d: Tensor,
    *,
    params: Sequence[str],
    reduction: str = "mean",
    dtype: torch.dtype | None = torch.float64,
    grad: Tensor | None = None,
    diag: Tensor | None = None,
    operator: SymmetricOperator | None = None,
) -> dict[str, float]:
    """The estimators of the module doc for one deletion ``d`` over ``params``.

    ``grad`` and ``diag`` (∇ and diag H over the same ``params``) and ``operator`` (H over them,
    e.g. from :func:`td_analysis.analysis.coadaptation.hessian_operator`) may be passed to reuse
    them across many deletions.
    """
    op = operator or hessian_operator(
        model, inputs, targets, params, reduction=reduction, dtype=dtype
    )
    if grad is None:
        grad = _gradient(op, model, inputs, targets, params, reduction, dtype)
    if diag is None:
        diag = _diagonal(op, model, inputs, targets, params, reduction, dtype)
    d = d.to(grad.device, grad.dtype)
    if d.shape != grad.shape:
        raise ValueError(f"d has shape {tuple(d.shape)}, the selection has {tuple(grad.shape)}")
    return deletion_terms(op, d[:, None], grad=grad, diag=diag)[0]


def deletion_terms(
    operator: SymmetricOperator,
    D: Tensor,
    *,
    grad: Tensor,
    diag: Tensor | None = None,
    columns: int = 8,
) -> list[dict[str, float]]:
    """The estimators for each column d of ``D`` (P × m), the products H D ``columns`` at a time.

    ``first_order = −∇ᵀd``, ``second_order = ½ dᵀ(Hd)``, ``diagonal = ½ Σᵢ Hᵢᵢ dᵢ²`` (NaN
    without ``diag``), ``estimate`` = first + second, ``magnitude = Σ|dᵢ|``.
    """
    if D.ndim != 2 or D.shape[0] != grad.shape[0]:
        raise ValueError(f"D must be P × m with P = {grad.shape[0]}, got {tuple(D.shape)}")
    D = D.to(grad.device, grad.dtype)
    out = []
    for c0 in range(0, D.shape[1], columns):
        block = D[:, c0 : c0 + columns].contiguous()
        HD = (operator @ block).to(block.dtype)
        for j in range(block.shape[1]):
            d = block[:, j]
            first = float(-(grad @ d))
            second = float(0.5 * (d @ HD[:, j]))
            obd = float("nan") if diag is None else float(0.5 * (diag.to(d.dtype) * d * d).sum())
            out.append(
                {
                    "first_order": first,
                    "second_order": second,
                    "diagonal": obd,
                    "estimate": first + second,
                    "magnitude": float(d.abs().sum()),
                }
            )
    return out


def _gradient(op, model, inputs, targets, params, reduction, dtype) -> Tensor:
    """∇ from a :class:`HessianOperator`'s own pass, else (any other ``SymmetricOperator``, e.g.
    a dense tensor or another library's operator) from the model."""
    if hasattr(op, "gradient"):
        return op.gradient()
    return gradient(model, inputs, targets, params=params, reduction=reduction, dtype=dtype)


#: Most parameters whose exact diag H is taken from basis columns (P Hessian-vector products)
#: when the model has no closed form; above it the ``diagonal`` (OBD) estimator is NaN.
DIAGONAL_COLUMNS_LIMIT = 2048


def _diagonal(op, model, inputs, targets, params, reduction, dtype) -> Tensor | None:
    """diag H from the operator when it has one (a HessianOperator, a dense tensor), else from
    the model."""
    if hasattr(op, "diagonal"):
        try:
            return op.diagonal()
        except ValueError:  # no closed form for this model: exact one from basis columns
            if op.shape[0] > DIAGONAL_COLUMNS_LIMIT:
                return None  # P HVPs: too many; the OBD estimate is NaN (pass diag= to set it)
            return op.diagonal(method="columns")
    return hessian_diagonal(model, inputs, targets, params=params, reduction=reduction, dtype=dtype)


def _measure(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    reduction: str,
    dtype: torch.dtype | None,
) -> tuple[float, float]:
    with torch.no_grad():
        value = float(loss(model, inputs, targets, reduction=reduction, dtype=dtype))
    return value, evaluate(model, inputs, targets)["accuracy"]


def estimate_pruning(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    masks: dict[str, Tensor],
    *,
    label: str = "",
    fraction: float = float("nan"),
    reduction: str = "mean",
    dtype: torch.dtype | None = torch.float64,
    grad: Tensor | None = None,
    diag: Tensor | None = None,
    base: tuple[float, float] | None = None,
    operator: SymmetricOperator | None = None,
) -> PruningEstimate:
    """Taylor terms of removing ``masks`` (True = pruned) and the measured loss and accuracy."""
    params = [s.name for s in param_specs(model, list(masks))]
    masks = {n: masks[n] for n in params}
    d = deletion_vector(model, masks, dtype=dtype)
    terms = taylor_terms(
        model,
        inputs,
        targets,
        d,
        params=params,
        reduction=reduction,
        dtype=dtype,
        grad=grad,
        diag=diag,
        operator=operator,
    )
    base_loss, base_acc = base or _measure(model, inputs, targets, reduction, dtype)
    pruned_loss, pruned_acc = _measure(apply_masks(model, masks), inputs, targets, reduction, dtype)
    return PruningEstimate(
        label=label,
        fraction=float(fraction),
        n_pruned=int(sum(int(m.sum()) for m in masks.values())),
        **terms,
        loss=base_loss,
        pruned_loss=pruned_loss,
        accuracy=base_acc,
        pruned_accuracy=pruned_acc,
    )


def _weight_names(model: nn.Module, layers: Iterable[int] | None) -> list[str]:
    names = [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return names if layers is None else [names[i] for i in sorted(set(layers))]


def _module_deletions(
    model: nn.Module, kind: str, modules: ModuleSelection | None, scope: str
) -> tuple[list[str], object]:
    """The parameters every mask of ``kind`` touches (``named_parameters()`` order) and
    ``fraction ↦ masks`` (k = 100·fraction percent)."""
    if kind not in ("weight", "unit"):
        raise ValueError(
            f"pruning kind {kind!r} of a model with Conv layers or modules=: "
            "choose 'weight' or 'unit'"
        )
    params = list(module_pruning_masks(model, kind, 0.0, modules=modules, scope=scope))

    def masks(fraction: float) -> dict[str, Tensor]:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"pruning fraction must be in [0, 1], got {fraction}")
        return module_pruning_masks(model, kind, 100.0 * fraction, modules=modules, scope=scope)

    return params, masks


def _sweep(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    params: list[str],
    deletions: Iterable[tuple[str, float, dict[str, Tensor]]],
    *,
    reduction: str,
    dtype: torch.dtype | None,
) -> list[PruningEstimate]:
    """:func:`estimate_pruning` for each ``(label, fraction, masks)``, with the Hessian operator,
    ∇, diag H and the unpruned loss computed once."""
    op = hessian_operator(model, inputs, targets, params, reduction=reduction, dtype=dtype)
    grad = _gradient(op, model, inputs, targets, params, reduction, dtype)
    diag = _diagonal(op, model, inputs, targets, params, reduction, dtype)
    base = _measure(model, inputs, targets, reduction, dtype)
    return [
        estimate_pruning(
            model,
            inputs,
            targets,
            masks,
            label=label,
            fraction=fraction,
            reduction=reduction,
            dtype=dtype,
            grad=grad,
            diag=diag,
            base=base,
            operator=op,
        )
        for label, fraction, masks in deletions
    ]


def pruning_sweep(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    fractions: Sequence[float] = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95),
    kind: str = "weight",
    layers: Iterable[int] | None = None,
    *,
    reduction: str = "mean",
    dtype: torch.dtype | None = torch.float64,
    progress: bool = False,
    modules: ModuleSelection | None = None,
    scope: str = "unit",
) -> list[PruningEstimate]:
    """Estimates and measurements of magnitude pruning at each fraction (∇ and diag H once).

    Linear-only models without ``modules``: :func:`td_analysis.analysis.pruning.pruning_masks` of
    the ``nn.Linear`` layers ``layers`` (default all).  With ``modules`` (or a model with Conv
    layers): :func:`td_analysis.analysis.pruning.module_pruning_masks` at k = 100·fraction percent,
    ``kind`` "weight" (``scope`` "unit" or "layer") or "unit" (conv filters are units), over
    every parameter the masks touch (for units: biases and the next layer's weights too).
    """
    layers = None if layers is None else list(layers)
    bar = tqdm(list(fractions), desc=f"Taylor {kind}", disable=not progress, leave=False)
    if module_rules(model, layers, modules):
        params, masks_at = _module_deletions(model, kind, modules, scope)
        deletions = ((kind, f, masks_at(f)) for f in bar)
    else:
        params = _weight_names(model, layers)
        deletions = ((kind, f, pruning_masks(model, f, kind, layers)) for f in bar)
    return _sweep(model, inputs, targets, params, deletions, reduction=reduction, dtype=dtype)


def random_mask_sweep(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    n_masks: int = 40,
    fraction_range: tuple[float, float] = (0.05, 0.95),
    layers: Iterable[int] | None = None,
    *,
    seed: int = 0,
    reduction: str = "mean",
    dtype: torch.dtype | None = torch.float64,
    progress: bool = False,
    modules: ModuleSelection | None = None,
) -> list[PruningEstimate]:
    """Estimates for random deletions: each mask removes a uniformly random subset of the chosen
    weights, of a size fraction drawn uniformly from ``fraction_range`` (seeded).

    The chosen weights: those of the ``nn.Linear`` layers ``layers`` (default all), or with
    ``modules`` (or a model with Conv layers) of
    :func:`td_analysis.analysis.pruning.select_modules`.
    """
    lo, hi = fraction_range
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"fraction_range must satisfy 0 ≤ lo ≤ hi ≤ 1, got {fraction_range}")
    layers = None if layers is None else list(layers)
    if module_rules(model, layers, modules):
        params = prunable_weight_names(model, modules)
    else:
        params = _weight_names(model, layers)
    named = dict(model.named_parameters())
    gen = torch.Generator().manual_seed(seed)

    def deletions():
        for _ in tqdm(range(n_masks), desc="Taylor random", disable=not progress, leave=False):
            fraction = lo + (hi - lo) * float(torch.rand((), generator=gen))
            yield (
                "random",
                fraction,
                {n: torch.rand(named[n].shape, generator=gen) < fraction for n in params},
            )

    return _sweep(model, inputs, targets, params, deletions(), reduction=reduction, dtype=dtype)


def grouped_rank_correlations(
    records: Sequence[dict],
    by: Sequence[str],
    estimators: Sequence[str] = ESTIMATORS,
) -> list[dict]:
    """Spearman ρ of each estimator against ``record["measured"]`` per group of long-form Taylor
    records: one row per value of the ``by`` fields and ``kind``, plus ``kind="all"`` (both
    kinds together); NaN with fewer than 3 records or no spread."""
    from scipy import stats  # here, not at import: 1.3 s of every start-up

    groups: dict[tuple, list[dict]] = {}
    for r in records:
        for kind in (r["kind"], "all"):
            groups.setdefault((*(r[k] for k in by), kind), []).append(r)
    out = []
    for key, rows in groups.items():
        measured = np.array([r["measured"] for r in rows])
        row = {**dict(zip((*by, "kind"), key, strict=True)), "n": len(rows)}
        for est in estimators:
            values = np.array([r[est] for r in rows])
            ok = len(rows) >= 3 and np.ptp(values) > 0 and np.ptp(measured) > 0
            row[est] = float(stats.spearmanr(values, measured).statistic) if ok else float("nan")
        out.append(row)
    return out


def rank_correlations(estimates: Sequence[PruningEstimate]) -> dict[str, float]:
    """Spearman ρ between each estimator and the measured ΔE over ``estimates``."""
    from scipy import stats  # here, not at import: 1.3 s of every start-up

    measured = np.array([e.measured for e in estimates])
    out = {}
    for name in ESTIMATORS:
        values = np.array([getattr(e, name) for e in estimates])
        if len(values) < 3 or np.ptp(values) == 0 or np.ptp(measured) == 0:
            out[name] = float("nan")
        else:
            out[name] = float(stats.spearmanr(values, measured).statistic)
    return out


def deletion_vector_all(model: nn.Module, masks: dict[str, Tensor], dtype: torch.dtype) -> Tensor:
    """d = θ ⊙ m over *all* parameters (``named_parameters()`` order), m = 1 where pruned."""
    theta = flatten_params(model, None, dtype=dtype)
    return theta * flatten_masks(param_specs(model, None), masks).to(theta.device, dtype)


def taylor_records(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    ks: Sequence[float],
    kinds: Sequence[str] = REFERENCE_KINDS,
    *,
    dtype: torch.dtype = torch.float64,
    columns: int = 6,
    masks: Callable[[nn.Module, float, str], dict[str, Tensor]] | None = None,
    diagonal: bool = True,
    chunk_size: int | None = None,
) -> list[dict]:
    """Taylor terms (:func:`deletion_terms`) and the measured ΔE of every pruning ``(kind, k)``,
    k > 0, over all parameters: ΔE ≈ −∇ᵀd + ½dᵀHd for d = θ ⊙ m, one Hessian operator, ∇ and
    exact diag H for all of them (the fashion-mlp and resnet pipelines' records).

    ``masks(model, k, kind)`` gives the pruning masks (default: the seed's rules,
    :func:`~td_analysis.analysis.pruning.reference_pruning_masks`); ``diagonal=False`` skips diag H
    (the ``diagonal`` estimator is then NaN: for a large model without a closed form it costs P
    HVPs); ``chunk_size``: examples per HVP chunk (default: the operator's budget).
    Records: ``{"kind", "k", "n_pruned", *ESTIMATORS, "loss", "pruned_loss", "measured",
    "accuracy", "pruned_accuracy"}`` (mean cross-entropy, ``dtype``).
    """
    masks_of = masks or reference_pruning_masks
    op = hessian_operator(
        model, inputs, targets, None, reduction="mean", dtype=dtype, chunk_size=chunk_size
    )
    base_loss, grad = op.loss_and_gradient()
    diag = None
    if diagonal:
        try:
            diag = op.diagonal()  # exact closed form (DenseNet-like ReLU nets)
        except ValueError:  # any other model: exact, from P Hessian-vector products
            diag = op.diagonal(method="columns")
    base_acc = evaluate(model, inputs, targets)["accuracy"]
    jobs = [(kind, k) for kind in kinds for k in ks if k > 0]
    out = []
    for start in range(0, len(jobs), columns):
        block = jobs[start : start + columns]
        masks = [masks_of(model, k, kind) for kind, k in block]
        D = torch.stack([deletion_vector_all(model, m, dtype) for m in masks], dim=1)
        terms = deletion_terms(op, D, grad=grad, diag=diag, columns=columns)
        del D
        for (kind, k), m, t in zip(block, masks, terms, strict=True):
            pruned = apply_masks(model, m)
            with torch.no_grad():
                pruned_loss = float(loss(pruned, inputs, targets, reduction="mean", dtype=dtype))
            rec = {
                "kind": kind,
                "k": float(k),
                "n_pruned": int(sum(int(v.sum()) for v in m.values())),
                **t,
                "loss": float(base_loss),
                "pruned_loss": pruned_loss,
                "measured": pruned_loss - float(base_loss),
                "accuracy": base_acc,
                "pruned_accuracy": evaluate(pruned, inputs, targets)["accuracy"],
            }
            out.append(rec)
    return out
