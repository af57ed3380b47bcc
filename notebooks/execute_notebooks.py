"""Execute the notebooks in place and strip widget state, as committed (outputs of a full run).

    python notebooks/execute_notebooks.py            # all, full setting, in order, in place
    python notebooks/execute_notebooks.py --quick 02_pruning_error_estimates.ipynb

The full setting writes the executed notebooks back in place (what is committed). ``--quick``
writes them to ``runs/quick/notebooks/`` instead (``--out-dir`` chooses another folder), so a
quick smoke run never replaces the committed full-run outputs.

Notebook 1 trains the networks that notebooks 2 and 3 load, so run them in order. The kernel
starts in this folder; the runs, cache and data folders come from the usual environment
variables (TD_ANALYSIS_RUNS, TD_ANALYSIS_CACHE, TD_ANALYSIS_DATA), see each parameters cell.
Widget state is not stored and the outputs of cells tagged ``ui`` (the ipywidgets controls,
which need a live kernel) are cleared, so the files stay small and render statically.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from ipykernel.kernelspec import write_kernel_spec

from td_analysis.utils.nbexec import PollingNotebookClient

HERE = Path(__file__).resolve().parent
NOTEBOOKS = sorted(p.name for p in HERE.glob("[0-9][0-9]_*.ipynb"))
QUICK_OUT = HERE.parent / "runs" / "quick" / "notebooks"  # --quick's default (git-ignored)


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop widget state, timing metadata and the outputs of ``ui`` cells."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code" and "ui" in cell.metadata.get("tags", []):
            cell.outputs = []
    return nb


def execute(
    path: Path, *, quick: bool = False, timeout: int = 3600, out: Path | None = None
) -> float:
    """Run ``path`` top to bottom (the kernel starts in its folder) and write the executed,
    stripped notebook to ``out`` (default: ``path`` itself); returns the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "TD_ANALYSIS_QUICK": "1" if quick else "0"}
    # the kernel imports torch before td_analysis: pin the CPU kernels through its environment
    # (td_analysis.utils.reproducibility), so the notebooks' numbers match `td-analysis reproduce`
    from td_analysis.utils.reproducibility import PINNED_KERNELS, pin_cpu_kernels

    if pin_cpu_kernels():
        for name, value in PINNED_KERNELS.items():
            env.setdefault(name, value)
    for var in ("TD_ANALYSIS_DATA", "TD_ANALYSIS_RUNS", "TD_ANALYSIS_CACHE"):
        if env.get(var):  # relative to where this was started, not to the kernel's notebooks/
            env[var] = os.path.abspath(env[var])
    client = PollingNotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
    )
    # widget state is recorded while running (nbclient's output-widget hook needs it), then
    # dropped by strip()
    t0 = time.perf_counter()
    client.execute(env=env)
    seconds = time.perf_counter() - t0
    target = Path(out) if out is not None else path
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")  # never a half-written notebook
    nbformat.write(strip(nb), tmp)
    os.replace(tmp, target)
    return seconds


def use_this_python() -> None:
    """Make kernel "python3" this interpreter (JUPYTER_PATH is searched before ~/.local)."""
    path = Path(tempfile.mkdtemp(prefix="td-analysis-jupyter-"))
    write_kernel_spec(path / "kernels" / "python3")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(path), os.environ.get("JUPYTER_PATH", "")])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", default=NOTEBOOKS, help="default: all, in order")
    parser.add_argument("--quick", action="store_true", help="the small setting (as the tests)")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help=f"where the executed notebooks go (default: in place; with --quick: {QUICK_OUT})",
    )
    args = parser.parse_args(argv)
    out_dir = args.out_dir or (QUICK_OUT if args.quick else None)
    if out_dir is not None and out_dir.resolve() == HERE and args.quick:
        parser.error("--quick output would replace the committed full-run notebooks")
    use_this_python()
    for name in args.notebooks:
        path = HERE / Path(name).name
        if not path.is_file():
            parser.error(f"no notebook {path.name} in {HERE}")
        target = path if out_dir is None else out_dir / path.name
        seconds = execute(path, quick=args.quick, out=target)
        size = target.stat().st_size / 1e6
        print(f"{target}: {seconds:.0f} s, {size:.2f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
