"""Proof on real data that no one here made: Fashion-MNIST written as PNG files in class sub-folders and read
back with --dataset FOLDER gives exactly the built-in loader's tensors (only the split rule differs), and a
short training run on the folder evaluates to a class accuracy. Skipped where Debian's dataset-fashion-mnist
is not installed."""
from __future__ import annotations

import json

import numpy as np
import pytest

from jointvae_fast import evaluate
from jointvae_fast import train as train_cli
from jointvae_fast.data import load_dataset
from jointvae_fast.data.idx import FASHION_CLASSES

from tests.data_fixtures import isolated  # noqa: F401
from tests.own_fixtures import FASHION_DIR, fashion_folder_name, write_fashion_mnist_png

pytestmark = pytest.mark.skipif(not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file(),
                                reason=f"Debian's dataset-fashion-mnist is not installed ({FASHION_DIR})")
LIMIT = 1500  # images of each split written as PNG (the whole set: write_fashion_mnist_png(out))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("fashion") / "png"
    return out, write_fashion_mnist_png(out, LIMIT)


def test_the_folder_gives_the_built_in_tensors(folder, isolated):
    out, made = folder
    builtin = load_dataset("fashion-mnist", progress=False)
    # 28x28 -> 32x32: the default fit (crop) of a square image is the built-in resize, bilinear
    own = load_dataset(str(out), img_size=32, fit="crop", progress=False, quiet=True)
    assert own.image_size == builtin.image_size == (1, 32, 32)
    assert own.label_names == tuple(sorted(fashion_folder_name(c) for c in FASHION_CLASSES))
    index = json.loads(next(isolated.glob("images/*/index.json")).read_text())["files"]
    row_of = {index[rel][2]: rel for rel in made}
    checked = 0
    for part, labels in ((own.train, own.train_labels), (own.test, own.test_labels)):
        got = part.numpy(np.arange(len(part)))
        for i, row in enumerate(part.rows):
            split, k = made[row_of[int(row)]]
            want = (builtin.train if split == "train" else builtin.test)[k].numpy()
            np.testing.assert_array_equal(got[i], want, err_msg=row_of[int(row)])
            want_label = (builtin.train_labels if split == "train" else builtin.test_labels)[k]
            assert own.label_names[labels[i]] == fashion_folder_name(FASHION_CLASSES[want_label])
            checked += 1
    assert checked == len(made) == 2 * LIMIT


def test_a_short_run_on_the_folder_reports_a_class_accuracy(folder, isolated, tmp_path):
    out, _ = folder
    run = tmp_path / "run"
    assert train_cli.main(["--dataset", str(out), "--img-size", "32", "--preset", "fashion-mnist", "--steps", "20",
                           "--batch-size", "32", "--no-images", "--no-progress", "--device", "cpu",
                           "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["preset"] == "fashion-mnist" and config["cont"] == 10 and config["disc"] == [10]
    assert evaluate.main([str(run), "--no-progress", "--limit", "200"]) == 0
    m = json.loads((run / "eval" / "metrics.json").read_text())
    assert 0.0 < m["accuracy"]["hungarian"] <= 1.0 and m["n_test"] == 200
    assert set(m["factor_accuracy"]) == {"class"}
