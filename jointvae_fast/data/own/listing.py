"""The image files of a folder, searched recursively, each real folder once (symlink loops end there).

Image files: the extensions in IMAGE_EXTS, any case. Hidden entries (names starting with ".", e.g. macOS
"._x.jpg" resource forks and .DS_Store) are left out. An image entry that cannot even be stat'ed (a broken
symlink, a symlink to itself) is listed as broken, to be skipped with the unreadable images; a folder
reached a second time through a symlink is not entered again (a symlink loop, or two links to one folder).
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from .problems import ImageFolderError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
FORMAT_NAMES = "PNG, JPEG, WebP, BMP, TIFF, GIF"


@dataclass(frozen=True)
class ImageFile:
    rel: str  # path relative to the folder, '/'-separated (the key of the split and of --labels)
    path: Path
    size: int
    mtime_ns: int


@dataclass
class Listing:
    root: Path
    images: list[ImageFile]  # sorted by rel
    broken: list[tuple[str, str]] = field(default_factory=list)  # (rel, why) image entries that cannot be read
    others: list[str] = field(default_factory=list)  # a few non-image files (for the message of a folder without images)
    other_count: int = 0
    revisited: list[str] = field(default_factory=list)  # folders not entered again (symlink loops)


def _why(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "symlink loop"
    if isinstance(e, FileNotFoundError):
        return "broken symlink"
    return e.strerror or type(e).__name__


def list_images(root) -> Listing:
    """The Listing of folder `root` (ImageFolderError when it cannot be listed at all)."""
    root = Path(root)
    try:
        top = root.stat()
        entries = list(os.scandir(root))
    except OSError as e:
        raise ImageFolderError(root, f"cannot list the folder: {_why(e)}") from None
    out = Listing(root, [])
    seen = {(top.st_dev, top.st_ino)}
    stack = [("", entries)]
    while stack:
        prefix, entries = stack.pop()
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = prefix + entry.name
            is_image = entry.name.lower().endswith(IMAGE_EXTS)
            try:
                st = entry.stat()  # follows symlinks
            except OSError as e:
                if is_image:
                    out.broken.append((rel, _why(e)))
                continue
            if entry.is_dir():
                if (st.st_dev, st.st_ino) in seen:
                    out.revisited.append(rel)
                    continue
                seen.add((st.st_dev, st.st_ino))
                try:
                    stack.append((rel + "/", list(os.scandir(entry.path))))
                except OSError as e:
                    out.broken.append((rel + "/", f"cannot list the folder: {_why(e)}"))
            elif is_image:
                out.images.append(ImageFile(rel, Path(entry.path), st.st_size, st.st_mtime_ns))
            else:
                out.other_count += 1
                if len(out.others) < 3:
                    out.others.append(rel)
    out.images.sort(key=lambda f: f.rel)
    out.broken.sort()
    return out


def require_images(listing: Listing) -> None:
    """ImageFolderError for a folder that is empty or holds no image files."""
    if listing.images or listing.broken:
        return
    if not listing.other_count:
        raise ImageFolderError(listing.root, f"the folder is empty: put the images ({FORMAT_NAMES}) in it, "
                                             "in sub-folders per class if you have classes")
    raise ImageFolderError(listing.root, f"no images ({FORMAT_NAMES}) in the folder or its sub-folders; it holds "
                                         f"{listing.other_count} other file(s), e.g. {', '.join(listing.others)}")
