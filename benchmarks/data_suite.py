"""Data suite: how fast your own images are read, and what training from the memory-mapped cache costs.

- decode: images per second of the one preprocessing pass (jointvae_fast.data.own: Pillow decode, fit,
  write into the uint8 cache) over a generated folder of JPEG photos-like images (smooth colour fields with
  noise, 400x300) and of PNGs (256x256), to 64x64, with one worker process and with every core; each run
  into a fresh cache folder (cold cache, the source files in the page cache).
- train: img/s of the real training loop (training.loop.train: the same batches, steps, logging) at 64x64,
  batch 64, three channels, on the CPU, with the training split resident in memory (a uint8 tensor) against
  the same images streamed from the memory-mapped cache (data.own.MappedImages through the prefetch thread).
  The map is read once before timing, so it sits in the page cache: this measures the streaming path's own
  cost (gather from the map, the thread), not the disk. Rounds alternate resident and streamed (the machine
  may be shared); a variant's img/s is the median over rounds; ratio = streamed / resident. Also per CPU
  second of the process (all threads, the prefetch thread included), which a shared machine moves less.
- batch wait: milliseconds per step the loop spent in TrainImages.batch_at (resident: the gather from the
  tensor and the float conversion; streamed: taking the prefetched batch and the conversion), median over the
  timed steps: the data path's cost on the training thread, which the machine's load moves little.
- gather: milliseconds to gather one batch of 64 random images (uint8) from the map (MappedImages.gather,
  what the prefetch thread does per step) and from the resident tensor (index_select, what the in-memory
  path does), alternating, median of GATHER_REPEATS: the streaming path's own work per step, to set against
  a step's time.

Standalone: python benchmarks/data_suite.py [--images 256] [--steps 30] [--repeats 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

TRAIN_IMAGES = 4096
GATHER_REPEATS = 200
SIZE, BATCH, CHANNELS = 64, 64, 3


def write_photos(folder: Path, n: int, fmt: str) -> None:
    """n images: JPEG 400x300 (smooth colour fields with noise, photo-like sizes) or PNG 256x256."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    w, h = (400, 300) if fmt == "jpg" else (256, 256)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        a, b, c = rng.random(3) * 0.05
        base = np.stack([np.sin(a * x + i), np.cos(b * y), np.sin(c * (x + y))], -1) * 100 + 128
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:05d}.{fmt}", quality=90) if fmt == "jpg" else \
            Image.fromarray(img).save(folder / f"{i:05d}.{fmt}")


def decode_rates(n: int, workers_list, repeats: int, log=print) -> list[dict]:
    """Rows {format, workers, images, img_per_s (median), runs} of the preprocessing pass."""
    from jointvae_fast.data.own import load_own

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("jpg", "png"):
            src = Path(tmp) / fmt
            write_photos(src, n, fmt)
            for workers in workers_list:
                runs = []
                for r in range(repeats):
                    t0 = time.perf_counter()
                    load_own(src, img_size=SIZE, cache_dir=Path(tmp) / f"cache-{fmt}-{workers}-{r}", workers=workers,
                             quiet=True, progress=False)
                    runs.append(n / (time.perf_counter() - t0))
                row = {"format": fmt, "workers": workers, "images": n, "img_per_s": statistics.median(runs),
                       "runs": runs}
                rows.append(row)
                log(f"decode {fmt:4} workers {workers:>2}: {row['img_per_s']:8.0f} img/s")
    return rows


class TimedImages:
    """TrainImages whose batch_at (what the loop waits for per step: the gather or the prefetched batch, and the
    float conversion) is timed: `waits` [s] per step."""

    def __init__(self, images):
        self.images, self.waits = images, []

    def __getattr__(self, name):
        return getattr(self.images, name)

    def __len__(self):
        return len(self.images)

    def batch_at(self, step):
        t0 = time.perf_counter()
        x = self.images.batch_at(step)
        self.waits.append(time.perf_counter() - t0)
        return x


def _train_once(train_images, steps: int, warmup: int, tmp: Path, tag: str) -> tuple[float, float, float]:
    """(img per wall second, img per CPU second of this process (every thread), median ms the loop waited for a
    batch) of steps warmup+1..warmup+steps of training.loop.train on `train_images` (CPU)."""
    from jointvae_fast.model import JointVAE
    from jointvae_fast.training.batches import TrainImages
    from jointvae_fast.training.config import resolve_config
    from jointvae_fast.training.distributed import World
    from jointvae_fast.training.loop import train

    config = resolve_config(("bench", {"dataset": "chairs", "steps": warmup + steps, "batch_size": BATCH,
                                       "log_every": 10**6, "save_every": 10**6, "images": False}))
    torch.manual_seed(0)
    model = JointVAE((CHANNELS, SIZE, SIZE), config.cont, list(config.disc), config.temperature)
    times = {}

    def hook(step, _):
        if step in (warmup, warmup + steps):
            times[step] = (time.perf_counter(), time.process_time())

    world = World(0, 1, 0, torch.device("cpu"))
    (tmp / tag).mkdir()
    data = TimedImages(TrainImages(train_images, world.device))
    train(config, model, data, world, tmp / tag, show_progress=False, step_hook=hook)
    (w0, c0), (w1, c1) = times[warmup], times[warmup + steps]
    return BATCH * steps / (w1 - w0), BATCH * steps / (c1 - c0), 1e3 * statistics.median(data.waits[warmup:])


def gather_times(mapped, resident: torch.Tensor, repeats: int | None = None) -> dict:
    """{mapped_ms, resident_ms}: median milliseconds per batch of BATCH random positions (see the docstring)."""
    repeats = repeats or GATHER_REPEATS
    g = torch.Generator().manual_seed(2)
    times = {"mapped": [], "resident": []}
    for _ in range(repeats):
        idx = torch.randperm(len(resident), generator=g)[:BATCH]
        for name, fn in (("mapped", lambda: mapped.gather(idx)), ("resident", lambda: resident.index_select(0, idx))):
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {f"{k}_ms": statistics.median(v) for k, v in times.items()}


def train_rates(steps: int, warmup: int, repeats: int, log=print) -> dict:
    """{resident_img_s, streamed_img_s (medians), their runs, ratio = streamed / resident; the same per CPU second
    of the process (all its threads, the prefetch thread included): *_img_per_cpu_s, ratio_per_cpu_s}."""
    from jointvae_fast.data.own import MappedImages

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (TRAIN_IMAGES, CHANNELS, SIZE, SIZE), dtype=np.uint8)
    got = {"resident": [], "streamed": []}
    cpu = {"resident": [], "streamed": []}
    wait = {"resident": [], "streamed": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mm = np.memmap(tmp / "images.u8", np.uint8, "w+", shape=images.shape)
        mm[:] = images
        mm.flush()
        del mm
        mapped = MappedImages(tmp / "images.u8", TRAIN_IMAGES, images.shape[1:], np.arange(TRAIN_IMAGES))
        mapped.numpy(np.arange(TRAIN_IMAGES))  # read once: the map is in the page cache
        sources = {"resident": torch.from_numpy(images), "streamed": mapped}
        gather = gather_times(mapped, sources["resident"])
        log(f"gather a batch of {BATCH}: map {gather['mapped_ms']:.3f} ms, resident tensor {gather['resident_ms']:.3f} ms")
        for r in range(repeats):
            for name, src in sources.items():
                wall, per_cpu, waited = _train_once(src, steps, warmup, tmp, f"{name}-{r}")
                got[name].append(wall)
                cpu[name].append(per_cpu)
                wait[name].append(waited)
                log(f"train {name:8} round {r}: {wall:7.1f} img/s, {per_cpu:7.1f} img per CPU second, "
                    f"{waited:.3f} ms waiting for a batch")
    med = {k: statistics.median(v) for k, v in got.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    return {"size": SIZE, "batch": BATCH, "channels": CHANNELS, "images": TRAIN_IMAGES, "steps": steps,
            "warmup": warmup, "repeats": repeats, "threads": torch.get_num_threads(),
            "resident_img_s": med["resident"], "streamed_img_s": med["streamed"],
            "resident_runs": got["resident"], "streamed_runs": got["streamed"],
            "ratio": med["streamed"] / med["resident"],
            "ratio_per_round": [s / r for s, r in zip(got["streamed"], got["resident"])],
            "gather_ms": gather, "step_ms_resident": 1e3 * BATCH / med["resident"],
            "batch_wait_ms": {k: statistics.median(v) for k, v in wait.items()}, "batch_wait_runs": wait,
            "resident_img_per_cpu_s": med_cpu["resident"], "streamed_img_per_cpu_s": med_cpu["streamed"],
            "resident_cpu_runs": cpu["resident"], "streamed_cpu_runs": cpu["streamed"],
            "ratio_per_cpu_s": med_cpu["streamed"] / med_cpu["resident"],
            "ratio_per_cpu_s_per_round": [s / r for s, r in zip(cpu["streamed"], cpu["resident"])]}


def run(images: int = 256, steps: int = 30, warmup: int = 3, repeats: int = 3, workers=None, log=print) -> dict:
    from jointvae_fast.data.own.parallel import default_workers

    workers = workers or sorted({1, default_workers()})
    decode = decode_rates(images, workers, repeats, log) if images else []
    return {"decode": decode, "train": train_rates(steps, warmup, repeats, log)}


def format_report(result: dict) -> str:
    lines = [f"{'format':6} {'workers':>7} {'images':>6} {'img/s':>9}"]
    lines += [f"{r['format']:6} {r['workers']:>7} {r['images']:>6} {r['img_per_s']:9.0f}" for r in result["decode"]]
    t = result["train"]
    lines.append(f"train {t['size']}x{t['size']}x{t['channels']} batch {t['batch']}: resident {t['resident_img_s']:.1f} "
                 f"img/s, streamed {t['streamed_img_s']:.1f} img/s, streamed/resident {t['ratio']:.3f} "
                 f"(per round: {', '.join(f'{v:.3f}' for v in t['ratio_per_round'])}); per CPU second: resident "
                 f"{t['resident_img_per_cpu_s']:.1f}, streamed {t['streamed_img_per_cpu_s']:.1f}, ratio "
                 f"{t['ratio_per_cpu_s']:.3f} (per round: "
                 f"{', '.join(f'{v:.3f}' for v in t['ratio_per_cpu_s_per_round'])})")
    lines.append(f"the loop waited for a batch (median per step): resident {t['batch_wait_ms']['resident']:.3f} ms, "
                 f"streamed {t['batch_wait_ms']['streamed']:.3f} ms")
    lines.append(f"gather a batch of {t['batch']}: from the map {t['gather_ms']['mapped_ms']:.3f} ms, from the resident "
                 f"tensor {t['gather_ms']['resident_ms']:.3f} ms; a resident step {t['step_ms_resident']:.0f} ms")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256, help="images per format in the decode runs")
    ap.add_argument("--steps", type=int, default=30, help="timed training steps per run")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-decode", action="store_true", help="only the training comparison")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    from benchmarks.machine import describe, one_line, write_json

    info = describe()
    print("#", one_line(info))
    result = {"machine": info, **run(0 if args.skip_decode else args.images, args.steps, args.warmup, args.repeats)}
    print(format_report(result))
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
