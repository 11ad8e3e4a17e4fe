"""Who may use the explorer: an access token (as notebook servers have) and, without one, this machine only.

A request is let in when
- the server has a token and the request carries it: the header `Authorization: Bearer TOKEN`, the query
  `?token=TOKEN`, or the cookie the page got when it was opened with `?token=TOKEN` (named after the port,
  so explorers on one host keep apart; HttpOnly, SameSite=Strict); tokens are compared in constant time;
- or the server has no token and is bound to a loopback address, and the Host header (when there is one)
  names this machine (127.0.0.1, localhost, [::1]): a web page elsewhere cannot reach it by rebinding its
  own name to 127.0.0.1;
- or the server has no token and listens beyond loopback (`--no-token`): everyone who can reach it.
"""
from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass, replace
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs

from ..analysis.sources import EvaluationError
from .session import ApiError

TOKEN_RE = re.compile(r"[A-Za-z0-9._~-]{8,256}")


def new_token() -> str:
    """A fresh random token: 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


def check_token(token: str) -> str:
    """A token given by the user, or EvaluationError naming what a token may hold."""
    if not TOKEN_RE.fullmatch(token):
        raise EvaluationError(f"--token must be 8 to 256 characters of A-Z a-z 0-9 . _ ~ -, got {len(token)} "
                              "characters" + ("" if len(token) < 8 else " with others among them"))
    return token


def is_loopback(host: str) -> bool:
    """True for a loopback address (127.0.0.0/8, ::1) or the name localhost."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    """The name part of a Host header: 'localhost:8000' -> 'localhost', '[::1]:8000' -> '[::1]'."""
    if host_header.startswith("["):
        return host_header[: host_header.find("]") + 1]
    return host_header.rsplit(":", 1)[0]


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode("utf-8"))


@dataclass(frozen=True)
class Access:
    """The access rule of one server: its token (None: no token), its port and whether it is on loopback."""

    token: str | None
    port: int
    loopback: bool

    def with_token(self, token: str | None) -> "Access":
        return replace(self, token=token)

    @property
    def cookie_name(self) -> str:
        return f"jvae_explore_{self.port}"

    def cookie(self) -> str:
        """The Set-Cookie value that lets a browser in after it opened the page with ?token=."""
        return f"{self.cookie_name}={self.token}; Path=/; HttpOnly; SameSite=Strict"

    def check(self, headers, query: str) -> str | None:
        """Raise ApiError(403) unless the request may pass; return how the token came ("header", "query",
        "cookie") or None when no token is needed. `headers`: an email.message.Message (http.server's)."""
        if self.token is None:
            host = headers.get("Host")
            if self.loopback and host is not None and not is_loopback(_host_name(host.strip())):
                raise ApiError(403, f"Host {headers.get('Host')!r} is not this machine: the explorer listens on "
                                    "loopback and answers requests for a loopback address or localhost only")
            return None
        offered = []
        auth = headers.get("Authorization") or ""
        if auth[:7].lower() == "bearer ":
            offered.append(("header", auth[7:].strip()))
        offered += [("query", v) for v in parse_qs(query).get("token", [])]
        try:
            jar = SimpleCookie(headers.get("Cookie") or "")
        except CookieError:
            jar = {}
        if self.cookie_name in jar:
            offered.append(("cookie", jar[self.cookie_name].value))
        for how, given in offered:
            if _same(given, self.token):
                return how
        if offered:
            raise ApiError(403, "wrong access token: open the URL the explorer printed (it ends in ?token=...)")
        raise ApiError(403, "this explorer needs its access token: open the URL it printed (it ends in "
                            "?token=...), or send the header 'Authorization: Bearer TOKEN'")
