"""--tensorboard: the log's scalars and the first-look grids as TensorBoard events (training/tensorboard_log.py).

Tiny in-process runs as in test_train_cli.py (32x32, 2 continuous units, one 3-class variable, batch 8);
the event files are read back with TensorBoard's own EventAccumulator.
"""
import io
import json
import sys

import numpy as np
import pytest
import torch

from jointvae_fast.train import main
from jointvae_fast.store import checkpoint, run_layout
from jointvae_fast.training.tensorboard_log import TENSORBOARD_DIR, scalar_items
from tests.cli.test_train import args, tiny_dataset

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

TB = ["--tensorboard", "--no-progress"]
TIMING = {"img_per_s", "steps_per_s", "elapsed_s"}


def events(out) -> EventAccumulator:
    acc = EventAccumulator(str(out / TENSORBOARD_DIR), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def log_records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def scalar(acc, tag) -> dict[int, float]:
    found = acc.Scalars(tag)
    steps = [e.step for e in found]
    assert len(steps) == len(set(steps)), (tag, steps)  # one value per step
    return {e.step: e.value for e in found}


def png_pixels(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_scalars_are_the_log_records(tmp_path):
    out = tmp_path / "run"
    assert main(args(out, *TB, "--no-images", steps=6), dataset=tiny_dataset()) == 0
    records, acc = log_records(out), events(out)
    assert [r["step"] for r in records] == [2, 4, 6]
    assert set(acc.Tags()["scalars"]) == {
        "loss/total", "loss/recon", "loss/capacity", "capacity/c_cont", "capacity/kl_cont_sum", "capacity/c_disc",
        "capacity/kl_disc_sum", "temperature", "speed/img_per_s", "speed/steps_per_s", "kl_cont/z0", "kl_cont/z1",
        "kl_disc/c0", "info_disc/c0", "agg_kl_disc/c0", "classes_in_use/c0", "capacity/info_cont_sum", "info_cont/z0",
        "info_cont/z1", "agg_kl_cont/z0", "agg_kl_cont/z1", "tc/tc", "tc/index_code_mi", "tc/dim_kl"}
    by_hand = {"loss/total": lambda r: r["loss"], "loss/recon": lambda r: r["recon"],
               "kl_cont/z0": lambda r: r["kl_cont"][0], "kl_cont/z1": lambda r: r["kl_cont"][1],
               "info_cont/z1": lambda r: r["info_cont"][1],
               "kl_disc/c0": lambda r: r["kl_disc"][0], "capacity/c_disc": lambda r: r["c_disc"],
               "capacity/kl_cont_sum": lambda r: r["kl_cont_sum"], "temperature": lambda r: r["temperature"],
               "speed/img_per_s": lambda r: r["img_per_s"], "classes_in_use/c0": lambda r: r["classes_in_use"][0],
               "tc/tc": lambda r: r["tc"]}
    for tag, value in by_hand.items():  # stored as float32
        assert scalar(acc, tag) == {r["step"]: pytest.approx(value(r), rel=1e-6) for r in records}, tag
    for r in records:
        for tag, value in scalar_items(r):
            assert scalar(acc, tag)[r["step"]] == pytest.approx(value, rel=1e-6), (r["step"], tag)
    # --tensorboard-images-every defaults to 2000: the grids only at the last step (--no-images: no PNG files)
    assert [e.step for e in acc.Images("images/samples")] == [6] and not (out / "samples.png").exists()


def test_images_every_n_steps_and_at_the_end(tmp_path):
    out = tmp_path / "run"
    assert main(args(out, *TB, "--tensorboard-images-every", "4", steps=10), dataset=tiny_dataset()) == 0
    acc = events(out)
    for tag, (w, h) in {"images/samples": (8 * 34 + 2, 8 * 34 + 2),
                        "images/traversal": (10 * 34 + 2, 3 * 34 + 2)}.items():  # 2 units + 1 variable, 10 columns
        found = acc.Images(tag)
        assert [e.step for e in found] == [4, 8, 10], tag
        assert all((e.width, e.height) == (w, h) for e in found), tag
        assert png_pixels(found[0].encoded_image_string).shape == (h, w, 3)
    # the last ones are the end-of-run pictures, pixel for pixel (one source: first_look.py)
    for name in ("samples", "traversal"):
        last = png_pixels(acc.Images(f"images/{name}")[-1].encoded_image_string)
        assert np.array_equal(last, png_pixels((out / f"{name}.png").read_bytes())), name
    assert json.loads((out / "config.json").read_text())["tensorboard_images_every"] == 4


def test_training_is_the_same_with_and_without_tensorboard(tmp_path):
    """Grids at every step draw from their own generator and restore train mode: weights, Adam state and
    log are those of a run without TensorBoard."""
    ds = tiny_dataset()
    plain, tb = tmp_path / "plain", tmp_path / "tb"
    assert main(args(plain, "--no-progress", "--no-images", steps=6), dataset=ds) == 0
    assert main(args(tb, *TB, "--no-images", "--tensorboard-images-every", "1", steps=6), dataset=ds) == 0
    assert [e.step for e in events(tb).Images("images/samples")] == [1, 2, 3, 4, 5, 6]
    a, b = checkpoint.read(run_layout.checkpoint_path(plain, 6)), checkpoint.read(run_layout.checkpoint_path(tb, 6))
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["training"]["optimizer"]["state"], b["training"]["optimizer"]["state"]
    assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i])
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in log_records(plain)]
    assert strip == [{k: v for k, v in r.items() if k not in TIMING} for r in log_records(tb)]
    assert not (plain / TENSORBOARD_DIR).exists()


def test_resume_hides_the_events_after_the_checkpoint(tmp_path):
    """A run killed after logging steps 5 and 6 but saving only step 4: the resumed run's events replace
    those of steps 5 and 6 (purge_step), as its log does. --overwrite starts the events afresh."""
    ds, out = tiny_dataset(), tmp_path / "run"
    assert main(args(out, *TB, "--log-every", "1", steps=6), dataset=ds) == 0
    run_layout.checkpoint_path(out, 6).unlink()
    assert main(["--resume", str(out), "--no-progress"], dataset=ds) == 0
    records, acc = log_records(out), events(out)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert scalar(acc, "speed/img_per_s") == {r["step"]: pytest.approx(r["img_per_s"], rel=1e-6) for r in records}
    assert [e.step for e in acc.Images("images/samples")] == [6]
    assert main(args(out, *TB, "--overwrite", steps=2), dataset=ds) == 0
    assert len(list((out / TENSORBOARD_DIR).iterdir())) == 1
    assert sorted(scalar(events(out), "loss/total")) == [2]


def test_missing_package_is_one_line_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed: `import tensorboard` fails
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    out = tmp_path / "run"
    assert main(args(out, *TB), dataset=tiny_dataset()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --tensorboard needs the tensorboard package")
    assert "pip install tensorboard" in err[0] and "[tensorboard]" in err[0]
    assert not out.exists()
    assert main(args(out, "--no-progress", "--no-images", steps=2), dataset=tiny_dataset()) == 0  # optional


@pytest.mark.parametrize("value", ["0", "-3"])
def test_images_every_must_be_positive(tmp_path, capsys, value):
    out = tmp_path / "run"
    assert main(args(out, *TB, "--tensorboard-images-every", value), dataset=tiny_dataset()) == 2
    assert f"tensorboard_images_every must be an integer >= 1, got {value}" in capsys.readouterr().err
    assert not out.exists()
