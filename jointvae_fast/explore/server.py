"""The explorer's HTTP server (standard library only): static page + JSON/PNG API.

    GET  /                  the page (static/index.html); GET /static/NAME: its script and style
    GET  /api/model         model, latents ordered by KL (with KL and active flag), KL source, test images
    GET  /api/stats         decoder batches and images so far, mean ms per batch
    POST /api/decode        {"z": [D], "c": [V]}                       -> image/png
    POST /api/traverse      {"z", "c", "latent": "z3"|"c0", "steps"}   -> image/png strip (one row)
    POST /api/prior         {"seed": int (optional)}                   -> {"z", "c"}
    POST /api/encode        {"index": i}                               -> {"z", "c", "index", "original",
                                                                          "reconstruction"} (PNG data URLs)
Bad requests get a 4xx and {"error": message}; an unexpected exception a 500 (traceback on stderr): the
server keeps serving either way. All decoding goes through one DecodeBatcher: concurrent requests are
decoded in one batch.
"""
from __future__ import annotations

import base64
import io
import json
import queue
import sys
import threading
import time
import traceback
from concurrent.futures import Future
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import torch

from ..grids.images import image_grid
from .session import ApiError, Explorer

MAX_BODY = 1 << 16
MAX_BATCH = 64
STATIC = {"index.html": "text/html; charset=utf-8", "explore.js": "text/javascript; charset=utf-8",
          "explore.css": "text/css; charset=utf-8"}


def png(images: torch.Tensor, padding: int = 0) -> bytes:
    """Pixel probabilities [N, C, H, W] -> PNG bytes of one row of N images."""
    from PIL import Image

    arr = image_grid(images, nrow=images.shape[0], padding=padding, pad_value=1.0)
    buf = io.BytesIO()
    Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(buf, format="PNG")
    return buf.getvalue()


def data_url(png_bytes: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


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


class ExploreServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, explorer: Explorer, quiet: bool = True):
        self.explorer, self.quiet = explorer, quiet
        self.batcher = DecodeBatcher(explorer.decode)
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    def server_close(self) -> None:
        super().server_close()
        self.batcher.close()


def _read_static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ExploreServer

    def log_message(self, fmt, *args) -> None:
        if not self.server.quiet:
            super().log_message(fmt, *args)

    # ------------------------------------------------------------ plumbing
    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _body(self) -> Any:
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise ApiError(400, "bad Content-Length header") from None
        if n < 0 or n > MAX_BODY:
            raise ApiError(413, f"the body must be at most {MAX_BODY} bytes, got {n}")
        raw = self.rfile.read(n)
        try:
            return json.loads(raw or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, f"malformed JSON: {e}") from None

    def send_error(self, code, message=None, explain=None) -> None:
        """http.server's own errors (malformed request line, oversized headers, ...) as JSON too."""
        self.close_connection = True
        try:
            self._json({"error": message or HTTPStatus(code).phrase}, code)
        except OSError:
            pass

    def _dispatch(self) -> None:
        method, path = self.command, urlsplit(self.path).path
        try:
            if method == "GET" and path.startswith("/static/") and path[len("/static/"):] in STATIC:
                name = path[len("/static/"):]
                return self._send(200, _read_static(name), STATIC[name])
            routes = ROUTES.get(method, {})
            if path not in routes:
                allowed = [m for m, r in ROUTES.items() if path in r]
                if allowed:
                    raise ApiError(405, f"{path} takes {' or '.join(allowed)}, not {method}")
                raise ApiError(404, f"no such path: {path}")
            args = (self._body(),) if method == "POST" else ()
            routes[path](self, *args)
        except ApiError as e:
            if method != "GET":
                self.close_connection = True  # an unread body must not be taken for the next request
            self._json({"error": e.message}, e.status)
        except Exception as e:  # a bug: say so, keep serving
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            self._json({"error": f"internal error: {type(e).__name__}: {e}"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch

    # ------------------------------------------------------------ routes
    def page(self) -> None:
        self._send(200, _read_static("index.html"), STATIC["index.html"])

    def model_info(self) -> None:
        self._json(self.server.explorer.info())

    def stats(self) -> None:
        b = self.server.batcher
        self._json({"batches": b.batches, "images": b.images,
                    "ms_per_batch": 1000 * b.seconds / b.batches if b.batches else None})

    def decode(self, body) -> None:
        lat = self.server.explorer.latent(body)
        self._send(200, png(self.server.batcher.decode(lat[None])), "image/png")

    def traverse(self, body) -> None:
        lats = self.server.explorer.traversal_latents(body)
        self._send(200, png(self.server.batcher.decode(lats), padding=1), "image/png")

    def prior(self, body) -> None:
        self._json(self.server.explorer.prior(body))

    def encode(self, body) -> None:
        ex = self.server.explorer
        latent, x = ex.encode(body)
        rec = self.server.batcher.decode(ex.latent(latent)[None])
        self._json({**latent, "index": body["index"], "original": data_url(png(x[None])),
                    "reconstruction": data_url(png(rec))})


ROUTES = {
    "GET": {"/": Handler.page, "/index.html": Handler.page, "/api/model": Handler.model_info,
            "/api/stats": Handler.stats},
    "POST": {"/api/decode": Handler.decode, "/api/traverse": Handler.traverse, "/api/prior": Handler.prior,
             "/api/encode": Handler.encode},
}


def serve(explorer: Explorer, host: str = "127.0.0.1", port: int = 0, quiet: bool = True) -> ExploreServer:
    """A bound server (not yet serving: call serve_forever, e.g. in a thread); port 0 picks a free port."""
    return ExploreServer((host, port), explorer, quiet)
