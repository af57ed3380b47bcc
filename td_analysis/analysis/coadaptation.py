"""The coadaptation matrix ``C = θᵀ⊙H⊙θ`` (``C_ij = θ_i H_ij θ_j``) ordered by weight magnitude.

For a deletion d that equals θ on a set S of parameters and 0 elsewhere,
``½ dᵀHd = ½ Σ_{i,j∈S} C_ij``: the sum over the pruned × pruned block of C is the second-order
change in loss after pruning S.  Ordering parameters by decreasing |θ| puts the lowest-magnitude
(targeted, pruned) parameters in the lower-right corner, as in the paper's Figure 1.

The matrix is an *operator* (:func:`coadaptation_matrix`, :func:`pooled_coadaptation`); what is
done with it (block shares, unit maps, top pairs) are the *summaries* below.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from td_analysis.analysis.pruning import PRUNABLE_TYPES, module_pruning_masks, pruning_masks
from td_analysis.curvature import HessianOperator, SymmetricOperator
from td_analysis.curvature.algorithms.projection import (  # moved there; importable here too
    MAX_PROJECTION_COLUMNS as MAX_PROJECTION_COLUMNS,
)
from td_analysis.curvature.algorithms.projection import (
    PROJECTION_BYTES as PROJECTION_BYTES,
)
from td_analysis.curvature.algorithms.projection import (
    PROJECTION_COPIES as PROJECTION_COPIES,
)
from td_analysis.curvature.algorithms.projection import (
    group_sums,
    projection_bytes,
)
from td_analysis.nets.models import ParamSpec, param_specs

__all__ = [
    "pooled_coadaptation_record",
    "MagnitudeOrder",
    "magnitude_order",
    "weight_and_kernel_names",
    "coadaptation_matrix",
    "ordered_coadaptation",
    "lowest_magnitude_set",
    "pruned_set",
    "selection_mask",
    "BlockSummary",
    "block_summary",
    "pooled_block_summary",
    "unit_index",
    "unit_dependence",
    "pooled_unit_dependence",
    "coadaptation_entries",
    "bin_matrix",
    "bin_index",
    "pooled_coadaptation",
    "layer_index",
    "layer_coadaptation",
    "hessian_operator",
    "group_sums",
    "projection_bytes",
    "max_pool",
    "top_pairs",
]


@dataclass(frozen=True)
class MagnitudeOrder:
    """A parameter selection and its order by decreasing |θ|.

    Attributes:
        specs: the selected parameters' places in the selection's flat vector θ.
        theta: θ over the selection (``named_parameters()`` order, row-major), unordered.
        order: permutation; ``order[k]`` is the flat index of the k-th position in the ordering.
    """

    specs: tuple[ParamSpec, ...]
    theta: Tensor
    order: Tensor

    @property
    def names(self) -> list[str]:
        """Names of the selected parameters, in ``named_parameters()`` order."""
        return [s.name for s in self.specs]

    @property
    def size(self) -> int:
        """P, the number of selected scalar parameters."""
        return int(self.theta.numel())

    @property
    def ordered_theta(self) -> Tensor:
        """θ by decreasing magnitude: ``theta[order]``."""
        return self.theta[self.order]

    @property
    def rank(self) -> Tensor:
        """Inverse permutation: ``rank[i]`` is the position of flat index i in the ordering."""
        rank = torch.empty_like(self.order)
        rank[self.order] = torch.arange(self.order.numel(), device=self.order.device)
        return rank

    def locate(self, position: int) -> tuple[str, tuple[int, ...]]:
        """``(parameter name, index)`` of the parameter at ``position`` in the ordering.

        For a weight ``layers.l.weight`` the index is ``(output unit, input)``; for the first
        layer the input ``i`` is pixel ``i % 1024`` of colour channel ``i // 1024``.
        """
        flat = int(self.order[position])
        for spec in self.specs:
            if spec.offset <= flat < spec.offset + spec.numel:
                local = flat - spec.offset
                index = []
                for dim in reversed(spec.shape):
                    index.append(local % dim)
                    local //= dim
                return spec.name, tuple(reversed(index))
        raise IndexError(f"position {position} outside the selection of {self.size}")


def magnitude_order(
    model: nn.Module,
    params: str | Iterable[str] | None = "weights",
    *,
    within_layers: bool = False,
) -> MagnitudeOrder:
    """Order the selected parameters by decreasing |θ| (ties by flat index, so it is stable).

    ``params="weights"`` (default) selects every weight matrix and conv kernel and no bias;
    pass names to choose (e.g. ``"layers.1.weight"``, the 100 hidden→output weights of the toy
    net) or ``None`` for all parameters.  ``within_layers=True`` orders each parameter tensor
    separately and keeps the tensors in network order; otherwise the ordering is global.
    """
    if isinstance(params, str) and params == "weights":
        params = weight_and_kernel_names(model)
    specs = tuple(param_specs(model, params))
    named = dict(model.named_parameters())
    theta = torch.cat([named[s.name].detach().reshape(-1) for s in specs])
    if within_layers:
        parts = []
        for s in specs:
            mag = theta[s.slice].abs()
            parts.append(s.offset + torch.sort(mag, descending=True, stable=True).indices)
        order = torch.cat(parts)
    else:
        order = torch.sort(theta.abs(), descending=True, stable=True).indices
    return MagnitudeOrder(specs=specs, theta=theta, order=order)


def weight_and_kernel_names(model: nn.Module) -> list[str]:
    """Every 2-D parameter (weight matrices) and every Conv1d/2d/3d kernel, in order."""
    kernels = {
        f"{n}.weight" if n else "weight"
        for n, m in model.named_modules()
        if isinstance(m, PRUNABLE_TYPES[1:])
    }
    return [n for n, p in model.named_parameters() if p.ndim == 2 or n in kernels]


def coadaptation_matrix(theta: Tensor, hessian: Tensor) -> Tensor:
    """``C = diag(θ) H diag(θ)``, i.e. ``C_ij = θ_i H_ij θ_j`` (same order as ``hessian``)."""
    if theta.ndim != 1:
        raise ValueError(f"theta must be a vector, got shape {tuple(theta.shape)}")
    p = theta.numel()
    if hessian.shape != (p, p):
        raise ValueError(f"hessian must be {p} × {p} to match theta, got {tuple(hessian.shape)}")
    theta = theta.to(hessian.dtype)
    return theta[:, None] * hessian * theta[None, :]


def ordered_coadaptation(order: MagnitudeOrder, hessian: Tensor) -> Tensor:
    """C permuted to decreasing magnitude: ``C_ordered[a, b] = C[order[a], order[b]]``."""
    o = order.order.to(hessian.device)
    theta = order.theta.to(hessian.device)
    return coadaptation_matrix(theta[o], hessian[o][:, o])


def lowest_magnitude_set(order: MagnitudeOrder, fraction: float) -> Tensor:
    """Boolean vector over the selection: the ⌊fraction·P⌋ lowest-|θ| parameters (last in order)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    k = int(fraction * order.size)
    mask = torch.zeros(order.size, dtype=torch.bool)
    if k:
        mask[order.order[order.size - k :].cpu()] = True
    return mask


def pruned_set(
    model: nn.Module, order: MagnitudeOrder, fraction: float, kind: str = "weight"
) -> Tensor:
    """Boolean vector over the selection: exactly what a pruning rule removes.

    ``kind`` is ``"lowest"`` (the lowest-|θ| fraction of the selection), or a kind of
    :func:`td_analysis.analysis.pruning.pruning_masks` over the selected weight matrices
    (``"weight"``: per output unit; ``"unit"``; ``"global"``).  A selection holding conv kernels
    uses
    :func:`td_analysis.analysis.pruning.module_pruning_masks` at k = 100·fraction (``"weight"`` per
    filter, ``"unit"``), restricted to the selection (:func:`selection_mask`).
    """
    if kind == "lowest":
        return lowest_magnitude_set(order, fraction)
    owners = {
        f"{n}.weight" if n else "weight": (n, m)
        for n, m in model.named_modules()
        if isinstance(m, PRUNABLE_TYPES)
    }
    chosen = [owners[n] for n in order.names if n in owners]
    if any(not isinstance(m, nn.Linear) for _, m in chosen):
        if kind not in ("weight", "unit"):
            raise ValueError(f"pruning kind {kind!r} with Conv layers: choose 'weight' or 'unit'")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {fraction}")
        masks = module_pruning_masks(model, kind, 100.0 * fraction, modules=[n for n, _ in chosen])
        return selection_mask(order, masks)
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    weight_to_layer = {f"{n}.weight": i for i, n in enumerate(linear)}
    layers = [weight_to_layer[n] for n in order.names if n in weight_to_layer]
    return selection_mask(order, pruning_masks(model, fraction, kind, layers))


def selection_mask(order: MagnitudeOrder, masks: dict[str, Tensor]) -> Tensor:
    """Boolean vector over the selection of ``order`` (flat order) from per-parameter masks
    (True = pruned, e.g. from :func:`td_analysis.analysis.pruning.module_pruning_masks`); parameters
    the masks do not name are kept, masks of parameters outside the selection are ignored."""
    parts = []
    for s in order.specs:
        m = masks.get(s.name)
        if m is not None and tuple(m.shape) != s.shape:
            raise ValueError(f"mask for {s.name} has shape {tuple(m.shape)}, not {s.shape}")
        parts.append(torch.zeros(s.numel, dtype=torch.bool) if m is None else m.reshape(-1).cpu())
    return torch.cat(parts)


@dataclass(frozen=True)
class BlockSummary:
    """Sums of C over kept×kept, kept×pruned (both off-diagonal blocks) and pruned×pruned.

    ``total = kept_kept + kept_pruned + pruned_pruned``; shares are of ``Σ|C|`` over each block
    (so they add to one and cancellations don't hide dependence).  ``½·pruned_pruned`` is the
    second-order term ``½ dᵀHd`` of deleting the pruned set.
    """

    kept_kept: float
    kept_pruned: float
    pruned_pruned: float
    abs_share_kept_kept: float
    abs_share_kept_pruned: float
    abs_share_pruned_pruned: float
    n_kept: int
    n_pruned: int

    @property
    def total(self) -> float:
        """Σ C over the whole matrix, ``θᵀHθ``."""
        return self.kept_kept + self.kept_pruned + self.pruned_pruned

    @property
    def second_order_estimate(self) -> float:
        """½ dᵀHd for d = θ on the pruned set."""
        return 0.5 * self.pruned_pruned

    def as_dict(self) -> dict:
        """The fields plus ``total`` and ``second_order_estimate``."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["total"] = self.total
        d["second_order_estimate"] = self.second_order_estimate
        return d


def block_summary(C: Tensor, pruned: Tensor) -> BlockSummary:
    """Block sums of C (any order) for a boolean ``pruned`` vector in the same order."""
    if pruned.shape != (C.shape[0],) or C.shape[0] != C.shape[1]:
        raise ValueError(
            f"pruned must be a vector of length {C.shape[0]} for C of shape {tuple(C.shape)}"
        )
    p = pruned.to(C.device, C.dtype)
    k = 1.0 - p
    A = C.abs()

    def quad(M: Tensor, u: Tensor, v: Tensor) -> float:
        return float(u @ M @ v)

    kk, kp, pp = quad(C, k, k), 2.0 * quad(C, k, p), quad(C, p, p)
    akk, akp, app = quad(A, k, k), 2.0 * quad(A, k, p), quad(A, p, p)
    total_abs = akk + akp + app
    share = (lambda x: x / total_abs) if total_abs > 0 else (lambda x: 0.0)
    return BlockSummary(
        kept_kept=kk,
        kept_pruned=kp,
        pruned_pruned=pp,
        abs_share_kept_kept=share(akk),
        abs_share_kept_pruned=share(akp),
        abs_share_pruned_pruned=share(app),
        n_kept=int((pruned == 0).sum()),
        n_pruned=int(pruned.sum()),
    )


def pooled_block_summary(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    order: MagnitudeOrder,
    pruned: Tensor,
    *,
    reduction: str = "sum",
    dtype: torch.dtype | None = torch.float64,
    chunk_size: int | None = None,
    operator: SymmetricOperator | None = None,
) -> BlockSummary:
    """The signed block sums of :func:`block_summary` without the full Hessian (2 HVPs).

    ``UᵀHU`` with ``U = [θ ⊙ kept, θ ⊙ pruned]`` (``pruned`` in flat order, as from
    :func:`pruned_set`), by :func:`group_sums`.  The shares of ``Σ|C|`` need every entry, so
    they are NaN here.
    """
    pruned = torch.as_tensor(pruned).cpu()
    if pruned.shape != (order.size,):
        raise ValueError(
            f"pruned must be a boolean vector over the {order.size} selected parameters, "
            f"got shape {tuple(pruned.shape)}"
        )
    op = operator or hessian_operator(
        model, inputs, targets, order, reduction=reduction, dtype=dtype, chunk_size=chunk_size
    )
    S = group_sums(op, order.theta, pruned.long(), 2)
    nan = float("nan")
    return BlockSummary(
        kept_kept=float(S[0, 0]),
        kept_pruned=float(S[0, 1] + S[1, 0]),
        pruned_pruned=float(S[1, 1]),
        abs_share_kept_kept=nan,
        abs_share_kept_pruned=nan,
        abs_share_pruned_pruned=nan,
        n_kept=int((~pruned.bool()).sum()),
        n_pruned=int(pruned.bool().sum()),
    )


def unit_index(order: MagnitudeOrder) -> tuple[Tensor, list[tuple[str, int]]]:
    """Unit id of every flat parameter, and the units ``(layer name, output unit)`` in order.

    A weight ``W_oi`` belongs to its output unit o, a bias ``b_o`` to unit o of the same layer.
    """
    base_of: dict[str, int] = {}
    units: list[tuple[str, int]] = []
    ids = []
    for s in order.specs:
        layer, out = s.name.rsplit(".", 1)[0], s.shape[0]
        if layer not in base_of:
            base_of[layer] = len(units)
            units.extend((layer, o) for o in range(out))
        ids.append(base_of[layer] + torch.arange(out).repeat_interleave(s.numel // out))
    return torch.cat(ids), units


def unit_dependence(C: Tensor, order: MagnitudeOrder, *, ordered: bool = True) -> Tensor:
    """Units × units map ``D_uv = Σ_{i∈u, j∈v} C_ij`` of summed dependence.

    ``C`` is in magnitude order if ``ordered`` (as from :func:`ordered_coadaptation`), else in
    flat order.  Units are those of :func:`unit_index` (layer by layer, output unit by unit).
    """
    ids, units = unit_index(order)
    if ordered:
        ids = ids[order.order.cpu()]
    onehot = torch.zeros(C.shape[0], len(units), dtype=C.dtype, device=C.device)
    onehot[torch.arange(C.shape[0]), ids.to(C.device)] = 1.0
    return onehot.T @ C @ onehot


def pooled_unit_dependence(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    order: MagnitudeOrder,
    *,
    reduction: str = "sum",
    dtype: torch.dtype | None = torch.float64,
    chunk_size: int | None = None,
    operator: SymmetricOperator | None = None,
) -> Tensor:
    """The units × units map ``D = UᵀHU`` with ``U[i, unit(i)] = θ_i``, by one HVP per unit.

    Equal to :func:`unit_dependence` of the full C, without forming the Hessian: for the
    30,840 parameters of the toy network it takes 20 HVPs instead of a 3.8 GB matrix.
    """
    ids, units = unit_index(order)
    op = operator or hessian_operator(
        model, inputs, targets, order, reduction=reduction, dtype=dtype, chunk_size=chunk_size
    )
    return group_sums(op, order.theta, ids, len(units))


def layer_index(order: MagnitudeOrder) -> tuple[Tensor, list[str]]:
    """Layer id of every flat parameter of the selection, and the layers in network order.

    ``layers.l.weight`` and ``layers.l.bias`` belong to the same layer ``layers.l``.
    """
    layers: list[str] = []
    ids = []
    for s in order.specs:
        layer = s.name.rsplit(".", 1)[0]
        if layer not in layers:
            layers.append(layer)
        ids.append(torch.full((s.numel,), layers.index(layer), dtype=torch.long))
    return torch.cat(ids), layers


def layer_coadaptation(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    order: MagnitudeOrder,
    *,
    subset: Tensor | None = None,
    reduction: str = "mean",
    dtype: torch.dtype | None = torch.float64,
    chunk_size: int | None = None,
    operator: SymmetricOperator | None = None,
) -> tuple[Tensor, list[str]]:
    """Layer × layer map ``D_ab = Σ_{i∈a, j∈b} θ_i H_ij θ_j`` (one HVP per layer), and the layers.

    With a boolean ``subset`` over the selection (flat order, e.g. a pruned set from
    :func:`pruned_set`) only its parameters count, so ``½ Σ_ab D_ab = ½ dᵀHd`` for d = θ on the
    subset, split by the layers the deleted weights sit in.
    """
    ids, layers = layer_index(order)
    if subset is not None:
        subset = torch.as_tensor(subset).cpu()
        if subset.shape != (order.size,):
            raise ValueError(
                f"subset must be a boolean vector over the {order.size} selected parameters, "
                f"got shape {tuple(subset.shape)}"
            )
        ids = torch.where(subset.bool(), ids, -1)
    op = operator or hessian_operator(
        model, inputs, targets, order, reduction=reduction, dtype=dtype, chunk_size=chunk_size
    )
    return group_sums(op, order.theta, ids, len(layers)), layers


def coadaptation_entries(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    order: MagnitudeOrder,
    positions: Tensor | Iterable[int],
    *,
    reduction: str = "sum",
    dtype: torch.dtype | None = torch.float64,
    chunk_size: int | None = None,
    operator: SymmetricOperator | None = None,
) -> Tensor:
    """Exact entries ``C_ab = θ_a H_ab θ_b`` between the parameters at ``positions`` (k × k).

    ``UᵀHU`` with ``U[order[p_a], a] = θ_{order[p_a]}``: k HVPs, no full Hessian, e.g. a sample
    of the 30,720 first-layer weights of the toy network, whose full C would need 7.5 GB.
    Rows and columns follow ``positions``.
    """
    positions = torch.as_tensor(list(positions) if not isinstance(positions, Tensor) else positions)
    positions = positions.long().cpu()
    if positions.ndim != 1 or not len(positions):
        raise ValueError("positions must be a non-empty 1-D sequence of positions in the order")
    if int(positions.min()) < 0 or int(positions.max()) >= order.size:
        raise ValueError(f"positions must lie in [0, {order.size}), the ordered selection")
    k = len(positions)
    if len(torch.unique(positions)) != k:
        raise ValueError("positions must be distinct")
    group = torch.full((order.size,), -1, dtype=torch.long)  # -1: parameters not chosen
    group[order.order.cpu()[positions]] = torch.arange(k)
    op = operator or hessian_operator(
        model, inputs, targets, order, reduction=reduction, dtype=dtype, chunk_size=chunk_size
    )
    return group_sums(op, order.theta, group, k)


# ----------------------------------------------------------------------------- projections
def hessian_operator(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    order: MagnitudeOrder | Iterable[str] | str | None,
    *,
    reduction: str = "mean",
    dtype: torch.dtype | None = torch.float64,
    chunk_size: int | None = None,
) -> HessianOperator:
    """The :class:`td_analysis.curvature.HessianOperator` ``op @ V = H V`` (V of shape P × k)
    over the selection of ``order``, built once and reused for every product (the parameters
    and data are cast once)."""
    names = order.names if isinstance(order, MagnitudeOrder) else order
    names = [s.name for s in param_specs(model, names)]
    return HessianOperator(
        model,
        (inputs, targets),
        params=names,
        reduction=reduction,
        dtype=dtype,
        chunk_size=chunk_size,
    )


def bin_index(order: MagnitudeOrder, bins: int) -> Tensor:
    """Bin id of every flat parameter: position a of the |θ| ordering lies in bin ⌊a·B/P⌋."""
    p = order.size
    if not 1 <= bins <= p:
        raise ValueError(f"bins must be between 1 and the {p} selected parameters, got {bins}")
    return (order.rank.cpu() * bins) // p


def bin_matrix(order: MagnitudeOrder, bins: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """``U`` (P × B): ``U[i, b] = θ_i`` if parameter i's magnitude rank falls in bin b, else 0.

    Bins split the magnitude ordering into B nearly equal consecutive groups, so
    ``(UᵀHU)[a, b] = Σ_{i∈a, j∈b} C_ij`` is the block sum of the ordered coadaptation matrix.
    Dense (P × B): for small selections and tests; :func:`pooled_coadaptation` never forms it.
    """
    group = bin_index(order, bins)
    U = torch.zeros(order.size, bins, dtype=dtype)
    U[torch.arange(order.size), group] = order.theta.detach().cpu().to(dtype)
    return U


def pooled_coadaptation(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    order: MagnitudeOrder,
    bins: int = 256,
    *,
    reduction: str = "sum",
    dtype: torch.dtype | None = torch.float64,
    chunk_size: int | None = None,
    operator: SymmetricOperator | None = None,
    columns: int | None = None,
    memory_limit: int | None = None,
    progress: bool = False,
) -> Tensor:
    """B × B block sums of the ordered C without the full Hessian: ``UᵀHU`` via B HVPs.

    ``U`` (θ-scaled bin indicators) is never stored: :func:`group_sums` with the bin of every
    parameter, in blocks of ``columns`` bins.  ``operator`` (e.g. from :func:`hessian_operator`)
    must act on the selection of ``order``; it is built from the model and data if not given.
    """
    group = bin_index(order, bins)
    op = operator or hessian_operator(
        model, inputs, targets, order, reduction=reduction, dtype=dtype, chunk_size=chunk_size
    )
    return group_sums(
        op, order.theta, group, bins, columns=columns, memory_limit=memory_limit, progress=progress
    )


def max_pool(C: Tensor, bins: int) -> Tensor:
    """B × B pooling of an (ordered) C keeping, in each block, the entry of largest |C| (signed)."""
    p = C.shape[0]
    if not 1 <= bins <= p:
        raise ValueError(f"bins must be between 1 and {p}, got {bins}")
    col_bin = (torch.arange(p, device=C.device) * bins) // p
    out = torch.empty(bins, bins, dtype=C.dtype, device=C.device)
    for a in range(bins):
        rows = C[col_bin == a]  # rows binned exactly like columns (and like bin_matrix)
        index = col_bin.expand(rows.shape[0], p)
        init = torch.full((rows.shape[0], bins), -torch.inf, dtype=C.dtype, device=C.device)
        hi = init.scatter_reduce(1, index, rows, "amax").amax(0)
        lo = init.scatter_reduce(1, index, -rows, "amax").amax(0)
        out[a] = torch.where(hi >= lo, hi, -lo)
    return out


def top_pairs(C: Tensor, order: MagnitudeOrder, position: int, k: int = 10) -> list[dict]:
    """The k entries of row ``position`` of the ordered C with largest |C|, traced to parameters."""
    row = C[position]
    idx = torch.argsort(row.abs(), descending=True)[:k]
    out = []
    for j in idx.tolist():
        name, index = order.locate(j)
        out.append({"position": j, "name": name, "index": index, "value": float(row[j])})
    return out


def pooled_coadaptation_record(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    order: MagnitudeOrder,
    masks: dict[str, Tensor],
    bins: int,
    *,
    prune_k: float,
    dtype: torch.dtype | None = torch.float32,
    chunk_size: int | None = None,
    progress: bool = False,
) -> dict:
    """The pooled B × B block sums of the ordered θᵀ⊙H⊙θ over ``order``, its layer × layer sums
    (``UᵀHU`` with ``U[i, layer(i)] = θᵢ``), and those restricted to the weights ``masks`` delete
    (True = pruned, at ``prune_k``): one Hessian operator of the mean loss for all of them; a
    JSON-able record (the experiments' ``coadaptation.json``)."""
    op = hessian_operator(
        model, inputs, targets, order, reduction="mean", dtype=dtype, chunk_size=chunk_size
    )
    pooled = pooled_coadaptation(
        model, inputs, targets, order, bins, operator=op, progress=progress
    )
    ids, layers = layer_index(order)
    full = group_sums(op, order.theta, ids, len(layers))
    pruned = selection_mask(order, masks)
    sub = group_sums(op, order.theta, torch.where(pruned, ids, -1), len(layers))
    return {
        "params": order.names,
        "num_weights": order.size,
        "bins": bins,
        "pooled": pooled.double().tolist(),
        "layers": layers,
        "layer_sums": full.double().tolist(),
        "prune_k": float(prune_k),
        "pruned_layer_sums": sub.double().tolist(),
        "n_pruned": int(pruned.sum()),
    }
