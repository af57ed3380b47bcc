"""The package's folders (issue #20): every module of the first, flat layout stays importable
from its old path as the very module at its new one, a class pickled under either path loads,
and ``python -m`` on an old path runs the module's command."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import td_analysis
from td_analysis.utils.moved import MOVED_MODULES

PACKAGE = Path(td_analysis.__file__).parent


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_old_path_is_the_new_module(old: str) -> None:
    new = importlib.import_module(MOVED_MODULES[old])
    assert importlib.import_module(old) is new
    assert sys.modules[old] is new
    assert new.__spec__.name == MOVED_MODULES[old]  # the alias does not rename the module
    assert getattr(td_analysis, old.rsplit(".", 1)[1]) is new


def test_no_flat_module_left_behind() -> None:
    """An old path is an alias, not a file: a second copy at the old place would shadow it."""
    for old, new in MOVED_MODULES.items():
        flat = PACKAGE / (old.split(".", 1)[1] + ".py")
        home = PACKAGE.joinpath(*new.split(".")[1:]).with_suffix(".py")
        assert home.is_file(), home
        assert not flat.exists(), flat


def test_top_level_is_folders() -> None:
    modules = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert modules == ["__init__", "explore"], modules


def test_pickles_of_old_paths_load() -> None:
    """A config pickled with the old module path (as checkpoints of the flat layout hold it)."""
    from td_analysis.training.config import TrainConfig

    data = pickle.dumps(TrainConfig(epochs=1), protocol=0)  # module paths as text lines
    old = data.replace(b"td_analysis.training.config", b"td_analysis.config")
    assert old != data
    assert pickle.loads(old) == TrainConfig(epochs=1)


def test_old_training_module_names() -> None:
    """``td_analysis.training`` was the dense loop's module: its names stay importable."""
    from td_analysis.training import loop

    for name in loop.__all__:
        assert getattr(importlib.import_module("td_analysis.training"), name) is getattr(loop, name)
    with pytest.raises(AttributeError, match="no attribute"):
        importlib.import_module("td_analysis.training").no_such_name  # noqa: B018


def test_python_m_old_path_runs_the_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "td_analysis.protocol_study", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


def test_file_formats_did_not_move() -> None:
    """The format tags written into checkpoints and cache entries name the formats, not the
    modules: files written before the move are read after it (a rewrite of module paths must
    leave them alone)."""
    from td_analysis.training.fit import FIT_CHECKPOINT_FORMAT
    from td_analysis.training.loop import CHECKPOINT_FORMAT
    from td_analysis.utils.cache import CACHE_FORMAT

    assert FIT_CHECKPOINT_FORMAT == "td_analysis.fit-checkpoint/1"
    assert CHECKPOINT_FORMAT == "td_analysis.checkpoint/1"
    assert CACHE_FORMAT == "td_analysis.cache/2"


def test_no_module_exceeds_800_lines() -> None:
    """Issue #20: a module that grows past 800 lines is split by concept."""
    import td_analysis

    root = Path(td_analysis.__file__).parent
    long = {
        str(p.relative_to(root)): n
        for p in root.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 800
    }
    assert not long, long


def test_no_module_imports_another_modules_private_names() -> None:
    """A name that another module needs is public where it lives (``from m import _x`` would
    tie the importer to m's internals): no ``from … import _name`` in the package."""
    import ast

    root = Path(td_analysis.__file__).parent
    found = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                found += [
                    f"{path.relative_to(root)}: {'.' * node.level}{node.module or ''}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not found, found
