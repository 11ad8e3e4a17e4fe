"""The supervised ceiling (analysis/supervised_ceiling.py) on tiny 64x64 sets made here: trivially separable
classes are learnt, labels independent of the images are not, the seed fixes the result, bad input is one line."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from jointvae_fast.analysis.sources import EvaluationError
from jointvae_fast.analysis.supervised_ceiling import main, scores, type_ceiling
from jointvae_fast.errors import UserInputError


def bright_dark(n_train=64, n_test=40, seed=0, shuffle_labels=False, factor=False):
    """Class 1: pixels in 200..255, class 0: in 0..55 (1 x 64 x 64 uint8). shuffle_labels: labels drawn
    independently of the images (balanced, permuted). factor: the classes as the first factor `kind` (as the
    synthetic chairs' `type`) instead of labels."""
    rng = np.random.default_rng(seed)

    def part(n):
        y = rng.permutation(np.arange(n) % 2)
        img = rng.integers(0, 56, (n, 1, 64, 64)) + 200 * y[:, None, None, None]
        labels = rng.permutation(y) if shuffle_labels else y
        return torch.from_numpy(img.astype(np.uint8)), labels.astype(np.int64)

    (tr, ytr), (te, yte) = part(n_train), part(n_test)
    if factor:
        return SimpleNamespace(name="toy", train=tr, test=te, factor_names=("kind", "size"),
                               train_factors={"kind": ytr, "size": rng.random(n_train)},
                               test_factors={"kind": yte, "size": rng.random(n_test)}, label_names=("dark", "bright"))
    return SimpleNamespace(name="toy", train=tr, test=te, train_labels=ytr, test_labels=yte)


def test_separable_classes_reach_accuracy_one():
    r = type_ceiling(bright_dark(), steps=30, batch=16, seed=0, lr=1e-3, progress=False)
    assert r["target"] == "labels" and r["n_classes"] == 2 and r["n_test"] == 40
    assert r["test_accuracy"] == 1.0 and r["per_class_accuracy"] == [1.0, 1.0]
    assert r["confusion"] == [[20, 0], [0, 20]]


def test_first_discrete_factor_is_the_target_without_labels():
    """The synthetic chairs have no labels: their first integer factor (type) is classified, named by label_names."""
    r = type_ceiling(bright_dark(factor=True), steps=30, batch=16, seed=0, lr=1e-3, progress=False)
    assert r["target"] == "kind" and r["class_names"] == ["dark", "bright"] and r["test_accuracy"] == 1.0


def test_labels_independent_of_the_images_stay_near_chance():
    ds = bright_dark(n_train=64, n_test=400, shuffle_labels=True)
    r = type_ceiling(ds, steps=40, batch=16, seed=0, lr=1e-3, progress=False)
    assert abs(r["test_accuracy"] - 0.5) < 0.1  # 400 test images: binomial sd 0.025


def test_same_seed_same_result_other_seed_other_training():
    ds = bright_dark(shuffle_labels=True)
    timing = {"seconds", "steps_per_second"}
    a, b, c = (type_ceiling(ds, steps=12, batch=8, seed=s, lr=1e-3, progress=False, log_every=4) for s in (3, 3, 4))
    assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}
    assert [e["loss"] for e in a["log"]] != [e["loss"] for e in c["log"]]
    assert [e["step"] for e in a["log"]] == [4, 8, 12]


def test_scores_on_a_known_case():
    truth = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 1, 0])  # class 3 never occurs
    s = scores(pred, truth, 4)
    assert s["test_accuracy"] == pytest.approx(4 / 6)
    assert s["confusion"] == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert s["per_class_accuracy"] == [pytest.approx(2 / 3), 1.0, 0.0, None]
    swapped = scores(1 - np.array([0, 1, 1, 0]), np.array([0, 1, 1, 0]), 2)  # every prediction wrong, relabelled right
    assert swapped["test_accuracy"] == 0.0 and swapped["test_accuracy_hungarian"] == 1.0


@pytest.mark.parametrize("kwargs, name", [
    ({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"), ({"batch": 0}, "batch"), ({"batch": 65}, "batch"),
    ({"seed": -1}, "seed"), ({"lr": 0.0}, "lr"), ({"lr": float("nan")}, "lr"),
])
def test_bad_settings_are_one_line_naming_the_argument(kwargs, name):
    settings = {"steps": 5, "batch": 8, "seed": 0, "lr": 1e-3, **kwargs}
    with pytest.raises(UserInputError, match=rf"^{name} must") as e:
        type_ceiling(bright_dark(), progress=False, **settings)
    assert "\n" not in str(e.value)


def test_a_dataset_without_labels_or_discrete_factor_is_refused():
    ds = bright_dark()
    del ds.train_labels, ds.test_labels
    with pytest.raises(EvaluationError, match="neither labels nor a discrete") as e:
        type_ceiling(ds, steps=5, progress=False)
    assert "\n" not in str(e.value)
    only_test = bright_dark()
    del only_test.train_labels
    with pytest.raises(EvaluationError, match="training split has no labels"):
        type_ceiling(only_test, steps=5, progress=False)


def test_cli_writes_the_json_and_prints_the_accuracy(tmp_path, capsys):
    out = tmp_path / "sub" / "seed0.json"
    code = main(["--dataset", "toy", "--steps", "20", "--batch", "16", "--seed", "0", "--json", str(out)],
                dataset=bright_dark())
    assert code == 0
    r = json.loads(out.read_text())
    assert r["test_accuracy"] == 1.0 and r["steps"] == 20 and r["log"][-1]["step"] == 20
    captured = capsys.readouterr()
    assert "labels test accuracy 1.0000" in captured.out
    assert "step 20/20: loss" in captured.err


def test_cli_bad_steps_is_one_error_line(capsys):
    assert main(["--dataset", "toy", "--steps", "0"], dataset=bright_dark()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: steps must be an integer >= 1, got 0"]
