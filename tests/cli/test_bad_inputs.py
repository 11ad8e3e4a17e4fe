"""A catalogue of bad inputs: each gives exit status 2, exactly one `error: ...` line, no traceback, and
leaves the run directory (and every other file the test made) byte-identical.

Categories (the pytest ids start with them): train-flag, eval-flag, config-file, data-file,
checkpoint (resume and evaluate), run-dir, device, api; plus a hypothesis strategy over config values,
a few real subprocesses (exit status and stderr as a user sees them), and internal bugs (a traceback
and exit status 1, never the one-line form).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from jointvae_fast import evaluate
from jointvae_fast import train as train_cli
from jointvae_fast.analysis.sources import load_source
from jointvae_fast.store import checkpoint, run_layout
from jointvae_fast.training import config as presets
from jointvae_fast.data import load_dataset
from jointvae_fast.errors import BUG_LINE, UserInputError

from tests.data_fixtures import idx_bytes, write_idx_set

ROOT = Path(__file__).resolve().parents[2]
SEED = 12


# ---------------------------------------------------------------- helpers


def tiny_dataset(n=32, size=32, channels=1, dtype=torch.uint8):
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, channels, size, size), generator=g).to(dtype)
    return SimpleNamespace(train=images, test=images[:16], image_size=(channels, size, size),
                           test_labels=np.arange(min(n, 16)) % 3, name="tiny")


TINY = tiny_dataset()


def base_args(out, *extra, steps=2):
    return ["--dataset", "mnist", "--cont", "2", "--disc", "3", "--batch-size", "8", "--steps", str(steps),
            "--log-every", "1", "--save-every", "1", "--no-images", "--no-progress", "--device", "cpu",
            "--out", str(out), *extra]


def tree_state(root: Path) -> dict[str, str]:
    """relative path -> sha256 of the bytes (files), 'dir' (folders), the target (symlinks, not followed): a
    byte-level picture of a tree."""
    state = {}
    if not root.exists():
        return state
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            state[rel] = "link " + os.readlink(p)
            continue
        state[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return state


def call(main, argv, **kw) -> int:
    try:
        return main(argv, **kw)
    except SystemExit as e:  # argparse
        return e.code


def assert_one_line_error(rc, err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, f"exit status {rc}, stderr:\n{err}"
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), f"want one error line, got:\n{err}"
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), f"{fragment!r} not in {lines[0]!r}"


def check_case(main, argv, ws: Path, fragment, capsys, **kw) -> None:
    """Run `main(argv)`; one error line containing `fragment` (a string or a tuple of them); the workspace
    `ws` byte-identical."""
    before = tree_state(ws)
    capsys.readouterr()
    rc = call(main, argv, **kw)
    assert_one_line_error(rc, capsys.readouterr().err, *((fragment,) if isinstance(fragment, str) else fragment))
    assert tree_state(ws) == before


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A workspace (hashed by the cases), a dataset cache outside it, no downloads, no user data."""
    monkeypatch.setenv("JOINTVAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("JOINTVAE_DOWNLOAD", "0")
    monkeypatch.delenv("JOINTVAE_DATA", raising=False)
    w = tmp_path / "ws"
    w.mkdir()
    return w


@pytest.fixture(scope="module")
def one_checkpoint_run(tmp_path_factory):
    """A finished 2-step run with a single checkpoint (keep 1), so a bad checkpoint has no fallback."""
    out = tmp_path_factory.mktemp("runs") / "one"
    assert train_cli.main(base_args(out, "--keep", "1"), dataset=TINY) == 0
    assert [s for s, _ in run_layout.list_checkpoints(out)] == [2]
    return out


def copy_run(src: Path, ws: Path) -> Path:
    dst = ws / "run"
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------- train flags

BIG = str(10**8)
TRAIN_FLAGS = [
    ("disc-65-variables", ["--disc", *["2"] * 65], "at most 64"),
    ("disc-class-count-too-large", ["--disc", BIG], "class"),
    ("disc-10M-classes-memory", ["--disc", str(10**7)], "memory"),
    ("disc-two-8M-classes-memory", ["--disc", str(2**23), str(2**23)], "memory"),
    ("cont-100M-memory", ["--cont", BIG], "memory"),
    ("batch-100M", ["--batch-size", BIG], "batch"),
    ("batch-larger-than-data", ["--batch-size", "64"], "larger than the training split"),
    ("steps-0", ["--steps", "0"], "steps"),
    ("steps-negative", ["--steps", "-3"], "steps"),
    ("epochs-0", ["--epochs", "0"], "epochs"),
    ("batch-0", ["--batch-size", "0"], "batch_size"),
    ("lr-nan", ["--lr", "nan"], "lr"),
    ("lr-inf", ["--lr", "inf"], "lr"),
    ("lr-negative", ["--lr", "-1e-3"], "lr"),
    ("temperature-0", ["--temperature", "0"], "temperature"),
    ("temperature-nan", ["--temperature", "nan"], "temperature"),
    ("temperature-final-alone", ["--temperature-final", "0.5"], "temperature"),
    ("temperature-final-above", ["--temperature-final", "2", "--temperature-anneal-steps", "5"], "temperature_final"),
    ("cont-negative", ["--cont", "-1"], "cont"),
    ("disc-1-class", ["--disc", "1"], "disc"),
    ("empty-latent", ["--cont", "0", "--disc"], "latent is empty"),
    ("recon-weight-nan", ["--recon-weight", "nan"], "recon_weight"),
    ("cont-gamma-inf", ["--cont-gamma", "inf"], "cont_gamma"),
    ("disc-max-negative", ["--disc-max", "-1"], "disc_max"),
    ("cont-iters-0", ["--cont-iters", "0"], "cont_iters"),
    ("keep-0", ["--keep", "0"], "keep"),
    ("log-every-0", ["--log-every", "0"], "log_every"),
    ("save-every-negative", ["--save-every", "-1"], "save_every"),
    ("limit-0", ["--limit", "0"], "limit"),
    ("threads-0", ["--threads", "0"], "threads"),
    ("threads-huge", ["--threads", str(10**12)], "threads"),
    ("seed-negative", ["--seed", "-1"], "seed"),
    ("seed-too-large", ["--seed", str(2**64)], "seed"),
    ("argparse-steps-not-int", ["--steps", "ten"], "--steps"),
    ("argparse-lr-not-number", ["--lr", "fast"], "--lr"),
    ("argparse-unknown-flag", ["--gama", "3"], "--gama"),
    ("argparse-unknown-dataset", ["--dataset", "imagenet"], "imagenet"),
    ("argparse-disc-not-int", ["--disc", "3", "x"], "--disc"),
]


@pytest.mark.parametrize("extra,fragment", [pytest.param(e, f, id=f"train-flag-{i}") for i, e, f in TRAIN_FLAGS])
def test_train_flag(extra, fragment, ws, capsys):
    check_case(train_cli.main, base_args(ws / "run", *extra), ws, fragment, capsys, dataset=TINY)


DEVICES = [("cuda-7", "cuda:7"), ("junk", "gpu0"), ("empty", ""), ("cuda-index-junk", "cuda:x"),
           ("meta", "meta"), ("cpu-index", "cpu:3")]
if not torch.cuda.is_available():
    DEVICES.append(("cuda-without-gpu", "cuda"))


@pytest.mark.parametrize("device", [pytest.param(d, id=f"device-train-{i}") for i, d in DEVICES])
def test_train_device(device, ws, capsys):
    check_case(train_cli.main, base_args(ws / "run", "--device", device), ws, "device", capsys, dataset=TINY)


@pytest.mark.parametrize("ds,fragment", [
    pytest.param(tiny_dataset(size=28), "img_size", id="train-data-28x28"),
    pytest.param(tiny_dataset(dtype=torch.float32), "uint8", id="train-data-float"),
    pytest.param(tiny_dataset(n=0), "empty", id="train-data-empty"),
    pytest.param(tiny_dataset(channels=2), "img_size", id="train-data-2-channels"),
])
def test_train_bad_image_data(ds, fragment, ws, capsys):
    check_case(train_cli.main, base_args(ws / "run"), ws, fragment, capsys, dataset=ds)


# ---------------------------------------------------------------- config files

CONFIG_FILES = [
    ("missing", None, "does not exist"),
    ("invalid-json", ("c.json", '{"lr": 0.1,'), "not valid JSON"),
    ("invalid-toml", ("c.toml", "lr = = 3"), "not valid TOML"),
    ("json-array", ("c.json", "[1, 2]"), "object"),
    ("unknown-key", ("c.json", '{"gama": 3}'), "gama"),
    ("wrong-type", ("c.toml", 'lr = "0.1"'), "'lr'"),
    ("nan-in-toml", ("c.toml", "lr = nan"), "lr"),
    ("inf-in-json", ("c.json", '{"cont_gamma": 1e999}'), "cont_gamma"),
    ("bool-as-int", ("c.json", '{"batch_size": true}'), "batch_size"),
    ("disc-not-list", ("c.json", '{"disc": 3}'), "disc"),
    ("binary-garbage", ("c.json", b"\xff\xfe\x00garbage\x9c"), "c.json"),
    ("a-directory", ("dir.json", None), "dir.json"),
    ("null-required", ("c.json", '{"batch_size": null}'), "batch_size"),
    ("too-many-disc-vars", ("c.json", json.dumps({"disc": [2] * 100})), "at most 64"),
]


@pytest.mark.parametrize("spec,fragment", [pytest.param(s, f, id=f"config-file-{i}") for i, s, f in CONFIG_FILES])
def test_config_file(spec, fragment, ws, capsys):
    path = ws / "nothing.json"
    if spec is not None:
        path = ws / spec[0]
        if spec[1] is None:
            path.mkdir()
        elif isinstance(spec[1], bytes):
            path.write_bytes(spec[1])
        else:
            path.write_text(spec[1])
    argv = base_args(ws / "run", "--config", str(path))
    for flag in ("--cont", "--disc"):  # flags win over the file: leave these to it
        i = argv.index(flag)
        del argv[i : i + 2]
    check_case(train_cli.main, argv, ws, fragment, capsys, dataset=TINY)


# ---------------------------------------------------------------- data files (MNIST IDX on disk)

IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _offsets(n_bytes, k, lo, key):
    rng = random.Random(f"{SEED}:{key}")
    return [rng.randrange(lo, n_bytes) for _ in range(k)]


def data_cases():
    cases = []
    for name in IDX_NAMES:
        short = name.split("-idx")[0]
        cases.append(pytest.param(name, "truncate-raw", 0, id=f"data-file-{short}-raw-truncated-at-0"))
        cases += [pytest.param(name, "truncate-raw", i, id=f"data-file-{short}-raw-truncated-{i}") for i in range(1, 3)]
        cases += [pytest.param(name, "truncate-gz", i, id=f"data-file-{short}-gz-truncated-{i}") for i in range(2)]
        cases += [pytest.param(name, "flip-gz", i, id=f"data-file-{short}-gz-bitflip-{i}") for i in range(2)]
        cases.append(pytest.param(name, "bad-magic", 0, id=f"data-file-{short}-bad-magic"))
        cases.append(pytest.param(name, "missing", 0, id=f"data-file-{short}-missing"))
    cases.append(pytest.param("train-labels-idx1-ubyte", "wrong-count", 0, id="data-file-label-count-mismatch"))
    cases.append(pytest.param("train-images-idx3-ubyte", "wrong-shape", 0, id="data-file-image-shape"))
    return cases


def _flip_that_changes_content(raw: bytes, key) -> bytes:
    """`raw` (gzip) with one seeded bit flipped past the header; flips that decode to the same bytes (unused
    padding bits) change nothing and are passed over."""
    rng = random.Random(f"{SEED}:{key}")
    content = gzip.decompress(raw)
    while True:
        b = bytearray(raw)
        b[rng.randrange(10, len(raw))] ^= 1 << rng.randrange(8)
        try:
            if gzip.decompress(bytes(b)) == content:
                continue
        except Exception:  # noqa: BLE001 - any failure to decode is a corruption the loader must report
            pass
        return bytes(b)


@pytest.mark.parametrize("name,kind,i", data_cases())
def test_data_file(name, kind, i, ws, capsys):
    data = ws / "data"
    write_idx_set(data, n_train=24, n_test=8, gz=kind.endswith("gz"), seed=0)
    path = data / (name + (".gz" if kind.endswith("gz") else ""))
    raw = path.read_bytes()
    frag = name
    if kind.startswith("truncate"):
        # raw: 0, then random offsets; gz: anywhere after the 10-byte header
        cut = 0 if i == 0 and kind == "truncate-raw" else _offsets(len(raw), 3, 10 if "gz" in kind else 1, (name, kind))[i]
        path.write_bytes(raw[:cut])
    elif kind == "flip-gz":  # past the gzip header (its mtime/OS bytes are not checked by any reader)
        path.write_bytes(_flip_that_changes_content(raw, (name, i)))
    elif kind == "bad-magic":
        path.write_bytes(b"\x00\x00\x0f\x03" + raw[4:])
    elif kind == "missing":
        path.unlink()
        frag = "not found"
    elif kind == "wrong-count":
        path.write_bytes(idx_bytes(np.zeros(23, np.uint8)))
    elif kind == "wrong-shape":
        path.write_bytes(idx_bytes(np.zeros((24, 20, 20), np.uint8)))
    argv = base_args(ws / "run", "--data-dir", str(data))
    check_case(train_cli.main, argv, ws, frag, capsys)


def test_corrupt_dataset_cache_is_rebuilt_with_a_warning(ws, tmp_path):
    """A cache is derived data: a damaged one is named in a warning and rebuilt, training goes on."""
    data = ws / "data"
    write_idx_set(data, n_train=24, n_test=8, seed=0)
    first = load_dataset("mnist", data_dir=data, progress=False)
    caches = list((tmp_path / "cache" / "preprocessed").glob("*.npz"))
    assert len(caches) == 1
    raw = caches[0].read_bytes()
    caches[0].write_bytes(raw[: len(raw) // 2])
    with pytest.warns(UserWarning, match=str(caches[0].name)):
        again = load_dataset("mnist", data_dir=data, progress=False)
    assert torch.equal(first.train, again.train)


# ---------------------------------------------------------------- your own data (--dataset PATH)


def _png(path: Path, value=100, size=(20, 16), mode="L"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path


def _folder(ws, n=10, sub=("a", "b")) -> Path:
    for k in sub:
        for i in range(n // len(sub)):
            _png(ws / "data" / k / f"{i}.png", value=10 * i)
    return ws / "data"


def _text_png(ws):
    (ws / "data").mkdir()
    (ws / "data/x.png").write_text("this is text")
    return ws / "data"


def _truncated_jpeg(ws):
    import io
    from PIL import Image

    buf = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buf, "JPEG")
    (ws / "data").mkdir()
    (ws / "data/t.jpg").write_bytes(buf.getvalue()[:300])
    return ws / "data"


def _csv(ws, lines, folder=None):
    folder = folder or _folder(ws)
    (ws / "l.csv").write_text("file,kind\n" + "".join(f"{line}\n" for line in lines))
    return folder, ["--labels", str(ws / "l.csv")]


def _all_rows(folder, value=lambda i: "x" if i % 2 else "y"):
    return [f"{p.relative_to(folder).as_posix()},{value(i)}" for i, p in enumerate(sorted(folder.rglob("*.png")))]


def _own_cases():
    """(id, build(ws) -> (dataset path, extra flags), fragment of the error line)."""
    def empty(ws):
        (ws / "data").mkdir()
        return ws / "data", []

    def no_images(ws):
        (ws / "data").mkdir()
        (ws / "data/readme.txt").write_text("x")
        return ws / "data", []

    def strict(ws):
        folder = _folder(ws)
        (folder / "a/bad.png").write_text("text")
        return folder, ["--strict-images"]

    def too_many(ws):
        folder = _folder(ws, n=4)
        (folder / "a/bad.png").write_text("text")
        return folder, []

    def one_image(ws):
        return _png(ws / "data/a.png").parent, []

    def csv_names_missing(ws):
        folder = _folder(ws)
        return _csv(ws, _all_rows(folder) + ["a/ghost.png,x"], folder)

    def csv_misses_images(ws):
        folder = _folder(ws)
        return _csv(ws, _all_rows(folder)[:-1], folder)

    def csv_one_value(ws):
        folder = _folder(ws)
        return _csv(ws, _all_rows(folder, lambda i: "same"), folder)

    def csv_absent(ws):
        return _folder(ws), ["--labels", str(ws / "nope.csv")]

    def self_symlink(ws):
        (ws / "data").mkdir()
        os.symlink(ws / "data/self.png", ws / "data/self.png")
        return ws / "data", []

    def unreadable(ws):
        folder = _folder(ws, n=2)
        for p in folder.rglob("*.png"):
            p.chmod(0)
        return folder, []

    def array(arr, name="a.npy", **kw):
        def build(ws):
            np.save(ws / name, arr)
            return ws / name, []
        return build

    def npz_two(ws):
        np.savez(ws / "a.npz", one=np.zeros((4, 8, 8), np.uint8), two=np.zeros((4, 8, 8), np.uint8))
        return ws / "a.npz", []

    def h5_key(ws):
        h5py = pytest.importorskip("h5py")
        with h5py.File(ws / "a.h5", "w") as f:
            f["images"] = np.zeros((4, 8, 8), np.uint8)
        return ws / "a.h5", ["--data-key", "nope"]

    def text_file(ws):
        (ws / "notes.txt").write_text("x")
        return ws / "notes.txt", []

    def missing(ws):
        return ws / "no/such/folder", []

    def flags(*extra):
        return lambda ws: (_folder(ws), list(extra))

    cases = [
        ("empty-folder", empty, "empty"),
        ("folder-without-images", no_images, "no images"),
        ("text-file-named-png", lambda ws: (_text_png(ws), []), "none of the 1 image file"),
        ("truncated-jpeg", lambda ws: (_truncated_jpeg(ws), []), ("none of the 1", "truncated")),
        ("unreadable-with-strict-images", strict, ("--strict-images", "a/bad.png")),
        ("too-many-unreadable", too_many, "more than 10%"),
        ("one-image", one_image, "at least 2"),
        ("self-symlink-loop", self_symlink, "symlink loop"),
        ("csv-names-missing-files", csv_names_missing, ("not in the data set", "a/ghost.png")),
        ("csv-misses-images", csv_misses_images, "have no row"),
        ("csv-one-value-column", csv_one_value, ("kind", "one value")),
        ("csv-missing", csv_absent, "nope.csv"),
        ("array-dtype", array(np.zeros((4, 8, 8), np.int64)), "dtype int64"),
        ("array-rank", array(np.zeros((4, 8), np.uint8)), "rank 2"),
        ("array-value-range", array(np.full((4, 8, 8), 2.0, np.float32)), "[0, 1]"),
        ("array-nan", array(np.full((4, 8, 8), np.nan, np.float32)), "[0, 1]"),
        ("npz-without-key", npz_two, "--data-key"),
        ("hdf5-missing-key", h5_key, "no dataset 'nope'"),
        ("not-an-array-file", text_file, "not an array file"),
        ("path-missing", missing, "does not exist"),
        ("img-size-48", flags("--img-size", "48"), "img_size"),
        ("fit-zoom", flags("--fit", "zoom"), "--fit"),
        ("channels-2", flags("--channels", "2"), "channels"),
        ("test-fraction-1", flags("--test-fraction", "1"), "test_fraction"),
        ("background-purple", flags("--background", "purple"), "background"),
        ("data-key-on-a-folder", flags("--data-key", "images"), "data-key"),
    ]
    out = [pytest.param(b, f, id=f"own-data-{i}") for i, b, f in cases]
    out.append(pytest.param(unreadable, "none of the", id="own-data-unreadable-files", marks=pytest.mark.skipif(
        os.geteuid() == 0, reason="root reads files without read permission")))
    return out


@pytest.mark.parametrize("build,fragment", _own_cases())
def test_own_data(build, fragment, ws, capsys):
    path, extra = build(ws)
    check_case(train_cli.main, base_args(ws / "run", "--dataset", str(path), "--img-size", "32", *extra), ws,
               fragment, capsys)


@pytest.mark.parametrize("extra,fragment", [
    pytest.param(["--img-size", "128"], "img_size applies to a path dataset", id="own-data-img-size-on-mnist"),
    pytest.param(["--fit", "pad", "--strict-images"], "fit, strict_images apply", id="own-data-fit-on-mnist"),
])
def test_own_data_settings_on_a_builtin_dataset(extra, fragment, ws, capsys):
    check_case(train_cli.main, base_args(ws / "run", *extra), ws, fragment, capsys, dataset=TINY)


def test_own_data_odd_but_accepted(ws, capsys):
    """Not errors: mixed channel counts (converted, said once), file names with spaces and non-ASCII, a symlink
    loop (read once, said once), one unreadable file among many (skipped: one warning line, listed in the run
    directory)."""
    folder = ws / "data"
    for i in range(12):
        _png(folder / "grå bilder" / f"bild {i}.png", value=20 * i)
        _png(folder / "彩色" / f"图 {i}.png", value=(20 * i, 0, 0), mode="RGB")
    os.symlink(folder, folder / "grå bilder" / "loop")
    (folder / "彩色" / "broken.png").write_text("text")
    run = ws / "run"
    rc = call(train_cli.main, base_args(run, "--dataset", str(folder), "--img-size", "32", "--steps", "1"))
    err = capsys.readouterr().err
    assert rc == 0, err
    assert err.count("12 grayscale and 12 colour images: all read as RGB") == 1
    assert err.count("reached again through a symlink") == 1
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "1 of 25 image files could not be read" in warnings[0]
    assert (run / run_layout.SKIPPED_IMAGES).read_text().startswith("彩色/broken.png\t")
    info = json.loads((run / run_layout.RUN_INFO).read_text())
    assert info["skipped_images"]["count"] == 1 and info["image_size"] == [3, 32, 32]
    assert info["split"]["train"] + info["split"]["test"] == 24


# ---------------------------------------------------------------- checkpoints


def _rewrite(path: Path, change) -> None:
    obj = torch.load(path, weights_only=True)
    change(obj)
    checkpoint.atomic_torch_save(obj, path)


def _meta_without(key):
    def change(obj):
        meta = json.loads(obj["meta"])
        del meta[key]
        obj["meta"] = json.dumps(meta)
    return change


def _training_without(*keys):
    def change(obj):
        t = obj["training"]
        for k in keys[:-1]:
            t = t[k]
        del t[keys[-1]]
    return change


def _set(fn):
    def change(obj):
        fn(obj)
    return change


def _other_model_optimizer(obj):
    from jointvae_fast.model import JointVAE
    from jointvae_fast.training.step import make_optimizer

    m = JointVAE((1, 32, 32), 5, [4])
    opt = make_optimizer(m, 1e-3)
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    obj["training"]["optimizer"] = opt.state_dict()


CKPT_MUTATIONS = {
    "missing-optimizer": (_training_without("optimizer"), "optimizer"),
    "missing-rng": (_training_without("rng"), "rng"),
    "missing-rng-ranks": (_training_without("rng", "ranks"), "ranks"),
    "missing-step": (_training_without("step"), "step"),
    "missing-training": (_set(lambda o: o.pop("training")), "training"),
    "missing-meta-img-size": (_meta_without("img_size"), "img_size"),
    "missing-meta-cont": (_meta_without("cont"), "cont"),
    "missing-meta-disc": (_meta_without("disc"), "disc"),
    "missing-meta-temperature": (_meta_without("temperature"), "temperature"),
    "meta-not-json": (_set(lambda o: o.__setitem__("meta", "{not json")), "metadata"),
    "meta-bad-value": (_set(lambda o: o.__setitem__("meta", json.dumps({**json.loads(o["meta"]), "cont": "two"}))), "cont"),
    "missing-model": (_set(lambda o: o.pop("model")), "model"),
    "missing-weight": (_set(lambda o: o["model"].pop("img_to_features.0.weight")), "img_to_features.0.weight"),
    "wrong-format": (_set(lambda o: o.__setitem__("format", "other/9")), "not a jointvae_fast checkpoint"),
    "rng-wrong-type": (_set(lambda o: o["training"]["rng"].__setitem__("cpu", torch.zeros(3))), "rng"),
    "optimizer-of-other-model": (_other_model_optimizer, "optimizer"),
    "step-not-int": (_set(lambda o: o["training"].__setitem__("step", "two")), "step"),
}


def _write_foreign(path: Path, kind: str) -> str:
    if kind == "foreign-torch-file":
        torch.save({"weights": torch.zeros(3)}, path)
        return "not a jointvae_fast checkpoint"
    if kind == "torch-list":
        torch.save([1, 2, 3], path)
        return "not a jointvae_fast checkpoint"
    if kind == "not-zip":
        path.write_text("hello, I am text\n")
        return "not a readable checkpoint"
    if kind == "empty":
        path.write_bytes(b"")
        return "not a readable checkpoint"
    if kind == "pickle-with-code":
        torch.save({"format": checkpoint.FORMAT, "obj": SimpleNamespace(a=1)}, path)
        return "not a readable checkpoint"
    raise AssertionError(kind)


FOREIGN = ["foreign-torch-file", "torch-list", "not-zip", "empty", "pickle-with-code"]


def checkpoint_cases():
    cases = [pytest.param("truncate", i, id=f"checkpoint-truncated-{i}") for i in range(6)]
    cases += [pytest.param("flip", i, id=f"checkpoint-bitflip-{i}") for i in range(8)]
    cases += [pytest.param("mutate", k, id=f"checkpoint-{k}") for k in CKPT_MUTATIONS]
    cases += [pytest.param("foreign", k, id=f"checkpoint-{k}") for k in FOREIGN]
    return cases


def damage(path: Path, kind, which) -> str:
    """Damage the checkpoint at `path`; returns a fragment the error must contain."""
    raw = path.read_bytes()
    if kind == "truncate":
        cut = [0, 1, len(raw) - 1] + _offsets(len(raw), 3, 2, "ckpt-truncate")
        path.write_bytes(raw[: cut[which]])
        return path.name
    if kind == "flip":
        off = _offsets(len(raw), 8, 0, "ckpt-flip")[which]
        b = bytearray(raw)
        b[off] ^= 1 << random.Random(off).randrange(8)
        path.write_bytes(bytes(b))
        return path.name
    if kind == "mutate":
        change, frag = CKPT_MUTATIONS[which]
        _rewrite(path, change)
        return frag
    return _write_foreign(path, which)


@pytest.mark.parametrize("kind,which", checkpoint_cases())
def test_checkpoint_resume(kind, which, one_checkpoint_run, ws, capsys):
    run = copy_run(one_checkpoint_run, ws)
    path = run_layout.checkpoint_path(run, 2)
    frag = damage(path, kind, which)
    argv = ["--resume", str(run), "--steps", "4", "--no-progress"]
    with _no_warning_noise():
        check_case(train_cli.main, argv, ws, (path.name, frag), capsys, dataset=TINY)


TRAINING_ONLY = {"missing-optimizer", "missing-rng", "missing-rng-ranks", "missing-step", "missing-training",
                 "rng-wrong-type", "optimizer-of-other-model", "step-not-int"}  # evaluation needs no training state


@pytest.mark.parametrize("kind,which", [c for c in checkpoint_cases() if c.values[1] not in TRAINING_ONLY])
def test_checkpoint_evaluate(kind, which, one_checkpoint_run, ws, capsys):
    run = copy_run(one_checkpoint_run, ws)
    path = run_layout.checkpoint_path(run, 2)
    damage(path, kind, which)
    check_case(evaluate.main, [str(path), "--no-progress", "--out", str(ws / "report")], ws, path.name, capsys,
               dataset=TINY)
    check_case(evaluate.main, [str(run), "--no-progress"], ws, path.name, capsys, dataset=TINY)


class _no_warning_noise:
    """Skipped-checkpoint warnings are expected on the resume path; keep them out of the assertions."""

    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


# ---------------------------------------------------------------- run directories in odd states


def run_dir_cases():
    return [pytest.param(k, id=f"run-dir-{k}") for k in (
        "out-is-a-file", "out-exists-nonempty", "out-under-a-file", "resume-and-other-out", "resume-missing",
        "resume-no-config", "resume-config-not-json", "resume-config-a-list", "resume-config-unknown-key",
        "resume-no-checkpoints", "resume-checkpoints-is-a-file", "resume-checkpoint-is-a-dir",
        "resume-shape-mismatch", "resume-dataset-image-size-mismatch")]


@pytest.mark.parametrize("kind", run_dir_cases())
def test_run_dir(kind, one_checkpoint_run, ws, capsys):
    run = copy_run(one_checkpoint_run, ws)
    ds = TINY
    argv = ["--resume", str(run), "--steps", "4", "--no-progress"]
    frag = str(run.name)
    if kind == "out-is-a-file":
        (ws / "f").write_text("x")
        argv, frag = base_args(ws / "f"), "not a directory"
    elif kind == "out-exists-nonempty":
        argv, frag = base_args(run), "already exists"
    elif kind == "out-under-a-file":
        (ws / "f").write_text("x")
        argv, frag = base_args(ws / "f" / "run"), "f"
    elif kind == "resume-and-other-out":
        argv, frag = argv + ["--out", str(ws / "other")], "--out"
    elif kind == "resume-missing":
        argv, frag = ["--resume", str(ws / "nope")], "nope"
    elif kind == "resume-no-config":
        (run / "config.json").unlink()
        frag = "config.json"
    elif kind == "resume-config-not-json":
        (run / "config.json").write_text("{broken")
        frag = "config.json"
    elif kind == "resume-config-a-list":
        (run / "config.json").write_text("[]")
        frag = "config.json"
    elif kind == "resume-config-unknown-key":
        cfg = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**cfg, "gama": 1}))
        frag = "gama"
    elif kind == "resume-no-checkpoints":
        shutil.rmtree(run / "checkpoints")
        frag = "no checkpoint"
    elif kind == "resume-checkpoints-is-a-file":
        shutil.rmtree(run / "checkpoints")
        (run / "checkpoints").write_text("x")
        frag = "checkpoint"
    elif kind == "resume-checkpoint-is-a-dir":
        run_layout.checkpoint_path(run, 2).unlink()
        run_layout.checkpoint_path(run, 2).mkdir()
        frag = "step-00000002.pt"
    elif kind == "resume-shape-mismatch":
        argv, frag = argv + ["--cont", "5"], "cont=5"
    elif kind == "resume-dataset-image-size-mismatch":
        ds, frag = tiny_dataset(size=64), "img_size"
    with _no_warning_noise():
        check_case(train_cli.main, argv, ws, frag, capsys, dataset=ds)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores folder permissions")
def test_run_dir_read_only_parent(ws, capsys):
    ro = ws / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        check_case(train_cli.main, base_args(ro / "run"), ws, "ro", capsys, dataset=TINY)
    finally:
        ro.chmod(0o755)


# ---------------------------------------------------------------- evaluate flags


EVAL_FLAGS = [
    ("source-missing", ["{ws}/nope"], "does not exist"),
    ("source-empty-dir", ["{ws}/empty"], "neither a run directory"),
    ("source-text-file", ["{ws}/notes.txt"], "notes.txt"),
    ("limit-1", ["{run}", "--limit", "1"], "--limit"),
    ("limit-negative", ["{run}", "--limit", "-5"], "--limit"),
    ("inactive-kl-nan", ["{run}", "--inactive-kl", "nan"], "--inactive-kl"),
    ("inactive-kl-negative", ["{run}", "--inactive-kl", "-1"], "--inactive-kl"),
    ("edit-syntax", ["{run}", "--edit", "q=1"], "edit"),
    ("edit-not-finite", ["{run}", "--edit", "z0=nan"], "finite"),
    ("edit-unit-out-of-range", ["{run}", "--edit", "z99=1"], "z99"),
    ("edit-class-out-of-range", ["{run}", "--edit", "c0=7"], "c0"),
    ("edit-var-out-of-range", ["{run}", "--edit", "c4=0"], "c4"),
    ("seed-negative", ["{run}", "--seed", "-1"], "--seed"),
    ("argparse-limit-not-int", ["{run}", "--limit", "many"], "--limit"),
    ("argparse-unknown-flag", ["{run}", "--bogus"], "--bogus"),
    ("out-is-a-file", ["{run}", "--out", "{ws}/notes.txt"], "notes.txt"),
    ("unknown-dataset", ["{run}", "--dataset", "imagenet"], "imagenet"),
]
EVAL_DEVICES = [("cuda-7", "cuda:7"), ("junk", "gpu0"), ("meta", "meta")]
if not torch.cuda.is_available():
    EVAL_DEVICES.append(("cuda-without-gpu", "cuda"))


def _eval_argv(template, ws, run):
    return [a.format(ws=ws, run=run) for a in template] + ["--no-progress"]


@pytest.mark.parametrize("template,fragment", [pytest.param(t, f, id=f"eval-flag-{i}") for i, t, f in EVAL_FLAGS]
                         + [pytest.param(["{run}", "--device", d], "device", id=f"device-eval-{i}")
                            for i, d in EVAL_DEVICES])
def test_eval_flag(template, fragment, one_checkpoint_run, ws, capsys):
    run = copy_run(one_checkpoint_run, ws)
    (ws / "empty").mkdir()
    (ws / "notes.txt").write_text("hello")
    kw = {} if "--dataset" in template else {"dataset": TINY}
    check_case(evaluate.main, _eval_argv(template, ws, run), ws, fragment, capsys, **kw)


@pytest.mark.parametrize("ds,fragment", [
    pytest.param(tiny_dataset(size=64), "size", id="eval-data-image-size"),
    pytest.param(SimpleNamespace(image_size=(1, 32, 32)), "test split", id="eval-data-no-test-split"),
    pytest.param(SimpleNamespace(test=TINY.test, test_labels=np.zeros(3)), "test_labels", id="eval-data-label-count"),
])
def test_eval_dataset_mismatch(ds, fragment, one_checkpoint_run, ws, capsys):
    run = copy_run(one_checkpoint_run, ws)
    check_case(evaluate.main, [str(run), "--no-progress"], ws, fragment, capsys, dataset=ds)


# ---------------------------------------------------------------- the Python API


def api_cases():
    def ckpt_missing(ws):
        checkpoint.load_model(ws / "nope.pt")

    def ckpt_text(ws):
        checkpoint.load_model(ws / "t.pt")

    def ckpt_folder(ws):
        checkpoint.load_model(ws)

    def dataset_unknown(ws):
        load_dataset("imagenet")

    def dataset_missing(ws):
        load_dataset("mnist", data_dir=ws / "nothing-here")

    def config_bad(ws):
        presets.resolve_config(("test", {"dataset": "mnist", "lr": float("nan")}))

    def config_too_many_vars(ws):
        presets.resolve_config(("test", {"dataset": "mnist", "disc": [2] * 65}))

    def config_file_garbage(ws):
        presets.read_config_file(ws / "t.pt")

    def model_bad_size(ws):
        from jointvae_fast.model import JointVAE

        JointVAE((1, 28, 28), 2, [3])

    def model_too_many_vars(ws):
        from jointvae_fast.model import JointVAE

        JointVAE((1, 32, 32), 2, [2] * 65)

    def eval_source_missing(ws):
        load_source(ws / "nope")

    def eval_source_text(ws):
        load_source(ws / "t.pt")

    return [pytest.param(f, id=f"api-{f.__name__.replace('_', '-')}") for f in (
        ckpt_missing, ckpt_text, ckpt_folder, dataset_unknown, dataset_missing, config_bad, config_too_many_vars,
        config_file_garbage, model_bad_size, model_too_many_vars, eval_source_missing, eval_source_text)]


@pytest.mark.parametrize("fn", api_cases())
def test_api(fn, ws):
    (ws / "t.pt").write_bytes(b"\x00\xffnot a checkpoint")
    before = tree_state(ws)
    with pytest.raises(UserInputError) as e:
        fn(ws)
    assert "\n" not in str(e.value).strip() or isinstance(e.value, FileNotFoundError)
    assert tree_state(ws) == before


# ---------------------------------------------------------------- hypothesis over config values

_INT_KEYS = {"batch_size": 1, "cont_iters": 1, "disc_iters": 1, "log_every": 1, "save_every": 1, "keep": 1,
             "steps": 1, "epochs": 1, "limit": 1, "cont": 0}
_FLOAT_KEYS = {"lr": "pos", "temperature": "pos", "cont_min": "nonneg", "cont_max": "nonneg", "cont_gamma": "nonneg",
               "disc_max": "nonneg", "disc_gamma": "nonneg", "recon_weight": "nonneg"}
_OPTIONAL = {"steps", "epochs", "limit"}


def _valid_int(key, v):
    if v is None:
        return key in _OPTIONAL
    return isinstance(v, int) and not isinstance(v, bool) and v >= _INT_KEYS[key]


def _valid_float(key, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return math.isfinite(v) and (v > 0 if _FLOAT_KEYS[key] == "pos" else v >= 0)


_any_value = st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.integers(-5, 100),
                       st.floats(allow_nan=True, allow_infinity=True, width=32), st.lists(st.integers(0, 4), max_size=3))
_config = st.fixed_dictionaries({}, optional={
    **{k: st.one_of(st.integers(-3, 50), _any_value) for k in _INT_KEYS},
    **{k: st.one_of(st.floats(-1, 10), _any_value) for k in _FLOAT_KEYS},
    "disc": st.one_of(st.lists(st.integers(-1, 12), max_size=4), st.lists(st.just(2), min_size=60, max_size=70),
                      _any_value),
})


def _oracle(cfg) -> bool:
    """Valid by the rules of the README (restated here independently of presets.py)."""
    for k, v in cfg.items():
        if k in _INT_KEYS and not _valid_int(k, v):
            return False
        if k in _FLOAT_KEYS and not _valid_float(k, v):
            return False
        if k == "disc":
            if not (isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 2 for x in v)
                    and len(v) <= 64):
                return False
    merged = {**presets.PRESETS["mnist"], **cfg}
    if merged["cont"] == 0 and not merged["disc"]:
        return False
    if cfg.get("steps", 1) is None and cfg.get("epochs", 1) is None:
        return False
    return True


@given(_config)
def test_config_values_hypothesis(cfg):
    layer = {"dataset": "mnist", **cfg}
    if _oracle(cfg):
        resolved = presets.resolve_config(("hypothesis", layer))
        assert all(resolved.to_dict()[k] == v for k, v in cfg.items())
    else:
        with pytest.raises(UserInputError) as e:
            presets.resolve_config(("hypothesis", layer))
        assert "\n" not in str(e.value)


# ---------------------------------------------------------------- real processes


def _run(args, cwd, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JOINTVAE_CACHE": str(cwd / "cache"), "JOINTVAE_DOWNLOAD": "0",
           "JOINTVAE_FAST_BACKEND": "cpu", "OMP_NUM_THREADS": "1"}  # the CPU build loads fastest
    env.pop("JOINTVAE_DATA", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


SUBPROCESS_CASES = [
    ("train-disc-65", ["-m", "jointvae_fast.train", "--dataset", "mnist", "--disc", *["2"] * 65, "--out", "r"], "64"),
    ("train-device", ["-m", "jointvae_fast.train", "--dataset", "mnist", "--device", "cuda:7", "--out", "r"], "device"),
    ("train-argparse", ["-m", "jointvae_fast.train", "--dataset", "mnist", "--steps", "x"], "--steps"),
    ("eval-missing", ["-m", "jointvae_fast.evaluate", "nope"], "does not exist"),
]


@pytest.mark.parametrize("args,fragment", [pytest.param(a, f, id=f"subprocess-{i}") for i, a, f in SUBPROCESS_CASES])
def test_subprocess(args, fragment, tmp_path):
    proc = _run(args, tmp_path)
    assert_one_line_error(proc.returncode, proc.stderr, fragment)
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- internal bugs keep their traceback


def _boom(exc):
    def raise_(*a, **k):
        raise exc
    return raise_


@pytest.mark.parametrize("target,exc", [
    pytest.param("jointvae_fast.training.loop.make_objective", ValueError("boom in the loop"), id="bug-train-valueerror"),
    pytest.param("jointvae_fast.progress.Progress.update", KeyError("boom-key"), id="bug-train-keyerror"),
    pytest.param("jointvae_fast.training.cli.write_first_look", TypeError("boom in images"), id="bug-train-images"),
])
def test_bug_in_training_is_a_traceback(target, exc, ws, monkeypatch, capsys):
    monkeypatch.setattr(target, _boom(exc))
    args = [a for a in base_args(ws / "run") if a not in ("--no-images", "--no-progress")]
    rc = call(train_cli.main, args, dataset=TINY)
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "Traceback" in err and str(exc.args[0]) in err and BUG_LINE in err
    assert "error: " not in err


def test_bug_in_evaluation_is_a_traceback(one_checkpoint_run, ws, monkeypatch, capsys):
    monkeypatch.setattr("jointvae_fast.analysis.report.kl_per_latent", _boom(ValueError("boom in kl")))
    rc = call(evaluate.main, [str(one_checkpoint_run), "--no-progress", "--out", str(ws / "rep")], dataset=TINY)
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" in err and "boom in kl" in err and BUG_LINE in err
    assert "error: " not in err


def test_bug_in_a_subprocess_exits_1_with_traceback(tmp_path):
    code = ("import sys, jointvae_fast.training.loop as L\n"
            "def boom(*a, **k): raise ValueError('deep bug')\n"
            "L.make_objective = boom\n"
            "from jointvae_fast.train import main\n"
            "from types import SimpleNamespace\nimport torch\n"
            "ds = SimpleNamespace(train=torch.zeros(16, 1, 32, 32, dtype=torch.uint8), image_size=(1, 32, 32))\n"
            "sys.exit(main(['--dataset', 'mnist', '--cont', '2', '--disc', '3', '--batch-size', '8', '--steps', '1',"
            " '--no-images', '--no-progress', '--device', 'cpu', '--out', 'r'], dataset=ds))\n")
    proc = _run(["-c", code], tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" in proc.stderr and "deep bug" in proc.stderr and BUG_LINE in proc.stderr
    assert "error: " not in proc.stderr
