"""python -m jointvae_fast.explore SOURCE [--port N] [--host H] [--token T | --no-token] [--no-browser]
                                  [--dataset NAME] [--data-dir DIR] [--no-dataset] [--kl-images N]
                                  [--inactive-kl NATS] [--verbose]

Serves a page to play with a trained model's latents in the browser. SOURCE: a run directory, a checkpoint
file, a folder of the paper's published model (model.pt + specs.json), or pretrained:NAME.
On a loopback address (the default) the server answers this machine only and needs no token; on any other
address it needs an access token, generated and printed in the URL unless --token gives one or --no-token
turns it off, and it warns in one line that it is reachable from the network.
"""
from __future__ import annotations

import argparse
import sys
import webbrowser
from typing import Sequence

from ..analysis.report import INACTIVE_KL
from ..analysis.sources import EvaluationError
from ..errors import ArgumentParser, run_cli
from .access import check_token, new_token
from .load import KL_IMAGES, build_explorer
from .server import serve


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m jointvae_fast.explore",
                                description="Explore a trained Joint-VAE's latents in the browser (a local server).")
    p.add_argument("source", help="run directory, checkpoint file, the paper's model folder, or pretrained:NAME")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free one, printed)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--token", help="access token every request must carry (default: a random one when --host is "
                                     "not a loopback address, none on loopback)")
    who.add_argument("--no-token", action="store_true", help="no token, even when reachable from the network")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--dataset", help="dataset (name or path) of the test images (default: the one the model was "
                   "trained on; a run on your own images reloads them with its settings)")
    p.add_argument("--data-dir", help="folder holding the dataset files")
    p.add_argument("--no-dataset", action="store_true", help="no test images (KL then from the run's records)")
    p.add_argument("--kl-images", type=int, default=KL_IMAGES, metavar="N",
                   help=f"test images the KL per unit is measured on (default {KL_IMAGES})")
    p.add_argument("--inactive-kl", type=float, default=INACTIVE_KL, metavar="NATS",
                   help=f"units with KL below this are folded away (default {INACTIVE_KL})")
    p.add_argument("--verbose", action="store_true", help="log every request")
    return p


def _start(args):
    """(explorer, listening server) for the parsed arguments; UserInputError for a bad one."""
    if not 0 <= args.port <= 65535:
        raise EvaluationError(f"--port must be in 0..65535, got {args.port}")
    if args.kl_images < 2:
        raise EvaluationError(f"--kl-images must be >= 2, got {args.kl_images}")
    token = check_token(args.token) if args.token is not None else None
    explorer = build_explorer(args.source, args.dataset, args.data_dir, not args.no_dataset,
                              kl_images=args.kl_images, inactive_kl=args.inactive_kl)
    try:
        server = serve(explorer, args.host, args.port, quiet=not args.verbose, token=token)
    except OSError as e:
        raise EvaluationError(f"cannot listen on {args.host}:{args.port}: {e}") from None
    if token is None and not args.no_token and not server.access.loopback:
        server.access = server.access.with_token(new_token())
    return explorer, server


def network_warning(server) -> str | None:
    """One line when the server is reachable beyond this machine, saying who can use it; None on loopback."""
    if server.access.loopback:
        return None
    host, port = server.server_address[:2]
    who = ("anyone who has the token in the URL below" if server.access.token else
           "ANYONE who can reach it (--no-token): the model and its test images are open to them")
    return f"warning: listening on {host}:{port}, beyond this machine: {who}"


def main(argv: Sequence[str] | None = None) -> int:
    """A bad input is one line `error: ...` (exit status 2); anything else a bug with its traceback (1)."""
    args = build_parser().parse_args(argv)
    started = []
    status = run_cli(lambda: started.append(_start(args)) or 0)
    if status:
        return status
    explorer, server = started[0]
    info = explorer.info()
    print(f"KL per unit from: {info['kl_source']}; test images: {info['test_images']['note']}", file=sys.stderr)
    warning = network_warning(server)
    if warning:
        print(warning, file=sys.stderr)
    print(f"explorer of {args.source} at {server.url} (Ctrl-C to stop)", flush=True)
    if not args.no_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
