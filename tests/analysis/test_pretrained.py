"""Pretrained-model registry: pack a model trained here for a few steps into a temporary registry, load it
back by name, and check that its card's numbers are what a fresh `evaluate` of the loaded model gives.
The same check runs on every model shipped in the package (skipped while none ships, or where its
dataset is not available here)."""
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from jointvae_fast import evaluate, pretrained
from jointvae_fast import pack as packmod
from jointvae_fast.pack import CARD_NUMBERS, card_numbers, metric, pack
from jointvae_fast.train import main as train_main
from jointvae_fast.store import checkpoint

ROOT = Path(__file__).resolve().parents[2]


def quadrant_images(n, seed):
    """uint8 [n, 1, 32, 32]: a bright 8x8 square in one of four quadrants (the label), jittered by up to 4 px."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    x = np.zeros((n, 1, 32, 32), np.uint8)
    for i, q in enumerate(labels):
        top, left = 16 * (q // 2) + rng.integers(0, 5), 16 * (q % 2) + rng.integers(0, 5)
        x[i, 0, top : top + 8, left : left + 8] = 255
    return torch.from_numpy(x), labels


def tiny_dataset():
    train, _ = quadrant_images(64, 0)
    test, labels = quadrant_images(40, 1)
    return SimpleNamespace(train=train, test=test, test_labels=labels, image_size=(1, 32, 32))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A run trained 6 steps here, evaluated, and packed as 'tiny' into a temporary registry."""
    base = tmp_path_factory.mktemp("pretrained")
    run, root, ds = base / "run", base / "registry", tiny_dataset()
    argv = ["--dataset", "mnist", "--cont", "2", "--disc", "4", "--batch-size", "8", "--steps", "6", "--log-every", "2",
            "--save-every", "6", "--out", str(run), "--no-images", "--lr", "1e-2"]
    assert train_main(argv, dataset=ds) == 0
    assert evaluate.main([str(run), "--no-progress"], dataset=ds) == 0
    dest = pack(run, "tiny", root=root, commit="0123abc")
    return SimpleNamespace(run=run, root=root, dest=dest, ds=ds)


def check_card_against_fresh_evaluation(name, root, dataset, out, monkeypatch):
    """Evaluate pretrained:NAME afresh on `dataset` (the card's number of test images) and compare."""
    if root is None:
        monkeypatch.delenv(pretrained.ENV, raising=False)
    else:
        monkeypatch.setenv(pretrained.ENV, str(root))
    _, meta = pretrained.load(name)
    recorded, card = meta["metrics"], card_numbers(meta["card"] or "")
    assert recorded is not None, f"{name}: no metrics.json"
    n = recorded["n_test"]
    assert evaluate.main([f"pretrained:{name}", "--no-progress", "--out", str(out), "--limit", str(n)], dataset=dataset) == 0
    fresh = json.loads((out / "metrics.json").read_text())
    assert set(card) == {k for k, path, _ in CARD_NUMBERS if metric(recorded, path) is not None}
    for key, path, _ in CARD_NUMBERS:
        if key in card:  # the card prints 6 significant digits
            assert card[key] == pytest.approx(metric(fresh, path), rel=2e-5, abs=1e-9), key
            assert card[key] == pytest.approx(metric(recorded, path), rel=2e-5, abs=1e-9), key
    for key in ("kl_cont", "kl_disc"):
        assert fresh[key] == pytest.approx(recorded[key], rel=1e-4, abs=1e-7), key
    assert fresh["step"] == recorded["step"] and fresh["active_units"] == recorded["active_units"]


def test_names_and_load_round_trip(registry):
    assert pretrained.names(registry.root) == ["tiny"]
    model, meta = pretrained.load("tiny", registry.root)
    newest = sorted((registry.run / "checkpoints").glob("step-*.pt"))[-1]
    trained = checkpoint.load_model(newest)
    for k, v in trained.state_dict().items():
        assert torch.equal(model.state_dict()[k], v) and model.state_dict()[k].dtype == torch.float32, k
    assert not model.training and (model.cont, model.disc) == (2, (4,))
    assert meta["name"] == "tiny" and meta["checkpoint"]["step"] == 6 and meta["checkpoint"]["dataset"] == "mnist"
    assert meta["metrics"]["step"] == 6 and meta["card"].startswith("# tiny")
    raw = checkpoint.read(registry.dest / "model.pt")
    assert "training" not in raw  # no optimizer state shipped
    assert not set(packmod.LOCAL_CONFIG_KEYS) & set(raw["meta"]["config"])


def test_card_numbers_equal_a_fresh_evaluation(registry, tmp_path, monkeypatch):
    check_card_against_fresh_evaluation("tiny", registry.root, registry.ds, tmp_path / "fresh", monkeypatch)


def test_card_records_the_command_commit_and_no_machine_paths(registry):
    card = (registry.dest / "card.md").read_text()
    assert "`python -m jointvae_fast.train --dataset mnist --cont 2 --disc 4" in card and "--out run " in card
    assert "0123abc" in card and "started" in card and "training time" in card
    assert "accuracy_hungarian" in card_numbers(card) and card_numbers(card)["n_test"] == 40
    for f in ("card.md", "metrics.json"):
        text = (registry.dest / f).read_text()
        assert str(registry.run.parent) not in text and sys.executable not in text, f


def test_unknown_name_is_one_line_listing_the_available(registry, tmp_path, monkeypatch, capsys):
    with pytest.raises(pretrained.PretrainedError, match=r"unknown pretrained model 'nope'; available: tiny$"):
        pretrained.load("nope", registry.root)
    monkeypatch.setenv(pretrained.ENV, str(registry.root))
    assert evaluate.main(["pretrained:nope", "--no-progress"], dataset=registry.ds) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: unknown pretrained model 'nope'; available: tiny"
    empty = tmp_path / "empty"
    assert pretrained.names(empty) == []
    with pytest.raises(pretrained.PretrainedError, match="holds no model yet"):
        pretrained.load("tiny", empty)


def test_env_var_chooses_the_registry(registry, monkeypatch):
    monkeypatch.setenv(pretrained.ENV, str(registry.root))
    assert pretrained.names() == ["tiny"] and pretrained.registry_root() == registry.root
    monkeypatch.delenv(pretrained.ENV)
    assert pretrained.registry_root() == pretrained.DEFAULT_ROOT


def test_explorer_takes_pretrained_and_its_recorded_kl(registry, monkeypatch):
    from jointvae_fast.explore import build_explorer

    monkeypatch.setenv(pretrained.ENV, str(registry.root))
    info = build_explorer("pretrained:tiny", use_dataset=False).info()
    recorded = json.loads((registry.dest / "metrics.json").read_text())
    assert "recorded by evaluate" in info["kl_source"] and "pretrained:tiny" in info["source"]
    assert sorted(u["kl"] for u in info["units"]) == pytest.approx(sorted(recorded["kl_cont"]))


def test_pack_refuses_what_it_cannot_vouch_for(registry, tmp_path):
    with pytest.raises(pretrained.PretrainedError, match="exists"):
        pack(registry.run, "tiny", root=registry.root)
    with pytest.raises(pretrained.PretrainedError, match="lowercase letters"):
        pack(registry.run, "Bad Name", root=tmp_path)
    with pytest.raises(pretrained.PretrainedError, match="evaluate the run first"):
        pack(registry.run, "x", eval_dir=tmp_path, root=tmp_path)
    stale = tmp_path / "stale"
    stale.mkdir()
    m = json.loads((registry.run / "eval" / "metrics.json").read_text())
    (stale / "metrics.json").write_text(json.dumps(dict(m, step=2)))
    with pytest.raises(pretrained.PretrainedError, match="evaluated step 2 but the newest checkpoint is step 6"):
        pack(registry.run, "x", eval_dir=stale, root=tmp_path)


def test_pack_cli(registry, tmp_path):
    r = subprocess.run([sys.executable, "-m", "jointvae_fast.pack", str(registry.run), "tiny2", "--root",
                        str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0 and "complete the TODO lines" in r.stdout, r.stderr
    assert pretrained.names(tmp_path) == ["tiny2"]
    r = subprocess.run([sys.executable, "-m", "jointvae_fast.pack", str(tmp_path / "none"), "x", "--root",
                        str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1


SHIPPED = pretrained.names(pretrained.DEFAULT_ROOT)


def _test_split_only(dataset_name):
    """The dataset as evaluate loads it (the built-in chairs: the test split alone)."""
    from jointvae_fast.analysis.split import load_named_dataset

    return load_named_dataset(dataset_name, None)


@pytest.mark.parametrize("name", SHIPPED or [pytest.param(None, marks=pytest.mark.skip(
    reason="no pretrained model ships in jointvae_fast/pretrained/models yet"))])
def test_shipped_model_card_matches_a_fresh_evaluation(name, tmp_path, monkeypatch):
    from jointvae_fast.data import DatasetNotFoundError, load_dataset

    dataset_name = json.loads((pretrained.DEFAULT_ROOT / name / "metrics.json").read_text())["dataset"]
    try:
        ds = load_dataset(dataset_name, download=False) if dataset_name in ("mnist", "fashion-mnist") \
            else _test_split_only(dataset_name)
    except DatasetNotFoundError as e:
        pytest.skip(f"{name}: dataset {dataset_name} is not available here ({e})")
    check_card_against_fresh_evaluation(name, None, ds, tmp_path / "fresh", monkeypatch)


def test_evaluate_pretrained_writes_its_report_in_the_current_folder(registry, tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.ENV, str(registry.root))
    monkeypatch.chdir(tmp_path)
    assert evaluate.main(["pretrained:tiny", "--no-progress"], dataset=registry.ds) == 0
    m = json.loads((tmp_path / "pretrained-tiny_eval" / "metrics.json").read_text())
    assert m["source_kind"] == "pretrained" and m["step"] == 6 and m["dataset"] == "mnist"
