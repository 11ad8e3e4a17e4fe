"""The preset table: rendered from presets.py, and README.md holds exactly that rendering."""
from pathlib import Path

import pytest

from jointvae_fast.training import presets
from jointvae_fast.training.config import preset_table

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- presets:start -->\n", "\n<!-- presets:end -->"
RENDER = 'python -c "from jointvae_fast.training.config import preset_table; print(preset_table())"'


def readme_table() -> str:
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text, f"README.md lacks the lines {START.strip()} and {END.strip()}"
    return text.split(START, 1)[1].split(END, 1)[0]


def test_readme_table_is_the_rendered_presets():
    assert readme_table() == preset_table(), f"README.md's preset table is stale: paste the output of {RENDER}"


@pytest.mark.parametrize("key, value, shown", [("lr", 2e-4, "2e-4"), ("cont_iters", 12345, "12345"),
                                               ("disc", [4, 4], "[4, 4]"), ("batch_size", 32, "batch_size 32")])
def test_any_changed_preset_value_shows_in_the_table(monkeypatch, key, value, shown):
    """So the README test fails when the data changes and the README does not."""
    monkeypatch.setitem(presets.PRESETS["mnist"], key, value)
    row = next(line for line in preset_table().splitlines() if line.startswith("| mnist "))
    assert shown in row
    assert preset_table() != readme_table()


def test_every_preset_has_an_image_size_and_every_dataset_a_preset():
    assert set(presets.PRESET_IMAGE_SIZES) == set(presets.PRESETS)
    assert set(presets.DATASET_PRESETS.values()) <= set(presets.PRESETS)
