"""Bad input to the reference raises ValueError naming the argument and the value it got."""
import numpy as np
import pytest

import reference as R

B, D, DIMS = 3, 2, [2, 3]
MU = np.zeros((B, D))
LOGITS = np.zeros((B, 5))
U = np.full((B, 5), 0.5)
EPS = np.zeros((B, D))
X = np.zeros((B, 1, 2, 2))
CAP = (0.0, 5.0, 100, 30.0)


def _objective(**changes):
    args = dict(x=X, x_logits=np.zeros_like(X), mu=MU, logvar=MU, logits=LOGITS, disc_dims=DIMS, step=10,
                cont_capacity=CAP, disc_capacity=CAP)
    args.update(changes)
    return lambda: R.jointvae_objective(**args)


def _with(a, index, value):
    a = a.copy()
    a[index] = value
    return a


CASES = [
    # (call, regex that must appear in the message: argument name and the value or shape got)
    (lambda: R.philox4x32_10(np.zeros(3, np.uint32), np.zeros(2, np.uint32)), r"counter.*\(3,\)"),
    (lambda: R.philox4x32_10(np.zeros(4, np.uint32), np.zeros(3, np.uint32)), r"key.*\(3,\)"),
    (lambda: R.philox4x32_10(np.full(4, -1), np.zeros(2, np.uint32)), r"counter.*uint32"),
    (lambda: R.philox_uniform(-1, 0, 4), r"seed.*-1"),
    (lambda: R.philox_uniform(2**64, 0, 4), r"seed.*18446744073709551616"),
    (lambda: R.philox_uniform(0, -4, 4), r"offset.*-4"),
    (lambda: R.philox_uniform(0, 0, -2), r"n .*-2"),
    (lambda: R.sample_latent_noise(0, 0, 2, 1, [1]), r"disc_dims.*\[1\]"),
    (lambda: R.sample_latent_noise(0, 0, -1, 1, []), r"batch.*-1"),
    (lambda: R.sample_normal(np.zeros(3), np.zeros(3), np.zeros(3)), r"mu.*rank 2.*\(3,\)"),
    (lambda: R.sample_normal(MU, np.zeros((B, D + 1)), EPS), r"logvar.*\(3, 3\)"),
    (lambda: R.sample_normal(MU, MU, np.zeros((B + 1, D))), r"eps.*\(4, 2\)"),
    (lambda: R.kl_normal(np.zeros((1, 2, 3)), np.zeros((1, 2, 3))), r"mu.*rank 2"),
    (lambda: R.kl_normal_vjp(MU, MU, np.zeros(D + 1)), r"grad.*\(3,\)"),
    (lambda: R.gumbel_softmax(np.zeros(5), np.zeros(5), 1.0, DIMS), r"logits.*rank 2"),
    (lambda: R.gumbel_softmax(LOGITS, U, 1.0, [2, 2]), r"disc_dims.*\[2, 2\].*sum 4"),
    (lambda: R.gumbel_softmax(LOGITS, U, 1.0, [1, 4]), r"disc_dims.*>= 2.*\[1, 4\]"),
    (lambda: R.gumbel_softmax(LOGITS, U, 1.0, [2.5, 2.5]), r"disc_dims.*ints.*2\.5"),
    (lambda: R.gumbel_softmax(LOGITS, U, 0.0, DIMS), r"tau.*0\.0"),
    (lambda: R.gumbel_softmax(LOGITS, U, -1.0, DIMS), r"tau.*-1\.0"),
    (lambda: R.gumbel_softmax(LOGITS, U, float("nan"), DIMS), r"tau.*nan"),
    (lambda: R.gumbel_softmax(LOGITS, U, float("inf"), DIMS), r"tau.*inf"),
    (lambda: R.gumbel_softmax(LOGITS, U[:, :4], 1.0, DIMS), r"u .*\(3, 4\)"),
    (lambda: R.gumbel_softmax(LOGITS, _with(U, (0, 0), 0.0), 1.0, DIMS), r"u .*0\.0"),
    (lambda: R.gumbel_softmax(LOGITS, _with(U, (1, 2), 1.0), 1.0, DIMS), r"u .*1\.0"),
    (lambda: R.gumbel_softmax_vjp(LOGITS, U, 1.0, DIMS, np.zeros((B, 4))), r"grad.*\(3, 4\)"),
    (lambda: R.kl_categorical(LOGITS, [5, 1]), r"disc_dims.*\[5, 1\]"),
    (lambda: R.kl_categorical(LOGITS, [2, 4]), r"disc_dims.*sum 6"),
    (lambda: R.kl_categorical_vjp(LOGITS, DIMS, np.zeros(3)), r"grad.*\(3,\)"),
    (lambda: R.capacity(10, 0.0, 5.0, 0), r"num_iters.*0"),
    (lambda: R.capacity(10, 0.0, 5.0, -5), r"num_iters.*-5"),
    (lambda: R.capacity(-1, 0.0, 5.0, 10), r"step.*-1"),
    (lambda: R.capacity(1, float("nan"), 5.0, 10), r"c_min.*nan"),
    (lambda: R.capacity_loss(1.0, float("inf"), 1.0), r"c .*inf"),
    (lambda: R.bernoulli_nll(np.zeros(4), np.zeros(4)), r"x .*\(4,\)"),
    (lambda: R.bernoulli_nll(X, np.zeros((B, 1, 2, 3))), r"x_logits.*\(3, 1, 2, 3\)"),
    (lambda: R.sample_latent(MU, MU, LOGITS, DIMS, 0.0, EPS, U), r"tau.*0\.0"),
    (lambda: R.sample_latent(MU, None, LOGITS, DIMS, 1.0, EPS, U), r"logvar"),
    (lambda: R.sample_latent(MU, MU, np.zeros((B + 1, 5)), DIMS, 1.0, EPS, U), r"logits.*batch size 3.*\(4, 5\)"),
    (lambda: R.sample_latent(MU, MU, LOGITS, [5, 0], 1.0, EPS, U), r"disc_dims.*\[5, 0\]"),
    (lambda: R.sample_latent_vjp(MU, MU, LOGITS, DIMS, 1.0, EPS, U, np.zeros((B, 6))), r"grad.*\(3, 6\)"),
    (_objective(x=np.zeros((B, 2, 2))), r"x .*rank 4"),
    (_objective(x_logits=np.zeros((B, 1, 2, 3))), r"x_logits.*\(3, 1, 2, 3\)"),
    (_objective(x=_with(X, (0, 0, 0, 0), np.nan)), r"x must be finite.*nan"),
    (_objective(x=_with(X, (0, 0, 0, 0), 1.5)), r"x .*\[0, 1\].*1\.5"),
    (_objective(x_logits=_with(np.zeros_like(X), (1, 0, 1, 1), np.inf)), r"x_logits must be finite.*inf"),
    (_objective(mu=_with(MU, (0, 1), -np.inf)), r"mu must be finite.*-inf"),
    (_objective(logvar=_with(MU, (2, 0), np.nan)), r"logvar must be finite.*nan"),
    (_objective(logits=_with(LOGITS, (0, 4), np.inf)), r"logits must be finite.*inf"),
    (_objective(disc_dims=[2, 2]), r"disc_dims.*\[2, 2\]"),
    (_objective(disc_dims=[1, 4]), r"disc_dims.*\[1, 4\]"),
    (_objective(mu=np.zeros((B + 1, D)), logvar=np.zeros((B + 1, D)), logits=np.zeros((B + 1, 5))),
     r"batch size of x \(3\), got 4"),
    (_objective(mu=np.zeros((B + 1, D)), logvar=np.zeros((B + 1, D))), r"logits.*batch size 4.*\(3, 5\)"),
    (_objective(cont_capacity=(0.0, 5.0, 0, 30.0)), r"cont_capacity\[2\] \(num_iters\).*0"),
    (_objective(disc_capacity=(0.0, 5.0, -3, 30.0)), r"disc_capacity\[2\] \(num_iters\).*-3"),
    (_objective(cont_capacity=(0.0, 5.0, 100)), r"cont_capacity.*\(0\.0, 5\.0, 100\)"),
    (_objective(step=-2), r"step.*-2"),
    (_objective(recon_weight=float("nan")), r"recon_weight.*nan"),
]


@pytest.mark.parametrize("call, message", CASES, ids=[c[1] for c in CASES])
def test_bad_input_raises_value_error_naming_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_objective_vjp_validates_like_the_forward():
    with pytest.raises(ValueError, match=r"mu must be finite"):
        R.jointvae_objective_vjp(X, np.zeros_like(X), _with(MU, (0, 0), np.nan), MU, LOGITS, DIMS, 1, CAP, CAP)
    with pytest.raises(ValueError, match=r"grad .*rank 0"):
        R.jointvae_objective_vjp(X, np.zeros_like(X), MU, MU, LOGITS, DIMS, 1, CAP, CAP, np.ones(2))
