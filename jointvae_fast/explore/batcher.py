"""The decoder's one worker thread: whatever latents are waiting (up to MAX_BATCH) are decoded in one call,
so concurrent requests share a batch."""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

import torch

MAX_BATCH = 64


class DecodeBatcher:
    """One worker thread decodes whatever latents are waiting, up to MAX_BATCH at a time, in one call."""

    def __init__(self, decode, max_batch: int = MAX_BATCH):
        self._decode, self._max = decode, max_batch
        self._queue: queue.Queue = queue.Queue()
        self.batches = self.images = 0
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, name="explore-decoder", daemon=True)
        self._thread.start()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Decoder inputs [B, L] -> pixel probabilities [B, C, H, W] (waits for the worker)."""
        futures = []
        for lat in latents:
            f: Future = Future()
            self._queue.put((lat, f))
            futures.append(f)
        return torch.stack([f.result() for f in futures])

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            items = [item]
            while len(items) < self._max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                items.append(nxt)
            self._decode_batch(items)

    def _decode_batch(self, items) -> None:
        t0 = time.perf_counter()
        try:
            out = self._decode(torch.stack([lat for lat, _ in items]))
        except Exception as e:  # a bug: every waiting request gets it (and a 500), the worker lives on
            for _, f in items:
                f.set_exception(e)
            return
        self.seconds += time.perf_counter() - t0
        self.batches += 1
        self.images += len(items)
        for (_, f), img in zip(items, out):
            f.set_result(img)
