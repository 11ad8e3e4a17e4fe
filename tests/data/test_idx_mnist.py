"""MNIST / Fashion-MNIST: IDX reading (raw and gz), layouts, errors, cache, downloads from a local server."""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jointvae_fast.data import CorruptDatasetError, DatasetNotFoundError, load_dataset
from jointvae_fast.data import idx as idxmod
from jointvae_fast.data.idx import ChecksumError, read_idx

from tests.data_fixtures import idx_bytes, isolated, write_idx_set  # noqa: F401


def _pil32(img28: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(img28).resize((32, 32), Image.BILINEAR))


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_roundtrip(tmp_path, gz):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / ("a.idx.gz" if gz else "a.idx")
    p.write_bytes(gzip.compress(idx_bytes(arr)) if gz else idx_bytes(arr))
    np.testing.assert_array_equal(read_idx(p), arr)


@pytest.mark.parametrize("layout,gz", [("MNIST/raw", True), ("mnist", False), (".", True)])
def test_mnist_layouts_load_and_resize_like_pil(tmp_path, isolated, layout, gz):
    data = write_idx_set(tmp_path / "data" / layout, gz=gz)
    ds = load_dataset("mnist", data_dir=tmp_path / "data", progress=False)
    assert ds.train.dtype == torch.uint8 and tuple(ds.train.shape) == (20, 1, 32, 32)
    assert tuple(ds.test.shape) == (10, 1, 32, 32) and ds.image_size == (1, 32, 32)
    np.testing.assert_array_equal(ds.train[3, 0].numpy(), _pil32(data["train-images-idx3-ubyte"][3]))
    np.testing.assert_array_equal(ds.test_labels, data["t10k-labels-idx1-ubyte"].astype(np.int64))
    np.testing.assert_array_equal(ds.train_labels, data["train-labels-idx1-ubyte"].astype(np.int64))


def test_constant_image_stays_constant_after_resize(tmp_path, isolated):
    folder = tmp_path / "d" / "fashion-mnist"
    write_idx_set(folder, gz=False)
    imgs = np.full((20, 28, 28), 77, np.uint8)
    (folder / "train-images-idx3-ubyte").write_bytes(idx_bytes(imgs))
    ds = load_dataset("fashion-mnist", data_dir=tmp_path / "d", progress=False)
    assert ds.train.unique().tolist() == [77]


def test_env_var_is_searched(tmp_path, isolated, monkeypatch):
    write_idx_set(tmp_path / "envdata" / "fashion-mnist")
    monkeypatch.setenv("JOINTVAE_DATA", str(tmp_path / "envdata"))
    ds = load_dataset("fashion-mnist", progress=False)
    assert ds.source == str(tmp_path / "envdata" / "fashion-mnist")


def test_missing_lists_paths_names_and_source(tmp_path, isolated):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("mnist", data_dir=tmp_path / "nothing")
    msg = str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    assert str(tmp_path / "nothing" / "MNIST" / "raw") in msg and str(isolated / "mnist") in msg
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg and "http" in msg


@pytest.mark.parametrize("damage", ["magic", "truncated", "trailing", "gzip-truncated", "label-count"])
def test_corrupt_files_raise_naming_the_file(tmp_path, isolated, damage):
    folder = tmp_path / "d" / "mnist"
    write_idx_set(folder, gz=(damage == "gzip-truncated"))
    if damage == "gzip-truncated":
        bad = folder / "train-images-idx3-ubyte.gz"
        bad.write_bytes(bad.read_bytes()[:200])
    elif damage == "label-count":
        bad = folder / "t10k-labels-idx1-ubyte"
        bad.write_bytes(idx_bytes(np.zeros(7, np.uint8)))
    else:
        bad = folder / "train-images-idx3-ubyte"
        raw = bad.read_bytes()
        raw = {"magic": b"\x12\x34" + raw[2:], "truncated": raw[:-5], "trailing": raw + b"\0"}[damage]
        bad.write_bytes(raw)
    with pytest.raises(CorruptDatasetError) as e:
        load_dataset("mnist", data_dir=tmp_path / "d", progress=False)
    assert str(bad) in str(e.value)


def test_cache_is_used_then_rebuilt_when_the_source_changes(tmp_path, isolated, monkeypatch):
    folder = tmp_path / "d" / "mnist"
    write_idx_set(folder, seed=1)
    first = load_dataset("mnist", data_dir=tmp_path / "d", progress=False)
    assert list((isolated / "preprocessed").glob("mnist-*.npz"))

    def fail(*a, **k):
        raise AssertionError("preprocessed again although the cache matches")

    monkeypatch.setattr(idxmod, "resize_28_to_32", fail)
    again = load_dataset("mnist", data_dir=tmp_path / "d", progress=False)
    assert torch.equal(first.train, again.train)
    monkeypatch.undo()
    monkeypatch.setenv("JOINTVAE_CACHE", str(isolated))
    monkeypatch.setenv("JOINTVAE_DOWNLOAD", "0")
    new = write_idx_set(folder, seed=2)
    labels = folder / "train-labels-idx1-ubyte.gz"
    st = labels.stat()
    os.utime(labels, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    rebuilt = load_dataset("mnist", data_dir=tmp_path / "d", progress=False)
    np.testing.assert_array_equal(rebuilt.train_labels, new["train-labels-idx1-ubyte"])
    assert not torch.equal(rebuilt.train, first.train)


def test_truncated_cache_is_rebuilt(tmp_path, isolated):
    write_idx_set(tmp_path / "d" / "mnist")
    first = load_dataset("mnist", data_dir=tmp_path / "d", progress=False)
    (cache,) = (isolated / "preprocessed").glob("mnist-*.npz")
    cache.write_bytes(cache.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="unreadable cache"):
        again = load_dataset("mnist", data_dir=tmp_path / "d", progress=False)
    assert torch.equal(first.train, again.train)


# ---------------------------------------------------------------- downloads from a local server


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _sums(folder: Path, algo: str = "md5") -> dict:
    return {p.name: {algo: hashlib.new(algo, p.read_bytes()).hexdigest()} for p in folder.glob("*.gz")}


def test_download_verifies_and_loads(tmp_path, isolated, server):
    root, url = server
    data = write_idx_set(root / "good")
    ds = load_dataset("mnist", download=True, mirrors=[url + "/missing/", url + "/good/"],
                      checksums=_sums(root / "good", "sha256"), progress=False, timeout=5)
    np.testing.assert_array_equal(ds.train_labels, data["train-labels-idx1-ubyte"])
    assert sorted(p.name for p in (isolated / "mnist").iterdir()) == sorted(p.name for p in (root / "good").iterdir())


def test_download_bad_checksum_raises_and_keeps_nothing(tmp_path, isolated, server):
    root, url = server
    write_idx_set(root / "good")
    sums = _sums(root / "good")
    sums["train-images-idx3-ubyte.gz"] = {"md5": "0" * 32}
    with pytest.raises(ChecksumError, match="train-images-idx3-ubyte.gz"):
        load_dataset("mnist", download=True, mirrors=[url + "/good/"], checksums=sums, progress=False, timeout=5)
    assert not (isolated / "mnist" / "train-images-idx3-ubyte.gz").exists()
    assert not list((isolated / "mnist").glob("*.part"))


def test_unreachable_mirror_gives_not_found_with_reason(tmp_path, isolated, server):
    _, url = server
    with pytest.raises(DatasetNotFoundError, match="Download into"):
        load_dataset("mnist", download=True, mirrors=[url + "/nothing-here/"], progress=False, timeout=5)


def test_default_mirrors_and_checksums_cover_all_files():
    for name in ("mnist", "fashion-mnist"):
        assert idxmod.MIRRORS[name]
        assert set(idxmod.CHECKSUMS[name]) == {b + ".gz" for b in idxmod.IDX_FILES.values()}


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_the_debian_package(isolated):
    ds = load_dataset("fashion-mnist", progress=False)
    assert ds.source == "/usr/share/datasets/fashion-mnist"
    assert tuple(ds.train.shape) == (60000, 1, 32, 32) and tuple(ds.test.shape) == (10000, 1, 32, 32)
    assert np.bincount(ds.train_labels).tolist() == [6000] * 10
    assert np.bincount(ds.test_labels).tolist() == [1000] * 10
