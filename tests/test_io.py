"""Tests of ``td_analysis.utils.io``: staged result folders (all outputs or none) and atomic
files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from td_analysis.utils.io import staged_directory, staged_output


def listing(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path → text)."""
    return {
        str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def old_results(folder: Path) -> dict[str, str]:
    folder.mkdir()
    (folder / "README.md").write_text("how these were made")
    (folder / "figure1.png").write_text("old figure")
    (folder / "table1.md").write_text("old table")
    (folder / "fashion_mlp").mkdir()
    (folder / "fashion_mlp" / "pruning.md").write_text("other experiment")
    return listing(folder)


def test_failure_leaves_the_old_results_whole(tmp_path: Path) -> None:
    target = tmp_path / "figures"
    before = old_results(target)
    with pytest.raises(RuntimeError, match="killed"):
        with staged_directory(target) as staging:
            (staging / "figure1.png").write_text("new figure")  # written, then the run dies
            raise RuntimeError("killed after Figure 1")
    assert listing(target) == before  # no new figure1 next to the old table1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures"], "staging folder left"


def test_success_replaces_outputs_and_keeps_readme_and_subfolders(tmp_path: Path) -> None:
    target = tmp_path / "figures"
    old_results(target)
    (target / "explorer.png").write_text("another command's figure")
    with staged_directory(target, owned=("figure1*", "table1.*")) as staging:
        assert staging.parent == tmp_path and staging != target
        assert listing(target)["figure1.png"] == "old figure"  # untouched while running
        (staging / "figure1.png").write_text("new figure")
    assert listing(target) == {
        "README.md": "how these were made",  # not an output: kept
        "fashion_mlp/pruning.md": "other experiment",  # another command's results: kept
        "explorer.png": "another command's figure",  # not owned by this run: kept
        "figure1.png": "new figure",
        # the old table1.md is gone: this run did not write one, so it would be stale
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_by_default_every_file_but_the_readme_is_an_output(tmp_path: Path) -> None:
    target = tmp_path / "fashion_mlp"
    target.mkdir()
    (target / "README.md").write_text("kept")
    (target / "old.json").write_text("stale")
    with staged_directory(target) as staging:
        (staging / "new.json").write_text("{}")
    assert listing(target) == {"README.md": "kept", "new.json": "{}"}


def test_carried_files_are_not_rewritten_in_the_old_folder(tmp_path: Path) -> None:
    """Carried files are hard links: replacing one by rename leaves the old folder's copy."""
    target = tmp_path / "figures"
    old_results(target)
    with pytest.raises(RuntimeError):
        with staged_directory(target, owned=("figure1*",)) as staging:
            from td_analysis.utils.io import atomic_write_text

            atomic_write_text(staging / "README.md", "rewritten")
            atomic_write_text(staging / "fashion_mlp" / "pruning.md", "rewritten")
            raise RuntimeError
    assert listing(target)["README.md"] == "how these were made"
    assert listing(target)["fashion_mlp/pruning.md"] == "other experiment"


def test_new_target_is_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    with staged_directory(target) as staging:
        (staging / "x.json").write_text("{}")
    assert listing(target) == {"x.json": "{}"}


def test_target_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "figures"
    target.write_text("a file")
    with pytest.raises(NotADirectoryError):
        with staged_directory(target):
            pass
    assert target.read_text() == "a file"


def test_staged_output_decorator_rebinds_the_folder_argument(tmp_path: Path) -> None:
    seen = []

    @staged_output("out_dir")
    def run(n: int, *, out_dir: Path = tmp_path / "default", fail: bool = False) -> int:
        seen.append(out_dir)
        (Path(out_dir) / "n.txt").write_text(str(n))
        if fail:
            raise KeyboardInterrupt
        return n

    assert run(1, out_dir=tmp_path / "out") == 1
    assert seen[-1] != tmp_path / "out" and listing(tmp_path / "out") == {"n.txt": "1"}
    with pytest.raises(KeyboardInterrupt):
        run(2, out_dir=tmp_path / "out", fail=True)
    assert listing(tmp_path / "out") == {"n.txt": "1"}
    assert run(3) == 3 and listing(tmp_path / "default") == {"n.txt": "3"}
    with pytest.raises(TypeError, match="no argument"):
        staged_output("nope")(lambda out_dir: None)


def test_killed_process_leaves_the_old_results_whole(tmp_path: Path) -> None:
    """A real SIGKILL in the middle of writing (no Python cleanup runs at all)."""
    target = tmp_path / "figures"
    before = old_results(target)
    script = textwrap.dedent(
        f"""
        import os, signal
        from td_analysis.utils.io import staged_directory
        with staged_directory({str(target)!r}) as staging:
            (staging / "figure1.png").write_text("new figure")
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False)
    assert proc.returncode == -9
    assert listing(target) == before
    # the killed run's staging folder is left; the next run removes it (its process is gone)
    (left,) = [p for p in tmp_path.iterdir() if p.name.startswith(".figures.staging-")]
    with staged_directory(target) as staging:
        (staging / "figure1.png").write_text("newer figure")
    assert not left.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures"]


DEAD = 2**22 + 12345  # above Linux's default pid_max (4,194,304 is the largest allowed)


def _dead_pid() -> int:
    pid = DEAD
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except OSError:
            pass
        pid += 1


def test_stale_leftovers_go_live_ones_and_foreign_files_stay(tmp_path: Path) -> None:
    """What a SIGKILL left (pid gone, or no pid and older than an hour) is removed by the next
    write of the same target; a live process's (a concurrent run) and the user's files stay."""
    from td_analysis.utils.io import STALE_SECONDS, atomic_write_text

    dead, old = _dead_pid(), os.path.getmtime(tmp_path) - STALE_SECONDS - 60
    entries = {
        f".x.json.{dead}-abc.tmp": "gone",  # a killed writer's temporary file
        f".x.json.{os.getpid()}-def.tmp": "stays",  # a live writer's
        ".x.json.legacy.tmp": "gone",  # no pid, old
        ".x.json.recent.tmp": "stays",  # no pid, new: maybe a writer of an older version
        ".x.json.notes": "stays",  # the user's hidden file: not a temporary file
    }
    for name in entries:
        (tmp_path / name).write_text(name)
    os.utime(tmp_path / ".x.json.legacy.tmp", (old, old))
    atomic_write_text(tmp_path / "x.json", "{}")
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"x.json", *(n for n, what in entries.items() if what == "stays")}
    for name, what in {
        f".out.staging-{dead}-a": "gone",
        f".out.old-{dead}-b": "gone",
        f".out.staging-{os.getpid()}-c": "stays",
        ".out.staging-legacy": "gone",
    }.items():
        (tmp_path / name).mkdir()
        if name.endswith("legacy"):
            os.utime(tmp_path / name, (old, old))
        entries[name] = what
    with staged_directory(tmp_path / "out") as staging:
        (staging / "r.txt").write_text("r")
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"x.json", "out", *(n for n, what in entries.items() if what == "stays")}
