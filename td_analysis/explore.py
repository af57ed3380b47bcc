"""``td-analysis explore``: the interactive explorer (notebook 03) served as a web app by Voilà.

Voilà runs the notebook in a fresh kernel and shows its outputs and live widgets, without the code
cells. The kernel sees the same folders as the notebooks (``TD_ANALYSIS_RUNS``,
``TD_ANALYSIS_CACHE``, ``TD_ANALYSIS_DATA``, made absolute here because the kernel starts in
``notebooks/``), ``TD_ANALYSIS_QUICK`` for ``--quick`` and ``TD_ANALYSIS_EXPLORER=1``.

The first page comes fast (issue 23): Voilà shows a page only once its kernel has run every cell,
so (1) the kernel is *preheated*: Voilà starts it and runs the notebook when the server starts,
not when the page is requested, and keeps one such kernel ready for the next visitor; (2) with
``TD_ANALYSIS_EXPLORER=1`` the notebook skips its static report figures (the live views draw the
same) and draws only the first live view, from the cache where it can: its numbers are cached
under the data files' names, sizes and dates (:func:`data_signature`), so a kernel after the first
draws it without loading the evaluation images; the other views sit in closed sections and are
computed when the reader opens them.

The explorer opens on two trained networks (unregularised and targeted weight dropout, first seed
of :func:`explorer_settings`). Before the server starts they must be in the runs folder: with
``--quick`` (2 epochs, a few seconds each) or ``--train`` the missing ones are trained here,
otherwise the command stops with a one-line error saying how to make them. Other choices made in
the page (another regulariser, γ, α, seed) are trained on first use by the notebook itself.
"""

from __future__ import annotations

import errno
import operator
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import webbrowser
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from td_analysis.catalog import names
from td_analysis.utils.moved import moved_names

if TYPE_CHECKING:  # heavy imports (torch) only where a command needs them
    from td_analysis.nn.dropout import RegulariserConfig
    from td_analysis.pipelines.toy import ReproduceSettings
    from td_analysis.training.loop import TrainConfig

__all__ = [
    "DEFAULT_NOTEBOOK",
    "DEFAULT_PORT",
    "explorer_settings",
    "model_config",
    "default_configs",
    "checkpoint_path",  # noqa: F822 - lazily re-exported from td_analysis.training.runs
    "missing_models",
    "ensure_models",
    "notebooks_dir",
    "find_notebook",
    "explorer_folders",
    "EXPLORER_ENV",
    "InvalidChoice",
    "ZoomWindow",
    "zoom_window",
    "data_signature",
    "kernel_environment",
    "check_port",
    "voila_command",
    "jupyter_dir",
    "serve",
    "add_commands",  # noqa: F822 - lazily re-exported from td_analysis.cli.explore
]

DEFAULT_NOTEBOOK = "03_explore_dependence.ipynb"
DEFAULT_PORT = 8866
READY_TIMEOUT = 60.0  # seconds for Voilà to open its port
REFILL_DELAY = 15.0  # seconds before the preheated-kernel pool starts its next kernel
EXPLORER_ENV = "TD_ANALYSIS_EXPLORER"  # "1": the notebook runs as the explorer page (lazy views)
STOP_TIMEOUT = 15.0  # seconds for Voilà to shut its kernels down after SIGTERM


# ----------------------------------------------------------------------------- models
def explorer_settings(quick: bool = False) -> ReproduceSettings:
    """The setting notebook 03 runs in: ``td-analysis reproduce``'s defaults without the baseline
    curves; quick: one seed, 2 epochs, 2,000 evaluation images."""
    from td_analysis.pipelines.toy import ReproduceSettings

    if quick:
        return ReproduceSettings.quick(seeds=(0,), random_masks=6, curves=False)
    return ReproduceSettings(curves=False)


def model_config(
    settings: ReproduceSettings, regulariser: RegulariserConfig, seed: int
) -> TrainConfig:
    """The training recipe of the explorer's networks: ``settings.base`` for ``settings.epochs``
    epochs with ``regulariser`` and ``seed``."""
    return replace(settings.base, epochs=settings.epochs, regulariser=regulariser, seed=int(seed))


def default_configs(settings: ReproduceSettings) -> dict[str, TrainConfig]:
    """The networks the explorer opens on: each regulariser of the suite at the first seed."""
    from td_analysis.pipelines.toy import regulariser_suite

    seed = settings.seeds[0]
    return {
        name: model_config(settings, reg, seed) for name, reg in regulariser_suite(settings).items()
    }


#: names whose home is elsewhere, importable from here too: ``checkpoint_path`` lives in
#: :mod:`td_analysis.training.runs` (torch, not imported with this light module), the command
#: (``add_commands``, ``_cmd_explore``) in :mod:`td_analysis.cli.explore`, looked up when asked
#: for so that this module does not depend on the command line
_ELSEWHERE = {
    "checkpoint_path": ("td_analysis.training.runs", "checkpoint_path"),
    "add_commands": ("td_analysis.cli.explore", "add_explore_command"),
    "_cmd_explore": ("td_analysis.cli.explore", "_cmd_explore"),
}

__getattr__ = moved_names(__name__, _ELSEWHERE)


def missing_models(settings: ReproduceSettings, runs_dir: str | Path) -> dict[str, TrainConfig]:
    """The default networks that have no checkpoint in ``runs_dir`` yet."""
    from td_analysis.training.runs import checkpoint_path

    return {
        name: config
        for name, config in default_configs(settings).items()
        if not checkpoint_path(config, runs_dir).is_file()
    }


def ensure_models(
    settings: ReproduceSettings,
    runs_dir: str | Path,
    *,
    data_root: str | Path | None = None,
    progress: bool = True,
) -> list[Path]:
    """Train the missing default networks into ``runs_dir``; returns the checkpoints written."""
    import torch

    from td_analysis.training.runs import checkpoint_path, train_or_load

    written = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # fastest for this tiny network
    try:
        for name, config in missing_models(settings, runs_dir).items():
            print(f"training {name} (seed {config.seed}, {config.epochs} epochs)", flush=True)
            train_or_load(config, runs_dir, data_root=data_root, progress=progress)
            path = checkpoint_path(config, runs_dir)
            if not path.is_file():
                raise RuntimeError(f"training {name} did not write the expected checkpoint {path}")
            written.append(path)
    finally:
        torch.set_num_threads(threads)
    return written


# ----------------------------------------------------------------------------- notebook, folders
def notebooks_dir() -> Path:
    """``notebooks/`` of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[1] / "notebooks"


def find_notebook(name: str | None = None) -> Path:
    """The notebook to serve: a path, or a name in ``notebooks/`` with or without ``.ipynb``, or
    its number (``03``); default the explorer, ``03_explore_dependence.ipynb``."""
    name = name or DEFAULT_NOTEBOOK
    path = Path(name).expanduser()
    if path.suffix == ".ipynb" and path.is_file():
        return path.resolve()
    folder = notebooks_dir()
    stem = path.name.removesuffix(".ipynb")
    candidates = sorted(folder.glob(f"{stem}.ipynb")) or sorted(folder.glob(f"{stem}_*.ipynb"))
    if len(candidates) == 1:
        return candidates[0]
    available = ", ".join(p.stem for p in sorted(folder.glob("[0-9][0-9]_*.ipynb"))) or "none"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no notebooks folder at {folder}: `td-analysis explore` serves the notebooks of a "
            "source checkout (git clone, then pip install -e '.[explore]')"
        )
    raise FileNotFoundError(f"notebook {name!r} not found in {folder} (available: {available})")


def _repo_root(notebook: Path) -> Path:
    """The first folder upwards from the notebook that holds pyproject.toml (as the notebooks)."""
    for folder in notebook.resolve().parents:
        if (folder / "pyproject.toml").is_file():
            return folder
    return notebook.resolve().parent


def explorer_folders(
    notebook: Path,
    *,
    runs: str | Path | None = None,
    cache: str | Path | None = None,
    data: str | Path | None = None,
    quick: bool = False,
) -> dict[str, Path | None]:
    """Absolute runs, cache and data folders, resolved as the notebooks do: the option, else the
    environment variable, else ``<repo>/runs`` (``quick``: ``<repo>/runs/quick/checkpoints``,
    where ``reproduce --quick`` keeps its checkpoints, never next to the full ones) and
    :func:`td_analysis.utils.cache.default_cache_dir` (the cache of ``reproduce`` too; data: None,
    the package's default search)."""
    from td_analysis.utils.cache import default_cache_dir

    root = _repo_root(notebook)
    env = os.environ
    default_runs = root / names.QUICK_RUNS if quick else root / "runs"
    runs = runs or env.get("TD_ANALYSIS_RUNS") or default_runs
    cache = cache or env.get("TD_ANALYSIS_CACHE") or default_cache_dir()
    data = data or env.get("TD_ANALYSIS_DATA") or None
    return {
        "runs": Path(os.path.abspath(Path(runs).expanduser())),
        "cache": Path(os.path.abspath(Path(cache).expanduser())),
        "data": Path(os.path.abspath(Path(data).expanduser())) if data else None,
    }


def kernel_environment(
    folders: dict[str, Path | None], quick: bool, *, explorer: bool = True
) -> dict[str, str]:
    """The environment of the Voilà server and its kernel: absolute folders, the quick flag and
    ``TD_ANALYSIS_EXPLORER`` (``explorer=False``: the notebook runs as the full static report)."""
    env = {**os.environ, "TD_ANALYSIS_QUICK": "1" if quick else "0"}
    env[EXPLORER_ENV] = "1" if explorer else "0"
    env["TD_ANALYSIS_RUNS"] = str(folders["runs"])
    env["TD_ANALYSIS_CACHE"] = str(folders["cache"])
    if folders.get("data"):
        env["TD_ANALYSIS_DATA"] = str(folders["data"])
    env.setdefault("MPLBACKEND", "Agg")
    return env


# ----------------------------------------------------------------------------- the page's views
class InvalidChoice(ValueError):
    """A combination of the explorer's controls that has nothing to show (the message says why);
    the page shows the message in place of the view."""


@dataclass(frozen=True)
class ZoomWindow:
    """The zoom window of an ordered matrix: rows ``r0``–``r1`` and columns ``c0``–``c1``, both
    ends included, as the range sliders read (rows 5–5 is the one row 5).

    The block is ``C[r0 : r1 + 1, c0 : c1 + 1]``, of (r1 − r0 + 1) × (c1 − c0 + 1) entries."""

    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def rows(self) -> slice:
        """The rows as a slice: ``slice(r0, r1 + 1)``."""
        return slice(self.r0, self.r1 + 1)

    @property
    def cols(self) -> slice:
        """The columns as a slice: ``slice(c0, c1 + 1)``."""
        return slice(self.c0, self.c1 + 1)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the block: (r1 − r0 + 1, c1 − c0 + 1)."""
        return self.r1 - self.r0 + 1, self.c1 - self.c0 + 1

    @property
    def label(self) -> str:
        """``"rows r0–r1, columns c0–c1"``: the numbers the sliders show."""
        return f"rows {self.r0}–{self.r1}, columns {self.c0}–{self.c1}"


def _window_ends(value: tuple[int, int] | None, n: int, what: str) -> tuple[int, int]:
    if value is None:
        return 0, n - 1
    try:
        start, stop = value
        if isinstance(start, bool) or isinstance(stop, bool):
            raise TypeError
        return operator.index(start), operator.index(stop)
    except (TypeError, ValueError):
        raise InvalidChoice(
            f"the zoom {what} must be two whole numbers (first, last), not {value!r}"
        ) from None


def zoom_window(
    rows: tuple[int, int] | None,
    cols: tuple[int, int] | None,
    n: int,
    *,
    name: str | None = None,
) -> ZoomWindow:
    """The zoom window of an ``n`` × ``n`` matrix for the sliders' readings ``rows = (r0, r1)``
    and ``cols = (c0, c1)``, both ends included (``None``: all of 0–(n − 1)).

    Valid when 0 ≤ r0 ≤ r1 ≤ n − 1 and 0 ≤ c0 ≤ c1 ≤ n − 1; otherwise :class:`InvalidChoice`
    with a one-line message naming the window and the range of the matrix (``name``: of what)."""
    try:
        size = -1 if isinstance(n, bool) else operator.index(n)
    except TypeError:
        size = -1
    if size < 1:
        raise ValueError(f"the matrix must have a whole number of rows ≥ 1, not n={n!r}")
    n = size
    (r0, r1), (c0, c1) = _window_ends(rows, n, "rows"), _window_ends(cols, n, "columns")
    if not (0 <= r0 <= r1 < n and 0 <= c0 <= c1 < n):
        raise InvalidChoice(
            f"the zoom window rows {r0}–{r1}, columns {c0}–{c1} is not inside the {n} × {n} "
            f"matrix{f' of {name}' if name else ''} (rows and columns 0–{n - 1}, both ends "
            "included)"
        )
    return ZoomWindow(r0, r1, c0, c1)


def data_signature(root: str | Path | None = None) -> list[tuple[str, int, int]]:
    """(name, size in bytes, modification time in ns) of each CIFAR-10 batch file under ``root``
    (:func:`td_analysis.data.find_cifar10`): a key for results computed from the data that is
    known without reading the 180 MB of images (the explorer's first view, drawn from its cache
    before the evaluation images are loaded)."""
    from td_analysis.data import TEST_FILE, TRAIN_FILES, find_cifar10

    folder = find_cifar10(root, download=False)
    signature = []
    for name in (*TRAIN_FILES, TEST_FILE):
        try:
            st = (folder / name).stat()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"CIFAR-10 file {name} is missing in {folder}: run `td-analysis download`"
            ) from None
        signature.append((name, st.st_size, st.st_mtime_ns))
    return signature


# ----------------------------------------------------------------------------- server
def check_port(ip: str, port: int) -> None:
    """Raise a one-line :class:`OSError` if ``ip:port`` cannot be bound (e.g. already in use)."""
    if not 0 < port < 65536:
        raise ValueError(f"--port must lie in 1..65535, not {port}")
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            s.bind((ip, port))
        except OSError as exc:
            reason = (
                "is already in use"
                if exc.errno == errno.EADDRINUSE
                else f"cannot be opened ({exc.strerror})"
            )
            raise OSError(
                f"port {port} on {ip} {reason}: stop what uses it or choose another with --port"
            ) from None


# Voilà's lab template links Font Awesome from a CDN (an error in the console of any browser
# without internet; the icons are bundled anyway); the explorer's template drops those links.
TEMPLATE = "td-explorer"
_CDN_CSS = (
    '<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@^5/'
    'css/{}.min.css" type="text/css" />'
)
_TEMPLATE_INDEX = (
    "{%- extends 'voila/templates/lab/index.html.j2' -%}\n"
    "{%- block notebook_css -%}\n"
    "{{ super() | replace('" + _CDN_CSS.format("all") + "', '')"
    " | replace('" + _CDN_CSS.format("v4-shims") + "', '') }}\n"
    "{%- endblock notebook_css -%}\n"
)
# front-end extensions the page loads: the widget managers only (other JupyterLab extensions
# installed beside, e.g. Notebook 7's, fail to load outside JupyterLab: console errors)
EXTENSIONS = (
    "@jupyter-widgets/jupyterlab-manager",  # registers the widget models
    "@voila-dashboards/widgets-manager8",
    "@voila-dashboards/widgets-manager7",
)


def voila_command(notebook: Path, ip: str, port: int, *, preheat: bool = True) -> list[str]:
    """The Voilà command line serving ``notebook`` on ``ip:port`` (run in its folder; the
    template comes from :func:`jupyter_dir` on ``JUPYTER_PATH``).  Voilà runs through
    :func:`td_analysis.utils.nbexec.voila_main`, whose executor polls the kernel's replies (nbclient
    #312 made a first page take minutes).

    ``preheat``: a pool of one kernel that runs the notebook as soon as the server starts; a
    request takes it (the page is sent at once if the notebook has finished, else as soon as it
    has) and the pool starts the next one ``REFILL_DELAY`` seconds later.  Without it a kernel
    starts only on a request."""
    pool = (
        [
            "--preheat_kernel=True",
            "--pool_size=1",
            # the next kernel of the pool starts this long after a page took one: not on the
            # 2 cores the first page's kernel and browser need
            f"--VoilaKernelManager.fill_delay={REFILL_DELAY:g}",
        ]
        if preheat
        else []
    )
    return [
        sys.executable,
        "-m",
        "td_analysis.utils.nbexec",
        "voila",
        notebook.name,
        "--no-browser",
        f"--port={port}",
        f"--Voila.ip={ip}",
        "--Voila.port_retries=0",  # a taken port is an error, not a silent other address
        "--strip_sources=True",
        "--show_tracebacks=False",
        f"--template={TEMPLATE}",
        *(f"--VoilaConfiguration.extension_allowlist={name}" for name in EXTENSIONS),
        *pool,
        "--Voila.log_level=WARN",
    ]


def jupyter_dir() -> Path:
    """A temporary folder for the front of ``JUPYTER_PATH``: kernel "python3" as this interpreter
    (whatever kernelspecs the machine has) and the explorer's Voilà template."""
    from ipykernel.kernelspec import write_kernel_spec

    path = Path(tempfile.mkdtemp(prefix="td-analysis-explore-"))
    write_kernel_spec(path / "kernels" / "python3")
    template = path / "voila" / "templates" / TEMPLATE
    template.mkdir(parents=True)
    (template / "conf.json").write_text('{"base_template": "lab"}\n')
    (template / "index.html.j2").write_text(_TEMPLATE_INDEX)
    return path


def _port_open(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=0.5):
            return True
    except OSError:
        return False


class _Relay:
    """Copy Voilà's output to our stdout until the explorer stops; keep it aside afterwards.

    A kernel that is stopped in the middle of a request (a pre-heated kernel still running the
    notebook, say) logs a ``ZMQError: Socket operation on non-socket`` traceback from ipykernel's
    shutdown race (ipython/ipykernel#1518).  That is noise after Ctrl-C, so what Voilà prints
    while stopping is shown only when Voilà itself then fails to stop cleanly."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.stopping = threading.Event()
        self.after_stop: list[str] = []
        self.thread = threading.Thread(target=self._run, name="voila-output", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for line in self.stream:
            if self.stopping.is_set():
                self.after_stop.append(line)
            else:
                sys.stdout.write(line)
                sys.stdout.flush()

    def finish(self, returncode: int | None) -> None:
        """Wait for Voilà's output to end; print what came after the stop if it failed."""
        self.thread.join(STOP_TIMEOUT)
        if returncode not in (0, -signal.SIGTERM, None) and self.after_stop:
            sys.stdout.write("".join(self.after_stop))
            sys.stdout.flush()


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (Voilà shuts its kernels down), then SIGKILL after STOP_TIMEOUT seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def serve(
    notebook: Path,
    *,
    ip: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    env: dict[str, str] | None = None,
    open_browser: bool = True,
    preheat: bool = True,
) -> int:
    """Serve ``notebook`` with Voilà until Ctrl-C (or SIGTERM); returns the exit status.

    Voilà runs in its own process group, so Ctrl-C reaches only this process, which then stops
    Voilà (and with it the kernels) cleanly.  ``preheat``: see :func:`voila_command`."""
    check_port(ip, port)
    jupyter = jupyter_dir()
    env = dict(env or os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join([str(jupyter), env.get("JUPYTER_PATH", "")])
    host = f"[{ip}]" if ":" in ip else ip
    url = f"http://{host}:{port}/"

    def on_sigterm(signum, frame):  # a stop request from a supervisor: same as Ctrl-C
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    # Ctrl-C even where SIGINT was ignored at start (a background job of a script)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    proc = None
    relay = None
    try:
        proc = subprocess.Popen(
            voila_command(notebook, ip, port, preheat=preheat),
            cwd=notebook.parent,
            env=env,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        relay = _Relay(proc.stdout)
        deadline = time.monotonic() + READY_TIMEOUT
        while not _port_open(ip, port):
            if proc.poll() is not None:
                raise OSError(f"Voilà exited with status {proc.returncode} before serving {url}")
            if time.monotonic() > deadline:
                raise OSError(f"Voilà did not open {url} within {READY_TIMEOUT:.0f} s")
            time.sleep(0.2)
        print(f"explorer ({notebook.name}) running at {url}  (Ctrl-C to stop)", flush=True)
        if open_browser:
            webbrowser.open(url)
        status = proc.wait()
        if status != 0:
            raise OSError(f"Voilà stopped with status {status}")
        return 0
    except KeyboardInterrupt:
        print("stopping the explorer", flush=True)
        return 0
    finally:
        if relay is not None:
            relay.stopping.set()
        if proc is not None:
            _stop(proc)
        if relay is not None:
            relay.finish(proc.returncode if proc is not None else None)
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        shutil.rmtree(jupyter, ignore_errors=True)
