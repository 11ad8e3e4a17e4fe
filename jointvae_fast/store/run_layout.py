"""The names inside a run directory of `python -m jointvae_fast.train`, in one place.

    RUN_DIR/
      config.json           the resolved settings (CONFIG)
      run.json              how the run ran: versions, machine, step mode, timing (RUN_INFO)
      log.jsonl             one JSON record per --log-every steps (LOG)
      samples.png, traversal.png   the first-look grids at the end (SAMPLES, TRAVERSAL)
      skipped_images.txt    a path dataset's images that could not be read: "path<TAB>reason" (SKIPPED_IMAGES)
      checkpoints/step-XXXXXXXX.pt  checkpoints (CHECKPOINT_DIR; checkpoint.py format)
      tensorboard/          --tensorboard event files (TENSORBOARD_DIR)
"""
from __future__ import annotations

import re
from pathlib import Path

CONFIG, RUN_INFO, LOG = "config.json", "run.json", "log.jsonl"
SAMPLES, TRAVERSAL = "samples.png", "traversal.png"
SKIPPED_IMAGES = "skipped_images.txt"
RUN_FILES = (CONFIG, RUN_INFO, LOG, SAMPLES, TRAVERSAL, SKIPPED_IMAGES)
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
CHECKPOINT_RE = re.compile(r"^step-(\d+)\.pt$")


def checkpoint_path(run_dir, step: int) -> Path:
    """RUN_DIR/checkpoints/step-<step, 8 digits>.pt"""
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:08d}.pt"


def list_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """(step, path) of the run's checkpoint files, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def is_run_dir(path) -> bool:
    """Whether `path` looks like a run directory (it has checkpoints/ or config.json)."""
    path = Path(path)
    return (path / CHECKPOINT_DIR).is_dir() or (path / CONFIG).is_file()
