"""Config resolution: defaults < preset < --config file (JSON/TOML) < flags; unknown keys and wrong types rejected."""
import json

import pytest

from jointvae_fast.training.config import DATASET_PRESETS, DEFAULTS, PRESETS, SCHEMA, ConfigError, read_config_file, \
    resolve_config


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
    assert (cfg["cont"], cfg["disc"], cfg["lr"], cfg["epochs"], cfg["batch_size"]) == (cont, disc, lr, epochs, 64)
    assert (cfg["cont_min"], cfg["cont_max"], cfg["cont_iters"], cfg["cont_gamma"]) == (0, *cz)
    assert (cfg["disc_min"], cfg["disc_max"], cfg["disc_iters"], cfg["disc_gamma"]) == (0, *cc)
    assert cfg["temperature"] == 0.67 and cfg["temperature_final"] is None
    assert cfg["recon_weight"] == (1 / 3 if dataset == "celeba" else 1.0)
    assert cfg["disc_capacity_on"] == "kl" and cfg["disc_aggregate_weight"] is None
    assert cfg["preset"] == DATASET_PRESETS[dataset]


PAPER_CHAIRS = dict(cont=32, disc=[10], lr=1e-4, epochs=100, batch_size=64, temperature=0.67, cont_min=0.0,
                    cont_max=30.0, cont_iters=100000, cont_gamma=300.0, disc_min=0.0, disc_max=5.0, disc_iters=100000,
                    disc_gamma=300.0, recon_weight=1.0, disc_capacity_on="kl", disc_aggregate_weight=None)


def test_synthetic_chairs_preset_is_the_projects_choice():
    """The paper's chairs preset but seven classes, lr 5e-4, C_c over 10,000 steps and the information variant."""
    cfg = resolve_config(("flags", {"dataset": "synthetic-chairs"}))
    assert cfg["preset"] == "synthetic-chairs"
    assert cfg == {**cfg, **PAPER_CHAIRS, "disc": [7], "lr": 5e-4, "disc_iters": 10000,
                   "disc_capacity_on": "information"}
    assert PRESETS["synthetic-chairs"]["disc_capacity_on"] == "information"


@pytest.mark.parametrize("layer", ["flags", "file"])
def test_synthetic_chairs_with_the_chairs_preset_is_the_papers(layer):
    layers = [("flags", {"dataset": "synthetic-chairs"})]
    layers.insert(0 if layer == "file" else 1, (layer, {"preset": "chairs"}))
    cfg = resolve_config(*layers)
    assert cfg["preset"] == "chairs" and cfg["dataset"] == "synthetic-chairs"
    assert cfg == {**cfg, **PAPER_CHAIRS}
    assert cfg == {**resolve_config(("flags", {"dataset": "chairs"})), "dataset": "synthetic-chairs"}


def test_layers_override_in_order(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('lr = 2e-4\nbatch-size = 32\ndisc = [2, 2]\ncont_gamma = 5\n')
    file_layer = read_config_file(toml)
    cfg = resolve_config(("file", file_layer), ("flags", {"dataset": "chairs", "batch_size": 16}))
    assert cfg["lr"] == 2e-4 and cfg["batch_size"] == 16 and cfg["disc"] == [2, 2]
    assert cfg["cont_gamma"] == 5.0 and isinstance(cfg["cont_gamma"], float)
    assert cfg["cont"] == 32  # from the chairs preset
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"dataset": "mnist", "preset": "chairs", "steps": 7}))
    cfg = resolve_config(("file", read_config_file(js)))
    assert cfg["preset"] == "chairs" and cfg["lr"] == 1e-4 and cfg["steps"] == 7


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
