"""The explorer's first page: seconds from the server being up to the first heatmap (issue 23).

Starts the explorer of ``td-analysis explore`` (notebook 03 in Voilà, through
:func:`td_analysis.explore.serve`) on a free port of 127.0.0.1, loads its page in a headless
Chromium (Debian's ``chromium`` and ``chromium-driver``, Selenium) the moment the port opens,
and times

* **first heatmap**: from ``driver.get`` to the first figure shown on the page (an ``img`` in
  Voilà's rendered cells, visible: Voilà reveals the page once its kernel has run every cell);
* **complete**: until the page has no spinner left and shows the first view's caption.

Variants, all in this process, interleaved, on the same trained networks:

* ``explorer``: the command as shipped: preheated kernel, ``TD_ANALYSIS_EXPLORER=1`` (static
  report figures skipped, later views computed when opened), with an empty (cold) cache folder;
* ``explorer, warm cache``: the same, the cache filled by the cold run before it;
* ``whole notebook (before)``: the peer, the page as it was before issue 23: no preheated
  kernel, the notebook run in full (every static figure, every view drawn), warm cache.

The networks are trained first if missing (not timed). Each run starts a fresh server and stops
it with SIGINT. Usage (from the repository root; prints a Markdown table)::

    TD_ANALYSIS_DATA=/path/to/data python benchmarks/explorer_first_page.py --repeats 3
    TD_ANALYSIS_DATA=... python benchmarks/explorer_first_page.py --quick --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# the server: the body of `td-analysis explore` after its checks, with the variant's options
LAUNCH = """
import json, sys
from pathlib import Path
from td_analysis.explore import explorer_folders, find_notebook, kernel_environment, serve
a = json.loads(sys.argv[1])
nb = find_notebook(None)
folders = explorer_folders(nb, runs=a["runs"], cache=a["cache"], data=a["data"])
env = kernel_environment(folders, a["quick"], explorer=a["explorer"])
sys.exit(serve(nb, port=a["port"], env=env, open_browser=False, preheat=a["preheat"]))
"""

# first visible figure among Voilà's rendered cells (hidden while the notebook runs)
FIRST_FIGURE_JS = """
const cells = document.getElementById('rendered_cells');
if (!cells || cells.offsetParent === null) return false;
return Array.from(cells.querySelectorAll('img')).some(
    im => im.offsetParent !== null && im.naturalWidth > 0);
"""
COMPLETE_JS = """
const t = document.querySelector('.widget-output .td-figure-title');
const spinner = document.getElementById('loading');
return !!t && (!spinner || spinner.offsetParent === null);
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def chrome_driver():
    """Headless Chromium through Selenium (one-line error if missing)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise SystemExit("explorer_first_page.py: error: pip install selenium") from None
    binary = next(
        (
            shutil.which(n)
            for n in ("chromium", "chromium-browser", "google-chrome")
            if shutil.which(n)
        ),
        None,
    )
    chromedriver = shutil.which("chromedriver")
    if not binary or not chromedriver:
        raise SystemExit(
            "explorer_first_page.py: error: Chromium or chromedriver is not installed "
            "(apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    profile = tempfile.mkdtemp(prefix="td-analysis-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    options.page_load_strategy = "none"  # Voilà streams: time the page ourselves
    return webdriver.Chrome(service=Service(chromedriver), options=options), profile


def time_page(driver, args: dict, timeout: float, log: Path) -> tuple[float, float]:
    """(first heatmap, complete) seconds after ``driver.get``, the page loaded as the port opens."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, json.dumps(args)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        t_start = time.monotonic()
        while not _port_open(args["port"]):
            if proc.poll() is not None or time.monotonic() - t_start > 120:
                raise RuntimeError(f"the explorer did not start:\n{log.read_text()}")
            time.sleep(0.05)
        t0 = time.monotonic()
        driver.get(f"http://127.0.0.1:{args['port']}/")
        first = complete = None
        while complete is None:
            now = time.monotonic() - t0
            if now > timeout:
                raise RuntimeError(f"no complete page within {timeout:.0f} s:\n{log.read_text()}")
            if first is None and driver.execute_script(FIRST_FIGURE_JS):
                first = now
            if first is not None and driver.execute_script(COMPLETE_JS):
                complete = now
            time.sleep(0.1)
        return first, complete
    finally:
        driver.get("about:blank")
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the explorer stops Voilà and kernels
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="runs of each variant (default: 3)")
    p.add_argument("--quick", action="store_true", help="the --quick setting (2-epoch networks)")
    p.add_argument("--runs", type=Path, default=None, help="checkpoints (default: a temp folder)")
    p.add_argument("--data-dir", type=Path, default=None, help="CIFAR-10 (default: as explore)")
    p.add_argument("--timeout", type=float, default=400.0, help="seconds per page (default: 400)")
    a = p.parse_args(argv)
    if a.repeats < 1:
        p.error(f"--repeats must be at least 1, not {a.repeats}")

    from td_analysis.explore import (
        ensure_models,
        explorer_folders,
        explorer_settings,
        find_notebook,
    )

    work = Path(tempfile.mkdtemp(prefix="td-analysis-explorer-bench-"))
    folders = explorer_folders(find_notebook(None), runs=a.runs or work / "runs", data=a.data_dir)
    ensure_models(explorer_settings(a.quick), folders["runs"], data_root=folders["data"])
    base = {
        "runs": str(folders["runs"]),
        "data": str(folders["data"]) if folders["data"] else None,
        "quick": a.quick,
    }
    variants = {
        "explorer (cold cache)": {"explorer": True, "preheat": True, "cold": True},
        "explorer (warm cache)": {"explorer": True, "preheat": True, "cold": False},
        "whole notebook, before (warm cache)": {"explorer": False, "preheat": False, "cold": False},
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    load_before = os.getloadavg()[0]
    driver, profile = chrome_driver()
    try:
        for r in range(a.repeats):
            cache = work / f"cache-{r}"  # cold for the first variant, then warm
            for name, v in variants.items():
                if v["cold"]:
                    shutil.rmtree(cache, ignore_errors=True)
                args = {**base, **v, "cache": str(cache), "port": _free_port()}
                first, complete = time_page(driver, args, a.timeout, work / "server.log")
                results[name].append((first, complete))
                print(
                    f"repeat {r + 1}/{a.repeats} {name}: first heatmap {first:.1f} s, "
                    f"complete {complete:.1f} s",
                    flush=True,
                )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # the server did not start or the page did not come
        print(f"explorer_first_page.py: error: {exc}", file=sys.stderr)
        return 1
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    import torch

    print(
        f"\n{'quick' if a.quick else 'full'} setting; torch {torch.__version__}, python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, 1-min load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after; {a.repeats} repeat(s)\n"
    )
    peer = statistics.median(f for f, _ in results["whole notebook, before (warm cache)"])
    print("| variant | first heatmap, median s (min–max) | complete page, median s | × before |")
    print("|---|---:|---:|---:|")
    for name, runs in results.items():
        firsts = [f for f, _ in runs]
        median_first = statistics.median(firsts)
        print(
            f"| {name} | {median_first:.1f} ({min(firsts):.1f}–{max(firsts):.1f}) | "
            f"{statistics.median(c for _, c in runs):.1f} | {median_first / peer:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
