"""Tests of ``td_analysis.data``: real CIFAR-10 facts, corrupt files, safe extraction, download.

Real-data tests compare against facts that do not come from the code under test: the raw pickles
read here with plain ``pickle``, numpy statistics computed here, and published CIFAR-10 numbers
(5,000 images per class in training, 1,000 in test, channel means 0.4914/0.4822/0.4465).
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from td_analysis import data as D

# ------------------------------------------------------------------------------------------------
# Helpers: tiny fake CIFAR-10 folders and archives
# ------------------------------------------------------------------------------------------------

ROWS = 20  # rows per fake batch


def _fake_batch(rows: int, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    return {
        "batch_label": f"fake batch {seed}",
        "labels": [int(v) for v in rng.integers(0, 10, size=rows)],
        "data": rng.integers(0, 256, size=(rows, 3072), dtype=np.uint8),
        "filenames": [f"img_{seed}_{i}.png" for i in range(rows)],
    }


def _write_pickle(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_fake_cifar(folder: Path, rows: int = ROWS, bytes_keys: bool = False) -> dict[str, dict]:
    """Write a fake ``cifar-10-batches-py`` into ``folder``; return the batches written."""
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for seed, name in enumerate((*D.TRAIN_FILES, D.TEST_FILE), start=1):
        batch = _fake_batch(rows, seed)
        batches[name] = batch
        obj = {k.encode(): v for k, v in batch.items()} if bytes_keys else batch
        _write_pickle(folder / name, obj)
    _write_pickle(folder / "batches.meta", {"label_names": list(D.CLASS_NAMES)})
    return batches


def make_fake_archive(workdir: Path) -> tuple[Path, str, dict[str, dict]]:
    """A small fake ``cifar-10-python.tar.gz`` in ``workdir/src``: (path, md5, batches)."""
    src = workdir / "src"
    batches = write_fake_cifar(src / D.BATCHES_DIR)
    archive = src / D.ARCHIVE_NAME
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src / D.BATCHES_DIR, arcname=D.BATCHES_DIR)
    return archive, hashlib.md5(archive.read_bytes()).hexdigest(), batches


def _tar_with(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w") as tf:
        for info in members:
            if info.isfile():
                payload = b"payload"
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
            else:
                tf.addfile(info)
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ------------------------------------------------------------------------------------------------
# Real CIFAR-10 (TD_ANALYSIS_DATA)
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw_pickles(data_root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each real batch read here with plain pickle (independent of the code under test)."""
    folder = data_root / D.BATCHES_DIR
    out = {}
    for name in (*D.TRAIN_FILES, D.TEST_FILE):
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        batch = {(k.decode() if isinstance(k, bytes) else k): v for k, v in batch.items()}
        out[name] = (np.asarray(batch["data"]), np.asarray(batch["labels"]))
    return out


@pytest.fixture(scope="module")
def raw_train(raw_pickles: dict) -> tuple[np.ndarray, np.ndarray]:
    data = np.concatenate([raw_pickles[n][0] for n in D.TRAIN_FILES])
    labels = np.concatenate([raw_pickles[n][1] for n in D.TRAIN_FILES])
    return data, labels


@pytest.mark.parametrize(
    ("split", "count"),
    [("train", 40_000), ("holdout", 10_000), ("train-full", 50_000), ("test", 10_000)],
)
def test_real_split_sizes_and_types(data_root: Path, split: str, count: int) -> None:
    x, y = D.load_cifar10(data_root, split=split, preprocessing="raw")
    assert x.shape == (count, 3072)
    assert x.dtype == torch.float32
    assert y.shape == (count,)
    assert y.dtype == torch.int64
    assert int(y.min()) == 0 and int(y.max()) == 9
    assert float(x.min()) >= 0 and float(x.max()) <= 255


def test_real_class_balance(data_root: Path) -> None:
    _, y_train = D.load_cifar10_uint8(data_root, split="train-full")
    _, y_test = D.load_cifar10_uint8(data_root, split="test")
    assert np.bincount(y_train, minlength=10).tolist() == [5000] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [1000] * 10


def test_real_root_forms_are_equivalent(data_root: Path) -> None:
    folder = data_root / D.BATCHES_DIR
    assert D.find_cifar10(data_root) == folder
    assert D.find_cifar10(folder) == folder
    _, y1 = D.load_cifar10_uint8(folder, split="test")
    _, y2 = D.load_cifar10_uint8(str(data_root), split="test")
    assert np.array_equal(y1, y2)


def test_split_indices_partition_and_reproducible() -> None:
    train, holdout = D.split_indices(50_000, 0.2, 0)
    assert len(train) == 40_000 and len(holdout) == 10_000
    assert np.intersect1d(train, holdout).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, holdout])), np.arange(50_000))
    # independent definition: first 80% of default_rng(seed).permutation(n)
    perm = np.random.default_rng(0).permutation(50_000)
    assert np.array_equal(train, perm[:40_000]) and np.array_equal(holdout, perm[40_000:])
    again = D.split_indices(50_000, 0.2, 0)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], holdout)
    other = D.split_indices(50_000, 0.2, 1)
    assert not np.array_equal(other[1], holdout)
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="holdout_fraction"):
            D.split_indices(100, bad, 0)


def test_real_train_holdout_rows_come_from_the_split(data_root: Path, raw_train: tuple) -> None:
    data, labels = raw_train
    train_idx, holdout_idx = D.split_indices(50_000, 0.2, 0)
    x_tr, y_tr = D.load_cifar10_uint8(data_root, split="train")
    x_ho, y_ho = D.load_cifar10_uint8(data_root, split="holdout")
    assert np.array_equal(y_tr, labels[train_idx])
    assert np.array_equal(y_ho, labels[holdout_idx])
    assert np.array_equal(x_tr[:50], data[train_idx[:50]])
    assert np.array_equal(x_ho[-50:], data[holdout_idx[-50:]])
    # a different seed gives a different, still complete split
    _, y_ho1 = D.load_cifar10_uint8(data_root, split="holdout", split_seed=1)
    assert np.array_equal(y_ho1, labels[D.split_indices(50_000, 0.2, 1)[1]])


def test_real_raw_pixels_equal_pickle_bytes(data_root: Path, raw_pickles: dict) -> None:
    x, y = D.load_cifar10(data_root, split="train-full", preprocessing="raw")
    b1, l1 = raw_pickles["data_batch_1"]
    b2, _ = raw_pickles["data_batch_2"]
    b5, l5 = raw_pickles["data_batch_5"]
    assert torch.equal(x[:5], torch.from_numpy(b1[:5].astype(np.float32)))
    assert torch.equal(x[10_000], torch.from_numpy(b2[0].astype(np.float32)))
    assert torch.equal(x[-1], torch.from_numpy(b5[-1].astype(np.float32)))
    assert y[:10_000].tolist() == l1.tolist() and y[-10_000:].tolist() == l5.tolist()
    del x
    xt, yt = D.load_cifar10(data_root, split="test", preprocessing="unit")
    tb, tl = raw_pickles["test_batch"]
    assert torch.allclose(xt[:5], torch.from_numpy(tb[:5].astype(np.float32) / 255.0))
    assert yt.tolist() == tl.tolist()


def test_real_channel_stats_and_standardize(data_root: Path, raw_train: tuple) -> None:
    data, _ = raw_train
    # independent per-channel mean/std in 0-1 units, in float64, chunked to bound memory
    s1 = np.zeros(3)
    s2 = np.zeros(3)
    for start in range(0, len(data), 5000):
        block = data[start : start + 5000].reshape(-1, 3, 1024).astype(np.float64) / 255.0
        s1 += block.sum(axis=(0, 2))
        s2 += (block**2).sum(axis=(0, 2))
    count = len(data) * 1024
    np_mean = s1 / count
    np_std = np.sqrt(s2 / count - np_mean**2)

    mean, std = D.cifar10_channel_stats(data_root)
    assert mean.shape == (3,) and std.shape == (3,)
    assert np.allclose(mean.numpy(), np_mean, atol=1e-6)
    assert np.allclose(std.numpy(), np_std, atol=1e-6)
    assert np.allclose(mean.numpy(), [0.4914, 0.4822, 0.4465], atol=6e-5)
    assert np.allclose(std.numpy(), [0.2470, 0.2435, 0.2616], atol=6e-5)

    x, _ = D.load_cifar10(data_root, split="train-full", preprocessing="standardize")
    planes = x.view(-1, 3, 1024)
    std_z, mean_z = torch.std_mean(planes, dim=(0, 2), correction=0)
    assert torch.allclose(mean_z, torch.zeros(3), atol=1e-4)
    assert torch.allclose(std_z, torch.ones(3), atol=1e-4)
    expected = (data[:8].reshape(8, 3, 1024) / 255.0 - np_mean[None, :, None]) / np_std[
        None, :, None
    ]
    assert np.allclose(x[:8].numpy(), expected.reshape(8, 3072), atol=1e-4)
    del x, planes
    # the test split is standardized with the *training* statistics
    xt, _ = D.load_cifar10(data_root, split="test")
    raw_t, _ = D.load_cifar10_uint8(data_root, split="test")
    expected_t = (raw_t[:4].reshape(4, 3, 1024) / 255.0 - np_mean[None, :, None]) / np_std[
        None, :, None
    ]
    assert np.allclose(xt[:4].numpy(), expected_t.reshape(4, 3072), atol=1e-4)


# ------------------------------------------------------------------------------------------------
# Fake folders: loading, caching, validation
# ------------------------------------------------------------------------------------------------


def test_fake_folder_loads_in_official_order(tmp_path: Path) -> None:
    batches = write_fake_cifar(tmp_path / D.BATCHES_DIR)
    x, y = D.load_cifar10(tmp_path, split="train-full", preprocessing="raw")
    expected = np.concatenate([batches[n]["data"] for n in D.TRAIN_FILES])
    assert torch.equal(x, torch.from_numpy(expected.astype(np.float32)))
    assert y.tolist() == sum((batches[n]["labels"] for n in D.TRAIN_FILES), [])
    xt, yt = D.load_cifar10(tmp_path, split="test", preprocessing="raw")
    assert torch.equal(xt, torch.from_numpy(batches["test_batch"]["data"].astype(np.float32)))
    assert yt.tolist() == batches["test_batch"]["labels"]
    x_tr, _ = D.load_cifar10(tmp_path, split="train", preprocessing="raw")
    x_ho, _ = D.load_cifar10(tmp_path, split="holdout", preprocessing="raw")
    assert len(x_tr) == 80 and len(x_ho) == 20
    tr_idx, ho_idx = D.split_indices(5 * ROWS, 0.2, 0)
    assert torch.equal(x_tr, x[torch.from_numpy(tr_idx)])
    assert torch.equal(x_ho, x[torch.from_numpy(ho_idx)])


def test_bytes_keyed_pickles_are_accepted(tmp_path: Path) -> None:
    batches = write_fake_cifar(tmp_path, bytes_keys=True)
    raw = pickle.loads((tmp_path / "data_batch_1").read_bytes(), encoding="bytes")
    assert b"data" in raw  # the fixture really has bytes keys
    x, y = D.load_cifar10(tmp_path, split="test", preprocessing="raw")
    assert torch.equal(x, torch.from_numpy(batches["test_batch"]["data"].astype(np.float32)))
    assert y.tolist() == batches["test_batch"]["labels"]


def test_unit_and_standardize_on_fake_data(tmp_path: Path) -> None:
    batches = write_fake_cifar(tmp_path)
    train = np.concatenate([batches[n]["data"] for n in D.TRAIN_FILES]).astype(np.float64)
    planes = train.reshape(-1, 3, 1024)
    mean = planes.mean(axis=(0, 2))
    std = planes.std(axis=(0, 2))
    x_unit, _ = D.load_cifar10(tmp_path, split="test", preprocessing="unit")
    test = batches["test_batch"]["data"].astype(np.float64)
    assert np.allclose(x_unit.numpy(), test / 255.0, atol=1e-6)
    x_std, _ = D.load_cifar10(tmp_path, split="test", preprocessing="standardize")
    expected = (test.reshape(-1, 3, 1024) - mean[None, :, None]) / std[None, :, None]
    assert np.allclose(x_std.numpy(), expected.reshape(-1, 3072), atol=1e-5)
    m, s = D.cifar10_channel_stats(tmp_path)
    assert np.allclose(m.numpy(), mean / 255.0, atol=1e-6)
    assert np.allclose(s.numpy(), std / 255.0, atol=1e-6)


def test_returned_tensors_are_fresh_and_cache_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = write_fake_cifar(tmp_path)
    x1, y1 = D.load_cifar10(tmp_path, split="train-full", preprocessing="raw")
    x1.fill_(-1.0)
    y1.fill_(-1)
    u8, _ = D.load_cifar10_uint8(tmp_path, split="test")
    u8[:] = 0

    def boom(path: Path) -> None:
        raise AssertionError(f"re-read {path} although it is cached")

    monkeypatch.setattr(D, "_read_batch_file", boom)
    x2, y2 = D.load_cifar10(tmp_path, split="train-full", preprocessing="raw")
    assert float(x2.min()) >= 0 and int(y2.min()) >= 0  # the mutation did not leak
    u8b, _ = D.load_cifar10_uint8(tmp_path, split="test")
    assert np.array_equal(u8b, batches["test_batch"]["data"])
    monkeypatch.undo()

    # a changed file (new mtime/size) is read again
    new = _fake_batch(ROWS + 1, 99)
    _write_pickle(tmp_path / D.TEST_FILE, new)
    os.utime(tmp_path / D.TEST_FILE, ns=(1_000_000_000, 1_000_000_000))
    x3, y3 = D.load_cifar10(tmp_path, split="test", preprocessing="raw")
    assert x3.shape == (ROWS + 1, 3072) and y3.tolist() == new["labels"]


def test_unknown_split_or_preprocessing(tmp_path: Path) -> None:
    write_fake_cifar(tmp_path)
    with pytest.raises(ValueError, match="train, holdout, train-full, test"):
        D.load_cifar10(tmp_path, split="validation")
    with pytest.raises(ValueError, match="standardize, unit, raw"):
        D.load_cifar10(tmp_path, preprocessing="zca")


def test_missing_batch_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / D.BATCHES_DIR
    write_fake_cifar(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3") as info:
        D.load_cifar10(tmp_path, split="train")
    assert str(folder) in str(info.value)
    # the test split does not need data_batch_3
    D.load_cifar10(tmp_path, split="test", preprocessing="raw")


def test_truncated_pickle(tmp_path: Path) -> None:
    write_fake_cifar(tmp_path)
    path = tmp_path / "data_batch_3"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(D.DataError, match="data_batch_3 is truncated or not a CIFAR-10 pickle"):
        D.load_cifar10(tmp_path, split="train-full")


def test_not_a_pickle(tmp_path: Path) -> None:
    write_fake_cifar(tmp_path)
    (tmp_path / "test_batch").write_text("hello, not a pickle")
    with pytest.raises(D.DataError, match="test_batch is truncated or not a CIFAR-10 pickle"):
        D.load_cifar10(tmp_path, split="test", preprocessing="raw")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.update(data=b["data"][:, :3000]), r"shape \(N, 3072\).*\(20, 3000\)"),
        (lambda b: b.update(data=b["data"].reshape(20, 3, 32, 32)), r"shape \(N, 3072\)"),
        (lambda b: b.update(data=b["data"].astype(np.float32)), "dtype uint8, got float32"),
        (lambda b: b.update(labels=b["labels"][:-1]), "19 labels for 20 images"),
        (lambda b: b["labels"].__setitem__(4, 10), r"labels must be in 0\.\.9.*index 4"),
        (lambda b: b["labels"].__setitem__(0, -1), r"labels must be in 0\.\.9"),
        (lambda b: b.pop("labels"), r"missing key\(s\) \['labels'\]"),
        (lambda b: b.update(labels=["cat"] * 20), "'labels' must be a flat list of integers"),
    ],
    ids=["columns", "4d", "dtype", "count", "label10", "label-1", "nokey", "strlabels"],
)
def test_invalid_batch_contents(tmp_path: Path, mutate, message: str) -> None:
    batches = write_fake_cifar(tmp_path)
    bad = dict(batches["data_batch_2"])
    bad["labels"] = list(bad["labels"])
    mutate(bad)
    _write_pickle(tmp_path / "data_batch_2", bad)
    with pytest.raises(D.DataError, match=message) as info:
        D.load_cifar10(tmp_path, split="train")
    assert "data_batch_2" in str(info.value)


def test_pickle_with_code_is_refused(tmp_path: Path) -> None:
    write_fake_cifar(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    _write_pickle(tmp_path / "test_batch", {"data": Evil(), "labels": []})
    with pytest.raises(D.DataError, match="not allowed"):
        D.load_cifar10(tmp_path, split="test")
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------
# Locating the data
# ------------------------------------------------------------------------------------------------


def test_default_and_resolved_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TD_ANALYSIS_DATA", str(tmp_path / "env"))
    assert D.default_data_root() == tmp_path / "env"
    assert D.resolve_data_root(None) == tmp_path / "env"
    assert D.resolve_data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert D.resolve_data_root(str(tmp_path)) == tmp_path
    monkeypatch.delenv("TD_ANALYSIS_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert D.default_data_root() == tmp_path / "xdg" / "td_analysis"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert D.default_data_root() == tmp_path / "home" / ".cache" / "td_analysis"


def test_not_found_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError) as info:
        D.find_cifar10(tmp_path / "nowhere")
    text = str(info.value)
    assert str(tmp_path / "nowhere") in text
    assert str(tmp_path / "nowhere" / D.BATCHES_DIR) in text
    assert "td-analysis download" in text and "TD_ANALYSIS_DATA" in text and "--data-dir" in text
    monkeypatch.setenv("TD_ANALYSIS_DATA", str(tmp_path / "envdir"))
    with pytest.raises(FileNotFoundError, match="envdir"):
        D.load_cifar10()
    assert list(tmp_path.iterdir()) == []  # looking creates nothing


def test_find_extracts_archive_in_folder_and_by_path(tmp_path: Path) -> None:
    archive, md5, batches = make_fake_archive(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    (root / D.ARCHIVE_NAME).write_bytes(archive.read_bytes())
    found = D.find_cifar10(root, md5=md5)
    assert found == root / D.BATCHES_DIR
    assert sorted(p.name for p in root.iterdir()) == sorted([D.ARCHIVE_NAME, D.BATCHES_DIR])
    x, y = D.load_cifar10(root, split="test", preprocessing="raw")
    assert torch.equal(x, torch.from_numpy(batches["test_batch"]["data"].astype(np.float32)))
    assert y.tolist() == batches["test_batch"]["labels"]
    # given the archive path itself: extracted beside it
    other = tmp_path / "other"
    other.mkdir()
    (other / "my-copy.tar.gz").write_bytes(archive.read_bytes())
    assert D.find_cifar10(other / "my-copy.tar.gz", md5=md5) == other / D.BATCHES_DIR
    assert (other / D.BATCHES_DIR / "data_batch_5").is_file()


def test_find_refuses_archive_with_wrong_md5(tmp_path: Path) -> None:
    archive, md5, _ = make_fake_archive(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    (root / D.ARCHIVE_NAME).write_bytes(archive.read_bytes())
    with pytest.raises(D.DataError, match=f"{md5}.*expected {D.CIFAR10_MD5}"):
        D.find_cifar10(root)  # default: the official md5, which the fake does not have
    assert _all_files(root) == [D.ARCHIVE_NAME]


def test_find_truncated_archive_leaves_nothing(tmp_path: Path) -> None:
    archive, _, _ = make_fake_archive(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    blob = archive.read_bytes()[: archive.stat().st_size // 2]
    (root / D.ARCHIVE_NAME).write_bytes(blob)
    with pytest.raises(D.DataError):
        D.find_cifar10(root, md5=hashlib.md5(blob).hexdigest())
    assert _all_files(root) == [D.ARCHIVE_NAME]


# ------------------------------------------------------------------------------------------------
# Safe extraction
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        lambda t: _file("../evil"),
        lambda t: _file("sub/../../evil"),
        lambda t: _file(str(t / "evil")),  # absolute path
        lambda t: _link("link", "../evil"),
        lambda t: _link("sub/link", "../../evil"),
        lambda t: _link("link", str(t / "evil")),
        lambda t: _link("hard", "../evil", tarfile.LNKTYPE),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink", "nested-symlink", "abs-symlink", "hard"],
)
def test_extract_refuses_escaping_members(tmp_path: Path, bad) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    member = bad(tmp_path)
    archive = _tar_with(tmp_path / "bad.tar", [_file("ok.txt"), member])
    with tarfile.open(archive) as tf:  # the archive really holds the hostile name
        assert member.name in tf.getnames()
    with pytest.raises(D.UnsafeArchiveError, match="Refusing to extract"):
        D.extract_archive(archive, dest)
    assert list(dest.iterdir()) == []  # nothing written inside, not even the good member
    assert not (tmp_path / "evil").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar", "dest"]


def test_extract_allows_internal_links(tmp_path: Path) -> None:
    archive = _tar_with(tmp_path / "ok.tar", [_file("top/a.txt"), _link("top/b.txt", "a.txt")])
    dest = D.extract_archive(archive, tmp_path / "dest")
    assert (dest / "top" / "b.txt").read_bytes() == b"payload"
    assert [p.name for p in dest.iterdir()] == ["top"]  # no temporary folder left


# ------------------------------------------------------------------------------------------------
# Download from a local HTTP server
# ------------------------------------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # silence the test output
        pass

    def do_GET(self) -> None:
        if self.path == "/truncated.tar.gz":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str, dict]]:
    """Serve a fake archive on 127.0.0.1; yields (base URL, md5, batches)."""
    archive, md5, batches = make_fake_archive(tmp_path / "served")
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_Handler, directory=str(archive.parent))
    )
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", md5, batches
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_download_verifies_and_extracts(tmp_path: Path, server: tuple) -> None:
    base, md5, batches = server
    dest = tmp_path / "dl"
    url = f"{base}/{D.ARCHIVE_NAME}"
    folder = D.download_cifar10(dest, url=url, md5=md5, progress=False)
    assert folder == dest / D.BATCHES_DIR
    assert sorted(p.name for p in dest.iterdir()) == sorted([D.ARCHIVE_NAME, D.BATCHES_DIR])
    assert hashlib.md5((dest / D.ARCHIVE_NAME).read_bytes()).hexdigest() == md5
    x, y = D.load_cifar10(dest, split="test", preprocessing="raw")
    assert torch.equal(x, torch.from_numpy(batches["test_batch"]["data"].astype(np.float32)))
    assert y.tolist() == batches["test_batch"]["labels"]
    # already there: no second download (a wrong URL is never contacted)
    assert D.download_cifar10(dest, url=f"{base}/missing", md5=md5) == folder


def test_find_with_download(tmp_path: Path, server: tuple) -> None:
    base, md5, _ = server
    dest = tmp_path / "new" / "root"
    url = f"{base}/{D.ARCHIVE_NAME}"
    assert D.find_cifar10(dest, download=True, url=url, md5=md5, progress=False) == (
        dest / D.BATCHES_DIR
    )


def test_download_md5_mismatch_leaves_nothing(tmp_path: Path, server: tuple) -> None:
    base, md5, _ = server
    dest = tmp_path / "dl"
    dest.mkdir()
    with pytest.raises(D.DataError) as info:
        D.download_cifar10(dest, url=f"{base}/{D.ARCHIVE_NAME}", md5="0" * 32, progress=False)
    assert "0" * 32 in str(info.value) and md5 in str(info.value)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("path", ["/nothing-here.tar.gz", "/truncated.tar.gz"])
def test_download_http_errors_leave_nothing(tmp_path: Path, server: tuple, path: str) -> None:
    base, md5, _ = server
    dest = tmp_path / "dl"
    dest.mkdir()
    url = base + path
    with pytest.raises(D.DownloadError) as info:
        D.download_cifar10(dest, url=url, md5=md5, progress=False)
    assert url in str(info.value)
    if "nothing" in path:
        assert "404" in str(info.value)
    assert list(dest.iterdir()) == []


def test_download_unreachable_host_names_url(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/cifar-10-python.tar.gz"  # discard port: connection refused
    with pytest.raises(D.DownloadError, match="127.0.0.1:9"):
        D.download_cifar10(tmp_path, url=url, md5="0" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []
