"""The real command lines, as separate processes, on tiny MNIST-format IDX files the test writes.

- python -m jointvae_fast.train --dataset mnist --data-dir DIR ...: the whole path from files on disk
  (jointvae_fast.data) to a run directory;
- torchrun --nproc_per_node 2 -m jointvae_fast.train ...: DDP on gloo, launched the way users launch it;
- a missing dataset: exit code 2 and a message naming where it looked.
"""
import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

from jointvae_fast.store import checkpoint, run_layout

ROOT = Path(__file__).resolve().parents[2]


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def tiny_mnist(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    d = folder / "mnist"
    d.mkdir(parents=True)
    write_idx(d / "train-images-idx3-ubyte", rng.integers(0, 256, (64, 28, 28)))
    write_idx(d / "train-labels-idx1-ubyte", rng.integers(0, 10, 64))
    write_idx(d / "t10k-images-idx3-ubyte", rng.integers(0, 256, (16, 28, 28)))
    write_idx(d / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 16))
    return folder


def run(cmd, tmp_path, timeout=240):
    env = {**os.environ, "JOINTVAE_CACHE": str(tmp_path / "cache"), "JOINTVAE_DOWNLOAD": "0",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("JOINTVAE_DATA", None)
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


FLAGS = ["--dataset", "mnist", "--cont", "2", "--disc", "3", "--batch-size", "8", "--steps", "4",
         "--log-every", "2", "--save-every", "2", "--device", "cpu"]


def test_cli_trains_from_files_on_disk(tmp_path):
    data = tiny_mnist(tmp_path / "data")
    proc = run([sys.executable, "-m", "jointvae_fast.train", *FLAGS, "--data-dir", str(data), "--out", "run"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "run"
    assert "step 2/4" in proc.stderr and "finished 4 steps" in proc.stderr
    assert json.loads((out / "run.json").read_text())["image_size"] == [1, 32, 32]  # 28x28 resized to 32x32
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [2, 4]
    assert [s for s, _ in run_layout.list_checkpoints(out)] == [2, 4]
    assert checkpoint.load_model(run_layout.checkpoint_path(out, 4)).img_size == (1, 32, 32)
    assert (out / "samples.png").is_file() and (out / "traversal.png").is_file()


def test_torchrun_two_gloo_processes(tmp_path):
    data = tiny_mnist(tmp_path / "data")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port),
           "-m", "jointvae_fast.train", *FLAGS, "--data-dir", str(data), "--out", "ddp", "--no-images"]
    proc = run(cmd, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "ddp"
    assert "on cpu x2" in proc.stderr
    assert json.loads((out / "run.json").read_text())["world_size"] == 2
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [2, 4]
    ck = checkpoint.load_checkpoint(run_layout.checkpoint_path(out, 4))
    assert len(ck.training["rng"]["ranks"]) == 2


def test_missing_dataset_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run([sys.executable, "-m", "jointvae_fast.train", *FLAGS, "--data-dir", str(empty), "--out", "run"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") or "\nerror: " in proc.stderr
    assert str(empty) in proc.stderr and "train-images-idx3-ubyte" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()  # nothing written; the same command works once the data is there
