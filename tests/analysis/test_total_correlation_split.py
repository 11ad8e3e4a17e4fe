"""analysis/total_correlation.py: the decomposition of a split's KL on cases with known answers."""
import math

import numpy as np
import pytest
import torch

from jointvae_fast.analysis.encoding import Encoded, kl_per_latent
from jointvae_fast.analysis.total_correlation import split_total_correlation


def _encoded(mu, logvar, logits):
    return Encoded(torch.as_tensor(mu, dtype=torch.float32), torch.as_tensor(logvar, dtype=torch.float32),
                   torch.as_tensor(logits, dtype=torch.float32), 0.0)


@pytest.mark.parametrize("batch", [7, 25, 60])
def test_copies_of_one_unit_on_separated_points(batch):
    """60 points 10 apart, posterior sd 0.01, three units that are copies of each other, and a discrete variable
    with the same posterior everywhere: each draw is scored by its own point only (whatever the batching), so
    TC = 2 log 60 and I(x; z, c) = log 60, for the joint latent and the continuous units alike."""
    m, d = 60, 3
    mu = np.repeat((np.arange(m) * 10.0)[:, None], d, axis=1)
    out = split_total_correlation(_encoded(mu, np.full((m, d), math.log(1e-4)), np.zeros((m, 4))), [4], seed=1,
                                  batch=batch)
    assert out["dataset_size"] == m and out["batch"] == math.ceil(m / math.ceil(m / batch))  # near-equal batches
    for part in ("joint", "continuous"):
        assert out[part]["tc"] == pytest.approx(2 * math.log(m), rel=1e-6)
        assert out[part]["index_code_mi"] == pytest.approx(math.log(m), rel=1e-6)


def test_identical_posteriors_have_no_total_correlation_or_information():
    rng = np.random.default_rng(0)
    m = 50
    mu, lv, lg = (np.repeat(rng.normal(size=(1, k)), m, axis=0) for k in (4, 4, 5))
    out = split_total_correlation(_encoded(mu, lv, lg), [2, 3], batch=20)
    for part in ("joint", "continuous"):
        assert abs(out[part]["tc"]) < 1e-5 and abs(out[part]["index_code_mi"]) < 1e-5


def test_the_parts_add_up_to_the_kl():
    """tc + index-code information + dimension-wise KL = a one-draw estimate of KL_z + KL_c over 4000 images
    (within 0.05 nats of the closed form here, fixed seeds); the continuous part of KL_z alone."""
    rng = np.random.default_rng(1)
    m, dims = 4000, [3]
    t = rng.normal(size=(m, 1))
    enc = _encoded(np.hstack([t, 0.5 * t + rng.normal(0, 0.3, (m, 1))]), rng.uniform(-3, 0, (m, 2)),
                   np.hstack([2 * t, -t, np.zeros((m, 1))]))
    out = split_total_correlation(enc, dims, seed=3)
    kl_cont, kl_disc = kl_per_latent(enc, dims)
    assert out["joint"]["kl"] == pytest.approx(kl_cont.sum() + kl_disc.sum(), abs=0.05)
    assert out["continuous"]["kl"] == pytest.approx(kl_cont.sum(), abs=0.05)
    assert out["joint"]["tc"] > out["continuous"]["tc"] > 0.05  # z_1, z_2 and c share t


def test_discrete_only_model_has_no_continuous_part():
    out = split_total_correlation(_encoded(np.zeros((10, 0)), np.zeros((10, 0)), np.random.default_rng(0).normal(size=(10, 3))), [3])
    assert out["continuous"] is None and math.isfinite(out["joint"]["tc"])
