"""The Hessian of the cross-entropy loss as a linear operator, built and validated once.

ℓ(θ) = c Σₙ CE(f_θ(xₙ), yₙ), c = 1/N (``reduction="mean"``) or 1 (``"sum"``), over the examples
whose label is not ``ignore_index``, as a function of the flat vector θ of the selected
parameters (``named_parameters()`` order, each tensor row-major).  H = ∇²ℓ(θ) is P × P.

Everything is a sum over examples, so every product is accumulated over chunks of examples
(memory O(P·k + chunk)), scaled by c once, and, when distributed, summed over ranks with one
``all_reduce``.  The operator validates the model, the labels and the data once, copies θ, the
other parameters and the buffers once (the model is never touched), and chooses its backend once
from the model's *structure* (:mod:`.structure`): the closed form of :mod:`.dense` for dense ReLU
networks, ``torch.func`` (:mod:`.functional`) for anything else.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from td_analysis.utils.progress import progress_bar as tqdm  # a bar on a terminal only

from ..models import ParamSpec, param_specs
from . import distributed as dist_utils
from .algorithms.diagonal import basis_block_size, columns_diagonal, hutchinson_diagonal
from .algorithms.projection import projected
from .dense import DenseBackend, symmetrize_average, workspace_bytes
from .functional import WORK_BYTES, FunctionalModel, balanced_chunk
from .memory import available_memory_bytes, check_hessian_memory, empty_matrix
from .structure import check_model, dense_structure

__all__ = ["HessianOperator", "REDUCTIONS", "BACKENDS", "Params"]

Params = str | Iterable[str] | None
REDUCTIONS = ("mean", "sum")
BACKENDS = ("auto", "dense", "autograd")


def check_reduction(reduction: str) -> None:
    """Raise ``ValueError`` unless ``reduction`` is "mean" or "sum"."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def default_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    raise ValueError("the model has no floating-point parameters")


def select_params(model: nn.Module, params: Params) -> list[ParamSpec]:
    """Flat layout of the selected parameters; ``None`` means the trainable ones.

    ``params=None`` selects every parameter with ``requires_grad=True`` (frozen ones are held
    fixed, as in curvlinops); a name, a list of names or ``"weights"`` (every 2-D parameter)
    selects explicitly, frozen or not.
    """
    if params is None:
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        if not names:
            raise ValueError("the model has no trainable parameters (requires_grad=True)")
        return param_specs(model, names)
    return param_specs(model, params)


def _copy(t: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    """A detached copy that never shares memory with ``t``; floating tensors cast to ``dtype``."""
    t = t.detach()
    if t.is_floating_point():
        return t.to(device=device, dtype=dtype, copy=True)
    return t.to(device=device, copy=True)


def _describe(obj: Any) -> str:
    return type(obj).__name__


class HessianOperator:
    """H = ∇²_θ ℓ as a linear operator: ``H @ v``, ``H.diagonal()``, ``H.dense()``, …

    Args:
        model: any ``nn.Module`` classifier mapping an input tensor (N × …) to logits N × K.
            Never modified: it runs through ``torch.func.functional_call`` on copies of its
            parameters *and* buffers.  Train-mode BatchNorm / Dropout are refused (call
            ``model.eval()``): their outputs are batch-coupled or random.
        data: an ``(inputs, targets)`` pair of tensors, or a re-iterable of such batches (a
            list, a ``DataLoader``; not a one-shot iterator).  Targets are integer class labels in
            [0, K) or ``ignore_index``; inputs must be tensors (dict inputs are refused), soft
            (probability) targets are refused.  A tensor pair is cast once here; batches are
            cast as they stream by, one pass over ``data`` per product.
        params: ``None`` = the trainable parameters (``requires_grad=True``); or a name, names,
            or ``"weights"``.  Unselected parameters are held fixed.
        reduction: ``"mean"`` (c = 1/N, N the number of non-ignored examples, over all ranks when
            distributed) or ``"sum"`` (c = 1).
        dtype: analysis precision (default: the model's); e.g. float64 for a float32 model.
        device: where the work happens (default: the model's parameters' device).
        distributed: ``data`` is this rank's shard; every product is summed over the ranks of the
            default process group with ``all_reduce`` and every rank gets the same result.  All
            ranks must call the same methods in the same order (they are collective).
        backend: ``"dense"`` = closed form (R-operator, closed-form diagonal and Hessian) for a
            model that *is* ``W_L relu(… relu(W_1 x + b_1) …) + b_L`` by structure (see
            :mod:`td_analysis.curvature.structure`); ``"autograd"`` = ``torch.func``
            forward-over-reverse, any model; ``"auto"`` = dense when the structure says so.
        chunk_size: examples per chunk (default: from a 256 MiB work-space budget).
        ignore_index: a label that marks an example to skip, as ``F.cross_entropy``
            (PyTorch semantics for both reductions, every backend: ignored examples are dropped
            and the mean divides by the number of the others); ``None``: every label must be a
            class.
        progress: tqdm bars for long work (``dense()``, exact diagonal by columns).
        cache_bytes: dense backend with a tensor pair: the V-independent forward quantities of
            H·V (layer inputs z_l, errors e_l = ∂ℓₙ/∂a_l, softmax p: N · Σ widths numbers) are
            kept after the first product when they fit in this many bytes (default
            min(1 GiB, a quarter of the free memory); 0 = never).  Later products then skip
            the forward and backward pass of θ itself.  Without it memory is O(P·k + chunk).

    The flat layout: ``param_names``, ``specs`` (name, shape, offset of each parameter in θ),
    ``theta`` (a copy of θ), :meth:`unflatten`.

    Distributed use (gloo on CPU, NCCL on CUDA)::

        # torchrun --nproc-per-node 2 my_script.py
        from td_analysis.curvature import HessianOperator, distributed
        distributed.init_from_env()
        part = distributed.shard(len(x))              # this rank's slice of the examples
        H = HessianOperator(model.eval(), (x[part], y[part]), distributed=True)
        hv = H @ v                                   # the same on every rank
    """

    def __init__(
        self,
        model: nn.Module,
        data: tuple[Tensor, Tensor] | Iterable[tuple[Tensor, Tensor]],
        *,
        params: Params = None,
        reduction: str = "mean",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        distributed: bool = False,
        backend: str = "auto",
        chunk_size: int | None = None,
        ignore_index: int | None = -100,
        progress: bool = False,
        cache_bytes: int | None = None,
    ) -> None:
        check_reduction(reduction)
        if backend not in BACKENDS:
            raise ValueError(f"backend (method) must be one of {BACKENDS}, got {backend!r}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {_describe(model)}")
        if distributed and not dist_utils.is_initialized():
            raise RuntimeError(
                "distributed=True needs the default process group: call "
                "torch.distributed.init_process_group (or "
                "td_analysis.curvature.distributed.init_from_env() under torchrun) first"
            )
        check_model(model)
        dtype = default_dtype(model) if dtype is None else dtype
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        if device is None:
            device = next(iter(model.parameters())).device
        self.model = model
        self.reduction = reduction
        self.distributed = bool(distributed)
        self.chunk_size = chunk_size
        self.ignore_index = ignore_index
        self.progress = progress
        if cache_bytes is not None and cache_bytes < 0:
            raise ValueError(f"cache_bytes must be non-negative, got {cache_bytes}")
        self._cache_budget = cache_bytes
        self._cache: dict | None = None
        self._dtype, self._device = dtype, torch.device(device)

        self.specs = select_params(model, params)
        named = dict(model.named_parameters())
        selected = {s.name for s in self.specs}
        theta = torch.cat([named[s.name].detach().reshape(-1) for s in self.specs])
        theta = theta.to(device=self._device, dtype=dtype)
        fixed = {n: _copy(p, self._device, dtype) for n, p in named.items() if n not in selected}
        fixed.update({n: _copy(b, self._device, dtype) for n, b in model.named_buffers()})
        self._fm = FunctionalModel(model, self.specs, theta, fixed)

        structure = dense_structure(model) if backend != "autograd" else "backend='autograd'"
        self._tensors: tuple[Tensor, Tensor] | None = None
        self._batches: Iterable | None = None
        self._flatten_ok = True
        self._num_classes: int | None = (
            structure.layers[-1].out_features if not isinstance(structure, str) else None
        )
        self._setup_data(data)
        if not isinstance(structure, str) and not structure.flatten and self._input_ndim != 2:
            structure = (
                f"an nn.Sequential without nn.Flatten needs 2-D inputs, got {self._input_ndim}-D"
            )
        if isinstance(structure, str) and backend == "dense":
            raise ValueError(
                "the closed form (backend/method 'dense') needs a DenseNet-like model (Linear → "
                f"ReLU → … → Linear by structure): {structure}. Use 'autograd' (or 'auto')."
            )
        self.why_not_dense = structure if isinstance(structure, str) else None
        self._dense: DenseBackend | None = None
        if not isinstance(structure, str):
            self._dense = DenseBackend(structure, self._fm.param_dict(theta), self.specs)
        self._check_ranks()

    # ------------------------------------------------------------------------------ data
    def _check_batch(self, x: Any, y: Any, position: int) -> tuple[Tensor, Tensor]:
        """Validate one batch, cast it, drop ignored examples; ``position`` = its first index."""
        if isinstance(x, dict):
            raise TypeError("inputs must be a tensor; models taking dict inputs are not supported")
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise TypeError(
                f"data must hold (inputs, targets) tensors, got ({_describe(x)}, {_describe(y)})"
            )
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or y.ndim != 1:
            raise ValueError(
                "targets must be a 1-D tensor of integer class labels "
                f"(got {y.dtype}, shape {tuple(y.shape)}); soft / probability targets are not "
                "supported"
            )
        if x.ndim == 0 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"inputs {tuple(x.shape)} and targets {tuple(y.shape)} must have the same "
                "number of examples"
            )
        x = x.detach()
        x = (
            x.to(device=self._device, dtype=self._dtype)
            if x.is_floating_point()
            else x.to(self._device)
        )
        y = y.detach().to(device=self._device, dtype=torch.long)
        if self._num_classes is None and x.shape[0]:
            out = self._fm.probe(x[:2])
            if out.ndim != 2 or out.shape[0] != min(2, x.shape[0]):
                raise ValueError(
                    f"the model must map N inputs to N × K logits, got output {tuple(out.shape)} "
                    f"for {min(2, x.shape[0])} inputs"
                )
            self._num_classes = int(out.shape[1])
        K = self._num_classes
        ignored = (
            y == self.ignore_index
            if self.ignore_index is not None
            else torch.zeros_like(y, dtype=torch.bool)
        )
        bad = ((y < 0) | (y >= (K or 0))) & ~ignored
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            extra = f" or ignore_index={self.ignore_index}" if self.ignore_index is not None else ""
            raise ValueError(
                f"targets[{position + i}] = {int(y[i])} is not a class label in [0, {K}){extra}"
            )
        if bool(ignored.any()):
            keep = ~ignored
            x, y = x[keep], y[keep]
        return x, y

    def _setup_data(self, data: Any) -> None:
        pair = (
            isinstance(data, (tuple, list))
            and len(data) == 2
            and isinstance(data[1], Tensor)
            and not isinstance(data[0], (tuple, list))
        )
        if pair:
            x, y = self._check_batch(data[0], data[1], 0)
            self._tensors = (x, y)
            self._input_ndim = data[0].ndim
            local, longest = int(y.shape[0]), int(y.shape[0])
            features = int(data[0].shape[1:].numel())
        else:
            if isinstance(data, Iterator) or not isinstance(data, Iterable):
                raise TypeError(
                    "data must be an (inputs, targets) pair or a re-iterable of such batches "
                    f"(a list or DataLoader), got {_describe(data)}; one pass is made per product"
                )
            self._batches = data
            local, longest, features, self._input_ndim = 0, 0, 0, 2
            position = 0
            for i, batch in enumerate(data):
                if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                    raise TypeError(
                        f"batch {i} is not an (inputs, targets) pair: {_describe(batch)}"
                    )
                x, y = self._check_batch(batch[0], batch[1], position)
                position += int(batch[1].shape[0])
                if i == 0:
                    self._input_ndim = batch[0].ndim
                    features = int(batch[0].shape[1:].numel())
                local += int(y.shape[0])
                longest = max(longest, int(y.shape[0]))
        self.local_num_examples = local
        self._longest = max(1, longest)
        self._features = max(1, features)
        total = local
        if self.distributed:
            t = torch.tensor([float(local)], dtype=torch.float64, device=self._reduce_device())
            dist_utils.all_reduce_sum(t)
            total = int(t.item())
        if total == 0:
            raise ValueError("no examples to analyse (empty data, or every label is ignore_index)")
        self.num_examples = total

    def _reduce_device(self) -> torch.device:
        if dist.get_backend() == "nccl":
            return self._device if self._device.type == "cuda" else torch.device("cuda")
        return torch.device("cpu") if self._device.type != "cpu" else self._device

    def _check_ranks(self) -> None:
        """Distributed: every rank must hold the same θ (same P, same values up to rounding)."""
        if not self.distributed:
            return
        stats = torch.tensor(
            [float(self.num_params), float(self._fm.theta.double().sum())], dtype=torch.float64
        ).to(self._reduce_device())
        lo, hi = stats.clone(), stats.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        if lo[0] != hi[0] or float((hi[1] - lo[1]).abs()) > 1e-6 * (1 + float(hi[1].abs())):
            raise ValueError("the ranks hold different parameters (P or θ differ)")

    def _chunk_len(self, per_example_bytes: int) -> int:
        if self.chunk_size is not None:
            return self.chunk_size
        return balanced_chunk(self._longest, per_example_bytes, WORK_BYTES)

    def _passes(self) -> Iterator[tuple[Tensor, Tensor]]:
        """The (cast, filtered) batches of one pass over the local data."""
        if self._tensors is not None:
            yield self._tensors
            return
        assert self._batches is not None
        seen, position = 0, 0
        for batch in self._batches:
            x, y = self._check_batch(batch[0], batch[1], position)
            position += int(batch[1].shape[0])
            seen += int(y.shape[0])
            yield x, y
        if seen != self.local_num_examples:
            raise RuntimeError(
                f"data yielded {seen} examples in this pass but {self.local_num_examples} when "
                "the operator was built: the data must not change"
            )

    def chunks(self, chunk_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """One pass over the local examples in chunks of at most ``chunk_size`` (balanced)."""
        for x, y in self._passes():
            n = int(y.shape[0])
            if n == 0:
                continue
            step = balanced_chunk(n, 1, chunk_size)
            for start in range(0, n, step):
                yield x[start : start + step], y[start : start + step]

    def _indexed_chunks(self, chunk_size: int) -> Iterator[tuple[int, Tensor, Tensor]]:
        """(start, x, y) chunks of the tensor pair (local example order)."""
        assert self._tensors is not None
        x, y = self._tensors
        n = int(y.shape[0])
        step = balanced_chunk(n, 1, chunk_size)
        for start in range(0, n, step):
            yield start, x[start : start + step], y[start : start + step]

    def _cache_size(self) -> int:
        """Bytes of the H·V forward cache (dense backend)."""
        d = self._dense
        assert d is not None
        widths = sum(w.shape[1] for w in d.W[1:]) + sum(w.shape[0] for w in d.W[d.first :])
        return self.local_num_examples * (widths + d.K) * d.itemsize

    def _cache_allowed(self) -> bool:
        if self._dense is None or self._tensors is None or self.local_num_examples == 0:
            return False
        budget = self._cache_budget
        if budget is None:
            avail = available_memory_bytes(self._device)
            budget = 2**30 if avail is None else min(2**30, avail // 4)
        return self._cache_size() <= budget

    def _dense_matmat(self, V: Tensor, out: Tensor) -> None:
        d = self._dense
        assert d is not None
        cs = self._chunk_len(d.hvp_bytes(V.shape[1]))
        tangents = d.accumulators(d.tangents(V), out)
        self._dense_passes(d, cs, tangents, out)
        d.finish(tangents, out)

    def _dense_passes(self, d: DenseBackend, cs: int, tangents: dict, out: Tensor) -> None:
        if not self._cache_allowed():
            for x, y in self.chunks(cs):
                d.hvp_chunk(x, y, tangents, out)
            return
        if self._cache is None:
            N = self.local_num_examples
            new = lambda w: torch.empty(N, w, dtype=self._dtype, device=self._device)  # noqa: E731
            cache = {
                "z": [None] + [new(w.shape[1]) for w in d.W[1:]],
                "e": [None] * d.first + [new(w.shape[0]) for w in d.W[d.first :]],
                "p": new(d.K),
            }
            for start, x, y in self._indexed_chunks(cs):
                q = d.forward_quantities(x, y)
                stop = start + int(y.shape[0])
                for i in range(1, d.L):
                    cache["z"][i][start:stop] = q["z"][i]
                for i in range(d.first, d.L):
                    cache["e"][i][start:stop] = q["e"][i]
                cache["p"][start:stop] = q["p"]
                d.hvp_from(q, tangents, out)
            self._cache = cache
            return
        cache = self._cache
        for start, x, y in self._indexed_chunks(cs):
            stop = start + int(y.shape[0])
            q = {
                "z": [x.flatten(1)] + [z[start:stop] for z in cache["z"][1:]],
                "e": [None if e is None else e[start:stop] for e in cache["e"]],
                "p": cache["p"][start:stop],
            }
            d.hvp_from(q, tangents, out)

    def _num_chunks(self, chunk_size: int) -> int:
        return max(1, -(-self.local_num_examples // chunk_size))

    def _finish(self, t: Tensor) -> Tensor:
        """c · (this rank's sum), summed over ranks."""
        t.mul_(self.scale)
        if self.distributed:
            if t.device.type == "cpu" and dist.get_backend() == "nccl":
                t.copy_(dist_utils.all_reduce_sum(t.to("cuda")))
            else:
                dist_utils.all_reduce_sum(t)
        return t

    # ------------------------------------------------------------------------------ layout
    @property
    def shape(self) -> tuple[int, int]:
        """(P, P)."""
        return (self.num_params, self.num_params)

    @property
    def num_params(self) -> int:
        """P, the length of θ."""
        return int(self._fm.theta.numel())

    @property
    def dtype(self) -> torch.dtype:
        """Analysis dtype of every result."""
        return self._dtype

    @property
    def device(self) -> torch.device:
        """Device of every result."""
        return self._device

    @property
    def backend(self) -> str:
        """``"dense"`` (closed form) or ``"autograd"`` (torch.func), as chosen at construction."""
        return "dense" if self._dense is not None else "autograd"

    @property
    def scale(self) -> float:
        """c: 1/N for "mean" (N global, non-ignored examples), 1 for "sum"."""
        return 1.0 / self.num_examples if self.reduction == "mean" else 1.0

    @property
    def num_classes(self) -> int:
        """K, the number of logits."""
        assert self._num_classes is not None
        return self._num_classes

    @property
    def param_names(self) -> list[str]:
        """Names of the selected parameters, in θ order."""
        return [s.name for s in self.specs]

    @property
    def offsets(self) -> dict[str, slice]:
        """Where each selected parameter sits in θ."""
        return {s.name: s.slice for s in self.specs}

    @property
    def theta(self) -> Tensor:
        """A copy of θ, the flat vector of the selected parameters (analysis dtype)."""
        return self._fm.theta.clone()

    def unflatten(self, v: Tensor) -> dict[str, Tensor]:
        """Views of a flat (P,) or (P, k) vector as the parameters' shapes (× k)."""
        if v.shape[0] != self.num_params:
            raise ValueError(f"expected {self.num_params} rows, got {tuple(v.shape)}")
        return {s.name: v[s.slice].view(*s.shape, *v.shape[1:]) for s in self.specs}

    def __repr__(self) -> str:
        return (
            f"HessianOperator(P={self.num_params:,}, N={self.num_examples:,}, "
            f"backend={self.backend!r}, reduction={self.reduction!r}, dtype={self.dtype}, "
            f"device={self.device}, distributed={self.distributed})"
        )

    # ------------------------------------------------------------------------------ products
    def _as_block(self, v: Any) -> tuple[Tensor, bool]:
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(v)
        if not isinstance(v, Tensor):
            raise TypeError(f"H @ v needs a tensor, got {_describe(v)}")
        P = self.num_params
        if v.ndim not in (1, 2) or v.shape[0] != P:
            raise ValueError(f"vectors must have shape ({P},) or ({P}, k), got {tuple(v.shape)}")
        V = v.detach().to(device=self._device, dtype=self._dtype)
        single = V.ndim == 1
        return (V[:, None] if single else V).contiguous(), single

    def __matmul__(self, v: Tensor) -> Tensor:
        """H v for v of shape (P,), or H V for (P, k): the whole block in one pass over the data.

        Dense backend: the R-operator ∇²ℓ V = ∂/∂ε ∇ℓ(θ + εV) written out layer by layer (all k
        columns in the same GEMMs); autograd backend: ``vmap``'d ``jvp`` of ``grad``.
        """
        V, single = self._as_block(v)
        out = self.matmat(V)
        return out[:, 0] if single else out

    def matmat(self, V: Tensor) -> Tensor:
        """H V for V of shape P × k (analysis dtype and device, contiguous)."""
        k = V.shape[1]
        out = torch.zeros_like(V)
        if self._dense is not None:
            self._dense_matmat(V, out)
        else:
            cs = self._chunk_len(self._fm.example_bytes(k, self._features, self._num_classes or 1))
            for x, y in self.chunks(cs):
                self._fm.hvp(x, y, V, out)
        return self._finish(out)

    def loss_and_gradient(self) -> tuple[Tensor, Tensor]:
        """(ℓ, ∇ℓ) in one pass (0-d and (P,) tensors of the analysis dtype)."""
        cs = self._chunk_len(self._fm.example_bytes(1, self._features, self._num_classes or 1))
        buf = torch.zeros(self.num_params + 1, dtype=self._dtype, device=self._device)
        for x, y in self.chunks(cs):
            value, g = self._fm.loss_and_grad(x, y)
            buf[:-1] += g
            buf[-1] += value
        self._finish(buf)
        return buf[-1], buf[:-1]

    def gradient(self) -> Tensor:
        """∇ℓ(θ) = c Σₙ ∇ℓₙ, shape (P,)."""
        return self.loss_and_gradient()[1]

    def loss(self) -> Tensor:
        """ℓ(θ) = c Σₙ CE(f_θ(xₙ), yₙ), a 0-d tensor (forward passes only)."""
        cs = self._chunk_len(self._fm.example_bytes(0, self._features, self._num_classes or 1))
        total = torch.zeros(1, dtype=self._dtype, device=self._device)
        with torch.no_grad():
            for x, y in self.chunks(cs):
                total += F.cross_entropy(self._fm.logits(self._fm.theta, x), y, reduction="sum")
        return self._finish(total)[0]

    def diagonal(self, *, method: str = "exact") -> Tensor:
        """diag H, exact.

        ``method="exact"``: the closed form of the dense backend, H[(r,s),(r,s)] = c Σₙ
        Mₙ[r,r] ξ_{n,s}² (Mₙ = δᵀAₙδ, ξ the layer input or 1 for a bias): for piecewise-linear
        ReLU nets the Hessian diagonal equals the GGN diagonal (the residual term has no diagonal),
        as BackPACK's ``DiagGGNExact``.  Other models have no such closed form: an error names
        :meth:`hutchinson_diagonal` (unbiased estimate) and ``method="columns"``.
        ``method="columns"``: exact for any model from P Hessian-vector products with blocks
        of basis vectors e_j (P/B passes over the data: small P only).
        """
        if method not in ("exact", "columns"):
            raise ValueError(f"method must be 'exact' or 'columns', got {method!r}")
        if method == "exact":
            if self._dense is None:
                raise ValueError(
                    "the exact Hessian diagonal has a closed form only for DenseNet-like ReLU "
                    f"nets ({self.why_not_dense}); use H.hutchinson_diagonal(num_samples=...) "
                    "for an unbiased stochastic estimate, or H.diagonal(method='columns') for "
                    "the exact one from P Hessian-vector products"
                )
            out = torch.zeros_like(self._fm.theta)
            cs = self._chunk_len(self._dense.diagonal_bytes(self._features))
            for x, y in self.chunks(cs):
                self._dense.diagonal_chunk(x, y, out)
            return self._finish(out)
        return columns_diagonal(self, progress=self.progress)

    def hutchinson_diagonal(
        self, num_samples: int = 256, *, seed: int = 0, batch: int = 64
    ) -> Tensor:
        """diag H ≈ (1/S) Σ_j v_j ⊙ H v_j, v_j ∈ {±1}^P i.i.d. (unbiased; any model):
        :func:`~td_analysis.curvature.algorithms.diagonal.hutchinson_diagonal` on this operator."""
        return hutchinson_diagonal(self, num_samples, seed=seed, batch=batch)

    def projected(self, U: Tensor) -> Tensor:
        """Uᵀ H U (B × B, symmetrised) for U of shape P × B, one pass for the whole block:
        :func:`~td_analysis.curvature.algorithms.projection.projected` on this operator."""
        if not isinstance(U, Tensor) or U.ndim != 2 or U.shape[0] != self.num_params:
            shape = tuple(U.shape) if isinstance(U, Tensor) else _describe(U)
            raise ValueError(f"U must have shape ({self.num_params}, B), got {shape}")
        return projected(self, U.detach().to(device=self._device, dtype=self._dtype).contiguous())

    def _basis(self, start: int, stop: int) -> Tensor:
        """E = [e_start, …, e_{stop−1}] as a P × (stop − start) matrix."""
        e = torch.zeros(self.num_params, stop - start, dtype=self._dtype, device=self._device)
        idx = torch.arange(stop - start, device=self._device)
        e[start + idx, idx] = 1
        return e

    def dense(self, *, out: Tensor | None = None) -> Tensor:
        """The full P × P Hessian (exactly symmetric), refused if it cannot fit in memory.

        Dense backend: closed form (Gauss–Newton Σₙ Jₙᵀ Aₙ Jₙ plus the between-layer residual
        Σₙ Σ_k g_{n,k} ∇²f_k, see :mod:`td_analysis.curvature.dense`), upper triangle then mirror.
        Autograd backend: H E for blocks E of basis vectors, then (H + Hᵀ)/2.  Raises
        :class:`~td_analysis.curvature.memory.HessianMemoryError` when P² entries plus work
        space exceed the free memory; ``out`` may be a preallocated contiguous P × P tensor of
        the analysis dtype and device.
        """
        P = self.num_params
        if self._dense is not None:
            cs = self._chunk_len(self._dense.example_bytes())
            cs = min(cs, self._longest)
            work = workspace_bytes(self._dense, cs)
        else:
            work = 6 * P * basis_block_size(P, self._fm.theta.element_size()) * 8
        if out is None:
            check_hessian_memory(P, self._dtype, self._device, workspace_bytes=work)
            H = empty_matrix(P, P, self._dtype, self._device)
        else:
            if out.shape != (P, P) or out.dtype != self._dtype or out.device != self._device:
                raise ValueError(
                    f"out must be a ({P}, {P}) {self._dtype} tensor on {self._device}, got "
                    f"{tuple(out.shape)} {out.dtype} on {out.device}"
                )
            if not out.is_contiguous():
                raise ValueError("out must be contiguous")
            H = out
        if self._dense is not None:
            self._dense.hessian_into(
                H,
                self.chunks(cs),
                cs,
                self.scale,
                num_chunks=self._num_chunks(cs),
                progress=self.progress,
                mirror=not self.distributed,
            )
            if self.distributed:
                self._finish_matrix(H)
                self._dense.mirror(H)
            return H
        block = basis_block_size(P, self._fm.theta.element_size())
        for start in tqdm(range(0, P, block), disable=not self.progress, desc="Hessian"):
            stop = min(P, start + block)
            H[start:stop].copy_(self.matmat(self._basis(start, stop)).mT)
        with torch.no_grad():
            symmetrize_average(H)
        return H

    def _finish_matrix(self, H: Tensor) -> None:
        """Sum an (already scaled) matrix over ranks."""
        if H.device.type == "cpu" and dist.get_backend() == "nccl":
            H.copy_(dist_utils.all_reduce_sum(H.to("cuda")))
        else:
            dist_utils.all_reduce_sum(H)

    def to_scipy(self) -> Any:
        """A ``scipy.sparse.linalg.LinearOperator`` (float64 numpy in and out) for ARPACK etc."""
        from scipy.sparse.linalg import LinearOperator

        def matmat(X: np.ndarray) -> np.ndarray:
            X = np.asarray(X)
            V = torch.from_numpy(np.ascontiguousarray(X.reshape(self.num_params, -1)))
            out = self.matmat(V.to(device=self._device, dtype=self._dtype).contiguous())
            return out.detach().to("cpu", torch.float64).numpy().reshape(X.shape)

        return LinearOperator(
            self.shape,
            matvec=matmat,
            rmatvec=matmat,
            matmat=matmat,
            rmatmat=matmat,
            dtype=np.float64,
        )
