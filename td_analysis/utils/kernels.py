"""Fused CPU kernels of targeted dropout: per-row selection, draw, mask and ``W ⊙ M`` in one pass.

Targeted dropout's training step needs, for every output row ``o`` of a weight (out × in), the
threshold ``τ_o = sort(|W_o,:|)[k]`` (``k = ⌊γ·in⌋``), the mask ``M = 1[¬(|W| < τ ∧ drawn)]``
and the products ``W ⊙ M`` and ``∂L/∂W ⊙ M``.  In numpy/torch that is ~8 passes over the
weights; here it is one read of each row into L1 and one write of ``W ⊙ M`` and of ``M`` (bytes).

**Selection, exact.**  ``τ_o`` is the k-th smallest of the magnitudes' IEEE-754 bits (sign bit
cleared; they order like ``|w|``, NaN last, as :func:`td_analysis.nn.dropout.targeted_weight_mask`).
A candidate band ``[lo, hi]`` is tried first: one vectorised pass counts ``c = #{m < lo}`` and
gathers the band's elements; if ``c ≤ k < c + #band`` then ``τ_o`` is the ``(k − c)``-th smallest
of the band (a quickselect on a few elements), otherwise the band is discarded.  The band comes
from the previous step's ``τ_o ± δ_o`` (weights move little between steps; ``δ_o`` adapts), else
from a sorted sample of the row; the last resort is a quickselect of the whole row.  The band is
only a guess: the counts make the result exact whatever it is (``tests/test_dropout.py`` checks
equality with ``np.sort`` on random rows, ties, zeros, NaN, garbage hints, k = 0 … in − 1).

**Draws.**  The mask pass reads ``K < t`` for the ``"bits"`` draws (uint8/16/32 from
:func:`td_analysis.nn.dropout.uniform_bits`) or ``u < α`` (u in the weight's float type, α rounded
to it, as numpy compares) for ``"uniform"``.  The draws themselves stay torch's stream: torch's
CPU generator is MT19937, and :func:`random_words_` / :func:`rand_` replay it in C (vectorised,
~0.2 ns a 32-bit word against torch's ~1.3–2.4 ns) from the state :meth:`torch.Generator.get_state`
returns, then store the advanced state back: the same numbers, the same generator state after.
The replay is checked against torch's own ``random_``/``rand`` once per process (odd offsets,
state regenerations, float32 and float64); if it differs (another torch, another layout) torch
draws, as without a compiler.

**Build.**  The C source below is compiled once per machine with the system C compiler (``$CC``,
else ``cc``/``gcc``; ``-O3 -march=native``, no fast-math: every result is an integer comparison or
a product by exactly 0 or 1, so it is bit-identical to the numpy path on any CPU) into
``$TD_ANALYSIS_KERNEL_CACHE`` (default ``$XDG_CACHE_HOME/td_analysis/kernels``), keyed by a hash
of the source, the flags, the compiler and the CPU, written atomically, and loaded with
:mod:`ctypes`.  Without a compiler (or with ``TD_ANALYSIS_FUSED_KERNELS=0``) :func:`available` is
``False`` and the callers keep their numpy/torch path, which gives the same results.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from td_analysis.utils.io import atomic_path

__all__ = [
    "available",
    "disabled",
    "kernel_cache_dir",
    "row_thresholds",
    "targeted_keep",
    "mask_gradient_",
    "KeepPlan",
    "random_words_",
    "rand_",
    "ENV_SWITCH",
]

#: ``TD_ANALYSIS_FUSED_KERNELS=0`` (or ``off``/``no``/``false``) keeps the numpy/torch path
ENV_SWITCH = "TD_ANALYSIS_FUSED_KERNELS"
_VERSION = 2

_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* ---- exact k-th smallest (0-based) of a[0..n), quickselect, a is reordered ----
   branchless Lomuto partitions (< p | >= p); when nothing is < p, p is the range's minimum
   and a second pass splits off the elements == p; insertion sort below 16 elements */
#define DEFINE_SELECT(T, NAME)                                                              \
static int cmp_##NAME(const void *x, const void *y) {                                       \
    T a = *(const T *)x, b = *(const T *)y;                                                 \
    return (a > b) - (a < b);                                                               \
}                                                                                           \
static T NAME(T *a, int64_t n, int64_t k) {                                                 \
    int64_t lo = 0, hi = n;                                                                 \
    int budget = 128;                                                                       \
    while (hi - lo > 16) {                                                                  \
        if (--budget == 0) {                                                                \
            qsort(a + lo, (size_t)(hi - lo), sizeof(T), cmp_##NAME);                        \
            return a[k];                                                                    \
        }                                                                                   \
        T x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi - 1], p;                           \
        if (x < y) p = y < z ? y : (x < z ? z : x); else p = x < z ? x : (y < z ? z : y);   \
        int64_t j = lo;                                                                     \
        for (int64_t i = lo; i < hi; i++) {                                                 \
            T v = a[i]; int64_t c = v < p;                                                  \
            a[i] = a[j]; a[j] = v; j += c;                                                  \
        }                                                                                   \
        if (k < j) { hi = j; continue; }                                                    \
        if (j > lo) { lo = j; continue; }                                                   \
        for (int64_t i = lo; i < hi; i++) { /* p is the minimum: split off == p */          \
            T v = a[i]; int64_t c = v <= p;                                                 \
            a[i] = a[j]; a[j] = v; j += c;                                                  \
        }                                                                                   \
        if (k < j) return p;                                                                \
        lo = j;                                                                             \
    }                                                                                       \
    for (int64_t i = lo + 1; i < hi; i++) {                                                 \
        T v = a[i]; int64_t j = i;                                                          \
        while (j > lo && a[j - 1] > v) { a[j] = a[j - 1]; j--; }                            \
        a[j] = v;                                                                           \
    }                                                                                       \
    return a[k];                                                                            \
}
DEFINE_SELECT(uint32_t, select_u32)
DEFINE_SELECT(uint64_t, select_u64)

/* ---- one band pass: c_lo = #{m < lo}; the band's elements (lo <= m <= hi) -> scratch ---- */
static int64_t band_u32(const uint32_t *bits, int64_t n, uint32_t lo, uint32_t hi,
                        uint32_t *scratch, int64_t *c_lo) {
    const uint32_t mask = 0x7FFFFFFFu, width = hi - lo;
    int64_t below = 0, j = 0, i = 0;
#if defined(__AVX512F__)
    const __m512i vlo = _mm512_set1_epi32((int)lo), vw = _mm512_set1_epi32((int)width),
                  vm = _mm512_set1_epi32((int)mask);
    for (; i + 16 <= n; i += 16) {
        __m512i m = _mm512_and_si512(_mm512_loadu_si512((const void *)(bits + i)), vm);
        __mmask16 b = _mm512_cmplt_epu32_mask(m, vlo);
        __mmask16 in = _mm512_cmple_epu32_mask(_mm512_sub_epi32(m, vlo), vw);
        below += __builtin_popcount((unsigned)b);
        if (in) {
            _mm512_storeu_si512((void *)(scratch + j), _mm512_maskz_compress_epi32(in, m));
            j += __builtin_popcount((unsigned)in);
        }
    }
#endif
    for (; i < n; i++) {
        uint32_t m = bits[i] & mask;
        below += m < lo;
        scratch[j] = m;
        j += (uint32_t)(m - lo) <= width;
    }
    *c_lo = below;
    return j;
}

static int64_t band_u64(const uint64_t *bits, int64_t n, uint64_t lo, uint64_t hi,
                        uint64_t *scratch, int64_t *c_lo) {
    const uint64_t mask = 0x7FFFFFFFFFFFFFFFull, width = hi - lo;
    int64_t below = 0, j = 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t m = bits[i] & mask;
        below += m < lo;
        scratch[j] = m;
        j += (uint64_t)(m - lo) <= width;
    }
    *c_lo = below;
    return j;
}

/* ---- exact per-row threshold tau = k-th smallest magnitude bits, hint = tau of last step ---- */
#define DEFINE_ROW_SELECT(U, MASK, BAND, SELECT, NAME)                                      \
static U NAME(const U *bits, int64_t n, int64_t k, U *tau_io, U *delta_io, U *scratch) {    \
    const U top = MASK;                                                                     \
    U hint = *tau_io, delta = *delta_io, tau;                                               \
    int64_t c, nb;                                                                          \
    if (delta != 0 && hint <= top) { /* 1. the last step's tau +- delta */                  \
        U lo = hint > delta ? hint - delta : 0;                                             \
        U hi = top - hint > delta ? hint + delta : top;                                     \
        nb = BAND(bits, n, lo, hi, scratch, &c);                                            \
        if (c <= k && k < c + nb) {                                                         \
            tau = SELECT(scratch, nb, k - c);                                               \
            U moved = tau > hint ? tau - hint : hint - tau;                                 \
            U grown = moved > top / 4 ? top : 2 * moved;                                    \
            U shrunk = delta - delta / 8;                                                   \
            delta = grown > shrunk ? grown : shrunk;                                        \
            *tau_io = tau; *delta_io = delta ? delta : 1;                                   \
            return tau;                                                                     \
        }                                                                                   \
    }                                                                                       \
    if (n >= 256) { /* 2. a band between sample quantiles around rank k */                  \
        enum { S = 64 };                                                                    \
        U sample[S];                                                                        \
        for (int s = 0; s < S; s++) sample[s] = bits[(int64_t)s * n / S + n / (2 * S)] & top; \
        for (int s = 1; s < S; s++) {                                                       \
            U v = sample[s]; int t = s;                                                     \
            while (t > 0 && sample[t - 1] > v) { sample[t] = sample[t - 1]; t--; }          \
            sample[t] = v;                                                                  \
        }                                                                                   \
        int64_t r = k * S / n, a = r - 8, b = r + 8;                                        \
        U lo = a < 0 ? 0 : sample[a], hi = b >= S ? top : sample[b];                        \
        nb = BAND(bits, n, lo, hi, scratch, &c);                                            \
        if (c <= k && k < c + nb) {                                                         \
            tau = SELECT(scratch, nb, k - c);                                               \
            U half = (hi - lo) / 8;                                                         \
            *tau_io = tau; *delta_io = half ? half : 1;                                     \
            return tau;                                                                     \
        }                                                                                   \
    }                                                                                       \
    for (int64_t i = 0; i < n; i++) scratch[i] = bits[i] & top; /* 3. the whole row */      \
    tau = SELECT(scratch, n, k);                                                            \
    if (delta != 0 && hint <= top) { /* a miss: widen the band */                            \
        U moved = tau > hint ? tau - hint : hint - tau;                                     \
        delta = moved > top / 4 ? top : 2 * (moved > delta ? moved : delta);                \
    }                                                                                       \
    *tau_io = tau; *delta_io = delta;                                                       \
    return tau;                                                                             \
}
DEFINE_ROW_SELECT(uint32_t, 0x7FFFFFFFu, band_u32, select_u32, row_select_u32)
DEFINE_ROW_SELECT(uint64_t, 0x7FFFFFFFFFFFFFFFull, band_u64, select_u64, row_select_u64)

/* thresholds only (rows x cols), for tests and for callers that want tau itself */
#define DEFINE_THRESHOLDS(U, ROWSEL, NAME)                                                  \
int NAME(const U *bits, int64_t rows, int64_t cols, int64_t k, U *tau, U *delta) {           \
    U *scratch = (U *)malloc(sizeof(U) * (size_t)(cols + 64));                              \
    if (!scratch) return -1;                                                                \
    for (int64_t o = 0; o < rows; o++)                                                      \
        ROWSEL(bits + o * cols, cols, k, tau + o, delta + o, scratch);                      \
    free(scratch);                                                                          \
    return 0;                                                                               \
}
DEFINE_THRESHOLDS(uint32_t, row_select_u32, td_thresholds_f32)
DEFINE_THRESHOLDS(uint64_t, row_select_u64, td_thresholds_f64)

/* ---- the mask pass of one row: drop = (m < tau) & drawn; keep, W*keep, factor ----
   W * keep is written as drop ? W * 0 : W, the same numbers as the product by 0/1 */
#define DEFINE_MASK_ROW(F, U, MASK, D, DRAWN, NAME)                                         \
static inline void NAME(const F *restrict w, int64_t n, U tau, const D *restrict d,         \
                        uint32_t thr, F alpha, int always, uint8_t *restrict keep,          \
                        F *restrict masked, F *restrict factor) {                           \
    const U *restrict bits = (const U *)w;                                                  \
    if (keep && masked && !factor) {                                                        \
        for (int64_t i = 0; i < n; i++) {                                                   \
            U drop = (U)(((bits[i] & MASK) < tau) & (always | (DRAWN)));                    \
            keep[i] = (uint8_t)(drop ^ 1u);                                                 \
            masked[i] = drop ? w[i] * (F)0 : w[i];                                          \
        }                                                                                   \
    } else if (factor && !keep && !masked) {                                                \
        for (int64_t i = 0; i < n; i++) {                                                   \
            U drop = (U)(((bits[i] & MASK) < tau) & (always | (DRAWN)));                    \
            factor[i] = drop ? (F)0 : (F)1;                                                 \
        }                                                                                   \
    } else {                                                                                \
        for (int64_t i = 0; i < n; i++) {                                                   \
            U drop = (U)(((bits[i] & MASK) < tau) & (always | (DRAWN)));                    \
            if (keep) keep[i] = (uint8_t)(drop ^ 1u);                                       \
            if (masked) masked[i] = drop ? w[i] * (F)0 : w[i];                              \
            if (factor) factor[i] = drop ? (F)0 : (F)1;                                     \
        }                                                                                   \
    }                                                                                       \
}

#define DEFINE_KERNELS(F, U, MASK, ROWSEL, SUFFIX, D, DRAWN, DNAME)                         \
DEFINE_MASK_ROW(F, U, MASK, D, DRAWN, mask_row_##SUFFIX##_##DNAME)                           \
/* kind 0 = weight (select tau per row), kind 1 = unit (tau given: 0 or all-ones per row) */ \
int td_keep_##SUFFIX##_##DNAME(const F *w, int64_t rows, int64_t cols, int64_t k,            \
                               int kind, U *tau, U *delta, const D *draws, uint64_t thr64,   \
                               double alpha, uint8_t *keep, F *masked, F *factor) {          \
    U *scratch = 0;                                                                         \
    int always = thr64 > 0xFFFFFFFFull;                                                     \
    uint32_t thr = always ? 0xFFFFFFFFu : (uint32_t)thr64;                                  \
    if (kind == 0) {                                                                        \
        scratch = (U *)malloc(sizeof(U) * (size_t)(cols + 64));                             \
        if (!scratch) return -1;                                                            \
    }                                                                                       \
    for (int64_t o = 0; o < rows; o++) {                                                    \
        const F *wr = w + o * cols;                                                         \
        U t = kind == 0 ? ROWSEL((const U *)wr, cols, k, tau + o, delta + o, scratch)       \
                        : tau[o];                                                           \
        mask_row_##SUFFIX##_##DNAME(wr, cols, t, draws + o * cols, thr, (F)alpha, always,   \
                                    keep ? keep + o * cols : 0,                             \
                                    masked ? masked + o * cols : 0,                         \
                                    factor ? factor + o * cols : 0);                        \
    }                                                                                       \
    free(scratch);                                                                          \
    return 0;                                                                               \
}

#define BITS_DRAWN ((uint32_t)d[i] < thr)
#define M32 0x7FFFFFFFu
#define M64 0x7FFFFFFFFFFFFFFFull
#define FLOAT_DRAWN (d[i] < alpha)
DEFINE_KERNELS(float, uint32_t, M32, row_select_u32, f32, uint8_t, BITS_DRAWN, u8)
DEFINE_KERNELS(float, uint32_t, M32, row_select_u32, f32, uint16_t, BITS_DRAWN, u16)
DEFINE_KERNELS(float, uint32_t, M32, row_select_u32, f32, uint32_t, BITS_DRAWN, u32)
DEFINE_KERNELS(float, uint32_t, M32, row_select_u32, f32, float, FLOAT_DRAWN, flt)
DEFINE_KERNELS(double, uint64_t, M64, row_select_u64, f64, uint8_t, BITS_DRAWN, u8)
DEFINE_KERNELS(double, uint64_t, M64, row_select_u64, f64, uint16_t, BITS_DRAWN, u16)
DEFINE_KERNELS(double, uint64_t, M64, row_select_u64, f64, uint32_t, BITS_DRAWN, u32)
DEFINE_KERNELS(double, uint64_t, M64, row_select_u64, f64, double, FLOAT_DRAWN, flt)

/* ---- gradient of the masked weight: g *= keep ---- */
void td_mask_grad_f32(float *restrict g, const uint8_t *restrict keep, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = keep[i] ? g[i] : g[i] * 0.0f;
}
void td_mask_grad_f64(double *restrict g, const uint8_t *restrict keep, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = keep[i] ? g[i] : g[i] * 0.0;
}

/* ---- torch's CPU generator (at::mt19937: state words, left, next), replayed ----
   outputs: while --left != 0 the next word is st[next++] tempered, else the state is
   regenerated (left = 624, next = 0) first */
#define MT_N 624
#define MT_M 397
static inline uint32_t mt_twist1(uint32_t u, uint32_t v) {
    return (((u & 0x80000000u) | (v & 0x7FFFFFFFu)) >> 1) ^ ((0u - (v & 1u)) & 0x9908B0DFu);
}
static void mt_regen(uint32_t *restrict p) {
#pragma GCC ivdep
    for (int j = 0; j < MT_N - MT_M; j++) p[j] = p[j + MT_M] ^ mt_twist1(p[j], p[j + 1]);
#pragma GCC ivdep
    for (int j = MT_N - MT_M; j < MT_N - 1; j++)
        p[j] = p[j + MT_M - MT_N] ^ mt_twist1(p[j], p[j + 1]);
    p[MT_N - 1] = p[MT_M - 1] ^ mt_twist1(p[MT_N - 1], p[0]);
}
static inline uint32_t mt_temper(uint32_t y) {
    y ^= y >> 11;
    y ^= (y << 7) & 0x9D2C5680u;
    y ^= (y << 15) & 0xEFC60000u;
    y ^= y >> 18;
    return y;
}
void td_mt_u32(uint32_t *restrict st, int32_t *left, uint64_t *next, uint32_t *restrict out,
               int64_t n) {
    int64_t i = 0;
    while (i < n) {
        int64_t avail = (int64_t)*left - 1;
        if (avail <= 0) { mt_regen(st); *left = MT_N + 1; *next = 0; avail = MT_N; }
        int64_t take = avail < n - i ? avail : n - i;
        const uint32_t *src = st + *next;
        for (int64_t t = 0; t < take; t++) out[i + t] = mt_temper(src[t]);
        *next += (uint64_t)take; *left -= (int32_t)take; i += take;
    }
}
/* Tensor.random_(-2**63, None): random64() = first << 32 | second, per int64 */
void td_mt_words(uint32_t *st, int32_t *left, uint64_t *next, uint64_t *out, int64_t n) {
    td_mt_u32(st, left, next, (uint32_t *)out, 2 * n);
    uint32_t *u = (uint32_t *)out;
    for (int64_t i = 0; i < n; i++) out[i] = ((uint64_t)u[2 * i] << 32) | u[2 * i + 1];
}
/* torch.rand: float32 (random() & (2^24 - 1)) * 2^-24, float64 (random64() & (2^53 - 1)) * 2^-53 */
void td_mt_rand_f32(uint32_t *st, int32_t *left, uint64_t *next, float *out, int64_t n) {
    td_mt_u32(st, left, next, (uint32_t *)out, n);
    uint32_t *u = (uint32_t *)out;
    for (int64_t i = 0; i < n; i++) out[i] = (float)(u[i] & 0xFFFFFFu) * 0x1p-24f;
}
void td_mt_rand_f64(uint32_t *st, int32_t *left, uint64_t *next, double *out, int64_t n) {
    td_mt_words(st, left, next, (uint64_t *)out, n);
    uint64_t *u = (uint64_t *)out;
    for (int64_t i = 0; i < n; i++) out[i] = (double)(u[i] & 0x1FFFFFFFFFFFFFull) * 0x1p-53;
}
int td_version(void) { return VERSION; }
"""

_FLAGS = ["-O3", "-march=native", "-std=c99", "-fPIC", "-shared", "-fno-fast-math"]
_FLOAT = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
_DRAW = {
    np.dtype(np.uint8): "u8",
    np.dtype(np.uint16): "u16",
    np.dtype(np.uint32): "u32",
    np.dtype(np.float32): "flt",
    np.dtype(np.float64): "flt",
}
_BITS = {"f32": np.uint32, "f64": np.uint64}


def disabled() -> bool:
    """Whether ``TD_ANALYSIS_FUSED_KERNELS`` switches the compiled kernels off (0/off/no/false)."""
    return os.environ.get(ENV_SWITCH, "").strip().lower() in ("0", "off", "no", "false")


def kernel_cache_dir() -> Path:
    """``$TD_ANALYSIS_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/td_analysis/kernels``
    (``XDG_CACHE_HOME`` defaults to ``~/.cache``)."""
    if os.environ.get("TD_ANALYSIS_KERNEL_CACHE"):
        return Path(os.environ["TD_ANALYSIS_KERNEL_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "td_analysis" / "kernels"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name.split()[0]):
            return name
    return None


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor()


def _build(cc: str, flags: list[str]) -> Path:
    source = _SOURCE.replace("VERSION", str(_VERSION))
    version = subprocess.run(
        [*cc.split(), "--version"], capture_output=True, text=True, timeout=60
    ).stdout
    key = hashlib.sha256(
        "\0".join([source, " ".join(flags), version, platform.machine(), _cpu_signature()]).encode()
    ).hexdigest()[:20]
    target = kernel_cache_dir() / f"td_kernels_{key}{'.dll' if os.name == 'nt' else '.so'}"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, atomic_path(target, suffix=".so") as tmp_so:
        src = Path(tmp) / "td_kernels.c"
        src.write_text(source)
        proc = subprocess.run(
            [*cc.split(), *flags, "-o", str(tmp_so), str(src)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines()
            raise RuntimeError(f"{cc} failed: {lines[-1] if lines else proc.returncode}")
    return target


@functools.cache
def _library() -> ctypes.CDLL | None:
    cc = _compiler()
    if cc is None or sys.platform == "win32":
        return None
    errors = []
    for flags in (_FLAGS, [f for f in _FLAGS if f != "-march=native"]):
        try:
            lib = ctypes.CDLL(str(_build(cc, flags)))
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            errors.append(str(exc))
            continue
        if lib.td_version() != _VERSION:
            continue
        return _declare(lib)
    warnings.warn(
        "td_analysis: could not compile the fused targeted-dropout kernels "
        f"({errors[-1] if errors else 'unknown error'}); using the numpy path (same results)",
        RuntimeWarning,
        stacklevel=3,
    )
    return None


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    p, i64, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for f in ("f32", "f64"):
        for d in ("u8", "u16", "u32", "flt"):
            fn = getattr(lib, f"td_keep_{f}_{d}")
            fn.argtypes = [p, i64, i64, i64, c_int, p, p, p, ctypes.c_uint64, ctypes.c_double]
            fn.argtypes += [p, p, p]
            fn.restype = c_int
        th = getattr(lib, f"td_thresholds_{f}")
        th.argtypes, th.restype = [p, i64, i64, i64, p, p], c_int
        mg = getattr(lib, f"td_mask_grad_{f}")
        mg.argtypes, mg.restype = [p, p, i64], None
    for name in ("td_mt_u32", "td_mt_words", "td_mt_rand_f32", "td_mt_rand_f64"):
        getattr(lib, name).argtypes, getattr(lib, name).restype = [p, p, p, p, i64], None
    return lib


def available() -> bool:
    """Whether the compiled kernels can be used (compiled now on first call, then cached)."""
    return not disabled() and _library() is not None


def _ptr(a: np.ndarray | Tensor | None) -> int | None:
    if a is None:
        return None
    return a.data_ptr() if isinstance(a, Tensor) else a.__array_interface__["data"][0]


def _state(state: dict | None, rows: int, ftype: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-row hints ``(τ, δ)`` of the incremental selection kept in ``state`` (δ = 0: none)."""
    u = _BITS[ftype]
    if state is None:
        return np.zeros(rows, u), np.zeros(rows, u)
    if state.get("tau") is None or state["tau"].shape != (rows,) or state["tau"].dtype != u:
        state["tau"], state["delta"] = np.zeros(rows, u), np.zeros(rows, u)
    return state["tau"], state["delta"]


def _as_2d(w: np.ndarray) -> np.ndarray:
    if w.ndim != 2 or not w.flags.c_contiguous or w.dtype not in _FLOAT:
        raise ValueError(f"expected a C-contiguous float32/float64 matrix, got {w.dtype} {w.shape}")
    return w


def row_thresholds(w: np.ndarray, k: int, state: dict | None = None) -> np.ndarray:
    """``τ_o = sort(|W_o,:|)[k]`` for every row, as the magnitudes' IEEE-754 bits (uint32 for
    float32, uint64 for float64; ``.view`` them as floats).  ``state`` (a dict) carries the
    previous call's thresholds as hints to the next: the result is exact either way."""
    w = _as_2d(w)
    rows, cols = w.shape
    if not 0 <= k < cols:
        raise ValueError(f"k must be in [0, {cols}), got {k}")
    ftype = _FLOAT[w.dtype]
    tau, delta = _state(state, rows, ftype)
    lib = _library()
    if lib is None:
        raise RuntimeError("the compiled kernels are not available (no C compiler)")
    if getattr(lib, f"td_thresholds_{ftype}")(_ptr(w), rows, cols, k, _ptr(tau), _ptr(delta)):
        raise MemoryError("td_thresholds: out of memory")
    return tau.copy()


def targeted_keep(
    w: np.ndarray,
    *,
    k: int,
    draws: np.ndarray,
    threshold: int | np.integer | None = None,
    alpha: float = 0.0,
    targeted_rows: np.ndarray | None = None,
    state: dict | None = None,
    keep: np.ndarray | None = None,
    masked: np.ndarray | Tensor | None = None,
    factor: np.ndarray | None = None,
) -> None:
    """One fused pass: ``keep = ¬(targeted ∧ drawn)`` (uint8), ``masked = W ⊙ keep`` and
    ``factor = keep`` in W's float type, each written where given.

    Targeted: ``|W_oi| < τ_o`` with ``τ_o = sort(|W_o,:|)[k]`` (weight level), or whole rows
    where ``targeted_rows`` (bool, one per row) is given (unit level; ``k`` unused).  Drawn:
    ``draws < threshold`` for unsigned-integer draws (``"bits"``), ``draws < α`` (α rounded to
    the draws' float type) for float draws (``"uniform"``).  ``draws`` has W's shape.
    """
    w = _as_2d(w)
    rows, cols = w.shape
    ftype = _FLOAT[w.dtype]
    dname = _DRAW.get(draws.dtype)
    if dname is None or draws.shape != w.shape or not draws.flags.c_contiguous:
        raise ValueError(f"draws must be a C-contiguous {w.shape} uint8/16/32 or float array")
    if dname == "flt" and draws.dtype != w.dtype:
        raise ValueError("uniform draws must have the weight's float type")
    for name, out, dtype in (("keep", keep, np.uint8), ("factor", factor, w.dtype)):
        if out is not None and (out.shape != w.shape or out.dtype != dtype):
            raise ValueError(f"{name} must be a {np.dtype(dtype)} array of shape {w.shape}")
        if out is not None and not out.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous")
    if masked is not None:
        if isinstance(masked, Tensor):
            ok = masked.device.type == "cpu" and masked.is_contiguous()
            ok = ok and masked.is_floating_point() and masked.element_size() == w.itemsize
        else:
            ok = masked.flags.c_contiguous and masked.dtype == w.dtype
        ok = ok and tuple(masked.shape) == w.shape
        if not ok:
            raise ValueError(f"masked must be a contiguous CPU {w.dtype} array of shape {w.shape}")
    if targeted_rows is None:
        if not 0 <= k < cols:
            raise ValueError(f"k must be in [0, {cols}), got {k}")
        kind = 0
        tau, delta = _state(state, rows, ftype)
    else:
        kind = 1
        u = _BITS[ftype]
        tau = np.where(np.asarray(targeted_rows, dtype=bool).reshape(rows), u(np.iinfo(u).max), 0)
        tau, delta = tau.astype(u), tau.astype(u)
    if dname == "flt":
        thr = 0
    else:
        thr = int(threshold)
        if thr < 0:
            raise ValueError(f"threshold must be non-negative, got {thr}")
    fn = getattr(_library(), f"td_keep_{ftype}_{dname}")
    rc = fn(
        _ptr(w),
        rows,
        cols,
        int(k),
        kind,
        _ptr(tau),
        _ptr(delta),
        _ptr(draws),
        min(thr, 2**64 - 1),
        float(alpha),
        _ptr(keep),
        _ptr(masked),
        _ptr(factor),
    )
    if rc:
        raise MemoryError("td_keep: out of memory")


class KeepPlan:
    """:func:`targeted_keep` bound to one layer's persistent buffers, validated once.

    A training step calls the kernel for every targeted layer; :func:`targeted_keep` checks its
    arguments each time (~10 µs, a few percent of the toy network's step).  A plan checks the
    weight, draws, keep and masked buffers once (their memory must stay where it is: the
    parameter is updated in place, the buffers are reused) and then only passes pointers.
    """

    def __init__(
        self, w: Tensor, draws: np.ndarray, keep: np.ndarray, masked: Tensor, *, unit: bool
    ) -> None:
        a = _as_2d(w.detach().numpy())
        targeted_keep(  # validates every argument (and computes nothing: k = 0, no outputs)
            a, k=0, draws=draws, threshold=0, keep=keep, masked=masked, targeted_rows=None
        )
        self.rows, self.cols = a.shape
        self.ftype = _FLOAT[a.dtype]
        self.fn = getattr(_library(), f"td_keep_{self.ftype}_{_DRAW[draws.dtype]}")
        self.unit = unit
        self.state: dict = {}
        self.tau, self.delta = _state(self.state, self.rows, self.ftype)
        self.ptrs = (_ptr(a), _ptr(draws), _ptr(keep), _ptr(masked))
        self.key = (w.data_ptr(), _ptr(draws), _ptr(keep), masked.data_ptr())
        self.top = _BITS[self.ftype](np.iinfo(_BITS[self.ftype]).max)

    def matches(self, w: Tensor, draws: np.ndarray, keep: np.ndarray, masked: Tensor) -> bool:
        """Whether the plan's memory is still these tensors' (same shapes by construction)."""
        return self.key == (w.data_ptr(), _ptr(draws), _ptr(keep), masked.data_ptr())

    def __call__(
        self, k: int, threshold: int, alpha: float, targeted_rows: np.ndarray | None = None
    ) -> None:
        """``keep`` and ``masked`` for this step (weight level: ``k``; unit level:
        ``targeted_rows``), as :func:`targeted_keep`."""
        if self.unit:
            np.multiply(targeted_rows, self.top, out=self.tau, casting="unsafe")
        elif not 0 <= k < self.cols:
            raise ValueError(f"k must be in [0, {self.cols}), got {k}")
        w, d, kp, m = self.ptrs
        rc = self.fn(
            w, self.rows, self.cols, k, int(self.unit), self.tau.ctypes.data,
            self.delta.ctypes.data, d, min(int(threshold), 2**64 - 1), alpha, kp, m, None,
        )  # fmt: skip
        if rc:
            raise MemoryError("td_keep: out of memory")


def _replay(generator: torch.Generator, fn: str, out: Tensor) -> None:
    """Fill ``out`` with ``fn``'s outputs from ``generator``'s MT19937 state and advance it.

    The state is the one :meth:`torch.Generator.get_state` returns (the legacy layout: seed,
    ``left`` int32 at byte 8, ``next`` uint64 at 16, 624 state words as uint64 from 24)."""
    state = generator.get_state()
    raw = state.numpy()
    left = raw[8:12].view(np.int32).copy()
    nxt = raw[16:24].view(np.uint64).copy()
    words = raw[24 : 24 + 624 * 8].view(np.uint64).astype(np.uint32)
    getattr(_library(), fn)(_ptr(words), _ptr(left), _ptr(nxt), out.data_ptr(), out.numel())
    raw[24 : 24 + 624 * 8].view(np.uint64)[:] = words
    raw[8:12].view(np.int32)[:] = left
    raw[16:24].view(np.uint64)[:] = nxt
    generator.set_state(state)


@functools.cache
def _replay_verified() -> bool:
    """Whether the replay gives torch's own draws here (checked once per process against this
    torch: int64 ``random_``, float32 and float64 ``rand`` across state regenerations)."""
    try:
        a = torch.Generator().manual_seed(20_231_202)
        torch.rand(5, generator=a)  # an odd offset into the block
        b = torch.Generator()
        b.set_state(a.get_state())
        checks = [
            ("td_mt_words", torch.empty(1001, dtype=torch.int64), lambda t, g: t.random_(
                -(2**63), None, generator=g)),
            ("td_mt_rand_f32", torch.empty(40_000), lambda t, g: torch.rand(
                t.shape, generator=g, out=t)),
            ("td_mt_rand_f64", torch.empty(777, dtype=torch.float64), lambda t, g: torch.rand(
                t.shape, generator=g, dtype=t.dtype, out=t)),
        ]  # fmt: skip
        for fn, buf, torch_way in checks:
            mine = buf.clone()
            torch_way(buf, a)
            _replay(b, fn, mine)
            if not (torch.equal(mine, buf) and torch.equal(a.get_state(), b.get_state())):
                return False
        return True
    except (RuntimeError, ValueError, AttributeError, TypeError):
        return False


#: below this many draws torch's own call is cheaper than reading and writing the state
_REPLAY_MIN = 2048


def _can_replay(generator: torch.Generator | None, out: Tensor) -> bool:
    return (
        out.numel() >= _REPLAY_MIN
        and generator is not None
        and generator.device.type == "cpu"
        and out.device.type == "cpu"
        and out.is_contiguous()
        and available()
        and _replay_verified()
    )


def random_words_(out: Tensor, generator: torch.Generator | None) -> Tensor:
    """``out.random_(-2**63, None, generator=generator)`` (int64, full range): the same numbers
    and the same generator state after, ~6× faster (torch's MT19937 replayed in C, vectorised;
    verified against torch once per process, else torch itself does it)."""
    if out.dtype == torch.int64 and _can_replay(generator, out):
        _replay(generator, "td_mt_words", out)
        return out
    return out.random_(-(2**63), None, generator=generator)


def rand_(out: Tensor, generator: torch.Generator | None) -> Tensor:
    """``torch.rand(out.shape, generator=generator, dtype=out.dtype, out=out)``: the same
    numbers and generator state after (as :func:`random_words_`)."""
    fn = {torch.float32: "td_mt_rand_f32", torch.float64: "td_mt_rand_f64"}.get(out.dtype)
    if fn is not None and _can_replay(generator, out):
        _replay(generator, fn, out)
        return out
    return torch.rand(out.shape, generator=generator, dtype=out.dtype, out=out)


def mask_gradient_(grad: Tensor, keep: Tensor) -> Tensor:
    """``grad ⊙= keep`` in place (``keep`` uint8 0/1 of grad's shape; CPU, contiguous)."""
    if grad.dtype not in (torch.float32, torch.float64) or not grad.is_contiguous():
        raise ValueError("grad must be a contiguous float32/float64 CPU tensor")
    if keep.dtype != torch.uint8 or keep.shape != grad.shape or not keep.is_contiguous():
        raise ValueError(f"keep must be a contiguous uint8 tensor of shape {tuple(grad.shape)}")
    fn = _library().td_mask_grad_f32 if grad.dtype == torch.float32 else _library().td_mask_grad_f64
    fn(grad.data_ptr(), keep.data_ptr(), grad.numel())
    return grad
