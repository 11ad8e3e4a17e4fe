"""The device a run asks for, checked against this machine, and the memory it has free."""
from __future__ import annotations

import os

import torch

from .errors import UserInputError


def check_device(name: str | None, local_rank: int = 0, distributed: bool = False) -> torch.device:
    """The torch.device `name` names (None: cuda if available, else cpu), or UserInputError when it is not a
    device this machine has (junk text, a GPU index beyond the GPUs present, a type other than cpu/cuda)."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UserInputError(f"device {name!r} is not a device name; use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        if dev.index not in (None, 0):
            raise UserInputError(f"device {name!r}: the CPU has no index; use cpu")
        return torch.device("cpu")
    if dev.type != "cuda":
        raise UserInputError(f"device {name!r} is not supported; use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UserInputError(f"device {name!r} asked for, but no CUDA GPU is visible; use --device cpu")
    count = torch.cuda.device_count()
    index = dev.index if dev.index is not None else (local_rank if distributed else torch.cuda.current_device())
    if not 0 <= index < count:
        raise UserInputError(f"device {name!r}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def available_memory(device: torch.device) -> int | None:
    """Bytes the device can still give: free GPU memory, or the CPU's MemAvailable; None when unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
