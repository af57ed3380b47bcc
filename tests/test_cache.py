"""Tests of ``td_analysis.utils.cache``: content-keyed, atomic on-disk caching of results."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch

from td_analysis.nets.models import DenseNet
from td_analysis.utils.cache import cached, default_cache_dir, fingerprint


def make(seed: int = 0):
    torch.manual_seed(seed)
    model = DenseNet(6, (4,), 3).double()
    x = torch.randn(16, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    return model, x, y


class Counter:
    """A compute function that counts its calls and returns a result derived from the model."""

    def __init__(self, model):
        self.model = model
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.model.layers[0].weight.detach().sum(0) * 2.0


def entries(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_computes_once_then_loads(tmp_path):
    model, x, y = make()
    f = Counter(model)
    a = cached("thing", f, model, x, y, "sum", cache_dir=tmp_path)
    assert f.calls == 1
    files = entries(tmp_path)
    assert len(files) == 1 and files[0].startswith("thing-") and files[0].endswith(".pt")
    b = cached("thing", f, model, x, y, "sum", cache_dir=tmp_path)
    assert f.calls == 1  # loaded, not recomputed
    assert torch.equal(a, b) and b.dtype == a.dtype
    assert entries(tmp_path) == files  # nothing else written, no temporary files left


def test_dict_results_roundtrip(tmp_path):
    model, x, y = make()
    calls = []

    def compute():
        calls.append(1)
        return {"H": torch.eye(3, dtype=torch.float64), "g": torch.arange(3.0)}

    a = cached("d", compute, model, x, cache_dir=tmp_path)
    b = cached("d", compute, model, x, cache_dir=tmp_path)
    assert len(calls) == 1
    assert set(b) == {"H", "g"}
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_changed_model_data_or_args_recompute(tmp_path):
    model, x, y = make()
    f = Counter(model)
    cached("r", f, model, x, y, 3, cache_dir=tmp_path)
    assert f.calls == 1

    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.layers[1].weight[0, 0] += 1e-9  # one weight, one tiny change
    g = Counter(changed)
    cached("r", g, changed, x, y, 3, cache_dir=tmp_path)
    assert g.calls == 1

    x2 = x.clone()
    x2[5, 2] += 1.0
    cached("r", f, model, x2, y, 3, cache_dir=tmp_path)
    assert f.calls == 2
    y2 = y.clone()
    y2[0] = (y2[0] + 1) % 3
    cached("r", f, model, x, y2, 3, cache_dir=tmp_path)
    assert f.calls == 3
    cached("r", f, model, x, y, 4, cache_dir=tmp_path)  # another argument
    assert f.calls == 4
    cached("other", f, model, x, y, 3, cache_dir=tmp_path)  # another name
    assert f.calls == 5
    assert len(entries(tmp_path)) == 6
    # and the original key still hits
    cached("r", f, model, x, y, 3, cache_dir=tmp_path)
    assert f.calls == 5


def test_corrupt_entry_is_recomputed(tmp_path):
    model, x, y = make()
    f = Counter(model)
    good = cached("c", f, model, x, cache_dir=tmp_path)
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"not a torch file" * 10)
    again = cached("c", f, model, x, cache_dir=tmp_path)
    assert f.calls == 2
    assert torch.equal(again, good)
    # the entry was rewritten and is valid again
    cached("c", f, model, x, cache_dir=tmp_path)
    assert f.calls == 2
    path.write_bytes(b"")  # truncated file
    cached("c", f, model, x, cache_dir=tmp_path)
    assert f.calls == 3
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_disabled_never_writes(tmp_path):
    model, x, y = make()
    f = Counter(model)
    folder = tmp_path / "cache"
    for _ in range(3):
        cached("n", f, model, x, cache_dir=folder, enabled=False)
    assert f.calls == 3
    assert not folder.exists() or entries(folder) == []


def test_failed_compute_writes_nothing(tmp_path):
    model, x, _ = make()

    def boom():
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        cached("b", boom, model, x, cache_dir=tmp_path)
    assert entries(tmp_path) == []


@pytest.mark.parametrize("value", [[torch.ones(2)], {"a": 1.0}, {1: torch.ones(2)}, 3.0])
def test_unstorable_value_is_refused(tmp_path, value):
    """A value the weights-only loader could not read back is refused, not silently recomputed."""
    model, x, _ = make()
    with pytest.raises(TypeError, match="only a tensor or a dict"):
        cached("u", lambda: value, model, x, cache_dir=tmp_path)
    assert entries(tmp_path) == []


def test_default_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TD_ANALYSIS_CACHE", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("TD_ANALYSIS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "td_analysis" / "results"

    monkeypatch.setenv("TD_ANALYSIS_CACHE", str(tmp_path / "env"))
    model, x, _ = make()
    f = Counter(model)
    cached("e", f, model, x)  # cache_dir=None → the environment's folder
    cached("e", f, model, x)
    assert f.calls == 1
    assert len(entries(tmp_path / "env")) == 1


def test_explore_quick_keeps_its_checkpoints_under_runs_quick(monkeypatch):
    """``explore --quick`` trains into ``reproduce --quick``'s checkpoints, never ``runs/``."""
    from pathlib import Path

    from td_analysis.explore import explorer_folders, find_notebook

    monkeypatch.delenv("TD_ANALYSIS_RUNS", raising=False)
    root = Path(__file__).resolve().parents[1]
    assert explorer_folders(find_notebook(None))["runs"] == root / "runs"
    quick = explorer_folders(find_notebook(None), quick=True)["runs"]
    assert quick == root / "runs" / "quick" / "checkpoints"


def test_one_cache_folder_for_reproduce_explore_and_the_notebooks(tmp_path, monkeypatch):
    """``explore`` (and through it the Voilà kernel) and the notebooks resolve the cache with
    :func:`default_cache_dir`, as ``reproduce`` does: never ``<repo>/.cache/td_analysis``."""
    import json
    from pathlib import Path

    from td_analysis.explore import explorer_folders, find_notebook

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folders = explorer_folders(find_notebook(None))
    assert folders["cache"] == tmp_path / "xdg" / "td_analysis" / "results" == default_cache_dir()
    monkeypatch.setenv("TD_ANALYSIS_CACHE", str(tmp_path / "env"))
    assert explorer_folders(find_notebook(None))["cache"] == tmp_path / "env"
    notebooks = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        code = "".join(
            "".join(cell["source"])
            for cell in json.loads(path.read_text())["cells"]
            if cell["cell_type"] == "code"
        )
        assert '".cache"' not in code, path.name
        if "CACHE_DIR" in code:
            assert "default_cache_dir()" in code, path.name


def test_fingerprint_stable_and_content_based():
    model, x, y = make()
    fp = fingerprint(model, x, y, "sum", [1, 2], {"b": 1, "a": 2.5})
    assert fp == fingerprint(model, x, y, "sum", [1, 2], {"b": 1, "a": 2.5})
    assert len(fp) == 64 and all(c in "0123456789abcdef" for c in fp)
    # equal content, different objects; dict key order is irrelevant
    twin = fingerprint(
        copy.deepcopy(model), x.clone(), y.clone(), "sum", [1, 2], {"a": 2.5, "b": 1}
    )
    assert twin == fp
    # non-contiguous views hash their values
    t = torch.arange(12.0).reshape(3, 4)
    assert fingerprint(t.T) == fingerprint(t.T.contiguous())
    # any change matters: values, dtype, shape, arguments, order
    assert fingerprint(t) != fingerprint(t.double())
    assert fingerprint(t) != fingerprint(t.reshape(4, 3))
    assert fingerprint(t) != fingerprint(t + 1e-6)
    assert fingerprint(model, x) != fingerprint(x, model)
    assert fingerprint("a", "b") != fingerprint("ab")
    assert fingerprint(model) != fingerprint(make(1)[0])


def test_fingerprint_stable_across_processes(tmp_path):
    """No dependence on object ids or Python's per-process string hashing."""
    code = (
        "import torch\n"
        "from td_analysis.utils.cache import fingerprint\n"
        "from td_analysis.nets.models import DenseNet\n"
        "torch.manual_seed(3)\n"
        "m = DenseNet(6, (4,), 3)\n"
        "print(fingerprint('hessian', m, torch.arange(5.0), ['layers.1.weight'], 'sum',"
        " {'k': 1, 'a': [1.5, None]}))\n"
    )
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        res = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        outs.append(res.stdout.strip())
    torch.manual_seed(3)
    m = DenseNet(6, (4,), 3)
    here = fingerprint(
        "hessian", m, torch.arange(5.0), ["layers.1.weight"], "sum", {"k": 1, "a": [1.5, None]}
    )
    assert outs == [here, here]


def _entry(tmp_path):
    (path,) = tmp_path.iterdir()
    return path


def test_zeroed_entry_is_recomputed_never_used(tmp_path):
    """A file of zero bytes of the right length (a disk or sync failure) is not a result."""
    model, x, _ = make()
    f = Counter(model)
    good = cached("z", f, model, x, cache_dir=tmp_path)
    path = _entry(tmp_path)
    path.write_bytes(bytes(path.stat().st_size))
    again = cached("z", f, model, x, cache_dir=tmp_path)
    assert f.calls == 2 and torch.equal(again, good)


@pytest.mark.parametrize("how", ["zeroed payload", "changed payload", "missing checksum"])
def test_tampered_payload_fails_its_checksum(tmp_path, how):
    """A readable entry whose payload differs from what was stored is recomputed, not used:
    without the checksum a zeroed Hessian would silently draw Figure 1 from zeros."""
    model, x, _ = make()
    f = Counter(model)
    good = cached("t", f, model, x, cache_dir=tmp_path)
    path = _entry(tmp_path)
    entry = torch.load(path, weights_only=True)
    assert torch.equal(entry["value"], good)  # the file holds the value…
    assert entry["sha256"] == fingerprint(good)  # …and the checksum of exactly that value
    if how == "zeroed payload":
        entry["value"] = torch.zeros_like(good)
    elif how == "changed payload":
        entry["value"] = good.clone()
        entry["value"][0] += 1.0
    else:
        del entry["sha256"]
    torch.save(entry, path)
    again = cached("t", f, model, x, cache_dir=tmp_path)
    assert f.calls == 2
    assert torch.equal(again, good)
    assert torch.equal(torch.load(path, weights_only=True)["value"], good)  # rewritten


def test_entry_of_the_old_format_is_not_used(tmp_path):
    """A bare tensor under the entry's name (the format before checksums) is recomputed."""
    model, x, _ = make()
    f = Counter(model)
    good = cached("o", f, model, x, cache_dir=tmp_path)
    path = _entry(tmp_path)
    torch.save(torch.zeros_like(good), path)
    assert torch.equal(cached("o", f, model, x, cache_dir=tmp_path), good)
    assert f.calls == 2


def test_key_includes_the_code_version(tmp_path, monkeypatch):
    """A change to the package's code (a fix to the maths) never reuses an old result."""
    import td_analysis.utils.cache as cache_module

    model, x, _ = make()
    f = Counter(model)
    cached("v", f, model, x, cache_dir=tmp_path)
    cached("v", f, model, x, cache_dir=tmp_path)
    assert f.calls == 1
    monkeypatch.setattr(cache_module, "code_version", lambda: "0.1.0+fixed")
    cached("v", f, model, x, cache_dir=tmp_path)
    assert f.calls == 2
    assert len(entries(tmp_path)) == 2


def test_code_version_hashes_the_package_source(tmp_path):
    """Recomputed independently: SHA-256 over the package's .py files (path, then bytes)."""
    import hashlib
    from pathlib import Path

    import td_analysis
    from td_analysis.utils.cache import code_version

    code_version.cache_clear()  # computed once per process; the tree may have changed since
    package = Path(td_analysis.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    assert code_version() == f"{td_analysis.__version__}+{h.hexdigest()[:16]}"
