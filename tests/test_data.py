"""Tests of ``td_analysis.data``: real CIFAR-10 facts, corrupt files, safe extraction, download.

Real-data tests compare against facts that do not come from the code under test: the raw pickles
read here with plain ``pickle``, numpy statistics computed here, and published CIFAR-10 numbers
(5,000 images per class in training, 1,000 in test, channel means 0.4914/0.4822/0.4465).
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import pickle
import struct
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from td_analysis import data as D
from td_analysis.data import cifar10, fashion_mnist, registry, splits

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

    monkeypatch.setattr(cifar10, "_read_batch_file", boom)
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


# ------------------------------------------------------------------------------------------------
# The registry
# ------------------------------------------------------------------------------------------------


def test_registry_metadata() -> None:
    assert D.DATASET_NAMES == ("cifar10", "fashion-mnist")
    cifar, fashion = D.dataset_info("cifar10"), D.dataset_info("fashion-mnist")
    assert (cifar.image_shape, cifar.num_features, cifar.num_classes) == ((3, 32, 32), 3072, 10)
    assert (fashion.image_shape, fashion.num_features, fashion.num_classes) == (
        (1, 28, 28),
        784,
        10,
    )
    assert cifar.class_names[0] == "airplane" and fashion.class_names[9] == "Ankle boot"
    assert cifar.default_preprocessing == "standardize" and fashion.default_preprocessing == "unit"
    for info, n_train in ((cifar, 50_000), (fashion, 60_000)):
        train, holdout = D.split_indices(n_train, 0.2, 0)
        assert info.split_sizes == {
            "train": len(train),
            "holdout": len(holdout),
            "train-full": n_train,
            "test": 10_000,
        }
        assert D.DATASETS[info.name] is info
    with pytest.raises(TypeError):
        D.DATASETS["mnist"] = cifar  # read-only


@pytest.mark.parametrize("bad", ["mnist", "CIFAR10", "fashion_mnist", ""])
def test_unknown_dataset_names_the_valid_ones(tmp_path: Path, bad: str) -> None:
    for call in (
        lambda: D.dataset_info(bad),
        lambda: D.load_dataset(bad, root=tmp_path),
        lambda: D.load_dataset_uint8(bad, root=tmp_path),
        lambda: D.find_dataset(bad, tmp_path),
        lambda: D.download_dataset(bad, tmp_path),
    ):
        with pytest.raises(ValueError, match=f"Unknown dataset '{bad}'; valid names: cifar10, "):
            call()
    assert list(tmp_path.iterdir()) == []


def test_load_dataset_cifar10_is_load_cifar10(tmp_path: Path) -> None:
    write_fake_cifar(tmp_path)
    for split in D.SPLITS:
        for prep in D.PREPROCESSINGS:
            a = D.load_cifar10(tmp_path, split=split, preprocessing=prep)
            b = D.load_dataset("cifar10", split, root=tmp_path, preprocessing=prep)
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    default = D.load_dataset("cifar10", "test", root=tmp_path)  # default: standardize
    assert torch.equal(default[0], D.load_cifar10(tmp_path, split="test")[0])
    with pytest.raises(ValueError, match="train, holdout, train-full, test"):
        D.load_dataset("cifar10", "validation", root=tmp_path)
    with pytest.raises(ValueError, match="standardize, unit, raw"):
        D.load_dataset("fashion-mnist", "test", root=tmp_path, preprocessing="zca")


# ------------------------------------------------------------------------------------------------
# Restricted unpickling of CIFAR-10 batches
# ------------------------------------------------------------------------------------------------


def _evil(marker: Path) -> list[tuple[str, object]]:
    class Reduce:
        def __init__(self, fn, *args):
            self.fn, self.args = fn, args

        def __reduce__(self):
            return (self.fn, self.args)

    touch = f"touch {marker}"
    return [
        ("system", Reduce(os.system, touch)),
        ("eval", Reduce(eval, f"open({str(marker)!r}, 'w')")),
        ("exec", Reduce(exec, f"open({str(marker)!r}, 'w')")),
        ("getattr", Reduce(getattr, Reduce(__import__, "os"), "system")),
        ("numpy.load", Reduce(np.load, str(marker))),
        ("open", Reduce(open, str(marker), "w")),
        ("rot13", Reduce(__import__("_codecs").encode, "text", "rot13")),
        ("zlib", Reduce(__import__("_codecs").encode, b"text", "zlib_codec")),
    ]


@pytest.mark.parametrize("kind", [k for k, _ in _evil(Path("x"))])
def test_malicious_pickles_are_refused(tmp_path: Path, kind: str) -> None:
    write_fake_cifar(tmp_path)
    marker = tmp_path / "pwned"
    payload = dict(_evil(marker))[kind]
    for protocol in (2, 5):
        blob = pickle.dumps({"data": payload, "labels": [0]}, protocol=protocol)
        (tmp_path / "test_batch").write_bytes(blob)
        with pytest.raises(D.DataError, match="not allowed") as info:
            D.load_cifar10(tmp_path, split="test")
        assert "test_batch" in str(info.value)
        assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("numpy", "load"),
        ("numpy.lib.format", "read_array"),
        ("numpy.dtypes", "_x"),
        ("numpy.dtypes", "np"),
        ("numpy._core.multiarray", "frombuffer"),
        ("numpy.core.multiarray", "_reconstruct_anything"),
        ("builtins", "__import__"),
        ("copyreg", "_reconstructor"),
        ("_codecs", "decode"),
    ],
)
def test_only_listed_globals_resolve(tmp_path: Path, module: str, name: str) -> None:
    """A bare GLOBAL opcode for anything outside the list is refused before it is imported."""
    write_fake_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b".")
    with pytest.raises(D.DataError, match=f"global '{module}.{name}' is not allowed"):
        D.load_cifar10(tmp_path, split="test")


def test_persistent_ids_are_refused(tmp_path: Path) -> None:
    write_fake_cifar(tmp_path)

    class WithPid(pickle.Pickler):
        def persistent_id(self, obj):
            return "pid" if isinstance(obj, str) and obj == "hook" else None

    buf = io.BytesIO()
    WithPid(buf, protocol=2).dump({"data": "hook", "labels": []})
    (tmp_path / "test_batch").write_bytes(buf.getvalue())
    with pytest.raises(D.DataError, match="persistent ids are not allowed"):
        D.load_cifar10(tmp_path, split="test")


def test_restricted_unpickler_reads_numpy_payloads(tmp_path: Path) -> None:
    """Protocol 2 (bytes through codecs.encode) and 5 (out-of-band-free _frombuffer) both load."""
    write_fake_cifar(tmp_path)
    batch = _fake_batch(ROWS, 7)
    batch["batch_label"] = b"bytes label"  # protocol 2 pickles bytes as _codecs.encode(…, latin1)
    for protocol in (2, 3, 4, 5):
        (tmp_path / "test_batch").write_bytes(pickle.dumps(batch, protocol=protocol))
        x, y = D.load_cifar10_uint8(tmp_path, split="test")
        assert np.array_equal(x, batch["data"]) and y.tolist() == batch["labels"]


# ------------------------------------------------------------------------------------------------
# Fashion-MNIST: helpers (an independent IDX encoder/decoder)
# ------------------------------------------------------------------------------------------------

ROLES = ("train-images", "train-labels", "test-images", "test-labels")


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """IDX encoding of a uint8 array: big-endian magic 0x08nd, dims, bytes (written here)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = 0x0800 | array.ndim if magic is None else magic
    dims = b"".join(struct.pack(">I", d) for d in array.shape)
    return struct.pack(">I", magic) + dims + array.tobytes()


def idx_decode(blob: bytes) -> np.ndarray:
    """Independent IDX decoder (numpy + struct), for the real files."""
    magic = struct.unpack(">I", blob[:4])[0]
    ndim = magic & 0xFF
    dims = struct.unpack(f">{ndim}I", blob[4 : 4 + 4 * ndim])
    return np.frombuffer(blob, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fake_fashion_arrays(
    n_train: int = 30, n_test: int = 10, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train-images": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train-labels": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "test-images": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test-labels": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }


def write_fake_fashion(
    folder: Path,
    arrays: dict[str, np.ndarray] | None = None,
    *,
    raw: dict[str, bytes] | None = None,
) -> dict[str, bytes]:
    """Write the four ``.gz`` files into ``folder``; return the decompressed bytes per role."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = fake_fashion_arrays() if arrays is None else arrays
    blobs = {role: idx_bytes(arrays[role]) for role in ROLES}
    blobs.update(raw or {})
    for role in ROLES:
        (folder / D.FASHION_MNIST_FILES[role].name).write_bytes(gzip.compress(blobs[role], mtime=0))
    return blobs


@pytest.fixture(autouse=True)
def _no_system_fashion(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Tests never see a real /usr/share/datasets copy unless they put one there themselves."""
    monkeypatch.setattr(
        registry, "SYSTEM_FASHION_MNIST_DIR", tmp_path_factory.mktemp("no-system") / "fm"
    )
    monkeypatch.delenv(D.FASHION_MNIST_MIRROR_ENV, raising=False)
    monkeypatch.delenv(D.CIFAR10_URL_ENV, raising=False)


@pytest.fixture
def accept(monkeypatch: pytest.MonkeyPatch):
    """``accept(blobs, gz=…)``: make ``blobs`` (decompressed bytes per role) the official data."""

    def patch(blobs: dict[str, bytes], gz: dict[str, bytes] | None = None) -> None:
        table = {}
        for role in ROLES:
            name = D.FASHION_MNIST_FILES[role].name
            gz_blob = gz[role] if gz else gzip.compress(blobs[role], mtime=0)
            table[role] = D.IdxFile(
                name,
                hashlib.md5(gz_blob).hexdigest(),
                hashlib.md5(blobs[role]).hexdigest(),
                len(blobs[role]),
            )
        monkeypatch.setattr(registry, "FASHION_MNIST_FILES", table)

    return patch


# ------------------------------------------------------------------------------------------------
# Fashion-MNIST: real files (TD_ANALYSIS_DATA)
# ------------------------------------------------------------------------------------------------

# md5 of the decompressed official files and their sizes, from the data set's distribution
PUBLISHED = {
    "train-images": ("f4a8712d7a061bf5bd6d2ca38dc4d50a", 47_040_016),
    "train-labels": ("9018921c3c673c538a1fc5bad174d6f9", 60_008),
    "test-images": ("8181f5470baa50b63fa0f6fddb340f0a", 7_840_016),
    "test-labels": ("15d484375f8d13e6eb1aabb0c3f46965", 10_008),
}


@pytest.fixture(scope="module")
def raw_fashion(data_root: Path) -> dict[str, bytes]:
    """The real files decompressed here with plain gzip (independent of the code under test)."""
    folder = data_root / "fashion-mnist"
    return {
        role: gzip.decompress((folder / D.FASHION_MNIST_FILES[role].name).read_bytes())
        for role in ROLES
    }


def test_real_fashion_files_match_published_md5(raw_fashion: dict[str, bytes]) -> None:
    for role in ROLES:
        md5, size = PUBLISHED[role]
        assert hashlib.md5(raw_fashion[role]).hexdigest() == md5
        assert len(raw_fashion[role]) == size
        assert (D.FASHION_MNIST_FILES[role].md5, D.FASHION_MNIST_FILES[role].size) == (md5, size)


@pytest.mark.parametrize(
    ("split", "count"),
    [("train", 48_000), ("holdout", 12_000), ("train-full", 60_000), ("test", 10_000)],
)
def test_real_fashion_split_sizes_and_types(data_root: Path, split: str, count: int) -> None:
    x, y = D.load_dataset("fashion-mnist", split, root=data_root)
    info = D.dataset_info("fashion-mnist")
    assert x.shape == (count, info.num_features) and count == info.split_sizes[split]
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and y.shape == (count,)
    assert int(y.min()) == 0 and int(y.max()) == 9
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0  # default "unit"


@pytest.mark.slow
def test_real_fashion_content_equals_independent_decode(
    data_root: Path, raw_fashion: dict[str, bytes]
) -> None:
    images = idx_decode(raw_fashion["train-images"]).reshape(60_000, 784)
    labels = idx_decode(raw_fashion["train-labels"]).astype(np.int64)
    t_images = idx_decode(raw_fashion["test-images"]).reshape(10_000, 784)
    t_labels = idx_decode(raw_fashion["test-labels"]).astype(np.int64)
    # published facts: 6,000 images per class in training, 1,000 in test
    assert np.bincount(labels).tolist() == [6000] * 10
    assert np.bincount(t_labels).tolist() == [1000] * 10

    u8, y = D.load_dataset_uint8("fashion-mnist", "train-full", root=data_root)
    assert np.array_equal(u8, images) and np.array_equal(y, labels)
    xt, yt = D.load_dataset("fashion-mnist", "test", root=data_root, preprocessing="raw")
    assert torch.equal(xt, torch.from_numpy(t_images.astype(np.float32)))
    assert yt.tolist() == t_labels.tolist()
    xu, _ = D.load_dataset("fashion-mnist", "test", root=data_root, preprocessing="unit")
    assert torch.equal(xu, torch.from_numpy(t_images.astype(np.float32) / np.float32(255)))
    assert np.allclose(xu.numpy(), t_images / 255.0, rtol=0, atol=1e-7)

    # train / holdout: first 80% / last 20% of default_rng(0).permutation(60000), rows and labels
    perm = np.random.default_rng(0).permutation(60_000)
    x_tr, y_tr = D.load_dataset("fashion-mnist", "train", root=data_root, preprocessing="raw")
    x_ho, y_ho = D.load_dataset_uint8("fashion-mnist", "holdout", root=data_root)
    assert np.array_equal(y_tr.numpy(), labels[perm[:48_000]])
    assert np.array_equal(y_ho, labels[perm[48_000:]])
    assert np.array_equal(x_tr.numpy(), images[perm[:48_000]].astype(np.float32))
    assert np.array_equal(x_ho, images[perm[48_000:]])
    # disjoint and covering: the two index sets partition range(60000)
    assert np.array_equal(np.sort(perm), np.arange(60_000))
    assert len(np.intersect1d(perm[:48_000], perm[48_000:])) == 0


@pytest.mark.slow
def test_real_fashion_standardize(data_root: Path, raw_fashion: dict[str, bytes]) -> None:
    images = idx_decode(raw_fashion["train-images"]).reshape(60_000, 784)
    np_mean = images.mean(dtype=np.float64) / 255.0  # float64 accumulation on the bytes
    np_std = np.sqrt(((images / 255.0 - np_mean) ** 2).mean())
    assert abs(np_mean - 0.2860) < 1e-4 and abs(np_std - 0.3530) < 1e-4  # published values
    mean, std = D.channel_stats("fashion-mnist", data_root)
    assert mean.shape == (1,) and std.shape == (1,)
    assert abs(float(mean) - np_mean) < 1e-7 and abs(float(std) - np_std) < 1e-7
    x, _ = D.load_dataset("fashion-mnist", "test", root=data_root, preprocessing="standardize")
    t_images = idx_decode(raw_fashion["test-images"]).reshape(10_000, 784)
    expected = (t_images / 255.0 - np_mean) / np_std  # test split: training statistics
    assert np.allclose(x.numpy(), expected, atol=1e-5)
    xf, _ = D.load_dataset(
        "fashion-mnist", "train-full", root=data_root, preprocessing="standardize"
    )
    var, mu = torch.var_mean(xf, correction=0)
    assert abs(float(mu)) < 1e-4 and abs(float(var) - 1) < 1e-4


def test_real_fashion_found_in_every_layout(data_root: Path, tmp_path: Path) -> None:
    """The shared copy as fashion-mnist/, flat in the root, the folder itself, and as the system
    (Debian) copy: all found, all pass the md5 check of the decompressed content."""
    folder = data_root / "fashion-mnist"
    assert D.find_fashion_mnist(data_root) == folder
    assert D.find_fashion_mnist(folder) == folder  # flat: the root holds the files
    _, y_ref = D.load_dataset_uint8("fashion-mnist", "test", root=data_root)
    flat = tmp_path / "flat"
    flat.mkdir()
    for role in ROLES:
        name = D.FASHION_MNIST_FILES[role].name
        (flat / name).symlink_to(folder / name)
    assert D.find_fashion_mnist(flat) == flat
    _, y_flat = D.load_dataset_uint8("fashion-mnist", "test", root=flat)
    assert np.array_equal(y_flat, y_ref)


# ------------------------------------------------------------------------------------------------
# Fashion-MNIST: fake files (layouts, validation, caching)
# ------------------------------------------------------------------------------------------------


def test_fake_fashion_loads_in_every_split(tmp_path: Path, accept) -> None:
    arrays = fake_fashion_arrays(30, 10)
    accept(write_fake_fashion(tmp_path / "fashion-mnist", arrays))
    full = arrays["train-images"].reshape(30, 784)
    tr, ho = D.split_indices(30, 0.2, 0)
    expected = {
        "train-full": (full, arrays["train-labels"]),
        "train": (full[tr], arrays["train-labels"][tr]),
        "holdout": (full[ho], arrays["train-labels"][ho]),
        "test": (arrays["test-images"].reshape(10, 784), arrays["test-labels"]),
    }
    for split, (images, labels) in expected.items():
        x, y = D.load_dataset("fashion-mnist", split, root=tmp_path, preprocessing="raw")
        assert torch.equal(x, torch.from_numpy(images.astype(np.float32)))
        assert y.dtype == torch.int64 and y.tolist() == labels.tolist()
    x, _ = D.load_dataset("fashion-mnist", "test", root=tmp_path)
    assert torch.equal(
        x, torch.from_numpy(arrays["test-images"].reshape(10, 784) / np.float32(255))
    )
    # standardize: one channel, statistics of all training images (float64 reference)
    train = arrays["train-images"].astype(np.float64)
    xs, _ = D.load_dataset("fashion-mnist", "test", root=tmp_path, preprocessing="standardize")
    ref = (arrays["test-images"].reshape(10, 784) - train.mean()) / train.std()
    assert np.allclose(xs.numpy(), ref, atol=1e-5)


def test_fake_fashion_layouts_and_precedence(
    tmp_path: Path, accept, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, c = (fake_fashion_arrays(30, 10, seed) for seed in (1, 2, 3))
    blobs = write_fake_fashion(tmp_path / "flat", a)
    accept(blobs)
    # flat layout, and the folder itself
    assert D.find_fashion_mnist(tmp_path / "flat") == tmp_path / "flat"
    _, y = D.load_dataset_uint8("fashion-mnist", "test", root=tmp_path / "flat")
    assert y.tolist() == a["test-labels"].tolist()
    # Debian fallback: an empty root finds the system copy
    system = tmp_path / "usr-share" / "fashion-mnist"
    write_fake_fashion(system, a)
    monkeypatch.setattr(registry, "SYSTEM_FASHION_MNIST_DIR", system)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert D.find_fashion_mnist(empty) == system
    _, y = D.load_dataset_uint8("fashion-mnist", "test", root=empty)
    assert y.tolist() == a["test-labels"].tolist()
    monkeypatch.setenv("TD_ANALYSIS_DATA", str(empty))  # the default root too
    assert D.find_dataset("fashion-mnist") == system
    assert list(empty.iterdir()) == []
    # the root's copies win over the system copy, fashion-mnist/ over flat files
    both = tmp_path / "both"
    write_fake_fashion(both, b)
    assert D.find_fashion_mnist(both) == both
    write_fake_fashion(both / "fashion-mnist", c)
    assert D.find_fashion_mnist(both) == both / "fashion-mnist"


def test_fashion_not_found_message(tmp_path: Path, accept) -> None:
    partial = tmp_path / "root" / "fashion-mnist"
    accept(write_fake_fashion(partial))
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as info:
        D.load_dataset("fashion-mnist", root=tmp_path / "root")
    text = str(info.value)
    assert f"{partial} (lacks t10k-labels-idx1-ubyte.gz)" in text
    assert str(tmp_path / "root") in text and str(registry.SYSTEM_FASHION_MNIST_DIR) in text
    assert (
        "td-analysis download --dataset fashion-mnist" in text and "dataset-fashion-mnist" in text
    )
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["fashion-mnist"]


def test_fashion_cache_decodes_once_and_returns_fresh_tensors(
    tmp_path: Path, accept, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrays = fake_fashion_arrays()
    accept(write_fake_fashion(tmp_path, arrays))
    x1, y1 = D.load_dataset("fashion-mnist", "train-full", root=tmp_path, preprocessing="raw")
    x1.fill_(-1)
    y1.fill_(-1)
    u8, _ = D.load_dataset_uint8("fashion-mnist", "test", root=tmp_path)
    u8[:] = 0
    D.channel_stats("fashion-mnist", tmp_path)

    def boom(path: Path, spec: object) -> None:
        raise AssertionError(f"decoded {path} again although it is cached")

    monkeypatch.setattr(fashion_mnist, "_read_idx", boom)
    monkeypatch.setattr(splits, "_histogram_stats", boom)
    for split in D.SPLITS:  # every split and preprocessing from the cache: no decode, no md5
        for prep in D.PREPROCESSINGS:
            D.load_dataset("fashion-mnist", split, root=tmp_path, preprocessing=prep)
    x2, y2 = D.load_dataset("fashion-mnist", "train-full", root=tmp_path, preprocessing="raw")
    assert torch.equal(
        x2, torch.from_numpy(arrays["train-images"].reshape(-1, 784).astype(np.float32))
    )
    assert y2.tolist() == arrays["train-labels"].tolist()
    u8b, _ = D.load_dataset_uint8("fashion-mnist", "test", root=tmp_path)
    assert np.array_equal(u8b, arrays["test-images"].reshape(-1, 784))
    monkeypatch.undo()
    # a rewritten file (new mtime/size) is decoded again
    new = fake_fashion_arrays(n_test=12, seed=5)
    blobs = write_fake_fashion(
        tmp_path, {**arrays, "test-images": new["test-images"], "test-labels": new["test-labels"]}
    )
    accept(blobs)
    _, y3 = D.load_dataset_uint8("fashion-mnist", "test", root=tmp_path)
    assert y3.tolist() == new["test-labels"].tolist()


def test_recompressed_copies_pass(tmp_path: Path, accept) -> None:
    """The md5 is of the decompressed content: a .gz with another header (file name, mtime,
    compression level, as the official vs the Debian files) loads the same data."""
    arrays = fake_fashion_arrays()
    blobs = write_fake_fashion(tmp_path / "a", arrays)
    accept(blobs)
    b = tmp_path / "b"
    b.mkdir()
    for role in ROLES:
        name = D.FASHION_MNIST_FILES[role].name
        buf = io.BytesIO()
        with gzip.GzipFile(
            filename=name[:-3], mode="wb", fileobj=buf, mtime=12345, compresslevel=1
        ) as gz:
            gz.write(blobs[role])
        assert buf.getvalue() != (tmp_path / "a" / name).read_bytes()
        (b / name).write_bytes(buf.getvalue())
    ya = D.load_dataset_uint8("fashion-mnist", "train-full", root=tmp_path / "a")
    yb = D.load_dataset_uint8("fashion-mnist", "train-full", root=b)
    assert np.array_equal(ya[0], yb[0]) and np.array_equal(ya[1], yb[1])


def _corrupt_cases() -> list:
    def truncate(blob: bytes) -> bytes:
        gz = gzip.compress(blob, mtime=0)
        return gz[: len(gz) // 2]

    def flip(blob: bytes) -> bytes:
        gz = bytearray(gzip.compress(blob, mtime=0))
        for i in range(len(gz) // 2, len(gz) // 2 + 16):
            gz[i] ^= 0xFF
        return bytes(gz)

    def crc(blob: bytes) -> bytes:  # last 8 bytes: CRC32 and size
        gz = bytearray(gzip.compress(blob, mtime=0))
        gz[-8] ^= 0xFF
        return bytes(gz)

    def cut_header(blob: bytes) -> bytes:
        return gzip.compress(blob, mtime=0)[:12]

    return [
        ("truncated", truncate, r"is truncated or not a valid gzip file"),
        ("flipped", flip, r"is truncated or not a valid gzip file"),
        ("crc", crc, r"is truncated or not a valid gzip file.*CRC"),
        ("cut-header", cut_header, r"truncated"),
        ("not-gzip", lambda blob: b"hello, not gzip at all", "not a valid gzip file"),
    ]


@pytest.mark.parametrize(
    ("case", "make", "message"), _corrupt_cases(), ids=lambda v: v if isinstance(v, str) else ""
)
@pytest.mark.parametrize("role", ["train-images", "test-labels"])
def test_corrupt_gzip_is_named_and_not_cached(
    tmp_path: Path, accept, role: str, case: str, make, message: str
) -> None:
    blobs = write_fake_fashion(tmp_path)
    accept(blobs)
    path = tmp_path / D.FASHION_MNIST_FILES[role].name
    path.write_bytes(make(blobs[role]))
    split = "train" if role.startswith("train") else "test"
    for _ in range(2):  # the failure is not cached: it fails again, the same way
        with pytest.raises(D.DataError, match=message) as info:
            D.load_dataset("fashion-mnist", split, root=tmp_path)
        assert str(path) in str(info.value)
    # once repaired (new content, new mtime), the file loads
    path.write_bytes(gzip.compress(blobs[role], mtime=0))
    os.utime(path, ns=(2_000_000_000, 2_000_000_000))
    D.load_dataset("fashion-mnist", split, root=tmp_path)


def _invalid_cases() -> list:
    a = fake_fashion_arrays(30, 10)
    return [
        # (role, decompressed content, expected message)
        (
            "train-images",
            idx_bytes(a["train-images"], magic=0x801),
            r"wrong magic number 0x00000801, expected 0x00000803",
        ),
        (
            "train-labels",
            idx_bytes(a["train-images"]),
            r"wrong magic number 0x00000803, expected 0x00000801",
        ),
        (
            "test-images",
            idx_bytes(a["test-images"], magic=0x0D03),
            r"wrong magic number 0x00000d03",
        ),
        (
            "test-images",
            idx_bytes(np.zeros((10, 28, 27), np.uint8)),
            r"images of shape \(28, 27\), expected \(28, 28\)",
        ),
        (
            "test-images",
            idx_bytes(a["test-images"]) + b"\x00" * 784,
            "has data after the 10 images",
        ),
        (
            "test-images",
            idx_bytes(a["test-images"])[:-5],
            r"is truncated: 7,835 of 7,840 bytes of images",
        ),
        ("test-images", idx_bytes(a["test-images"])[:10], "is truncated"),
        ("test-labels", b"", "is truncated: 0 of 4 bytes"),
        (
            "test-labels",
            # the message names the first bad label's index *and its value* (12 at index 2),
            # not the index next to the largest value (issue 24: "index 5 holds 12 … 255")
            idx_bytes(np.array([0, 1, 12, 3, 4, 255, 6, 7, 8, 9], np.uint8)),
            r"labels must be in 0\.\.9; the first one outside is 12 at index 2 \(the largest "
            r"is 255\)",
        ),
    ]


@pytest.mark.parametrize(("role", "content", "message"), _invalid_cases())
def test_invalid_idx_content_is_named(
    tmp_path: Path, accept, role: str, content: bytes, message: str
) -> None:
    """Structure is checked before the md5 (which the official table would refuse anyway)."""
    blobs = write_fake_fashion(tmp_path)
    accept(blobs)  # the md5 table knows the *valid* fakes
    path = tmp_path / D.FASHION_MNIST_FILES[role].name
    path.write_bytes(gzip.compress(content, mtime=0))
    with pytest.raises(D.DataError, match=message) as info:
        D.load_dataset(
            "fashion-mnist", "train" if role.startswith("train") else "test", root=tmp_path
        )
    assert str(path) in str(info.value)


def test_count_mismatch_between_images_and_labels(tmp_path: Path, accept) -> None:
    a = fake_fashion_arrays(30, 10)
    a["train-labels"] = a["train-labels"][:29]
    accept(write_fake_fashion(tmp_path, a))  # each file is valid on its own
    with pytest.raises(
        D.DataError, match="29 labels for 30 images in train-images-idx3-ubyte.gz"
    ) as info:
        D.load_dataset("fashion-mnist", "holdout", root=tmp_path)
    assert str(tmp_path / "train-labels-idx1-ubyte.gz") in str(info.value)
    D.load_dataset("fashion-mnist", "test", root=tmp_path)  # the test files are fine


def test_official_table_refuses_other_content(tmp_path: Path, accept) -> None:
    """Without patching: the header's count must be the official one, and the md5 must match."""
    write_fake_fashion(tmp_path)
    with pytest.raises(
        D.DataError,
        match=r"announces 30 images, the official train-images-idx3-ubyte.gz has 60,000",
    ):
        D.load_dataset("fashion-mnist", "train", root=tmp_path)
    # right size and structure, other bytes: the md5 of the decompressed content names both sums
    blobs = write_fake_fashion(tmp_path)
    accept(blobs)
    labels = (idx_decode(blobs["test-labels"]) + 1) % 10
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(labels), mtime=0))
    actual = hashlib.md5(idx_bytes(labels)).hexdigest()
    expected = hashlib.md5(blobs["test-labels"]).hexdigest()
    with pytest.raises(D.DataError, match=f"{path}: decompressed content has md5 {actual}, ") as e:
        D.load_dataset("fashion-mnist", "test", root=tmp_path)
    assert f"expected {expected}" in str(e.value)


def test_header_cannot_make_the_reader_allocate(tmp_path: Path, accept) -> None:
    """A header announcing 2**32-1 images is refused before any payload is read."""
    blobs = write_fake_fashion(tmp_path)
    accept(blobs)
    huge = struct.pack(">IIII", 0x803, 2**32 - 1, 28, 28)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(huge, mtime=0))
    with pytest.raises(D.DataError, match="announces 4,294,967,295 images"):
        D.load_dataset("fashion-mnist", root=tmp_path)


# ------------------------------------------------------------------------------------------------
# Fashion-MNIST: download from a local HTTP server
# ------------------------------------------------------------------------------------------------


class _LoggingHandler(_Handler):
    requests: list[str] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        if self.path.startswith("/short/"):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            return
        super().do_GET()


@pytest.fixture
def serve() -> Iterator:
    """``serve(folder) -> (base URL, list of requested paths)`` on 127.0.0.1."""
    servers = []

    def start(folder: Path) -> tuple[str, list[str]]:
        handler = type("Handler", (_LoggingHandler,), {"requests": []})
        httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(handler, directory=str(folder))
        )
        thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((httpd, thread))
        return f"http://127.0.0.1:{httpd.server_address[1]}", handler.requests

    yield start
    for httpd, thread in servers:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def fashion_mirror(tmp_path: Path, accept, serve) -> tuple[str, list[str], dict[str, np.ndarray]]:
    """Fake official files served on 127.0.0.1 and accepted as official: (base, log, arrays)."""
    arrays = fake_fashion_arrays(30, 10, seed=11)
    served = tmp_path / "served"
    blobs = write_fake_fashion(served, arrays)
    accept(blobs, gz={r: (served / D.FASHION_MNIST_FILES[r].name).read_bytes() for r in ROLES})
    base, log = serve(served)
    return base, log, arrays


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_fashion_download_verifies_and_loads(tmp_path: Path, fashion_mirror) -> None:
    base, log, arrays = fashion_mirror
    root = tmp_path / "new" / "root"
    folder = D.download_fashion_mnist(root, mirrors=[base], progress=False)
    assert folder == root / "fashion-mnist"
    assert _names(folder) == sorted(D.FASHION_MNIST_FILES[r].name for r in ROLES)  # no temp files
    assert sorted(log) == sorted(f"/{D.FASHION_MNIST_FILES[r].name}" for r in ROLES)
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / "train-images-idx3-ubyte.gz").stat().st_mode & 0o777 == 0o666 & ~umask
    x, y = D.load_dataset("fashion-mnist", "test", root=root, preprocessing="raw")
    assert torch.equal(
        x, torch.from_numpy(arrays["test-images"].reshape(10, 784).astype(np.float32))
    )
    assert y.tolist() == arrays["test-labels"].tolist()
    # valid files present: nothing fetched again (a dead mirror is never contacted)
    assert D.download_fashion_mnist(root, mirrors=["http://127.0.0.1:9"], progress=False) == folder
    assert len(log) == 4
    # force: everything fetched again
    D.download_fashion_mnist(root, mirrors=[base], force=True, progress=False)
    assert len(log) == 8


def test_fashion_download_fetches_only_missing_or_invalid(tmp_path: Path, fashion_mirror) -> None:
    base, log, _ = fashion_mirror
    folder = tmp_path / "root" / "fashion-mnist"
    D.download_fashion_mnist(folder.parent, mirrors=[base], progress=False)
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    log.clear()
    D.download_fashion_mnist(folder, mirrors=[base], progress=False)  # root named fashion-mnist
    assert sorted(log) == ["/t10k-images-idx3-ubyte.gz", "/train-labels-idx1-ubyte.gz"]
    D.load_dataset("fashion-mnist", "train", root=folder.parent)


def test_fashion_download_mirror_fallback_and_overrides(
    tmp_path: Path, fashion_mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, log, _ = fashion_mirror
    # the first mirror answers 404, the second serves the files
    D.download_fashion_mnist(tmp_path / "a", mirrors=[f"{base}/nope/", base], progress=False)
    assert log.count("/nope/train-images-idx3-ubyte.gz") == 1 and len(log) == 8
    # environment variable (comma-separated), then the module's list
    monkeypatch.setenv(D.FASHION_MNIST_MIRROR_ENV, f"{base}/nope,{base}")
    assert (
        D.find_fashion_mnist(tmp_path / "b", download=True, progress=False)
        == tmp_path / "b" / "fashion-mnist"
    )
    monkeypatch.delenv(D.FASHION_MNIST_MIRROR_ENV)
    monkeypatch.setattr(registry, "FASHION_MNIST_MIRRORS", (base,))
    D.download_dataset("fashion-mnist", tmp_path / "c", progress=False)
    D.load_dataset("fashion-mnist", "test", root=tmp_path / "c", download=False)


@pytest.mark.parametrize("where", ["new", "existing"])
@pytest.mark.parametrize("fault", ["404", "short", "md5", "refused", "two-mirrors"])
def test_fashion_download_failure_leaves_nothing(
    tmp_path: Path, fashion_mirror, accept, where: str, fault: str
) -> None:
    base, _, _ = fashion_mirror
    root = tmp_path / "dl" / "deeper" if where == "new" else tmp_path / "dl"
    if where == "existing":
        root.mkdir()
    mirrors = {
        "404": [f"{base}/nope"],
        "short": [f"{base}/short"],
        "md5": [base],
        "refused": ["http://127.0.0.1:9"],
        "two-mirrors": ["http://127.0.0.1:9", f"{base}/nope"],
    }[fault]
    if fault == "md5":  # the official .gz md5 (not the fakes'): every download is refused
        accept({r: b"other" for r in ROLES})
    error = D.DataError if fault == "md5" else D.DownloadError
    with pytest.raises(error) as info:
        D.download_fashion_mnist(root, mirrors=mirrors, progress=False)
    text = str(info.value)
    assert "td-analysis download" not in text  # never "run the command that just failed"
    assert mirrors[-1].split("//")[1] in text
    if where == "new":
        assert not (tmp_path / "dl").exists()  # the folders made for it are gone
    else:
        assert list(root.iterdir()) == []


def test_fashion_download_progress_lines_in_a_log(
    tmp_path: Path, fashion_mirror, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    base, _, _ = fashion_mirror
    monkeypatch.setenv("TD_ANALYSIS_PROGRESS", "lines")
    monkeypatch.setenv("TD_ANALYSIS_PROGRESS_INTERVAL", "0")
    D.download_fashion_mnist(tmp_path / "p", mirrors=[base], progress=True)
    err = capsys.readouterr().err
    assert "Downloading Fashion-MNIST (train-images-idx3-ubyte.gz)" in err and "\r" not in err
    D.download_fashion_mnist(tmp_path / "q", mirrors=[base], progress=False)
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------------------------
# `td-analysis download`
# ------------------------------------------------------------------------------------------------


def test_cli_download_fashion_and_all(
    tmp_path: Path, fashion_mirror, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from td_analysis.cli import main

    base, log, _ = fashion_mirror
    monkeypatch.setenv(D.FASHION_MNIST_MIRROR_ENV, base)
    root = tmp_path / "cli"
    assert main(["download", "--dataset", "fashion-mnist", "--data-dir", str(root)]) == 0
    assert f"Fashion-MNIST ready in {root / 'fashion-mnist'}" in capsys.readouterr().out
    assert main(["download", "--dataset", "fashion-mnist", "--data-dir", str(root)]) == 0
    assert "Fashion-MNIST already present" in capsys.readouterr().out and len(log) == 4
    write_fake_cifar(root / D.BATCHES_DIR)
    assert main(["download", "--dataset", "all", "--data-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "CIFAR-10 already present" in out and "Fashion-MNIST already present" in out
    assert main(["download", "--dataset", "fashion-mnist", "--data-dir", str(root), "--force"]) == 0
    assert len(log) == 8
    with pytest.raises(SystemExit) as info:
        main(["download", "--dataset", "mnist", "--data-dir", str(root)])
    assert info.value.code == 2
    assert "cifar10, fashion-mnist, all" in capsys.readouterr().err.replace("'", "")


@pytest.mark.parametrize("dataset", ["cifar10", "fashion-mnist"])
def test_cli_download_failure_into_new_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, dataset: str
) -> None:
    """Issue 12: no empty folder left behind, no advice to run the command that just failed."""
    from td_analysis.cli import main

    monkeypatch.setenv(D.CIFAR10_URL_ENV, "http://127.0.0.1:9/cifar-10-python.tar.gz")
    monkeypatch.setenv(D.FASHION_MNIST_MIRROR_ENV, "http://127.0.0.1:9/")
    target = tmp_path / "fresh" / "data"
    assert main(["download", "--dataset", dataset, "--data-dir", str(target)]) == 2
    err = capsys.readouterr().err
    assert "td-analysis download: error: Could not download" in err and "127.0.0.1:9" in err
    assert "Run `td-analysis download" not in err and "Traceback" not in err
    assert "TD_ANALYSIS_DATA" in err  # the way out
    assert list(tmp_path.iterdir()) == []
