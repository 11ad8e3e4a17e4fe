"""Images from one array file: .npy, .npz (the array `data_key`) or HDF5 .h5/.hdf5 (the dataset `data_key`,
read with h5py, the optional extra `hdf5`).

Accepted arrays: rank 3 [N, H, W] (grayscale) or rank 4 with a channel axis of 1, 3 or 4 (RGBA, composited
on the background) either last (NHWC) or second (NCHW): NCHW when axis 1 has 1, 3 or 4 entries and the last
axis does not, else NHWC when the last axis does. Values: uint8 0-255; uint8 or bool holding only 0 and 1
(binary, like dSprites' imgs: scaled to 0 and 255; decided from the first chunk, then checked in every chunk);
float16/32/64 in [0, 1] (scaled by 255, rounded). Anything else is an ArrayFileError naming the file.

The file is read in chunks of rows, in order (an .npz member is streamed out of the zip, so a compressed
array larger than memory is never inflated at once).
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .problems import ArrayFileError, MissingExtraError

ARRAY_EXTS = (".npy", ".npz", ".h5", ".hdf5")
PREFERRED_KEYS = ("images", "imgs", "x", "data", "arr_0")
CHANNEL_COUNTS = (1, 3, 4)


@dataclass(frozen=True)
class Layout:
    """How an array holds images: shape, axis order, pixel size, channels, dtype and value scale."""

    shape: tuple[int, ...]
    order: str  # "NHW", "NHWC" or "NCHW"
    dtype: str

    @property
    def n(self) -> int:
        return self.shape[0]

    @property
    def hw(self) -> tuple[int, int]:
        return (self.shape[2], self.shape[3]) if self.order == "NCHW" else (self.shape[1], self.shape[2])

    @property
    def channels(self) -> int:
        return {"NHW": 1, "NHWC": self.shape[-1], "NCHW": self.shape[1] if len(self.shape) == 4 else 1}[self.order]


def layout_of(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> Layout:
    """The Layout of an array of `shape` and `dtype` (module docstring), or ArrayFileError."""
    if not (dtype == np.uint8 or dtype == np.bool_ or np.issubdtype(dtype, np.floating)):
        raise ArrayFileError(path, f"array of dtype {dtype}: images must be uint8 (0-255, or 0/1), bool or float "
                                   "in [0, 1]")
    if len(shape) == 3:
        order = "NHW"
    elif len(shape) == 4 and shape[1] in CHANNEL_COUNTS and shape[-1] not in CHANNEL_COUNTS:
        order = "NCHW"
    elif len(shape) == 4 and shape[-1] in CHANNEL_COUNTS:
        order = "NHWC"
    elif len(shape) == 4:
        raise ArrayFileError(path, f"array of shape {shape}: a channel axis of 1, 3 or 4 entries must be last "
                                   "(NHWC) or second (NCHW)")
    else:
        raise ArrayFileError(path, f"array of rank {len(shape)} (shape {shape}): images must be [N, H, W], "
                                   "[N, H, W, C] or [N, C, H, W]")
    lay = Layout(tuple(int(s) for s in shape), order, str(dtype))
    if lay.n < 1 or min(lay.hw) < 1:
        raise ArrayFileError(path, f"array of shape {shape} holds no images")
    return lay


class ArrayReader:
    """Rows of one image array in chunks: `chunks(rows)` yields (start, raw ndarray of up to `rows` rows)."""

    def __init__(self, path: Path, key: str | None, kind: str, layout: Layout, opener):
        self.path, self.key, self.kind, self.layout, self._opener = path, key, kind, layout, opener

    def chunks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        yield from self._opener(rows)


def _pick_key(path: Path, keys: list[str], key: str | None, what: str) -> str:
    if key is not None:
        if key not in keys:
            raise ArrayFileError(path, f"no {what} {key!r}; it holds {', '.join(keys) or 'none'} (--data-key)")
        return key
    if len(keys) == 1:
        return keys[0]
    for k in PREFERRED_KEYS:
        if k in keys:
            return k
    raise ArrayFileError(path, f"holds {len(keys)} {what}s ({', '.join(keys)}): name the images with --data-key")


def _open_npy(path: Path, key: str | None) -> ArrayReader:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ArrayFileError(path, f"not a readable .npy file ({e})") from None
    lay = layout_of(path, arr.shape, arr.dtype)

    def chunks(rows):
        for i in range(0, lay.n, rows):
            yield i, np.asarray(arr[i : i + rows])

    return ArrayReader(path, None, "npy", lay, chunks)


def _npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) from the header of an .npy stream, which is left at the data."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f".npy format version {version} is not supported (save with numpy.savez)")


def _open_npz(path: Path, key: str | None) -> ArrayReader:
    try:
        with zipfile.ZipFile(path) as z:
            keys = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ArrayFileError(path, f"not a readable .npz file ({e})") from None
    key = _pick_key(path, keys, key, "array")
    try:
        with zipfile.ZipFile(path) as z, z.open(key + ".npy") as f:
            shape, fortran, dtype = _npy_header(f)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ArrayFileError(path, f"array {key!r} is not readable ({e})") from None
    if dtype.hasobject:
        raise ArrayFileError(path, f"array {key!r} holds Python objects: save the images as uint8 or float")
    if fortran:
        raise ArrayFileError(path, f"array {key!r} is stored in Fortran order: save np.ascontiguousarray(images)")
    lay = layout_of(path, shape, dtype)
    row_bytes = int(np.prod(shape[1:])) * dtype.itemsize

    def chunks(rows):
        try:
            with zipfile.ZipFile(path) as z, z.open(key + ".npy") as f:
                _npy_header(f)
                for i in range(0, lay.n, rows):
                    k = min(rows, lay.n - i)
                    buf = f.read(k * row_bytes)
                    if len(buf) != k * row_bytes:
                        raise ArrayFileError(path, f"array {key!r} is truncated at row {i + len(buf) // row_bytes}")
                    yield i, np.frombuffer(buf, dtype).reshape((k, *shape[1:]))
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise ArrayFileError(path, f"array {key!r} cannot be read ({e})") from None

    return ArrayReader(path, key, "npz", lay, chunks)


def _h5py():
    try:
        import h5py
    except ImportError:
        raise MissingExtraError("reading HDF5 files needs h5py: pip install h5py (or jointvae-fast[hdf5])") from None
    return h5py


def _open_h5(path: Path, key: str | None) -> ArrayReader:
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            keys = []
            f.visititems(lambda name, obj: keys.append(name) if isinstance(obj, h5py.Dataset) else None)
            key = _pick_key(path, keys, key, "dataset")
            shape, dtype = f[key].shape, f[key].dtype
    except OSError as e:
        raise ArrayFileError(path, f"not a readable HDF5 file ({e})") from None
    lay = layout_of(path, shape, dtype)

    def chunks(rows):
        with h5py.File(path, "r") as f:
            d = f[key]
            for i in range(0, lay.n, rows):
                yield i, d[i : i + rows]

    return ArrayReader(path, key, "hdf5", lay, chunks)


def open_array(path, key: str | None = None) -> ArrayReader:
    """An ArrayReader for the file at `path` (by its extension), its layout checked."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".npy":
        if key is not None:
            raise ArrayFileError(path, "an .npy file holds one array: --data-key applies to .npz and HDF5 files")
        return _open_npy(path, key)
    if ext == ".npz":
        return _open_npz(path, key)
    if ext in (".h5", ".hdf5"):
        return _open_h5(path, key)
    raise ArrayFileError(path, f"not an array file: give a folder of images or a {', '.join(ARRAY_EXTS)} file")


def value_scale(path: Path, first: np.ndarray) -> str:
    """How the values of an array map to 0-255, from its first chunk: "uint8", "binary" or "float"."""
    if first.dtype == np.bool_ or (first.dtype == np.uint8 and first.size and first.max() <= 1):
        return "binary"
    return "uint8" if first.dtype == np.uint8 else "float"


def to_uint8(path: Path, chunk: np.ndarray, scale: str, start: int) -> np.ndarray:
    """A raw chunk as uint8 0-255 by `scale` (value_scale), its values checked; ArrayFileError naming the row."""
    if scale == "uint8":
        return chunk
    if scale == "binary":
        if chunk.dtype != np.bool_ and chunk.size and chunk.max() > 1:
            row = start + int(np.argmax(chunk.reshape(len(chunk), -1).max(1) > 1))
            raise ArrayFileError(path, f"the first rows held only 0 and 1 (read as binary) but row {row} holds "
                                       f"values up to {int(chunk.max())}: mixed 0/1 and 0-255 images")
        return chunk.astype(np.uint8) * np.uint8(255)
    a = chunk.astype(np.float64, copy=False)
    bad = ~np.isfinite(a) | (a < 0.0) | (a > 1.0)
    if bad.any():
        flat = bad.reshape(len(a), -1)
        row = start + int(np.argmax(flat.any(1)))
        vals = a[bad]
        hint = " (0-255 values? save them as uint8)" if np.isfinite(vals).all() and vals.max() <= 255 else ""
        raise ArrayFileError(path, f"float images must lie in [0, 1]; row {row} holds {vals[0]:g}{hint}")
    return np.rint(a * 255.0).astype(np.uint8)


def as_nhwc(chunk: np.ndarray, order: str) -> np.ndarray:
    """A chunk as [n, H, W, C]."""
    if order == "NHW":
        return chunk[..., None]
    if order == "NCHW":
        return chunk.transpose(0, 2, 3, 1)
    return chunk


def describe(reader: ArrayReader, scale: str) -> str:
    """One line on how the array was read."""
    lay = reader.layout
    key = f" {reader.key!r}" if reader.key else ""
    values = {"uint8": "uint8 0-255", "binary": "0/1 values scaled to 0/255",
              "float": "floats in [0, 1] scaled by 255"}[scale]
    return (f"{reader.path}: array{key} of shape {lay.shape} read as {lay.n} images {lay.order} "
            f"({lay.hw[0]}x{lay.hw[1]}, {lay.channels} channel(s); {values})")
