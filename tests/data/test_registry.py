"""The registry, search order, float conversion, the atomic cache and atomic writes' file modes."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from jointvae_fast.atomic_write import atomic_write, atomic_write_text
from jointvae_fast.data import DATASETS, as_float_images, gather_batch, load_dataset, search_roots
from jointvae_fast.data.cache import load_cache, save_cache
from jointvae_fast.data.locations import cache_root

from tests.data_fixtures import isolated  # noqa: F401


def test_registry_names_match_the_training_presets():
    from jointvae_fast.training.config import DATASET_PRESETS

    assert set(DATASETS) == set(DATASET_PRESETS)


def test_unknown_name_and_bad_data_dir():
    with pytest.raises(ValueError, match="nonsense"):
        load_dataset("nonsense")
    with pytest.raises(TypeError, match="data_dir"):
        load_dataset("mnist", data_dir=3)


def test_search_order(tmp_path, monkeypatch):
    monkeypatch.setenv("JOINTVAE_DATA", f"{tmp_path / 'e1'}:{tmp_path / 'e2'}")
    monkeypatch.delenv("JOINTVAE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert search_roots(tmp_path / "d") == [tmp_path / "d", tmp_path / "e1", tmp_path / "e2", tmp_path / "xdg" / "jointvae_fast"]
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "jointvae_fast"


def test_as_float_images_and_gather():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).reshape(3, 1, 1, 1)
    y = as_float_images(x, "cpu")
    assert y.dtype == torch.float32 and y.flatten().tolist() == pytest.approx([0.0, 0.2, 1.0])
    with pytest.raises(TypeError):
        as_float_images(x.float())
    assert torch.equal(gather_batch(x, torch.tensor([2, 0])), x[[2, 0]])


def test_cache_roundtrip_meta_mismatch_and_atomic_write(tmp_path):
    p = tmp_path / "c" / "x.npz"
    arrays = {"a": np.arange(5), "b": np.ones((2, 2), np.uint8)}
    assert save_cache(p, arrays, {"source": "s1"})
    got = load_cache(p, {"source": "s1"})
    assert set(got) == {"a", "b"} and np.array_equal(got["a"], arrays["a"])
    assert load_cache(p, {"source": "s2"}) is None  # the source changed: rebuild
    assert [q.name for q in p.parent.iterdir()] == ["x.npz"]  # no temp files left
    with np.load(p) as z:
        assert json.loads(str(z["__meta__"]))["source"] == "s1"


@pytest.fixture
def umask():
    """Set a known umask for the test (the value given to the returned function) and restore the old one."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("mask,want", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)], ids=oct)
def test_atomic_write_gives_a_new_file_the_umask_default_mode(tmp_path, umask, mask, want):
    """A new file gets 0o666 & ~umask, as open(path, "w") gives, not mkstemp's 0o600."""
    umask(mask)
    with atomic_write(tmp_path / "a.bin") as f:
        f.write(b"x")
    atomic_write_text(tmp_path / "b.json", "{}")
    assert save_cache(tmp_path / "c.npz", {"a": np.zeros(1)}, {})
    plain = tmp_path / "plain.txt"
    with open(plain, "w") as f:
        f.write("x")
    assert _mode(plain) == want
    assert {q.name: _mode(q) for q in tmp_path.iterdir()} == dict.fromkeys(["a.bin", "b.json", "c.npz", "plain.txt"], want)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("existing", [0o640, 0o604, 0o666], ids=oct)
def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path, umask, existing):
    """Replacing a file keeps its permission bits (as open(path, "w") on it would), whatever the umask."""
    p = tmp_path / "run.json"
    p.write_text("old")
    p.chmod(existing)
    atomic_write_text(p, "new")
    assert p.read_text() == "new" and _mode(p) == existing
    assert [q.name for q in tmp_path.iterdir()] == ["run.json"]  # no temp files left


def test_a_failed_atomic_write_leaves_the_file_and_no_temp_file(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(p) as f:
            f.write(b"half")
            raise RuntimeError("crash")
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["x.txt"]


def test_unwritable_cache_warns_but_data_is_returned(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.warns(UserWarning, match="could not write cache"):
        assert not save_cache(blocker / "sub" / "x.npz", {"a": np.zeros(1)}, {})
