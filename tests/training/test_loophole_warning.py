"""The training log warns once when the continuous KL carries almost no information (Eq. 7's loophole: a dead
encoder, as dSprites seed 0 met it: docs/experiments/dsprites-full-2026-12-03.md)."""
import math

import pytest

from jointvae_fast.training import term_log
from jointvae_fast.train import main
from tests.cli.test_train import args, tiny_dataset


def _record(step=2000, kl=7.5, info=1e-9):
    return {"step": step, "kl_cont_sum": kl, "info_cont_sum": info}


def test_the_dead_encoder_of_dsprites_seed_0_is_named():
    msg = term_log.loophole_warning(_record())  # step 2000, KL_z 7.5 nats, no information: seed 0's log line
    assert msg is not None and "step 2000" in msg and "7.5 nats" in msg and "--cont-capacity-on information" in msg


@pytest.mark.parametrize("record", [
    _record(step=999),                 # too early: the first steps may not have found the images yet
    _record(kl=0.05),                  # KL too small to tell
    _record(kl=2.0, info=0.05),        # 2.5 % of the KL is information: an encoder that works
    _record(kl=1.5, info=1.45),        # healthy
    {"step": 5000},                    # a model without continuous units
])
def test_a_working_or_too_early_run_is_not_warned(record):
    assert term_log.loophole_warning(record) is None


def test_the_warning_reaches_the_run_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(term_log, "LOOPHOLE_FROM_STEP", 0)
    monkeypatch.setattr(term_log, "LOOPHOLE_MIN_KL", -math.inf)
    monkeypatch.setattr(term_log, "LOOPHOLE_INFO_FRACTION", math.inf)  # every line qualifies
    assert main(args(tmp_path / "run", "--no-images", steps=8), dataset=tiny_dataset()) == 0
    assert capsys.readouterr().err.count("holds only") == 1


def test_no_warning_by_default_on_a_short_run(tmp_path, capsys):
    assert main(args(tmp_path / "run", "--no-images", steps=8), dataset=tiny_dataset()) == 0
    assert "holds only" not in capsys.readouterr().err
