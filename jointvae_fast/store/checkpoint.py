"""Checkpoints: a model's state dict plus JSON metadata, written atomically.

File layout (a dict saved with torch.save, loadable with weights_only=True):
    format    "jointvae_fast/1"
    meta      JSON text: img_size, cont, disc, temperature, preset, step,
              jointvae_fast and torch versions, and anything the caller adds
    model     the JointVAE state dict
    training  optional: optimizer state, RNG states, ... (tensors and plain
              Python containers only)
The file is written to a temporary name in the same folder, flushed to disk
and renamed over the target, so a crash never leaves a half-written
checkpoint under the real name.

Integrity: the zip archive's comment (the last bytes of the file) holds
"jointvae_fast-sha256:" + the sha256 of the file as it was before the comment
was added; `read` checks it, so a truncated or bit-flipped file is an error
naming the file (torch.load alone accepts flipped bits in tensor data).
Files without the comment (written before it existed) are read unchecked.
A file that is not a checkpoint, or lacks an entry, raises CheckpointError
(a UserInputError) naming the file and the missing entry.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..atomic_write import atomic_write
from ..errors import UserInputError, storage
from ..model import JointVAE

FORMAT = "jointvae_fast/1"
DIGEST_PREFIX = b"jointvae_fast-sha256:"
_EOCD = b"PK\x05\x06"  # zip end-of-central-directory record: 22 bytes, comment length at offset 20
_EOCD_SIZE = 22
META_KEYS = {"img_size": list, "cont": int, "disc": list, "temperature": (int, float)}


class CheckpointError(UserInputError):
    """A file that is not a readable jointvae_fast checkpoint (the message names the file and the problem)."""


@dataclass
class Checkpoint:
    model: JointVAE
    meta: dict[str, Any]
    training: dict[str, Any] | None = field(default=None)


def model_meta(model: JointVAE, **extra) -> dict[str, Any]:
    """The metadata that rebuilds `model`, plus versions and `extra` (JSON-serialisable)."""
    meta = {
        "img_size": list(model.img_size),
        "cont": model.cont,
        "disc": list(model.disc),
        "temperature": model.temperature,
        "jointvae_fast_version": __version__,
        "torch_version": torch.__version__,
    }
    meta.update(extra)
    json.dumps(meta)  # fail here, not at load time, if something is not JSON
    return meta


def with_digest(data: bytes) -> bytes:
    """A torch.save zip archive with its sha256 stored as the archive comment (zip readers ignore it)."""
    end = len(data) - _EOCD_SIZE
    if data[end : end + 4] != _EOCD or data[-2:] != b"\0\0":
        raise RuntimeError("torch.save did not end its archive with a comment-less end record")
    comment = DIGEST_PREFIX + hashlib.sha256(data).hexdigest().encode()
    return data[: end + 20] + struct.pack("<H", len(comment)) + comment


def verify_digest(data: bytes, path) -> None:
    """CheckpointError when `data` is cut short (its zip end record is not where it says) or carries a digest
    that does not match (a damaged file); files without a digest otherwise pass unchecked."""
    end = data.rfind(_EOCD, max(0, len(data) - _EOCD_SIZE - 0xFFFF))
    if end < 0 or end + _EOCD_SIZE > len(data):
        return  # not a zip archive: torch.load says so
    (comment_len,) = struct.unpack("<H", data[end + 20 : end + 22])
    comment = data[end + _EOCD_SIZE :]
    if len(comment) != comment_len:
        raise CheckpointError(f"{path} is truncated or has bytes appended ({len(comment)} bytes after the zip end "
                              f"record, {comment_len} expected); use another checkpoint")
    if not comment.startswith(DIGEST_PREFIX):
        return
    digest = hashlib.sha256(data[: end + 20] + b"\0\0").hexdigest().encode()
    if comment[len(DIGEST_PREFIX) :] != digest:
        raise CheckpointError(f"{path} is damaged: its bytes do not match the sha256 digest stored in it "
                              "(a bit flip or a partial copy); use another checkpoint")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save (+ digest) to a temp file in the target's folder, fsync, then rename over `path`."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = with_digest(buf.getvalue())
    with storage(path), atomic_write(path) as f:
        f.write(data)


def save(path, model: JointVAE, meta: dict[str, Any] | None = None, training: dict[str, Any] | None = None) -> None:
    """Write `model` (+ metadata from `model_meta` updated by `meta`, + optional training state) to `path`."""
    full_meta = model_meta(model, **(meta or {}))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    obj = {"format": FORMAT, "meta": json.dumps(full_meta), "model": state}
    if training is not None:
        obj["training"] = training
    atomic_torch_save(obj, path)


def read(path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict (meta parsed and checked), with clear errors for missing, truncated, damaged
    or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}" + (" (it is a folder)" if path.is_dir() else ""))
    with storage(path, "read"):
        data = path.read_bytes()
    verify_digest(data, path)
    try:
        obj = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # torch.load raises many types for a truncated zip, a non-torch file, a pickle with code
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated, damaged or not a torch file: "
                              f"{reason})") from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a jointvae_fast checkpoint (expected format {FORMAT!r}); "
            "for a checkpoint of the paper's reference implementation use checkpoint.import_reference"
        )
    try:
        obj["meta"] = json.loads(obj["meta"])
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} has no readable metadata (entry 'meta': {type(e).__name__})") from None
    check_meta(obj["meta"], path)
    if not isinstance(obj.get("model"), dict) or not all(isinstance(v, torch.Tensor) for v in obj["model"].values()):
        raise CheckpointError(f"{path} has no model weights (entry 'model' missing or not a dict of tensors)")
    return obj


def check_meta(meta: Any, path) -> None:
    """CheckpointError unless `meta` holds the architecture (META_KEYS with the right types)."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its metadata is not a JSON object")
    for key, kind in META_KEYS.items():
        if key not in meta:
            raise CheckpointError(f"{path}: its metadata lacks {key!r} (needed to rebuild the model)")
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise CheckpointError(f"{path}: metadata {key!r} has the wrong type ({meta[key]!r})")


def model_from_meta(meta: dict[str, Any], path="checkpoint") -> JointVAE:
    """An untrained JointVAE with the architecture `meta` describes (CheckpointError naming `path` if invalid)."""
    try:
        return JointVAE(meta["img_size"], int(meta["cont"]), list(meta["disc"]), float(meta["temperature"]))
    except (UserInputError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: its metadata does not describe a valid model ({e})") from None


def check_weights(state: dict[str, torch.Tensor], model: JointVAE, path) -> None:
    """CheckpointError naming the weights of `state` that are missing, mis-shaped or unknown to `model`."""
    ours = model.state_dict()
    bad = [k for k in ours if k not in state or tuple(state[k].shape) != tuple(ours[k].shape)]
    extra = [k for k in state if k not in ours]
    if bad or extra:
        raise CheckpointError(f"{path}: its weights do not match the model {model.extra_repr()}: missing or "
                              f"mis-shaped {bad}, unexpected {extra}")


def load_checkpoint(path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Model (eval mode), metadata and training state from a checkpoint file."""
    obj = read(path, map_location)
    model = model_from_meta(obj["meta"], path)
    check_weights(obj["model"], model, path)
    model.load_state_dict(obj["model"])
    model.eval()
    return Checkpoint(model, obj["meta"], obj.get("training"))


def load_model(path, map_location: str | torch.device = "cpu") -> JointVAE:
    """A ready model (eval mode) from a jointvae_fast checkpoint file."""
    return load_checkpoint(path, map_location).model



def check_training_state(obj: dict[str, Any], path) -> None:
    """CheckpointError naming the entry a resumable checkpoint lacks: training.step (int >= 0),
    training.optimizer (state, param_groups), training.rng.cpu (the CPU generator's uint8 state),
    training.rng.ranks (a list of {sampling: uint8 tensor, sampling_device: str, cuda})."""
    def need(ok, entry):
        if not ok:
            raise CheckpointError(f"{path} cannot be resumed: entry {entry} is missing or malformed")

    t = obj.get("training")
    need(isinstance(t, dict), "'training'")
    step = t.get("step")
    need(isinstance(step, int) and not isinstance(step, bool) and step >= 0, "'training.step'")
    opt = t.get("optimizer")
    need(isinstance(opt, dict) and isinstance(opt.get("state"), dict) and isinstance(opt.get("param_groups"), list),
         "'training.optimizer'")
    rng = t.get("rng")
    need(isinstance(rng, dict), "'training.rng'")
    cpu = rng.get("cpu")
    need(isinstance(cpu, torch.Tensor) and cpu.dtype == torch.uint8 and cpu.numel() == torch.get_rng_state().numel(),
         "'training.rng.cpu'")
    ranks = rng.get("ranks")
    need(isinstance(ranks, list) and ranks and all(
        isinstance(r, dict) and isinstance(r.get("sampling"), torch.Tensor) and isinstance(r.get("sampling_device"), str)
        for r in ranks), "'training.rng.ranks'")


def check_optimizer_state(state: dict[str, Any], model: JointVAE, path) -> None:
    """CheckpointError unless the saved Adam state fits `model`: one entry per parameter, moments of its shape."""
    params = list(model.parameters())
    ids = [i for g in state["param_groups"] if isinstance(g, dict) for i in g.get("params", [])]
    if len(ids) != len(params):
        raise CheckpointError(f"{path}: its optimizer state covers {len(ids)} parameters, the model has {len(params)}")
    for i, p in zip(ids, params):
        saved = state["state"].get(i, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in saved and (not isinstance(saved[key], torch.Tensor) or saved[key].shape != p.shape):
                raise CheckpointError(f"{path}: its optimizer state ({key} of parameter {i}) does not match the "
                                      f"model's shape {tuple(p.shape)}")
