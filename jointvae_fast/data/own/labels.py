"""Labels of an own data set, for evaluation only: the sub-folder names (ImageFolder), or a CSV file.

Sub-folders: when every image lies in a sub-folder of the data folder and there are at least two, the first
sub-folder of each image's path is its class (names sorted, class k = the k-th name).
CSV (--labels FILE.csv): a header row, one column naming the image (`file`, `path`, `filename` or `image`,
relative to the folder, '/'-separated; for an array file: `index`, the 0-based row) and one column per factor.
A factor whose cells all parse as integers is discrete (int64, values as written), all as numbers continuous
(float64), else categorical (int64 codes of the sorted distinct values, whose names are kept). Every listed
image needs exactly one row, every row an image; a factor needs at least two distinct values.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .problems import LabelFileError

FILE_COLUMNS = ("file", "path", "filename", "image")
INDEX_COLUMN = "index"


@dataclass
class Labels:
    """Factors aligned with the keys they were read for: {name: [N]}; value names of the categorical ones;
    `label` names the factor used as the class label (the sub-folder class, or the first categorical column)."""

    factors: dict[str, np.ndarray]
    value_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    label: str | None = None
    source: str = ""


def folder_classes(keys: list[str]) -> Labels | None:
    """The class of each key from its first sub-folder, or None when not every key lies in one or there is one."""
    if not keys or not all("/" in k for k in keys):
        return None
    first = [k.split("/", 1)[0] for k in keys]
    names = sorted(set(first))
    if len(names) < 2:
        return None
    code = {n: i for i, n in enumerate(names)}
    return Labels({"class": np.array([code[f] for f in first], np.int64)}, {"class": tuple(names)}, "class",
                  "sub-folder names")


def _normalise(name: str) -> str:
    name = name.strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def _column(path: Path, name: str, cells: list[str]) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """(values, value names or None) of one factor column (module docstring)."""
    try:
        return np.array([int(c) for c in cells], np.int64), None
    except ValueError:
        pass
    try:
        values = np.array([float(c) for c in cells], np.float64)
    except ValueError:
        names = tuple(sorted(set(cells)))
        code = {n: i for i, n in enumerate(names)}
        return np.array([code[c] for c in cells], np.int64), names
    if not np.isfinite(values).all():
        raise LabelFileError(path, f"column {name!r} holds a non-finite number ({cells[int(np.argmin(np.isfinite(values)))]})")
    return values, None


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    except UnicodeDecodeError as e:
        raise LabelFileError(path, f"not UTF-8 text (byte {e.start}): give a CSV file") from None
    except csv.Error as e:
        raise LabelFileError(path, f"not a valid CSV file: {e}") from None
    except OSError as e:
        raise LabelFileError(path, f"cannot read it: {e.strerror or e}") from None
    if len(rows) < 2:
        raise LabelFileError(path, "needs a header row and one row per image")
    return [h.strip() for h in rows[0]], rows[1:]


def read_label_csv(path, keys: list[str], known: set[str] | None = None, array: bool = False) -> Labels:
    """The factors of the CSV at `path` for `keys` (the images read; array: keys "#row"). `known`: every image
    listed, readable or not (a row naming an unreadable image is dropped, not an error)."""
    path = Path(path)
    header, rows = _read_rows(path)
    lower = [h.lower() for h in header]
    wanted = (INDEX_COLUMN,) if array else FILE_COLUMNS
    col = next((lower.index(c) for c in wanted if c in lower), None)
    if col is None:
        raise LabelFileError(path, f"no column naming the {'row' if array else 'image'}: the header needs one of "
                                   f"{', '.join(wanted)} (got {', '.join(header)})")
    if len(set(lower)) != len(lower):
        raise LabelFileError(path, f"the header names a column twice: {', '.join(header)}")
    factors = [i for i in range(len(header)) if i != col]
    if not factors:
        raise LabelFileError(path, "no factor column besides the image column")
    for r, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise LabelFileError(path, f"line {r} has {len(row)} cells, the header {len(header)}")
        for i in range(len(header)):
            if not row[i].strip():
                raise LabelFileError(path, f"line {r}: empty cell in column {header[i]!r}")
    names = [_normalise(row[col]) for row in rows]
    if array:
        try:
            names = [f"#{int(n)}" for n in names]
        except ValueError:
            raise LabelFileError(path, "the index column must hold integer row numbers") from None
    line = {}
    for r, n in enumerate(names):
        if n in line:
            raise LabelFileError(path, f"{n!r} has two rows (lines {line[n] + 2} and {r + 2})")
        line[n] = r
    known = set(keys) if known is None else known
    missing = [n for n in names if n not in known]
    if missing:
        raise LabelFileError(path, f"{len(missing)} row(s) name images that are not in the data set, e.g. "
                                   f"{missing[0]!r}")
    unlabelled = [k for k in keys if k not in line]
    if unlabelled:
        raise LabelFileError(path, f"{len(unlabelled)} image(s) have no row, e.g. {unlabelled[0]!r}")
    order = [line[k] for k in keys]
    out = Labels({}, source=str(path))
    for i in factors:
        values, value_names = _column(path, header[i], [rows[r][i].strip() for r in order])
        if len(np.unique(values)) < 2:
            raise LabelFileError(path, f"column {header[i]!r} has one value for every image; a factor needs at least "
                                       "two (remove the column)")
        out.factors[header[i]] = values
        if value_names is not None:
            out.value_names[header[i]] = value_names
            out.label = out.label or header[i]
    return out

