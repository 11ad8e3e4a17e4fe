"""data/own: the recursive listing (symlink loops, hidden files), the hash split and the labels."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from hypothesis import given, strategies as st

from jointvae_fast.data.own.labels import folder_classes, read_label_csv
from jointvae_fast.data.own.listing import list_images, require_images
from jointvae_fast.data.own.problems import ImageFolderError, LabelFileError
from jointvae_fast.data.own.split import hash_split, key_fractions, split_indices

from tests.own_fixtures import pattern, write_image


def test_listing_is_recursive_sorted_and_skips_hidden_and_other_files(tmp_path):
    for rel in ["b/2.PNG", "a/1.jpg", "a/deep/er/3.tiff", "top.webp", "a/._1.jpg", ".hidden/4.png"]:
        write_image(tmp_path / rel, pattern(4, 4, 1))
    (tmp_path / "notes.txt").write_text("x")
    lst = list_images(tmp_path)
    assert [f.rel for f in lst.images] == ["a/1.jpg", "a/deep/er/3.tiff", "b/2.PNG", "top.webp"]
    assert lst.other_count == 1 and lst.others == ["notes.txt"]
    f = lst.images[0]
    assert f.size == (tmp_path / "a/1.jpg").stat().st_size


def test_symlink_loops_are_entered_once_and_self_links_are_broken(tmp_path):
    write_image(tmp_path / "a/1.png", pattern(4, 4, 1))
    os.symlink(tmp_path, tmp_path / "a/loop")  # a/loop -> the root: a loop
    os.symlink(tmp_path / "self.png", tmp_path / "self.png")  # a link to itself
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    lst = list_images(tmp_path)
    assert [f.rel for f in lst.images] == ["a/1.png"]
    assert lst.revisited == ["a/loop"]
    assert dict(lst.broken) == {"dangling.png": "broken symlink", "self.png": "symlink loop"}


def test_names_with_spaces_and_non_ascii(tmp_path):
    write_image(tmp_path / "mes images/été 1.png", pattern(4, 4, 1))
    write_image(tmp_path / "日本/画像 2.jpg", pattern(4, 4, 3))
    assert [f.rel for f in list_images(tmp_path).images] == ["mes images/été 1.png", "日本/画像 2.jpg"]


def test_empty_folder_and_folder_without_images(tmp_path):
    with pytest.raises(ImageFolderError, match="empty"):
        require_images(list_images(tmp_path))
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(ImageFolderError, match="no images .* readme.md"):
        require_images(list_images(tmp_path))


# ---------------------------------------------------------------- split


def test_split_fraction_is_the_hash_rule():
    keys = [f"img/{i}.png" for i in range(4000)]
    want = np.array([int.from_bytes(hashlib.sha256(k.encode()).digest()[:8], "little") / 2**64 < 0.1 for k in keys])
    test = hash_split(keys, 0.1)
    np.testing.assert_array_equal(test, want)
    assert 0.08 < test.mean() < 0.12


@given(st.sets(st.text(min_size=1, max_size=12), min_size=20, max_size=60),
       st.sets(st.text(min_size=1, max_size=12), max_size=30), st.floats(0.05, 0.9))
def test_adding_keys_never_moves_old_ones(old, added, fraction):
    old = sorted(old)
    everything = sorted(set(old) | added)
    a, b = key_fractions(old) < fraction, key_fractions(everything) < fraction
    pos = {k: i for i, k in enumerate(everything)}
    assert [b[pos[k]] for k in old] == list(a)


def test_test_images_come_in_hash_order_not_by_class():
    """A folder lists class by class; the test split's first images must not all be one class (the
    reconstruction NLL is measured on the first 1000 test images)."""
    keys = [f"{c}/{i:05d}.png" for c in ("a_boot", "bag", "coat", "dress") for i in range(2500)]
    train, test = split_indices(keys, 0.1)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(keys)))
    np.testing.assert_array_equal(np.sort(test), np.flatnonzero(hash_split(keys, 0.1)))
    assert (np.diff(train) > 0).all() and (np.diff(key_fractions(keys)[test]) >= 0).all()
    first = [keys[i].split("/")[0] for i in test[:200]]
    assert all(40 <= first.count(c) <= 60 for c in ("a_boot", "bag", "coat", "dress")), first


def test_tiny_sets_always_have_both_splits():
    for keys in (["a", "b"], ["x", "y", "z"]):
        t = hash_split(keys, 1e-9)
        assert t.sum() == 1 and t[np.argmin(key_fractions(keys))]
        t = hash_split(keys, 1 - 1e-12)
        assert (~t).sum() == 1 and not t[np.argmax(key_fractions(keys))]


# ---------------------------------------------------------------- labels


def test_folder_classes():
    lab = folder_classes(["dog/1.png", "cat/a/2.png", "cat/3.png"])
    assert lab.value_names["class"] == ("cat", "dog") and list(lab.factors["class"]) == [1, 0, 0]
    assert folder_classes(["only/1.png", "only/2.png"]) is None
    assert folder_classes(["root.png", "cat/1.png"]) is None


def _csv(tmp_path, text):
    p = tmp_path / "labels.csv"
    p.write_text(text, encoding="utf-8")
    return p


def test_csv_column_kinds(tmp_path):
    p = _csv(tmp_path, "file,colour,size,angle\n./a.png,red,1,0.5\nb.png,blue,2,1.5\nsub\\c.png,red,3,2\n")
    lab = read_label_csv(p, ["a.png", "b.png", "sub/c.png"])
    assert lab.factors["colour"].tolist() == [1, 0, 1] and lab.value_names == {"colour": ("blue", "red")}
    assert lab.factors["size"].dtype == np.int64 and lab.factors["angle"].dtype == np.float64
    assert lab.label == "colour"
    arr = read_label_csv(_csv(tmp_path, "index,shape\n1,sq\n0,ci\n"), ["#0", "#1"], array=True)
    assert arr.factors["shape"].tolist() == [0, 1]


@pytest.mark.parametrize("text,keys,match", [
    ("file,c\na.png,x\nzzz.png,y\n", ["a.png"], "not in the data set.*zzz.png"),
    ("file,c\na.png,x\nb.png,y\n", ["a.png", "b.png", "c.png"], "1 image.* no row.*c.png"),
    ("file,c\na.png,x\nb.png,x\n", ["a.png", "b.png"], "one value"),
    ("name,c\na.png,x\n", ["a.png"], "no column naming"),
    ("file\na.png\nb.png\n", ["a.png", "b.png"], "no factor column"),
    ("file,c\na.png,x\na.png,y\n", ["a.png"], "two rows"),
    ("file,c\na.png,\nb.png,y\n", ["a.png", "b.png"], "empty cell"),
    ("file,c\na.png,1,2\n", ["a.png"], "cells"),
    ("file,c,c\na.png,1,2\nb.png,2,1\n", ["a.png", "b.png"], "twice"),
    ("file,c\na.png,inf\nb.png,1.5\n", ["a.png", "b.png"], "non-finite"),
    ("file,c\n", ["a.png"], "header row and one row"),
])
def test_csv_problems_are_one_line_errors(tmp_path, text, keys, match):
    with pytest.raises(LabelFileError, match=match) as e:
        read_label_csv(_csv(tmp_path, text), keys)
    assert "\n" not in str(e.value)


def test_csv_rows_of_unreadable_images_are_dropped(tmp_path):
    p = _csv(tmp_path, "file,c\na.png,x\nbad.png,y\nb.png,y\n")
    lab = read_label_csv(p, ["a.png", "b.png"], known={"a.png", "b.png", "bad.png"})
    assert lab.factors["c"].tolist() == [0, 1]


def test_csv_not_utf8(tmp_path):
    p = tmp_path / "l.csv"
    p.write_bytes(b"file,c\n\xff\xfe,x\n")
    with pytest.raises(LabelFileError, match="UTF-8"):
        read_label_csv(p, ["a.png"])
