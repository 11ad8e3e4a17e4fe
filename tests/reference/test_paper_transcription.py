"""The reference objective vs an independent NumPy transcription of the paper's reference
implementation's formulas (github.com/Schlumberger/joint-vae, jointvae/training.py and models.py).

Those formulas, as facts (no code copied): the decoder ends in a sigmoid and the loss is
F.binary_cross_entropy on the probabilities (PyTorch clamps each log at -100); it is the mean over
a view of shape [-1, H*W] times H*W; the Gaussian KL is the batch mean per unit, summed; the
categorical KL is log K + batch mean of sum alpha * log(alpha + 1e-12) with alpha = softmax; the
capacity is min((c_max - c_min) * step / num_iters + c_min, c_max), the discrete one also capped at
sum log K; total = (recon + gamma_z |C_z - KL_z| + gamma_c |C_c - KL_c|) / (H*W). Its Gumbel
sample is softmax((log(alpha + 1e-12) - log(-log(u + 1e-12) + 1e-12)) / tau).

Differences found (each pinned by a test below):
- Reconstruction: the paper's sigmoid + BCE saturates. In float32 (its precision) sigmoid(l)
  rounds to 1 for l >~ 17, so a pixel with x = 0 costs 100 (PyTorch's log clamp) instead of l
  and its gradient is exactly 0 (ours: 1). For x = 1 and l < about -27.6 the paper's gradient
  decays like -p / 1e-12 (PyTorch's BCE backward divides by max(p(1-p), 1e-12)) instead of -1.
  In float64 the forward saturates at l >~ 37. BCE-with-logits has none of this.
- Reconstruction with C channels: view(-1, H*W) makes the paper's recon the per-image sum
  divided by C; ours equals it with recon_weight = 1/C (the celeba preset).
- Categorical KL: the EPS inside the log changes each term by at most EPS (p log(1 + EPS/p)
  <= EPS), so |ours - paper| <= K * 1e-12 per variable; at an exactly one-hot alpha the paper
  reports log K + ~1e-12 where ours gives log K.
- Gumbel-softmax: log(alpha + EPS) floors every class's log-probability at log(1e-12) = -27.6,
  so classes with alpha < ~1e-10 keep a sampling weight of ~1e-12 (ours: alpha itself); the
  samples agree to ~1e-9 relative when every alpha is above ~1e-6.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import expit

import reference as R

PAPER_EPS = 1e-12


def paper_bce(x, p):
    """PyTorch's elementwise binary_cross_entropy on probabilities: logs clamped at -100."""
    with np.errstate(divide="ignore"):
        return -(x * np.maximum(np.log(p), -100.0) + (1 - x) * np.maximum(np.log(1 - p), -100.0))


def paper_bce_grad_wrt_logit(x, p):
    """d BCE(sigmoid(l), x) / dl as PyTorch's autograd computes it (BCE backward, then sigmoid backward)."""
    return (p - x) / np.maximum(p * (1 - p), PAPER_EPS) * (p * (1 - p))


def paper_softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def paper_objective(x, x_logits, mu, logvar, logits, disc_dims, step, cont_capacity, disc_capacity):
    num_pixels = x.shape[2] * x.shape[3]
    probs = expit(x_logits)
    recon = paper_bce(x.reshape(-1, num_pixels), probs.reshape(-1, num_pixels)).mean() * num_pixels
    total = recon
    kl_cont = kl_disc = np.zeros(0)
    if cont_capacity is not None:
        kl_cont = np.mean(-0.5 * (1 + logvar - mu**2 - np.exp(logvar)), axis=0)
        c_min, c_max, n, gamma = cont_capacity
        cap = min((c_max - c_min) * step / float(n) + c_min, c_max)
        total = total + gamma * abs(cap - kl_cont.sum())
    if disc_capacity is not None:
        alphas, start = [], 0
        for k in disc_dims:
            alphas.append(paper_softmax(logits[:, start:start + k]))
            start += k
        kl_disc = np.array([np.log(a.shape[1]) + np.mean(np.sum(a * np.log(a + PAPER_EPS), axis=1))
                            for a in alphas])
        c_min, c_max, n, gamma = disc_capacity
        cap = min((c_max - c_min) * step / float(n) + c_min, c_max)
        cap = min(cap, sum(float(np.log(k)) for k in disc_dims))
        total = total + gamma * abs(cap - kl_disc.sum())
    return {"total": total / num_pixels, "recon": recon, "kl_cont": kl_cont, "kl_disc": kl_disc}


def paper_gumbel_softmax(alpha, u, tau):
    gumbel = -np.log(-np.log(u + PAPER_EPS) + PAPER_EPS)
    return paper_softmax((np.log(alpha + PAPER_EPS) + gumbel) / tau)


@given(st.integers(1, 16), st.integers(1, 12), st.lists(st.integers(2, 16), min_size=1, max_size=3),
       st.integers(1, 3), st.integers(0, 3000), st.integers(0, 2**32 - 1))
def test_objective_agrees_with_paper_formulas(b, d, dims, c, step, seed):
    """Probabilities not tiny (|x_logits| <= 8, |logits| <= 4): agreement to 1e-9 relative."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(b, c, 4, 4))
    x_logits = rng.uniform(-8, 8, x.shape)
    mu, logvar = rng.uniform(-2, 2, (b, d)), rng.uniform(-3, 3, (b, d))
    logits = rng.uniform(-4, 4, (b, sum(dims)))
    caps = ((0.0, 5.0, 1000, 30.0), (0.5, 3.0, 2000, 20.0))
    ours = R.jointvae_objective(x, x_logits, mu, logvar, logits, dims, step, *caps, recon_weight=1.0 / c)
    paper = paper_objective(x, x_logits, mu, logvar, logits, dims, step, *caps)
    assert ours["recon"] / c == pytest.approx(paper["recon"], rel=1e-9)
    assert ours["total"] == pytest.approx(paper["total"], rel=1e-9)
    np.testing.assert_allclose(ours["kl_cont"], paper["kl_cont"], rtol=1e-12)
    np.testing.assert_allclose(ours["kl_disc"], paper["kl_disc"], rtol=1e-9, atol=1e-10)


def test_reconstruction_gradient_agrees_with_paper_where_not_saturated():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 1, 4, 4))
    x_logits = rng.uniform(-8, 8, x.shape)
    (ours,) = R.bernoulli_nll_vjp(x, x_logits)
    paper = paper_bce_grad_wrt_logit(x, expit(x_logits)) / x.shape[0]  # per-image sum, batch mean
    np.testing.assert_allclose(ours, paper, rtol=1e-9)


def test_difference_reconstruction_saturates_in_paper_formula():
    x = np.zeros((1, 1, 1, 3))
    x_logits = np.array([[[[17.5, 20.0, 50.0]]]])
    ours = R.bernoulli_nll(x, x_logits)
    assert ours == pytest.approx(87.5, rel=1e-9)
    # float32 (the paper's precision): sigmoid rounds to 1 above ~17, each pixel then costs 100
    p32 = (1 / (1 + np.exp(-x_logits.astype(np.float32)))).astype(np.float32)
    assert np.all(p32 == 1.0)
    assert paper_bce(np.float32(0.0), p32).sum() == 300.0
    np.testing.assert_array_equal(paper_bce_grad_wrt_logit(0.0, p32), 0.0)
    np.testing.assert_allclose(R.bernoulli_nll_vjp(x, x_logits)[0], 1.0, rtol=1e-7)
    # float64: fine at 17.5 and 20, saturated at 50
    bce64 = paper_bce(0.0, expit(x_logits)).ravel()
    np.testing.assert_allclose(bce64[:2], [17.5, 20.0], rtol=1e-7)
    assert bce64[2] == 100.0
    # x = 1 and a very negative logit: the paper's gradient decays instead of staying at -1
    p = expit(np.array([-20.0, -30.0, -40.0]))
    paper_grad = paper_bce_grad_wrt_logit(1.0, p)
    ours_grad = R.bernoulli_nll_vjp(np.ones((1, 1, 1, 3)), np.array([[[[-20.0, -30.0, -40.0]]]]))[0].ravel()
    np.testing.assert_allclose(ours_grad, -1.0, rtol=1e-8)
    assert paper_grad[0] == pytest.approx(-1.0, rel=1e-8)
    assert paper_grad[1] == pytest.approx(-expit(-30.0) / PAPER_EPS, rel=1e-6)  # about -0.094
    assert abs(paper_grad[2]) < 1e-5


def test_difference_reconstruction_channels():
    """view(-1, H*W) divides the paper's recon by C; recon_weight = 1/C reproduces it."""
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(2, 3, 4, 4))
    x_logits = rng.standard_normal(x.shape)
    paper = paper_objective(x, x_logits, None, None, None, [], 0, None, None)
    ours = R.jointvae_objective(x, x_logits, None, None, None, [], 0, None, None)
    assert paper["recon"] == pytest.approx(ours["recon"] / 3, rel=1e-12)
    ours_w = R.jointvae_objective(x, x_logits, None, None, None, [], 0, None, None, recon_weight=1 / 3)
    assert ours_w["total"] == pytest.approx(paper["total"], rel=1e-12)


def test_difference_categorical_kl_is_bounded_by_k_eps():
    dims = [2, 10, 32]
    rng = np.random.default_rng(1)
    for scale in (0.1, 3.0, 30.0, 1e4):
        logits = rng.standard_normal((8, sum(dims))) * scale
        ours = R.kl_categorical(logits, dims)
        paper = paper_objective(np.zeros((8, 1, 1, 1)), np.zeros((8, 1, 1, 1)), None, None, logits, dims, 0,
                                None, (0.0, 1.0, 1, 1.0))["kl_disc"]
        assert np.all(np.abs(ours - paper) <= np.array(dims) * PAPER_EPS * (1 + 1e-3) + 1e-15)
    one_hot = np.full((1, 10), -1e4)
    one_hot[0, 3] = 1e4
    assert R.kl_categorical(one_hot, [10])[0] == math.log(10)
    paper_one_hot = math.log(10) + math.log(1 + PAPER_EPS)
    assert paper_one_hot - math.log(10) == pytest.approx(1e-12, rel=1e-3)


def test_difference_gumbel_softmax_floors_tiny_probabilities():
    n = 2000
    _, u = R.sample_latent_noise(13, 0, n, 0, [4])
    # not tiny: agreement
    logits = np.tile([0.0, 1.0, -2.0, 3.0], (n, 1))
    alpha = paper_softmax(logits)
    for tau in (0.1, 0.67, 5.0):
        np.testing.assert_allclose(R.gumbel_softmax(logits, u, tau, [4]),
                                   paper_gumbel_softmax(alpha, u.astype(np.float64), tau), rtol=1e-7, atol=1e-14)
    # a class 40 nats below the rest (alpha ~ 4e-18): the paper's log(alpha + EPS) keeps it at -27.6
    logits = np.tile([0.0, 0.0, 0.0, -40.0], (n, 1))
    ours = R.gumbel_softmax(logits, u, 1.0, [4])
    paper = paper_gumbel_softmax(paper_softmax(logits), u.astype(np.float64), 1.0)
    ratio = np.median(paper[:, 3] / ours[:, 3])
    assert ratio == pytest.approx(PAPER_EPS / paper_softmax(logits[:1])[0, 3], rel=1e-3)  # ~2.4e5
    # absolute difference stays negligible: the floored class gets at most 3 EPS exp(g_3 - max_k<3 g_k)
    g = -np.log(-np.log(u.astype(np.float64)))
    bound = 3 * PAPER_EPS * np.exp(g[:, 3] - g[:, :3].max(axis=1)).max()
    assert np.max(np.abs(paper - ours)) <= bound < 1e-7
