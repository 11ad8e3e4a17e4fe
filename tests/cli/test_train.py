"""End to end: `python -m jointvae_fast.train` on tiny in-memory data (injected through main(dataset=...)).

Each run is a 32x32 model with 2 continuous units and one 3-class variable on
64 random uint8 images, batch 8, a handful of steps.
"""
import json
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from jointvae_fast.store import checkpoint, run_layout
from jointvae_fast.training import batches, loop
from jointvae_fast.training.config import SCHEMA, preset_table, resolve_config
from jointvae_fast.train import main


ROOT = Path(__file__).resolve().parents[2]


def tiny_dataset(n=64, size=32, channels=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(
        train=torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g),
        image_size=(channels, size, size),
    )


def args(out, *extra, steps=6):
    return ["--dataset", "mnist", "--cont", "2", "--disc", "3", "--batch-size", "8", "--steps", str(steps),
            "--log-every", "2", "--save-every", "4", "--out", str(out), *extra]


def params(path):
    return checkpoint.read(path)["model"]


def test_end_to_end_run_writes_log_checkpoints_images(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(args(out, "--keep", "2", steps=10), dataset=tiny_dataset()) == 0
    err = capsys.readouterr().err
    assert "step 2/10" in err and "finished 10 steps" in err  # plain progress lines when not a terminal

    cfg = json.loads((out / "config.json").read_text())
    assert set(cfg) == set(SCHEMA)
    assert cfg["cont"] == 2 and cfg["disc"] == [3] and cfg["preset"] == "mnist" and cfg["lr"] == 5e-4
    assert cfg["cont_max"] == 5.0 and cfg["cont_iters"] == 25000 and cfg["cont_gamma"] == 30.0
    run = json.loads((out / "run.json").read_text())
    assert run["steps_per_epoch"] == 8 and run["total_steps"] == 10 and run["train_images"] == 64
    # how the steps ran, and why: on the CPU always eagerly
    assert run["step_mode"] == "eager (cpu)" and run["step_modes"] == [{"step": 1, "mode": "eager (cpu)"}]

    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4, 6, 8, 10]
    first = lines[0]
    for key in ("loss", "recon", "capacity_loss", "kl_cont_sum", "kl_disc_sum", "c_cont", "c_disc",
                "temperature", "img_per_s", "steps_per_s", "epoch", "elapsed_s"):
        assert isinstance(first[key], float), key
    assert all(r["step_mode"] == "eager (cpu)" for r in lines)
    assert len(first["kl_cont"]) == 2 and len(first["kl_disc"]) == 1
    assert first["kl_cont_sum"] == pytest.approx(sum(first["kl_cont"]))
    # capacities at the logged step: C(step) = c_max * step / iters (step 1 is the first update)
    assert first["c_cont"] == pytest.approx(5.0 * 2 / 25000) and first["c_disc"] == pytest.approx(5.0 * 2 / 25000)
    assert lines[-1]["epoch"] == pytest.approx(10 / 8)
    # the loss is (recon + capacity loss) / (H*W)
    assert first["loss"] == pytest.approx((first["recon"] + first["capacity_loss"]) / 1024, rel=1e-5)

    kept = run_layout.list_checkpoints(out)
    assert [s for s, _ in kept] == [8, 10]  # keep 2: steps 4 and 8 saved, 4 pruned, 10 at the end
    ck = checkpoint.load_checkpoint(kept[-1][1])
    assert ck.meta["step"] == 10 and ck.meta["config"]["cont"] == 2 and ck.training["step"] == 10
    assert torch.load(kept[-1][1], weights_only=True)["format"] == "jointvae_fast/1"
    assert set(ck.training["rng"]) == {"cpu", "ranks"}

    from PIL import Image

    samples = Image.open(out / "samples.png")
    assert samples.size == (8 * 34 + 2, 8 * 34 + 2)
    trav = Image.open(out / "traversal.png")
    assert trav.size == (10 * 34 + 2, 3 * 34 + 2)  # 2 unit rows + 1 discrete row, 10 columns


def test_keep_every_keeps_multiples_besides_the_last(tmp_path):
    out = tmp_path / "run"
    assert main(args(out, "--keep", "1", "--keep-every", "4", "--save-every", "2", steps=10),
                dataset=tiny_dataset()) == 0
    assert [s for s, _ in run_layout.list_checkpoints(out)] == [4, 8, 10]  # 2, 6 pruned; 10 is the last
    assert json.loads((out / "config.json").read_text())["keep_every"] == 4
    assert main(args(tmp_path / "bad", "--keep-every", "0"), dataset=tiny_dataset()) == 2


def test_keep_every_steps_are_saved_even_off_the_save_interval(tmp_path):
    """--keep-every 3 with --save-every 4: steps 3, 6, 9 are written (and kept) although 4 does not divide them."""
    out = tmp_path / "run"
    assert main(args(out, "--keep", "1", "--keep-every", "3", "--save-every", "4", steps=10),
                dataset=tiny_dataset()) == 0
    assert [s for s, _ in run_layout.list_checkpoints(out)] == [3, 6, 9, 10]


def test_step_mode_changes_reach_log_and_run_json(tmp_path, monkeypatch):
    """Each change of TrainStep.step_mode is kept with its first step (run.json); every log line carries the
    mode of its last step. (Modes forced here: on the CPU every step is "eager (cpu)".)"""
    from jointvae_fast.training.step import TrainStep

    calls = []

    def mode(self):
        calls.append(1)
        return "eager (warm-up)" if len(calls) <= 3 else "cuda-graph"

    monkeypatch.setattr(TrainStep, "step_mode", property(mode))
    out = tmp_path / "run"
    assert main(args(out, "--no-images", steps=6), dataset=tiny_dataset()) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["step_modes"] == [{"step": 1, "mode": "eager (warm-up)"}, {"step": 4, "mode": "cuda-graph"}]
    assert run["step_mode"] == "cuda-graph"
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step_mode"] for r in lines] == ["eager (warm-up)", "cuda-graph", "cuda-graph"]


def test_first_step_uses_capacity_at_step_one(tmp_path):
    out = tmp_path / "run"
    assert main(args(out, "--log-every", "1", "--cont-max", "4", "--cont-iters", "8", "--no-images", steps=2),
                dataset=tiny_dataset()) == 0
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["c_cont"] for r in lines] == [0.5, 1.0]
    assert not (out / "samples.png").exists()


def test_limit_uses_a_subset(tmp_path):
    out = tmp_path / "run"
    assert main(args(out, "--limit", "16", "--no-images", steps=3), dataset=tiny_dataset()) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["train_images"] == 16 and run["steps_per_epoch"] == 2


def test_temperature_annealing_is_logged(tmp_path):
    out = tmp_path / "run"
    flags = ["--temperature", "1.0", "--temperature-final", "0.5", "--temperature-anneal-steps", "4", "--no-images"]
    assert main(args(out, *flags, steps=6), dataset=tiny_dataset()) == 0
    temps = [json.loads(line)["temperature"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert temps == pytest.approx([0.5 ** 0.5, 0.5, 0.5])  # tau0 * (tf/tau0)^(step/N), floored at tf
    assert loop.temperature_at(resolve_config(("test", {"dataset": "mnist", "temperature": 0.67})), 10**6) == 0.67


def test_exact_resume_matches_one_run(tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    ds = tiny_dataset()
    assert main(args(one, "--no-images", steps=13), dataset=ds) == 0
    assert main(args(two, "--no-images", steps=5), dataset=ds) == 0  # stops mid-epoch (8 steps per epoch)
    assert main(["--resume", str(two), "--steps", "13", "--no-images"], dataset=ds) == 0
    a = checkpoint.read(run_layout.checkpoint_path(one, 13))
    b = checkpoint.read(run_layout.checkpoint_path(two, 13))
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["training"]["optimizer"]["state"], b["training"]["optimizer"]["state"]
    for i in sa:
        for k in sa[i]:
            assert torch.equal(sa[i][k], sb[i][k])
    # the resumed run's log continues where the checkpoint was
    steps = [json.loads(line)["step"] for line in (two / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 5, 6, 8, 10, 12, 13]
    capsys.readouterr()
    assert main(["--resume", str(two), "--no-images"], dataset=ds) == 0  # a finished run: nothing to do
    assert "nothing to do: the run is already at step 13 of 13" in capsys.readouterr().err
    assert [s for s, _ in run_layout.list_checkpoints(two)][-1] == 13


def _step_class(action):
    class HookedStep(loop.TrainStep):
        def __call__(self, x, step):
            terms = super().__call__(x, step)
            action(self, step)
            return terms

    return HookedStep


def test_ctrl_c_saves_a_resumable_checkpoint(tmp_path, monkeypatch, capsys):
    ds = tiny_dataset()
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(args(full, "--no-images", steps=9), dataset=ds) == 0

    def interrupt(step_fn, step):
        if step == 3:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(loop, "TrainStep", _step_class(interrupt))
    assert main(args(cut, "--no-images", steps=9), dataset=ds) == 130
    assert "interrupted: checkpoint saved at step 3" in capsys.readouterr().err
    assert [s for s, _ in run_layout.list_checkpoints(cut)] == [3]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    monkeypatch.undo()
    assert main(["--resume", str(cut), "--no-images"], dataset=ds) == 0
    a, b = params(run_layout.checkpoint_path(full, 9)), params(run_layout.checkpoint_path(cut, 9))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    def poison(step_fn, step):
        if step == 5:
            with torch.no_grad():
                step_fn.model.to_posterior.bias.fill_(float("nan"))

    monkeypatch.setattr(loop, "TrainStep", _step_class(poison))
    out = tmp_path / "run"
    assert main(args(out, "--log-every", "3", steps=12), dataset=tiny_dataset()) == 1
    err = capsys.readouterr().err
    assert "non-finite loss at step 6" in err and "loss" in err and "step-00000004.pt" in err
    assert [s for s, _ in run_layout.list_checkpoints(out)] == [4]
    good = params(run_layout.checkpoint_path(out, 4))
    assert all(torch.isfinite(v).all() for v in good.values())
    assert not (out / "samples.png").exists()


def test_help_documents_every_flag_with_defaults():
    proc = subprocess.run([sys.executable, "-m", "jointvae_fast.train", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    for key in SCHEMA:
        assert "--" + key.replace("_", "-") in text, key
    for flag in ("--resume", "--config", "--overwrite"):
        assert flag in text
    assert text.count("(default:") >= len(SCHEMA)
    assert " ".join(preset_table().split()) in text  # the presets' table, as in README.md
    assert "chairs" in text and "recon_weight 0.3333" in text
    assert "| synthetic-chairs | 1x64x64 | 32 | [7] | 5e-4 |" in text and "disc_capacity_on information" in text


class LazyImages:
    """A dataset split that materialises batches on demand (like the procedural dSprites)."""

    def __init__(self, images):
        self.images = images
        self.image_size = tuple(images.shape[1:])
        self.calls = 0

    def __len__(self):
        return self.images.shape[0]

    def gather(self, idx):
        self.calls += 1
        return self.images[idx.cpu()]


def test_lazy_split_trains_like_the_tensor(tmp_path):
    ds = tiny_dataset()
    lazy = LazyImages(ds.train)
    assert main(args(tmp_path / "a", "--no-images"), dataset=ds) == 0
    assert main(args(tmp_path / "b", "--no-images"), dataset=SimpleNamespace(train=lazy, image_size=ds.image_size)) == 0
    assert lazy.calls == 6
    a, b = params(run_layout.checkpoint_path(tmp_path / "a", 6)), params(run_layout.checkpoint_path(tmp_path / "b", 6))
    assert all(torch.equal(a[k], b[k]) for k in a)
    sub = batches.limit_images(lazy, 10, seed=0)
    assert torch.equal(sub, batches.limit_images(ds.train, 10, seed=0)) and sub.shape == (10, 1, 32, 32)
