"""A run's configuration: SCHEMA (one Setting per key), and from it DEFAULTS, the flags and RunConfig.

RunConfig is a frozen dataclass generated from SCHEMA (one typed attribute per key, in config.json's
order), so a Setting added to SCHEMA is a flag, a default, a type check and an attribute at once.
A misspelt attribute is an AttributeError where it is read or set; an unknown key in a file is a
ConfigError naming it. `RunConfig.to_dict()` is what config.json and a checkpoint's meta hold;
`RunConfig.from_dict(d, source)` reads it back (every key required; resolve_config fills missing ones).

Resolution order (later wins): DEFAULTS < preset (presets.py) < the resumed run's config.json
< --config FILE (JSON, or TOML read with tomllib) < command-line flags. Unknown keys and values of the
wrong type raise ConfigError naming the key, the value and where it came from. The table of the presets
(`--help`, README.md) is rendered from presets.py by preset_table.
"""
from __future__ import annotations

import argparse
import json
import math
import tomllib
from dataclasses import dataclass, fields, make_dataclass
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ..ops.limits import check_latent_limits
from ..total_correlation import ESTIMATORS as TC_ESTIMATORS, TC_ON
from ..data import OPTION_KEYS, looks_like_path
from ..data.own.options import FITS as OWN_FITS, SIZES as OWN_SIZES, parse_background
from .presets import DATASET_PRESETS, PATH_PRESET, PRESET_IMAGE_SIZES, PRESETS


@dataclass(frozen=True)
class Setting:
    """One configuration key: its type, default and help; the --help text and the flag derive from it.

    kind: "int", "float", "str", "bool" or "ints" (a list of ints; a tuple on RunConfig); a "?" suffix allows None.
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
    "tc_weight": Setting("float", 0.0, "weight of the total correlation of the posterior, KL(q(z, c) || prod_d "
                         "q(z_d) prod_i q(c_i)), estimated on each batch and added to Eq. 7 (Chen et al. 2018; "
                         "docs/total-correlation.md)", _MODEL, "0: off, Eq. 7 exactly"),
    "tc_estimator": Setting("str", "mss", "the batch estimator of the aggregate posterior: mss (minibatch stratified "
                            "sampling) or mws (minibatch weighted sampling, offset by (factors - 1) log N)", _MODEL,
                            choices=TC_ESTIMATORS),
    "tc_on": Setting("str", "joint", "the latents the total correlation covers: joint (z and c) or continuous "
                     "(z alone)", _MODEL, choices=TC_ON),
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
        if ok and not isinstance(value, tuple):
            value = tuple(value)
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


def _validate_values(cfg: RunConfig) -> None:
    """ConfigError for the first value outside its range (types are already checked)."""
    def need(cond, key, what):
        if not cond:
            raise ConfigError(f"{key} must be {what}, got {getattr(cfg, key)!r}")

    _validate_own(cfg)
    if cfg.preset not in PRESETS:
        raise ConfigError(f"unknown preset {cfg.preset!r}; choose one of {', '.join(PRESETS)}")
    for key in ("batch_size", "cont_iters", "disc_iters", "log_every", "save_every", "keep",
                "tensorboard_images_every"):
        need(getattr(cfg, key) >= 1, key, "an integer >= 1")
    for key in ("epochs", "steps", "limit", "temperature_anneal_steps", "keep_every"):
        need(getattr(cfg, key) is None or getattr(cfg, key) >= 1, key, "an integer >= 1 (or unset)")
    need(cfg.threads is None or 1 <= cfg.threads <= MAX_THREADS, "threads", f"an integer in 1..{MAX_THREADS} (or unset)")
    need(0 <= cfg.seed < 2**63, "seed", "an integer in 0..2**63-1")
    need(cfg.precision in SCHEMA["precision"].choices, "precision", " or ".join(SCHEMA["precision"].choices))
    if cfg.steps is None and cfg.epochs is None:
        raise ConfigError("give either epochs or steps")
    need(cfg.cont >= 0, "cont", "an integer >= 0")
    need(all(k >= 2 for k in cfg.disc), "disc", "a list of class counts >= 2")
    if cfg.cont == 0 and not cfg.disc:
        raise ConfigError("the latent is empty: give cont > 0 or at least one discrete variable (disc)")
    check_latent_limits(cfg.disc)
    for key in ("lr", "temperature"):
        need(math.isfinite(getattr(cfg, key)) and getattr(cfg, key) > 0, key, "a finite number > 0")
    for key in ("cont_min", "cont_max", "disc_min", "disc_max", "cont_gamma", "disc_gamma", "recon_weight"):
        need(math.isfinite(getattr(cfg, key)) and getattr(cfg, key) >= 0, key, "a finite number >= 0")
    for part in ("disc", "cont"):
        key = f"{part}_capacity_on"
        need(getattr(cfg, key) in SCHEMA[key].choices, key, "kl or information")
        w = getattr(cfg, f"{part}_aggregate_weight")
        need(w is None or (math.isfinite(w) and w >= 0), f"{part}_aggregate_weight", "a finite number >= 0 (or unset)")
    need(math.isfinite(cfg.tc_weight) and cfg.tc_weight >= 0, "tc_weight", "a finite number >= 0")
    for key in ("tc_estimator", "tc_on"):
        need(getattr(cfg, key) in SCHEMA[key].choices, key, " or ".join(SCHEMA[key].choices))
    if cfg.tc_weight > 0 and cfg.tc_on == "continuous" and cfg.cont == 0:
        raise ConfigError("tc_on continuous needs continuous units (cont > 0): give tc_on joint or cont > 0")
    if (cfg.temperature_final is None) != (cfg.temperature_anneal_steps is None):
        raise ConfigError("temperature annealing needs both temperature_final and temperature_anneal_steps")
    if cfg.temperature_final is not None:
        need(0 < cfg.temperature_final <= cfg.temperature, "temperature_final", "in (0, temperature]")


class _RunConfigBase:
    """The methods of RunConfig (its fields come from SCHEMA)."""

    def __post_init__(self) -> None:
        """Types as SCHEMA says (a TypeError: code built it wrong), then the value rules (ConfigError)."""
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                checked = _check_type(f.name, value, "RunConfig")
            except ConfigError as e:
                raise TypeError(str(e)) from None
            if checked is not value:
                object.__setattr__(self, f.name, checked)
        _validate_values(self)

    def to_dict(self) -> dict[str, Any]:
        """The settings as config.json holds them: every key, in RunConfig's field order, lists for tuples."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> RunConfig:
        """The RunConfig of a full set of settings (to_dict's); ConfigError naming an unknown, missing or
        ill-typed key and `source`, or a value out of range."""
        values = check_config_layer(data, source)
        missing = [key for key in SCHEMA if key not in values]
        if missing:
            raise ConfigError(f"{source} lacks the config key(s) {', '.join(missing)}")
        return cls(**values)


def _annotation(kind: str) -> Any:
    """The Python type of a Setting kind ("ints": a tuple, so that a RunConfig is immutable)."""
    base = {"int": int, "float": float, "str": str, "bool": bool, "ints": tuple[int, ...]}[kind.rstrip("?")]
    return base | None if kind.endswith("?") else base


# the keys with a default in SCHEMA's order, then the required ones: the order config.json has always had
_FIELD_ORDER = [k for k, s in SCHEMA.items() if not s.required] + [k for k, s in SCHEMA.items() if s.required]

RunConfig = make_dataclass(
    "RunConfig", [(key, _annotation(SCHEMA[key].kind)) for key in _FIELD_ORDER], bases=(_RunConfigBase,),
    namespace={"__module__": __name__,
               "__doc__": "A resolved, validated run configuration: one attribute per SCHEMA key (frozen; "
                          "dataclasses.replace for a changed copy, checked again)."},
    frozen=True, kw_only=True)


def is_path_dataset(dataset: str) -> bool:
    """Whether a config's dataset is a path (your own data) rather than a built-in name."""
    return dataset not in DATASET_PRESETS


def _validate_own(cfg: RunConfig) -> None:
    """The own-images settings: in range for a path dataset, unset for a built-in one."""
    if not is_path_dataset(cfg.dataset):
        given = [k for k in OWN_KEYS if getattr(cfg, k) not in (None, False)]
        if given:
            raise ConfigError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to a path dataset (a "
                              f"folder or array file), not to the built-in {cfg.dataset!r}")
        return
    if cfg.img_size is not None and cfg.img_size not in OWN_SIZES:
        raise ConfigError(f"img_size must be one of {', '.join(map(str, OWN_SIZES))}, got {cfg.img_size!r}")
    if cfg.channels is not None and cfg.channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3 (or unset: detected), got {cfg.channels!r}")
    if cfg.fit is not None and cfg.fit not in OWN_FITS:
        raise ConfigError(f"fit must be one of {', '.join(OWN_FITS)}, got {cfg.fit!r}")
    f = cfg.test_fraction
    if f is not None and not (math.isfinite(f) and 0 < f < 1):
        raise ConfigError(f"test_fraction must be a number in (0, 1), got {f!r}")
    if cfg.background is not None:
        parse_background(cfg.background)


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


def resolve_config(*layers: tuple[str, dict[str, Any]]) -> RunConfig:
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
    return RunConfig.from_dict({**DEFAULTS, **PRESETS[preset], **explicit, "preset": preset}, "the resolved settings")


# the table's columns after preset and image: header -> the settings shown in it
_TABLE_COLUMNS = {
    "cont": ("cont",), "disc": ("disc",), "lr": ("lr",),
    "C_z: max, iters, gamma": ("cont_max", "cont_iters", "cont_gamma"),
    "C_c: max, iters, gamma": ("disc_max", "disc_iters", "disc_gamma"),
    "epochs": ("epochs",),
}


def _cell(value: Any) -> str:
    """A value as the table shows it: 4 significant digits, below 1e-3 as 5e-4."""
    if not isinstance(value, float):
        return str(value)
    if 0 < abs(value) < 1e-3:
        mantissa, exponent = f"{value:.3e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{value:.4g}"


def _preset_rows() -> list[list[str]]:
    """Header and one row per preset: the columns' values, then "other": its other settings that differ
    from their SCHEMA default."""
    shown = {key for keys in _TABLE_COLUMNS.values() for key in keys}
    rows = [["preset", "image", *_TABLE_COLUMNS, "other"]]
    for name, preset in PRESETS.items():
        values = {**DEFAULTS, **preset}
        other = [f"{k} {_cell(v)}" for k, v in preset.items() if k not in shown and v != SCHEMA[k].default]
        size = PRESET_IMAGE_SIZES[name]
        rows.append([name, "x".join(map(str, size)) if size is not None else "any",
                     *(", ".join(_cell(values[k]) for k in keys) for keys in _TABLE_COLUMNS.values()),
                     "; ".join(other) or "-"])
    return rows


def preset_table() -> str:
    """The presets as a markdown table with padded columns (README.md and --help show this text)."""
    rows = _preset_rows()
    widths = [max(3, *(len(row[i]) for row in rows)) for i in range(len(rows[0]))]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(rows[0]), line(["-" * w for w in widths]), *map(line, rows[1:])])
