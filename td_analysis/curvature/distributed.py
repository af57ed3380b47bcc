"""Data-parallel curvature over ``torch.distributed``: process-group set-up, sharding, sums.

Every curvature quantity is a sum over examples, ℓ(θ) = c Σₙ ℓₙ(θ), so with the data split into
shards S_r (one per rank r), H v = c Σ_r Σ_{n∈S_r} ∇²ℓₙ v: each rank sums over its own shard and
one ``all_reduce(SUM)`` adds the partial sums; c = 1/N with N the *global* number of examples.

Start R processes with ``torchrun --nproc-per-node R script.py``; in the script call
:func:`init_from_env` (gloo on CPU, NCCL on CUDA), take this rank's part of the data with
:func:`shard` and build ``HessianOperator(model, (x, y), distributed=True)``.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["is_initialized", "init_from_env", "rank_and_world", "shard", "all_reduce_sum"]


def is_initialized() -> bool:
    """Whether the default process group exists."""
    return dist.is_available() and dist.is_initialized()


def init_from_env(backend: str | None = None, *, timeout_s: float = 600.0) -> tuple[int, int]:
    """Initialise the default process group from torchrun's environment; return (rank, world).

    Reads ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` (set by ``torchrun``).
    ``backend`` defaults to ``"nccl"`` when CUDA is available, else ``"gloo"``; with NCCL the
    current CUDA device becomes ``LOCAL_RANK``.  A no-op if the group already exists.
    """
    if is_initialized():
        return dist.get_rank(), dist.get_world_size()
    missing = [
        k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ
    ]
    if missing:
        raise RuntimeError(
            f"environment variables {missing} are not set: start the script with "
            "`torchrun --nproc-per-node N script.py`"
        )
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return dist.get_rank(), dist.get_world_size()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default group, or (0, 1) without one."""
    if not is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def shard(n: int, rank: int | None = None, world: int | None = None) -> slice:
    """Contiguous, balanced slice of ``range(n)`` for ``rank`` of ``world`` (defaults: this one).

    Shard sizes differ by at most one; a rank may get an empty slice when n < world.
    """
    if rank is None or world is None:
        r, w = rank_and_world()
        rank = r if rank is None else rank
        world = w if world is None else world
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in [0, {world})")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def all_reduce_sum(t: Tensor) -> Tensor:
    """In-place sum of ``t`` over all ranks (every rank ends with the same tensor)."""
    if dist.get_backend() == "nccl" and t.device.type != "cuda":
        raise RuntimeError("the NCCL process group needs CUDA tensors: use device='cuda'")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t
