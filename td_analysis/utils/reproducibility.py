"""Bit-identical results on any x86-64 machine with AVX2: fixed CPU kernels for torch and MKL.

Two runs of the same training on one machine agree bit for bit (seeded, one thread), but on
another machine they need not: torch picks its vectorised kernels (softmax, sums, exp, …) by
the CPU's instruction set (``ATEN_CPU_CAPABILITY``: default, avx2, avx512) and MKL picks its
matrix-product kernels the same way, and each choice sums in a different order. Three epochs of
the toy network on an AVX-512 machine and on the same machine emulating an AVX2 one
(``ATEN_CPU_CAPABILITY=avx2``, ``MKL_ENABLE_INSTRUCTIONS=AVX2``) already differ by 1e-7 in the
weights; after 20 epochs the accuracies differ by tenths of a point (``BENCHMARKS.md``).

:func:`pin_cpu_kernels` fixes both choices to the AVX2 code paths (``ATEN_CPU_CAPABILITY=avx2``,
``MKL_CBWR=AVX2``, MKL's "conditional numerical reproducibility" mode), which every x86-64 CPU
since 2013–2015 (Intel Haswell, AMD Excavator/Zen) runs identically. Both libraries read their
variable lazily, when torch dispatches its first operation and MKL runs its first product; this
function sets them only while torch is not imported yet (afterwards an operation may already have
fixed the choice), so it runs where a run starts, before ``import torch``: the ``td-analysis``
command (:func:`td_analysis.cli.main`), the ``python -m td_analysis.…`` entry points, and a
script or notebook that calls ``td_analysis.pin_cpu_kernels()`` first. ``import td_analysis``
itself sets nothing. Worker processes (spawned) import torch before any code of ours runs in them,
so they cannot pin themselves: they inherit the variables from the environment of the process
that starts them, which is pinned already. A variable the user has set is left alone, and
``TD_ANALYSIS_NATIVE_KERNELS=1`` turns the pinning off (fastest kernels, machine-dependent last
bits). :func:`kernel_report` says what is in effect (recorded with results).
"""

from __future__ import annotations

import os
import platform
import sys

__all__ = ["PINNED_KERNELS", "pin_cpu_kernels", "kernel_report", "has_avx2"]

PINNED_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
OPT_OUT = "TD_ANALYSIS_NATIVE_KERNELS"


def pin_cpu_kernels() -> bool:
    """Set :data:`PINNED_KERNELS` in the environment (where unset) if torch is not imported yet;
    returns whether the pinned settings are what torch will use."""
    if os.environ.get(OPT_OUT, "").strip() not in ("", "0"):
        return False
    if "torch" not in sys.modules and has_avx2():
        for name, value in PINNED_KERNELS.items():
            os.environ.setdefault(name, value)
    return all(os.environ.get(k, "").upper() == v.upper() for k, v in PINNED_KERNELS.items())


def has_avx2() -> bool:
    """Whether this is an x86-64 CPU with AVX2 (Linux: ``/proc/cpuinfo``; elsewhere unknown, so
    no: forcing AVX2 kernels on a CPU without them would crash)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return " avx2" in line and " fma" in line
    except OSError:
        pass
    return False


def kernel_report() -> dict[str, str | bool | None]:
    """The CPU kernel choices in effect: torch's capability, MKL's CBWR mode, whether pinned."""
    import torch

    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "MKL_CBWR": os.environ.get("MKL_CBWR"),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
        "pinned": torch.backends.cpu.get_cpu_capability().lower() == "avx2"
        and os.environ.get("MKL_CBWR", "").upper() == "AVX2",
    }
