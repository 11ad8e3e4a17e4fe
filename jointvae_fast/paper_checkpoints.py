"""Import checkpoints of the paper's published code (github.com/Schlumberger/joint-vae).

Such a checkpoint is a bare state dict (PyTorch 0.4 torch.save, legacy format)
of its `VAE` module, usually beside a specs.json holding the training settings
({"latent_spec": {"cont": D, "disc": [K_1, ...]}, "dataset": ..., ...}).

Key mapping (paper's code -> ours):
    img_to_features.{0,2,4[,6]}   -> same names (conv 4x4 stride 2; 4 convs <=> 64x64 images, 3 <=> 32x32)
    features_to_hidden.0          -> same
    fc_mean, fc_log_var, fc_alphas.{i}  -> rows of to_posterior, stacked in that order:
                                     [mu (D), logvar (D), logits_1 (K_1), ..., logits_V (K_V)]
    latent_to_features.{0,2}      -> same
    features_to_img.{0,2,4[,6]}   -> same (its trailing Sigmoid has no weights; our decoder gives logits)
The channel count C is the first conv's input channels. The latent spec comes
from specs.json when given (and must agree with the weights), else from the
head shapes. Loading always uses torch.load(weights_only=True): a checkpoint
cannot run code. The published code's encoder returns softmax(logits_i) as its
"alphas" and its decoder sigmoid(our logits); the imported model reproduces
both (see tests/analysis/test_paper_checkpoints.py).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from .errors import UserInputError
from .model import JointVAE

PAPER_TEMPERATURE = 0.67  # the published code's default; specs.json does not record it


class PaperCheckpointError(UserInputError):
    """A state dict that is not a checkpoint of the published code's VAE."""


def _resolve_paths(model_pt, specs_json) -> tuple[Path, Path | None]:
    model_pt = Path(model_pt)
    if model_pt.is_dir():
        model_pt = model_pt / "model.pt"
    if not model_pt.is_file():
        raise PaperCheckpointError(
            f"no paper checkpoint at {model_pt} (expected the model.pt of a github.com/Schlumberger/joint-vae run)"
        )
    if specs_json is None:
        beside = model_pt.parent / "specs.json"
        specs_json = beside if beside.is_file() else None
    elif not Path(specs_json).is_file():
        raise PaperCheckpointError(f"specs_json {specs_json} does not exist")
    return model_pt, (Path(specs_json) if specs_json is not None else None)


def read_specs(specs_json) -> dict[str, Any]:
    """The parsed specs.json of a run of the paper's code (must hold latent_spec with cont and/or disc)."""
    path = Path(specs_json)
    try:
        specs = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise PaperCheckpointError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(specs, dict) or not isinstance(specs.get("latent_spec"), dict):
        raise PaperCheckpointError(f"{path} has no latent_spec object (got {specs!r:.200})")
    return specs


def load_state_dict(model_pt) -> dict[str, torch.Tensor]:
    """The paper checkpoint's state dict, loaded with weights_only=True onto the CPU."""
    path = Path(model_pt)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PaperCheckpointError(
            f"{path} could not be loaded as a state dict with weights_only=True (truncated, not a torch file, "
            f"or a pickled module rather than a state_dict?): {e}"
        ) from e
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise PaperCheckpointError(f"{path} does not hold a state dict (name -> tensor), got {type(sd).__name__}")
    if sd and all(k.startswith("module.") for k in sd):  # saved from a DataParallel wrapper
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return dict(sd)


def _count_indexed(sd: dict[str, torch.Tensor], prefix: str) -> list[int]:
    pat = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.weight$")
    return sorted(int(m.group(1)) for k in sd if (m := pat.match(k)))


def infer_architecture(sd: dict[str, torch.Tensor], latent_spec: dict | None = None) -> tuple[tuple[int, int, int], int, list[int]]:
    """(img_size (C, H, W), cont D, disc [K_i]) of a state dict of the paper's code.

    Image size: 3 encoder convs -> 32x32, 4 -> 64x64; C = input channels of img_to_features.0.
    Latent spec: `latent_spec` if given, else D = rows of fc_mean.weight (0 if absent) and
    K_i = rows of fc_alphas.i.weight for i = 0, 1, ...
    """
    convs = _count_indexed(sd, "img_to_features")
    first = sd.get("img_to_features.0.weight")
    if first is None or first.dim() != 4:
        raise PaperCheckpointError(
            "not a paper JointVAE state dict: missing or mis-shaped key img_to_features.0.weight "
            f"(keys present: {sorted(sd)[:12]}{' ...' if len(sd) > 12 else ''})"
        )
    if len(convs) == 3:
        size = 32
    elif len(convs) == 4:
        size = 64
    else:
        raise PaperCheckpointError(
            f"cannot infer the image size: the encoder has {len(convs)} conv layers "
            f"(img_to_features indices {convs}); the paper's architecture has 3 (32x32) or 4 (64x64)"
        )
    img_size = (int(first.shape[1]), size, size)

    if latent_spec is not None:
        cont = latent_spec.get("cont", 0)
        disc = latent_spec.get("disc", [])
        if isinstance(cont, bool) or not isinstance(cont, int) or not isinstance(disc, list):
            raise PaperCheckpointError(f"latent_spec must be {{'cont': int, 'disc': [int, ...]}}, got {latent_spec!r}")
        return img_size, cont, list(disc)
    mean = sd.get("fc_mean.weight")
    cont = int(mean.shape[0]) if mean is not None and mean.dim() == 2 else 0
    disc = []
    i = 0
    while isinstance(sd.get(f"fc_alphas.{i}.weight"), torch.Tensor):
        disc.append(int(sd[f"fc_alphas.{i}.weight"].shape[0]))
        i += 1
    return img_size, cont, disc


def _paper_key_shapes(model: JointVAE) -> dict[str, tuple[int, ...]]:
    """The keys and shapes a state dict of the paper's code of `model`'s architecture has."""
    shapes: dict[str, tuple[int, ...]] = {}
    for k, v in model.state_dict().items():
        if not k.startswith("to_posterior."):
            shapes[k] = tuple(v.shape)
    hidden = model.to_posterior.in_features
    heads = [("fc_mean", model.cont), ("fc_log_var", model.cont)] if model.cont else []
    heads += [(f"fc_alphas.{i}", k) for i, k in enumerate(model.disc)]
    for name, rows in heads:
        shapes[f"{name}.weight"] = (rows, hidden)
        shapes[f"{name}.bias"] = (rows,)
    return shapes


def check_keys(sd: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]]) -> None:
    """Raise PaperCheckpointError listing every missing, unexpected and mis-shaped key."""
    missing = sorted(set(expected) - set(sd))
    extra = sorted(set(sd) - set(expected))
    misshaped = sorted(
        f"{k}: expected {list(expected[k])}, got {list(sd[k].shape)}"
        for k in set(expected) & set(sd)
        if tuple(sd[k].shape) != expected[k]
    )
    if missing or extra or misshaped:
        lines = ["state dict does not match the paper's JointVAE architecture:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {', '.join(missing)}")
        if extra:
            lines.append(f"  unexpected keys ({len(extra)}): {', '.join(extra)}")
        if misshaped:
            lines.append(f"  mis-shaped keys ({len(misshaped)}): {'; '.join(misshaped)}")
        raise PaperCheckpointError("\n".join(lines))


def model_from_state_dict(sd: dict[str, torch.Tensor], latent_spec: dict | None = None,
                          temperature: float = PAPER_TEMPERATURE) -> JointVAE:
    """Our JointVAE (eval mode, float32, CPU) holding the weights of a state dict of the paper's code."""
    img_size, cont, disc = infer_architecture(sd, latent_spec)
    try:
        model = JointVAE(img_size, cont, disc, temperature)
    except (ValueError, TypeError) as e:
        raise PaperCheckpointError(f"the checkpoint's architecture is not supported: {e}") from e
    check_keys(sd, _paper_key_shapes(model))
    ours = {k: v for k, v in sd.items() if not k.startswith(("fc_mean.", "fc_log_var.", "fc_alphas."))}
    heads = (["fc_mean", "fc_log_var"] if cont else []) + [f"fc_alphas.{i}" for i in range(len(disc))]
    ours["to_posterior.weight"] = torch.cat([sd[f"{h}.weight"] for h in heads], dim=0)
    ours["to_posterior.bias"] = torch.cat([sd[f"{h}.bias"] for h in heads], dim=0)
    model.load_state_dict({k: v.float() for k, v in ours.items()}, strict=True)
    return model.eval()


def read_paper_checkpoint(model_pt, specs_json=None) -> tuple[JointVAE, dict[str, Any]]:
    """(model, specs) from a run of the paper's code: model_pt is its model.pt or the folder holding it.

    specs_json defaults to the specs.json beside model.pt when there is one ({} otherwise).
    """
    model_pt, specs_path = _resolve_paths(model_pt, specs_json)
    specs = read_specs(specs_path) if specs_path is not None else {}
    sd = load_state_dict(model_pt)
    try:
        model = model_from_state_dict(sd, specs.get("latent_spec"))
    except PaperCheckpointError as e:
        raise PaperCheckpointError(f"{model_pt}: {e}") from None
    return model, specs


def import_paper_checkpoint(model_pt, specs_json=None) -> JointVAE:
    """Our JointVAE (eval mode) from a checkpoint of the paper's published code; see `read_paper_checkpoint`."""
    return read_paper_checkpoint(model_pt, specs_json)[0]
