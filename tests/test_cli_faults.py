"""What a newcomer hit (issue 24), each fault class as a test.

* output names: one naming rule (:func:`td_analysis.utils.cliargs.command_stem`) for every command;
  every command run twice with different options on a dotted checkpoint stem writes two sets of
  files, named by the whole stem, nothing overwritten;
* non-finite weights: every checkpoint load refuses them in one line naming the parameter;
* a wrong-architecture checkpoint: one short line, not torch's repr;
* an unwritable ``--out`` (``/proc``) is refused before any work;
* duplicate ``--ks``/``--fractions``/``--percent``/``--seeds``: one-line errors;
* data that is not the archive: the message never advises deleting the user's file;
* the memory check of ``coadaptation`` counts the whole command: its estimate is within 1.5× of
  the peak measured in a fresh process (``/proc/self/clear_refs`` resets the peak);
* ``reproduce --quick`` hands ``runs/quick/…`` to the pipelines; checkpoint names say the task;
* Ctrl-C and SIGTERM stop ``reproduce --experiment fashion-mlp`` (worker processes included)
  within seconds, with a heartbeat line in the log before, nothing left behind after.

Independent references: the file system (what exists, what the messages say), a hand-made NaN
checkpoint, the kernel's peak-RSS counter.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from td_analysis.cli import main
from td_analysis.utils import cliargs

pytestmark = pytest.mark.usefixtures("one_thread")
PACKAGE = Path(__file__).resolve().parents[1] / "td_analysis"


def _run(argv: list) -> int:
    try:
        return int(main([str(a) for a in argv]))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


def _one_line(capsys: pytest.CaptureFixture, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _checkpoint(path: Path, poison: tuple[str, float] | None = None) -> Path:
    """A freshly initialised toy checkpoint; ``poison`` = (parameter, value) sets one entry."""
    from td_analysis.training.loop import TrainConfig, build_model, save_checkpoint

    config = TrainConfig()
    model = build_model(config)
    if poison is not None:
        with torch.no_grad():
            dict(model.named_parameters())[poison[0]].view(-1)[7] = poison[1]
    return save_checkpoint(path, model, config)


# ----------------------------------------------------------------------------- output names
def test_result_stem_keeps_the_whole_stem_and_every_set_option() -> None:
    stem = cliargs.result_stem(
        "runs/td_gamma0.75.pt",
        "spectrum",
        [("", "holdout"), ("", "layers.1.weight,layers.1.bias"), ("limit", 50)],
    )
    assert stem == "runs/td_gamma0.75-spectrum-holdout-layers.1.weight+layers.1.bias-limit50"
    options = [("limit", None), ("fractions", [0.5, 0.25]), ("density", True), ("x", False)]
    assert cliargs.result_stem("a.b", "prune", options) == "a.b-prune-fractions0.5_0.25-density"
    assert cliargs.output_stem("sweep_v1.2", "x") == "sweep_v1.2"  # never with_suffix
    assert cliargs.output_stem("sweep_v1.2.json", "x") == "sweep_v1.2"
    assert cliargs.output_stem(None, "x") == "x"


def test_save_figure_keeps_a_dotted_stem(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from td_analysis.report.plotting import save_figure

    fig = plt.figure()
    written = save_figure(fig, tmp_path / "td_gamma0.75-spectrum", formats=("png", "pdf"))
    plt.close(fig)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["td_gamma0.75-spectrum.pdf", "td_gamma0.75-spectrum.png"]
    assert sorted(p.name for p in written) == names


def test_no_command_names_outputs_with_with_suffix() -> None:
    """``Path.with_suffix`` cuts ``td_gamma0.75`` to ``td_gamma0``: no output is named by it."""
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("data.py",):  # data.py replaces .tar.gz of downloads, not outputs
            continue
        assert "with_suffix" not in path.read_text(), path


# each command twice, with options that change the result; every option set must get its files
TWICE = {
    "prune": (["--fractions", "0.5"], ["--fractions", "0.5", "--split", "test"]),
    "estimate": (["--fractions", "0.5", "--limit", "30"], ["--fractions", "0.5", "--limit", "40"]),
    "coadaptation": (
        ["--params", "layers.1.weight", "--limit", "30"],
        ["--params", "layers.1.bias", "--limit", "30"],
    ),
    "spectrum": (
        ["--params", "layers.1.weight", "--limit", "30", "--k", "2", "--trace-matvecs", "6"],
        ["--params", "layers.1.weight", "--limit", "30", "--k", "3", "--trace-matvecs", "6"],
    ),
}
WRITES = {"prune": (".csv", ".json"), "estimate": (".csv", ".json")}
WRITES |= {"coadaptation": (".png",), "spectrum": (".json",)}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(TWICE))
def test_every_command_twice_never_overwrites(
    command: str, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = _checkpoint(tmp_path / "td_gamma0.75.pt")
    common = ["--data-dir", data_root, "--quiet"]
    for options in TWICE[command]:
        assert _run([command, ckpt, *options, *common]) == 0, capsys.readouterr().err
    assert _run([command, ckpt, *TWICE[command][0], *common, "--out", tmp_path / "v1.2"]) == 0
    capsys.readouterr()
    written = sorted(p.name for p in tmp_path.iterdir() if p.name != ckpt.name)
    exts = WRITES[command]
    assert len(written) == 3 * len(exts), written  # two default names and --out, all distinct
    assert sorted(f"v1.2{e}" for e in exts) == [n for n in written if n.startswith("v1.2")]
    ours = [n for n in written if not n.startswith("v1.2")]
    assert all(n.startswith(f"td_gamma0.75-{command}-") for n in ours), ours
    assert not [n for n in written if n.startswith(".")], "temporary files left"


# ----------------------------------------------------------------------------- finite checks
@pytest.mark.parametrize("command", ["prune", "estimate", "coadaptation", "spectrum"])
@pytest.mark.parametrize(
    "poison", [("layers.0.weight", float("nan")), ("layers.1.bias", float("-inf"))]
)
def test_non_finite_checkpoints_are_refused_in_one_line(
    command: str, poison: tuple[str, float], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = _checkpoint(tmp_path / "bad.pt", poison)
    assert _run([command, ckpt, "--quiet", "--data-dir", tmp_path / "nodata"]) == 2
    _one_line(capsys, f"parameter {poison[0]}", "non-finite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]  # nothing written


def test_check_finite_names_the_parameter() -> None:
    from td_analysis.training.loop import check_finite

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    check_finite(model, "here")  # finite: silent
    model[1].running_var[1] = float("inf")
    with pytest.raises(ValueError, match=r"^here: parameter 1\.running_var has 1 non-finite"):
        check_finite(model, "here")


def test_wrong_architecture_checkpoint_is_one_short_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = _checkpoint(tmp_path / "x.pt")
    payload = torch.load(path, weights_only=True)
    payload["arch"] = {**payload["arch"], "hidden": [20]}  # the weights are 10 wide
    torch.save(payload, path)
    assert _run(["prune", path, "--quiet"]) == 2
    line = _one_line(capsys, "does not match the architecture", "layers.0.weight")
    assert len(line) < 250, line


def test_a_solver_failure_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The issue's ``torch._C._LinAlgError`` (a NaN-poisoned spectrum): whatever reaches an
    eigensolver that cannot converge ends in one line, exit status 2."""
    from td_analysis.cli import spectrum as cli_spectrum

    def nan_spectrum(args: object) -> int:
        # what torch raises (LAPACKs differ in whether a NaN matrix gets that far)
        raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge\nbecause")

    monkeypatch.setattr(cli_spectrum, "_cmd_spectrum", nan_spectrum)
    assert _run(["spectrum", "x.pt", "--quiet"]) == 2
    _one_line(capsys, "td-analysis spectrum: error: linalg.eigh")


# ----------------------------------------------------------------------------- messages
@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
@pytest.mark.parametrize("command", ["prune", "estimate", "coadaptation", "spectrum"])
def test_unwritable_out_is_refused_before_any_work(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The checkpoint does not even exist: the --out check must come first."""
    argv = [command, tmp_path / "missing.pt", "--out", "/proc/td_analysis/result", "--quiet"]
    assert _run(argv) == 2
    _one_line(capsys, "/proc")


@pytest.mark.parametrize(
    "argv",
    [
        ["reproduce", "--ks", "0,25,25"],
        ["reproduce", "--seeds", "0,1,0"],
        ["prune", "x.pt", "--fractions", "0.5,0.25,0.5"],
        ["prune", "x.pt", "--percent", "10,20,10"],
        ["estimate", "x.pt", "--fractions", "0.5,0.5"],
    ],
)
def test_duplicate_list_entries_are_refused(argv: list, capsys: pytest.CaptureFixture) -> None:
    assert _run(argv) == 2
    _one_line(capsys, "must be distinct", "repeated")


@pytest.mark.parametrize("junk", ["tmp", "/etc/passwd"])
def test_a_foreign_file_as_data_is_never_to_be_deleted(
    junk: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "notes.txt" if junk == "tmp" else Path(junk)
    if junk == "tmp":
        data.write_text("the user's own file\n")
    elif not data.is_file():
        pytest.skip(f"{junk} does not exist here")
    before = data.read_bytes()
    ckpt = _checkpoint(tmp_path / "x.pt")
    assert _run(["prune", ckpt, "--data-dir", data, "--quiet"]) == 2
    line = _one_line(capsys, str(data))
    assert "delete" not in line.lower() and "remove" not in line.lower(), line
    assert data.read_bytes() == before


# ----------------------------------------------------------------------------- memory
MEASURE = """
import gc, json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from td_analysis import cli
from td_analysis.cli import coadaptation as command  # where _check_matrix_memory is looked up

def rss():
    out = {}
    for line in open("/proc/self/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            key, value = line.split(":")
            out[key] = int(value.split()[0]) * 1024
    return out

fig, ax = plt.subplots()  # matplotlib's fonts and caches: not the command's
fig.colorbar(ax.imshow([[0.0, 1.0], [1.0, 0.0]]))
fig.savefig(sys.argv[1] + ".warm.png")
plt.close(fig)
seen = {}
check = command._check_matrix_memory

def spy(size, num_params, option, bins):
    seen["estimate"] = cli.coadaptation_bytes(size, num_params, bins)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # peak RSS := current RSS
    seen["base"] = rss()["VmRSS"]
    return check(size, num_params, option, bins)

command._check_matrix_memory = spy
assert cli.main(sys.argv[2:]) == 0
seen["peak"] = rss()["VmHWM"]
print(json.dumps(seen))
"""


def _clear_refs_works() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _clear_refs_works(), reason="needs Linux's /proc/self/clear_refs")
def test_coadaptation_memory_estimate_matches_the_measured_peak(
    data_root: Path, tmp_path: Path
) -> None:
    """The budget covers the whole command after loading (products, sums, the picture): the
    estimate is within 1.5× of the peak RSS the command adds. At 2,000 bins the sums are 32 MB,
    so a missing copy of them, or of the products' work space, is off by more than that."""
    ckpt = _checkpoint(tmp_path / "x.pt")
    options = ["--params", "layers.0.weight", "--bins", "2000"]  # pooled, summed for the picture
    argv = ["coadaptation", str(ckpt), *options, "--limit", "20", "--quiet"]
    argv += ["--data-dir", str(data_root), "--out", str(tmp_path / "c.png")]
    # glibc serves new arrays from heap pages that loading freed (already resident), which
    # hides them from the peak RSS; with every allocation of ≥ 64 KiB mapped and unmapped on its
    # own, RSS follows the live arrays (without this the measured "used" varied 15–36 MB here)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path / "w"), *argv],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.splitlines()[-1])
    used = seen["peak"] - seen["base"]
    assert used / 1.5 <= seen["estimate"] <= used * 1.5, (seen["estimate"], used)


def test_memory_check_counts_the_reported_case() -> None:
    """The issue's ``--params weights --bins 20000``: 3.2 GB of sums, not 23.9 GB of copies."""
    from td_analysis.cli import coadaptation_bytes

    need = coadaptation_bytes(20000, 30730, 20000)
    assert 8 * 20000 * 20001 <= need <= 1.1 * 8 * 20000 * 20001


def test_display_matrix_sums_contiguous_blocks() -> None:
    from td_analysis.cli import display_matrix

    C = torch.arange(49, dtype=torch.float64).reshape(7, 7)
    small = display_matrix(C, limit=3)
    groups = [[0, 1, 2], [3, 4], [5, 6]]  # ⌊a·3/7⌋
    ref = torch.tensor([[float(C[a][:, b].sum()) for b in groups] for a in groups])
    assert torch.equal(small, ref.double())
    assert display_matrix(C, limit=7) is C


# ----------------------------------------------------------------------------- progress
def test_no_module_uses_tqdm_directly() -> None:
    """One progress helper: a bar only on a terminal, plain lines in a log."""
    for path in PACKAGE.rglob("*.py"):
        if path.name == "progress.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "tqdm" for a in node.names), path
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] != "tqdm", path


def test_a_long_step_still_gets_heartbeat_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from td_analysis.utils.progress import progress_bar

    monkeypatch.setenv("TD_ANALYSIS_PROGRESS", "lines")
    monkeypatch.setenv("TD_ANALYSIS_PROGRESS_INTERVAL", "0.1")
    bar = progress_bar(total=2, desc="one long step", unit="step")
    time.sleep(1.0)  # no update for ten intervals
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    beats = [line for line in lines if line.startswith("one long step: 0/2 step (0%)")]
    assert len(beats) >= 2, lines  # the thread may be late, never silent for the whole step
    time.sleep(0.5)
    assert capsys.readouterr().err == ""  # closed: no more beats


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ["spectrum", "--params", "layers.1.weight", "--k", "2", "--trace-matvecs", "6"],
        ["coadaptation", "--params", "layers.1.weight"],  # exact: the dense Hessian's bar
        ["coadaptation", "--params", "layers.1.weight", "--bins", "20"],  # pooled products
    ],
    ids=["spectrum", "coadaptation-exact", "coadaptation-pooled"],
)
def test_progress_of_spectrum_and_coadaptation_in_a_log_is_plain_lines(
    argv: list[str],
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """stderr is not a terminal here: plain lines, never tqdm's carriage-return redraws."""
    monkeypatch.setenv("TD_ANALYSIS_PROGRESS_INTERVAL", "0")
    ckpt = _checkpoint(tmp_path / "x.pt")
    extra = ["--limit", "30", "--data-dir", data_root, "--out", tmp_path / "o"]
    assert _run([argv[0], ckpt, *argv[1:], *extra]) == 0
    err = capsys.readouterr().err
    assert err.strip() and "\r" not in err, err
    assert all(": " in line and " s" in line for line in err.splitlines()), err


def test_the_test_environment_is_pinned() -> None:
    """conftest.py: whatever the shell has, no TQDM_*/TD_ANALYSIS_* but the data folder, and one
    thread here and in subprocesses."""
    assert not [k for k in os.environ if k.startswith("TQDM_")]
    allowed = {"TD_ANALYSIS_DATA", "TD_ANALYSIS_SCREENSHOT"}
    assert not [k for k in os.environ if k.startswith("TD_ANALYSIS_") and k not in allowed]
    assert os.environ["OMP_NUM_THREADS"] == "1" and torch.get_num_threads() == 1


# ----------------------------------------------------------------------------- quick and signals
def _session_processes(sid: int) -> list[int]:
    """Processes of session ``sid`` still alive (zombies excluded)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def _leftovers(folder: Path) -> list[str]:
    return [
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if ".staging-" in p.name or ".old-" in p.name or ".tmp" in p.name
    ]


@pytest.mark.parametrize("experiment", ["toy", "fashion-mlp"])
def test_quick_reproduce_keeps_everything_under_runs_quick(
    experiment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folders ``reproduce --quick`` hands to the pipelines (recorded instead of training:
    the pipelines write only there, ``test_reproduce.py``), and the checkpoint name the
    pipelines use (it says the task)."""
    from td_analysis.explore import checkpoint_path
    from td_analysis.pipelines import fashion_mlp as experiments_fashion
    from td_analysis.pipelines import toy as experiments
    from td_analysis.training.tasks import get_task

    seen = {}

    def record(settings, *, out_dir, runs_dir, **kwargs):
        seen.update(out=Path(out_dir), runs=Path(runs_dir))
        raise KeyboardInterrupt  # stop here: nothing trained, nothing written

    monkeypatch.setattr(experiments, "reproduce", record)
    monkeypatch.setattr(experiments_fashion, "reproduce_fashion", record)
    monkeypatch.setattr(experiments_fashion, "check_pooled_memory", lambda settings: None)
    monkeypatch.chdir(tmp_path)
    assert _run(["reproduce", "--quick", "--experiment", experiment]) == 130
    quick = Path("runs") / "quick"
    assert seen["runs"] == quick / "checkpoints"
    assert seen["out"] in (quick / "figures", quick / "figures" / "fashion_mlp")
    assert list(tmp_path.iterdir()) == []
    task = "toy" if experiment == "toy" else "fashion-mlp"
    path = checkpoint_path(get_task(task).config(seed=0), seen["runs"])
    assert path.parent == quick / "checkpoints" and path.name.startswith(f"{task}-none-")


def _as_in_a_terminal() -> None:
    """In the command's process before it starts: SIGINT back to its default, as a command
    typed in a terminal has it.  A test run started as a background job (``cmd &`` in a
    script, as CI runners and ``nohup … &`` do) inherits SIGINT *ignored*, and Python keeps an
    ignored SIGINT ignored: Ctrl-C could then never reach the command (seen: the command ran on
    for 30 s after SIGINT, every thread waiting, the workers finishing networks)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize("how", ["SIGINT to the group", "SIGTERM to the parent"])
def test_fashion_reproduce_stops_within_seconds(how: str, data_root: Path, tmp_path: Path) -> None:
    """The workers are busy when the signal comes (after the first heartbeat line of the pool):
    the command ends within 5 s, its workers with it, and leaves no staging folder or
    temporary file (the next run removes those of a SIGKILL: ``test_io.py``)."""
    argv = ["reproduce", "--experiment", "fashion-mlp", "--quick", "--workers", "2"]
    argv += ["--out", "out", "--data-dir", str(data_root)]
    env = {**os.environ, "MPLBACKEND": "Agg", "TD_ANALYSIS_PROGRESS": "lines"}
    env["TD_ANALYSIS_PROGRESS_INTERVAL"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT dumps every thread's stack (a stop that hangs)
    proc = subprocess.Popen(
        [sys.executable, "-m", "td_analysis.cli", *argv],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_as_in_a_terminal,
    )
    try:
        log = []
        deadline = time.monotonic() + 300
        for line in proc.stderr:  # the pool's heartbeat: the workers are running
            log.append(line)
            if line.startswith("fashion-mlp networks: 0/") or time.monotonic() > deadline:
                break
        assert any(line.startswith("fashion-mlp networks: 0/") for line in log), log
        # from here on a thread drains stderr, so that the command and its workers never block
        # on a full pipe while they stop (heartbeats, messages of the shutdown)
        tail: list[str] = []
        drain = threading.Thread(target=lambda: tail.extend(proc.stderr), daemon=True)
        drain.start()
        assert len(_session_processes(proc.pid)) >= 3  # the parent and its two workers
        t0 = time.monotonic()
        if how.startswith("SIGINT"):
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGABRT)
            proc.wait(timeout=10)
            drain.join(timeout=5)
            pytest.fail("the command did not stop within 30 s; its stacks:\n" + "".join(tail))
        took = time.monotonic() - t0
        drain.join(timeout=10)
        rest = "".join(tail)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == (130 if how.startswith("SIGINT") else 128 + signal.SIGTERM), rest[-2000:]
    assert took < 5.0, took
    time.sleep(0.5)
    assert _session_processes(proc.pid) == []  # no orphaned worker
    assert _leftovers(tmp_path) == []
    assert "Traceback" not in rest, rest[-2000:]
