"""A supervised ceiling for the discrete code: how well can a classifier trained WITH the labels tell the class
(the labels, else the first discrete factor: the synthetic chairs' type) from the images?

python -m jointvae_fast.analysis.supervised_ceiling --dataset NAME --steps N [--batch 64] [--lr 1e-3] [--seed 0]
                                                    [--data-dir DIR] [--device DEV] [--threads N] [--json PATH]

The classifier is the Joint-VAE's own encoder (Appendix B: 4x4 stride-2 convolutions, 32-32-64-64 at 64x64, ReLU,
Linear(1024, 256), ReLU) with a K-class linear head: `JointVAE(img_size, cont=0, disc=[K])`'s encoder, the network
whose discrete code the unsupervised accuracy is measured on. Training: cross-entropy on the training split's
targets, Adam(lr), `steps` batches of `batch` images in the seeded order of training/batches.py (epoch e:
randperm(N_train) drawn from derive_seed("batch-order", seed, e)), weights from torch.manual_seed(seed), float32.
It is scored on the test split `evaluate` uses (analysis/split.eval_split, no limit), so its accuracy is the
ceiling of the unsupervised type accuracy of metrics.json (a one-to-one relabelling can only raise the Hungarian
score of the same predictions, reported too). Every `log_every` steps a line with the mean loss and training
accuracy of the steps since the last line.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .. import data as datasets
from ..data.dataset import as_float_images
from ..atomic_write import atomic_write_text
from ..devices import check_device
from ..errors import ArgumentParser, run_cli
from ..model import JointVAE
from ..progress import Progress
from ..training.batches import BatchOrder, StepIndices
from .metrics.accuracy import hungarian_accuracy
from .metrics.information import factor_contingency
from .report import jsonable
from .sources import EvaluationError
from .split import EvalSplit, eval_split, take_images

EVAL_BATCH = 1000
LOG_EVERY = 500


def target_name(split: EvalSplit) -> str:
    """What is classified: "labels" when the split has labels, else its first integer-valued factor."""
    if split.labels is not None:
        return "labels"
    for k, v in split.factors.items():
        if np.issubdtype(v.dtype, np.integer):
            return k
    raise EvaluationError(f"dataset {split.name!r} has neither labels nor a discrete (integer) factor to classify")


def target_values(split: EvalSplit, name: str) -> np.ndarray:
    """int64 [M]: the split's labels (name "labels") or factor `name`; integers >= 0."""
    v = split.labels if name == "labels" else split.factors.get(name)
    if v is None:
        raise EvaluationError(f"dataset {split.name!r}: the training split has no {name} (the test split has)")
    if not np.issubdtype(v.dtype, np.integer) or v.min() < 0:
        raise EvaluationError(f"dataset {split.name!r}: {name} must be integers >= 0 to classify")
    return v.astype(np.int64)


def classifier(img_size, n_classes: int) -> nn.Sequential:
    """The Joint-VAE encoder with a linear head: images in [0, 1] [B, C, H, W] -> logits [B, n_classes]."""
    enc = JointVAE(img_size, cont=0, disc=[n_classes])
    return nn.Sequential(enc.img_to_features, nn.Flatten(), enc.features_to_hidden, enc.to_posterior)


def check_settings(steps, batch, seed, lr) -> None:
    """steps, batch >= 1 and seed in 0..2**63-1 integers; lr a finite number > 0 (else EvaluationError)."""
    for arg, v, lo in (("steps", steps, 1), ("batch", batch, 1), ("seed", seed, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise EvaluationError(f"{arg} must be an integer >= {lo}, got {v!r}")
    if seed >= 2**63:
        raise EvaluationError(f"seed must be an integer in 0..2**63-1, got {seed}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise EvaluationError(f"lr must be a finite number > 0, got {lr!r}")


@torch.inference_mode()
def predict(net: nn.Module, images, device) -> np.ndarray:
    """int64 [M]: the argmax class of every image of a split (a uint8 tensor or GatheredImages), EVAL_BATCH at once."""
    net.eval()
    out = [net(as_float_images(images[i : i + EVAL_BATCH], device)).argmax(1).cpu()
           for i in range(0, images.shape[0], EVAL_BATCH)]
    return torch.cat(out).numpy()


def scores(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> dict[str, Any]:
    """accuracy = mean(pred == truth); confusion[t][p] = test images of class t predicted p; per_class_accuracy[t]
    = confusion[t][t] / sum_p confusion[t][p] (None for a class absent from the split); hungarian: the accuracy
    under the best one-to-one relabelling of the predictions (what the unsupervised accuracy measures)."""
    confusion = factor_contingency(truth, n_classes, pred, n_classes)
    rows = confusion.sum(1)
    per_class = [float(confusion[t, t] / rows[t]) if rows[t] else None for t in range(n_classes)]
    return {"test_accuracy": float(np.mean(pred == truth)), "test_accuracy_hungarian": hungarian_accuracy(pred, truth).accuracy,
            "per_class_accuracy": per_class, "confusion": confusion.tolist()}


def type_ceiling(dataset, steps: int, batch: int = 64, seed: int = 0, lr: float = 1e-3, *, device="cpu",
                 progress: bool = True, log_every: int = LOG_EVERY) -> dict[str, Any]:
    """Train `classifier` on the training split's target (`target_name`) and score it on the test split (module
    docstring). Returns a JSON-able dict: the settings, target, class_names, n_train, n_test, log [{step, loss,
    train_accuracy}], `scores`, seconds and steps_per_second of the training, torch threads."""
    check_settings(steps, batch, seed, lr)
    test = eval_split(dataset)
    name = target_name(test)
    train = eval_split(dataset, test.name, part="train")
    if batch > train.images.shape[0]:
        raise EvaluationError(f"batch must be at most the training split's {train.images.shape[0]} images, got {batch}")
    if tuple(train.images.shape[1:]) != tuple(test.images.shape[1:]):
        raise EvaluationError(f"the training images are {tuple(train.images.shape[1:])} but the test images "
                              f"{tuple(test.images.shape[1:])}")
    y_train, y_test = target_values(train, name), target_values(test, name)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    if n_classes < 2:
        raise EvaluationError(f"dataset {test.name!r}: {name} has a single class; nothing to classify")
    device = torch.device(device)
    torch.manual_seed(seed)
    net = classifier(test.images.shape[1:], n_classes).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    n = train.images.shape[0]
    order = StepIndices(BatchOrder(n, seed, n // batch, batch, batch, 0), torch.device("cpu"))
    targets = torch.from_numpy(y_train)
    log, loss_sum, hits, seen = [], 0.0, 0, 0
    t0 = time.perf_counter()
    with Progress(steps, f"classifier on {name}", unit="step", enable=None if progress else False) as bar:
        for step in range(1, steps + 1):
            idx = order(step)
            x, y = as_float_images(take_images(train.images, idx), device), targets[idx].to(device)
            net.train()
            logits = net(x)
            loss = nn.functional.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            hits += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            if step % log_every == 0 or step == steps:
                log.append({"step": step, "loss": loss_sum / seen, "train_accuracy": hits / seen})
                loss_sum, hits, seen = 0.0, 0, 0
                if progress:
                    bar.write(f"step {step}/{steps}: loss {log[-1]['loss']:.4f}, "
                              f"train accuracy {log[-1]['train_accuracy']:.4f}")
            bar.update(1)
    seconds = time.perf_counter() - t0
    return jsonable({
        "dataset": test.name, "target": name, "n_classes": n_classes,
        "class_names": list(test.value_names.get(name) or getattr(dataset, "label_names", None) or []) or None,
        "steps": steps, "batch": batch, "seed": seed, "lr": lr, "n_train": n, "n_test": test.images.shape[0],
        "log": log, **scores(predict(net, test.images, device), y_test, n_classes),
        "seconds": seconds, "steps_per_second": steps / seconds, "threads": torch.get_num_threads(),
        "device": str(device), "torch": torch.__version__,
    })


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m jointvae_fast.analysis.supervised_ceiling",
                       description="Train the Joint-VAE's encoder as a supervised classifier of the labels (else the "
                       "first discrete factor) and report its test-split accuracy: the ceiling of the unsupervised "
                       "accuracy.")
    p.add_argument("--dataset", required=True, help="dataset name (e.g. synthetic-chairs) or path")
    p.add_argument("--data-dir", help="folder holding the dataset files")
    p.add_argument("--steps", type=int, required=True, help="training steps (batches)")
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch order (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--json", metavar="PATH", help="write the result here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or step lines")
    return p


def _run(args, dataset) -> int:
    check_settings(args.steps, args.batch, args.seed, args.lr)
    if args.threads is not None:
        if args.threads < 1:
            raise EvaluationError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = check_device(args.device)
    if dataset is None:
        dataset = datasets.load_dataset(args.dataset, data_dir=args.data_dir)
    r = type_ceiling(dataset, args.steps, args.batch, args.seed, args.lr, device=device,
                     progress=not args.no_progress)
    if args.json:
        atomic_write_text(args.json, json.dumps(r, indent=2) + "\n")
    print(f"{r['dataset']}: {r['target']} test accuracy {r['test_accuracy']:.4f} ({r['n_test']} images, "
          f"{r['steps']} steps in {r['seconds']:.0f} s)")
    return 0


def main(argv: Sequence[str] | None = None, dataset=None) -> int:
    """CLI entry; `dataset` (an object as jointvae_fast.data.load_dataset returns) skips loading by name.
    One line `error: ...` (exit 2) for a bad input, a traceback (exit 1) for a bug."""
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _run(args, dataset))


if __name__ == "__main__":
    raise SystemExit(main())
