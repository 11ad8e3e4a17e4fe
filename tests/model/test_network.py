"""JointVAE: shapes for every preset, input validation, and the key layout of the paper's published code."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from jointvae_fast import pretrained
from jointvae_fast.model import JointVAE
from jointvae_fast.training.presets import PRESET_IMAGE_SIZES, PRESETS


SHARED = Path(__file__).resolve().parents[3] / "shared"
FIXTURES = SHARED / "fixtures" / "official-jointvae"
# conv channels of the encoder and the decoder per image size: the paper's Appendix B for 32 and 64; one more
# 32-channel stride-2 block per doubling above (first in the encoder, last in the decoder)
CHANNELS = {32: ([32, 64, 64], [64, 32, 32]), 64: ([32, 32, 64, 64], [64, 64, 32, 32]),
            128: ([32, 32, 32, 64, 64], [64, 64, 32, 32, 32]), 256: ([32, 32, 32, 32, 64, 64], [64, 64, 32, 32, 32, 32])}


def conv_params(cin, cout):
    return cin * cout * 16 + cout


def expected_param_count(c, size, cont, disc):
    """Appendix B counted by hand: convs, 1024->256, heads, latent->256->1024, transposed convs."""
    enc = [c] + CHANNELS[size][0]
    dec = CHANNELS[size][1] + [c]
    n = sum(conv_params(a, b) for a, b in zip(enc[:-1], enc[1:]))
    n += 1024 * 256 + 256 + (256 + 1) * (2 * cont + sum(disc))
    n += (cont + sum(disc)) * 256 + 256 + 256 * 1024 + 1024
    n += sum(conv_params(a, b) for a, b in zip(dec[:-1], dec[1:]))
    return n


@pytest.mark.parametrize("preset", list(PRESETS))
def test_shapes_for_every_preset(preset):
    p = PRESETS[preset]
    c, h, w = PRESET_IMAGE_SIZES[preset] or (3, 128, 128)  # a path dataset's preset: any size, here 3x128x128
    model = JointVAE((c, h, w), p["cont"], p["disc"], p["temperature"])
    assert sum(t.numel() for t in model.parameters()) == expected_param_count(c, h, p["cont"], p["disc"])
    b = 3
    x = torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(0))
    mu, logvar, logits = model.encode(x)
    assert mu.shape == (b, p["cont"]) and logvar.shape == (b, p["cont"]) and logits.shape == (b, sum(p["disc"]))
    latent = torch.randn(b, model.latent_dim)
    assert model.decode(latent).shape == (b, c, h, w)
    probs = model.probabilities(latent)
    assert probs.shape == (b, c, h, w) and float(probs.min()) >= 0 and float(probs.max()) <= 1
    assert model.num_pixels == h * w

    out = model(x, torch.Generator().manual_seed(1))
    assert out.x_logits.shape == (b, c, h, w) and out.latent.shape == (b, model.latent_dim)
    z = out.latent[:, : p["cont"]]
    y = out.latent[:, p["cont"] :]
    assert torch.allclose(y.sum(dim=1), torch.ones(b), atol=1e-5)  # one Gumbel-Softmax block summing to 1
    assert not torch.equal(z, out.mu)  # noise was added
    model.eval()
    ev = model(x)
    assert torch.equal(ev.latent[:, : p["cont"]], ev.mu)
    assert torch.equal(ev.latent[:, p["cont"] :], F.one_hot(ev.logits.argmax(1), p["disc"][0]).float())


def test_training_forward_is_reproducible_from_the_generator():
    model = JointVAE((1, 32, 32), 4, [3, 2])
    x = torch.rand(5, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    a = model(x, torch.Generator().manual_seed(9)).latent
    b = model(x, torch.Generator().manual_seed(9)).latent
    c = model(x, torch.Generator().manual_seed(10)).latent
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.allclose(a[:, 4:7].sum(1), torch.ones(5), atol=1e-5)
    assert torch.allclose(a[:, 7:].sum(1), torch.ones(5), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(img_size=(1, 28, 28), cont=2, disc=[3]), "img_size"),
        (dict(img_size=(2, 32, 32), cont=2, disc=[3]), "img_size"),
        (dict(img_size=(1, 32, 64), cont=2, disc=[3]), "img_size"),
        (dict(img_size=(1, 32, 32), cont=0, disc=[]), "empty"),
        (dict(img_size=(1, 32, 32), cont=-1, disc=[3]), "cont"),
        (dict(img_size=(1, 32, 32), cont=2, disc=[1]), "disc"),
        (dict(img_size=(1, 32, 32), cont=2, disc=[3], temperature=0.0), "temperature"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        JointVAE(**kwargs)


def test_cont_only_and_disc_only_models():
    x = torch.rand(2, 1, 32, 32)
    m = JointVAE((1, 32, 32), 3, [])
    assert m(x, torch.Generator().manual_seed(0)).latent.shape == (2, 3)
    m = JointVAE((1, 32, 32), 0, [4])
    out = m(x, torch.Generator().manual_seed(0))
    assert out.latent.shape == (2, 4) and out.mu.shape == (2, 0)


# ------------------------------------------------ the key layout of the paper's published code


def reference_layout(model: JointVAE, generator) -> dict:
    """A random state dict in the layout of the paper's published code for `model`'s architecture."""
    ours = model.state_dict()
    sd = {k: torch.randn(v.shape, generator=generator) * 0.05 for k, v in ours.items() if not k.startswith("to_posterior")}
    d = model.cont
    sd["fc_mean.weight"], sd["fc_mean.bias"] = torch.randn(d, 256, generator=generator) * 0.05, torch.randn(d, generator=generator)
    sd["fc_log_var.weight"], sd["fc_log_var.bias"] = torch.randn(d, 256, generator=generator) * 0.05, torch.randn(d, generator=generator)
    for i, k in enumerate(model.disc):
        sd[f"fc_alphas.{i}.weight"] = torch.randn(k, 256, generator=generator) * 0.05
        sd[f"fc_alphas.{i}.bias"] = torch.randn(k, generator=generator)
    return sd


def to_our_layout(sd: dict, n_disc: int) -> dict:
    """Stack fc_mean, fc_log_var, fc_alphas.i into to_posterior; every other key is the same."""
    heads = ["fc_mean", "fc_log_var"] + [f"fc_alphas.{i}" for i in range(n_disc)]
    out = {k: v for k, v in sd.items() if not any(k.startswith(h + ".") for h in heads)}
    out["to_posterior.weight"] = torch.cat([sd[f"{h}.weight"] for h in heads])
    out["to_posterior.bias"] = torch.cat([sd[f"{h}.bias"] for h in heads])
    return out


def reference_encoder(sd: dict, x: torch.Tensor, n_conv: int, n_disc: int):
    """The encoder of the paper's published code, written with F from its state dict: (mu, logvar, [alphas_i])."""
    h = x
    for i in range(n_conv):
        h = F.relu(F.conv2d(h, sd[f"img_to_features.{2 * i}.weight"], sd[f"img_to_features.{2 * i}.bias"], stride=2, padding=1))
    h = F.relu(F.linear(h.flatten(1), sd["features_to_hidden.0.weight"], sd["features_to_hidden.0.bias"]))
    mu = F.linear(h, sd["fc_mean.weight"], sd["fc_mean.bias"])
    logvar = F.linear(h, sd["fc_log_var.weight"], sd["fc_log_var.bias"])
    alphas = [F.softmax(F.linear(h, sd[f"fc_alphas.{i}.weight"], sd[f"fc_alphas.{i}.bias"]), dim=1) for i in range(n_disc)]
    return mu, logvar, alphas


def reference_decoder(sd: dict, latent: torch.Tensor, n_conv: int):
    h = F.relu(F.linear(latent, sd["latent_to_features.0.weight"], sd["latent_to_features.0.bias"]))
    h = F.relu(F.linear(h, sd["latent_to_features.2.weight"], sd["latent_to_features.2.bias"])).view(-1, 64, 4, 4)
    for i in range(n_conv):
        h = F.conv_transpose2d(h, sd[f"features_to_img.{2 * i}.weight"], sd[f"features_to_img.{2 * i}.bias"], stride=2, padding=1)
        h = F.relu(h) if i < n_conv - 1 else torch.sigmoid(h)
    return h


def check_same_function(model: JointVAE, sd: dict):
    n_conv = len(CHANNELS[model.img_size[1]][0])
    x = torch.rand(4, *model.img_size, generator=torch.Generator().manual_seed(2))
    mu, logvar, logits = model.encode(x)
    rmu, rlogvar, ralphas = reference_encoder(sd, x, n_conv, len(model.disc))
    torch.testing.assert_close(mu, rmu)
    torch.testing.assert_close(logvar, rlogvar)
    start = 0
    for k, alpha in zip(model.disc, ralphas):
        torch.testing.assert_close(torch.softmax(logits[:, start : start + k], 1), alpha)
        start += k
    latent = torch.randn(4, model.latent_dim, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(model.probabilities(latent), reference_decoder(sd, latent, n_conv))


@pytest.mark.parametrize("img_size, cont, disc", [((1, 32, 32), 10, [10]), ((3, 64, 64), 5, [2, 3, 4]),
                                                  ((3, 128, 128), 4, [3]), ((1, 256, 256), 2, [2])])
def test_loads_a_state_dict_converted_from_the_reference_layout(img_size, cont, disc):
    model = JointVAE(img_size, cont, disc)
    sd = reference_layout(model, torch.Generator().manual_seed(0))
    model.load_state_dict(to_our_layout(sd, len(disc)), strict=True)
    check_same_function(model, sd)


@pytest.mark.parametrize("name, img_size, cont, disc", [("mnist", (1, 32, 32), 10, [10]), ("chairs", (1, 64, 64), 32, [2, 2, 2])])
def test_loads_the_published_reference_checkpoints(name, img_size, cont, disc):
    path = FIXTURES / name / "model.pt"
    if not path.is_file():
        pytest.skip(f"fixture {path} absent (../shared/fixtures/official-jointvae)")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model = JointVAE(img_size, cont, disc)
    model.load_state_dict(to_our_layout(sd, len(disc)), strict=True)
    check_same_function(model, sd)


# the state dict of the paper's networks, key by key (Appendix B; what every 32x32 and 64x64 checkpoint holds)
PAPER_KEYS = {
    32: ["img_to_features.0 [32, C, 4, 4]", "img_to_features.2 [64, 32, 4, 4]", "img_to_features.4 [64, 64, 4, 4]",
         "features_to_img.0 [64, 32, 4, 4]", "features_to_img.2 [32, 32, 4, 4]", "features_to_img.4 [32, C, 4, 4]"],
    64: ["img_to_features.0 [32, C, 4, 4]", "img_to_features.2 [32, 32, 4, 4]", "img_to_features.4 [64, 32, 4, 4]",
         "img_to_features.6 [64, 64, 4, 4]", "features_to_img.0 [64, 64, 4, 4]", "features_to_img.2 [64, 32, 4, 4]",
         "features_to_img.4 [32, 32, 4, 4]", "features_to_img.6 [32, C, 4, 4]"],
}


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("c", [1, 3])
def test_the_paper_networks_keep_their_state_dict(size, c):
    """Adding 128 and 256 changed nothing at 32 and 64: the same keys with the same shapes (so every checkpoint
    of the paper's sizes, the pretrained ones included, still loads)."""
    sd = JointVAE((c, size, size), 3, [4]).state_dict()
    convs = [f"{k[:-len('.weight')]} {list(v.shape)}".replace(f", {c}, 4", ", C, 4").replace(f"[{c}, ", "[C, ")
             for k, v in sd.items() if k.endswith(".weight") and v.dim() == 4]
    assert convs == PAPER_KEYS[size]
    assert [k for k in sd if not k.startswith(("img_to_features", "features_to_img"))] == [
        "features_to_hidden.0.weight", "features_to_hidden.0.bias", "to_posterior.weight", "to_posterior.bias",
        "latent_to_features.0.weight", "latent_to_features.0.bias", "latent_to_features.2.weight",
        "latent_to_features.2.bias"]


@pytest.mark.parametrize("size", [128, 256])
def test_larger_images_add_one_block_per_doubling(size):
    model = JointVAE((3, size, size), 4, [3])
    assert sum(t.numel() for t in model.parameters()) == expected_param_count(3, size, 4, [3])
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    assert model.img_to_features(x).shape == (2, 64, 4, 4)
    assert model(x).x_logits.shape == (2, 3, size, size)


def test_pretrained_models_still_load():
    for name in pretrained.names():
        model, _ = pretrained.load(name)
        assert model.img_size[1] in (32, 64)
