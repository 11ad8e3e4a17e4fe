"""Training from a memory-mapped data set: the prefetch thread, the same batches as the resident path, and a
data set larger than the memory the process may allocate."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from jointvae_fast import train as train_cli
from jointvae_fast.data import load_dataset
from jointvae_fast.data.own import MappedImages
from jointvae_fast.store import run_layout
from jointvae_fast.training.batches import BatchOrder, StepIndices, TrainImages
from jointvae_fast.training.prefetch import Prefetcher, as_float

ROOT = Path(__file__).resolve().parents[2]


def mapped(tmp_path, images: np.ndarray) -> MappedImages:
    path = tmp_path / "images.u8"
    mm = np.memmap(path, np.uint8, "w+", shape=images.shape)
    mm[:] = images
    mm.flush()
    return MappedImages(path, len(images), images.shape[1:], np.arange(len(images)))


def random_images(n=40, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 1, size, size), dtype=np.uint8)


def test_prefetched_batches_follow_the_run_order(tmp_path):
    imgs = random_images()
    src = mapped(tmp_path, imgs)
    order = BatchOrder(len(src), 5, 40 // 8, 8, 4, 1)
    want = StepIndices(order, torch.device("cpu"))
    pre = Prefetcher(src, StepIndices(order, torch.device("cpu")), 1, 12, torch.device("cpu"), depth=2)
    try:
        for step in [1, 2, 3, 7, 8, 2, 3, 12]:  # jumps restart the thread there
            got = pre.get(step)
            assert got.dtype == torch.float32  # for the CPU: converted in the thread
            np.testing.assert_array_equal(got.numpy(), imgs[want(step).numpy()] / np.float32(255))
        with pytest.raises(ValueError, match="past the last step"):
            pre.get(13)
    finally:
        pre.close()
    assert not any(t.name == "jointvae-prefetch" for t in threading.enumerate())


def test_the_threads_float_conversion_is_bit_identical_to_torchs():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).repeat(3, 2, 1, 1)
    assert torch.equal(as_float(x), x.to(torch.float32).div_(255.0))


def test_a_failing_gather_is_raised_in_the_training_thread(tmp_path):
    class Broken:
        def gather(self, idx):
            raise OSError("disk gone")

    order = BatchOrder(16, 0, 2, 8, 8, 0)
    pre = Prefetcher(Broken(), StepIndices(order, torch.device("cpu")), 1, 4, torch.device("cpu"))
    with pytest.raises(OSError, match="disk gone"):
        pre.get(1)
    pre.close()


def test_streamed_training_equals_resident_training_on_the_cpu(tmp_path):
    """The same images as a resident tensor and as a memory map: the same batches, bit-identical weights."""
    imgs = random_images(48)
    args = ["--dataset", "mnist", "--cont", "3", "--disc", "3", "--batch-size", "8", "--steps", "9", "--seed", "4",
            "--log-every", "3", "--save-every", "9", "--no-images", "--no-progress", "--device", "cpu"]
    resident = SimpleNamespace(train=torch.from_numpy(imgs), image_size=(1, 32, 32))
    streamed = SimpleNamespace(train=mapped(tmp_path, imgs), image_size=(1, 32, 32))
    assert TrainImages(streamed.train, torch.device("cpu")).streamed
    for name, ds in (("resident", resident), ("streamed", streamed)):
        assert train_cli.main([*args, "--out", str(tmp_path / name)], dataset=ds) == 0
    a, b = (torch.load(run_layout.checkpoint_path(tmp_path / n, 9), weights_only=False)["model"]
            for n in ("resident", "streamed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    def losses(name):  # the log without its timings
        return [{k: v for k, v in json.loads(line).items() if not k.endswith(("_per_s", "elapsed_s"))}
                for line in (tmp_path / name / run_layout.LOG).read_text().splitlines()]

    assert losses("resident") == losses("streamed")


# a process that may allocate only HEADROOM bytes of private memory beyond what it holds after a warm-up
# training run (RLIMIT_DATA counts private writable memory; a read-only file map is not counted), then trains
# on a data set of DATA bytes > HEADROOM: it streams, or it fails with MemoryError.
HEADROOM = 96 << 20
CHILD = textwrap.dedent('''
    import resource, sys, numpy as np, torch
    from types import SimpleNamespace
    from jointvae_fast import train as train_cli
    from jointvae_fast.data import load_dataset
    data, out, mode, headroom = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.set_num_threads(1)
    args = ["--cont", "2", "--disc", "3", "--batch-size", "16", "--log-every", "5", "--save-every", "1000",
            "--no-images", "--no-progress", "--device", "cpu"]
    warm = SimpleNamespace(train=torch.zeros(64, 3, 64, 64, dtype=torch.uint8), image_size=(3, 64, 64))
    assert train_cli.main(["--dataset", "mnist", "--steps", "3", "--out", out + "-warm", *args], dataset=warm) == 0
    ds = load_dataset(data, quiet=True, progress=False)  # the cache is built by the parent: only mapped here
    vm_data = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmData:"))
    resource.setrlimit(resource.RLIMIT_DATA, (vm_data + headroom, resource.RLIM_INFINITY))
    if mode == "resident":
        ds = SimpleNamespace(train=torch.from_numpy(ds.train.numpy(np.arange(len(ds.train)))), image_size=ds.image_size)
    code = train_cli.main(["--dataset", "mnist", "--steps", "40", "--out", out, *args], dataset=ds)
    print("bytes", ds.train.nbytes if mode == "streamed" else ds.train.numel(), "exit", code)
''')


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA accounting of Linux")
def test_a_data_set_larger_than_the_memory_limit_trains_streamed(tmp_path, monkeypatch):
    n = (HEADROOM * 5 // 2) // (3 * 64 * 64)  # the training split (90%) alone is over twice the headroom
    arr = np.lib.format.open_memmap(tmp_path / "big.npy", "w+", np.uint8, (n, 64, 64, 3))
    for i in range(0, n, 4096):  # a cheap pattern: every image differs
        arr[i : i + 4096] = (np.arange(i, min(n, i + 4096)) % 251).astype(np.uint8)[:, None, None, None]
    arr.flush()
    del arr
    monkeypatch.setenv("JOINTVAE_CACHE", str(tmp_path / "cache"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ds = load_dataset(str(tmp_path / "big.npy"), quiet=True, progress=False)
    assert ds.train.nbytes > 2 * HEADROOM

    def child(mode):
        return subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "big.npy"), str(tmp_path / mode), mode,
                               str(HEADROOM)], env=env, capture_output=True, text=True, timeout=900)

    streamed = child("streamed")
    assert streamed.returncode == 0 and "exit 0" in streamed.stdout, streamed.stderr[-3000:]
    assert run_layout.list_checkpoints(tmp_path / "streamed")[-1][0] == 40
    resident = child("resident")  # the same data loaded into memory does not fit: the limit is real
    assert resident.returncode != 0 and "MemoryError" in resident.stderr, (resident.stdout, resident.stderr[-2000:])
