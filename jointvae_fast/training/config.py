"""The training presets and how a run's configuration is resolved.

| preset           | image   | cont | disc | lr   | C_z max, iters, gamma | C_c max, iters, gamma | epochs |
| mnist            | 1x32x32 | 10   | [10] | 5e-4 | 5, 25000, 30          | 5, 25000, 30          | 100    |
| fashion-mnist    | 1x32x32 | 10   | [10] | 5e-4 | 5, 50000, 100         | 10, 50000, 100        | 100    |
| chairs           | 1x64x64 | 32   | [10] | 1e-4 | 30, 100000, 300       | 5, 100000, 300        | 100    |
| celeba           | 3x64x64 | 32   | [10] | 5e-4 | 50, 100000, 100       | 10, 100000, 100       | 100    |
| dsprites         | 1x64x64 | 6    | [3]  | 5e-4 | 40, 300000, 150       | 1.1, 300000, 150      | 30     |
| synthetic-chairs | 1x64x64 | 32   | [7]  | 5e-4 | 30, 100000, 300       | 5, 10000, 300         | 100    |
| images           | any     | 32   | [10] | 5e-4 | 50, 100000, 100       | 10, 100000, 100       | 100    |

All use Adam, batch 64, temperature 0.67 and capacities starting at 0. The first five are the paper's
(Appendix C; dSprites: its published code). synthetic-chairs is this project's choice for the built-in
procedural chairs, on which the paper's chairs preset collapses the discrete code (issue 13): one variable
of the seven chair types, the discrete capacity first (log 7 reached at step ~3,900), lr 5e-4 and
disc_capacity_on = "information" (lambda_agg = 300 / 10); see docs/experiments/chairs-2026-11-29.md.
`--preset chairs` gives the paper's values on them.
images is the preset of a path dataset (your own folder or array file, `--dataset PATH`): the paper's CelebA
capacities (its other natural-image preset) with a [10] discrete variable under disc_capacity_on =
"information" (the variant that kept the code alive on the built-in chairs), recon_weight 1; a choice,
not tuned on any data set. Every value can be overridden (e.g. --cont 10 --disc 10 10).

celeba has recon_weight = 1/3: the paper's published code computes
the reconstruction term of RGB images as the per-image sum divided by the
channel count (a side effect of how it reshapes the images), so its gammas
were tuned against a reconstruction three times smaller. The preset
reproduces that so the paper's gammas carry over.

Resolution order (later wins): DEFAULTS < preset < the resumed run's
config.json < --config FILE (JSON, or TOML read with tomllib) < command-line
flags. Unknown keys and values of the wrong type raise ConfigError naming the
key, the value and where it came from.
"""
from __future__ import annotations

import argparse
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import OPTION_KEYS, looks_like_path
from ..data.own.options import FITS as OWN_FITS, SIZES as OWN_SIZES, parse_background
from ..errors import UserInputError
from ..ops.limits import check_latent_limits


def _preset(cont, disc, lr, cz, cc, epochs, **extra):
    return {
        "cont": cont, "disc": disc, "lr": lr, "epochs": epochs, "batch_size": 64, "temperature": 0.67,
        "cont_min": 0.0, "cont_max": cz[0], "cont_iters": cz[1], "cont_gamma": cz[2],
        "disc_min": 0.0, "disc_max": cc[0], "disc_iters": cc[1], "disc_gamma": cc[2],
        "recon_weight": 1.0, **extra,
    }


PRESETS: dict[str, dict[str, Any]] = {
    "mnist": _preset(10, [10], 5e-4, (5.0, 25000, 30.0), (5.0, 25000, 30.0), 100),
    "fashion-mnist": _preset(10, [10], 5e-4, (5.0, 50000, 100.0), (10.0, 50000, 100.0), 100),
    "chairs": _preset(32, [10], 1e-4, (30.0, 100000, 300.0), (5.0, 100000, 300.0), 100),
    "celeba": _preset(32, [10], 5e-4, (50.0, 100000, 100.0), (10.0, 100000, 100.0), 100, recon_weight=1.0 / 3.0),
    "dsprites": _preset(6, [3], 5e-4, (40.0, 300000, 150.0), (1.1, 300000, 150.0), 30),
    "synthetic-chairs": _preset(32, [7], 5e-4, (30.0, 100000, 300.0), (5.0, 10000, 300.0), 100,
                                disc_capacity_on="information"),
    "images": _preset(32, [10], 5e-4, (50.0, 100000, 100.0), (10.0, 100000, 100.0), 100,
                      disc_capacity_on="information"),
}
PATH_PRESET = "images"  # the preset of a --dataset PATH

# dataset name -> its preset
DATASET_PRESETS: dict[str, str] = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "chairs": "chairs",
    "synthetic-chairs": "synthetic-chairs",
    "celeba": "celeba",
    "dsprites": "dsprites",
}


@dataclass(frozen=True)
class Setting:
    """One configuration key: its type, default and help; the --help text and the flag derive from it.

    kind: "int", "float", "str", "bool" or "ints" (list of ints); a "?" suffix allows None.
    note: what --help says the default is, when that is not the value itself (e.g. "the preset's").
    """

    kind: str
    default: Any
    help: str
    group: str
    note: str | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    required: bool = False


_RUN, _LENGTH, _MODEL, _LOG = None, "length and optimisation", "model and objective", "logging and checkpoints"
_OWN = "your own images (--dataset PATH)"
OWN_KEYS = OPTION_KEYS  # the settings that go to data.own.load_own (the same names)
_PRESET = "the preset's"

SCHEMA: dict[str, Setting] = {
    "dataset": Setting("str", None, f"dataset to train on: {', '.join(DATASET_PRESETS)}, or a path: a folder of "
                       "images (searched recursively) or an .npy, .npz, .h5 file (a built-in name means the built-in "
                       "set; write ./NAME for a folder of that name)", _RUN, metavar="NAME|PATH", required=True),
    "preset": Setting("str?", None, "preset name", _RUN, "the dataset's own", choices=tuple(PRESETS)),
    "data_dir": Setting("str?", None, "folder holding the dataset files (see jointvae_fast.data)", _RUN,
                        "$JOINTVAE_DATA, then a per-user cache folder"),
    "out": Setting("str?", None, "run directory", _RUN, "runs/<dataset>-<UTC time>"),
    "img_size": Setting("int?", None, "a path dataset's image size: 32, 64, 128 or 256 (the paper's network, one "
                        "more stride-2 block per doubling above 64)", _OWN, "64"),
    "fit": Setting("str?", None, "how a path dataset's images become square: crop (shorter side to the size, centre "
                   "crop), pad (longer side to the size, background around) or stretch", _OWN, "crop",
                   choices=OWN_FITS),
    "channels": Setting("int?", None, "a path dataset's channels: 1 (grayscale) or 3 (RGB)", _OWN,
                        "1 when every image is grayscale, else 3"),
    "background": Setting("str?", None, "colour under transparent pixels and around --fit pad: white, black, gray, "
                          "#rrggbb or r,g,b", _OWN, "white"),
    "labels": Setting("str?", None, "CSV of labels for evaluation: a file column (an index column for an array "
                      "file) and one column per factor", _OWN, "the sub-folder names, when every image is in one",
                      metavar="FILE.csv"),
    "data_key": Setting("str?", None, "the array inside an .npz or HDF5 file", _OWN,
                        "its only array, else images, imgs, x, data or arr_0"),
    "test_fraction": Setting("float?", None, "share of a path dataset held out for evaluation, by a hash of each "
                             "file's relative path (adding files moves no other)", _OWN, "0.1"),
    "strict_images": Setting("bool", False, "stop at an unreadable image instead of skipping it (more than a tenth "
                             "unreadable always stops)", _OWN, "off"),
    "epochs": Setting("int?", 100, "number of passes over the training split", _LENGTH, _PRESET),
    "steps": Setting("int?", None, "number of optimizer steps; overrides epochs when given", _LENGTH,
                     "unset: epochs decide"),
    "batch_size": Setting("int", 64, "global batch size (split evenly across DDP ranks)", _LENGTH, "64"),
    "lr": Setting("float", 5e-4, "Adam learning rate", _LENGTH, _PRESET),
    "seed": Setting("int", 0, "seed of model init, batch order and sampling noise", _LENGTH),
    "device": Setting("str?", None, "torch device", _LENGTH, "cuda if available, else cpu"),
    "threads": Setting("int?", None, "CPU threads for torch's intra-op parallelism", _LENGTH,
                       "torch's default, one per core"),
    "precision": Setting("str", "fp32", "arithmetic of the convolutions and linear layers: fp32, or bf16 "
                         "autocast (weights, Adam state and loss stay float32)", _LENGTH, choices=("fp32", "bf16")),
    "limit": Setting("int?", None, "train on a seeded random subset of this many training images", _LENGTH,
                     "all images", metavar="N"),
    "cont": Setting("int", 10, "number of continuous latent units", _MODEL, _PRESET),
    "disc": Setting("ints", [10], "class count of each discrete latent variable", _MODEL,
                    _PRESET + "; --disc with no value: none", metavar="K"),
    "temperature": Setting("float", 0.67, "Gumbel-Softmax temperature tau", _MODEL),
    "temperature_final": Setting("float?", None, "anneal tau exponentially down to this value (off when unset)",
                                 _MODEL, "unset, tau fixed as in the paper"),
    "temperature_anneal_steps": Setting("int?", None, "steps over which tau reaches temperature_final", _MODEL,
                                        "unset"),
    "cont_min": Setting("float", 0.0, "C_z at step 0", _MODEL, "0"),
    "cont_max": Setting("float", 5.0, "C_z at the end of its schedule", _MODEL, _PRESET),
    "cont_iters": Setting("int", 25000, "steps for C_z to go from cont_min to cont_max", _MODEL, _PRESET),
    "cont_gamma": Setting("float", 30.0, "gamma_z, the weight of |KL_z - C_z|", _MODEL, _PRESET),
    "disc_min": Setting("float", 0.0, "C_c at step 0", _MODEL, "0"),
    "disc_max": Setting("float", 5.0, "C_c at the end of its schedule (also capped at sum log K_i)", _MODEL,
                        _PRESET),
    "disc_iters": Setting("int", 25000, "steps for C_c to go from disc_min to disc_max", _MODEL, _PRESET),
    "disc_gamma": Setting("float", 30.0, "gamma_c, the weight of |KL_c - C_c|", _MODEL, _PRESET),
    "disc_capacity_on": Setting("str", "kl", "what C_c constrains: kl (Eq. 7, the batch-mean KL) or information "
                                "(the batch information I = KL - A, plus disc_aggregate_weight * A, "
                                "A = KL(mean posterior || uniform); issue 13)", _MODEL,
                                "kl; the synthetic-chairs preset: information", choices=("kl", "information")),
    "disc_aggregate_weight": Setting("float?", None, "lambda_agg, the weight of A in the information mode (the "
                                     "default is small because lambda_agg = disc_gamma held the code at the uniform "
                                     "posterior on some seeds)", _MODEL, "disc_gamma / 10"),
    "cont_capacity_on": Setting("str", "kl", "what C_z constrains: kl (Eq. 7) or information (the batch "
                                "information I = KL - A, plus cont_aggregate_weight * A, A = KL(moment-matched "
                                "mean posterior || N(0, 1)) per unit)", _MODEL, "kl", choices=("kl", "information")),
    "cont_aggregate_weight": Setting("float?", None, "lambda_z, the weight of A in the continuous information mode",
                                     _MODEL, "cont_gamma / 10"),
    "recon_weight": Setting("float", 1.0, "weight of the reconstruction term (1/3 for celeba, see presets)", _MODEL,
                            "1; celeba 1/3"),
    "log_every": Setting("int", 100, "steps between log lines (the only host sync of the loop)", _LOG),
    "save_every": Setting("int", 2000, "steps between checkpoints (one is also written at the end)", _LOG),
    "keep": Setting("int", 3, "number of most recent checkpoints kept", _LOG),
    "keep_every": Setting("int?", None, "also write and keep a checkpoint at every multiple of N steps (for "
                          "evaluate --sweep), besides the save_every ones", _LOG, "unset",
                          metavar="N"),
    "images": Setting("bool", True, "write sample and traversal grids at the end", _LOG, "on"),
    "tensorboard": Setting("bool", False, "also write the log's scalars and the sample and traversal grids as "
                           "TensorBoard events in RUN_DIR/tensorboard (needs the tensorboard package)", _LOG, "off"),
    "tensorboard_images_every": Setting("int", 2000, "steps between the sample and traversal grids in TensorBoard "
                                        "(also written at the end)", _LOG, metavar="N"),
}

DEFAULTS: dict[str, Any] = {k: s.default for k, s in SCHEMA.items() if not s.required}

_FLAG_TYPES = {"int": int, "float": float, "str": str, "ints": int}


def add_setting_flags(parser: argparse.ArgumentParser) -> dict[str | None, Any]:
    """One --flag per SCHEMA key (dashes for underscores), in SCHEMA's order; returns the --help groups by name."""
    groups: dict[str | None, Any] = {None: parser}
    for key, s in SCHEMA.items():
        if s.group not in groups:
            groups[s.group] = parser.add_argument_group(s.group)
        group = groups[s.group]
        flag = "--" + key.replace("_", "-")
        text = f"{s.help} (required unless --resume)" if s.required else \
            f"{s.help} (default: {s.note if s.note is not None else s.default})"
        kw: dict[str, Any] = {"help": text}
        if s.kind == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = _FLAG_TYPES[s.kind.rstrip("?")]
        if s.kind == "ints":
            kw["nargs"] = "*"
        for name in ("choices", "metavar"):
            if getattr(s, name) is not None:
                kw[name] = list(s.choices) if name == "choices" else s.metavar
        group.add_argument(flag, **kw)
    return groups


MAX_THREADS = 4096


class ConfigError(UserInputError):
    """A configuration that cannot be used: unknown key, wrong type, bad value."""


def _check_type(key: str, value: Any, source: str) -> Any:
    """`value` converted to the schema's type for `key`, or ConfigError."""
    if key not in SCHEMA:
        known = ", ".join(sorted(SCHEMA))
        raise ConfigError(f"unknown config key {key!r} in {source} (known keys: {known})")
    kind = SCHEMA[key].kind
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key {key!r} in {source} must not be null")
    ok = True
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            try:
                value = float(value)
            except OverflowError:
                raise ConfigError(f"config key {key!r} in {source} must be a finite number, got {value!r}") from None
    elif kind == "str":
        ok = isinstance(value, str)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "ints":
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        if ok:
            value = list(value)
    if not ok:
        want = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
                "ints": "a list of integers"}[kind]
        raise ConfigError(f"config key {key!r} in {source} must be {want}{' or null' if optional else ''}, "
                          f"got {value!r} ({type(value).__name__})")
    return value


def check_config_layer(layer: dict[str, Any], source: str) -> dict[str, Any]:
    """Type-check one layer of settings (a file, the flags, a saved config)."""
    if not isinstance(layer, dict):
        raise ConfigError(f"{source} must hold a table/object of settings, got {type(layer).__name__}")
    return {k: _check_type(k, v, source) for k, v in layer.items()}


def read_config_file(path) -> dict[str, Any]:
    """Settings from a JSON (.json) or TOML (.toml) file; keys as in SCHEMA (dashes allowed for underscores)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" if not path.exists() else f"config file {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {e.start}): give a JSON or TOML file") from None
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror}") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid {'TOML' if path.suffix.lower() == '.toml' else 'JSON'}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold an object of settings, got {type(data).__name__}")
    return check_config_layer({k.replace("-", "_"): v for k, v in data.items()}, f"config file {path}")


def _validate_values(cfg: dict[str, Any]) -> None:
    def need(cond, key, what):
        if not cond:
            raise ConfigError(f"{key} must be {what}, got {cfg[key]!r}")

    _validate_own(cfg)
    if cfg["preset"] not in PRESETS:
        raise ConfigError(f"unknown preset {cfg['preset']!r}; choose one of {', '.join(PRESETS)}")
    for key in ("batch_size", "cont_iters", "disc_iters", "log_every", "save_every", "keep",
                "tensorboard_images_every"):
        need(cfg[key] >= 1, key, "an integer >= 1")
    for key in ("epochs", "steps", "limit", "temperature_anneal_steps", "keep_every"):
        need(cfg[key] is None or cfg[key] >= 1, key, "an integer >= 1 (or unset)")
    need(cfg["threads"] is None or 1 <= cfg["threads"] <= MAX_THREADS, "threads", f"an integer in 1..{MAX_THREADS} (or unset)")
    need(0 <= cfg["seed"] < 2**63, "seed", "an integer in 0..2**63-1")
    need(cfg["precision"] in SCHEMA["precision"].choices, "precision", " or ".join(SCHEMA["precision"].choices))
    if cfg["steps"] is None and cfg["epochs"] is None:
        raise ConfigError("give either epochs or steps")
    need(cfg["cont"] >= 0, "cont", "an integer >= 0")
    need(all(k >= 2 for k in cfg["disc"]), "disc", "a list of class counts >= 2")
    if cfg["cont"] == 0 and not cfg["disc"]:
        raise ConfigError("the latent is empty: give cont > 0 or at least one discrete variable (disc)")
    check_latent_limits(cfg["disc"])
    for key in ("lr", "temperature"):
        need(math.isfinite(cfg[key]) and cfg[key] > 0, key, "a finite number > 0")
    for key in ("cont_min", "cont_max", "disc_min", "disc_max", "cont_gamma", "disc_gamma", "recon_weight"):
        need(math.isfinite(cfg[key]) and cfg[key] >= 0, key, "a finite number >= 0")
    for part in ("disc", "cont"):
        need(cfg[f"{part}_capacity_on"] in SCHEMA[f"{part}_capacity_on"].choices, f"{part}_capacity_on",
             "kl or information")
        w = cfg[f"{part}_aggregate_weight"]
        need(w is None or (math.isfinite(w) and w >= 0), f"{part}_aggregate_weight", "a finite number >= 0 (or unset)")
    if (cfg["temperature_final"] is None) != (cfg["temperature_anneal_steps"] is None):
        raise ConfigError("temperature annealing needs both temperature_final and temperature_anneal_steps")
    if cfg["temperature_final"] is not None:
        need(0 < cfg["temperature_final"] <= cfg["temperature"], "temperature_final", "in (0, temperature]")


def is_path_dataset(dataset: str) -> bool:
    """Whether a config's dataset is a path (your own data) rather than a built-in name."""
    return dataset not in DATASET_PRESETS


def _validate_own(cfg: dict[str, Any]) -> None:
    """The own-images settings: in range for a path dataset, unset for a built-in one."""
    if not is_path_dataset(cfg["dataset"]):
        given = [k for k in OWN_KEYS if cfg[k] not in (None, False)]
        if given:
            raise ConfigError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to a path dataset (a "
                              f"folder or array file), not to the built-in {cfg['dataset']!r}")
        return
    if cfg["img_size"] is not None and cfg["img_size"] not in OWN_SIZES:
        raise ConfigError(f"img_size must be one of {', '.join(map(str, OWN_SIZES))}, got {cfg['img_size']!r}")
    if cfg["channels"] is not None and cfg["channels"] not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3 (or unset: detected), got {cfg['channels']!r}")
    if cfg["fit"] is not None and cfg["fit"] not in OWN_FITS:
        raise ConfigError(f"fit must be one of {', '.join(OWN_FITS)}, got {cfg['fit']!r}")
    f = cfg["test_fraction"]
    if f is not None and not (math.isfinite(f) and 0 < f < 1):
        raise ConfigError(f"test_fraction must be a number in (0, 1), got {f!r}")
    if cfg["background"] is not None:
        parse_background(cfg["background"])


def _dataset_value(dataset: str) -> str:
    """A built-in name as it is; a path made absolute (so a resumed or evaluated run finds it from anywhere)."""
    if dataset in DATASET_PRESETS:
        return dataset
    if not looks_like_path(dataset):
        raise ConfigError(f"unknown dataset {dataset!r}: neither one of {', '.join(DATASET_PRESETS)} nor a folder "
                          "of images or an .npy, .npz, .h5 file")
    path = Path(dataset).expanduser()
    if not path.exists():
        raise ConfigError(f"dataset {dataset} does not exist (give a folder of images or an .npy, .npz, .h5 file)")
    return str(path.resolve())


def resolve_config(*layers: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """The full config from (source, settings) layers, lowest priority first, on top of DEFAULTS < preset.

    The preset is the layers' `preset`, else the preset of their `dataset`.
    """
    explicit: dict[str, Any] = {}
    for source, layer in layers:
        explicit.update(check_config_layer(layer, source))
    dataset = explicit.get("dataset")
    if dataset is None:
        raise ConfigError("no dataset given (use --dataset NAME or --dataset PATH)")
    dataset = explicit["dataset"] = _dataset_value(dataset)
    preset = explicit.get("preset") or DATASET_PRESETS.get(dataset, PATH_PRESET)
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = {**DEFAULTS, **PRESETS[preset], **explicit, "preset": preset}
    _validate_values(cfg)
    return cfg


def preset_table() -> str:
    """The presets as text (for --help)."""
    rows = []
    for name, p in PRESETS.items():
        rows.append(
            f"  {name:<16} cont {p['cont']:<3} disc {p['disc']!s:<5} lr {p['lr']:g}  "
            f"C_z {p['cont_max']:g}/{p['cont_iters']}/{p['cont_gamma']:g}  "
            f"C_c {p['disc_max']:g}/{p['disc_iters']}/{p['disc_gamma']:g}  epochs {p['epochs']}"
            + (f"  recon_weight {p['recon_weight']:.4g}" if p["recon_weight"] != 1.0 else "")
            + (f"  disc_capacity_on {p['disc_capacity_on']}" if "disc_capacity_on" in p else "")
        )
    return "\n".join(rows)
