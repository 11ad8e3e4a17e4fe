"""python -m jointvae_fast.export: the TorchScript and ONNX files run in a fresh process that does not import
jointvae_fast (torch.jit.load; onnxruntime) and agree with the torch model within 1e-5 on real test images, at
several batch sizes; model.json describes the latent layout and ranks the units by KL."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from jointvae_fast import export
from jointvae_fast.analysis.sources import load_source
from jointvae_fast.analysis.split import load_named_dataset
from jointvae_fast.data import DatasetNotFoundError, load_dataset

TOL = 1e-5
BATCHES = (1, 5, 64)

RUNNER = r"""
import json, sys
import numpy as np
out = {}
folder, formats = sys.argv[1], sys.argv[2].split(",")
images, latents = np.load(folder + "/images.npy"), np.load(folder + "/latents.npy")
for b in %s:
    if "torchscript" in formats:
        import torch
        enc, dec = torch.jit.load(folder + "/encoder.pt"), torch.jit.load(folder + "/decoder.pt")
        with torch.no_grad():
            for i, t in enumerate(enc(torch.from_numpy(images[:b]))):
                out[f"ts_enc{i}_{b}"] = t.numpy()
            out[f"ts_dec_{b}"] = dec(torch.from_numpy(latents[:b])).numpy()
    if "onnx" in formats:
        import onnxruntime as ort
        enc = ort.InferenceSession(folder + "/encoder.onnx", providers=["CPUExecutionProvider"])
        dec = ort.InferenceSession(folder + "/decoder.onnx", providers=["CPUExecutionProvider"])
        for i, t in enumerate(enc.run(None, {"image": images[:b]})):
            out[f"onnx_enc{i}_{b}"] = t
        out[f"onnx_dec_{b}"] = dec.run(None, {"latent": latents[:b]})[0]
        out[f"onnx_names_{b}"] = np.array([o.name for o in enc.get_outputs()])
np.savez(folder + "/got.npz", **out)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("jointvae_fast", "reference"))))
""" % (BATCHES,)


def _real_test_images():
    """(source, uint8 test images [64, C, H, W]): Fashion-MNIST's when it is on disk, else the built-in chairs'."""
    try:
        return "pretrained:fashion-mnist", load_dataset("fashion-mnist", download=False).test[:64]
    except DatasetNotFoundError:
        return "pretrained:synthetic-chairs", torch.as_tensor(load_named_dataset("synthetic-chairs", None).test[:64])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Export a shipped model in both formats, then run the files in a fresh, isolated python (-I: no
    PYTHONPATH, no current folder on sys.path, so jointvae_fast cannot be imported by accident)."""
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    folder = tmp_path_factory.mktemp("export")
    source, uint8 = _real_test_images()
    assert export.main([source, str(folder), "--format", "torchscript,onnx"]) == 0
    model = load_source(source).model.float().eval()
    images = uint8.float().div(255.0)
    with torch.no_grad():
        mu, logvar, logits = model.encode(images)
        latent = model.latent(mu, logvar, logits)  # evaluation mode: [mu, one-hot argmax]
    np.save(folder / "images.npy", images.numpy())
    np.save(folder / "latents.npy", latent.numpy())
    r = subprocess.run([sys.executable, "-I", "-c", RUNNER, str(folder), "torchscript,onnx"], capture_output=True,
                       text=True, timeout=600, cwd=folder)
    assert r.returncode == 0, r.stderr[-3000:]
    return {"folder": folder, "model": model, "images": images, "latent": latent,
            "got": dict(np.load(folder / "got.npz")), "imported": json.loads(r.stdout.strip().splitlines()[-1])}


def test_the_fresh_process_never_imported_the_package(exported):
    assert exported["imported"] == []


@pytest.mark.parametrize("fmt", ["ts", "onnx"])
@pytest.mark.parametrize("b", BATCHES)
def test_encoder_matches_the_model(exported, fmt, b):
    model, images = exported["model"], exported["images"][:b]
    with torch.no_grad():
        mu, logvar, logits = model.encode(images)
    want = [mu, logvar] + [torch.softmax(part, 1) for part in torch.split(logits, list(model.disc), 1)]
    for i, w in enumerate(want):
        got = torch.from_numpy(exported["got"][f"{fmt}_enc{i}_{b}"])
        assert got.shape == w.shape
        torch.testing.assert_close(got, w, atol=TOL, rtol=0)


@pytest.mark.parametrize("fmt", ["ts", "onnx"])
@pytest.mark.parametrize("b", BATCHES)
def test_decoder_matches_the_model(exported, fmt, b):
    model = exported["model"]
    want = model.probabilities(exported["latent"][:b])
    got = torch.from_numpy(exported["got"][f"{fmt}_dec_{b}"])
    assert got.shape == want.shape == (b, *model.img_size)
    torch.testing.assert_close(got, want, atol=TOL, rtol=0)


def test_onnx_outputs_are_named(exported):
    names = list(exported["got"][f"onnx_names_{BATCHES[0]}"])
    assert names == ["mu", "logvar"] + [f"probs_{i}" for i in range(len(exported["model"].disc))]


def test_model_json_describes_the_layout_and_ranks_by_kl(exported):
    meta = json.loads((exported["folder"] / "model.json").read_text())
    model = exported["model"]
    lat = meta["latent"]
    assert (lat["continuous"], lat["discrete"], lat["size"], lat["temperature"]) == \
        (model.cont, list(model.disc), model.latent_dim, model.temperature)
    assert [meta["image"][k] for k in ("channels", "height", "width")] == list(model.img_size)
    assert sorted(meta["files"]) == ["decoder.onnx", "decoder.pt", "encoder.onnx", "encoder.pt"]
    rank = meta["kl_ranking"]
    assert sorted(rank["ranked"]) == sorted([f"z{j}" for j in range(model.cont)] + [f"c{i}" for i in range(len(model.disc))])
    kls = [rank["kl"][n] for n in rank["ranked"]]
    assert kls == sorted(kls, reverse=True) and rank["source"]


def test_each_file_holds_only_its_half_of_the_weights(exported):
    """The encoder's file has no decoder weights and the other way round (files about half the model)."""
    enc = torch.jit.load(str(exported["folder"] / "encoder.pt"))
    dec = torch.jit.load(str(exported["folder"] / "decoder.pt"))
    assert not any(n.startswith("model.features_to_img") or n.startswith("model.latent_to_features")
                   for n, _ in enc.named_parameters())
    assert not any(n.startswith("model.img_to_features") for n, _ in dec.named_parameters())


def test_bad_format_and_bad_source_are_one_line_errors(tmp_path, capsys):
    assert export.main(["pretrained:fashion-mnist", str(tmp_path), "--format", "tflite"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --format: tflite is not one of torchscript, onnx"]
    assert export.main([str(tmp_path / "nothing"), str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "nothing" in err[0]


def test_onnx_without_onnxscript_says_what_to_install(tmp_path, monkeypatch, capsys):
    real = export.importlib.util.find_spec
    monkeypatch.setattr(export.importlib.util, "find_spec", lambda n, *a: None if n == "onnxscript" else real(n, *a))
    assert export.main(["pretrained:fashion-mnist", str(tmp_path), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert "onnxscript" in err and "jointvae-fast[onnx]" in err
