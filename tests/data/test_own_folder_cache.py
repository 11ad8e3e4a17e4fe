"""data/own: a folder loaded through the memory-mapped cache: reuse, extension, rebuild, skipped images,
channel detection, labels, parallel = serial."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from jointvae_fast.data import load_dataset
from jointvae_fast.data.own import ImageFolderError, LabelFileError, MAX_SKIPPED_FRACTION, OptionError, decode, ingest
from jointvae_fast.data.own.image_cache import INDEX, SKIPPED

from tests.data_fixtures import isolated  # noqa: F401
from tests.own_fixtures import class_folder, expected_crop, pattern, write_image


def load(path, capsys=None, **kw):
    kw.setdefault("img_size", 32)
    ds = load_dataset(str(path), progress=False, **kw)
    return ds, (capsys.readouterr().err if capsys else "")


def by_key(ds) -> dict[int, np.ndarray]:
    """cache row -> image, over both splits."""
    out = {}
    for part in (ds.train, ds.test):
        for i, r in enumerate(part.rows):
            out[int(r)] = part.numpy([i])[0]
    return out


def test_folder_images_labels_and_split(tmp_path, isolated, capsys):
    pix = class_folder(tmp_path / "d", {"cat": 15, "dog": 15}, size=(32, 32))
    ds, err = load(tmp_path / "d", capsys)
    assert ds.image_size == (1, 32, 32) and len(ds.train) + len(ds.test) == 30
    assert ds.label_names == ("cat", "dog") and ds.factor_names == ("class",)
    index = json.loads(next(isolated.glob("images/*/" + INDEX)).read_text())
    for rel, arr in pix.items():
        row = index["files"][rel][2]
        part, pos = (ds.train, ds.train.rows) if row in ds.train.rows else (ds.test, ds.test.rows)
        i = int(np.nonzero(pos == row)[0][0])
        np.testing.assert_array_equal(part.numpy([i])[0], expected_crop(arr, 32))
        label = ds.train_labels if part is ds.train else ds.test_labels
        assert label[i] == (0 if rel.startswith("cat") else 1)
    assert ds.split["train"] == len(ds.train) and ds.split["test"] == len(ds.test) >= 1
    assert "30 images preprocessed to 1x32x32" in err


def test_second_load_reuses_the_cache_without_decoding(tmp_path, isolated, capsys, monkeypatch):
    class_folder(tmp_path / "d", {"a": 5, "b": 5})
    first, _ = load(tmp_path / "d", capsys)

    def no_decode(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(decode, "decode", no_decode)
    monkeypatch.setattr(decode, "probe", no_decode)
    again, err = load(tmp_path / "d", capsys)
    assert err == ""
    assert by_key(first).keys() == by_key(again).keys()


def test_new_and_changed_files_extend_the_cache_and_removed_ones_drop(tmp_path, isolated, capsys, monkeypatch):
    class_folder(tmp_path / "d", {"a": 6, "b": 6})
    first, _ = load(tmp_path / "d", capsys)
    decoded = []
    real = decode.decode
    monkeypatch.setattr(decode, "decode", lambda p, *a: decoded.append(os.path.basename(p)) or real(p, *a))
    write_image(tmp_path / "d/a/new.png", pattern(20, 24, 1, seed=99))
    write_image(tmp_path / "d/b/000.png", pattern(20, 24, 1, seed=98))  # changed
    os.utime(tmp_path / "d/b/000.png", ns=(1, 1))
    (tmp_path / "d/a/001.png").unlink()
    ds, err = load(tmp_path / "d", capsys)
    assert sorted(decoded) == ["000.png", "new.png"]
    assert "1 new, 1 changed, 1 removed" in err and "extended it by 2" in err
    assert len(ds.train) + len(ds.test) == 12
    kept = set(first.train.rows) - {1, 6}  # a/001.png (row 1) removed, b/000.png (row 6) changed: a new row
    assert kept <= set(ds.train.rows)  # the others keep their rows and their side of the split


def test_a_colour_image_in_a_gray_folder_rebuilds_as_rgb(tmp_path, isolated, capsys):
    class_folder(tmp_path / "d", {"a": 4, "b": 4})
    ds, _ = load(tmp_path / "d", capsys)
    assert ds.image_size[0] == 1
    write_image(tmp_path / "d/a/colour.png", pattern(20, 24, 3))
    ds, err = load(tmp_path / "d", capsys)
    assert ds.image_size[0] == 3
    assert "rebuilt it (channels 1 -> 3)" in err
    assert err.count("8 grayscale and 1 colour images: all read as RGB") == 1
    forced, err = load(tmp_path / "d", capsys, channels=1)
    assert forced.image_size[0] == 1 and "1 colour image(s) converted to grayscale" in err


def test_unreadable_images_are_skipped_listed_and_counted(tmp_path, isolated, capsys):
    class_folder(tmp_path / "d", {"a": 10, "b": 10})
    (tmp_path / "d/a/text.png").write_text("no image")
    ds, err = load(tmp_path / "d", capsys)
    assert len(ds.train) + len(ds.test) == 20
    assert ds.skipped[0][0] == "a/text.png" and ds.skipped_list
    assert (ds.skipped_list.endswith(SKIPPED)) and "a/text.png\t" in open(ds.skipped_list).read()
    lines = [line for line in err.splitlines() if "warning" in line]
    assert lines == [f"warning: 1 of 21 image files could not be read and are skipped (listed in {ds.skipped_list})"]
    with pytest.raises(ImageFolderError, match="--strict-images.*a/text.png"):
        load(tmp_path / "d", strict_images=True)


def test_too_many_or_no_readable_images_are_errors(tmp_path, isolated):
    assert MAX_SKIPPED_FRACTION == 0.1
    class_folder(tmp_path / "d", {"a": 10})
    (tmp_path / "d/a/bad0.jpg").write_bytes(b"\xff\xd8 truncated")
    load(tmp_path / "d")  # 1 of 11: 9%, a warning
    (tmp_path / "d/a/001.png").unlink()
    load(tmp_path / "d")  # 1 of 10 is not more than 10%
    (tmp_path / "d/a/002.png").unlink()
    with pytest.raises(ImageFolderError, match=r"1 of 9 image files could not be read \(more than 10%"):
        load(tmp_path / "d")
    (tmp_path / "e").mkdir()
    (tmp_path / "e/x.png").write_text("text")
    with pytest.raises(ImageFolderError, match="none of the 1 image file"):
        load(tmp_path / "e")
    write_image(tmp_path / "f/one.png", pattern(8, 8, 1))
    with pytest.raises(ImageFolderError, match="at least 2"):
        load(tmp_path / "f")


def test_parallel_preprocessing_equals_serial(tmp_path, isolated, monkeypatch):
    class_folder(tmp_path / "d", {"a": 40, "b": 40}, size=(30, 20), channels=3)
    monkeypatch.setattr(ingest, "ordered_map", ingest.ordered_map)
    serial, _ = load(tmp_path / "d", workers=1, cache_dir=tmp_path / "c1")
    parallel, _ = load(tmp_path / "d", workers=2, cache_dir=tmp_path / "c2")
    s, p = by_key(serial), by_key(parallel)
    assert s.keys() == p.keys() and all(np.array_equal(s[k], p[k]) for k in s)


def test_options_change_keeps_another_cache_and_a_damaged_index_rebuilds(tmp_path, isolated, capsys):
    class_folder(tmp_path / "d", {"a": 3, "b": 3})
    load(tmp_path / "d", capsys, cache_dir=tmp_path / "c")
    load(tmp_path / "d", capsys, cache_dir=tmp_path / "c", img_size=64)
    assert len(list((tmp_path / "c").glob("images/*/" + INDEX))) == 2
    isolated_index = next(isolated.glob("images/*/" + INDEX), None)
    assert isolated_index is None  # cache_dir was used
    load(tmp_path / "d", capsys)
    index = next(isolated.glob("images/*/" + INDEX))
    index.write_text("{broken")
    ds, err = load(tmp_path / "d", capsys)
    assert "6 images preprocessed" in err and "index is unreadable" in err
    assert len(ds.train) + len(ds.test) == 6


def test_labels_csv_and_errors(tmp_path, isolated):
    class_folder(tmp_path / "d", {"a": 4, "b": 4})
    rows = [f"{k}/{i:03d}.png,{'big' if i % 2 else 'small'},{i}" for k in "ab" for i in range(4)]
    (tmp_path / "l.csv").write_text("file,size,angle\n" + "\n".join(rows) + "\n")
    ds, _ = load(tmp_path / "d", labels=tmp_path / "l.csv")
    assert ds.factor_names == ("size", "angle") and ds.label_names == ("big", "small")
    (tmp_path / "l.csv").write_text("file,size\n" + "\n".join(r.rsplit(",", 1)[0] for r in rows[:-1]) + "\n")
    with pytest.raises(LabelFileError, match="1 image"):
        load(tmp_path / "d", labels=tmp_path / "l.csv")


def test_bad_paths_and_options(tmp_path, isolated):
    with pytest.raises(ValueError, match="does not exist"):
        load(tmp_path / "nope/")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="not an array file"):
        load(tmp_path / "x.txt")
    class_folder(tmp_path / "d", {"a": 2})
    with pytest.raises(OptionError, match="data-key"):
        load(tmp_path / "d", data_key="images")
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")
