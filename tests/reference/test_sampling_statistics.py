"""Sampling statistics of the reference at fixed seeds (Philox uniforms throughout)."""
import numpy as np
import pytest
from scipy import stats

import reference as R


@pytest.mark.parametrize("logits, seed", [
    ([0.0, 1.0, 2.0, -1.0, 0.5], 0),
    ([3.0, -3.0], 1),
    ([0.0] * 16, 2),
    (list(np.linspace(-4, 4, 32)), 3),
])
def test_gumbel_argmax_frequencies_follow_softmax(logits, seed):
    """argmax of a Gumbel-softmax sample (any tau) is categorical(softmax(logits)): chi-square."""
    n, k = 40_000, len(logits)
    batch = np.tile(np.asarray(logits, dtype=np.float64), (n, 1))
    _, u = R.sample_latent_noise(seed, 0, n, 0, [k])
    y = R.gumbel_softmax(batch, u, 0.67, [k])
    counts = np.bincount(y.argmax(axis=1), minlength=k)
    p = R.softmax_blocks(batch[:1], [k], np)[0]
    expected = n * p
    keep = expected >= 5  # classes with tiny expected counts are pooled
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    assert stats.chisquare(obs, exp).pvalue > 1e-3


def test_gumbel_argmax_frequencies_per_block():
    """Several packed variables sampled together: each block's argmax follows its own softmax."""
    dims = [2, 3, 6]
    row = np.array([1.0, -0.5, 0.0, 2.0, -2.0, 0.3, 0.1, -0.7, 1.2, 0.0, -1.5])
    n = 30_000
    _, u = R.sample_latent_noise(77, 8, n, 0, dims)
    y = R.gumbel_softmax(np.tile(row, (n, 1)), u, 2.0, dims)
    p = R.softmax_blocks(row[None], dims, np)[0]
    start = 0
    for k in dims:
        counts = np.bincount(y[:, start:start + k].argmax(axis=1), minlength=k)
        assert stats.chisquare(counts, n * p[start:start + k]).pvalue > 1e-3
        start += k


def test_reparameterised_normal_moments():
    """z = mu + exp(logvar/2) eps has mean mu and variance exp(logvar) per unit."""
    n = 50_000
    mu = np.tile([[0.5, -2.0, 3.0]], (n, 1))
    logvar = np.tile([[0.0, np.log(4.0), -1.0]], (n, 1))
    eps, _ = R.sample_latent_noise(5, 0, n, 3, [])
    z = R.sample_normal(mu, logvar, eps)
    sd = np.exp(logvar[0] / 2)
    assert np.all(np.abs(z.mean(0) - mu[0]) < 4 * sd / np.sqrt(n))
    assert np.all(np.abs(z.var(0) / sd**2 - 1) < 4 * np.sqrt(2 / n))
    for j in range(3):
        assert stats.kstest((z[:, j] - mu[0, j]) / sd[j], "norm").pvalue > 1e-3


def test_noise_of_consecutive_calls_is_independent():
    """Offsets 0 and 4 (two consecutive calls) give uncorrelated eps."""
    a, _ = R.sample_latent_noise(9, 0, 20_000, 2, [])
    b, _ = R.sample_latent_noise(9, 4, 20_000, 2, [])
    r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert abs(r) < 4 / np.sqrt(a.size)
