"""dSprites: the procedural factor grid, lazy gathering, and the official npz reader (packed bits)."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from jointvae_fast.data import CorruptDatasetError, DatasetNotFoundError, load_dataset
from jointvae_fast.data import dsprites as dsm

from tests.data_fixtures import isolated  # noqa: F401


@pytest.fixture(scope="module")
def procedural():
    return dsm.ProceduralDSprites()


def index(shape=0, scale=0, orient=0, x=0, y=0):
    return int(np.ravel_multi_index((shape, scale, orient, x, y), dsm.GRID))


def test_factor_grid_and_counts():
    assert dsm.N_IMAGES == 737_280 == 3 * 6 * 40 * 32 * 32
    f = dsm.factor_values(np.arange(dsm.N_IMAGES))
    assert np.bincount(f["shape"]).tolist() == [245_760] * 3
    np.testing.assert_allclose(np.unique(f["scale"]), np.linspace(0.5, 1, 6), rtol=1e-6)
    np.testing.assert_allclose(np.unique(f["orientation"]), np.linspace(0, 2 * np.pi, 40), rtol=1e-6)
    np.testing.assert_allclose(np.unique(f["posX"]), np.linspace(0, 1, 32), rtol=1e-6)
    assert len(np.unique(f["posY"])) == 32
    one = dsm.factor_values([index(2, 5, 39, 31, 1)])
    assert one["shape"][0] == 2 and one["scale"][0] == 1.0 and one["posX"][0] == 1.0
    assert one["posY"][0] == pytest.approx(1 / 31) and one["orientation"][0] == pytest.approx(2 * np.pi)


def test_dataset_record_is_lazy_and_complete(isolated):
    ds = load_dataset("dsprites", procedural=True)
    assert len(ds.train) == 737_280 and ds.train.shape == (737_280, 1, 64, 64) and ds.image_size == (1, 64, 64)
    assert len(ds.test) == dsm.TEST_COUNT and ds.factor_names == dsm.FACTOR_NAMES
    assert all(len(v) == dsm.TEST_COUNT for v in ds.test_factors.values())
    # test image k is train image test_indices()[k], and its factors match
    ti = dsm.test_indices()
    k = torch.tensor([0, 17, 9999])
    assert torch.equal(ds.test.gather(k), ds.train.gather(torch.as_tensor(ti[k.numpy()])))
    assert np.array_equal(ds.test_factors["shape"][k.numpy()], ds.train_factors["shape"][ti[k.numpy()]])


def test_images_are_binary_and_in_frame(procedural):
    idx = torch.from_numpy(np.random.default_rng(0).choice(dsm.N_IMAGES, 300, replace=False))
    x = procedural.gather(idx)
    assert x.dtype == torch.uint8 and x.shape == (300, 1, 64, 64)
    assert set(x.unique().tolist()) <= {0, 255}
    assert (x.reshape(300, -1) > 0).sum(1).min() > 10


@pytest.mark.parametrize("shape", range(3))
def test_pixel_mass_grows_with_scale(procedural, shape):
    mass = [int((procedural.gather(torch.tensor([index(shape, s, 3, 16, 16)])) > 0).sum()) for s in range(6)]
    assert all(b > a for a, b in zip(mass, mass[1:])), mass
    # area ~ scale^2
    assert mass[-1] / mass[0] == pytest.approx(4.0, rel=0.25)


@pytest.mark.parametrize("shape", range(3))
def test_orientation_0_and_2pi_identical(procedural, shape):
    a, b, c = procedural.gather(torch.tensor([index(shape, 5, 0, 10, 20), index(shape, 5, 39, 10, 20),
                                              index(shape, 5, 7, 10, 20)]))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_position_moves_the_sprite_by_one_pixel(procedural):
    base, right, down = procedural.gather(torch.tensor([index(2, 3, 5, 4, 7), index(2, 3, 5, 5, 7), index(2, 3, 5, 4, 8)]))
    assert torch.equal(torch.roll(base, 1, dims=2), right)  # posX: columns
    assert torch.equal(torch.roll(base, 1, dims=1), down)  # posY: rows


def test_gather_checks_indices(procedural):
    with pytest.raises(IndexError):
        procedural.gather(torch.tensor([dsm.N_IMAGES]))
    with pytest.raises(TypeError):
        procedural.gather(torch.tensor([0.5]))
    assert torch.equal(procedural[3:5], procedural.gather(torch.tensor([3, 4])))


def _official_npz(path, n, imgs=None, drop=None):
    """An npz in the official layout (imgs, latents_values, latents_classes) holding the first n images."""
    idx = np.arange(n)
    classes = np.stack([np.zeros(n, np.int64), *np.unravel_index(idx, dsm.GRID)], 1).astype(np.int64)
    values = classes.astype(np.float64)
    if imgs is None:
        imgs = (np.random.default_rng(1).random((n, 64, 64)) < 0.3).astype(np.uint8)
    arrays = {"imgs": imgs, "latents_values": values, "latents_classes": classes}
    if drop:
        arrays.pop(drop)
    np.savez_compressed(path, **arrays)
    return imgs, classes


def test_official_npz_is_read_in_chunks_and_packed(tmp_path):
    p = tmp_path / dsm.OFFICIAL_FILE
    imgs, classes = _official_npz(p, 40)
    got = dsm.read_official(p, progress=False)
    assert got["packed"].shape == (40, 512)
    np.testing.assert_array_equal(got["classes"], classes)
    packed = dsm.PackedImages(got["packed"])
    x = packed.gather(torch.arange(40))
    np.testing.assert_array_equal(x[:, 0].numpy(), imgs * 255)
    assert torch.equal(packed.subset([5, 2]).gather(torch.tensor([1])), x[2:3])


@pytest.mark.parametrize("damage", ["not-zip", "truncated", "no-imgs", "wrong-shape"])
def test_official_npz_damage_raises_naming_the_file(tmp_path, damage):
    p = tmp_path / dsm.OFFICIAL_FILE
    if damage == "not-zip":
        p.write_bytes(b"hello, not an npz")
    elif damage == "no-imgs":
        _official_npz(p, 8, drop="imgs")
    elif damage == "wrong-shape":
        _official_npz(p, 8, imgs=np.zeros((8, 32, 32), np.uint8))
    else:  # a file cut short: its central directory is gone
        _official_npz(p, 8)
        p.write_bytes(p.read_bytes()[:-300])
    with pytest.raises(CorruptDatasetError) as e:
        dsm.read_official(p, progress=False)
    assert str(p) in str(e.value)


def test_official_file_loads_packed_cached_and_rebuilt(tmp_path, isolated, monkeypatch):
    # a miniature official grid (3 shapes x 2 x 2 x 2 x 2) stands in for the 3 GB file
    monkeypatch.setattr(dsm, "GRID", (3, 2, 2, 2, 2))
    monkeypatch.setattr(dsm, "N_IMAGES", 48)
    monkeypatch.setattr(dsm, "TEST_COUNT", 5)
    p = tmp_path / "dsprites" / dsm.OFFICIAL_FILE
    p.parent.mkdir()
    imgs, _ = _official_npz(p, 48)
    ds = load_dataset("dsprites", data_dir=tmp_path, progress=False)
    assert isinstance(ds.train, dsm.PackedImages) and ds.source == str(p)
    np.testing.assert_array_equal(ds.train.gather(torch.arange(48))[:, 0].numpy(), imgs * 255)
    assert len(ds.test) == 5 and len(ds.test_factors["posX"]) == 5
    real = dsm.read_official
    calls = []
    monkeypatch.setattr(dsm, "read_official", lambda *a, **k: calls.append(1) or real(*a, **k))
    load_dataset("dsprites", data_dir=tmp_path, progress=False)
    assert calls == []  # served from the cache
    imgs2, _ = _official_npz(p, 48, imgs=1 - imgs)
    import os
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    ds2 = load_dataset("dsprites", data_dir=tmp_path, progress=False)
    assert calls == [1]
    np.testing.assert_array_equal(ds2.train.gather(torch.arange(48))[:, 0].numpy(), imgs2 * 255)


def test_official_file_that_is_not_the_full_grid_is_rejected(tmp_path, isolated):
    _official_npz(tmp_path / dsm.OFFICIAL_FILE, 16)
    with pytest.raises(CorruptDatasetError, match="grid"):
        load_dataset("dsprites", data_dir=tmp_path, progress=False)


def test_official_required_but_absent(tmp_path, isolated):
    with pytest.raises(DatasetNotFoundError, match=dsm.OFFICIAL_FILE):
        load_dataset("dsprites", data_dir=tmp_path, procedural=False)


@pytest.mark.cuda
def test_gather_on_the_gpu_matches_the_cpu(procedural):
    idx = torch.from_numpy(np.random.default_rng(3).choice(dsm.N_IMAGES, 256, replace=False))
    want = procedural.gather(idx)
    got = procedural.to("cuda").gather(idx.cuda())
    assert got.device.type == "cuda" and torch.equal(got.cpu(), want)
    packed = dsm.PackedImages(np.packbits(want[:, 0].numpy().reshape(256, -1) > 0, axis=1))
    assert torch.equal(packed.gather(torch.arange(256).cuda()).cpu(), want)  # unpacked on the CPU, shipped
    assert torch.equal(packed.to("cuda").gather(torch.arange(256).cuda()).cpu(), want)  # unpacked on the GPU
