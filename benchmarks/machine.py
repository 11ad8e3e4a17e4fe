"""What a benchmark ran on: describe() -> {cpu, cores, torch_threads, gpu, torch, cuda, backend, python, date}."""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform's description."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def describe() -> dict:
    """Machine and software of this run; `date` is UTC ISO 8601."""
    gpu = None
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name()
    try:
        from jointvae_fast import ops

        backend = ops.backend()
    except Exception as e:  # the description must not fail because the ops did not load
        backend = f"unavailable ({type(e).__name__}: {e})"
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "backend": backend,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def one_line(info: dict) -> str:
    return (f"{info['cpu']} ({info['cores']} cores, {info['torch_threads']} torch threads), gpu={info['gpu']}, "
            f"torch {info['torch']}, backend {info['backend']}, {info['date']}")


def write_json(path: Path | None, result: dict) -> None:
    """A benchmark's result as indented JSON at `path` (folders made; nothing when path is None)."""
    if path is None:
        return
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))
