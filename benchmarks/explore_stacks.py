"""Which HTTP stack for the explorer: its own server (the standard library's, hardened) against a prototype of
the decode route on starlette + uvicorn, and the server before hardening; the numbers behind docs/explorer.md's
choice. Not part of benchmarks/run.py: uvicorn and starlette are no dependency of the project.

    pip install --target STACKS_DIR uvicorn starlette          # h11; add httptools uvloop for the fast arm
    git archive 288fb4c | tar -x -C BEFORE_DIR                 # the explorer before hardening (optional)
    python benchmarks/explore_stacks.py --site STACKS_DIR [--site-fast STACKS_FAST_DIR] [--before BEFORE_DIR]
                                        [--rounds 3] [--json PATH]

Each arm is a fresh server process serving pretrained:fashion-mnist (no test images), measured by
explore_suite.measure (1, 10, 100 clients, `--requests` decodes each), the arms alternating round by round.
The prototype (`serve` below) runs the same Explorer, DecodeBatcher and PNG code; a request awaits its
batcher future without a thread. It has neither the token nor the Host check.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import explore_suite  # noqa: E402
from benchmarks.machine import describe  # noqa: E402


def serve(source: str, port: int, http: str) -> None:
    """The prototype: GET /api/model and POST /api/decode on starlette, run by uvicorn (`http`: h11|httptools)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from jointvae_fast.explore import ApiError, build_explorer
    from jointvae_fast.explore.batcher import DecodeBatcher
    from jointvae_fast.explore.server import REQUEST_TIMEOUT_S, png

    explorer = build_explorer(source, use_dataset=False)
    batcher = DecodeBatcher(explorer.decode)

    async def model(request):
        return JSONResponse(explorer.info())

    async def decode(request):
        try:
            lat = explorer.latent(json.loads(await asyncio.wait_for(request.body(), REQUEST_TIMEOUT_S)))
        except ApiError as e:
            return JSONResponse({"error": e.message}, e.status)
        except (ValueError, asyncio.TimeoutError) as e:
            return JSONResponse({"error": str(e)}, 400)
        f: Future = Future()
        batcher._queue.put((lat, f))  # what DecodeBatcher.decode does, without blocking the event loop
        return Response(png((await asyncio.wrap_future(f))[None]), media_type="image/png",
                        headers={"Cache-Control": "no-store"})

    app = Starlette(routes=[Route("/api/model", model), Route("/api/decode", decode, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", http=http)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, p: subprocess.Popen) -> None:
    for _ in range(600):
        if p.poll() is not None:
            raise RuntimeError(f"the server exited: {p.stderr.read()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start listening in 60 s")


def start(arm: str, source: str, site: str | None, site_fast: str | None, before: str | None):
    """(process, url) of one arm: explorer, before, uvicorn-h11, uvicorn-httptools."""
    if arm in ("explorer", "before"):
        cwd = ROOT if arm == "explorer" else Path(before)
        p = subprocess.Popen([sys.executable, "-m", "jointvae_fast.explore", source, "--no-browser", "--no-dataset"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
        return p, p.stdout.readline().split(" at ", 1)[1].split()[0]
    port, http = _free_port(), arm.split("-", 1)[1]
    path = [x for x in (site_fast if http == "httptools" else None, site, str(ROOT)) if x]
    code = (f"import sys; sys.path[:0] = {path!r}; from benchmarks.explore_stacks import serve; "
            f"serve({source!r}, {port}, {http!r})")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=ROOT)
    _wait_listening(port, p)
    return p, f"http://127.0.0.1:{port}/"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=explore_suite.SOURCE)
    ap.add_argument("--site", help="folder holding uvicorn and starlette (pip install --target)")
    ap.add_argument("--site-fast", help="folder holding httptools and uvloop (the uvicorn-httptools arm)")
    ap.add_argument("--before", help="a tree of the explorer before hardening (the before arm)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    arms = (["before"] if args.before else []) + ["explorer"] + (
        ["uvicorn-h11"] if args.site else []) + (["uvicorn-httptools"] if args.site and args.site_fast else [])
    rows = []
    for rnd in range(args.rounds):
        for arm in arms:
            p, url = start(arm, args.source, args.site, args.site_fast, args.before)
            try:
                got = explore_suite.measure(url, explore_suite.CLIENTS, args.requests, pid=p.pid)
            finally:
                p.terminate()
                p.wait(30)
            for r in got:
                rows.append({"arm": arm, "round": rnd, **r})
                print(f"{arm:18} round {rnd} {r['clients']:>4} clients: failed {r['failed']:>3}, p50 "
                      f"{r['p50_ms']:7.1f} ms, p95 {r['p95_ms']:7.1f} ms, max {r['max_ms']:8.0f} ms, "
                      f"{r['req_per_s']:5.0f} req/s, server CPU {r['server_cpu_ms_per_request']:.2f} ms/req",
                      flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": describe(), "source": args.source, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
