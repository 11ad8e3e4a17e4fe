"""Import of checkpoints of the paper's published code (github.com/Schlumberger/joint-vae).

The oracle is an independent re-implementation of that network's forward pass
written here with torch.nn.functional on the raw state dict: encoder convs
(4x4, stride 2, padding 1) + ReLU, a 256-unit linear + ReLU, heads fc_mean,
fc_log_var and softmax(fc_alphas.i); decoder linear + ReLU twice, transposed
convs with ReLU between them and a sigmoid at the end. In eval mode its latent
is [mu, one_hot(argmax alpha_i) ...].
"""
import json
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from jointvae_fast.errors import UserInputError
from jointvae_fast.paper_checkpoints import PaperCheckpointError, import_paper_checkpoint, read_paper_checkpoint
from jointvae_fast.grids.traversal import mode_latent

SHARED = Path(__file__).resolve().parents[3] / "shared"
FIXTURES = SHARED / "fixtures" / "official-jointvae"
ATOL = 1e-5


def _indices(sd, prefix):
    return sorted(int(k.split(".")[1]) for k in sd if k.startswith(prefix + ".") and k.endswith(".weight"))


def ref_encode(sd, x):
    """(mu, logvar, [alpha_i]) as the paper's VAE.encode computes them."""
    h = x
    for i in _indices(sd, "img_to_features"):
        h = F.relu(F.conv2d(h, sd[f"img_to_features.{i}.weight"], sd[f"img_to_features.{i}.bias"], stride=2, padding=1))
    h = F.relu(F.linear(h.reshape(h.shape[0], -1), sd["features_to_hidden.0.weight"], sd["features_to_hidden.0.bias"]))
    mu = F.linear(h, sd["fc_mean.weight"], sd["fc_mean.bias"]) if "fc_mean.weight" in sd else h[:, :0]
    logvar = F.linear(h, sd["fc_log_var.weight"], sd["fc_log_var.bias"]) if "fc_log_var.weight" in sd else h[:, :0]
    alphas = [
        F.softmax(F.linear(h, sd[f"fc_alphas.{i}.weight"], sd[f"fc_alphas.{i}.bias"]), dim=1)
        for i in _indices(sd, "fc_alphas")
    ]
    return mu, logvar, alphas


def ref_decode(sd, latent):
    """Pixel probabilities as the paper's VAE.decode computes them."""
    h = F.relu(F.linear(latent, sd["latent_to_features.0.weight"], sd["latent_to_features.0.bias"]))
    h = F.relu(F.linear(h, sd["latent_to_features.2.weight"], sd["latent_to_features.2.bias"]))
    h = h.reshape(-1, 64, 4, 4)
    idx = _indices(sd, "features_to_img")
    for j, i in enumerate(idx):
        h = F.conv_transpose2d(h, sd[f"features_to_img.{i}.weight"], sd[f"features_to_img.{i}.bias"], stride=2, padding=1)
        h = torch.sigmoid(h) if j == len(idx) - 1 else F.relu(h)
    return h


def ref_eval_latent(mu, alphas):
    parts = [mu] + [F.one_hot(a.argmax(1), a.shape[1]).float() for a in alphas]
    return torch.cat(parts, dim=1)


def parity(model, sd, x):
    """Max abs differences (mu, logvar, alphas, decoded random latent, decoded eval latent) ours vs the paper's code."""
    with torch.no_grad():
        mu, logvar, logits = model.encode(x)
        rmu, rlogvar, ralphas = ref_encode(sd, x)
        d = {"mu": (mu - rmu).abs().max().item() if mu.numel() else 0.0,
             "logvar": (logvar - rlogvar).abs().max().item() if logvar.numel() else 0.0}
        probs = torch.split(logits, list(model.disc), dim=1)
        d["alphas"] = max((F.softmax(p, 1) - a).abs().max().item() for p, a in zip(probs, ralphas)) if probs else 0.0
        latent = torch.randn(x.shape[0], model.latent_dim, generator=torch.Generator().manual_seed(5))
        d["decode"] = (torch.sigmoid(model.decode(latent)) - ref_decode(sd, latent)).abs().max().item()
        ours = torch.sigmoid(model.decode(mode_latent(mu, logits, model.disc)))
        d["reconstruction"] = (ours - ref_decode(sd, ref_eval_latent(rmu, ralphas))).abs().max().item()
    return d


def _images(img_size, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *img_size, generator=g)


@pytest.mark.parametrize("name, img_size, cont, disc", [("mnist", (1, 32, 32), 10, [10]), ("chairs", (1, 64, 64), 32, [2, 2, 2])])
def test_fixture_parity(name, img_size, cont, disc):
    folder = FIXTURES / name
    if not (folder / "model.pt").is_file():
        pytest.skip(f"paper checkpoint fixtures not available: {folder / 'model.pt'} is absent (../shared not mounted)")
    model, specs = read_paper_checkpoint(folder)
    assert model.img_size == img_size and model.cont == cont and list(model.disc) == disc
    assert specs["dataset"] == name
    assert not model.training
    sd = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    x = _images(img_size)
    x[8:] = (x[8:] > 0.5).float()  # some binary images too
    diffs = parity(model, sd, x)
    assert all(v < ATOL for v in diffs.values()), diffs
    # the latent spec inferred from the shapes alone agrees with specs.json
    shapes_only = import_paper_checkpoint(folder / "model.pt", specs_json=None)
    assert shapes_only.cont == cont and list(shapes_only.disc) == disc


def random_paper_state_dict(img_size, cont, disc, seed=0):
    """A state dict with the paper's VAE keys and random weights (built without our model)."""
    g = torch.Generator().manual_seed(seed)
    c, size, _ = img_size
    enc = [c, 32, 32, 64, 64] if size == 64 else [c, 32, 64, 64]
    dec = [64, 64, 32, 32, c] if size == 64 else [64, 32, 32, c]
    sd = {}

    def put(name, *shape):
        fan_in = shape[1] * (shape[2] * shape[3] if len(shape) == 4 else 1)
        sd[f"{name}.weight"] = torch.randn(*shape, generator=g) / fan_in**0.5
        sd[f"{name}.bias"] = torch.randn(shape[0] if not name.startswith("features_to_img") else shape[1], generator=g) * 0.1

    for j, (a, b) in enumerate(zip(enc[:-1], enc[1:])):
        put(f"img_to_features.{2 * j}", b, a, 4, 4)
    put("features_to_hidden.0", 256, 1024)
    if cont:
        put("fc_mean", cont, 256)
        put("fc_log_var", cont, 256)
    for i, k in enumerate(disc):
        put(f"fc_alphas.{i}", k, 256)
    put("latent_to_features.0", 256, cont + sum(disc))
    put("latent_to_features.2", 1024, 256)
    for j, (a, b) in enumerate(zip(dec[:-1], dec[1:])):
        put(f"features_to_img.{2 * j}", a, b, 4, 4)
    return sd


def _write_legacy(folder, sd, latent_spec=None):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(sd, folder / "model.pt", _use_new_zipfile_serialization=False)
    if latent_spec is not None:
        (folder / "specs.json").write_text(json.dumps({"latent_spec": latent_spec, "dataset": "mnist"}))
    return folder


@pytest.mark.parametrize(
    "img_size, cont, disc",
    [((1, 32, 32), 6, [4, 3]), ((3, 64, 64), 5, [2]), ((1, 32, 32), 0, [5]), ((1, 64, 64), 3, [])],
)
def test_legacy_random_checkpoint_parity(tmp_path, img_size, cont, disc):
    sd = random_paper_state_dict(img_size, cont, disc)
    spec = {"disc": disc} if cont == 0 else ({"cont": cont} if not disc else {"cont": cont, "disc": disc})
    folder = _write_legacy(tmp_path / "run", sd, spec)
    with open(folder / "model.pt", "rb") as f:
        assert f.read(2) != b"PK"  # legacy (non-zip) serialization
    model = import_paper_checkpoint(folder / "model.pt", folder / "specs.json")
    assert model.img_size == img_size and model.cont == cont and list(model.disc) == disc
    diffs = parity(model, sd, _images(img_size, n=6, seed=1))
    assert all(v < ATOL for v in diffs.values()), diffs


def test_bad_state_dict_lists_missing_extra_and_misshaped(tmp_path):
    sd = random_paper_state_dict((1, 32, 32), 4, [3])
    del sd["fc_log_var.bias"]
    sd["classifier.weight"] = torch.zeros(2, 2)
    sd["features_to_hidden.0.weight"] = torch.zeros(256, 1000)
    folder = _write_legacy(tmp_path / "bad", sd)
    with pytest.raises(PaperCheckpointError) as e:
        import_paper_checkpoint(folder)
    msg = str(e.value)
    assert "missing keys (1): fc_log_var.bias" in msg
    assert "unexpected keys (1): classifier.weight" in msg
    assert "features_to_hidden.0.weight: expected [256, 1024], got [256, 1000]" in msg


def test_specs_disagreeing_with_weights_raise(tmp_path):
    sd = random_paper_state_dict((1, 32, 32), 4, [3])
    folder = _write_legacy(tmp_path / "r", sd, {"cont": 5, "disc": [3]})
    with pytest.raises(PaperCheckpointError, match="fc_mean.weight: expected \\[5, 256\\], got \\[4, 256\\]"):
        import_paper_checkpoint(folder)


def test_unsupported_architecture_and_unreadable_files(tmp_path):
    sd = random_paper_state_dict((1, 32, 32), 2, [2])
    sd["img_to_features.6.weight"] = sd["img_to_features.8.weight"] = torch.zeros(64, 64, 4, 4)  # 5 convs
    with pytest.raises(PaperCheckpointError, match="conv layers"):
        import_paper_checkpoint(_write_legacy(tmp_path / "a", sd))
    good = _write_legacy(tmp_path / "b", random_paper_state_dict((1, 32, 32), 2, [2]))
    data = (good / "model.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(PaperCheckpointError, match="weights_only"):
        import_paper_checkpoint(tmp_path / "trunc.pt")
    # a pickle that would run code is refused by weights_only loading
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Path("x"), protocol=2))
    with pytest.raises(PaperCheckpointError):
        import_paper_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(UserInputError, match="no paper checkpoint"):
        import_paper_checkpoint(tmp_path / "nowhere")
