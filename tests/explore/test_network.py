"""The explorer on a network: bursts of clients, slow and vanishing clients, HEAD and OPTIONS, the access token.

Every test runs a real server on loopback (a tiny model) and talks to it over sockets. No test asserts a
time: a slow request must be answered 408 (the server's request timeout is cut to a fraction of a second
here), and the clients' own timeouts only bound how long a broken server can hang a test.
"""
import asyncio
import http.client
import json
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks.explore_suite import load_round
from jointvae_fast.explore import build_explorer
from jointvae_fast.explore.access import Access, check_token
from jointvae_fast.explore.deadline import DeadlineReader, RequestTimeout
from jointvae_fast.explore.server import ROUTES, SERVER_METHODS
from jointvae_fast.explore.session import ApiError
from jointvae_fast.errors import UserInputError
from tests.explore.servers import CONT, DISC, Client, serving, tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789"
LATENT = {"z": [0.5] * CONT, "c": [0] * len(DISC)}
SHORT_S = 0.5  # the request timeout of the servers here


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    return build_explorer(str(tiny_checkpoint(tmp_path_factory.mktemp("network") / "tiny.pt")), use_dataset=False)


@pytest.fixture(scope="module")
def server(explorer):
    with serving(explorer, request_timeout=SHORT_S, idle_timeout=2.0) as s:
        yield s


def raw_exchange(server, data: bytes, close_write: bool = False) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it (at most 30 s)."""
    with socket.create_connection(server.server_address[:2], timeout=30) as s:
        s.sendall(data)
        if close_write:
            s.shutdown(socket.SHUT_WR)
        return s.makefile("rb").read()


def status_of(reply: bytes) -> int:
    return int(reply.split(b"\r\n", 1)[0].split()[1])


def decode_request(body: bytes, length: int | None = None, host="127.0.0.1") -> bytes:
    n = len(body) if length is None else length
    return (f"POST /api/decode HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {n}\r\n\r\n").encode() + body


# ---------------------------------------------------------------- load
def test_hundreds_of_clients_at_once_are_all_answered(server):
    """300 connections opened at the same moment, two decodes each: every request gets a 200."""
    host, port = server.server_address[:2]
    info = {"cont": CONT, "disc": DISC}
    row = asyncio.run(asyncio.wait_for(load_round(host, port, 300, 2, info, seed=1), 240))
    assert row["answered"] == 600 and row["failed"] == 0, row["errors"]


def test_a_connection_burst_beyond_the_thread_cap_waits_and_is_answered(explorer):
    """More clients than max_connections: the rest wait in the listen backlog, none is refused."""
    with serving(explorer, max_connections=8) as s:
        host, port = s.server_address[:2]
        row = asyncio.run(asyncio.wait_for(load_round(host, port, 100, 1, {"cont": CONT, "disc": DISC}), 240))
        assert row["answered"] == 100 and row["failed"] == 0, row["errors"]
        status, stats = Client(s).json("GET", "/api/stats")
        assert status == 200 and stats["peak_connections"] <= 8


# ---------------------------------------------------------------- slow and vanishing clients
@pytest.mark.parametrize("partial", [
    decode_request(b'{"z": [0', length=40),  # the body stops short of its Content-Length
    b"POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le",  # the headers stop
    b"GET /api/mod",  # the request line stops
], ids=["body", "headers", "request line"])
def test_a_request_that_stops_short_is_answered_408(server, partial):
    reply = raw_exchange(server, partial)
    assert status_of(reply) == 408, reply[:200]
    assert b'{"error": "the request did not arrive whole within 0.5 s"}' in reply and b"Connection: close" in reply
    assert Client(server).request("POST", "/api/decode", LATENT).status == 200


def test_a_request_trickling_in_byte_by_byte_is_answered_408(server):
    """The deadline covers the whole request, not each read: bytes keep coming, yet it times out."""
    request = decode_request(json.dumps(LATENT).encode())
    with socket.create_connection(server.server_address[:2], timeout=30) as s:
        for i in range(len(request)):
            if select.select([s], [], [], 0.05)[0]:  # the server answered (about 6 s in all if it never does)
                break
            s.sendall(request[i:i + 1])
        reply = s.makefile("rb").read()
    assert status_of(reply) == 408, reply[:200]


def test_slow_clients_free_their_threads(explorer):
    """With room for 4 connections, 4 clients that never finish their request hold no thread for long: a
    5th, normal client is answered once their requests time out (before the fix it waited forever)."""
    with serving(explorer, max_connections=4, request_timeout=SHORT_S) as s:
        stuck = [socket.create_connection(s.server_address[:2], timeout=30) for _ in range(4)]
        try:
            for c in stuck:
                c.sendall(decode_request(b"{", length=100))
            r = Client(s).request("POST", "/api/decode", LATENT)
            assert r.status == 200 and r.type == "image/png"
            for c in stuck:
                assert status_of(c.makefile("rb").read()) == 408
        finally:
            for c in stuck:
                c.close()


def test_a_body_cut_off_by_the_client_is_a_400(server):
    reply = raw_exchange(server, decode_request(b'{"z": [', length=30), close_write=True)
    assert status_of(reply) == 400 and b"the body ended after 7 of the 30 bytes" in reply


def test_a_chunked_body_is_411_and_the_connection_closes(server):
    reply = raw_exchange(server, b"POST /api/prior HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"2\r\n{}\r\n0\r\n\r\n")
    assert status_of(reply) == 411 and reply.count(b"HTTP/1.1") == 1  # the chunks were not read as a request


def _reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a RST
    sock.close()


def test_a_client_that_hangs_up_is_no_traceback(server, monkeypatch, capsys):
    """Hang-ups while the server writes the answer and while it reads the request: no traceback on stderr,
    one line each with quiet=False, and the server carries on."""
    monkeypatch.setattr(server, "quiet", False)
    hung_up, decoding = threading.Event(), threading.Event()
    decode = server.batcher._decode

    def slow_decode(latents):
        decoding.set()
        hung_up.wait(30)
        return decode(latents)

    monkeypatch.setattr(server.batcher, "_decode", slow_decode)
    c = socket.create_connection(server.server_address[:2], timeout=30)
    c.sendall(decode_request(json.dumps(LATENT).encode()))
    decoding.wait(30)
    _reset(c)  # gone before the answer
    time.sleep(0.2)  # let the RST land before the server writes (ordering, not a timing assertion)
    hung_up.set()
    monkeypatch.setattr(server.batcher, "_decode", decode)
    c = socket.create_connection(server.server_address[:2], timeout=30)
    c.sendall(b"POST /api/decode HTTP/1.1\r\n")
    time.sleep(0.1)
    _reset(c)  # gone in the middle of the request
    assert Client(server).request("POST", "/api/decode", LATENT).status == 200
    err = ""
    for _ in range(300):  # the handler threads log when they notice (at most 30 s)
        err += capsys.readouterr().err
        if err.count("connection dropped") >= 2:
            break
        time.sleep(0.1)
    assert "Traceback" not in err and err.count("connection dropped") == 2, err


# ---------------------------------------------------------------- HEAD and OPTIONS
@pytest.mark.parametrize("path", ["/", "/index.html", "/static/explore.js", "/static/explore.css", "/api/model",
                                  "/api/stats"])
def test_head_answers_the_get_headers_without_a_body(server, path):
    """HEAD then GET pipelined on one connection: the GET's status line must follow HEAD's headers at once."""
    host = "Host: 127.0.0.1"
    reply = raw_exchange(server, f"HEAD {path} HTTP/1.1\r\n{host}\r\n\r\n"
                                 f"GET {path} HTTP/1.1\r\n{host}\r\nConnection: close\r\n\r\n".encode())
    head, rest = reply.split(b"\r\n\r\n", 1)
    get_head, body = rest.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ") and get_head.startswith(b"HTTP/1.1 200 "), reply[:300]
    fields = lambda h: dict(line.split(": ", 1) for line in h.decode().split("\r\n")[1:])  # noqa: E731
    assert fields(head)["Content-Type"] == fields(get_head)["Content-Type"]
    if path != "/api/stats":  # the stats move between the two requests
        assert int(fields(head)["Content-Length"]) == len(body) > 0


def test_head_of_a_post_route_is_405_with_allow(server):
    r = Client(server).request("HEAD", "/api/decode")
    assert r.status == 405 and r.headers["Allow"] == "OPTIONS, POST" and r.body == b""


@pytest.mark.parametrize("path,allow", [("/", "GET, HEAD, OPTIONS"), ("/api/model", "GET, HEAD, OPTIONS"),
                                        ("/api/decode", "OPTIONS, POST"), ("*", "GET, HEAD, OPTIONS, POST")])
def test_options_answers_204_with_allow(server, path, allow):
    r = Client(server).request("OPTIONS", path)
    assert r.status == 204 and r.headers["Allow"] == allow and r.body == b""


def test_every_route_answers_options_and_405_names_allow(server):
    for path, methods in ROUTES.items():
        r = Client(server).request("OPTIONS", path)
        assert r.status == 204 and set(r.headers["Allow"].split(", ")) >= set(methods) | {"OPTIONS"}
        wrong = "POST" if "GET" in methods else "GET"
        r = Client(server).request(wrong, path, raw=b"{}" if wrong == "POST" else None)
        assert r.status == 405 and r.headers["Allow"] == Client(server).request("OPTIONS", path).headers["Allow"]
    assert set(SERVER_METHODS) == {"GET", "HEAD", "OPTIONS", "POST"}


# ---------------------------------------------------------------- access
@pytest.fixture(scope="module")
def guarded(explorer):
    with serving(explorer, token=TOKEN) as s:
        yield s


def test_a_token_server_prints_the_token_in_its_url(guarded):
    assert guarded.url.endswith(f"/?token={TOKEN}") and guarded.access.token == TOKEN


@pytest.mark.parametrize("path,method", [("/", "GET"), ("/static/explore.js", "GET"), ("/api/model", "GET"),
                                         ("/api/decode", "POST"), ("/api/decode", "OPTIONS"), ("/api/model", "HEAD"),
                                         ("/no/such/path", "GET")])
def test_without_the_token_every_request_is_403(guarded, path, method):
    c = Client(guarded)
    r = c.request(method, path, raw=json.dumps(LATENT).encode() if method == "POST" else None)
    assert r.status == 403
    if method != "HEAD":
        assert "needs its access token" in json.loads(r.body)["error"]


@pytest.mark.parametrize("headers,query", [
    ({"Authorization": "Bearer wrong-token-0123456789"}, ""),
    ({}, "?token=wrong"),
    ({}, f"?token={TOKEN[:-1]}"),
    ({}, f"?token={TOKEN}x"),
    ({"Cookie": f"jvae_explore_1={TOKEN}"}, ""),  # another port's cookie
    ({"Cookie": "jvae_explore_{port}=wrong"}, ""),
    ({"Authorization": f"Basic {TOKEN}"}, ""),
])
def test_a_wrong_token_is_403(guarded, headers, query):
    port = guarded.server_address[1]
    headers = {k: v.format(port=port) for k, v in headers.items()}
    status, j = Client(guarded).json("GET", "/api/model" + query, headers=headers)
    assert status == 403 and "token" in j["error"]


def test_the_right_token_by_header_query_or_cookie(guarded):
    c, port = Client(guarded), guarded.server_address[1]
    assert c.request("GET", "/api/model", headers={"Authorization": f"Bearer {TOKEN}"}).status == 200
    assert c.request("GET", f"/api/model?token={TOKEN}").status == 200
    assert c.request("POST", f"/api/decode?token={TOKEN}", LATENT).type == "image/png"
    cookie = {"Cookie": f"other=1; jvae_explore_{port}={TOKEN}"}
    assert c.request("POST", "/api/decode", LATENT, headers=cookie).status == 200
    assert c.request("GET", "/", headers=cookie).type.startswith("text/html")


def test_opening_the_page_with_the_token_sets_a_cookie_and_drops_the_token(guarded):
    r = Client(guarded).request("GET", f"/?token={TOKEN}")
    assert r.status == 303 and r.headers["Location"] == "/"
    port = guarded.server_address[1]
    assert r.headers["Set-Cookie"] == f"jvae_explore_{port}={TOKEN}; Path=/; HttpOnly; SameSite=Strict"


def test_tokens_are_compared_in_constant_time(monkeypatch):
    """The comparison goes through hmac.compare_digest (its time does not depend on where bytes differ)."""
    import hmac

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    access = Access(TOKEN, 1234, False)
    with pytest.raises(ApiError):
        access.check({"Authorization": "Bearer nope-nope-nope"}, "")
    assert access.check({}, f"token={TOKEN}") == "query"
    assert calls == [(b"nope-nope-nope", TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())]


@pytest.mark.parametrize("host,status", [("127.0.0.1:{port}", 200), ("localhost:{port}", 200), ("[::1]:{port}", 200),
                                         ("LOCALHOST", 200), ("evil.example:{port}", 403), ("192.168.1.5:{port}", 403),
                                         ("localhost.evil.example", 403)])
def test_a_loopback_server_without_token_answers_its_own_host_names_only(server, host, status):
    """A page elsewhere that rebinds its own name to 127.0.0.1 sends its own name as Host: refused."""
    got, j = Client(server).json("GET", "/api/model", headers={"Host": host.format(port=server.server_address[1])})
    assert got == status, j
    if status == 403:
        assert "is not this machine" in j["error"]


def test_ipv6_loopback(explorer):
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    with serving(explorer, host="::1") as s:
        assert s.url.startswith("http://[::1]:") and s.access.loopback and s.access.token is None
        c = http.client.HTTPConnection("::1", s.server_address[1], timeout=30)
        c.request("GET", "/api/model")  # Host: [::1]:PORT, a loopback name
        assert c.getresponse().status == 200
        c.close()


@pytest.mark.parametrize("token,ok", [("a" * 8, True), ("A-b_c.d~0123", True), ("short", False), ("has space12", False),
                                      ("semi;colon12", False), ("é" * 10, False), ("x" * 257, False)])
def test_user_tokens_must_be_url_and_cookie_safe(token, ok):
    if ok:
        assert check_token(token) == token
    else:
        with pytest.raises(UserInputError, match="--token must be 8 to 256 characters"):
            check_token(token)


def _cli(ckpt, *args):
    return subprocess.Popen([sys.executable, "-m", "jointvae_fast.explore", str(ckpt), "--no-browser", "--no-dataset",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _url_and_stderr(p):
    line = p.stdout.readline()
    assert " at http://" in line, (line, p.stderr.read() if p.poll() is not None else "")
    return line.split(" at ", 1)[1].split()[0]


def _stop(p) -> str:
    p.terminate()
    p.wait(30)
    err = p.stderr.read()
    p.stdout.close()
    p.stderr.close()
    return err


def _get(port, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def test_cli_beyond_loopback_generates_a_token_and_warns(tmp_path):
    p = _cli(tiny_checkpoint(tmp_path / "tiny.pt"), "--host", "0.0.0.0")
    try:
        url = _url_and_stderr(p)
        assert url.startswith("http://0.0.0.0:") and "/?token=" in url
        port, token = int(url.split(":")[2].split("/")[0]), url.split("?token=")[1]
        assert len(token) == 32
        assert _get(port, "/api/model") == 403
        assert _get(port, f"/api/model?token={token}") == 200
        assert _get(port, "/api/model", {"Host": "evil.example"}) == 403
    finally:
        err = _stop(p)
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "beyond this machine: anyone who has the token" in warnings[0], err


def test_cli_no_token_beyond_loopback_says_it_is_open(tmp_path):
    p = _cli(tiny_checkpoint(tmp_path / "tiny.pt"), "--host", "0.0.0.0", "--no-token")
    try:
        port = int(_url_and_stderr(p).split(":")[2].split("/")[0])
        assert _get(port, "/api/model", {"Host": "anything.example"}) == 200
    finally:
        err = _stop(p)
    assert "warning: listening on 0.0.0.0" in err and "ANYONE who can reach it (--no-token)" in err


def test_cli_token_on_loopback(tmp_path):
    p = _cli(tiny_checkpoint(tmp_path / "tiny.pt"), "--token", TOKEN)
    try:
        url = _url_and_stderr(p)
        assert url.startswith("http://127.0.0.1:") and url.endswith(f"/?token={TOKEN}")
        port = int(url.split(":")[2].split("/")[0])
        assert _get(port, "/api/model") == 403 and _get(port, "/api/model", {"Authorization": f"Bearer {TOKEN}"}) == 200
    finally:
        err = _stop(p)
    assert "warning" not in err


@pytest.mark.parametrize("args,message", [(["--token", "short"], "--token must be 8 to 256 characters"),
                                          (["--token", TOKEN, "--no-token"], "not allowed with argument")])
def test_cli_token_mistakes_are_one_line(tmp_path, capsys, args, message):
    from jointvae_fast.explore.__main__ import main

    try:
        status = main([str(tiny_checkpoint(tmp_path / "tiny.pt")), "--no-browser", *args])
    except SystemExit as e:  # a bad command line stops in argparse
        status = e.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err


# ---------------------------------------------------------------- the deadline reader
def test_deadline_reader_idles_then_keeps_the_request_deadline():
    a, b = socket.socketpair()
    with a, b:
        reader = DeadlineReader(a, idle_s=0.2)
        buf = bytearray(16)
        with pytest.raises(TimeoutError):  # no request under way: socket.timeout after idle_s
            reader.readinto(buf)
        b.sendall(b"abc")
        reader.start(0.3)
        assert reader.readinto(buf) == 3 and bytes(buf[:3]) == b"abc"
        with pytest.raises(RequestTimeout):  # nothing more comes: the deadline passes during the read
            reader.readinto(buf)
        with pytest.raises(RequestTimeout):  # and stays passed, even with bytes waiting
            b.sendall(b"d")
            reader.readinto(buf)
        reader.stop()
        assert reader.readinto(buf) == 1
