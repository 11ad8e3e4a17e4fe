"""analysis.latent_kl: the KL per latent from the first source that applies (test split, recorded evaluation,
training log, checkpoint metadata, prior samples) and the test split it is measured on, or why there is none.
The explorer's page and export's model.json show the result (tests/explore/, tests/cli/test_export.py)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from jointvae_fast.analysis import latent_kl
from jointvae_fast.analysis.sources import load_source
from jointvae_fast.model import JointVAE
from jointvae_fast.store import checkpoint

CONT, DISC = 3, [3, 2]
NONE = latent_kl.TestImages(None, None, "none")


def _model():
    torch.manual_seed(0)
    return JointVAE((1, 32, 32), CONT, DISC)


def _dataset(n=24, name="tinyset", size=32):
    g = torch.Generator().manual_seed(0)
    return SimpleNamespace(name=name, test=torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=g))


def _kl(path, test=NONE, **kw):
    source = load_source(str(path))
    return latent_kl.kl_for(source, source.model.eval(), test, **kw)


@pytest.fixture
def run(tmp_path):
    """A run directory at step 4 whose log has a stale line, the step-4 line and a torn last line."""
    run = tmp_path / "run"
    checkpoint.save(run / "checkpoints" / "step-00000004.pt", _model(), meta={"dataset": "tinyset", "step": 4})
    (run / "config.json").write_text(json.dumps({"dataset": "tinyset"}))
    lines = [{"step": 2, "kl_cont": [9.0, 9.0, 9.0], "kl_disc": [1.0, 1.0]},
             {"step": 4, "kl_cont": [0.5, 0.01, 2.0], "kl_disc": [0.3, 0.1]},
             {"step": 5, "kl_cont": [7.0, 7.0], "kl_disc": [1.0, 1.0]}]  # another latent layout: skipped
    (run / "log.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n{broken\n")
    return run


def test_the_training_log_then_a_recorded_evaluation_of_the_same_step(run):
    kl = _kl(run)
    assert kl.source.startswith("training log, line of step 4")
    assert kl.cont.tolist() == [0.5, 0.01, 2.0] and kl.disc.tolist() == [0.3, 0.1]

    (run / "eval").mkdir()
    metrics = {"step": 3, "dataset": "tinyset", "n_test": 7, "kl_cont": [0.1, 0.2, 0.3], "kl_disc": [0.0, 0.0]}
    (run / "eval" / "metrics.json").write_text(json.dumps(metrics))
    assert _kl(run).source.startswith("training log")  # an evaluation of other weights does not count
    (run / "eval" / "metrics.json").write_text(json.dumps(metrics | {"step": 4}))
    kl = _kl(run)
    assert kl.source == "test split of tinyset: recorded by evaluate (7 images, metrics.json)"
    assert kl.cont.tolist() == [0.1, 0.2, 0.3] and kl.disc.tolist() == [0.0, 0.0]


def test_the_checkpoint_metadata_then_prior_samples(tmp_path):
    with_meta = tmp_path / "meta.pt"
    checkpoint.save(with_meta, _model(), meta={"kl_cont": [0.0, 3.0, 1.0], "kl_disc": [0.5, 0.5]})
    kl = _kl(with_meta)
    assert kl.source == "checkpoint metadata" and kl.cont.tolist() == [0.0, 3.0, 1.0]

    bare = tmp_path / "bare.pt"
    checkpoint.save(bare, _model(), meta={"kl_cont": [1.0], "kl_disc": [0.5, 0.5]})  # wrong layout: ignored
    kl = _kl(bare)
    assert kl.source.startswith(f"{latent_kl.PRIOR_SAMPLES} prior samples")
    assert kl.cont.shape == (CONT,) and kl.disc.shape == (len(DISC),)
    assert np.all(np.isfinite(kl.cont)) and np.all(kl.cont >= 0) and np.all(kl.disc >= -1e-9)
    again = _kl(bare)  # seeded
    assert np.array_equal(again.cont, kl.cont) and np.array_equal(again.disc, kl.disc)


def test_the_test_split_comes_first_and_is_the_closed_form_kl(run):
    source = load_source(str(run))
    model = source.model.eval()
    test = latent_kl.test_images(source, model, None, None, dataset=_dataset())
    assert test.images.shape[0] == 24 and test.dataset == "tinyset" and not test.stand_in
    kl = latent_kl.kl_for(source, model, test, limit=10)  # the log is there too: the split wins
    assert kl.source == "test split of tinyset: the first 10 of 24 test images, encoded at start-up"
    with torch.no_grad():
        mu, lv, logits = model.encode(test.images[:10].float() / 255)
    mu, lv = mu.double(), lv.double()
    want = (0.5 * (mu ** 2 + lv.exp() - lv - 1)).mean(0).numpy()
    np.testing.assert_allclose(kl.cont, want, rtol=1e-5, atol=1e-9)
    q = torch.softmax(logits[:, :3].double(), 1)
    assert kl.disc[0] == pytest.approx(float((q * (q * 3).log()).sum(1).mean()), rel=1e-5)
    assert latent_kl.kl_for(source, model, test).source.endswith("all 24 test images, encoded at start-up")


def test_images_of_another_dataset_stand_in_but_do_not_set_the_kl(run):
    source = load_source(str(run))
    test = latent_kl.test_images(source, source.model, None, None, dataset=_dataset(name="otherset"))
    assert test.stand_in and test.dataset == "otherset" and "stand in for tinyset" in test.note
    assert latent_kl.kl_for(source, source.model.eval(), test).source.startswith("training log")


def test_why_there_are_no_test_images(tmp_path, run):
    bare = tmp_path / "bare.pt"
    checkpoint.save(bare, _model())
    source = load_source(str(bare))
    t = latent_kl.test_images(source, source.model, None, None)
    assert t.images is None and "does not record its dataset" in t.note

    source = load_source(str(run))
    t = latent_kl.test_images(source, source.model, "no-such-dataset", None)
    assert t.images is None and "dataset no-such-dataset could not be loaded: unknown dataset" in t.note
    t = latent_kl.test_images(source, source.model, None, None, dataset=_dataset(size=28))
    assert t.images is None and "images of size (1, 28, 28), the model takes (1, 32, 32)" in t.note
    t = latent_kl.test_images(source, source.model, None, None, dataset=_dataset(n=1))
    assert t.images is None and "need at least 2" in t.note
