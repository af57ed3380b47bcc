"""The general backend: the loss as a function of the flat parameter vector θ, for any classifier.

Per chunk of examples (x, y) the backend returns *unscaled sums* Σₙ∈chunk ℓₙ, Σ ∇ℓₙ and
Σ ∇²ℓₙ V; the operator adds the chunks up, multiplies by c (1/N or 1) and sums over ranks.
Hessian-vector products are forward-over-reverse: ∇²ℓ v = ∂/∂ε ∇ℓ(θ + εv), i.e.
``torch.func.jvp`` of ``torch.func.grad``, ``vmap``'d over the k columns of V (one pass over the
chunk for the whole block).  The model runs through ``torch.func.functional_call`` on copies of
its parameters and buffers, so it is never modified.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, grad_and_value, jvp, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..models import ParamSpec

__all__ = ["FunctionalModel", "balanced_chunk", "WORK_BYTES"]

#: Default work-space budget (bytes) for one chunk of examples.
WORK_BYTES = 256 * 2**20


def balanced_chunk(n: int, per_example_bytes: int, budget_bytes: int = WORK_BYTES) -> int:
    """Chunk length ≤ budget / per-example cost, balanced so all chunks have nearly equal size."""
    if n <= 0:
        return 1
    cap = max(1, budget_bytes // max(1, per_example_bytes))
    num_chunks = math.ceil(n / cap)
    return math.ceil(n / num_chunks)


def _randomness_hint(exc: RuntimeError) -> RuntimeError:
    if "randomness" in str(exc) or "random operation" in str(exc):
        return ValueError(
            "the model's forward is random (e.g. functional dropout in training mode); "
            "call model.eval() first"
        )
    return exc


class FunctionalModel:
    """``model`` as a pure function of θ (the selected parameters, flat) with the rest fixed.

    ``fixed`` holds copies of the unselected parameters and of all buffers.
    """

    def __init__(
        self, model: nn.Module, specs: list[ParamSpec], theta: Tensor, fixed: dict[str, Tensor]
    ) -> None:
        self.model = model
        self.specs = specs
        self.theta = theta
        self.fixed = fixed

    def param_dict(self, theta: Tensor) -> dict[str, Tensor]:
        named = {s.name: theta[s.slice].view(s.shape) for s in self.specs}
        return {**self.fixed, **named}

    def logits(self, theta: Tensor, x: Tensor) -> Tensor:
        return functional_call(self.model, self.param_dict(theta), (x,))

    def sum_loss(self, theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """Σₙ CE(f_θ(xₙ), yₙ) over the chunk (x, y)."""
        return F.cross_entropy(self.logits(theta, x), y, reduction="sum")

    def probe(self, x: Tensor) -> Tensor:
        """Logits of a few examples, computed under ``vmap(randomness="error")``.

        Any random operation in the forward (functional dropout in training mode, …) raises
        here, before any work, whatever its values: a random function has no Hessian.
        """
        theta = self.theta

        def run(_: Tensor) -> Tensor:
            return self.logits(theta, x)

        try:
            with torch.no_grad():
                return vmap(run, randomness="error")(torch.zeros(1, dtype=theta.dtype))[0]
        except RuntimeError as exc:
            raise _randomness_hint(exc) from exc

    def loss_and_grad(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(Σₙ ℓₙ, Σₙ ∇ℓₙ) over the chunk."""
        try:
            g, value = grad_and_value(self.sum_loss)(self.theta, x, y)
        except RuntimeError as exc:
            raise _randomness_hint(exc) from exc
        return value.detach(), g

    def hvp(self, x: Tensor, y: Tensor, V: Tensor, out: Tensor) -> None:
        """out += Σₙ ∇²ℓₙ V over the chunk: vmapᵥ jvp(∇ Σₙ ℓₙ, θ, v)."""
        theta = self.theta

        def grad_chunk(th: Tensor) -> Tensor:
            return grad(self.sum_loss)(th, x, y)

        def one(v: Tensor) -> Tensor:
            return jvp(grad_chunk, (theta,), (v,))[1]

        # attention: the fused SDPA kernels (flash, memory-efficient) have no forward-mode AD;
        # the math kernel is the same function, differentiable twice in every mode
        try:
            with sdpa_kernel(SDPBackend.MATH):
                if V.shape[1] == 1:
                    out[:, 0] += one(V[:, 0])
                else:
                    out += vmap(one, in_dims=1, out_dims=1)(V)
        except RuntimeError as exc:
            raise _randomness_hint(exc) from exc

    def example_bytes(self, num_vectors: int, features: int, outputs: int) -> int:
        """Rough work space per example when pushing ``num_vectors`` tangents through the net.

        Inputs are not differentiated, so their size counts once; the tangents scale with the
        output width (a proxy for the activations, adequate for narrow dense nets; pass an
        explicit ``chunk_size`` for wide or convolutional models).
        """
        return self.theta.element_size() * (2 * features + 16 * num_vectors * outputs)
