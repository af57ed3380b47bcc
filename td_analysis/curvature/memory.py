"""Memory bookkeeping: refuse a full Hessian that cannot fit before allocating it.

A full Hessian over P parameters needs ``P² · itemsize`` bytes (P = 30,840 in float32: 3.8 GB).
"""

from __future__ import annotations

import mmap
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["HessianMemoryError", "available_memory_bytes", "check_hessian_memory", "empty_matrix"]

_GB = 1e9
_POPULATE_MIN_BYTES = 64 * 2**20
_NO_LIMIT = 1 << 60  # cgroup v1 reports "no limit" as a huge number


class HessianMemoryError(MemoryError):
    """The requested full matrix does not fit in the available memory."""


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _cgroup_available() -> int | None:
    """Bytes left under this process's cgroup memory limit (v2, then v1), or ``None``."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        limit = _read_int(Path(limit_file))
        if limit is None or limit >= _NO_LIMIT:
            continue
        usage = _read_int(Path(usage_file)) or 0
        return max(limit - usage, 0)
    return None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_memory_bytes(device: torch.device | str = "cpu") -> int | None:
    """Free memory on ``device`` in bytes, or ``None`` when it cannot be determined.

    CUDA: ``torch.cuda.mem_get_info``.  CPU: ``psutil`` (if installed) or ``/proc/meminfo``
    ``MemAvailable``, capped by the cgroup limit of a container.
    """
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    if device.type != "cpu":
        return None
    avail: int | None
    try:
        import psutil

        avail = int(psutil.virtual_memory().available)
    except Exception:  # psutil missing or unusable: fall back to /proc/meminfo
        avail = _meminfo_available()
    cgroup = _cgroup_available()
    if cgroup is not None:
        avail = cgroup if avail is None else min(avail, cgroup)
    return avail


def empty_matrix(rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Uninitialised rows × cols tensor; large CPU ones come pre-faulted (``MAP_POPULATE``).

    Touching gigabytes of fresh memory page by page (first-touch page faults inside the GEMMs)
    costs about as much as the arithmetic for small N; populating the mapping up front in the
    kernel is faster.  The tensor owns the mapping (freed when the tensor is).
    """
    nbytes = rows * cols * torch.empty((), dtype=dtype).element_size()
    populate = getattr(mmap, "MAP_POPULATE", None)
    if device.type != "cpu" or populate is None or nbytes < _POPULATE_MIN_BYTES:
        return torch.empty(rows, cols, dtype=dtype, device=device)
    try:
        buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
    except (OSError, ValueError):
        return torch.empty(rows, cols, dtype=dtype, device=device)
    return torch.frombuffer(buf, dtype=dtype).view(rows, cols)


def check_hessian_memory(
    num_params: int,
    dtype: torch.dtype,
    device: torch.device | str,
    *,
    workspace_bytes: int = 0,
    what: str = "full Hessian",
) -> None:
    """Raise :class:`HessianMemoryError` unless ``P² · itemsize + workspace`` bytes are free."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    matrix = num_params * num_params * itemsize
    avail = available_memory_bytes(device)
    if avail is None or matrix + workspace_bytes <= avail:
        return
    raise HessianMemoryError(
        f"The {what} over P = {num_params:,} parameters needs {matrix / _GB:.2f} GB "
        f"(P² × {itemsize} bytes, {dtype}) plus about {workspace_bytes / _GB:.2f} GB of work "
        f"space, but only {avail / _GB:.2f} GB are available on {torch.device(device)}. "
        "Use hvp(...) for Hessian-vector products, or projected_hessian(..., U) for Uᵀ H U "
        "(e.g. block sums over magnitude-ordered bins), or select fewer parameters with params=."
    )
