"""A new --dataset chairs run without real chairs runs as --dataset synthetic-chairs (its dataset and, unless a
preset is given, its preset), with one notice; real chairs, --resume and injected data change nothing.

The folder search (data.chairs.find_real_chairs) is replaced, so no test depends on the machine's files, and
no test renders the 66,000 synthetic chairs."""
import json
from pathlib import Path

import pytest

from jointvae_fast.data import chairs as chairsmod
from jointvae_fast.training.cli import resolve_run_config
from jointvae_fast.training.config import PRESETS
from jointvae_fast.train import main
from tests.cli.test_train import tiny_dataset

SEARCHED = [Path("/nowhere/a"), Path("/nowhere/b")]
NOTICE = chairsmod.fallback_notice(SEARCHED)


@pytest.fixture
def no_chairs(monkeypatch):
    """find_real_chairs finds nothing; returns the data_dirs it was asked about."""
    asked = []

    def find(data_dir=None):
        asked.append(data_dir)
        return None, None, None, SEARCHED

    monkeypatch.setattr(chairsmod, "find_real_chairs", find)
    return asked


def test_no_real_chairs_resolves_to_synthetic_chairs_and_its_preset(no_chairs, capsys):
    config, resume_dir = resolve_run_config({"dataset": "chairs", "data_dir": "/d"}, {})
    assert resume_dir is None and no_chairs == ["/d"]
    assert config.dataset == "synthetic-chairs" and config.preset == "synthetic-chairs"
    assert config.to_dict() == {**config.to_dict(), **PRESETS["synthetic-chairs"]}
    assert Path(config.out).name.startswith("synthetic-chairs-")
    assert capsys.readouterr().err.strip() == NOTICE


def test_a_given_preset_still_wins(no_chairs, tmp_path):
    config, _ = resolve_run_config({"dataset": "chairs", "preset": "chairs"}, {})
    assert (config.dataset, config.preset) == ("synthetic-chairs", "chairs")
    assert config.to_dict() == {**config.to_dict(), **PRESETS["chairs"], "disc_capacity_on": "kl"}
    file = tmp_path / "c.json"
    file.write_text(json.dumps({"dataset": "chairs", "preset": "chairs", "lr": 3e-4}))
    config, _ = resolve_run_config({}, {"config": str(file)})
    assert (config.dataset, config.preset, config.lr) == ("synthetic-chairs", "chairs", 3e-4)


def test_real_chairs_change_nothing(monkeypatch, capsys):
    monkeypatch.setattr(chairsmod, "find_real_chairs", lambda data_dir=None: ("tree", Path("/r"), [("a", "p")], []))
    config, _ = resolve_run_config({"dataset": "chairs"}, {})
    assert config.dataset == "chairs" and config.preset == "chairs" and config.lr == 1e-4
    assert capsys.readouterr().err == ""


def test_resume_and_other_datasets_do_not_search(no_chairs, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(resolve_run_config({"dataset": "chairs"}, {}, True)[0].to_dict()))
    assert resolve_run_config({}, {"resume": str(run)})[0].dataset == "chairs"
    assert resolve_run_config({"dataset": "mnist"}, {})[0].dataset == "mnist"
    assert no_chairs == [] and capsys.readouterr().err == ""


def test_main_records_synthetic_chairs(no_chairs, monkeypatch, tmp_path, capsys):
    """A run through main() (the data loader replaced by 64x64 random images): config.json and run.json say
    synthetic-chairs, the notice comes once, and the synthetic chairs are what is loaded."""
    loaded = []

    def load_dataset(name, data_dir=None, **options):
        loaded.append(name)
        return tiny_dataset(n=16, size=64)

    monkeypatch.setattr("jointvae_fast.data.load_dataset", load_dataset)
    out = tmp_path / "run"
    argv = ["--dataset", "chairs", "--cont", "2", "--batch-size", "8", "--steps", "2", "--no-images", "--out", str(out)]
    assert main(argv) == 0
    assert loaded == ["synthetic-chairs"]
    config = json.loads((out / "config.json").read_text())
    assert (config["dataset"], config["preset"], config["disc"]) == ("synthetic-chairs", "synthetic-chairs", [7])
    assert json.loads((out / "run.json").read_text())["dataset"] == "synthetic-chairs"
    err = capsys.readouterr().err
    assert err.count(NOTICE) == 1 and "training synthetic-chairs (preset synthetic-chairs)" in err


def test_injected_data_keeps_the_dataset_asked_for(no_chairs, tmp_path):
    out = tmp_path / "run"
    argv = ["--dataset", "chairs", "--cont", "2", "--disc", "3", "--batch-size", "8", "--steps", "2", "--no-images",
            "--out", str(out)]
    assert main(argv, dataset=tiny_dataset(n=16, size=64)) == 0
    assert no_chairs == []
    config = json.loads((out / "config.json").read_text())
    assert (config["dataset"], config["preset"]) == ("chairs", "chairs")
