"""Runs reproduce bit for bit, also on "another machine".

The quick pipeline runs twice in fresh processes with separate checkpoint and cache folders: once
as is, once emulating an AVX2 machine (MKL dispatching its AVX2 kernels,
``MKL_ENABLE_INSTRUCTIONS=AVX2``); both with OpenMP/MKL thread counts 2, set explicitly (the
user's ``OMP_NUM_THREADS`` would change the summation order of one of them). Without the pinned
kernels of :mod:`td_analysis.utils.reproducibility`, the second run's weights differ from the
first in the last bits after one epoch (measured: ``BENCHMARKS.md``). Every number of
``table1.json`` (timings aside), every pixel of every PNG and the text of ``table1.md`` must
agree exactly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from td_analysis.utils.reproducibility import PINNED_KERNELS, has_avx2, pin_cpu_kernels

ARGV = ["reproduce", "--quick", "--no-curves", "--seeds", "0", "--epochs", "1"]
ARGV += ["--eval-limit", "500", "--quiet"]
# both processes pin their thread counts: a reduction split over 1 or 2 threads sums in another
# order (0.3300092385589516 vs 0.33000923855895165 with OMP_NUM_THREADS=1 in the user's shell);
# the claim is "same settings, another CPU", so the other machine differs in its kernels only
THREADS = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
OTHER_MACHINE = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", **THREADS}


def _without_timings(obj):
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def _start(
    folder: Path, data_root: Path, extra: dict[str, str], argv: list[str] | None = None
) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TD_ANALYSIS_", "TQDM_"))}
    for name in (*PINNED_KERNELS, "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR"):
        env.pop(name, None)  # what a user's shell has: the package pins the kernels itself
    env.update({"TD_ANALYSIS_DATA": str(data_root), **THREADS, **extra})
    argv = [*(argv or ARGV), "--out", str(folder / "out"), "--runs", str(folder / "runs")]
    argv += ["--cache-dir", str(folder / "cache")]
    return subprocess.Popen(
        [sys.executable, "-m", "td_analysis.cli", *argv],
        env=env,
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
@pytest.mark.skipif(not has_avx2(), reason="the pinned kernels need an x86-64 CPU with AVX2")
def test_quick_reproduce_is_bit_identical_on_another_machine(tmp_path: Path, data_root) -> None:
    import matplotlib.image as mpimg

    runs = {"here": tmp_path / "here", "avx2, 2 threads": tmp_path / "other"}
    procs = {}
    for (name, folder), extra in zip(runs.items(), ({}, OTHER_MACHINE), strict=True):
        folder.mkdir()
        procs[name] = _start(folder, data_root, extra)
    for name, proc in procs.items():  # the two runs share the machine's two cores
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"{name}: {err.decode()[-2000:]}"
    a, b = (folder / "out" for folder in runs.values())
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert {"table1.json", "table1.md", "figure1.png"} <= set(names)
    ja = json.loads((a / "table1.json").read_text())
    jb = json.loads((b / "table1.json").read_text())
    assert _without_timings(ja) == _without_timings(jb)  # float equality: every bit
    assert (a / "table1.md").read_text() == (b / "table1.md").read_text()
    for name in names:
        if name.endswith(".png"):  # PNG files may embed metadata: compare the pixels
            pa, pb = mpimg.imread(a / name), mpimg.imread(b / name)
            assert pa.shape == pb.shape and np.array_equal(pa, pb), name
    # the checkpoints themselves, weight for weight
    import torch

    ca = sorted((runs["here"] / "runs").glob("*.pt"))
    cb = sorted((runs["avx2, 2 threads"] / "runs").glob("*.pt"))
    assert [p.name for p in ca] == [p.name for p in cb] and len(ca) == 2
    for pa, pb in zip(ca, cb, strict=True):
        sa = torch.load(pa, weights_only=True)["state_dict"]
        sb = torch.load(pb, weights_only=True)["state_dict"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa), pa.name


def _fresh(code: str, **extra: str) -> list[str]:
    """The words of the last line ``code`` prints in a fresh interpreter whose environment has
    none of :data:`PINNED_KERNELS` (but ``extra``)."""
    env = {k: v for k, v in os.environ.items() if k not in PINNED_KERNELS}
    env.pop("TD_ANALYSIS_NATIVE_KERNELS", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1].split()


#: prints the two pinned variables and the capability torch uses
REPORT = (
    "import os, torch\n"
    "print(os.environ.get('ATEN_CPU_CAPABILITY'), os.environ.get('MKL_CBWR'),"
    " torch.backends.cpu.get_cpu_capability())"
)


def test_importing_the_package_sets_no_environment_variable() -> None:
    """Issue 20: ``import td_analysis`` (and its light command-line package) has no side effect
    on the environment; the kernels are pinned where runs start."""
    code = (
        "import os\n"
        "before = dict(os.environ)\n"
        "import td_analysis, td_analysis.cli, td_analysis.utils.reproducibility\n"
        "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())\n"
        "print('unchanged', callable(td_analysis.pin_cpu_kernels))"
    )
    assert _fresh(code) == ["unchanged", "True"]
    # nor does it pin anything through the back door: torch runs with the machine's own kernels
    assert _fresh("import td_analysis\n" + REPORT)[:2] == ["None", "None"]


def test_pinning_sets_the_environment_only_before_torch(monkeypatch) -> None:
    """In this process torch is imported already: nothing is changed; in a fresh one the two
    variables are set (unless the user set them, or opted out)."""
    for name in PINNED_KERNELS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("TD_ANALYSIS_NATIVE_KERNELS", raising=False)
    assert "torch" in sys.modules
    pin_cpu_kernels()
    assert all(name not in os.environ for name in PINNED_KERNELS)
    code = "import td_analysis\ntd_analysis.pin_cpu_kernels()\n" + REPORT
    if has_avx2():
        assert _fresh(code) == ["avx2", "AVX2", "AVX2"]
        assert _fresh(code, MKL_CBWR="COMPATIBLE")[:2] == ["avx2", "COMPATIBLE"]  # user's choice
    assert _fresh(code, TD_ANALYSIS_NATIVE_KERNELS="1")[:2] == ["None", "None"]


#: the entry points that start runs, each asked for --help in a fresh interpreter (torch is
#: imported after it returns: by then the kernels must be pinned)
ENTRY_POINTS = {
    "td-analysis": "from td_analysis.cli import main\nmain(['--help'])",
    "python -m td_analysis.training_length": "import runpy\n"
    "sys.argv = ['x', '--help']\n"
    "runpy.run_module('td_analysis.training_length', run_name='__main__', alter_sys=True)",
    "python -m td_analysis.protocol_study": "import runpy\n"
    "sys.argv = ['x', '--help']\n"
    "runpy.run_module('td_analysis.protocol_study', run_name='__main__', alter_sys=True)",
}


@pytest.mark.skipif(not has_avx2(), reason="the pinned kernels need an x86-64 CPU with AVX2")
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_the_entry_points_pin_the_kernels(entry: str) -> None:
    body = "\n".join("    " + line for line in ENTRY_POINTS[entry].splitlines())
    code = (
        "import contextlib, io, sys\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "  try:\n"
        f"{body}\n"
        "  except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n" + REPORT
    )
    assert _fresh(code) == ["avx2", "AVX2", "AVX2"]
    assert _fresh(code, TD_ANALYSIS_NATIVE_KERNELS="1")[:2] == ["None", "None"]


@pytest.mark.skipif(not has_avx2(), reason="the pinned kernels need an x86-64 CPU with AVX2")
def test_spawned_workers_inherit_the_pinned_kernels() -> None:
    """A spawned worker imports torch before any code of ours runs in it: the pinning reaches it
    through the environment of the process that pinned (the CLI's), whose pools start it."""
    code = (
        "import os, td_analysis\n"
        "td_analysis.pin_cpu_kernels()\n"
        "import torch\n"
        "from td_analysis.utils.progress import stoppable_pool\n"
        "if __name__ == '__main__':\n"
        "    with stoppable_pool(1) as pool:\n"
        "        cap = pool.submit(torch.backends.cpu.get_cpu_capability).result()\n"
        "        cbwr = pool.submit(os.getenv, 'MKL_CBWR').result()\n"
        "    print(cap, cbwr)\n"
    )
    assert _fresh(code) == ["AVX2", "AVX2"]


# Two kernel configurations for which no bits are promised: the package's pinning switched off
# (the machine's native MKL/oneDNN kernels), once with one thread and the fused targeted-dropout
# kernels, once with two threads and torch's own ops; what must agree is what the report
# concludes, not its last digits.
NATIVE_1 = {"TD_ANALYSIS_NATIVE_KERNELS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
NATIVE_2 = {
    "TD_ANALYSIS_NATIVE_KERNELS": "1",
    "TD_ANALYSIS_FUSED_KERNELS": "0",
    "OMP_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
}
VERDICT = re.compile(r"\b(more|less|larger|smaller)\b|no difference within the seeds' spread")
SPAN = re.compile(r"95% t interval ([-+][\d.]+) to ([-+][\d.]+)")


def _conclusions(md: str) -> list[tuple[str, str, float]]:
    """``(sentence with its numbers blanked, verdict, distance of the interval from 0 in units
    of its half-width)`` for every sentence of ``table1.md``."""
    out = []
    for line in md.splitlines():
        if not (line.startswith("- ") and "t interval" in line):
            continue
        lo, hi = (float(v) for v in SPAN.search(line).groups())
        half = max((hi - lo) / 2, 1e-12)
        margin = max(lo, -hi) / half  # > 0: the interval excludes zero by this much
        verdict = VERDICT.search(line).group(0)
        out.append((re.sub(r"[-+]?\d[\d.,]*", "#", line), verdict, margin))
    return out


@pytest.mark.slow
def test_quick_reproduce_draws_the_same_conclusions_under_other_kernels(
    tmp_path: Path, data_root
) -> None:
    """Two seeds, so that the report states paired differences; every sentence must reach the
    same verdict under both configurations, except where an interval touches zero (within a
    quarter of its half-width in either run): there the seeds' spread, not the kernels, decides."""
    argv = ["reproduce", "--quick", "--no-curves", "--seeds", "0,1", "--epochs", "2"]
    argv += ["--eval-limit", "1000", "--quiet"]
    folders = {"native, 1 thread": tmp_path / "a", "native, 2 threads, torch ops": tmp_path / "b"}
    procs = {}
    for (name, folder), extra in zip(folders.items(), (NATIVE_1, NATIVE_2), strict=True):
        folder.mkdir()
        procs[name] = _start(folder, data_root, extra, argv=argv)
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=1200)
        assert proc.returncode == 0, f"{name}: {err.decode()[-2000:]}"
    a, b = (_conclusions((f / "out" / "table1.md").read_text()) for f in folders.values())
    assert a and [s for s, _, _ in a] == [s for s, _, _ in b]
    for (sentence, va, ma), (_, vb, mb) in zip(a, b, strict=True):
        if min(abs(ma), abs(mb)) < 0.25:
            continue  # the interval's end is within a quarter half-width of zero
        assert va == vb, sentence
