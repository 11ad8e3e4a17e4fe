"""python -m jointvae_fast.pack RUN_DIR NAME [--eval DIR] [--root DIR] [--commit SHA] [--force]

Turns a finished training run and its evaluation into a pretrained model folder ROOT/NAME (default
root: the package's models/, or $JOINTVAE_PRETRAINED_DIR):
    model.pt      the run's newest readable checkpoint without its training state (float32 weights)
    metrics.json  RUN_DIR/eval/metrics.json (or --eval DIR), which must have evaluated that same step
    card.md       a model card: training command (from run.json), commit, machine, training time, and the
                  evaluation numbers (`card_numbers` reads them back; tests compare them with a fresh
                  evaluation). Lines marked TODO are for a person to complete.
Machine-local values (absolute paths, the interpreter's path) are not copied into the folder.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

from .analysis.sources import EvaluationError, load_source
from .errors import ArgumentParser, run_cli
from .model import network_note
from .pretrained import CARD, METRICS, NAME_RE, WEIGHTS, PretrainedError, registry_root
from .store import checkpoint as ckpt
from .store.run_layout import LOG, RUN_INFO

# (key in the card's evaluation table, dotted path into metrics.json, meaning)
CARD_NUMBERS = (
    ("n_test", "n_test", "test images evaluated"),
    ("kl_cont_sum", "kl_cont_sum", "KL_z summed over continuous units (nats)"),
    ("kl_disc_sum", "kl_disc_sum", "KL_c summed over discrete variables (nats)"),
    ("recon_nll", "recon_nll", "reconstruction NLL (nats per image, Bernoulli)"),
    ("accuracy_hungarian", "accuracy.hungarian", "discrete latent vs labels, Hungarian one-to-one"),
    ("accuracy_majority", "accuracy.majority", "discrete latent vs labels, majority vote"),
    ("mig", "mig.mig", "mutual information gap vs ground-truth factors"),
    ("azimuth_r", "azimuth.circular_linear_r", "circular-linear R of the best unit vs azimuth"),
)
LOCAL_CONFIG_KEYS = ("out", "data_dir", "device", "threads")  # where/how this machine ran it, not the model


def metric(metrics: dict[str, Any], dotted: str):
    """metrics['a']['b'] for 'a.b'; None when a level is missing or null."""
    v: Any = metrics
    for k in dotted.split("."):
        if not isinstance(v, dict) or v.get(k) is None:
            return None
        v = v[k]
    return v


def card_numbers(card_text: str) -> dict[str, float]:
    """The evaluation table of a card as {key: number} (rows `| key | value | meaning |`)."""
    keys = {k for k, _, _ in CARD_NUMBERS}
    out = {}
    for line in card_text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].strip("`") in keys:
            out[cells[0].strip("`")] = float(cells[1])
    return out


def _command(run_info: dict[str, Any]) -> str:
    cmd = list(run_info.get("command") or [])
    if not cmd:
        return "TODO: the run's run.json records no command"
    if len(cmd) > 2 and cmd[1] == "-m":
        cmd = ["python", *cmd[1:]]  # the interpreter's path is this machine's
    return " ".join(_scrub(c) for c in cmd)


def _scrub(arg: str) -> str:
    """An argument with an absolute path replaced by its last component (machine paths stay out of the card)."""
    return Path(arg).name if os.path.isabs(arg) else arg


def _commit(explicit: str | None) -> str:
    if explicit:
        return explicit
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "TODO: not a git checkout; give --commit"
    return f"{sha}{' (uncommitted changes present when packed)' if dirty else ''} (at packing time; check it is the training commit)"


def _machine(run_info: dict[str, Any]) -> str:
    return (f"device {run_info.get('device', '?')}; {platform.machine()}, {os.cpu_count()} logical CPUs, "
            f"{platform.system()} (where packed; TODO: the CPU/GPU model, that it is where it was trained, the load)")


def _training_time(run_dir: Path) -> str:
    last = None
    log = run_dir / LOG
    if log.is_file():
        for line in log.read_text().splitlines():
            try:
                last = json.loads(line)
            except json.JSONDecodeError:
                continue
    if not isinstance(last, dict) or "elapsed_s" not in last:
        return "TODO: no log.jsonl with elapsed_s"
    return f"{last['elapsed_s'] / 60:.1f} min for the last process's {last.get('step', '?')} steps (log.jsonl elapsed_s)"


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def render_card(name: str, meta: dict[str, Any], metrics: dict[str, Any], run_info: dict[str, Any], run_dir: Path,
                commit: str | None) -> str:
    """The card.md text of a packed model (TODO lines for a person to complete)."""
    cmd = _command(run_info)
    kl = metrics.get("kl_cont") or []
    ranked = ", ".join(f"z{j} {kl[j]:.3f}" for j in (metrics.get("active_units") or []))
    rows = "\n".join(f"| `{key}` | {_fmt(metric(metrics, path))} | {meaning} |"
                     for key, path, meaning in CARD_NUMBERS if metric(metrics, path) is not None)
    return f"""# {name}

TODO: one paragraph: what this model is for and what it shows (which units carry which factor).

| | |
| --- | --- |
| architecture | {meta['img_size'][0]}x{meta['img_size'][1]}x{meta['img_size'][2]} images, {meta['cont']} continuous units, discrete {meta['disc']}, temperature {meta['temperature']}; {network_note(meta['img_size'][1])} |
| dataset | {_scrub(str(meta.get('dataset')))} (preset {meta.get('preset')}) |
| steps | {meta.get('step')} |
| training command | `{cmd}` |
| commit | {_commit(commit)} |
| machine | {_machine(run_info)} |
| started | {run_info.get('started_utc', 'TODO')} |
| training time | {_training_time(run_dir)} |
| packed | {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} with jointvae_fast {meta.get('jointvae_fast_version')}, torch {meta.get('torch_version')} |
| weights | `{WEIGHTS}`, float32 |

## Evaluation

`python -m jointvae_fast.evaluate pretrained:{name}` on the test split of {metrics.get('dataset')} \
({metrics.get('n_test')} images); every number is in `{METRICS}`, and tests/analysis/test_pretrained.py checks the
ones below against a fresh evaluation wherever the dataset is available.

| key | value | meaning |
| --- | --- | --- |
{rows}

Active continuous units, highest KL first (nats): {ranked or 'none'}.

## Reproduce

    {cmd}
    python -m jointvae_fast.evaluate RUN_DIR
    python -m jointvae_fast.pack RUN_DIR {name}
"""


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise PretrainedError(f"{path} does not exist ({what})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise PretrainedError(f"{path} is not valid JSON: {e}") from e


def _portable_meta(meta: dict[str, Any]) -> dict[str, Any]:
    keep = {k: meta[k] for k in ("dataset", "preset", "step") if k in meta}
    if isinstance(keep.get("dataset"), str):  # a path dataset: its name only
        keep["dataset"] = _scrub(keep["dataset"])
    if isinstance(meta.get("config"), dict):
        keep["config"] = {k: v for k, v in meta["config"].items() if k not in LOCAL_CONFIG_KEYS}
        for key in ("dataset", "labels"):  # paths of your own data: their names only
            if isinstance(keep["config"].get(key), str):
                keep["config"][key] = _scrub(keep["config"][key])
    return keep


def pack(run_dir, name: str, eval_dir=None, root=None, commit: str | None = None, force: bool = False) -> Path:
    """Write ROOT/NAME (model.pt, metrics.json, card.md) from a run directory and its evaluation; its path."""
    if not NAME_RE.match(name):
        raise PretrainedError(f"name must be lowercase letters, digits and '-' (e.g. fashion-mnist), got {name!r}")
    run_dir = Path(run_dir)
    try:
        source = load_source(run_dir)
    except EvaluationError as e:
        raise PretrainedError(str(e)) from e
    if source.kind != "run":
        raise PretrainedError(f"{run_dir} is not a run directory of jointvae_fast.train")
    eval_dir = Path(eval_dir) if eval_dir is not None else run_dir / "eval"
    metrics = _read_json(eval_dir / METRICS, f"evaluate the run first: python -m jointvae_fast.evaluate {run_dir}")
    if metrics.get("step") != source.step:
        raise PretrainedError(f"{eval_dir / METRICS} evaluated step {metrics.get('step')} but the newest checkpoint "
                              f"is step {source.step}: evaluate again")
    run_info = _read_json(run_dir / RUN_INFO, f"the run directory's {RUN_INFO}")
    dest = registry_root(root) / name
    if dest.exists() and not force:
        raise PretrainedError(f"{dest} exists (give --force to replace it)")
    dest.mkdir(parents=True, exist_ok=True)
    model = source.model.float()
    ckpt.save(dest / WEIGHTS, model, meta=_portable_meta(source.meta))
    metrics = dict(metrics, source=f"{run_dir.name} (packed as pretrained:{name})")
    if isinstance(metrics.get("dataset"), str):  # a path dataset: its name only
        metrics["dataset"] = _scrub(metrics["dataset"])
    (dest / METRICS).write_text(json.dumps(metrics, indent=2) + "\n")
    meta = ckpt.read(dest / WEIGHTS)["meta"]
    (dest / CARD).write_text(render_card(name, meta, metrics, run_info, run_dir, commit))
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m jointvae_fast.pack",
                                description="Make a pretrained model folder from an evaluated training run.")
    p.add_argument("run_dir", help="run directory of jointvae_fast.train (its newest checkpoint is packed)")
    p.add_argument("name", help="model name: pretrained:NAME (lowercase letters, digits, '-')")
    p.add_argument("--eval", dest="eval_dir", help="evaluation folder holding metrics.json (default RUN_DIR/eval)")
    p.add_argument("--root", help="registry folder (default: $JOINTVAE_PRETRAINED_DIR, else the package's models/)")
    p.add_argument("--commit", help="the commit that trained the model (default: this checkout's HEAD)")
    p.add_argument("--force", action="store_true", help="replace an existing model folder")
    a = p.parse_args(argv)

    def work() -> int:
        dest = pack(a.run_dir, a.name, a.eval_dir, a.root, a.commit, a.force)
        print(f"packed {dest}; complete the TODO lines of {dest / CARD}")
        return 0

    return run_cli(work)  # a PretrainedError (a UserInputError) is one line, anything else a bug


if __name__ == "__main__":
    raise SystemExit(main())
