"""NumPy (float64) reference of Joint-VAE's objective and sampling: the project's test oracle.

Array-namespace generic: NumPy by default, CuPy when given CuPy arrays (never imported otherwise).
No torch import. jointvae_fast does not import this package at run time.

Forwards return float64 arrays (scalars as 0-d values). VJP convention: `<name>_vjp` takes the
forward's positional inputs, then the upstream gradient `grad` (default 1.0 where the forward
returns a scalar), then the forward's optional arguments as keywords; it returns a tuple of
gradients for the differentiable inputs (mu, logvar, logits, x_logits, kl; and the sampled latent z, y
of the total correlation's functions) in the order they appear in the forward's signature. Noise (eps, u),
data (x), hyperparameters (tau, step, capacities, c, gamma) and importance weights are constants.
"""
from .capacity import capacity, capacity_loss, capacity_loss_vjp
from .categorical import (
    gumbel_softmax,
    gumbel_softmax_vjp,
    kl_categorical,
    kl_categorical_vjp,
    log_softmax_blocks,
    one_hot_argmax,
    softmax_blocks,
)
from .information import (
    aggregate_posterior,
    batch_information,
    batch_information_vjp,
    gaussian_aggregate_moments,
    gaussian_batch_information,
    gaussian_batch_information_vjp,
    kl_aggregate,
    kl_aggregate_vjp,
    kl_gaussian_aggregate,
    kl_gaussian_aggregate_vjp,
)
from .latent import sample_latent, sample_latent_noise, sample_latent_vjp, theoretical_max_disc_capacity
from .normal import kl_normal, kl_normal_vjp, normal_from_uniforms, sample_normal, sample_normal_vjp
from .objective import jointvae_objective, jointvae_objective_vjp
from .philox import (
    GUMBEL_OFFSET,
    OFFSET_PER_CALL,
    philox4x32_10,
    philox_counter,
    philox_uniform,
    philox_words,
    uniform_from_words,
)
from .reconstruction import bernoulli_nll, bernoulli_nll_vjp
from .total_correlation import (
    ESTIMATORS as TC_ESTIMATORS,
    log_importance_weights,
    log_posterior,
    log_prior,
    tc_decomposition,
    tc_pairwise,
    tc_pairwise_vjp,
    total_correlation,
    total_correlation_vjp,
)

__all__ = [
    "philox4x32_10", "philox_counter", "philox_uniform", "philox_words", "uniform_from_words",
    "GUMBEL_OFFSET", "OFFSET_PER_CALL",
    "sample_normal", "sample_normal_vjp", "kl_normal", "kl_normal_vjp", "normal_from_uniforms",
    "gumbel_softmax", "gumbel_softmax_vjp", "kl_categorical", "kl_categorical_vjp",
    "aggregate_posterior", "kl_aggregate", "kl_aggregate_vjp", "batch_information", "batch_information_vjp",
    "gaussian_aggregate_moments", "kl_gaussian_aggregate", "kl_gaussian_aggregate_vjp",
    "gaussian_batch_information", "gaussian_batch_information_vjp",
    "one_hot_argmax", "log_softmax_blocks", "softmax_blocks",
    "capacity", "capacity_loss", "capacity_loss_vjp",
    "bernoulli_nll", "bernoulli_nll_vjp",
    "jointvae_objective", "jointvae_objective_vjp",
    "sample_latent", "sample_latent_vjp", "sample_latent_noise", "theoretical_max_disc_capacity",
    "TC_ESTIMATORS", "log_importance_weights", "tc_pairwise", "tc_pairwise_vjp", "log_posterior", "log_prior",
    "tc_decomposition", "total_correlation", "total_correlation_vjp",
]
