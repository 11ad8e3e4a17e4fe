"""python -m jointvae_fast.evaluate SOURCE [--dataset NAME] [--data-dir DIR] [--out DIR]
                                 [--edit UNIT=VALUE ...] [--device DEV] [--limit N] [--sweep]

Turns a trained model into the paper's analyses. SOURCE is one of
  - a run directory of jointvae_fast.train (its newest readable checkpoint, its log.jsonl, config.json),
  - a jointvae_fast checkpoint file (the log is taken from its run directory when it sits in one),
  - a folder (or model.pt) of the paper's published code (model.pt + specs.json),
  - pretrained:NAME, a model shipped in jointvae_fast.pretrained (report: ./pretrained-NAME_eval).
A run on your own images (--dataset PATH) reloads its folder or array file with the run's settings (image
size, fit, channels, labels, split). Without labels the report has what needs none (reconstruction, KL,
I(x; c), class usage, traversals, samples and the images each class takes); with labels (sub-folders or
--labels CSV) also the accuracy against each categorical factor, MIG and the information per factor.
The test split of the dataset (default: the one the model was trained on) is
encoded once (batches of 1000, inference mode, with a progress bar); the
report folder (--out; default RUN_DIR/eval for a run directory, else
<source name>_eval beside the source) receives
metrics.json, PNG figures and index.html showing each figure with one line of
explanation.

Figures (those that apply):
  kl_units.png            per-latent KL on the test split, ranked; inactive latents grey
  ranked_traversals.png   Fig. 8: latents ranked by KL, each next to its traversal
  kl_training.png         Fig. 7: KL per unit / discrete variable over training with C_z, C_c (needs the run's log)
  traversal_z<j>.png      Fig. 3: active continuous unit j over the prior's 5%..95% quantiles, one row per test image
  traversal_c<i>.png      Fig. 3: discrete variable i over its classes, one row per test image
  samples_by_class.png    Fig. 4: prior samples with the discrete variable fixed to each class (rows)
  class_unit_grid.png     Fig. 5: class (rows) x the most informative continuous unit (columns)
  reconstructions.png     test images (odd rows) above their reconstructions (even rows)
  editing.png             Fig. 9b: original, reconstruction, then each --edit (default: top unit at -2..2)
  azimuth_scatter.png     Fig. 9a: the active unit that best predicts azimuth against the true azimuth (factor datasets)
  class_usage.png         per discrete variable: share of test images per argmax class (classes in use: >= 1%)
  class_members_c<i>.png  per class of discrete variable i: the real test images it takes, most confident first
                          (what each class picked up; the positions are in metrics.json's class_members)

--sweep RUN_DIR evaluates every checkpoint kept in RUN_DIR/checkpoints (train with --keep-every N), metrics
only, and writes sweep.json (one summary per checkpoint) and sweep.png (accuracy against the labels, else
against the first discrete factor (the chairs' type), MIG, azimuth correlation, I(x; c) and recon NLL against
the step) into the report folder.

metrics.json fields (null where the data does not allow them): see `jointvae_fast.analysis.report.METRIC_FIELDS`.
Definitions: KL per unit/variable as in the training objective (batch mean over
the test split); a latent is inactive when its KL < --inactive-kl nats
(default INACTIVE_KL = 0.02).
Accuracy: jointvae_fast.analysis.metrics.accuracy (Hungarian one-to-one and majority vote).
MIG: jointvae_fast.analysis.metrics.mig (posterior means binned into 20 equal-width bins,
discrete latents as argmax classes, factors as is up to 64 distinct values,
else binned). Azimuth: a factor whose name contains "azimuth", in degrees if
any value exceeds 2*pi, else radians;
jointvae_fast.analysis.metrics.circular (active units only: Mardia's circular-linear R per unit,
the best one reported; Fisher-Lee rho_T between the azimuth and the angle decoded from the best
pair, by a least-squares map of the pair to (cos, sin); none without active units). Integer-valued factors
count as discrete and get the accuracy of the best discrete variable.
Discrete information: jointvae_fast.analysis.metrics.information (I(x; c), KL(q(c) || p(c)), class
usage, classes in use; I(c; factor) with azimuth in 12 bins over the circle, integer factors as is,
other factors in 10 quantile bins; a warning when KL_c > 0.5 nats but I(x; c) < 0.25 KL_c); the
contingency table of test images by argmax class and factor bin (the same bins) for each discrete variable.
Total correlation: jointvae_fast.analysis.total_correlation (TC, index-code information and dimension-wise KL of
the test split, one posterior draw per image (--seed), MSS on batches of at most 256 with N = the split size; for all
latents and the continuous units alone; docs/total-correlation.md).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Sequence

from ..errors import ArgumentParser, run_cli
from ..devices import check_device
from .figures.editing import parse_edit
from .report import INACTIVE_KL, jsonable, evaluate
from .sources import EvaluationError, load_source
from .split import eval_split, load_named_dataset
from .sweep import sweep


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m jointvae_fast.evaluate",
        description="Evaluate a trained Joint-VAE: metrics.json, the paper's figures and index.html.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("source", help="run directory, checkpoint file, folder of the paper's published code (model.pt + "
                   "specs.json), or pretrained:NAME (a model shipped in jointvae_fast.pretrained)")
    p.add_argument("--dataset", help="dataset name (default: the one the model was trained on)")
    p.add_argument("--data-dir", help="folder holding the dataset files")
    p.add_argument("--out", help="report folder (default: RUN_DIR/eval, or <source name>_eval beside a file/folder)")
    p.add_argument("--edit", action="append", default=[], metavar="UNIT=VALUE", nargs="+",
                   help="edit for editing.png: z3=1.5 (or 3=1.5) sets unit 3; c0=2 sets discrete variable 0 to class 2")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--limit", type=int, help="evaluate only the first N test images")
    p.add_argument("--inactive-kl", type=float, default=INACTIVE_KL, metavar="NATS",
                   help=f"latents with a test KL below this are inactive (default {INACTIVE_KL})")
    p.add_argument("--seed", type=int, default=0, help="seed of the prior samples in samples_by_class.png")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--sweep", action="store_true",
                   help="SOURCE is a run directory: evaluate every kept checkpoint -> sweep.json, sweep.png")
    return p


def _check_args(args) -> None:
    if not (math.isfinite(args.inactive_kl) and args.inactive_kl >= 0):
        raise EvaluationError(f"--inactive-kl must be a finite number >= 0, got {args.inactive_kl}")
    if args.limit is not None and args.limit < 2:
        raise EvaluationError(f"--limit must be >= 2, got {args.limit}")
    if not 0 <= args.seed < 2**63:
        raise EvaluationError(f"--seed must be an integer in 0..2**63-1, got {args.seed}")


def _report_dir(args, source) -> Path:
    src = Path(args.source)
    if args.out:
        return Path(args.out)
    if source.kind == "run":
        return src / "eval"
    if source.kind == "pretrained":
        return Path(f"pretrained-{source.path.name}_eval")
    return src.parent / f"{src.stem if src.is_file() else src.name}_eval"


def _evaluate(args, dataset) -> int:
    _check_args(args)
    edits = [parse_edit(e) for group in args.edit for e in group]
    device = check_device(args.device)
    source = load_source(args.source)
    name = args.dataset or source.dataset
    if dataset is None:
        if name is None:
            raise EvaluationError(f"{args.source} does not record its dataset: give --dataset NAME")
        dataset = load_named_dataset(name, args.data_dir or source.data_dir, source.data_options)
    data = eval_split(dataset, name, args.limit)
    out = _report_dir(args, source)
    if args.sweep:
        if source.kind != "run":
            raise EvaluationError(f"--sweep needs a run directory, got {args.source}")
        result = sweep(Path(args.source), data, out, device, progress=not args.no_progress,
                       inactive_kl=args.inactive_kl)
        print(f"evaluated {len(result['checkpoints'])} checkpoints; {out / 'sweep.json'}, {out / 'sweep.png'}")
        return 0
    metrics = evaluate(source, data, out, edits, device, progress=not args.no_progress, seed=args.seed,
                       inactive_kl=args.inactive_kl)
    print(f"evaluated {metrics['n_test']} test images in {metrics['encode_seconds']:.2f} s "
          f"({metrics['images_per_second']:.0f} img/s); report: {out / 'index.html'}")
    for w in metrics["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    summary = {k: metrics[k] for k in ("kl_cont_sum", "kl_disc_sum", "recon_nll")}
    summary["tc"] = metrics["total_correlation"]["joint"]["tc"]
    if metrics["accuracy"]:
        summary["accuracy_hungarian"] = metrics["accuracy"]["hungarian"]
        summary["accuracy_majority"] = metrics["accuracy"]["majority"]
    if metrics["mig"] and metrics["mig"].get("mig") is not None:
        summary["mig"] = metrics["mig"]["mig"]
    if metrics["azimuth"]:
        summary["azimuth_r"] = metrics["azimuth"]["circular_linear_r"]
    print(json.dumps(jsonable(summary)))
    return 0


def main(argv: Sequence[str] | None = None, dataset=None) -> int:
    """CLI entry; `dataset` (an object as jointvae_fast.data.load_dataset returns) skips loading by name.
    A bad input is one line `error: ...` (exit status 2); anything else is a bug with its traceback (1)."""
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _evaluate(args, dataset))
