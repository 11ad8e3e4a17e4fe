"""The training presets, as data: each a set of settings (keys of config.SCHEMA) for one dataset.

The table of them is rendered from this data by config.preset_table, for `--help` and for README.md
(between its `<!-- presets:start -->` and `<!-- presets:end -->` lines; tests/training/test_presets.py keeps
the two equal). Not listed in a preset: the setting's SCHEMA default.

The first five are the paper's (Appendix C; dSprites: its published code), all with Adam, batch 64,
temperature 0.67 and capacities starting at 0. synthetic-chairs is this project's choice for the built-in
procedural chairs, on which the paper's chairs preset collapses the discrete code (issue 13): one variable
of the seven chair types, the discrete capacity first (log 7 reached at step ~3,900), lr 5e-4 and
disc_capacity_on = "information" (lambda_agg = 300 / 10); see docs/experiments/chairs-2026-11-29.md.
`--preset chairs` gives the paper's values on them.

celeba has recon_weight = 1/3: the paper's published code computes the reconstruction term of RGB images as
the per-image sum divided by the channel count (a side effect of how it reshapes the images), so its gammas
were tuned against a reconstruction three times smaller. The preset reproduces that so the gammas carry over.

images is the preset of a path dataset (your own folder or array file, `--dataset PATH`): the paper's CelebA
capacities (its other natural-image preset) with a [10] discrete variable under disc_capacity_on =
"information" (the variant that kept the code alive on the built-in chairs), recon_weight 1; a choice, not
tuned on any data set. Every value can be overridden (e.g. --cont 10 --disc 10 10). Its image size is the
run's (--img-size, --channels), so the table shows "any".
"""
from __future__ import annotations

from typing import Any


def _preset(cont, disc, lr, cz, cc, epochs, **extra):
    """The paper's common values plus one preset's: cz, cc = (max, iters, gamma) of C_z and C_c."""
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

# the image size (channels, height, width) each preset's values were chosen for: its dataset's (None: any size,
# the run's own: a path dataset)
PRESET_IMAGE_SIZES: dict[str, tuple[int, int, int] | None] = {
    "mnist": (1, 32, 32),
    "fashion-mnist": (1, 32, 32),
    "chairs": (1, 64, 64),
    "celeba": (3, 64, 64),
    "dsprites": (1, 64, 64),
    "synthetic-chairs": (1, 64, 64),
    "images": None,
}

# dataset name -> its preset
DATASET_PRESETS: dict[str, str] = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "chairs": "chairs",
    "synthetic-chairs": "synthetic-chairs",
    "celeba": "celeba",
    "dsprites": "dsprites",
}
