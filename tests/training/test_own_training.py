"""Training on your own images (--dataset PATH): config, run files, resume, every image size."""
from __future__ import annotations

import json

import pytest
import torch

from jointvae_fast import train as train_cli
from jointvae_fast.store import run_layout
from jointvae_fast.store.checkpoint import load_checkpoint
from jointvae_fast.training.cli import resolve_run_config
from jointvae_fast.training.config import PATH_PRESET, PRESETS, resolve_config

from tests.data_fixtures import isolated  # noqa: F401
from tests.own_fixtures import class_folder


def args(data, out, *extra, steps=2):
    return ["--dataset", str(data), "--cont", "2", "--disc", "3", "--batch-size", "4", "--steps", str(steps),
            "--log-every", "1", "--save-every", "1", "--no-images", "--no-progress", "--device", "cpu",
            "--out", str(out), *extra]


def test_path_dataset_config_run_files_and_resume(tmp_path, isolated, monkeypatch):
    class_folder(tmp_path / "data", {"a": 8, "b": 8}, size=(40, 30), channels=3)
    monkeypatch.chdir(tmp_path)
    assert train_cli.main(args("data", "run", "--img-size", "32", "--fit", "pad", "--background", "black")) == 0
    config = json.loads((tmp_path / "run" / run_layout.CONFIG).read_text())
    assert config["dataset"] == str((tmp_path / "data").resolve()) and config["preset"] == PATH_PRESET
    assert config["fit"] == "pad" and config["img_size"] == 32
    assert config["disc_capacity_on"] == PRESETS[PATH_PRESET]["disc_capacity_on"]
    assert config == resolve_config(("saved", config)).to_dict()
    info = json.loads((tmp_path / "run" / run_layout.RUN_INFO).read_text())
    assert info["split"]["train"] == info["train_images"] and info["split"]["test_fraction"] == 0.1
    assert info["image_size"] == [3, 32, 32] and "skipped_images" not in info
    assert train_cli.main(["--resume", "run", "--steps", "4", "--no-progress"]) == 0
    assert [s for s, _ in run_layout.list_checkpoints(tmp_path / "run")][-1] == 4


def test_default_run_directory_is_named_after_the_folder(tmp_path, isolated, monkeypatch):
    class_folder(tmp_path / "my photos", {"a": 4, "b": 4})
    monkeypatch.chdir(tmp_path)
    cfg = resolve_config(("flags", {"dataset": "my photos"}))
    assert cfg.dataset == str((tmp_path / "my photos").resolve())
    config, _ = resolve_run_config({"dataset": "my photos"}, {})
    assert config.out.startswith("runs/my photos-")


@pytest.mark.parametrize("size,channels", [(64, 1), (128, 3), (256, 1)])
def test_every_image_size_trains(tmp_path, isolated, size, channels):
    class_folder(tmp_path / "data", {"a": 4, "b": 4}, size=(50, 50), channels=3)
    out = tmp_path / "run"
    assert train_cli.main(args(tmp_path / "data", out, "--img-size", str(size), "--channels", str(channels),
                               steps=1)) == 0
    model = load_checkpoint(run_layout.list_checkpoints(out)[-1][1]).model
    assert model.img_size == (channels, size, size)
    assert model(torch.rand(1, channels, size, size)).x_logits.shape == (1, channels, size, size)
