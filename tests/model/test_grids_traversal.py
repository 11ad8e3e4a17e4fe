"""Traversal latents have the documented structure, and images are the decoder's probabilities of them."""
import pytest
import torch
from scipy.stats import norm

from jointvae_fast.model import JointVAE
from jointvae_fast.grids.traversal import (
    class_conditioned_samples,
    class_unit_grid,
    continuous_traversal,
    discrete_traversal,
    mode_latent,
    prior_latents,
    prior_quantiles,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return JointVAE((1, 32, 32), cont=3, disc=[4, 2]).eval()


def _check_images(model, t):
    r, s, l = t.latents.shape
    expect = torch.sigmoid(model.decode(t.latents.reshape(r * s, l))).reshape(r, s, 1, 32, 32)
    torch.testing.assert_close(t.images, expect)


def _check_one_hot(model, lat):
    off = model.cont
    for k in model.disc:
        block = lat[..., off : off + k]
        assert ((block == 0) | (block == 1)).all() and (block.sum(-1) == 1).all()
        off += k


def test_prior_quantiles_match_scipy():
    q = prior_quantiles(7)
    torch.testing.assert_close(q, torch.tensor(norm.ppf([0.05 + 0.15 * i for i in range(7)]), dtype=torch.float32))


def test_continuous_traversal(model):
    g = torch.Generator().manual_seed(1)
    t = continuous_traversal(model, unit=1, steps=5, rows=3, generator=g)
    assert t.latents.shape == (3, 5, 9) and t.images.shape == (3, 5, 1, 32, 32)
    torch.testing.assert_close(t.latents[:, :, 1], prior_quantiles(5).expand(3, 5))
    # every other column is the row's base latent
    others = [0, 2] + list(range(3, 9))
    assert (t.latents[:, :, others] == t.latents[:, :1, others]).all()
    _check_one_hot(model, t.latents)
    _check_images(model, t)
    grid, nrow = t.grid()
    assert grid.shape == (15, 1, 32, 32) and nrow == 5


def test_discrete_traversal_and_conditioned_samples(model):
    g = torch.Generator().manual_seed(2)
    t = discrete_traversal(model, variable=0, rows=2, generator=g)
    assert t.latents.shape == (2, 4, 9)
    assert (t.latents[:, :, 3:7].argmax(-1) == torch.arange(4)).all()
    _check_one_hot(model, t.latents)
    _check_images(model, t)
    c = class_conditioned_samples(model, variable=1, samples=3, generator=g)
    assert c.latents.shape == (2, 3, 9)
    assert (c.latents[:, :, 7:9].argmax(-1) == torch.arange(2)[:, None]).all()
    _check_one_hot(model, c.latents)
    _check_images(model, c)


def test_class_unit_grid(model):
    base = prior_latents(model, 1, torch.Generator().manual_seed(3))
    t = class_unit_grid(model, unit=2, variable=0, steps=4, base=base)
    assert t.latents.shape == (4, 4, 9)
    assert (t.latents[:, :, 3:7].argmax(-1) == torch.arange(4)[:, None]).all()
    torch.testing.assert_close(t.latents[:, :, 2], prior_quantiles(4).expand(4, 4))
    assert (t.latents[:, :, :2] == base[0, :2]).all()
    _check_images(model, t)


def test_mode_latent_first_index_on_ties():
    mu = torch.tensor([[0.5]])
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0, 0.0]])
    lat = mode_latent(mu, logits, [3, 2])
    assert lat.tolist() == [[0.5, 0.0, 1.0, 0.0, 1.0, 0.0]]


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="unit"):
        continuous_traversal(model, unit=3)
    with pytest.raises(ValueError, match="variable"):
        discrete_traversal(model, variable=2)
    with pytest.raises(ValueError, match="base"):
        continuous_traversal(model, unit=0, base=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="quantile"):
        prior_quantiles(3, lo=0.0)
