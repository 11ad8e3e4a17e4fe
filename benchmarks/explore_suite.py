"""Explore suite: latency of the explorer's decode requests with 1, 10 and 100 clients at once.

The server is the explorer's own CLI (`python -m jointvae_fast.explore SOURCE --no-browser --no-dataset`, a
separate process, as a user starts it); the clients are asyncio connections in this process (one thread, so
the load generator costs little CPU). Each client opens its connection at the same moment (a burst of
connects, as several tabs or people starting together), then sends `requests` decode requests one after
another on it (keep-alive, as a browser's fetch does), each with a random latent. A request's latency is from
its first byte sent to its last byte received. Rows: p50, p95 and max latency, requests per second over the
whole round, how many requests got no answer (reset, closed, timed out) or a status other than 200, and the
server process's CPU time per request (user + system, from /proc: less sensitive than latency to other jobs
on a shared machine).

    python benchmarks/run.py --suite explore [--json PATH]
    python benchmarks/explore_suite.py [--source pretrained:fashion-mnist] [--clients 1 10 100] [--json PATH]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "pretrained:fashion-mnist"
CLIENTS = (1, 10, 100)
ANSWER_TIMEOUT_S = 60.0


async def request(reader, writer, method: str, target: str, body: bytes = b"", headers: dict | None = None):
    """One HTTP/1.1 request on an open connection -> (status, headers lower-cased, body)."""
    host, port = writer.get_extra_info("peername")[:2]
    head = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("the server closed the connection without an answer")
    got = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        got[name.strip().lower()] = value.strip()
    data = b"" if method == "HEAD" else await reader.readexactly(int(got.get("content-length", "0")))
    return int(status_line.split()[1]), got, data


def decode_body(rng: random.Random, cont: int, disc: list[int]) -> bytes:
    """A random latent of the page's slider range as the JSON body of /api/decode."""
    return json.dumps({"z": [rng.uniform(-3, 3) for _ in range(cont)],
                       "c": [rng.randrange(k) for k in disc]}).encode()


async def _client(host, port, n, bodies, query, out, start: asyncio.Event) -> None:
    """Opens its connection when `start` is set, then sends n decode requests, reconnecting after a failure."""
    await start.wait()
    conn = None
    for i in range(n):
        t0 = time.perf_counter()
        try:
            if conn is None:
                conn = await asyncio.open_connection(host, port)
            status, headers, _ = await asyncio.wait_for(
                request(*conn, "POST", "/api/decode" + query, bodies[i], {"Content-Type": "application/json"}),
                ANSWER_TIMEOUT_S)
            out["latency"].append(time.perf_counter() - t0)
            if status != 200:
                out["errors"].append(f"status {status}")
            if headers.get("connection", "").lower() == "close":
                conn[1].close()
                conn = None
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError) as e:
            out["errors"].append(f"{type(e).__name__}: {e}")
            if conn is not None:
                conn[1].close()
            conn = None
    if conn is not None:
        conn[1].close()


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of process `pid` so far (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load_round(host, port, clients: int, requests: int, info: dict, query: str = "", seed: int = 0,
                     pid: int | None = None) -> dict:
    """`clients` connections opened at once, each sending `requests` random decodes -> one row (see above)."""
    rng = random.Random(seed)
    out = {"latency": [], "errors": []}
    start = asyncio.Event()
    tasks = [asyncio.create_task(_client(host, port, requests,
                                         [decode_body(rng, info["cont"], info["disc"]) for _ in range(requests)],
                                         query, out, start))
             for _ in range(clients)]
    await asyncio.sleep(0)
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    wall, cpu1 = time.perf_counter() - t0, cpu_seconds(pid)
    answered = len(out["latency"])
    return {"clients": clients, "requests": clients * requests, "answered": answered,
            "failed": len(out["errors"]), "errors": sorted(set(out["errors"]))[:5],
            "wall_s": wall, "req_per_s": answered / wall, **latency_stats(out["latency"]),
            "server_cpu_ms_per_request": 1e3 * (cpu1 - cpu0) / answered if cpu0 is not None and answered else None}


def latency_stats(seconds: list[float]) -> dict:
    """p50, p95 and max in ms (p95: the nearest-rank 95th percentile)."""
    if not seconds:
        return {"p50_ms": None, "p95_ms": None, "max_ms": None}
    s = sorted(seconds)
    return {"p50_ms": 1e3 * statistics.median(s), "p95_ms": 1e3 * s[min(len(s) - 1, -(-95 * len(s) // 100) - 1)],
            "max_ms": 1e3 * s[-1]}


async def _model_info(host, port, query) -> dict:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        status, _, body = await request(reader, writer, "GET", "/api/model" + query)
    finally:
        writer.close()
    if status != 200:
        raise RuntimeError(f"GET /api/model answered {status}: {body[:200]!r}")
    return json.loads(body)


def measure(url: str, clients=CLIENTS, requests: int = 20, warmup: int = 20, seed: int = 0,
            pid: int | None = None) -> list[dict]:
    """Rows for a running explorer at `url` (its printed URL, token included; `pid`: its process, for the CPU
    time per request): one per client count."""
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""

    async def main():
        info = await _model_info(parts.hostname, parts.port, query)
        await load_round(parts.hostname, parts.port, 1, warmup, info, query, seed)  # warm the decoder, untimed
        return [await load_round(parts.hostname, parts.port, c, requests, info, query, seed + c, pid) for c in clients]

    return asyncio.run(main())


def start_server(source: str = SOURCE, extra=()) -> tuple[subprocess.Popen, str]:
    """The explorer CLI in its own process -> (process, the URL it printed)."""
    p = subprocess.Popen([sys.executable, "-m", "jointvae_fast.explore", source, "--no-browser", "--no-dataset",
                          *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = p.stdout.readline()
    if " at http" not in line:
        p.kill()
        raise RuntimeError(f"the explorer did not start: {line!r} {p.stderr.read()[-2000:]}")
    return p, line.split(" at ", 1)[1].split()[0]


def run(source: str = SOURCE, clients=CLIENTS, requests: int = 20, extra=()) -> list[dict]:
    """Start the explorer on loopback, measure, stop it; rows carry the source."""
    p, url = start_server(source, extra)
    try:
        rows = measure(url, clients, requests, pid=p.pid)
    finally:
        p.terminate()
        p.wait(30)
        p.stdout.close()
        p.stderr.close()
    return [{"source": source, **r} for r in rows]


def format_table(rows: list[dict]) -> str:
    head = (f"{'clients':>7} {'requests':>8} {'failed':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
            f"{'req/s':>7} {'server CPU ms/req':>17}")
    lines = [head, "-" * len(head)]
    fmt = lambda v: f"{v:8.1f}" if v is not None else f"{'-':>8}"  # noqa: E731
    for r in rows:
        lines.append(f"{r['clients']:>7} {r['requests']:>8} {r['failed']:>6} {fmt(r['p50_ms'])} {fmt(r['p95_ms'])} "
                     f"{fmt(r['max_ms'])} {r['req_per_s']:7.0f} {fmt(r['server_cpu_ms_per_request']):>17}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=SOURCE)
    ap.add_argument("--url", help="measure an explorer already running at this URL (token included)")
    ap.add_argument("--clients", type=int, nargs="+", default=list(CLIENTS))
    ap.add_argument("--requests", type=int, default=20, help="decode requests per client")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = measure(args.url, args.clients, args.requests) if args.url else run(args.source, args.clients,
                                                                                args.requests)
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
