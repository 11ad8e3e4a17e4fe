"""The explorer's HTTP server (the standard library's http.server, hardened): static page + JSON/PNG API.

    GET  /                  the page (static/index.html); GET /static/NAME: its script and style
    GET  /api/model         model, latents ordered by KL (with KL and active flag), KL source, test images
    GET  /api/stats         decoder batches and images so far, mean ms per batch, connections open (and most
                            at once so far)
    POST /api/decode        {"z": [D], "c": [V]}                       -> image/png
    POST /api/traverse      {"z", "c", "latent": "z3"|"c0", "steps"}   -> image/png strip (one row)
    POST /api/prior         {"seed": int (optional)}                   -> {"z", "c"}
    POST /api/encode        {"index": i}                               -> {"z", "c", "index", "original",
                                                                          "reconstruction"} (PNG data URLs)
Every GET route answers HEAD; OPTIONS answers 204 with Allow. Who may ask: access.py (a token, or this
machine only). On the network:
- listen backlog BACKLOG; one thread per connection, at most `max_connections` at once (more wait in the
  backlog until one closes);
- once a request's first byte is in, all of it must arrive within `request_timeout` seconds, or it is
  answered 408 and its connection closed (deadline.py); a kept-alive connection silent for `idle_timeout`
  seconds is closed;
- headers within the standard library's limits (65536 bytes a line, 100 lines), a body of at most MAX_BODY
  bytes sent with a Content-Length;
- a client that hangs up early is no error: nothing on stderr (one line with quiet=False).
Bad requests get a 4xx and {"error": message}; an unexpected exception a 500 (traceback on stderr): the
server keeps serving either way. All decoding goes through one DecodeBatcher: concurrent requests are
decoded in one batch.
"""
from __future__ import annotations

import base64
import io
import json
import socket
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import torch

from ..grids.images import image_grid
from .access import Access, is_loopback
from .batcher import DecodeBatcher
from .deadline import DeadlineReader, RequestTimeout
from .session import ApiError, Explorer

MAX_BODY = 1 << 16
BACKLOG = 1024
MAX_CONNECTIONS = 512
REQUEST_TIMEOUT_S = 5.0
IDLE_TIMEOUT_S = 15.0
STATIC = {"index.html": "text/html; charset=utf-8", "explore.js": "text/javascript; charset=utf-8",
          "explore.css": "text/css; charset=utf-8"}
PAGES = ("/", "/index.html")


def png(images: torch.Tensor, padding: int = 0) -> bytes:
    """Pixel probabilities [N, C, H, W] -> PNG bytes of one row of N images."""
    from PIL import Image

    arr = image_grid(images, nrow=images.shape[0], padding=padding, pad_value=1.0)
    buf = io.BytesIO()
    Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(buf, format="PNG")
    return buf.getvalue()


def data_url(png_bytes: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


class ExploreServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # closing does not wait for kept-alive browser connections
    request_queue_size = BACKLOG

    def __init__(self, address, explorer: Explorer, quiet: bool = True, token: str | None = None,
                 request_timeout: float = REQUEST_TIMEOUT_S, idle_timeout: float = IDLE_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS):
        self.explorer, self.quiet = explorer, quiet
        self.request_timeout, self.idle_timeout, self.max_connections = request_timeout, idle_timeout, max_connections
        self._open = self.peak_connections = 0
        self._slots = threading.Condition()
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET  # --host ::1 too
        self.batcher = DecodeBatcher(explorer.decode)
        try:
            super().__init__(address, Handler)
        except BaseException:
            self.batcher.close()
            raise
        host, port = self.server_address[:2]
        self.access = Access(token, port, is_loopback(host))

    @property
    def url(self) -> str:
        """The address to open, with ?token= when the server has a token."""
        host, port = self.server_address[:2]
        query = f"?token={self.access.token}" if self.access.token else ""
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/{query}"

    def get_request(self):
        """Accept a connection once fewer than max_connections are open; while full, the loop comes back
        (so shutdown() is heard) and the connection waits in the listen backlog."""
        with self._slots:
            if not self._slots.wait_for(lambda: self._open < self.max_connections, timeout=0.2):
                raise OSError("all connection slots are taken")  # _handle_request_noblock ignores it
            self._open += 1
            self.peak_connections = max(self.peak_connections, self._open)
        try:
            return super().get_request()
        except BaseException:
            self._release()
            raise

    def process_request(self, request, client_address) -> None:
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    @property
    def open_connections(self) -> int:
        return self._open

    def _release(self) -> None:
        with self._slots:
            self._open -= 1
            self._slots.notify()

    def shutdown_request(self, request) -> None:
        """Close after the answer; what the client sent meanwhile is read first, so the close is a FIN, not a
        reset that could destroy the answer on its way (a 408 or 413 leaves input unread)."""
        try:
            request.shutdown(socket.SHUT_WR)
            request.setblocking(False)
            for _ in range(16):
                if not request.recv(1 << 16):
                    break
        except OSError:  # nothing more to read, or the client is gone
            pass
        self.close_request(request)

    def handle_error(self, request, client_address) -> None:
        """A client that hung up or stopped reading: one line with quiet=False; anything else: the traceback."""
        e = sys.exc_info()[1]
        if isinstance(e, (ConnectionError, TimeoutError)):
            if not self.quiet:
                print(f"{client_address[0]}: connection dropped ({type(e).__name__})", file=sys.stderr)
            return
        super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self.batcher.close()


def _read_static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY: the body follows the head at once, not after the client's
    # delayed ACK of the head (40 ms a request before)
    server: ExploreServer

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # replaced by a reader that keeps the request's deadline
        self._reader = DeadlineReader(self.connection, self.server.idle_timeout)
        self.rfile = io.BufferedReader(self._reader)

    def log_message(self, fmt, *args) -> None:
        if not self.server.quiet:
            super().log_message(fmt, *args)

    def handle_one_request(self) -> None:
        """Wait (idle_timeout) for a request's first byte, then give the whole request request_timeout."""
        self.command, self.requestline, self.request_version = "", "", self.protocol_version
        try:
            if not self.rfile.peek(1):  # the client closed the connection
                self.close_connection = True
                return
        except (TimeoutError, ConnectionError):
            self.close_connection = True
            return
        self._reader.start(self.server.request_timeout)
        try:
            super().handle_one_request()
        except RequestTimeout:  # in the request line or the headers
            self.close_connection = True
            self._json({"error": self._late()}, HTTPStatus.REQUEST_TIMEOUT)
        finally:
            self._reader.stop()

    def _late(self) -> str:
        return f"the request did not arrive whole within {self.server.request_timeout:g} s"

    # ------------------------------------------------------------ plumbing
    def _send(self, status: int, body: bytes, ctype: str | None, headers: dict | None = None) -> None:
        """The response; HEAD gets the headers alone."""
        self.connection.settimeout(self.server.request_timeout)  # a client that does not read: TimeoutError
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        if status != HTTPStatus.NO_CONTENT:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", headers)

    def _has_body(self) -> bool:
        return self.headers.get("Content-Length", "0").strip() != "0" or "Transfer-Encoding" in self.headers

    def _body(self) -> Any:
        if "Transfer-Encoding" in self.headers:
            raise ApiError(411, "send the body with a Content-Length header (chunked transfer is not supported)")
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise ApiError(400, "bad Content-Length header") from None
        if n < 0 or n > MAX_BODY:
            raise ApiError(413, f"the body must be at most {MAX_BODY} bytes, got {n}")
        try:
            raw = self.rfile.read(n)
        except RequestTimeout:
            raise ApiError(408, self._late()) from None
        if len(raw) < n:
            raise ApiError(400, f"the body ended after {len(raw)} of the {n} bytes of its Content-Length")
        self._body_read = True
        self._reader.stop()
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
        method, url = self.command, urlsplit(self.path)
        path, self._body_read = url.path, False
        try:
            how = self.server.access.check(self.headers, url.query)
            if how == "query" and method in ("GET", "HEAD") and path in PAGES:
                return self._send(HTTPStatus.SEE_OTHER, b"", None,  # the token leaves the address bar
                                  {"Location": path, "Set-Cookie": self.server.access.cookie()})
            if method == "OPTIONS" and path == "*":  # the server as a whole
                return self._send(HTTPStatus.NO_CONTENT, b"", None, {"Allow": ", ".join(SERVER_METHODS)})
            allowed = allowed_methods(path)
            if method == "OPTIONS" and allowed:
                return self._send(HTTPStatus.NO_CONTENT, b"", None, {"Allow": ", ".join(allowed)})
            if method not in allowed:
                if allowed:
                    takes = " or ".join(m for m in allowed if m not in ("HEAD", "OPTIONS"))
                    raise ApiError(405, f"{path} takes {takes}, not {method}")
                raise ApiError(404, f"no such path: {path}")
            route = ROUTES[path]["GET" if method == "HEAD" else method]
            args = (self._body(),) if method == "POST" else ()
            route(self, *args)
        except ApiError as e:
            if not self._body_read and self._has_body():
                self.close_connection = True  # an unread body must not be taken for the next request
            self._json({"error": e.message}, e.status,
                       {"Allow": ", ".join(allowed_methods(path))} if e.status == 405 else None)
        except (ConnectionError, TimeoutError) as e:  # the client hung up or stopped reading
            self.close_connection = True
            self.log_message("connection dropped (%s)", type(e).__name__)
        except Exception as e:  # a bug: say so, keep serving
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            self._json({"error": f"internal error: {type(e).__name__}: {e}"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

    # ------------------------------------------------------------ routes
    def page(self) -> None:
        self._send(200, _read_static("index.html"), STATIC["index.html"])

    def static(self) -> None:
        name = urlsplit(self.path).path[len("/static/"):]
        self._send(200, _read_static(name), STATIC[name])

    def model_info(self) -> None:
        self._json(self.server.explorer.info())

    def stats(self) -> None:
        b = self.server.batcher
        self._json({"batches": b.batches, "images": b.images,
                    "ms_per_batch": 1000 * b.seconds / b.batches if b.batches else None,
                    "connections": self.server.open_connections, "peak_connections": self.server.peak_connections})

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


# path -> {method: route}; HEAD runs the GET route (headers only)
ROUTES = {
    **{p: {"GET": Handler.page} for p in PAGES},
    **{f"/static/{name}": {"GET": Handler.static} for name in STATIC if name != "index.html"},
    "/api/model": {"GET": Handler.model_info},
    "/api/stats": {"GET": Handler.stats},
    "/api/decode": {"POST": Handler.decode},
    "/api/traverse": {"POST": Handler.traverse},
    "/api/prior": {"POST": Handler.prior},
    "/api/encode": {"POST": Handler.encode},
}


def allowed_methods(path: str) -> list[str]:
    """The methods `path` answers (HEAD with GET, OPTIONS with any), sorted; [] for an unknown path."""
    methods = set(ROUTES.get(path, ()))
    if not methods:
        return []
    return sorted(methods | {"OPTIONS"} | ({"HEAD"} if "GET" in methods else set()))


SERVER_METHODS = sorted({m for path in ROUTES for m in allowed_methods(path)})


def serve(explorer: Explorer, host: str = "127.0.0.1", port: int = 0, quiet: bool = True, token: str | None = None,
          **limits) -> ExploreServer:
    """A bound server (not yet serving: call serve_forever, e.g. in a thread); port 0 picks a free port.
    token: required on every request (access.py); limits: request_timeout, idle_timeout, max_connections."""
    return ExploreServer((host, port), explorer, quiet, token, **limits)
