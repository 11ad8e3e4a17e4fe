"""The benchmark's paper-style baseline computes the same objective as jointvae_fast (and the NumPy oracle).

Same weights in both (the baseline's state dict, in the key layout of the paper's published code, mapped
onto our JointVAE by jointvae_fast.paper_checkpoints), the same batch and the same noise (eps, u).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import reference
from benchmarks.baseline import (BaselineTrainer, PerSampleImages, PaperStyleVAE, baseline_loader, in_memory_batches,
                                 make_baseline)
from jointvae_fast import ops
from jointvae_fast.objective import Capacity, Objective
from jointvae_fast.paper_checkpoints import model_from_state_dict

B, CONT, DISC = 6, 4, (3, 5)
CONT_CAP, DISC_CAP = (0.0, 5.0, 1000, 30.0), (0.0, 4.0, 1000, 20.0)


def _images(size, channels=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, channels, size, size, generator=g) * 0.3
    for img, (r, c) in zip(x, torch.randint(0, size // 2, (B, 2), generator=g).tolist()):
        img[:, r : r + size // 3, c : c + size // 4] = 0.9
    return x


def _pair(size, channels=1):
    torch.manual_seed(11)
    base = PaperStyleVAE((channels, size, size), CONT, DISC)
    ours = model_from_state_dict(base.state_dict(), {"cont": CONT, "disc": list(DISC)})
    return base.train(), ours.train()


def _noise(seed=5):
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(B, CONT, generator=g)
    u = torch.rand(B, sum(DISC), generator=g) * 0.998 + 0.001
    return eps, u


def _ours(model, x, noise):
    mu, logvar, logits = model.encode(x)
    latent = ops.sample_latent(mu, logvar, logits, model.disc, model.temperature, training=True, noise=noise)
    x_logits = model.decode(latent)

    class Out:
        pass

    out = Out()
    out.x_logits, out.mu, out.logvar, out.logits = x_logits, mu, logvar, logits
    return out


@pytest.mark.parametrize("size,channels", [(32, 1), (64, 1), (64, 3)])
def test_baseline_loss_equals_ours_and_reference(size, channels):
    base, ours = _pair(size, channels)
    x = _images(size, channels)
    noise = _noise()
    trainer = BaselineTrainer(base, torch.optim.Adam(base.parameters()), CONT_CAP, DISC_CAP)
    recon, mean, logvar, alphas = base(x, noise=noise)
    out = _ours(ours, x, noise)
    torch.testing.assert_close(recon, torch.sigmoid(out.x_logits), rtol=1e-5, atol=1e-6)
    # the baseline's RGB reshape scores C*H*W pixels per image as a mean over C rows: recon / C
    objective = Objective(DISC, Capacity(*CONT_CAP), Capacity(*DISC_CAP), recon_weight=1.0 / channels)

    for step in (1, 400, 5000):  # start and middle of the capacity ramp; past c_max and C_c's cap sum log K
        trainer.num_steps = step
        lb = trainer.loss(x, recon, mean, logvar, alphas)
        terms = objective(x, out, step)
        torch.testing.assert_close(lb["recon"], terms.recon / channels, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(lb["kl_cont"], terms.kl_cont.sum(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(lb["kl_disc"], terms.kl_disc.sum(), rtol=1e-5, atol=1e-6)
        assert lb["c_cont"] == pytest.approx(terms.c_cont) and lb["c_disc"] == pytest.approx(terms.c_disc)
        torch.testing.assert_close(lb["total"], terms.total, rtol=1e-5, atol=1e-7)

        # the NumPy oracle (float64) on our network's outputs
        ref = reference.jointvae_objective(
            x.double().numpy(), out.x_logits.detach().double().numpy(), out.mu.detach().double().numpy(),
            out.logvar.detach().double().numpy(), out.logits.detach().double().numpy(), list(DISC), step,
            CONT_CAP, DISC_CAP, recon_weight=1.0 / channels,
        )
        np.testing.assert_allclose(lb["total"].item(), float(ref["total"]), rtol=1e-5)
        np.testing.assert_allclose(lb["recon"].item(), float(ref["recon"]) / channels, rtol=1e-5)

    # and the same gradients (last step) for weights both models share by name
    gb = torch.autograd.grad(lb["total"], [base.img_to_features[0].weight, base.features_to_img[0].weight])
    go = torch.autograd.grad(terms.total, [ours.img_to_features[0].weight, ours.features_to_img[0].weight])
    for a, b in zip(gb, go):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_baseline_has_the_papers_architecture():
    for size in (32, 64):
        base, ours = _pair(size)
        assert sum(p.numel() for p in base.parameters()) == sum(p.numel() for p in ours.parameters())
        assert isinstance(base.features_to_img[-1], torch.nn.Sigmoid)
        assert len(base.fc_alphas) == len(DISC)


def test_baseline_eval_mode_is_mean_and_one_hot():
    base, ours = _pair(32)
    base.eval()
    ours.eval()
    x = _images(32)
    recon, mean, _, alphas = base(x)
    torch.testing.assert_close(recon, ours.probabilities(ours.latent(*ours.encode(x))), rtol=1e-5, atol=1e-6)


def test_baseline_step_trains_and_syncs():
    _, trainer = make_baseline((1, 32, 32), CONT, DISC, 1e-3, CONT_CAP, DISC_CAP)
    images = (_images(32) * 255).to(torch.uint8).repeat(3, 1, 1, 1)
    loader = baseline_loader(images, batch_size=6, seed=0)
    losses = [trainer.step(x) for _ in range(4) for x, _ in loader]
    assert all(isinstance(v, float) and math.isfinite(v) for v in losses)
    assert trainer.num_steps == 12
    assert losses[-1] < losses[0]


def test_per_sample_images():
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).reshape(2, 1, 4, 4)
    item, label = PerSampleImages(images)[1]
    assert item.dtype == torch.float32 and item.shape == (1, 4, 4) and label == 0
    torch.testing.assert_close(item, images[1].float() / 255)
    with pytest.raises(ValueError, match="uint8"):
        PerSampleImages(images.float())
    with pytest.raises(ValueError, match="img_size"):
        PaperStyleVAE((1, 48, 48), 2, [3])


def test_in_memory_batches_cover_each_epoch_once_in_a_shuffled_order():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    batches = in_memory_batches(images, 3, seed=0)
    epoch = [next(batches) for _ in range(3)]  # 10 // 3 = 3 batches per epoch, the last image dropped
    assert all(b.shape == (3, 1, 2, 2) and b.dtype == torch.float32 for b in epoch)
    seen = torch.cat([b[:, 0, 0, 0] for b in epoch]) * 255
    assert len(set(seen.round().tolist())) == 9 and seen.round().tolist() != list(range(9))
    with pytest.raises(ValueError, match="batch_size must be in"):
        next(in_memory_batches(images, 11))
    with pytest.raises(ValueError, match="uint8"):
        next(in_memory_batches(images.float(), 2))
