"""Config resolution: defaults < preset < --config file (JSON/TOML) < flags; unknown keys and wrong types rejected."""
import json
import typing
from dataclasses import FrozenInstanceError, fields, replace
from pathlib import Path

import pytest

from jointvae_fast.training.config import DATASET_PRESETS, DEFAULTS, PRESETS, SCHEMA, ConfigError, RunConfig, \
    read_config_file, resolve_config


def test_every_schema_key_has_a_default_and_presets_use_known_keys():
    assert set(DEFAULTS) | {"dataset"} == set(SCHEMA)
    for name, preset in PRESETS.items():
        assert set(preset) <= set(SCHEMA), name


@pytest.mark.parametrize(
    "dataset, cont, disc, lr, cz, cc, epochs",
    [
        ("mnist", 10, [10], 5e-4, (5, 25000, 30), (5, 25000, 30), 100),
        ("fashion-mnist", 10, [10], 5e-4, (5, 50000, 100), (10, 50000, 100), 100),
        ("chairs", 32, [10], 1e-4, (30, 100000, 300), (5, 100000, 300), 100),
        ("celeba", 32, [10], 5e-4, (50, 100000, 100), (10, 100000, 100), 100),
        ("dsprites", 6, [3], 5e-4, (40, 300000, 150), (1.1, 300000, 150), 30),
    ],
)
def test_presets_are_the_papers_table(dataset, cont, disc, lr, cz, cc, epochs):
    cfg = resolve_config(("flags", {"dataset": dataset}))
    assert (cfg.cont, list(cfg.disc), cfg.lr, cfg.epochs, cfg.batch_size) == (cont, disc, lr, epochs, 64)
    assert (cfg.cont_min, cfg.cont_max, cfg.cont_iters, cfg.cont_gamma) == (0, *cz)
    assert (cfg.disc_min, cfg.disc_max, cfg.disc_iters, cfg.disc_gamma) == (0, *cc)
    assert cfg.temperature == 0.67 and cfg.temperature_final is None
    assert cfg.recon_weight == (1 / 3 if dataset == "celeba" else 1.0)
    assert cfg.disc_capacity_on == "kl" and cfg.disc_aggregate_weight is None
    assert cfg.preset == DATASET_PRESETS[dataset]


PAPER_CHAIRS = dict(cont=32, disc=[10], lr=1e-4, epochs=100, batch_size=64, temperature=0.67, cont_min=0.0,
                    cont_max=30.0, cont_iters=100000, cont_gamma=300.0, disc_min=0.0, disc_max=5.0, disc_iters=100000,
                    disc_gamma=300.0, recon_weight=1.0, disc_capacity_on="kl", disc_aggregate_weight=None)


def test_synthetic_chairs_preset_is_the_projects_choice():
    """The paper's chairs preset but seven classes, lr 5e-4, C_c over 10,000 steps and the information variant."""
    cfg = resolve_config(("flags", {"dataset": "synthetic-chairs"}))
    assert cfg.preset == "synthetic-chairs"
    assert cfg.to_dict() == {**cfg.to_dict(), **PAPER_CHAIRS, "disc": [7], "lr": 5e-4, "disc_iters": 10000,
                             "disc_capacity_on": "information"}
    assert PRESETS["synthetic-chairs"]["disc_capacity_on"] == "information"


@pytest.mark.parametrize("layer", ["flags", "file"])
def test_synthetic_chairs_with_the_chairs_preset_is_the_papers(layer):
    layers = [("flags", {"dataset": "synthetic-chairs"})]
    layers.insert(0 if layer == "file" else 1, (layer, {"preset": "chairs"}))
    cfg = resolve_config(*layers)
    assert cfg.preset == "chairs" and cfg.dataset == "synthetic-chairs"
    assert cfg.to_dict() == {**cfg.to_dict(), **PAPER_CHAIRS}
    assert cfg == replace(resolve_config(("flags", {"dataset": "chairs"})), dataset="synthetic-chairs")


def test_layers_override_in_order(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('lr = 2e-4\nbatch-size = 32\ndisc = [2, 2]\ncont_gamma = 5\n')
    file_layer = read_config_file(toml)
    cfg = resolve_config(("file", file_layer), ("flags", {"dataset": "chairs", "batch_size": 16}))
    assert cfg.lr == 2e-4 and cfg.batch_size == 16 and cfg.disc == (2, 2)
    assert cfg.cont_gamma == 5.0 and isinstance(cfg.cont_gamma, float)
    assert cfg.cont == 32  # from the chairs preset
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"dataset": "mnist", "preset": "chairs", "steps": 7}))
    cfg = resolve_config(("file", read_config_file(js)))
    assert cfg.preset == "chairs" and cfg.lr == 1e-4 and cfg.steps == 7


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"learning_rate": 1e-3}', "unknown config key 'learning_rate'"),
        ('{"lr": "fast"}', "'lr' in config file"),
        ('{"steps": 2.5}', "must be an integer"),
        ('{"disc": [10, "a"]}', "list of integers"),
        ('{"images": 1}', "true or false"),
        ('[1, 2]', "must hold an object"),
        ('{"lr": ', "not valid JSON"),
    ],
)
def test_bad_config_files_are_rejected(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        read_config_file(path)


def test_bad_toml_and_missing_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("lr = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_config_file(path)
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "nope.json")


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
        ({"dataset": "mnist", "preset": "svhn"}, "unknown preset 'svhn'"),
        ({}, "no dataset given"),
        ({"dataset": "mnist", "batch_size": 0}, "batch_size must be"),
        ({"dataset": "mnist", "lr": -1.0}, "lr must be"),
        ({"dataset": "mnist", "disc": [1]}, "class counts >= 2"),
        ({"dataset": "mnist", "cont": 0, "disc": []}, "latent is empty"),
        ({"dataset": "mnist", "epochs": None}, "either epochs or steps"),
        ({"dataset": "mnist", "temperature_final": 0.1}, "needs both"),
        ({"dataset": "mnist", "cont_gamma": float("nan")}, "cont_gamma must be"),
    ],
)
def test_bad_values_are_rejected(layer, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(("flags", layer))


# ---------------------------------------------------------------- RunConfig, the typed object generated from SCHEMA

GOLDEN = Path(__file__).with_name("config_written_by_288fb4c.json")
GOLDEN_FLAGS = {"dataset": "celeba", "steps": 10, "disc": [3, 2], "lr": 0.001, "out": "runs/golden",
                "temperature_final": 0.5, "temperature_anneal_steps": 100, "keep_every": 5, "images": False,
                "cont_capacity_on": "information"}


def test_run_config_has_one_typed_attribute_per_schema_key():
    kinds = {int: "int", float: "float", str: "str", bool: "bool", tuple[int, ...]: "ints"}
    got = {f.name: f.type for f in fields(RunConfig)}
    assert set(got) == set(SCHEMA)
    for key, setting in SCHEMA.items():
        optional = setting.kind.endswith("?")
        base = [t for t in typing.get_args(got[key]) if t is not type(None)][0] if optional else got[key]
        assert kinds[base] + ("?" if optional else "") == setting.kind, key


def test_config_json_keeps_the_bytes_the_dict_config_wrote():
    """config.json of the same flags, key for key and byte for byte as commit 288fb4c (a dict config) wrote it;
    keys added to SCHEMA since then are left out of the comparison."""
    golden = GOLDEN.read_text(encoding="utf-8")
    written = resolve_config(("flags", GOLDEN_FLAGS)).to_dict()
    old_keys = json.loads(golden)
    assert json.dumps({k: v for k, v in written.items() if k in old_keys}, indent=2) + "\n" == golden


def test_to_dict_from_dict_round_trip():
    cfg = resolve_config(("flags", GOLDEN_FLAGS))
    assert cfg.disc == (3, 2) and cfg.to_dict()["disc"] == [3, 2]
    assert RunConfig.from_dict(cfg.to_dict(), "test") == cfg
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())), "config.json") == cfg
    assert resolve_config(("config.json", cfg.to_dict())) == cfg  # what --resume does with it


def test_an_old_config_json_without_newer_keys_still_resolves():
    old = json.loads(GOLDEN.read_text(encoding="utf-8"))
    for key in ("cont_capacity_on", "cont_aggregate_weight", "tensorboard", "tensorboard_images_every", "keep_every"):
        del old[key]
    cfg = resolve_config(("run/config.json", old))  # the resume layer: DEFAULTS fill what it lacks
    assert cfg.tensorboard is False and cfg.cont_capacity_on == "kl" and cfg.keep_every is None
    assert cfg.lr == 0.001 and cfg.recon_weight == 1 / 3
    with pytest.raises(ConfigError, match="run/config.json lacks the config key.*cont_capacity_on"):
        RunConfig.from_dict(old, "run/config.json")


def test_a_misspelt_attribute_is_an_error_where_it_is_used():
    cfg = resolve_config(("flags", {"dataset": "mnist"}))
    with pytest.raises(AttributeError, match="learning_rate"):
        cfg.learning_rate
    with pytest.raises(AttributeError):
        cfg.learning_rate = 1e-3
    with pytest.raises(FrozenInstanceError):
        cfg.lr = 1e-3
    assert cfg.lr == 5e-4


def test_unknown_or_ill_typed_keys_in_a_file_name_the_key():
    data = resolve_config(("flags", {"dataset": "mnist"})).to_dict()
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate' in run/config.json"):
        RunConfig.from_dict({**data, "learning_rate": 1e-3}, "run/config.json")
    with pytest.raises(ConfigError, match="'lr' in run/config.json must be a number"):
        RunConfig.from_dict({**data, "lr": "fast"}, "run/config.json")


def test_a_copy_is_checked_again():
    cfg = resolve_config(("flags", {"dataset": "mnist"}))
    assert replace(cfg, out="runs/x").out == "runs/x"
    with pytest.raises(ConfigError, match="lr must be"):
        replace(cfg, lr=-1.0)
    with pytest.raises(TypeError, match="'out'"):  # a Path where SCHEMA says str: a bug, not a user's input
        replace(cfg, out=Path("runs/x"))
