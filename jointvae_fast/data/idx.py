"""MNIST and Fashion-MNIST: the four IDX files (gzipped or not), optional download with checksums.

Files (each as NAME or NAME.gz): train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
t10k-labels-idx1-ubyte. Looked for in <root>/mnist, <root>/MNIST/raw, <root>/MNIST (Fashion-MNIST:
<root>/fashion-mnist, <root>/FashionMNIST/raw, <root>/fashion_mnist, then /usr/share/datasets/fashion-mnist)
for every search root (see locations), and directly in data_dir.

Preprocessing: each 28x28 image is resized to 32x32 with PIL's bilinear filter,
Image.fromarray(img).resize((32, 32), Image.BILINEAR), which is what torchvision's Resize(32) does on a
PIL image (the paper's published code), so its checkpoints see the input they were trained on.

Download: when the files are not found and download is allowed (download=None tries unless the
environment variable JOINTVAE_DOWNLOAD is 0/false/no), the .gz files are fetched into
<cache>/<name>/ from the mirrors in MIRRORS (overridable per call), each verified against
CHECKSUMS (md5 as published, and sha256 when given) before it is kept. Connections time out after
DOWNLOAD_TIMEOUT_S seconds, so a machine without a network fails fast with DatasetNotFoundError.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch

from .cache import cache_path, fingerprint, load_cache, save_cache
from ..errors import UserInputError
from .dataset import Dataset
from .locations import CorruptDatasetError, DatasetNotFoundError, cache_root, candidate_dirs, search_roots
from ..progress import Progress

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MIRRORS = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"],
}
# published md5 of the .gz files (sha256 may be added per file as {"md5": ..., "sha256": ...})
CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte.gz": {"md5": "f68b3c2dcbeaaa9fbdd348bbdeb94873"},
        "train-labels-idx1-ubyte.gz": {"md5": "d53e105ee54ea40749a09fcbcd1e9432"},
        "t10k-images-idx3-ubyte.gz": {"md5": "9fb629c4189551a2d022fa330f9573f3"},
        "t10k-labels-idx1-ubyte.gz": {"md5": "ec29112dd5afa0611ce80d1b7f02629c"},
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": {"md5": "8d4fb7e6c68d591d4c3dfef9ec88bf0d"},
        "train-labels-idx1-ubyte.gz": {"md5": "25c81989df183df01b3e8a0aad5dffbe"},
        "t10k-images-idx3-ubyte.gz": {"md5": "bef4ecab320f06d8554ea6380940ec79"},
        "t10k-labels-idx1-ubyte.gz": {"md5": "bb300cfdad3c16e7a12a480ee83cd310"},
    },
}
SUBDIRS = {"mnist": ["mnist", "MNIST/raw", "MNIST"], "fashion-mnist": ["fashion-mnist", "FashionMNIST/raw", "fashion_mnist"]}
SYSTEM_DIRS = {"mnist": [], "fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")]}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
DOWNLOAD_TIMEOUT_S = 10.0
PREPROCESSING = "PIL Image.resize((32, 32), BILINEAR) of each 28x28 image (torchvision Resize(32) on PIL)"
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class DownloadError(UserInputError, OSError):
    """A download that failed on every mirror (network error, HTTP error or checksum mismatch)."""


class ChecksumError(DownloadError):
    """A downloaded file whose digest differs from the published one (the file is not kept)."""


def read_idx(path) -> np.ndarray:
    """The array in an IDX file (gzipped when the name ends in .gz or the data starts with the gzip magic).
    Raises CorruptDatasetError naming the file on a bad magic, a truncated file or trailing bytes."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise CorruptDatasetError(path, f"cannot read ({type(e).__name__}: {e}); the file is truncated or corrupt") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES or not 1 <= data[3] <= 4:
        raise CorruptDatasetError(path, f"not an IDX file (magic bytes {data[:4].hex() or 'missing'}); "
                                        "expected 0000 08 0N (see http://yann.lecun.com/exdb/mnist/)")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    if len(data) < 4 + 4 * ndim:
        raise CorruptDatasetError(path, "truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    want = int(np.prod(dims)) * dtype.itemsize
    have = len(data) - 4 - 4 * ndim
    if have != want:
        raise CorruptDatasetError(path, f"IDX header says shape {dims} ({want} bytes of data) but the file has "
                                        f"{have}: {'truncated' if have < want else 'trailing bytes'}")
    return np.frombuffer(data, dtype, offset=4 + 4 * ndim).reshape(dims).astype(dtype.newbyteorder("="))


def _files_in(folder: Path) -> dict[str, Path] | None:
    found = {}
    for key, base in IDX_FILES.items():
        for cand in (folder / base, folder / (base + ".gz")):
            if cand.is_file():
                found[key] = cand
                break
        else:
            return None
    return found


def _digests(path: Path) -> dict[str, str]:
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            md5.update(chunk)
            sha.update(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def download_file(urls: list[str], dest: Path, checksums: dict[str, str], timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Fetch the first of `urls` that answers with the right digests into `dest` (atomically).
    Raises ChecksumError when a mirror served a file with other digests and no mirror served a good one,
    DownloadError when no mirror could be reached."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    problems = []
    bad_checksum = False
    for url in urls:
        fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                shutil.copyfileobj(resp, out, 1 << 20)
            got = _digests(Path(tmp))
            wrong = {k: (v, got[k]) for k, v in checksums.items() if got[k] != v.lower()}
            if wrong:
                bad_checksum = True
                problems.append(f"{url}: checksum mismatch " + ", ".join(f"{k} expected {a} got {b}" for k, (a, b) in wrong.items()))
                continue
            os.replace(tmp, dest)
            return dest
        except (urllib.error.URLError, OSError, ValueError) as e:
            problems.append(f"{url}: {type(e).__name__}: {getattr(e, 'reason', e)}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    cls = ChecksumError if bad_checksum else DownloadError
    raise cls(f"could not download {dest.name}:\n  " + "\n  ".join(problems))


def download_allowed(download: bool | None) -> bool:
    if download is not None:
        return bool(download)
    return os.environ.get("JOINTVAE_DOWNLOAD", "1").strip().lower() not in ("0", "false", "no", "off")


def download_idx(name: str, dest_dir: Path, mirrors: list[str] | None = None, checksums: dict | None = None,
                 timeout: float = DOWNLOAD_TIMEOUT_S) -> dict[str, Path]:
    """Download the four .gz files of `name` into dest_dir; returns {key: path}."""
    mirrors = list(MIRRORS[name] if mirrors is None else mirrors)
    checksums = CHECKSUMS[name] if checksums is None else checksums
    out = {}
    for key, base in IDX_FILES.items():
        fname = base + ".gz"
        dest = Path(dest_dir) / fname
        if not dest.is_file():
            download_file([m.rstrip("/") + "/" + fname for m in mirrors], dest, checksums.get(fname, {}), timeout)
        out[key] = dest
    return out


def resize_28_to_32(images: np.ndarray, progress: bool | None = None, desc: str = "resizing") -> np.ndarray:
    """uint8 [N, 28, 28] -> uint8 [N, 1, 32, 32] with PIL's bilinear filter, image by image."""
    from PIL import Image

    out = np.empty((len(images), 1, 32, 32), np.uint8)
    with Progress(len(images), desc, enable=progress) as bar:
        for i, img in enumerate(images):
            out[i, 0] = np.asarray(Image.fromarray(img).resize((32, 32), Image.BILINEAR))
            if (i + 1) % 5000 == 0 or i + 1 == len(images):
                bar.update((i % 5000) + 1)
    return out


def _load(name: str, data_dir=None, download: bool | None = None, mirrors=None, checksums=None, cache: bool = True,
          cache_dir=None, progress: bool | None = None, timeout: float = DOWNLOAD_TIMEOUT_S) -> Dataset:
    roots = search_roots(data_dir)
    if cache_dir is not None:
        roots = [r for r in roots if r != cache_root()] + [Path(cache_dir)]
    dirs = candidate_dirs(roots, SUBDIRS[name], data_dir, SYSTEM_DIRS[name])
    files = None
    for d in dirs:
        files = _files_in(d)
        if files:
            break
    expected = ", ".join(f"{b}[.gz]" for b in IDX_FILES.values())
    get_it = {"mnist": "http://yann.lecun.com/exdb/mnist/ (or its mirror " + MIRRORS["mnist"][0] + ")",
              "fashion-mnist": "https://github.com/zalandoresearch/fashion-mnist (or `apt-get install "
                               "dataset-fashion-mnist` on Debian/Ubuntu)"}[name]
    if files is None:
        if not download_allowed(download):
            raise DatasetNotFoundError(name, dirs, expected, get_it, "Download was not attempted (download=False or JOINTVAE_DOWNLOAD=0).")
        dest = Path(cache_dir or cache_root()) / name
        try:
            files = download_idx(name, dest, mirrors, checksums, timeout)
        except ChecksumError:
            raise
        except (DownloadError, OSError) as e:
            raise DatasetNotFoundError(name, dirs, expected, get_it, f"Download into {dest} failed: {e}") from e
    src = files["train_images"].parent
    meta = {"dataset": name, "preprocessing": PREPROCESSING,
            "source": fingerprint([files[k] for k in IDX_FILES], None)}
    cpath = cache_path(name, str(src.resolve()), cache_dir)
    arrays = load_cache(cpath, meta) if cache else None
    if arrays is None:
        raw = {k: read_idx(p) for k, p in files.items()}
        for split in ("train", "test"):
            imgs, labels = raw[f"{split}_images"], raw[f"{split}_labels"]
            if imgs.ndim != 3 or imgs.shape[1:] != (28, 28) or imgs.dtype != np.uint8:
                raise CorruptDatasetError(files[f"{split}_images"], f"expected uint8 images [N, 28, 28], got {imgs.dtype} {imgs.shape}")
            if labels.ndim != 1 or len(labels) != len(imgs):
                raise CorruptDatasetError(files[f"{split}_labels"], f"expected {len(imgs)} labels, got shape {labels.shape}")
        arrays = {
            "train": resize_28_to_32(raw["train_images"], progress, f"{name}: resizing train"),
            "test": resize_28_to_32(raw["test_images"], progress, f"{name}: resizing test"),
            "train_labels": raw["train_labels"].astype(np.int64),
            "test_labels": raw["test_labels"].astype(np.int64),
        }
        if cache:
            save_cache(cpath, arrays, meta)
    return Dataset(
        name=name, train=torch.from_numpy(arrays["train"]), test=torch.from_numpy(arrays["test"]),
        image_size=(1, 32, 32), train_labels=arrays["train_labels"], test_labels=arrays["test_labels"],
        source=str(src), notes=f"{PREPROCESSING}; official train/test split",
        label_names=FASHION_CLASSES if name == "fashion-mnist" else tuple(str(i) for i in range(10)),
    )


def load_mnist(data_dir=None, **options) -> Dataset:
    """MNIST, 60,000 train + 10,000 test, uint8 [N, 1, 32, 32], labels 0-9. Options: see _load."""
    return _load("mnist", data_dir, **options)


def load_fashion_mnist(data_dir=None, **options) -> Dataset:
    """Fashion-MNIST, 60,000 train + 10,000 test, uint8 [N, 1, 32, 32], labels 0-9 (FASHION_CLASSES)."""
    return _load("fashion-mnist", data_dir, **options)
