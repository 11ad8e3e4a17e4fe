"""Image editing (the paper's Fig. 9b): encode an image, set one latent, decode.

An edit is `Edit(kind, index, value)`: kind "z" sets continuous unit z_index
to `value`; kind "c" sets discrete variable c_index to the one-hot of class
int(value). Parsed from text by `parse_edit`: "3=1.5" or "z3=1.5" (unit 3 to
1.5), "c0=2" (discrete variable 0 to class 2).

The edited latent is the eval-mode latent of the image ([mu, one-hot argmax])
with that one entry changed; the result is sigmoid(decode(latent)).
"""
from __future__ import annotations

import math
import re
from typing import NamedTuple, Sequence

import torch

from ...errors import UserInputError
from ...model import JointVAE
from ...grids.traversal import mode_latent, set_class, set_unit

_EDIT_RE = re.compile(r"^\s*([zc]?)(\d+)\s*=\s*(\S+)\s*$")


class Edit(NamedTuple):
    kind: str  # "z" (continuous unit) or "c" (discrete variable)
    index: int
    value: float

    def __str__(self) -> str:
        return f"{self.kind}{self.index}={int(self.value) if self.kind == 'c' else f'{self.value:g}'}"


def parse_edit(text: str) -> Edit:
    """'UNIT=VALUE' -> Edit: '3=1.5' / 'z3=1.5' set unit 3 to 1.5; 'c0=2' sets discrete variable 0 to class 2."""
    m = _EDIT_RE.match(str(text))
    if not m:
        raise UserInputError(f"edit must look like z3=1.5, 3=1.5 or c0=2, got {text!r}")
    kind, index, value = m.group(1) or "z", int(m.group(2)), m.group(3)
    try:
        v = float(value)
    except ValueError:
        raise UserInputError(f"edit value must be a number, got {text!r}") from None
    if not math.isfinite(v):
        raise UserInputError(f"edit value must be finite, got {text!r}")
    if kind == "c" and v != int(v):
        raise UserInputError(f"a discrete edit sets a class index (an integer), got {text!r}")
    return Edit(kind, index, v)


def check_edit(model: JointVAE, edit: Edit) -> None:
    """Raise UserInputError if `edit` names a unit/variable/class the model does not have."""
    if edit.kind == "z" and not 0 <= edit.index < model.cont:
        raise UserInputError(f"edit {edit}: the model has continuous units z0..z{model.cont - 1}" if model.cont
                         else f"edit {edit}: the model has no continuous units")
    if edit.kind == "c":
        if not 0 <= edit.index < len(model.disc):
            raise UserInputError(f"edit {edit}: the model has {len(model.disc)} discrete variable(s)")
        if not 0 <= int(edit.value) < model.disc[edit.index]:
            raise UserInputError(f"edit {edit}: variable c{edit.index} has classes 0..{model.disc[edit.index] - 1}")


def apply_edit(model: JointVAE, latents: torch.Tensor, edit: Edit) -> torch.Tensor:
    """A copy of latents [B, D + sum K] with the edit applied."""
    check_edit(model, edit)
    if edit.kind == "z":
        return set_unit(latents, edit.index, edit.value)
    return set_class(latents, model, edit.index, int(edit.value))


@torch.no_grad()
def edit_images(model: JointVAE, x: torch.Tensor, edit: Edit) -> torch.Tensor:
    """Encode x [B, C, H, W] (in [0, 1]), apply `edit`, decode: pixel probabilities [B, C, H, W]."""
    mu, _, logits = model.encode(x)
    return torch.sigmoid(model.decode(apply_edit(model, mode_latent(mu, logits, model.disc), edit)))


@torch.no_grad()
def edit_strip(model: JointVAE, x: torch.Tensor, edits: Sequence[Edit]) -> torch.Tensor:
    """Per image: [original, reconstruction, edit_1, ..., edit_E] -> images [B, 2 + E, C, H, W] in [0, 1]."""
    if x.dim() != 4 or tuple(x.shape[1:]) != tuple(model.img_size):
        raise ValueError(f"x must have shape [B, {', '.join(map(str, model.img_size))}], got {tuple(x.shape)}")
    for e in edits:
        check_edit(model, e)
    mu, _, logits = model.encode(x)
    base = mode_latent(mu, logits, model.disc)
    cols = [x.to(base.dtype), torch.sigmoid(model.decode(base))]
    cols += [torch.sigmoid(model.decode(apply_edit(model, base, e))) for e in edits]
    return torch.stack(cols, dim=1)
