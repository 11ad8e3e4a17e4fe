"""data/own: array files (.npy, .npz streamed, HDF5) read as images, and their errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from jointvae_fast.data import load_dataset
from jointvae_fast.data.own import ArrayFileError, MissingExtraError
from jointvae_fast.data.own import arrays
from jointvae_fast.data.own.ingest import ARRAY_CHUNK

from tests.data_fixtures import isolated  # noqa: F401
from tests.own_fixtures import expected_crop

h5py = pytest.importorskip("h5py")


def all_images(ds) -> np.ndarray:
    """Every image of train and test, ordered by array row."""
    rows = np.concatenate([ds.train.rows, ds.test.rows])
    imgs = np.concatenate([ds.train.numpy(np.arange(len(ds.train))), ds.test.numpy(np.arange(len(ds.test)))])
    return imgs[np.argsort(rows)]


def rgb_stack(n=12, h=32, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_npy_layouts_give_the_same_images(tmp_path, isolated, layout):
    x = rgb_stack()
    arr = x if layout == "NHWC" else x.transpose(0, 3, 1, 2)
    np.save(tmp_path / "a.npy", arr)
    ds = load_dataset(str(tmp_path / "a.npy"), img_size=32, progress=False, quiet=True)
    np.testing.assert_array_equal(all_images(ds), x.transpose(0, 3, 1, 2))
    assert f"{layout}" in ds.notes and ds.image_size == (3, 32, 32)


def test_gray_float_array_is_scaled_and_resized_like_an_image(tmp_path, isolated):
    x = np.random.default_rng(1).random((6, 40, 40)).astype(np.float32)
    np.save(tmp_path / "g.npy", x)
    ds = load_dataset(str(tmp_path / "g.npy"), img_size=32, progress=False, quiet=True)
    want = np.stack([expected_crop(np.rint(v * 255).astype(np.uint8), 32) for v in x])
    np.testing.assert_array_equal(all_images(ds), want)
    assert ds.image_size == (1, 32, 32)


def test_compressed_npz_of_binary_images_like_dsprites(tmp_path, isolated):
    """dSprites' imgs: uint8 0/1 in a compressed npz, read in chunks and scaled to 0/255."""
    x = (np.random.default_rng(2).random((1100, 64, 64)) > 0.5).astype(np.uint8)
    np.savez_compressed(tmp_path / "d.npz", imgs=x, latents_classes=np.zeros((1100, 6), np.int64))
    ds = load_dataset(str(tmp_path / "d.npz"), progress=False, quiet=True)
    np.testing.assert_array_equal(all_images(ds)[:, 0], x * 255)
    assert "0/1 values scaled" in ds.notes


def test_binary_first_chunk_then_larger_values_is_an_error(tmp_path, isolated):
    x = np.zeros((ARRAY_CHUNK + 5, 8, 8), np.uint8)
    x[-1, 0, 0] = 200
    np.save(tmp_path / "m.npy", x)
    with pytest.raises(ArrayFileError, match=f"row {len(x) - 1}"):
        load_dataset(str(tmp_path / "m.npy"), img_size=32, progress=False, quiet=True)


def test_hdf5_with_key_and_rgba_composited(tmp_path, isolated):
    x = rgb_stack(8)
    rgba = np.concatenate([x, np.zeros((8, 32, 32, 1), np.uint8)], -1)  # fully transparent
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["group/images"] = rgba
        f["labels"] = np.zeros((8, 3))
    ds = load_dataset(str(tmp_path / "s.h5"), img_size=32, data_key="group/images", background="#ff0000",
                      progress=False, quiet=True)
    imgs = all_images(ds)
    assert (imgs[:, 0] == 255).all() and (imgs[:, 1:] == 0).all()


def test_3dshapes_like_hdf5_loads_as_it_is(tmp_path, isolated):
    """3dshapes.h5: 'images' [N, 64, 64, 3] uint8 beside 'labels' [N, 6] float: the images are picked by name."""
    x = rgb_stack(10, 64, 64)
    with h5py.File(tmp_path / "3dshapes.h5", "w") as f:
        f["images"] = x
        f["labels"] = np.zeros((10, 6))
    ds = load_dataset(str(tmp_path / "3dshapes.h5"), progress=False, quiet=True)
    np.testing.assert_array_equal(all_images(ds), x.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("make,match", [
    (lambda p: np.save(p / "a.npy", np.zeros((4, 8, 8), np.int64)), "dtype int64"),
    (lambda p: np.save(p / "a.npy", np.zeros((4, 8), np.uint8)), "rank 2"),
    (lambda p: np.save(p / "a.npy", np.zeros((2, 4, 8, 8, 3), np.uint8)), "rank 5"),
    (lambda p: np.save(p / "a.npy", np.zeros((4, 8, 8, 2), np.uint8)), "channel axis"),
    (lambda p: np.save(p / "a.npy", np.zeros((0, 8, 8), np.uint8)), "no images"),
    (lambda p: np.save(p / "a.npy", np.full((4, 8, 8), 255.0, np.float32)), r"\[0, 1\].*holds 255 .*uint8"),
    (lambda p: np.save(p / "a.npy", np.full((4, 8, 8), -0.5)), r"\[0, 1\].*row 0"),
    (lambda p: np.save(p / "a.npy", np.array([np.zeros((8, 8)), np.full((8, 8), np.nan)])), "row 1"),
    (lambda p: np.save(p / "a.npy", np.array([object()] * 3), allow_pickle=True), "readable"),
    (lambda p: (p / "a.npy").write_bytes(b"garbage"), "readable"),
    (lambda p: np.savez(p / "a.npz", one=np.zeros((2, 8, 8)), two=np.zeros((2, 8, 8))), "--data-key"),
    (lambda p: (p / "a.npz").write_bytes(b"PK garbage"), "not a readable .npz"),
])
def test_bad_arrays_are_one_line_errors(tmp_path, isolated, make, match):
    make(tmp_path)
    path = next(tmp_path.glob("a.np*"))
    with pytest.raises(ArrayFileError, match=match) as e:
        load_dataset(str(path), progress=False, quiet=True)
    assert "\n" not in str(e.value)


def test_missing_hdf5_key_lists_the_keys(tmp_path, isolated):
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["images"] = np.zeros((4, 8, 8), np.uint8)
    with pytest.raises(ArrayFileError, match="no dataset 'imgs'; it holds images"):
        load_dataset(str(tmp_path / "s.h5"), data_key="imgs", quiet=True)


def test_hdf5_without_h5py_names_the_extra(tmp_path, isolated, monkeypatch):
    (tmp_path / "s.h5").write_bytes(b"x")
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    with pytest.raises(MissingExtraError, match="pip install h5py"):
        load_dataset(str(tmp_path / "s.h5"), quiet=True)


def test_layout_rule():
    p = None
    assert arrays.layout_of(p, (5, 3, 32, 32), np.dtype(np.uint8)).order == "NCHW"
    assert arrays.layout_of(p, (5, 32, 32, 3), np.dtype(np.uint8)).order == "NHWC"
    assert arrays.layout_of(p, (5, 32, 32, 1), np.dtype(np.uint8)).channels == 1
    assert arrays.layout_of(p, (5, 3, 8, 4), np.dtype(np.float32)).order == "NHWC"  # both fit: last axis wins
    assert arrays.layout_of(p, (5, 32, 32), np.dtype(np.bool_)).channels == 1


def test_gather_from_the_map_matches_rows(tmp_path, isolated):
    x = rgb_stack(20)
    np.save(tmp_path / "a.npy", x)
    ds = load_dataset(str(tmp_path / "a.npy"), img_size=32, progress=False, quiet=True)
    idx = torch.tensor([3, 0, 3, 1])
    got = ds.train.gather(idx)
    assert got.dtype == torch.uint8 and got.shape == (4, 3, 32, 32)
    want = x[ds.train.rows[idx.numpy()]].transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(got.numpy(), want)
    sub = ds.train.subset([2, 1])
    np.testing.assert_array_equal(sub.gather(torch.tensor([0, 1])).numpy(), x[ds.train.rows[[2, 1]]].transpose(0, 3, 1, 2))
    import pickle
    again = pickle.loads(pickle.dumps(ds.train))
    np.testing.assert_array_equal(again.gather(idx).numpy(), want)


def test_resize_of_rgb_arrays_equals_images(tmp_path, isolated):
    x = rgb_stack(4, 50, 70)
    np.save(tmp_path / "a.npy", x)
    ds = load_dataset(str(tmp_path / "a.npy"), img_size=32, fit="stretch", progress=False, quiet=True)
    want = np.stack([np.asarray(Image.fromarray(v).resize((32, 32), Image.BILINEAR)).transpose(2, 0, 1) for v in x])
    np.testing.assert_array_equal(all_images(ds), want)
