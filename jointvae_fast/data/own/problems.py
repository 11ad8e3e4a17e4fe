"""The one-line errors of the own-images loader: each names the input and what would be valid."""
from __future__ import annotations

from pathlib import Path

from ...errors import UserInputError


class OwnDataError(UserInputError):
    """A folder, array file or label file given as --dataset / --labels that cannot be used; `path` names it."""

    def __init__(self, path, problem: str):
        self.path = Path(path)
        super().__init__(f"{self.path}: {problem}")


class ImageFolderError(OwnDataError):
    """A folder without usable images: empty, no image files, none (or too few) readable."""


class ArrayFileError(OwnDataError):
    """An .npy / .npz / .h5 file of the wrong dtype, rank, value range or key."""


class LabelFileError(OwnDataError):
    """A --labels CSV that does not match the images (missing files, unlabelled images, a constant column)."""


class OptionError(UserInputError):
    """An option of the own-images loader out of its range (image size, fit, channels, background, fraction)."""


class MissingExtraError(UserInputError):
    """An optional package the input needs (h5py for HDF5) is not installed."""
