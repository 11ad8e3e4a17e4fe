"""CelebA from a JPEG folder: crop/resize, splits, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from jointvae_fast.data import CorruptDatasetError, DatasetNotFoundError, load_dataset

from tests.data_fixtures import isolated  # noqa: F401


def make_faces(folder, n=10):
    folder.mkdir(parents=True)
    for i in range(n):
        img = np.zeros((218, 178, 3), np.uint8)  # black border, a coloured centre 148x148
        img[35:183, 15:163] = (200, 100 + i, 50)
        Image.fromarray(img).save(folder / f"{i + 1:06d}.jpg", quality=95)


def test_jpeg_folder_loads_cropped_rgb(tmp_path, isolated):
    make_faces(tmp_path / "data" / "celeba" / "img_align_celeba")
    ds = load_dataset("celeba", data_dir=tmp_path / "data", progress=False)
    assert ds.image_size == (3, 64, 64) and ds.train.shape == (9, 3, 64, 64) and ds.test.shape == (1, 3, 64, 64)
    assert ds.train.dtype == torch.uint8
    mean = ds.train.float().mean(dim=(0, 2, 3))  # the crop is the coloured square only (no black border)
    assert abs(mean[0] - 200) < 4 and abs(mean[2] - 50) < 4
    assert ds.test[0, 1].float().mean() == pytest.approx(109, abs=4)  # the last file is the test image


def test_partition_file_defines_the_split(tmp_path, isolated):
    folder = tmp_path / "data" / "img_align_celeba"
    make_faces(folder, 6)
    (tmp_path / "data" / "list_eval_partition.txt").write_text(
        "".join(f"{i + 1:06d}.jpg {p}\n" for i, p in enumerate([0, 2, 0, 1, 2, 0])))
    ds = load_dataset("celeba", data_dir=tmp_path / "data", progress=False)
    assert len(ds.train) == 4 and len(ds.test) == 2
    assert "list_eval_partition" in ds.notes


def test_missing_and_corrupt(tmp_path, isolated):
    with pytest.raises(DatasetNotFoundError, match="img_align_celeba"):
        load_dataset("celeba", data_dir=tmp_path)
    folder = tmp_path / "data" / "img_align_celeba"
    make_faces(folder, 4)
    bad = folder / "000002.jpg"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(CorruptDatasetError) as e:
        load_dataset("celeba", data_dir=tmp_path / "data", progress=False)
    assert str(bad) in str(e.value)
