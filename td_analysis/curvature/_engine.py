"""Generic machinery: the loss as a function of the flat parameter vector θ, in example chunks.

ℓ(θ) = c Σₙ CE(f_θ(xₙ), yₙ) with c = 1/N ("mean") or 1 ("sum").  Every quantity is a sum over
examples, so it is accumulated over chunks of examples (memory bounded for any N) and scaled by c
at the end.  Hessian-vector products are forward-over-reverse: H v = ∂/∂ε ∇ℓ(θ + εv), i.e.
``torch.func.jvp`` of ``torch.func.grad``, ``vmap``'d over the columns of V.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vmap

from ..models import ParamSpec, param_specs

Params = str | Iterable[str] | None

REDUCTIONS = ("mean", "sum")
#: Default work-space budget (bytes) for one chunk of examples.
WORK_BYTES = 256 * 2**20


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _cast(t: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Detached copy (or the tensor itself) on ``device``; floating tensors cast to ``dtype``."""
    t = t.detach()
    if t.is_floating_point():
        return t.to(device=device, dtype=dtype)
    return t.to(device=device)


def balanced_chunk(n: int, per_example_bytes: int, budget_bytes: int = WORK_BYTES) -> int:
    """Chunk length ≤ budget / per-example cost, balanced so all chunks have nearly equal size."""
    if n <= 0:
        return 1
    cap = max(1, budget_bytes // max(1, per_example_bytes))
    num_chunks = math.ceil(n / cap)
    return math.ceil(n / num_chunks)


def default_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    raise ValueError("the model has no floating-point parameters")


@dataclass
class Problem:
    """The loss of ``model`` on (inputs, targets) as a function of the selected flat θ.

    Everything is detached, cast to the analysis ``dtype`` and moved to the inputs' device; the
    model itself is never modified.
    """

    model: nn.Module
    specs: list[ParamSpec]
    theta: Tensor
    frozen: dict[str, Tensor]
    inputs: Tensor
    targets: Tensor
    reduction: str
    _outputs: int | None = None

    @property
    def num_params(self) -> int:
        return int(self.theta.numel())

    @property
    def num_examples(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.theta.dtype

    @property
    def device(self) -> torch.device:
        return self.theta.device

    @property
    def scale(self) -> float:
        """c: 1/N for "mean", 1 for "sum"."""
        return 1.0 / self.num_examples if self.reduction == "mean" else 1.0

    @property
    def itemsize(self) -> int:
        return self.theta.element_size()

    def param_dict(self, theta: Tensor) -> dict[str, Tensor]:
        named = {s.name: theta[s.slice].view(s.shape) for s in self.specs}
        return {**self.frozen, **named}

    def logits(self, theta: Tensor, x: Tensor) -> Tensor:
        return functional_call(self.model, self.param_dict(theta), (x,))

    def sum_loss(self, theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """Σₙ CE(f_θ(xₙ), yₙ) over the chunk (x, y)."""
        return F.cross_entropy(self.logits(theta, x), y, reduction="sum")

    def chunks(self, chunk_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, self.num_examples, chunk_size):
            stop = start + chunk_size
            yield self.inputs[start:stop], self.targets[start:stop]

    def example_bytes(self, num_vectors: int = 1) -> int:
        """Rough work space per example when pushing ``num_vectors`` tangents through the net.

        Inputs are not differentiated, so their size counts once; the tangents scale with the
        output width (a proxy for the activations, adequate for narrow dense nets; pass an
        explicit ``chunk_size`` for wide or convolutional models).
        """
        if self._outputs is None:
            with torch.no_grad():
                self._outputs = int(self.logits(self.theta, self.inputs[:1])[0].numel())
        features = int(self.inputs[0].numel())
        return self.itemsize * (2 * features + 16 * num_vectors * self._outputs)


def prepare(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    params: Params = None,
    reduction: str = "mean",
    dtype: torch.dtype | None = None,
) -> Problem:
    """Cast (copies of) the parameters, buffers and inputs for analysis; validate arguments."""
    check_reduction(reduction)
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"inputs has {inputs.shape[0]} examples but targets has {targets.shape[0]}"
        )
    if inputs.shape[0] == 0:
        raise ValueError("no examples given")
    if targets.ndim != 1 or targets.is_floating_point():
        raise ValueError("targets must be a 1-D tensor of integer class labels")
    dtype = default_dtype(model) if dtype is None else dtype
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
    device = inputs.device
    specs = param_specs(model, params)
    named = dict(model.named_parameters())
    selected = {s.name for s in specs}
    theta = torch.cat([named[s.name].detach().reshape(-1) for s in specs])
    theta = theta.to(device=device, dtype=dtype)
    frozen = {n: _cast(p, device, dtype) for n, p in named.items() if n not in selected}
    frozen.update({n: _cast(b, device, dtype) for n, b in model.named_buffers()})
    x = _cast(inputs, device, dtype)
    y = targets.detach().to(device=device, dtype=torch.long)
    return Problem(model, specs, theta, frozen, x, y, reduction)


def gradient(problem: Problem, chunk_size: int | None = None) -> Tensor:
    """∇ℓ(θ) = c Σ_chunks ∇ Σₙ∈chunk ℓₙ."""
    cs = chunk_size or balanced_chunk(problem.num_examples, problem.example_bytes(1))
    total = torch.zeros_like(problem.theta)
    g = grad(problem.sum_loss)
    for x, y in problem.chunks(cs):
        total += g(problem.theta, x, y)
    return total.mul_(problem.scale)


def hvp_matrix(problem: Problem, vectors: Tensor, chunk_size: int | None = None) -> Tensor:
    """H V for V of shape P × k: Σ_chunks vmapᵥ jvp(∇ Σₙ∈chunk ℓₙ, θ, v), times c."""
    k = vectors.shape[1]
    cs = chunk_size or balanced_chunk(problem.num_examples, problem.example_bytes(k))
    out = torch.zeros_like(vectors)
    theta = problem.theta
    for x, y in problem.chunks(cs):

        def grad_chunk(th: Tensor, x: Tensor = x, y: Tensor = y) -> Tensor:
            return grad(problem.sum_loss)(th, x, y)

        def one(v: Tensor, grad_chunk: Callable = grad_chunk) -> Tensor:
            return jvp(grad_chunk, (theta,), (v,))[1]

        out += vmap(one, in_dims=1, out_dims=1)(vectors)
    return out.mul_(problem.scale)


def basis_block_size(num_params: int, itemsize: int, budget_bytes: int = WORK_BYTES) -> int:
    """How many basis vectors e_j to push through one batched HVP (P × block work arrays)."""
    return max(1, min(num_params, 1024, budget_bytes // max(1, 4 * num_params * itemsize)))


def basis_columns(problem: Problem, start: int, stop: int) -> Tensor:
    """E = [e_start, …, e_{stop−1}] as a P × (stop − start) matrix."""
    e = torch.zeros(problem.num_params, stop - start, dtype=problem.dtype, device=problem.device)
    idx = torch.arange(stop - start, device=problem.device)
    e[start + idx, idx] = 1
    return e
