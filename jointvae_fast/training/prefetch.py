"""Batches of a streamed training split (a memory-mapped data set) gathered ahead in a background thread.

`Prefetcher(source, indices, first_step, last_step, device, depth)` starts a daemon thread that, for steps
first_step, first_step + 1, ..., gathers `source.gather(indices(step))` (uint8 [B, C, H, W] on the CPU, read
from the memory map) and puts it in a queue of `depth` batches: for a GPU pinned (the GPU converts it to float
after the copy, 4x fewer bytes to move); for the CPU already as float32 x / 255 (NumPy's correctly rounded
division, bit-identical to the in-memory path's torch division, and without starting a second OpenMP team
of threads in this thread), so the training thread only takes it.
`get(step)` returns that step's batch (the thread is restarted there when the steps are not consecutive);
an exception of the thread is raised again in `get`. `close()` stops the thread.
The copy to the GPU is then non-blocking (TrainImages.batch_at), so reading the next batches from disk, the
host-to-device copy and the training step overlap; the gather's NumPy copy releases the GIL.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable

import numpy as np
import torch

DEPTH = 4  # batches gathered ahead


class Prefetcher:
    def __init__(self, source, indices: Callable[[int], torch.Tensor], first_step: int, last_step: int,
                 device: torch.device, depth: int = DEPTH):
        self.source, self.indices, self.last_step = source, indices, last_step
        self.pin = torch.device(device).type == "cuda"
        self.depth = depth
        self._thread: threading.Thread | None = None
        self._start(first_step)

    def _start(self, step: int) -> None:
        self.close()
        self._next = step
        self._queue: queue.Queue = queue.Queue(self.depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(step, self._queue, self._stop),
                                        name="jointvae-prefetch", daemon=True)
        self._thread.start()

    def _work(self, step: int, out: queue.Queue, stop: threading.Event) -> None:
        try:
            while step <= self.last_step and not stop.is_set():
                x = self.source.gather(self.indices(step))
                x = x.pin_memory() if self.pin else as_float(x)
                self._put(out, stop, (step, x, None))
                step += 1
        except BaseException as e:  # handed to the training thread, which raises it
            self._put(out, stop, (step, None, e))

    @staticmethod
    def _put(out: queue.Queue, stop: threading.Event, item) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self, step: int) -> torch.Tensor:
        """The batch of optimizer step `step`: for a GPU uint8, pinned; for the CPU float32 in [0, 1]."""
        if step > self.last_step:
            raise ValueError(f"step {step} is past the last step {self.last_step}")
        if step != self._next or self._thread is None:
            self._start(step)
        got, x, error = self._queue.get()
        if error is not None:
            self.close()
            raise error
        assert got == step, (got, step)
        self._next = step + 1
        return x

    def close(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        while True:  # unblock a put
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()
        self._thread = None


def as_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] on the CPU -> float32 x / 255 (NumPy, single-threaded, IEEE division)."""
    return torch.from_numpy(np.divide(x.numpy(), np.float32(255.0), dtype=np.float32))
