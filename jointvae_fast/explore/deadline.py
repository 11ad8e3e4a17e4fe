"""Reading a request against the clock: once its first byte is in, the whole request (request line, headers,
body) must arrive within the request timeout, however slowly the bytes trickle; between requests a
kept-alive connection may stay silent for the idle timeout.

    reader = DeadlineReader(sock, idle_s); rfile = io.BufferedReader(reader)
    rfile.peek(1)                       # waits up to idle_s for a request (socket.timeout after that)
    reader.start(request_s)             # from now on a read past the deadline raises RequestTimeout
    ... read the request ...; reader.stop()
"""
from __future__ import annotations

import io
import socket
import time


class RequestTimeout(Exception):
    """The request did not arrive whole before its deadline (answered 408)."""


class DeadlineReader(io.RawIOBase):
    """The reading side of a socket; each read waits at most until the request's deadline (time.monotonic),
    or idle_s when no request is under way."""

    def __init__(self, sock: socket.socket, idle_s: float):
        self._sock, self.idle_s = sock, idle_s
        self.deadline: float | None = None

    def start(self, request_s: float) -> None:
        self.deadline = time.monotonic() + request_s

    def stop(self) -> None:
        self.deadline = None

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if self.deadline is None:
            self._sock.settimeout(self.idle_s)
            return self._sock.recv_into(buf)  # socket.timeout (a TimeoutError) after idle_s
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise RequestTimeout
        self._sock.settimeout(left)
        try:
            return self._sock.recv_into(buf)
        except TimeoutError:
            raise RequestTimeout from None
