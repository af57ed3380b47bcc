"""``td-analysis --help`` and argument errors answer before torch, scipy or matplotlib is imported.

Measured in a fresh process (the test process has torch already): the parser of every command is
built, help pages are printed and bad arguments refused, then ``sys.modules`` must hold none of
the heavy modules. A timing would depend on the machine; the imports do not (torch alone is
1.7 s of a 2-core VM's start-up). ``train --help`` reads the task registry, to print each
task's defaults: it is plain data (``tasks``, ``dataset_registry``, ``regulariser_config``), so
that page is as light as the others. The light modules' names must equal the heavy modules' own
(``td_analysis.catalog.names``).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from td_analysis.catalog import names

HEAVY = ("torch", "scipy", "matplotlib", "numpy", "pandas", "seaborn")
COMMANDS = (
    "download",
    "train",
    "prune",
    "estimate",
    "coadaptation",
    "reproduce",
    "explore",
    "spectrum",
)
ARGUMENT_ERRORS = [
    ["train", "--epochs", "0"],
    ["train", "--reg", "nonsense"],
    ["prune", "x.pt", "--fractions", "0.5,0.5"],
    ["prune", "x.pt", "--percent", "10,10"],
    ["estimate", "x.pt", "--fractions", "2"],
    ["coadaptation", "x.pt", "--bins", "0"],
    ["spectrum", "x.pt", "--which", "middle"],
    ["reproduce", "--ks", "0,25,25"],
    ["reproduce", "--seeds", "1,1"],
    ["download", "--dataset", "mnist"],
    ["no-such-command"],
]

SCRIPT = """
import contextlib, io, json, sys
from td_analysis.cli import main
codes = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            main(argv)
            codes.append([None, err.getvalue()])
        except SystemExit as exc:
            codes.append([exc.code, err.getvalue()])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in json.loads(sys.argv[2]))
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def _fresh(argvs: list[list[str]]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(argvs), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(proc.stdout.splitlines()[-1])


def test_help_of_every_command_imports_no_heavy_module() -> None:
    result = _fresh([["--help"], *([c, "--help"] for c in COMMANDS)])
    assert [code for code, _ in result["codes"]] == [0] * (len(COMMANDS) + 1)
    assert result["heavy"] == []


def test_argument_errors_import_no_heavy_module() -> None:
    result = _fresh(ARGUMENT_ERRORS)
    for argv, (code, err) in zip(ARGUMENT_ERRORS, result["codes"], strict=True):
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and "error:" in lines[0], (argv, err)
    assert result["heavy"] == []


def test_train_help_still_shows_every_task_default(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-task defaults are worked out when --help prints them (they need the registry)."""
    from td_analysis.cli import main
    from td_analysis.training.tasks import TASKS, ResNetTask, task_for_dataset

    monkeypatch.setenv("COLUMNS", "400")  # no line breaks inside "fashion-mlp"

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, task in TASKS.items():
        if isinstance(task, ResNetTask):  # trained by `reproduce --experiment`, not `train`
            assert name not in text
            continue
        assert f"{name} {task.protocol()['lr']}" in text
        # --dataset picks the first task on the data set, named once
        assert text.count(f"{task.dataset}: ") == 1
        assert f"{task.dataset}: {task_for_dataset(task.dataset).name}" in text


def test_unset_seed_and_device_are_train_config_defaults() -> None:
    """``--seed``/``--device`` default to None while parsing; the config gets TrainConfig's
    (which the help text states: 0, cpu)."""
    from td_analysis.cli import build_parser, config_from_args
    from td_analysis.training.loop import TrainConfig

    config = config_from_args(build_parser().parse_args(["train"]))
    assert (config.seed, config.device) == (TrainConfig().seed, TrainConfig().device) == (0, "cpu")
    config = config_from_args(build_parser().parse_args(["train", "--seed", "3"]))
    assert config.seed == 3


def test_light_names_equal_the_implementations() -> None:
    from td_analysis import data
    from td_analysis.curvature import spectrum
    from td_analysis.nn import dropout
    from td_analysis.pipelines import toy as experiments

    assert names.REGULARISERS == dropout.REGULARISERS
    assert names.DATASET_NAMES == tuple(data.DATASETS) == data.DATASET_NAMES
    assert (names.WHICH, names.TRACE_METHODS) == (spectrum.WHICH, spectrum.TRACE_METHODS)
    assert names.EXPERIMENTS == experiments.EXPERIMENTS
