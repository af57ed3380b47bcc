"""Tests of the ``train`` and ``prune`` commands of ``td_analysis.cli`` (in-process, ``main``).

The real CIFAR-10 folder comes from the ``data_root`` fixture.  Written files are checked against
independent references: the CSV/JSON rows against ``pruning_curve`` recomputed from the
checkpoint, and the checkpoint's holdout accuracy against its own metrics.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from td_analysis.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(argv: list[str]) -> int:
    """``main(argv)`` as the console script would exit: argparse errors become their code."""
    try:
        return int(main(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


@pytest.fixture(scope="module")
def trained(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("cli") / "x.pt"
        code = main(
            ["train", "--epochs", "1", "--data-dir", str(data_root), "--out", str(out), "--quiet"]
        )
    finally:
        torch.set_num_threads(before)
    assert code == 0
    return out


@pytest.mark.slow
def test_train_writes_a_checkpoint(trained: Path) -> None:
    from td_analysis.training.loop import TrainConfig, load_checkpoint

    assert trained.is_file()
    assert [p.name for p in trained.parent.iterdir()] == ["x.pt"], "temporary files left"
    ckpt = load_checkpoint(trained)
    # the CLI defaults are the toy task's default protocol (Adam lr 1e-3), else TrainConfig()'s
    assert ckpt.config == TrainConfig(epochs=1, optimizer="adam", lr=1e-3)
    assert ckpt.model.arch == {"in_features": 3072, "hidden": [10], "num_classes": 10, "bias": True}
    assert len(ckpt.metrics["history"]) == 1
    assert ckpt.metrics["eval_accuracy"] > 0.25


@pytest.mark.slow
def test_prune_writes_csv_and_json(
    trained: Path, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from td_analysis.analysis.pruning import pruning_curve
    from td_analysis.data import load_cifar10
    from td_analysis.training.loop import load_checkpoint

    stem = tmp_path / "p"
    code = main(
        [
            "prune",
            str(trained),
            "--fractions",
            "0,0.5",
            "--data-dir",
            str(data_root),
            "--out",
            str(stem),
            "--quiet",
        ]
    )
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv", "p.json"]
    printed = capsys.readouterr().out
    assert "p.csv" in printed and "p.json" in printed

    rows = json.loads((tmp_path / "p.json").read_text())
    with open(tmp_path / "p.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["fraction"] for r in rows] == [0.0, 0.5]
    assert len(csv_rows) == 2
    assert set(csv_rows[0]) == {"kind", "fraction", "removed", "removed_share", "loss", "accuracy"}

    ckpt = load_checkpoint(trained)
    x, y = load_cifar10(data_root, split="holdout")
    want = pruning_curve(ckpt.model, x, y, [0.0, 0.5], "weight")
    for got, ref, row in zip(rows, want, csv_rows, strict=True):
        assert got["kind"] == row["kind"] == "weight"
        assert got["removed"] == ref["removed"] == int(row["removed"])
        assert got["accuracy"] == pytest.approx(ref["accuracy"])
        assert float(row["accuracy"]) == pytest.approx(ref["accuracy"])
        assert got["loss"] == pytest.approx(ref["loss"])
    # fraction 0 is the unpruned network: its holdout accuracy is the one training reported
    assert rows[0]["removed"] == 0
    assert rows[0]["accuracy"] == pytest.approx(ckpt.metrics["eval_accuracy"])
    # 0.5 of each row of 3072 and of 10 inputs: 10·1536 + 10·5 weights
    assert rows[1]["removed"] == 10 * 1536 + 10 * 5


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("train", ["--epochs", "--data-dir", "--out", "--reg", "--gamma", "--alpha", "--seed"]),
        ("prune", ["--fractions", "--kind", "--data-dir", "--out", "--split"]),
    ],
)
def test_subcommand_help(command: str, options: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for opt in options:
        assert opt in text, f"{command} --help does not mention {opt}"


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "train" in text and "prune" in text


def _assert_clean_error(capsys: pytest.CaptureFixture, tmp_path: Path, *needles: str) -> None:
    # the temporary folder's name contains the test id: keep it out of the needle search
    err = capsys.readouterr().err.replace(str(tmp_path), "<tmp>")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def test_prune_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "missing.pt"
    code = _run(["prune", str(missing), "--data-dir", str(tmp_path), "--quiet"])
    assert code != 0
    _assert_clean_error(capsys, tmp_path, "<tmp>/missing.pt", "does not exist")


def test_prune_corrupt_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    code = _run(["prune", str(bad), "--data-dir", str(tmp_path), "--quiet"])
    assert code != 0
    _assert_clean_error(capsys, tmp_path, "<tmp>/bad.pt", "corrupt")


@pytest.mark.parametrize(
    ("fractions", "needle"),
    [
        ("1.5", "[0, 1)"),
        ("0,1.0", "[0, 1)"),
        ("-0.1", "[0, 1)"),
        ("nan", "[0, 1)"),
        ("a,b", "comma-separated"),
    ],
)
def test_prune_bad_fractions(
    fractions: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # rejected while parsing, before the (missing) checkpoint is even looked at
    code = _run(["prune", str(tmp_path / "x.pt"), "--fractions", fractions, "--quiet"])
    assert code != 0
    _assert_clean_error(capsys, tmp_path, "--fractions", needle)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--gamma", "1.5", "--reg", "targeted-weight"], "gamma"),
        (["--alpha", "2", "--reg", "dropout"], "alpha"),
        (["--lr", "-1"], "lr"),
        (["--reg", "nonsense"], "--reg"),
        (["--hidden", "10,x"], "integers"),
    ],
)
def test_train_bad_options(
    argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "never.pt"
    code = _run(
        ["train", "--epochs", "1", "--data-dir", str(tmp_path), "--out", str(out), "--quiet", *argv]
    )
    assert code != 0
    _assert_clean_error(capsys, tmp_path, needle)
    assert not out.exists()


def test_train_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "never.pt"
    code = _run(
        [
            "train",
            "--epochs",
            "1",
            "--data-dir",
            str(tmp_path / "nowhere"),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code != 0
    _assert_clean_error(capsys, tmp_path, "<tmp>/nowhere")
    assert not out.exists()


def test_download_failure_is_a_clear_error(tmp_path, monkeypatch, capsys):
    """No network: exit status 2 with the reason and the way out, no traceback, no partial file."""
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert main(["download", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "td-analysis download: error: Could not download CIFAR-10" in err
    assert "Name or service not known" in err and "TD_ANALYSIS_DATA" in err
    assert "Traceback" not in err
    assert list(tmp_path.rglob("*.tar.gz*")) == []


@pytest.mark.slow
def test_prune_output_names_keep_the_whole_stem(
    trained: Path, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``td_gamma0.75.pt`` and ``td_gamma0.5.pt`` used to both write ``td_gamma0.csv``."""
    import shutil

    common = ["--fractions", "0", "--data-dir", str(data_root), "--quiet"]
    for name in ("td_gamma0.75.pt", "td_gamma0.5.pt"):
        shutil.copy(trained, tmp_path / name)
        assert main(["prune", str(tmp_path / name), *common]) == 0
    assert main(["prune", str(tmp_path / "td_gamma0.5.pt"), "--split", "test", *common]) == 0
    assert main(["prune", str(trained), *common, "--out", str(tmp_path / "sweep_v1.2")]) == 0
    capsys.readouterr()
    written = sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".csv", ".json"))
    assert written == sorted(
        f"{stem}.{ext}"
        for stem in (
            # every option off its default is in the name: --fractions 0 too
            "td_gamma0.75-prune-weight-holdout-fractions0",
            "td_gamma0.5-prune-weight-holdout-fractions0",
            "td_gamma0.5-prune-weight-test-fractions0",
            "sweep_v1.2",
        )
        for ext in ("csv", "json")
    )
    rows = json.loads((tmp_path / "sweep_v1.2.json").read_text())
    assert [r["fraction"] for r in rows] == [0.0]
