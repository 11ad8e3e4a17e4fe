"""python -m jointvae_fast.export SOURCE OUT_DIR [--format torchscript,onnx] [--dataset NAME] [--data-dir DIR]

Writes a model (run dir, checkpoint, `pretrained:NAME`, a folder of the paper's code) as files that run without
this package:
    encoder.pt / encoder.onnx   image [B, C, H, W] (floats in [0, 1]) -> mu [B, D], logvar [B, D], and for each
                                discrete variable i its class probabilities probs_i [B, K_i] = softmax(logits_i)
    decoder.pt / decoder.onnx   latent [B, D + sum K] = [z, y_1, ..., y_V] -> pixel probabilities [B, C, H, W]
                                = sigmoid(decode(latent))
    model.json                  the latent layout (D, the K_i, image size, temperature), the inputs and outputs,
                                and the per-unit KL ranking with where it came from
The batch dimension is dynamic in every file. Evaluation mode draws no noise, so the fused ops are not part of
the graphs. TorchScript: torch.jit.trace; ONNX: torch.onnx.export's torch.export-based exporter (it needs the
onnxscript package: pip install "jointvae-fast[onnx]"), opset of that exporter's default, one file each.
KL ranking: the test split of --dataset (its first 1000 images, encoded now), else a recorded evaluation, the
training log, the checkpoint's metadata or decoded prior samples (analysis.latent_kl's order of sources).
"""
from __future__ import annotations

import copy
import importlib.util
import json
import sys
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .analysis.latent_kl import TestImages, kl_for, test_images
from .analysis.sources import load_source
from .errors import ArgumentParser, UserInputError, run_cli
from .layers import torch_layers
from .model import JointVAE

FORMATS = ("torchscript", "onnx")
EXAMPLE_BATCH = 4


DECODER_PARTS = ("latent_to_features", "features_to_img")  # JointVAE's submodules that decode() alone uses
ENCODER_PARTS = ("img_to_features", "features_to_hidden", "to_posterior")  # ... that encode() alone uses


def _without(model: JointVAE, parts: Sequence[str]) -> JointVAE:
    """A copy of `model` in evaluation mode without the submodules `parts`, so an exported file holds only the
    weights its half of the network reads; its layers on torch's own ops (no compiled op in an exported graph)."""
    m = torch_layers(copy.deepcopy(model).eval())
    for name in parts:
        delattr(m, name)
    return m


class Encoder(nn.Module):
    """image [B, C, H, W] -> (mu [B, D], logvar [B, D], probs_1 [B, K_1], ..., probs_V [B, K_V])."""

    def __init__(self, model: JointVAE):
        super().__init__()
        self.model = _without(model, DECODER_PARTS)
        self.disc = tuple(model.disc)
        self.eval()

    def forward(self, image: torch.Tensor):
        mu, logvar, logits = self.model.encode(image)
        probs = []
        start = 0
        for k in self.disc:
            probs.append(torch.softmax(logits[:, start:start + k], dim=1))
            start += k
        return (mu, logvar, *probs)


class Decoder(nn.Module):
    """latent [B, D + sum K] -> pixel probabilities sigmoid(decode(latent)) [B, C, H, W]."""

    def __init__(self, model: JointVAE):
        super().__init__()
        self.model = _without(model, ENCODER_PARTS)
        self.eval()

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model.decode(latent))


def output_names(model: JointVAE) -> list[str]:
    return ["mu", "logvar"] + [f"probs_{i}" for i in range(len(model.disc))]


def examples(model: JointVAE, batch: int = EXAMPLE_BATCH, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of images in [0, 1] and of latents (z ~ N(0, 1), one-hot classes) to trace and export with."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, *model.img_size, generator=g)
    parts = [torch.randn(batch, model.cont, generator=g)]
    for k in model.disc:
        parts.append(nn.functional.one_hot(torch.randint(k, (batch,), generator=g), k).float())
    return image, torch.cat(parts, dim=1)


def export_torchscript(model: JointVAE, out: Path) -> list[str]:
    image, latent = examples(model)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit.trace", FutureWarning)  # deprecated in torch 2.x, still loads
        enc = torch.jit.trace(Encoder(model), (image,), check_inputs=[(examples(model, 7, 1)[0],)])
        dec = torch.jit.trace(Decoder(model), (latent,), check_inputs=[(examples(model, 7, 1)[1],)])
    enc.save(str(out / "encoder.pt"))
    dec.save(str(out / "decoder.pt"))
    return ["encoder.pt", "decoder.pt"]


def export_onnx(model: JointVAE, out: Path) -> list[str]:
    if importlib.util.find_spec("onnxscript") is None:
        raise UserInputError("--format onnx needs the onnxscript package (torch's ONNX exporter): "
                             "pip install 'jointvae-fast[onnx]', or export --format torchscript")
    image, latent = examples(model)
    batch = torch.export.Dim("batch")
    for module, arg, name, inp, outs in ((Encoder(model), image, "encoder", "image", output_names(model)),
                                         (Decoder(model), latent, "decoder", "latent", ["probabilities"])):
        torch.onnx.export(module, (arg,), str(out / f"{name}.onnx"), dynamo=True, input_names=[inp],
                          output_names=outs, dynamic_shapes=({0: batch},), external_data=False, verbose=False)
    return ["encoder.onnx", "decoder.onnx"]


def kl_ranking(source, model: JointVAE, dataset: str | None, data_dir) -> dict:
    """{"source", "ranked": names by KL, descending, "kl": {name: nats}} (z_j continuous, c_i discrete)."""
    test = test_images(source, model, dataset, data_dir) if dataset else \
        TestImages(None, None, "no --dataset given")
    kl = kl_for(source, model, test)
    values = {f"z{j}": float(v) for j, v in enumerate(kl.cont)} | {f"c{i}": float(v) for i, v in enumerate(kl.disc)}
    names = list(values)
    order = np.argsort(-np.array([values[n] for n in names]), kind="stable")
    return {"source": kl.source, "ranked": [names[i] for i in order], "kl": values}


def layout(model: JointVAE, source_text: str, source, ranking: dict, files: list[str]) -> dict:
    c, h, w = model.img_size
    D, K = model.cont, list(model.disc)
    return {
        "format": 1,
        "source": source_text, "source_kind": source.kind, "dataset": source.dataset, "step": source.step,
        "image": {"channels": c, "height": h, "width": w, "values": "float32 in [0, 1], NCHW"},
        "latent": {"continuous": D, "discrete": K, "size": D + sum(K), "temperature": model.temperature,
                   "order": "[z_0 .. z_(D-1), y_1 (K_1 entries), ..., y_V (K_V entries)]; at evaluation z = mu "
                            "and y_i = one-hot of the argmax of probs_i"},
        "encoder": {"input": {"image": ["B", c, h, w]},
                    "outputs": {"mu": ["B", D], "logvar": ["B", D],
                                **{f"probs_{i}": ["B", k] for i, k in enumerate(K)}}},
        "decoder": {"input": {"latent": ["B", D + sum(K)]}, "outputs": {"probabilities": ["B", c, h, w]}},
        "kl_ranking": ranking,
        "files": files,
    }


def export(source_text: str, out_dir, formats: Sequence[str] = FORMATS, dataset: str | None = None,
           data_dir=None) -> dict:
    """Write the files of the module docstring into out_dir; returns model.json's content."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UserInputError(f"--format: {','.join(unknown) or 'nothing'} is not one of {', '.join(FORMATS)}")
    source = load_source(source_text)
    model = source.model.float().cpu().eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    if "torchscript" in formats:
        files += export_torchscript(model, out)
    if "onnx" in formats:
        files += export_onnx(model, out)
    meta = layout(model, source_text, source, kl_ranking(source, model, dataset, data_dir), files)
    (out / "model.json").write_text(json.dumps(meta, indent=1))
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m jointvae_fast.export", description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="run directory, checkpoint file, pretrained:NAME, or a folder of the paper's code")
    p.add_argument("out_dir", help="folder to write the files into (created)")
    p.add_argument("--format", default=",".join(FORMATS), help="comma-separated: torchscript, onnx (default: both)")
    p.add_argument("--dataset", help="rank the units by KL on this dataset's test split (first 1000 images)")
    p.add_argument("--data-dir", help="folder holding the dataset files")
    args = p.parse_args(argv)

    def work() -> int:
        formats = [f.strip() for f in args.format.split(",") if f.strip()]
        meta = export(args.source, args.out_dir, formats, args.dataset, args.data_dir)
        print(f"wrote {', '.join(meta['files'] + ['model.json'])} to {args.out_dir} "
              f"(D={meta['latent']['continuous']}, K={meta['latent']['discrete']}; KL ranking from "
              f"{meta['kl_ranking']['source']})")
        return 0

    return run_cli(work)


if __name__ == "__main__":
    sys.exit(main())
