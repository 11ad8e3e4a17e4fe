"""dSprites: the official npz when present, else a procedural generator of the same factor grid.

Factor grid (both sources): shape 3 (square, ellipse, heart) x scale 6 (linspace(0.5, 1, 6)) x
orientation 40 (linspace(0, 2*pi, 40), radians) x posX 32 x posY 32 (linspace(0, 1, 32)) = 737,280 binary
64x64 images; image i has the factor classes of np.unravel_index(i, (3, 6, 40, 32, 32)) (the official order).

Memory-lean: neither source holds 737,280 x 4096 bytes. The images are an `IndexedImages`:
    len(images) -> 737280;  images.shape -> (737280, 1, 64, 64);  images.image_size -> (1, 64, 64)
    images.gather(indices) -> uint8 [B, 1, 64, 64] (0 or 255) on the indices' device
The trainer keeps the object and calls gather(idx) per batch (jointvae_fast.training.batches.TrainImages does),
then converts with x.float() / 255. images.to(device) moves the small backing store once.
  - official file: the images are stored bit-packed (np.packbits, 368 MB), cached in <cache>/preprocessed/
    after the first read (which streams the npz in chunks instead of inflating all 2.9 GB at once);
  - procedural: 720 sprites of 32x32 (one per shape, scale, orientation; 737 KB) pasted at the position
    (posX, posY) = (i, j) -> sprite centre at pixel (16 + i, 16 + j), column x, row y.
Procedural shapes (in units of 16 px at scale 1): a square of side 1.0, an ellipse with semi-axes
0.65 x 0.35, a heart of width ~1.1, rotated by the orientation (reduced mod 2*pi, so 0 and 2*pi are
identical) and rasterised with 4x4 supersampling, a pixel on when at least half covered.
Test split: dSprites has no held-out split; `test` is a fixed seeded subset of TEST_COUNT images.
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import torch

from .cache import cache_path, fingerprint, load_cache, save_cache
from .dataset import Dataset
from .locations import CorruptDatasetError, DatasetNotFoundError, candidate_dirs, search_roots
from ..progress import Progress

OFFICIAL_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
SUBDIRS = ["dsprites", "dsprites-dataset", ""]
SHAPES = ("square", "ellipse", "heart")
GRID = (3, 6, 40, 32, 32)
N_IMAGES = int(np.prod(GRID))
FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2 * math.pi, 40)
POSITIONS = np.linspace(0.0, 1.0, 32)
TEST_COUNT = 10_000
SPLIT_SEED = 0
SPRITE = 32
UNIT_PX = 16.0


def factor_values(indices) -> dict[str, np.ndarray]:
    """The factors of images `indices`: shape int64 (0 square, 1 ellipse, 2 heart), scale, orientation
    (radians), posX, posY (in [0, 1]) as float32."""
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= N_IMAGES):
        raise ValueError(f"indices must be in [0, {N_IMAGES}), got {idx.min()}..{idx.max()}")
    sh, sc, ori, px, py = np.unravel_index(idx, GRID)
    return {"shape": sh.astype(np.int64), "scale": SCALES[sc].astype(np.float32),
            "orientation": ORIENTATIONS[ori].astype(np.float32), "posX": POSITIONS[px].astype(np.float32),
            "posY": POSITIONS[py].astype(np.float32)}


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership in the unit-size shape (u right, v up)."""
    if shape == 0:
        return np.maximum(np.abs(u), np.abs(v)) <= 0.5
    if shape == 1:
        return (u / 0.65) ** 2 + (v / 0.35) ** 2 <= 1.0
    x, y = u / 0.5, (v + 0.06) / 0.5  # heart: (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, about 1.1 wide
    return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0


def render_sprites(ss: int = 4) -> np.ndarray:
    """uint8 [3, 6, 40, 32, 32] (0/255): each shape at each scale and orientation, centred at pixel (16, 16)."""
    sub = (np.arange(SPRITE * ss) + 0.5) / ss - SPRITE / 2  # sub-pixel centres, pixel units from the centre
    xx, yy = np.meshgrid(sub, sub)  # x = column, y = row (down)
    out = np.zeros((3, 6, 40, SPRITE, SPRITE), np.uint8)
    for s in range(3):
        for k, scale in enumerate(SCALES):
            for o, theta in enumerate(ORIENTATIONS):
                t = math.fmod(float(theta), 2 * math.pi)
                c, sn = math.cos(t), math.sin(t)
                # rotate the sample points by -theta (counter-clockwise shape rotation, y up)
                u = (c * xx - sn * (-yy)) / (scale * UNIT_PX)
                v = (sn * xx + c * (-yy)) / (scale * UNIT_PX)
                cover = _inside(s, u, v).reshape(SPRITE, ss, SPRITE, ss).mean(axis=(1, 3))
                out[s, k, o] = np.where(cover >= 0.5, 255, 0)
    return out


class IndexedImages:
    """A lazily materialised image set: len(), .shape, .image_size, gather(indices) -> uint8 [B, C, H, W]."""

    image_size = (1, 64, 64)
    dtype = torch.uint8

    def __len__(self) -> int:
        return self.n

    @property
    def shape(self):
        return (self.n, *self.image_size)

    def gather(self, indices) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, idx) -> torch.Tensor:
        """images[i:j] or images[index tensor] -> uint8 [B, 1, 64, 64] (materialises just those)."""
        if isinstance(idx, slice):
            idx = torch.arange(*idx.indices(self.n))
        return self.gather(torch.as_tensor(idx, dtype=torch.long).reshape(-1))

    def subset(self, indices) -> "SubsetImages":
        return SubsetImages(self, indices)

    def _check(self, indices) -> torch.Tensor:
        idx = torch.as_tensor(indices)
        if idx.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"indices must be an integer tensor, got {idx.dtype}")
        idx = idx.long().reshape(-1)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.n):
            raise IndexError(f"indices must be in [0, {self.n}), got {int(idx.min())}..{int(idx.max())}")
        return idx


class ProceduralDSprites(IndexedImages):
    """The 737,280 procedural dSprites, rendered on demand from 720 stored sprites."""

    def __init__(self, sprites: np.ndarray | None = None):
        self.n = N_IMAGES
        self._sprites = {torch.device("cpu"): torch.from_numpy(
            (render_sprites() if sprites is None else sprites).reshape(-1, SPRITE, SPRITE))}

    def to(self, device) -> "ProceduralDSprites":
        self._store(torch.device(device))
        return self

    def _store(self, device: torch.device) -> torch.Tensor:
        if device not in self._sprites:
            self._sprites[device] = self._sprites[torch.device("cpu")].to(device)
        return self._sprites[device]

    def gather(self, indices) -> torch.Tensor:
        idx = self._check(indices)
        sprites = self._store(idx.device)
        py = idx % 32
        px = (idx // 32) % 32
        sprite = idx // 1024  # (shape, scale, orientation) flattened
        b = idx.numel()
        r = torch.arange(SPRITE, device=idx.device)
        offsets = (r[:, None] * 64 + r[None, :]).reshape(1, -1)  # a 32x32 window in a 64x64 image
        flat = (py * 64 + px)[:, None] + offsets  # window placed with its corner at (row py, column px)
        out = torch.zeros(b, 64 * 64, dtype=torch.uint8, device=idx.device)
        out.scatter_(1, flat, sprites.index_select(0, sprite).reshape(b, -1))
        return out.reshape(b, 1, 64, 64)


class PackedImages(IndexedImages):
    """Binary 64x64 images stored as packed bits (np.packbits order, 512 bytes per image)."""

    def __init__(self, packed: np.ndarray):
        if packed.ndim != 2 or packed.shape[1] != 512 or packed.dtype != np.uint8:
            raise ValueError(f"packed must be uint8 [N, 512], got {packed.dtype} {packed.shape}")
        self.n = packed.shape[0]
        self._packed = {torch.device("cpu"): torch.from_numpy(packed)}
        self._shifts = {}

    def to(self, device) -> "PackedImages":
        device = torch.device(device)
        if device not in self._packed:
            self._packed[device] = self._packed[torch.device("cpu")].to(device)
        return self

    def gather(self, indices) -> torch.Tensor:
        idx = self._check(indices)
        dev = idx.device
        packed = self._packed.get(dev)
        if packed is None:  # unpack on the CPU, ship the unpacked batch (call .to(device) to keep it there)
            return self.gather(idx.cpu()).to(dev)
        if dev not in self._shifts:
            self._shifts[dev] = torch.arange(7, -1, -1, dtype=torch.uint8, device=dev)
        bits = (packed.index_select(0, idx)[:, :, None] >> self._shifts[dev]) & 1
        return (bits.reshape(-1, 1, 64, 64) * 255).to(torch.uint8)


class SubsetImages(IndexedImages):
    """images[indices] of another IndexedImages, still lazy."""

    def __init__(self, base: IndexedImages, indices):
        self.base = base
        self.indices = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        self.n = len(self.indices)
        self.image_size = base.image_size

    def to(self, device) -> "SubsetImages":
        if hasattr(self.base, "to"):
            self.base.to(device)
        return self

    def gather(self, indices) -> torch.Tensor:
        idx = self._check(indices)
        return self.base.gather(self.indices.to(idx.device)[idx])


def test_indices() -> np.ndarray:
    """The TEST_COUNT image indices of the test split (sorted; fixed seed)."""
    return np.sort(np.random.default_rng(SPLIT_SEED).choice(N_IMAGES, TEST_COUNT, replace=False))


def find_official(data_dir=None) -> tuple[Path | None, list[Path]]:
    dirs = candidate_dirs(search_roots(data_dir), SUBDIRS, data_dir)
    for d in dirs:
        if (d / OFFICIAL_FILE).is_file():
            return d / OFFICIAL_FILE, dirs
    return None, dirs


def _read_npy_member(zf: zipfile.ZipFile, name: str, path: Path):
    """(file object positioned at the data, shape, dtype) of an .npy member of an npz, not yet read."""
    try:
        f = zf.open(name + ".npy")
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
    except KeyError:
        raise CorruptDatasetError(path, f"no array {name!r} in the npz (expected imgs, latents_values, latents_classes)") from None
    if fortran:
        raise CorruptDatasetError(path, f"array {name!r} is Fortran-ordered; expected the official C-ordered file")
    return f, shape, dtype


def read_official(path: Path, progress: bool | None = None) -> dict[str, np.ndarray]:
    """{"packed": uint8 [N, 512], "classes": int64 [N, 6]} from the official npz, streamed in chunks."""
    try:
        with zipfile.ZipFile(path) as zf:
            f, shape, dtype = _read_npy_member(zf, "imgs", path)
            if len(shape) != 3 or shape[1:] != (64, 64) or dtype != np.uint8:
                raise CorruptDatasetError(path, f"imgs must be uint8 [N, 64, 64], got {dtype} {shape}")
            n = shape[0]
            packed = np.empty((n, 512), np.uint8)
            chunk = 16384
            with Progress(n, "dsprites: packing images", enable=progress) as bar:
                for lo in range(0, n, chunk):
                    m = min(chunk, n - lo)
                    buf = f.read(m * 4096)
                    if len(buf) != m * 4096:
                        raise CorruptDatasetError(path, f"imgs truncated at image {lo + len(buf) // 4096} of {n}")
                    packed[lo : lo + m] = np.packbits(np.frombuffer(buf, np.uint8).reshape(m, 4096) != 0, axis=1)
                    bar.update(m)
            f, cshape, cdtype = _read_npy_member(zf, "latents_classes", path)
            classes = np.frombuffer(f.read(), cdtype)
            if cshape != (n, 6) or classes.size != n * 6:
                raise CorruptDatasetError(path, f"latents_classes must be [{n}, 6], got {cshape}")
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        if isinstance(e, CorruptDatasetError):
            raise
        raise CorruptDatasetError(path, f"unreadable npz ({type(e).__name__}: {e})") from e
    return {"packed": packed, "classes": classes.reshape(n, 6).astype(np.int64)}


def load_dsprites(data_dir=None, procedural: bool | None = None, cache: bool = True, cache_dir=None,
                  progress: bool | None = None) -> Dataset:
    """dSprites (see the module docstring). procedural=None: the official file when found, else procedural;
    True: always procedural; False: the official file or DatasetNotFoundError."""
    path, dirs = (None, []) if procedural else find_official(data_dir)
    if path is None:
        if procedural is False:
            raise DatasetNotFoundError("dsprites", dirs, OFFICIAL_FILE, "https://github.com/deepmind/dsprites-dataset")
        images: IndexedImages = ProceduralDSprites()
        source, notes = "procedural (jointvae_fast.data.dsprites)", "procedural sprites on the official factor grid"
        all_factors = factor_values(np.arange(N_IMAGES))
    else:
        meta = {"dataset": "dsprites", "preprocessing": "np.packbits(imgs != 0, axis=1)",
                "source": fingerprint([path], None)}
        cpath = cache_path("dsprites", str(path.resolve()), cache_dir)
        arrays = load_cache(cpath, meta) if cache else None
        if arrays is None:
            arrays = read_official(path, progress)
            if cache:
                save_cache(cpath, arrays, meta)
        cls = arrays["classes"]
        if cls.shape[0] != N_IMAGES or not np.array_equal(cls[:, 1:], np.stack(np.unravel_index(np.arange(N_IMAGES), GRID), 1)):
            raise CorruptDatasetError(path, "latents_classes do not follow the official factor grid")
        images = PackedImages(arrays["packed"])
        source, notes = str(path), "the official dSprites file, images stored bit-packed"
        all_factors = factor_values(np.arange(N_IMAGES))
    test = test_indices()
    return Dataset(
        name="dsprites", train=images, test=images.subset(test), image_size=(1, 64, 64),
        train_factors=all_factors, test_factors={k: v[test] for k, v in all_factors.items()},
        factor_names=FACTOR_NAMES, source=source,
        notes=notes + f"; test = a fixed random subset of {TEST_COUNT} training images (dSprites has no held-out split)",
        label_names=SHAPES,
    )
