"""The built-in procedural chairs: factors do what they say, splits, determinism, cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jointvae_fast.data import load_dataset
from jointvae_fast.data import synthetic_chairs as sc

from tests.data_fixtures import isolated  # noqa: F401


def factors(n=1, **over):
    f = {"type": 0, "azimuth": 0.0, "elevation": 20.0, "seat_width": 1.0, "seat_height": 0.9,
         "back_height": 0.8, "leg_thickness": 0.08}
    f.update(over)
    return {k: np.broadcast_to(np.asarray(v), (n,)).copy() for k, v in f.items()}


def render(**over):
    return sc.render_chairs(factors(**over))[0, 0]


def silhouette_width(img):
    cols = np.nonzero((img < 250).any(axis=0))[0]
    return cols.max() - cols.min() + 1


@pytest.mark.parametrize("kind", range(len(sc.CHAIR_TYPES)))
def test_azimuth_0_and_360_render_the_same(kind):
    a = render(type=kind, azimuth=0.0)
    b = render(type=kind, azimuth=360.0)
    c = render(type=kind, azimuth=90.0)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("kind", range(len(sc.CHAIR_TYPES)))
def test_wider_seat_gives_wider_silhouette_at_azimuth_0(kind):
    lo, hi = sc.FACTOR_RANGES["seat_width"]
    narrow, wide = render(type=kind, seat_width=lo), render(type=kind, seat_width=hi)
    assert silhouette_width(wide) > silhouette_width(narrow) + 3


@pytest.mark.parametrize("factor", ["seat_height", "leg_thickness"])
def test_other_shape_factors_change_the_image(factor):
    lo, hi = sc.FACTOR_RANGES[factor]
    assert np.abs(render(**{factor: lo}).astype(int) - render(**{factor: hi})).sum() > 255 * 20


def test_back_height_raises_the_top_of_a_chair_with_a_back():
    lo, hi = sc.FACTOR_RANGES["back_height"]
    top = lambda img: np.nonzero((img < 250).any(axis=1))[0].min()  # noqa: E731
    assert top(render(back_height=hi)) < top(render(back_height=lo)) - 3


def test_types_differ_at_equal_other_factors():
    f = factors(len(sc.CHAIR_TYPES), azimuth=30.0)
    f["type"] = np.arange(len(sc.CHAIR_TYPES))
    imgs = sc.render_chairs(f)[:, 0].astype(int)
    for i in range(len(imgs)):
        for j in range(i):
            assert np.abs(imgs[i] - imgs[j]).sum() > 255 * 30, (sc.CHAIR_TYPES[i], sc.CHAIR_TYPES[j])


def test_images_are_grey_chairs_on_white():
    f = sc.sample_factors(70, seed=3, split="train")
    imgs = sc.render_chairs(f)
    assert imgs.dtype == np.uint8 and imgs.shape == (70, 1, 64, 64)
    border = np.concatenate([imgs[:, 0, 0], imgs[:, 0, -1], imgs[:, 0, :, 0], imgs[:, 0, :, -1]], axis=1)
    assert (border == 255).all()  # the chair never touches the frame
    dark = (imgs < 250).mean(axis=(1, 2, 3))
    assert dark.min() > 0.02 and dark.max() < 0.6
    assert (imgs.reshape(70, -1).min(1) < 150).all()  # shaded, not just outlines


def test_elevation_changes_the_view():
    assert not np.array_equal(render(elevation=20.0), render(elevation=30.0))


def test_generation_is_deterministic_and_splits_are_unseen_combinations():
    a = sc.generate_synthetic_chairs(150, 40, seed=5, progress=False)
    b = sc.generate_synthetic_chairs(150, 40, seed=5, progress=False)
    c = sc.generate_synthetic_chairs(150, 40, seed=6, progress=False)
    for x, y in zip(a, b):
        if isinstance(x, dict):
            assert all(np.array_equal(x[k], y[k]) for k in sc.FACTOR_NAMES)
        else:
            assert np.array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    tr, trf, te, tef = a
    assert tr.shape == (150, 1, 64, 64) and te.shape == (40, 1, 64, 64)
    assert set(trf) == set(sc.FACTOR_NAMES) and trf["type"].dtype == np.int64
    held = sc.held_out_cells()

    def cells(f):
        bins = [np.minimum(((f[k] - sc.FACTOR_RANGES[k][0]) / np.ptp(sc.FACTOR_RANGES[k]) * sc.BINS).astype(int),
                           sc.BINS - 1) for k in sc.SHAPE_FACTORS]
        return held[(f["type"], *bins)]

    assert not cells(trf).any() and cells(tef).all()
    assert 0.0 <= trf["azimuth"].min() and trf["azimuth"].max() < 360.0
    assert set(np.unique(trf["elevation"]).tolist()) <= set(sc.ELEVATIONS)
    for k in sc.SHAPE_FACTORS:
        lo, hi = sc.FACTOR_RANGES[k]
        assert lo <= trf[k].min() and trf[k].max() <= hi
    # the rendering of the stored factors is the stored image
    assert np.array_equal(sc.render_chairs({k: v[:20] for k, v in trf.items()}), tr[:20])


def test_every_type_and_both_elevations_are_sampled():
    f = sc.sample_factors(3000, seed=0, split="train")
    assert np.bincount(f["type"], minlength=len(sc.CHAIR_TYPES)).min() > 300
    assert set(np.unique(f["elevation"]).tolist()) == set(sc.ELEVATIONS)


def test_loader_caches_and_reloads(isolated, monkeypatch):
    ds = load_dataset("synthetic-chairs", train_count=60, test_count=12, progress=False)
    assert ds.factor_names == sc.FACTOR_NAMES and ds.label_names == sc.CHAIR_TYPES
    assert set(ds.test_factors) == set(sc.FACTOR_NAMES) and len(ds.test_factors["azimuth"]) == 12

    def fail(*a, **k):
        raise AssertionError("generated again although cached")

    monkeypatch.setattr(sc, "generate_synthetic_chairs", fail)
    again = load_dataset("synthetic-chairs", train_count=60, test_count=12, progress=False)
    assert torch.equal(ds.train, again.train) and torch.equal(ds.test, again.test)
    assert np.array_equal(ds.train_factors["seat_width"], again.train_factors["seat_width"])


@pytest.mark.parametrize("bad", [{"split": "val"}, {"count": -1}])
def test_sample_factors_rejects_bad_arguments(bad):
    args = {"count": 3, "seed": 0, "split": "train", **bad}
    with pytest.raises(ValueError):
        sc.sample_factors(**args)


def test_render_rejects_unknown_type():
    with pytest.raises(ValueError, match="type"):
        sc.render_chairs(factors(type=len(sc.CHAIR_TYPES)))


def test_worker_processes_give_the_same_data():
    one = sc.generate_synthetic_chairs(220, 30, seed=2, progress=False, workers=1, chunk=50)
    two = sc.generate_synthetic_chairs(220, 30, seed=2, progress=False, workers=2, chunk=50)
    assert np.array_equal(one[0], two[0]) and np.array_equal(one[2], two[2])


@pytest.mark.parametrize("arg,value", [("train_count", -1), ("test_count", 2.5), ("seed", "x")])
def test_loader_rejects_bad_counts_naming_the_argument(isolated, arg, value):
    with pytest.raises(ValueError, match=arg):
        load_dataset("synthetic-chairs", **{arg: value})


def test_test_split_does_not_depend_on_the_training_count():
    """What lets evaluate and explore render the test chairs alone (analysis.split.load_named_dataset)."""
    _, _, te, tef = sc.generate_synthetic_chairs(150, 40, seed=3, progress=False)
    tr0, _, te0, tef0 = sc.generate_synthetic_chairs(0, 40, seed=3, progress=False)
    assert tr0.shape == (0, 1, 64, 64) and np.array_equal(te, te0)
    assert all(np.array_equal(tef[k], tef0[k]) for k in tef)


def test_evaluation_loads_the_built_in_chairs_without_training_images(monkeypatch):
    import jointvae_fast.data as data
    from jointvae_fast.analysis.split import load_named_dataset

    calls = []
    monkeypatch.setattr(data, "load_dataset", lambda name, **kw: calls.append((name, kw)))
    load_named_dataset("synthetic-chairs", None)
    load_named_dataset("fashion-mnist", "/x")
    assert calls == [("synthetic-chairs", {"data_dir": None, "train_count": 0}), ("fashion-mnist", {"data_dir": "/x"})]
