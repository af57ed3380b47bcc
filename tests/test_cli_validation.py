"""Bad input is refused up front: one line naming the option, exit status 2, nothing written.

Also: diverging training writes no checkpoint, a checkpoint of another input size is refused,
large matrices go through the memory check, help pages show defaults, progress goes to logs as
plain lines, and output names keep the whole stem and encode what differs between runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from td_analysis.cli import build_parser, main, output_stem
from td_analysis.utils import cliargs

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(argv: list[str]) -> int:
    try:
        return int(main(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


def _one_line_error(capsys: pytest.CaptureFixture, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "error:" in lines[0] and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


BAD = [
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--epochs", "-3"], "--epochs"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "inf"], "--lr"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--momentum", "1"], "--momentum"),
    (["train", "--weight-decay", "-1e-4"], "--weight-decay"),
    (["train", "--grad-clip", "0"], "--grad-clip"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--gamma", "1.5"], "--gamma"),
    (["train", "--alpha", "nan"], "--alpha"),
    (["train", "--hidden", "10,0"], "--hidden"),
    (["train", "--layers", "-1"], "--layers"),
    (["train", "--ramp-steps", "0"], "--ramp-steps"),
    (["train", "--device", "nonsense"], "--device"),
    (["prune", "x.pt", "--fractions", ""], "--fractions"),
    (["prune", "x.pt", "--layers", "0,-2"], "--layers"),
    (["estimate", "x.pt", "--limit", "-5"], "--limit"),
    (["estimate", "x.pt", "--limit", "0"], "--limit"),
    (["coadaptation", "x.pt", "--limit", "-5"], "--limit"),
    (["coadaptation", "x.pt", "--bins", "0"], "--bins"),
    (["coadaptation", "x.pt", "--vmax", "-1"], "--vmax"),
    (["coadaptation", "x.pt", "--gamma", "2"], "--gamma"),
    (["reproduce", "--seeds="], "--seeds"),
    (["reproduce", "--seeds", ","], "--seeds"),
    (["reproduce", "--seeds", "0,0"], "--seeds"),
    (["reproduce", "--seeds", "0,1,0"], "--seeds"),
    (["reproduce", "--seeds", "-1"], "--seeds"),
    (["reproduce", "--epochs", "0"], "--epochs"),
    (["reproduce", "--eval-limit", "-5"], "--eval-limit"),
    (["reproduce", "--eval-limit", "0"], "--eval-limit"),
    (["reproduce", "--vmax", "0"], "--vmax"),
]


@pytest.mark.parametrize(("argv", "option"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_option_is_one_line_naming_it(
    argv: list[str], option: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    before = sorted(tmp_path.iterdir())
    cwd = os.getcwd()
    os.chdir(tmp_path)  # nothing may be written anywhere, not even a runs/ folder
    try:
        assert _run(argv) == 2
    finally:
        os.chdir(cwd)
    _one_line_error(capsys, f"argument {option}")
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_on_a_cpu_build_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "x.pt"
    assert _run(["train", "--device", "cuda", "--out", str(out)]) == 2
    line = _one_line_error(capsys, "argument --device", "'cuda' is not available")
    assert "CPU-only build" in line or "no CUDA GPU" in line
    assert _run(["train", "--device", "cuda:7", "--out", str(out)]) == 2
    _one_line_error(capsys, "argument --device")
    assert not out.exists()


def test_output_that_is_a_folder_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # no --data-dir: were training to start first, the error would be about missing data
    assert _run(["train", "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "argument --out", "is a folder")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert _run(["train", "--out", str(blocker / "x.pt")]) == 2
    _one_line_error(capsys, "argument --out", "is a file, not a folder")
    assert _run(["prune", "x.pt", "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "argument --out", "is a folder")
    assert _run(["reproduce", "--out", str(blocker)]) == 2
    _one_line_error(capsys, "argument --out", "not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_output_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert _run(["train", "--out", str(locked / "x.pt")]) == 2
    _one_line_error(capsys, "argument --out", "not writable")


def test_check_output_file_walks_up_to_an_existing_parent(tmp_path: Path) -> None:
    assert cliargs.check_output_file(tmp_path / "new" / "deeper" / "x.pt") == (
        tmp_path / "new" / "deeper" / "x.pt"
    )
    assert not (tmp_path / "new").exists()  # checking creates nothing
    with pytest.raises(ValueError, match="is a folder"):
        cliargs.check_output_file(tmp_path)


def test_seeds_parser() -> None:
    assert cliargs.seeds("2, 0,1") == [2, 0, 1]
    for text, why in (("", "at least one"), ("1,1", "distinct"), ("a", "integers")):
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            cliargs.seeds(text)


def test_output_stem_keeps_the_whole_name() -> None:
    assert output_stem(Path("sweep_v1.2"), "d") == "sweep_v1.2"
    assert output_stem(Path("out/td_gamma0.75"), "d") == "out/td_gamma0.75"
    assert output_stem(Path("sweep_v1.2.csv"), "d") == "sweep_v1.2"
    assert output_stem(Path("x.json"), "d") == "x"
    assert output_stem(None, "runs/td_gamma0.5-prune") == "runs/td_gamma0.5-prune"


# ----------------------------------------------------------------------------- help pages
def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("command", sorted(_commands()))
def test_help_shows_every_default(command: str, capsys: pytest.CaptureFixture) -> None:
    parser = _commands()[command]
    text = "".join(parser.format_help().split())  # wrapping may break lines at hyphens
    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0 or action.default is False:
            continue
        if action.default is argparse.SUPPRESS:
            continue
        entry = "".join(formatter._expand_help(action).split())  # as printed in the help page
        assert entry in text, f"{command}: {action.option_strings} not in help"
        assert "default" in entry.lower(), f"{command} {action.option_strings[-1]}: {entry!r}"


def test_progress_flag_everywhere() -> None:
    for name, parser in _commands().items():
        assert "--progress" in parser._option_string_actions, name


# ----------------------------------------------------------------------------- download
def test_failed_download_into_a_new_folder_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    root = tmp_path / "new" / "data"
    assert main(["download", "--data-dir", str(root)]) == 2
    line = _one_line_error(capsys, "Could not download", "Name or service not known")
    assert "td-analysis download" not in line.split("error:", 1)[1]  # not "run what just failed"
    assert list(tmp_path.iterdir()) == []  # the folders it made are gone again
    existing = tmp_path / "kept"
    existing.mkdir()
    assert main(["download", "--data-dir", str(existing)]) == 2
    capsys.readouterr()
    assert existing.is_dir()  # a folder that was there before stays


# ----------------------------------------------------------------------------- memory
def test_coadaptation_huge_bins_goes_through_the_memory_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, data_root
) -> None:
    """``--params weights --bins 30820``: the 30,820² float64 sums alone are 7.6 GB, refused
    before any HVP when 4 GB are free; the estimate is the sums plus at most 10% (work columns,
    the picture's 512² copies: the whole command, ``test_cli_faults.py`` measures it)."""
    import re

    import td_analysis.curvature
    from td_analysis.training.loop import TrainConfig, build_model, save_checkpoint

    config = TrainConfig()
    ckpt = save_checkpoint(tmp_path / "m.pt", build_model(config), config)
    monkeypatch.setattr(td_analysis.curvature, "available_memory_bytes", lambda *a: 4 * 10**9)
    argv = ["coadaptation", str(ckpt), "--params", "weights", "--bins", "30820", "--limit", "50"]
    code = _run([*argv, "--data-dir", str(data_root), "--quiet"])
    assert code == 2
    line = _one_line_error(capsys, "--bins", "4.0 GB")
    need = float(re.search(r"needs about ([\d.]+) GB", line).group(1))
    sums = 30820 * 30821 * 8 / 1e9  # independent arithmetic: B × (B + 1) float64
    assert round(sums, 1) <= need <= 1.1 * sums, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


# ----------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("command", ["prune", "estimate", "coadaptation"])
def test_checkpoint_of_another_input_size_is_refused(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture, data_root
) -> None:
    from td_analysis.training.loop import TrainConfig, build_model, save_checkpoint

    config = TrainConfig(in_features=20)
    ckpt = save_checkpoint(tmp_path / "small.pt", build_model(config), config)
    code = _run([command, str(ckpt), "--data-dir", str(data_root), "--quiet"])
    assert code == 2
    line = _one_line_error(capsys, "20", "3072")
    assert "mat1 and mat2" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.pt"]


# ----------------------------------------------------------------------------- divergence
@pytest.mark.slow
def test_diverging_training_writes_no_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture, data_root
) -> None:
    out = tmp_path / "x.pt"
    # SGD: Adam's normalised steps do not blow up at any learning rate
    argv = ["train", "--protocol", "sgd", "--lr", "1e6", "--epochs", "3", "--out", str(out)]
    argv += ["--quiet"]
    assert _run([*argv, "--data-dir", str(data_root)]) == 2
    _one_line_error(capsys, "diverged", "epoch 1", "lr")
    assert list(tmp_path.iterdir()) == []


def test_divergence_is_detected_on_small_data() -> None:
    from td_analysis.training.loop import TrainConfig, train

    torch.manual_seed(0)
    # inputs of 1e20: the second step's logits overflow float32, the loss becomes NaN
    x, y = torch.randn(64, 6) * 1e20, torch.randint(0, 3, (64,))
    config = TrainConfig(in_features=6, num_classes=3, hidden=(4,), epochs=3, batch_size=8)
    with pytest.raises(FloatingPointError, match="diverged in epoch 1"):
        train(config, train_data=(x, y), progress=False)


# ----------------------------------------------------------------------------- progress
@pytest.mark.slow
def test_progress_in_a_log_is_plain_lines(tmp_path: Path, data_root) -> None:
    """stderr to a file: no carriage returns, periodic lines; --progress forces the bar."""
    env = {
        **os.environ,
        "TD_ANALYSIS_DATA": str(data_root),
        "TD_ANALYSIS_PROGRESS_INTERVAL": "0",
    }
    env.pop("TD_ANALYSIS_PROGRESS", None)
    config = "from td_analysis.training.loop import TrainConfig, build_model, save_checkpoint\n"
    config += f"c = TrainConfig(); save_checkpoint({str(tmp_path / 'm.pt')!r}, build_model(c), c)"
    subprocess.run([sys.executable, "-c", config], check=True, env=env)
    argv = ["estimate", str(tmp_path / "m.pt"), "--limit", "200", "--fractions", "0.5,0.75"]
    cmd = [sys.executable, "-m", "td_analysis.cli", *argv]

    def stderr(*extra: str) -> str:  # bytes decoded by hand: text=True would turn \r into \n
        proc = subprocess.run([*cmd, *extra], env=env, capture_output=True, check=True)
        return proc.stderr.decode()

    log = stderr()
    assert "\r" not in log
    lines = log.splitlines()
    assert lines and all("Taylor weight: " in line and "/2 it (" in line for line in lines), log
    assert lines[-1].startswith("Taylor weight: 2/2 it (100%)")
    forced = stderr("--progress")
    # a tqdm bar, as asked (redrawn in place; a bar with leave=False erases its last state)
    assert "\r" in forced and "/2 [" in forced and "Taylor weight:" in forced
    assert stderr("--quiet") == ""


def test_progress_modes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from td_analysis.utils import progress

    monkeypatch.delenv("TD_ANALYSIS_PROGRESS", raising=False)
    assert progress.progress_mode() == "lines"  # pytest's stderr is not a terminal
    monkeypatch.setenv("TD_ANALYSIS_PROGRESS", "off")
    assert progress.progress_mode() == "off"
    progress.set_progress_mode("bar")  # the CLI's --progress wins over the environment
    try:
        assert progress.progress_mode() == "bar"
    finally:
        progress.set_progress_mode(None)
    with pytest.raises(ValueError, match="progress mode"):
        progress.set_progress_mode("loud")
    monkeypatch.setenv("TD_ANALYSIS_PROGRESS", "lines")
    monkeypatch.setenv("TD_ANALYSIS_PROGRESS_INTERVAL", "0")
    assert list(progress.progress_bar(range(3), desc="work", unit="step")) == [0, 1, 2]
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "work: 1/3 step (33%), 0 s",
        "work: 2/3 step (67%), 0 s",
        "work: 3/3 step (100%), 0 s",
        "work: 3/3 step (100%), 0 s",  # the closing line
    ]
    assert list(progress.progress_bar(range(3), disable=True)) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_line_progress_is_periodic(capsys: pytest.CaptureFixture) -> None:
    from td_analysis.utils.progress import LineProgress

    bar = LineProgress(total=1000, desc="train", unit="step", interval=3600)
    for _ in range(1000):
        bar.update()
    bar.set_postfix(loss="0.420")
    assert capsys.readouterr().err == ""  # nothing within the interval…
    bar.close()
    bar.close()  # …and one closing line, once
    assert capsys.readouterr().err == "train: 1,000/1,000 step (100%), 0 s, loss=0.420\n"


# ----------------------------------------------------------------------------- quick outputs
def test_reproduce_quick_never_writes_into_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The output folder each invocation gets (the pipeline itself is replaced by a stub)."""
    from td_analysis.pipelines import toy as experiments

    folders = []

    def fake(settings, *, out_dir, **kwargs):
        folders.append((Path(out_dir), settings.epochs))
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "table1.md").write_text("stub")
        return {"seconds": 0.0}

    monkeypatch.setattr(experiments, "reproduce", fake)
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "--quick", "--quiet"]) == 0
    assert main(["reproduce", "--quiet"]) == 0
    assert main(["reproduce", "--quick", "--out", "mine", "--quiet"]) == 0
    capsys.readouterr()
    assert folders == [
        (Path("runs/quick/figures"), 2),
        (Path("figures"), 60),  # the toy default protocol: Adam, 60 epochs
        (Path("mine"), 2),
    ]


def test_notebooks_quick_mode_writes_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "notebooks" / "execute_notebooks.py"
    spec = importlib.util.spec_from_file_location("execute_notebooks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    calls = []

    def fake(nb: Path, *, quick: bool, out: Path, **kwargs) -> float:
        calls.append((nb.name, quick, out))
        return 0.0

    monkeypatch.setattr(module, "execute", fake)
    monkeypatch.setattr(module, "use_this_python", lambda: None)
    monkeypatch.setattr(Path, "stat", lambda self: os.stat(__file__))  # no file was written
    name = module.NOTEBOOKS[0]
    assert module.main(["--quick", name]) == 0
    assert module.main([name]) == 0
    assert calls == [
        (name, True, module.QUICK_OUT / name),
        (name, False, module.HERE / name),  # the full run updates the committed notebook
    ]
    assert module.QUICK_OUT.parts[-3:] == ("runs", "quick", "notebooks")
    with pytest.raises(SystemExit):  # quick output over the committed notebooks: refused
        module.main(["--quick", "--out-dir", str(module.HERE), name])


def test_train_default_names_differ_with_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """``train --gamma 0.5`` and ``--gamma 0.75`` used to both write runs/targeted-weight-seed0.pt
    (training replaced by a stub: only the file names are under test)."""
    import td_analysis.training.loop as training

    def fake_train(config, **kwargs):
        history = [{"train_loss": 1.0, "eval_accuracy": 0.5}]
        return training.TrainResult(training.build_model(config), config, history)

    monkeypatch.setattr(training, "train", fake_train)
    monkeypatch.chdir(tmp_path)
    for gamma in ("0.5", "0.75", "0.75"):
        assert main(["train", "--reg", "targeted-weight", "--gamma", gamma, "--quiet"]) == 0
    capsys.readouterr()
    names = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(names) == 2 and all("targeted-weight" in n and "seed0" in n for n in names)
    configs = {
        training.load_checkpoint(tmp_path / "runs" / n).config.regulariser.gamma for n in names
    }
    assert configs == {0.5, 0.75}


@pytest.mark.slow
def test_interrupted_reproduce_leaves_the_old_results_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, data_root
) -> None:
    """Ctrl-C after Figure 1 is written: ``--out`` keeps exactly the previous run's files."""
    from td_analysis.pipelines import toy as experiments

    out = tmp_path / "figures"
    out.mkdir()
    old = {"README.md": "kept", "figure1.png": "old figure", "table1.md": "old table"}
    for name, text in old.items():
        (out / name).write_text(text)

    def interrupted(run):
        assert (run.out_dir / "figure1.png").is_file()  # the new Figure 1 exists (staged)
        raise KeyboardInterrupt

    monkeypatch.setattr(experiments, "pooled_figure", interrupted)
    argv = ["reproduce", "--quick", "--no-curves", "--seeds", "0", "--epochs", "1"]
    argv += ["--eval-limit", "200", "--out", str(out), "--runs", str(tmp_path / "runs")]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--data-dir", str(data_root), "--quiet"]
    assert main(argv) == 130
    capsys.readouterr()
    assert {p.name: p.read_text() for p in out.iterdir()} == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "figures", "runs"]
