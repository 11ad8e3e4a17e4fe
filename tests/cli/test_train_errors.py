"""Bad input to the training CLI: a clear error (exit code 2), and nothing lost."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from jointvae_fast.store import checkpoint, run_layout
from jointvae_fast.train import main


def tiny_dataset(n=32, size=32, channels=1):
    g = torch.Generator().manual_seed(1)
    return SimpleNamespace(
        train=torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g),
        image_size=(channels, size, size),
    )


def args(out, *extra, steps=4):
    return ["--dataset", "mnist", "--cont", "2", "--disc", "3", "--batch-size", "8", "--steps", str(steps),
            "--log-every", "2", "--save-every", "2", "--no-images", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "done"
    assert main(args(out), dataset=tiny_dataset()) == 0
    return out


def snapshot(folder: Path):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_unknown_dataset_is_a_usage_error(capsys):
    """Neither a built-in name nor a path (the value of --dataset may be either)."""
    assert main(["--dataset", "imagenet"]) == 2
    assert "unknown dataset 'imagenet': neither one of mnist" in capsys.readouterr().err


def test_bad_config_file(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"dataset": "mnist", "gama": 3}))
    assert main(["--config", str(cfg), "--out", str(tmp_path / "r")], dataset=tiny_dataset()) == 2
    assert "unknown config key 'gama'" in capsys.readouterr().err
    cfg.write_text('dataset = "mnist"\nlr = "0.1"\n')
    toml = cfg.with_suffix(".toml")
    cfg.rename(toml)
    assert main(["--config", str(toml), "--out", str(tmp_path / "r")], dataset=tiny_dataset()) == 2
    assert "'lr'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_unsupported_image_size(tmp_path, capsys):
    assert main(args(tmp_path / "r"), dataset=tiny_dataset(size=28)) == 2
    assert "img_size" in capsys.readouterr().err


def test_existing_run_dir_is_refused_and_kept(finished_run, capsys):
    before = snapshot(finished_run)
    assert main(args(finished_run), dataset=tiny_dataset()) == 2
    assert "already exists" in capsys.readouterr().err
    assert snapshot(finished_run) == before


def test_overwrite_starts_over(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(args(out, "--overwrite", steps=2), dataset=tiny_dataset()) == 0
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own files are replaced
    assert [s for s, _ in run_layout.list_checkpoints(out)] == [2]


def test_resume_without_checkpoint(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--resume", str(empty)], dataset=tiny_dataset()) == 2
    assert "no config.json" in capsys.readouterr().err
    (empty / "config.json").write_text(json.dumps({"dataset": "mnist"}))
    assert main(["--resume", str(empty)], dataset=tiny_dataset()) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_resume_with_mismatched_shapes(finished_run, capsys):
    before = snapshot(finished_run)
    assert main(["--resume", str(finished_run), "--cont", "5", "--steps", "6"], dataset=tiny_dataset()) == 2
    err = capsys.readouterr().err
    assert "cont=2" in err and "cont=5" in err
    assert snapshot(finished_run) == before  # config.json, log and checkpoints untouched
    checkpoint.load_model(run_layout.checkpoint_path(finished_run, 4))


def test_truncated_checkpoint_falls_back_to_previous(tmp_path, capsys):
    out = tmp_path / "r"
    ds = tiny_dataset()
    assert main(args(out, steps=4), dataset=ds) == 0
    newest = run_layout.checkpoint_path(out, 4)
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="truncated"):
        checkpoint.load_model(newest)
    checkpoint.load_model(run_layout.checkpoint_path(out, 2))  # the previous one still loads
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        assert main(["--resume", str(out), "--steps", "6"], dataset=ds) == 0
    assert "resuming at step 2" in capsys.readouterr().err
    assert [s for s, _ in run_layout.list_checkpoints(out)][-1] == 6
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]  # the lost steps 3..4 were logged again, not twice


def test_resume_when_every_checkpoint_is_unreadable(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(args(out, steps=2), dataset=tiny_dataset()) == 0
    run_layout.checkpoint_path(out, 2).write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning):
        assert main(["--resume", str(out)], dataset=tiny_dataset()) == 2
    assert "no readable checkpoint" in capsys.readouterr().err


def test_batch_larger_than_data(tmp_path, capsys):
    assert main(args(tmp_path / "r", "--batch-size", "64"), dataset=tiny_dataset(n=32)) == 2
    assert "larger than the training split" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing written: the same command works after a fix


def test_cuda_device_without_gpu(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert main(args(tmp_path / "r", "--device", "cuda"), dataset=tiny_dataset()) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err
