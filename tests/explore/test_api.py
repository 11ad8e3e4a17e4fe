"""The explorer's JSON/PNG API over real HTTP (server on port 0 in a thread, a tiny model made here).

Decoded images are compared with the model's own decoder output, KL with the closed-form formula, and
every bad request must get a 4xx JSON message while the server keeps answering."""
import base64
import http.client
import io
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from jointvae_fast.grids.traversal import prior_quantiles
from jointvae_fast.explore import build_explorer
from jointvae_fast.explore.batcher import DecodeBatcher
from jointvae_fast.explore.session import Z_LIMIT
from jointvae_fast.model import JointVAE
from jointvae_fast.store import checkpoint
from tests.explore.servers import CONT, DISC, Client, serving, tiny_checkpoint, tiny_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("explore") / "tiny.pt")


@pytest.fixture(scope="module")
def running(ckpt):
    ds = tiny_dataset()
    explorer = build_explorer(str(ckpt), dataset=ds)
    with serving(explorer) as server:
        yield SimpleNamespace(server=server, client=Client(server), explorer=explorer, model=explorer.model, ds=ds)


def png_array(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def expected_pixels(model, latents):
    with torch.no_grad():
        p = torch.sigmoid(model.decode(latents))
    return (p * 255).round().to(torch.uint8).numpy()[:, 0]  # [B, H, W] (1 channel)


def one_hot_latent(z, c):
    parts = [torch.tensor(z, dtype=torch.float32)]
    parts += [torch.nn.functional.one_hot(torch.tensor(v), k).float() for v, k in zip(c, DISC)]
    return torch.cat(parts)


def test_page_and_static_files(running):
    r = running.client.request("GET", "/")
    assert r.status == 200 and r.type.startswith("text/html") and b"static/explore.js" in r.body
    for name, kind in (("explore.js", "text/javascript"), ("explore.css", "text/css")):
        r = running.client.request("GET", f"/static/{name}")
        assert r.status == 200 and r.type.startswith(kind) and len(r.body) > 100


def test_model_info_orders_units_by_test_split_kl(running):
    status, info = running.client.json("GET", "/api/model")
    assert status == 200 and info["cont"] == CONT and info["disc"] == DISC and info["img_size"] == [1, 32, 32]
    x = running.ds.test.float() / 255
    with torch.no_grad():
        mu, lv, logits = running.model.encode(x)
    kl = (0.5 * (mu.double() ** 2 + lv.double().exp() - lv.double() - 1)).mean(0).numpy()
    assert [u["name"] for u in info["units"]] == [f"z{j}" for j in np.argsort(-kl, kind="stable")]
    for u in info["units"]:
        assert u["kl"] == pytest.approx(kl[u["index"]], rel=1e-5, abs=1e-9)
        assert u["active"] == (u["kl"] > info["inactive_threshold"])  # as evaluate counts active units
    q = torch.softmax(logits[:, :3].double(), 1)
    assert info["discrete"][0]["kl"] == pytest.approx(float((q * (q * 3).log()).sum(1).mean()), rel=1e-5)
    assert "test split of tinyset" in info["kl_source"] and info["test_images"]["count"] == 24


def test_decode_gives_the_decoders_image(running):
    body = {"z": [0.5, -1.0, 2.0], "c": [2, 1]}
    r = running.client.request("POST", "/api/decode", body)
    assert r.status == 200 and r.type == "image/png"
    want = expected_pixels(running.model, one_hot_latent(body["z"], body["c"])[None])[0]
    np.testing.assert_array_equal(png_array(r.body), want)
    other = running.client.request("POST", "/api/decode", {"z": [-2.0, -1.0, 2.0], "c": [0, 1]})
    assert other.body != r.body


def test_traversal_strips(running):
    body = {"z": [0.1, 0.2, 0.3], "c": [1, 0], "latent": "z1", "steps": 5}
    r = running.client.request("POST", "/api/traverse", body)
    strip = png_array(r.body)
    assert r.status == 200 and strip.shape == (34, 5 * 33 + 1)  # 1-pixel padding around 32x32 tiles
    lat = one_hot_latent(body["z"], body["c"]).repeat(5, 1)
    lat[:, 1] = prior_quantiles(5)
    want = expected_pixels(running.model, lat)
    for s in range(5):
        np.testing.assert_array_equal(strip[1:33, 1 + 33 * s: 33 + 33 * s], want[s])
    body = {"z": [0.5, 0.0, -0.5], "c": [1, 1], "latent": "c0"}
    strip = png_array(running.client.request("POST", "/api/traverse", body).body)
    assert strip.shape == (34, 3 * 33 + 1)  # one column per class of c0
    want = expected_pixels(running.model, torch.stack([one_hot_latent(body["z"], [k, 1]) for k in range(3)]))
    for k in range(3):
        np.testing.assert_array_equal(strip[1:33, 1 + 33 * k: 33 + 33 * k], want[k])


def test_prior_draws_are_valid_and_seeded(running):
    s1, a = running.client.json("POST", "/api/prior", {"seed": 7})
    s2, b = running.client.json("POST", "/api/prior", {"seed": 7})
    s3, c = running.client.json("POST", "/api/prior", {})
    assert s1 == s2 == s3 == 200 and a == b and len(c["z"]) == CONT
    assert all(0 <= v < k for v, k in zip(a["c"], DISC)) and len(a["c"]) == len(DISC)


def test_encode_returns_the_posterior_mode_and_both_images(running):
    status, j = running.client.json("POST", "/api/encode", {"index": 5})
    assert status == 200 and j["index"] == 5
    x = running.ds.test[5:6].float() / 255
    with torch.no_grad():
        mu, _, logits = running.model.encode(x)
    assert j["z"] == pytest.approx(mu[0].tolist(), abs=1e-6)
    assert j["c"] == [int(logits[0, :3].argmax()), int(logits[0, 3:].argmax())]
    original = png_array(base64.b64decode(j["original"].split(",", 1)[1]))
    np.testing.assert_array_equal(original, running.ds.test[5, 0].numpy())
    rec = png_array(base64.b64decode(j["reconstruction"].split(",", 1)[1]))
    np.testing.assert_array_equal(rec, expected_pixels(running.model, one_hot_latent(j["z"], j["c"])[None])[0])


def test_stats_count_decoded_images(running):
    _, before = running.client.json("GET", "/api/stats")
    running.client.request("POST", "/api/traverse", {"z": [0.0] * 3, "c": [0, 0], "latent": "z0", "steps": 4})
    _, after = running.client.json("GET", "/api/stats")
    assert after["images"] - before["images"] == 4 and after["batches"] > before["batches"]


def test_waiting_requests_are_decoded_in_one_batch():
    release, sizes = threading.Event(), []

    def decode(lat):
        sizes.append(lat.shape[0])
        release.wait(30)
        return lat * 2

    b = DecodeBatcher(decode)
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, b.decode(torch.full((1, 2), float(i)))))
               for i in range(6)]
    threads[0].start()
    while not sizes:  # the first latent is being decoded; the other five queue up behind it
        threading.Event().wait(0.01)
    for t in threads[1:]:
        t.start()
    while b._queue.qsize() < 5:
        threading.Event().wait(0.01)
    release.set()
    for t in threads:
        t.join(30)
    b.close()
    assert sizes == [1, 5]
    assert all(torch.equal(results[i], torch.full((1, 2), 2.0 * i)) for i in range(6))


BAD = [
    ("POST", "/api/decode", b"{not json", 400, "malformed JSON"),
    ("POST", "/api/decode", b"[1, 2]", 400, "JSON object"),
    ("POST", "/api/decode", b'{"z": [0, 0], "c": [0, 0]}', 400, "list of 3 numbers"),
    ("POST", "/api/decode", b'{"c": [0, 0]}', 400, "list of 3 numbers"),
    ("POST", "/api/decode", b'{"z": [0, 0, 11], "c": [0, 0]}', 400, "z2 = 11 is out of range"),
    ("POST", "/api/decode", b'{"z": [NaN, 0, 0], "c": [0, 0]}', 400, "z0 = nan is out of range"),
    ("POST", "/api/decode", b'{"z": [0, "a", 0], "c": [0, 0]}', 400, "z1 = 'a'"),
    ("POST", "/api/decode", b'{"z": [true, 0, 0], "c": [0, 0]}', 400, "z0 = True"),
    ("POST", "/api/decode", b'{"z": [0, 0, 0], "c": [3, 0]}', 400, "c0 must be an integer in [0, 2]"),
    ("POST", "/api/decode", b'{"z": [0, 0, 0], "c": [0, -1]}', 400, "c1 must be an integer in [0, 1]"),
    ("POST", "/api/decode", b'{"z": [0, 0, 0], "c": [0.5, 0]}', 400, "c0 must be an integer"),
    ("POST", "/api/traverse", b'{"z": [0, 0, 0], "c": [0, 0], "latent": "z99"}', 400, "unknown unit 'z99'"),
    ("POST", "/api/traverse", b'{"z": [0, 0, 0], "c": [0, 0], "latent": "c2"}', 400, "unknown unit 'c2'"),
    ("POST", "/api/traverse", b'{"z": [0, 0, 0], "c": [0, 0]}', 400, "unknown unit None"),
    ("POST", "/api/traverse", b'{"z": [0, 0, 0], "c": [0, 0], "latent": "z0", "steps": 1}', 400, "steps"),
    ("POST", "/api/traverse", b'{"z": [0, 0, 0], "c": [0, 0], "latent": "z0", "steps": 17}', 400, "steps"),
    ("POST", "/api/encode", b'{"index": 24}', 400, "index must be an integer in [0, 23]"),
    ("POST", "/api/encode", b'{"index": "3"}', 400, "index must be an integer"),
    ("POST", "/api/encode", b"{}", 400, "index"),
    ("POST", "/api/prior", b'{"seed": -1}', 400, "seed"),
    ("GET", "/api/nothing", None, 404, "no such path: /api/nothing"),
    ("GET", "/static/server.py", None, 404, "no such path"),
    ("GET", "/static/../session.py", None, 404, "no such path"),
    ("POST", "/api/model", b"{}", 405, "/api/model takes GET"),
    ("GET", "/api/decode", None, 405, "/api/decode takes POST"),
    ("DELETE", "/api/decode", None, 405, "takes POST, not DELETE"),
]


@pytest.mark.parametrize("method,path,raw,status,message", BAD, ids=[f"{m} {p} {s}" for m, p, _, s, _ in BAD])
def test_bad_requests_get_a_json_4xx_and_the_server_lives_on(running, method, path, raw, status, message):
    got, j = running.client.json(method, path, raw=raw)
    assert got == status and message in j["error"], j
    assert running.client.json("GET", "/api/model")[0] == 200


def test_oversized_body_and_garbage_request_line(running):
    got, j = running.client.json("POST", "/api/decode", raw=b"{}", headers={"Content-Length": "100000"})
    assert got == 413 and "at most" in j["error"]
    with socket.create_connection(running.server.server_address[:2], timeout=30) as s:
        s.sendall(b"GET /a b HTTP/1.1\r\n\r\n")  # four words: not a request line
        reply = s.makefile("rb").read()  # the server closes the connection after an error
    assert reply.startswith(b"HTTP/1.") and b" 400 " in reply.split(b"\r\n")[0]
    assert b'{"error": "Bad request syntax' in reply
    assert running.client.json("GET", "/api/model")[0] == 200


def test_a_bug_is_a_500_with_a_message_and_the_server_lives_on(running, monkeypatch, capsys):
    def broken(latents):
        raise RuntimeError("deliberate")

    monkeypatch.setattr(running.server.batcher, "_decode", broken)
    got, j = running.client.json("POST", "/api/decode", {"z": [0.0] * 3, "c": [0, 0]})
    assert got == 500 and "RuntimeError: deliberate" in j["error"]
    assert "deliberate" in capsys.readouterr().err  # the traceback is shown, not swallowed
    monkeypatch.undo()
    assert running.client.request("POST", "/api/decode", {"z": [0.0] * 3, "c": [0, 0]}).status == 200


def test_encode_without_test_images_says_why(ckpt):
    with serving(build_explorer(str(ckpt), use_dataset=False)) as server:
        status, info = Client(server).json("GET", "/api/model")
        assert not info["test_images"]["available"] and "--no-dataset" in info["test_images"]["note"]
        got, j = Client(server).json("POST", "/api/encode", {"index": 0})
        assert got == 409 and "--no-dataset" in j["error"]


def test_cli_serves_until_stopped(ckpt):
    p = subprocess.Popen([sys.executable, "-m", "jointvae_fast.explore", str(ckpt), "--no-browser", "--no-dataset"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = p.stdout.readline()
        assert " at http://127.0.0.1:" in line, (line, p.stderr.read() if p.poll() is not None else "")
        url = line.split(" at ", 1)[1].split()[0]
        host, port = url[len("http://"):].rstrip("/").split(":")
        c = http.client.HTTPConnection(host, int(port), timeout=30)
        c.request("GET", "/api/model")
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["cont"] == CONT
    finally:
        p.terminate()
        p.wait(30)
        p.stdout.close()
        p.stderr.close()


@pytest.mark.parametrize("argv,message", [
    (["nowhere-such"], "does not exist"),
    (["{ckpt}", "--port", "70000"], "--port must be in 0..65535"),
    (["pretrained:no-such-model"], "unknown pretrained model 'no-such-model'"),
])
def test_cli_user_errors_are_one_line(ckpt, capsys, argv, message):
    from jointvae_fast.explore.__main__ import main

    assert main([a.format(ckpt=ckpt) for a in argv] + ["--no-browser"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_z_limit_is_what_the_api_accepts(running):
    ok = running.client.request("POST", "/api/decode", {"z": [Z_LIMIT, -Z_LIMIT, 0.0], "c": [0, 0]})
    assert ok.status == 200


def test_kl_source_without_test_images(tmp_path):
    """No test split: the units are ordered by the KL of the next source (the order of the sources:
    tests/analysis/test_latent_kl.py), which the page names; inactive units are marked."""
    torch.manual_seed(0)
    model = JointVAE((1, 32, 32), CONT, DISC)
    run = tmp_path / "run"
    checkpoint.save(run / "checkpoints" / "step-00000004.pt", model, meta={"dataset": "tinyset", "step": 4})
    (run / "config.json").write_text(json.dumps({"dataset": "tinyset"}))
    (run / "log.jsonl").write_text(json.dumps({"step": 4, "kl_cont": [0.5, 0.01, 2.0], "kl_disc": [0.3, 0.1]}) + "\n")
    info = build_explorer(str(run), use_dataset=False).info()
    assert info["kl_source"].startswith("training log, line of step 4")
    assert [(u["name"], u["kl"], u["active"]) for u in info["units"]] == [
        ("z2", 2.0, True), ("z0", 0.5, True), ("z1", 0.01, False)]
    assert [d["kl"] for d in info["discrete"]] == [0.3, 0.1]

    bare = tmp_path / "bare.pt"
    checkpoint.save(bare, model)
    info = build_explorer(str(bare), use_dataset=False).info()
    assert info["kl_source"].startswith("512 prior samples")
    assert "does not record its dataset" in build_explorer(str(bare)).info()["test_images"]["note"]


def test_other_dataset_images_stand_in_but_do_not_set_the_kl(ckpt):
    info = build_explorer(str(ckpt), dataset=tiny_dataset(name="otherset")).info()
    t = info["test_images"]
    assert t["available"] and t["dataset"] == "otherset" and "stand in for tinyset" in t["note"]
    assert info["kl_source"].startswith("512 prior samples")


def test_dataset_that_cannot_be_loaded_disables_test_images(ckpt):
    info = build_explorer(str(ckpt), dataset_name="no-such-dataset").info()
    assert not info["test_images"]["available"]
    assert "dataset no-such-dataset could not be loaded: unknown dataset" in info["test_images"]["note"]
