"""Real chairs: the rendered_chairs tree (600x600 PNGs) and a 64x64 ImageFolder; errors, cache, fallback."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from jointvae_fast.data import CorruptDatasetError, DatasetNotFoundError, load_dataset
from jointvae_fast.data import chairs as chairsmod
from jointvae_fast.data.chairs import load_real_chairs, split_groups

from tests.data_fixtures import isolated  # noqa: F401

CHAIRS = ["1a6f615e8b1b5ae4dbbc9440457e303e", "1a8bbf2994788e2743e99e0cae970928", "1b5e876f3559c231532a8e162f399205",
          "1bbe463ba96415aff1783a44a88d6274", "1c08f2aa305f124262e682c9809bff14"]
VIEWS = [(20, 0), (20, 90), (30, 180), (30, 348)]


def make_tree(root, chairs=CHAIRS, size=600):
    """rendered_chairs/<id>/renders/image_XXX_pPPP_tTTT_r096.png: white, a dark box in the central 2/3."""
    for c, cid in enumerate(chairs):
        d = root / "rendered_chairs" / cid / "renders"
        d.mkdir(parents=True)
        for v, (p, t) in enumerate(VIEWS):
            img = np.full((size, size, 3), 255, np.uint8)
            lo, hi = size // 6, size - size // 6
            img[lo:hi, lo:hi] = (40 + 10 * c, 40 + 10 * c, 40 + 10 * c)
            Image.fromarray(img).save(d / f"image_{v:03d}_p{p:03d}_t{t:03d}_r096.png")


def test_tree_loads_crops_and_holds_out_whole_chairs(tmp_path, isolated):
    make_tree(tmp_path / "data")
    ds = load_dataset("chairs", data_dir=tmp_path / "data", progress=False)
    assert ds.name == "chairs" and ds.image_size == (1, 64, 64)
    assert ds.train.dtype == torch.uint8 and ds.train.shape[1:] == (1, 64, 64)
    assert len(ds.train) + len(ds.test) == len(CHAIRS) * len(VIEWS)
    assert len(ds.test) == len(VIEWS)  # one whole chair of five (10%, at least one)
    # the central 2/3 crop is exactly the dark box: no white left in any image
    assert int(ds.train.max()) < 255 and int(ds.test.max()) < 255
    test_values = ds.test.unique().tolist()
    assert len(test_values) == 1  # one chair = one grey level
    assert test_values[0] not in ds.train.unique().tolist()
    assert ds.factor_names == ("azimuth", "elevation")
    assert sorted(set(ds.test_factors["azimuth"].tolist())) == [0.0, 90.0, 180.0, 348.0]
    assert set(ds.train_factors["elevation"].tolist()) == {20.0, 30.0}


def test_image_folder_of_64px_images(tmp_path, isolated):
    rng = np.random.default_rng(0)
    made = {}
    for g in ("chair_a", "chair_b", "chair_c"):
        d = tmp_path / "data" / "chairs_64" / g
        d.mkdir(parents=True)
        for i in range(3):
            img = rng.integers(0, 256, (64, 64), dtype=np.uint8)
            Image.fromarray(img).save(d / f"{i}.png")
            made[(g, i)] = img
    ds = load_dataset("chairs", data_dir=tmp_path / "data", progress=False)
    assert len(ds.train) == 6 and len(ds.test) == 3
    all_imgs = {bytes(v.tobytes()) for v in made.values()}
    got = {bytes(x[0].numpy().tobytes()) for x in torch.cat([ds.train, ds.test])}
    assert got == all_imgs  # grayscale 64x64 PNGs pass through unchanged
    assert ds.train_factors is None and ds.factor_names == ()


def test_rgb_png_folder_is_converted_to_grey(tmp_path, isolated):
    d = tmp_path / "data" / "chairs_64" / "x"
    d.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((64, 64, 3), (255, 0, 0), np.uint8)).save(d / f"{i}.png")
    ds = load_real_chairs(tmp_path / "data", progress=False)
    assert ds.train.unique().tolist() == [76]  # PIL L = 299/1000 * 255


def test_corrupt_png_raises_naming_it(tmp_path, isolated):
    make_tree(tmp_path / "data", CHAIRS[:2], size=120)
    bad = next((tmp_path / "data" / "rendered_chairs" / CHAIRS[1] / "renders").iterdir())
    bad.write_bytes(bad.read_bytes()[:60])
    with pytest.raises(CorruptDatasetError) as e:
        load_dataset("chairs", data_dir=tmp_path / "data", progress=False)
    assert str(bad) in str(e.value)


def test_cache_rebuilt_when_an_image_changes(tmp_path, isolated, monkeypatch):
    make_tree(tmp_path / "data", CHAIRS[:3], size=120)
    first = load_dataset("chairs", data_dir=tmp_path / "data", progress=False)
    calls = []
    real = chairsmod.preprocess_images
    monkeypatch.setattr(chairsmod, "preprocess_images", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = load_dataset("chairs", data_dir=tmp_path / "data", progress=False)
    assert calls == [] and torch.equal(first.train, again.train)
    f = sorted((tmp_path / "data" / "rendered_chairs" / CHAIRS[0] / "renders").iterdir())[0]
    Image.fromarray(np.zeros((120, 120, 3), np.uint8)).save(f)
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    rebuilt = load_dataset("chairs", data_dir=tmp_path / "data", progress=False)
    assert calls == [1]
    assert int(torch.cat([rebuilt.train, rebuilt.test]).min()) == 0


def test_real_chairs_missing_error_and_synthetic_fallback(tmp_path, isolated, capsys):
    with pytest.raises(DatasetNotFoundError) as e:
        load_real_chairs(tmp_path / "none")
    assert "rendered_chairs" in str(e.value) and str(tmp_path / "none" / "rendered_chairs") in str(e.value)
    ds = load_dataset("chairs", data_dir=tmp_path / "none", train_count=40, test_count=10, cache=False, progress=False)
    assert ds.name == "synthetic-chairs" and len(ds.train) == 40 and len(ds.test) == 10
    err = capsys.readouterr().err
    assert "synthetic chairs" in err and len(err.strip().splitlines()) == 1


def test_chairs_or_synthetic_searches_folders_and_shares_the_notice(tmp_path, isolated, capsys):
    """The training CLI's decision: real chairs found -> "chairs", silently; none -> "synthetic-chairs" and the
    same one-line notice load_chairs gives."""
    assert chairsmod.chairs_or_synthetic(tmp_path / "none") == "synthetic-chairs"
    notice = capsys.readouterr().err
    assert notice.strip() == chairsmod.fallback_notice(chairsmod.find_real_chairs(tmp_path / "none")[3])
    load_dataset("chairs", data_dir=tmp_path / "none", train_count=4, test_count=2, cache=False, progress=False)
    assert capsys.readouterr().err == notice
    make_tree(tmp_path / "data", chairs=CHAIRS[:2], size=64)
    assert chairsmod.chairs_or_synthetic(tmp_path / "data") == "chairs"
    assert capsys.readouterr().err == ""


def test_split_groups_holds_out_whole_groups():
    g = np.repeat(np.arange(30), 4).astype(str)
    m = split_groups(g)
    assert m.sum() == 12
    for gid in np.unique(g):
        assert len(set(m[g == gid])) == 1
    assert np.array_equal(split_groups(g), m)  # fixed seed
    single = split_groups(["a"] * 20)
    assert single.sum() == 2


def test_flat_3dchairs_folder_groups_by_file_name_prefix(tmp_path, isolated):
    d = tmp_path / "data" / "3DChairs" / "images"
    d.mkdir(parents=True)
    for chair in range(10):
        for v, (p, t) in enumerate(VIEWS[:2]):
            Image.fromarray(np.full((64, 64), chair * 20, np.uint8)).save(d / f"{chair + 1}_image_{v:03d}_p{p:03d}_t{t:03d}_r096.png")
    ds = load_dataset("chairs", data_dir=tmp_path / "data", progress=False)
    assert len(ds.test) == 2 and len(ds.train) == 18  # one whole chair (both views) held out
    assert len(ds.test.unique()) == 1
    assert set(ds.train_factors["azimuth"].tolist()) == {0.0, 90.0}
