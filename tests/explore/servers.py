"""Shared by the explorer's tests: a tiny test split, a tiny checkpoint, an HTTP client, a server in a thread."""
import http.client
import json
import threading
from contextlib import contextmanager
from types import SimpleNamespace

import torch

from jointvae_fast.explore import serve
from jointvae_fast.model import JointVAE
from jointvae_fast.store import checkpoint

CONT, DISC = 3, [3, 2]


def tiny_dataset(n=24, seed=0, name="tinyset"):
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(name=name, test=torch.randint(0, 256, (n, 1, 32, 32), dtype=torch.uint8, generator=g),
                           image_size=(1, 32, 32))


def tiny_checkpoint(path):
    """A 32x32 model with CONT continuous units and DISC discrete variables, saved at `path`."""
    torch.manual_seed(0)
    checkpoint.save(path, JointVAE((1, 32, 32), CONT, DISC), meta={"dataset": "tinyset", "step": 3})
    return path


@contextmanager
def serving(explorer, **kw):
    """serve(explorer, **kw) on a free loopback port, serving in a daemon thread until the block ends."""
    server = serve(explorer, **kw)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class Client:
    def __init__(self, server, host=None):
        self.host, self.port = host or server.server_address[0], server.server_address[1]

    def request(self, method, path, body=None, raw=None, headers=None):
        c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        c.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        r = c.getresponse()
        out = SimpleNamespace(status=r.status, type=r.getheader("Content-Type"), body=r.read(),
                              headers=dict(r.getheaders()))
        c.close()
        return out

    def json(self, method, path, body=None, **kw):
        r = self.request(method, path, body, **kw)
        assert r.type == "application/json", (r.status, r.body[:200])
        return r.status, json.loads(r.body)
