"""Evaluating and exploring a run on your own images; what each class picked up (class_members)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays

from jointvae_fast import evaluate, pretrained
from jointvae_fast import train as train_cli
from jointvae_fast.analysis.class_members import class_members, member_positions
from jointvae_fast.explore.load import build_explorer
from jointvae_fast.model import network_note
from jointvae_fast.pack import pack

from tests.data_fixtures import isolated  # noqa: F401
from tests.own_fixtures import class_folder, pattern, write_image


def test_class_members_known_answer():
    probs = np.array([[0.6, 0.4], [0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    got = class_members(probs, 2)
    assert [g.tolist() for g in got] == [[1, 0], [2]]  # 0.9 first; ties (rows 0, 3) by position; row 4 -> class 0
    assert [g.tolist() for g in class_members(probs, 10)] == [[1, 0, 3, 4], [2]]
    assert class_members(np.array([[1.0, 0.0, 0.0]]), 3)[2].tolist() == []


@given(arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(1, 6)), elements=st.floats(0, 1)),
       st.integers(0, 8))
def test_class_members_properties(probs, n):
    got = class_members(probs, n)
    top = probs.argmax(1)
    for k, members in enumerate(got):
        assert len(members) == min(n, int((top == k).sum()))
        assert (top[members] == k).all()
        assert (np.diff(probs[members, k]) <= 0).all()  # most probable first
        if len(members) < (top == k).sum() and len(members):  # nothing left out is more probable
            rest = np.setdiff1d(np.nonzero(top == k)[0], members)
            assert probs[rest, k].max() <= probs[members, k].min()


def test_member_positions_splits_the_variables():
    logits = torch.tensor([[5.0, 0, 0, 1], [0, 5.0, 1, 0]])
    assert member_positions(logits, [2, 2], 5) == {"c0": [[0], [1]], "c1": [[1], [0]]}


def _train(data, out, *extra):
    argv = ["--dataset", str(data), "--img-size", "32", "--cont", "2", "--disc", "3", "--batch-size", "8",
            "--steps", "2", "--no-images", "--no-progress", "--device", "cpu", "--out", str(out), *extra]
    assert train_cli.main(argv) == 0


@pytest.fixture
def flat_run(tmp_path, isolated):
    for i in range(40):  # images directly in the folder: no labels
        write_image(tmp_path / "flat" / f"{i:03d}.png", pattern(30, 36, 3, seed=i))
    _train(tmp_path / "flat", tmp_path / "run")
    return tmp_path / "run"


def test_evaluate_a_run_without_labels(flat_run, capsys):
    assert evaluate.main([str(flat_run), "--no-progress"]) == 0
    report = flat_run / "eval"
    m = json.loads((report / "metrics.json").read_text())
    assert m["accuracy"] is None and m["mig"] is None and m["factor_information"] is None
    assert m["recon_nll"] > 0 and len(m["kl_cont"]) == 2 and m["discrete_information"]["c0"]["class_usage"]
    members = m["class_members"]["c0"]
    assert len(members) == 3 and sum(len(c) for c in members) == min(m["n_test"], 30)
    assert (report / "class_members_c0.png").is_file() and "class_members_c0.png" in (report / "index.html").read_text()
    for name in ("samples_by_class.png", "traversal_c0.png", "reconstructions.png", "class_usage.png"):
        assert name in m["figures"]


def test_evaluate_a_run_with_folder_labels_and_a_csv(tmp_path, isolated):
    files = class_folder(tmp_path / "data", {"cat": 20, "dog": 20}, size=(32, 32))
    _train(tmp_path / "data", tmp_path / "run")
    assert evaluate.main([str(tmp_path / "run"), "--no-progress"]) == 0
    m = json.loads((tmp_path / "run/eval/metrics.json").read_text())
    assert m["accuracy"]["hungarian"] >= 0.5 and set(m["factor_accuracy"]) == {"class"}
    assert m["mig"]["factor_names"] == ["class"] and "class" in m["factor_information"]["c0"]
    assert m["factor_contingency"]["c0"]["class"]["bins"] == ["cat", "dog"]
    rows = ["file,animal,size"] + [f"{rel},{rel.split('/')[0]},{i % 5}" for i, rel in enumerate(sorted(files))]
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    _train(tmp_path / "data", tmp_path / "run2", "--labels", str(tmp_path / "l.csv"))
    assert evaluate.main([str(tmp_path / "run2"), "--no-progress"]) == 0
    m = json.loads((tmp_path / "run2/eval/metrics.json").read_text())
    assert set(m["factor_accuracy"]) == {"animal", "size"} and m["mig"]["factor_names"] == ["animal", "size"]


def test_explore_a_run_on_own_images(flat_run):
    ex = build_explorer(str(flat_run))
    assert ex.test.images is not None and tuple(ex.test.images.shape[1:]) == (3, 32, 32)
    assert ex.test.images[:2].dtype == torch.uint8


def test_a_128_model_card_names_the_extension_and_no_machine_paths(tmp_path, isolated):
    for i in range(24):
        write_image(tmp_path / "my data" / f"{i:03d}.png", pattern(40, 40, 3, seed=i))
    run = tmp_path / "run"
    _train(tmp_path / "my data", run, "--img-size", "128")
    assert evaluate.main([str(run), "--no-progress"]) == 0
    folder = pack(run, "mine", root=tmp_path / "registry", commit="abc")
    card = (folder / "card.md").read_text()
    assert network_note(128) in card and "1 more 32-channel stride-2 block" in card
    assert str(tmp_path) not in card and "| my data (preset images) |" in card
    assert str(tmp_path) not in (folder / "metrics.json").read_text()
    model, meta = pretrained.load("mine", root=tmp_path / "registry")
    assert model.img_size == (3, 128, 128) and str(tmp_path) not in json.dumps(meta["checkpoint"])
