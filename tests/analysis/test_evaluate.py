"""End to end: a tiny model trained here with TrainStep -> checkpoint -> evaluate's main -> report.

Data: procedural 32x32 images of a bar through the centre at angle `azimuth`
whose length/thickness depends on a discrete `chair_type` (3 kinds).
"""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from jointvae_fast.analysis.cli import main as evaluate_main
from jointvae_fast.analysis.encoding import Encoded, encode_split, kl_per_latent
from jointvae_fast.analysis.metrics.information import class_table, table_information
from jointvae_fast.analysis.report import INACTIVE_KL, METRIC_FIELDS, discrete_blocks
from jointvae_fast.analysis.report_html import _contingency_tables
from jointvae_fast.analysis.split import eval_split
from jointvae_fast.store import checkpoint
from jointvae_fast.analysis.metrics.accuracy import hungarian_accuracy
from jointvae_fast.analysis.figures.editing import Edit, edit_images, edit_strip, parse_edit
from jointvae_fast.model import JointVAE
from jointvae_fast.objective import Capacity, Objective
from jointvae_fast.training.step import TrainStep, make_optimizer
from jointvae_fast.grids.traversal import mode_latent
from jointvae_fast.analysis.figures.plots import read_training_log

STEPS = 40
CONT, DISC = 4, [3]


def bar_images(types, azimuth_deg, size=32):
    """uint8 [N, 1, size, size]: a bar at angle azimuth through the centre; type sets length and thickness."""
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    t = np.deg2rad(azimuth_deg)[:, None, None]
    along = xx[None] * np.cos(t) + yy[None] * np.sin(t)
    across = -xx[None] * np.sin(t) + yy[None] * np.cos(t)
    length = np.array([6.0, 10.0, 14.0])[types][:, None, None]
    width = np.array([1.0, 2.0, 3.0])[types][:, None, None]
    img = (np.abs(along) <= length) & (np.abs(across) <= width) & (along >= -length / 3)  # asymmetric: a full circle
    return torch.from_numpy((img * 255).astype(np.uint8)[:, None])


def make_dataset(n, seed, labels=True, factors=True):
    rng = np.random.default_rng(seed)
    types = rng.integers(0, 3, n)
    az = rng.uniform(0, 360, n)
    ds = SimpleNamespace(test=bar_images(types, az), image_size=(1, 32, 32))
    ds.test_labels = types if labels else None
    ds.test_factors = {"chair_type": types, "azimuth": az} if factors else {}
    ds.factor_names = list(ds.test_factors)
    return ds


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory (checkpoints/, log.jsonl, config.json) of a 32x32 model trained STEPS steps here."""
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("run")
    train = make_dataset(512, seed=1).test.float() / 255
    model = JointVAE((1, 32, 32), CONT, DISC)
    objective = Objective(tuple(DISC), Capacity(0.0, 5.0, 100, 30.0), Capacity(0.0, 1.0, 100, 30.0))
    step = TrainStep(model, make_optimizer(model, 2e-3), objective, generator=torch.Generator().manual_seed(0))
    model.train()
    g = torch.Generator().manual_seed(2)
    lines = []
    for s in range(1, STEPS + 1):
        terms = step(train[torch.randint(0, len(train), (32,), generator=g)], s)
        if s % 10 == 0:
            lines.append(json.dumps({"step": s, "loss": float(terms.total.detach()), "kl_cont": terms.kl_cont.tolist(),
                                     "kl_disc": terms.kl_disc.tolist(), "c_cont": terms.c_cont, "c_disc": terms.c_disc}))
    assert math.isfinite(float(terms.total.detach()))
    checkpoint.save(run / "checkpoints" / f"step-{STEPS:08d}.pt", model.eval(),
                    meta={"dataset": "synthetic-chairs", "preset": "chairs", "step": STEPS})
    (run / "log.jsonl").write_text("\n".join(lines) + "\n{not json\n")
    (run / "config.json").write_text(json.dumps({"dataset": "synthetic-chairs"}))
    return run


ALWAYS = ["kl_units.png", "ranked_traversals.png", "kl_training.png", "class_usage.png", "traversal_c0.png",
          "samples_by_class.png", "class_unit_grid.png", "reconstructions.png", "editing.png"]


def _report(out):
    metrics = json.loads((out / "metrics.json").read_text())
    index = (out / "index.html").read_text()
    for name in metrics["figures"]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        assert f'src="{name}"' in index
    return metrics, index


def test_report_with_factors_has_every_figure_and_field(run_dir, tmp_path, capsys):
    ds = make_dataset(300, seed=3)
    out = tmp_path / "report"
    rc = evaluate_main([str(run_dir), "--out", str(out), "--no-progress", "--edit", "z0=1.5", "c0=2", "--device", "cpu"],
                       dataset=ds)
    assert rc == 0
    m, index = _report(out)
    tc = m["total_correlation"]  # tests/analysis/test_total_correlation_split.py checks the numbers
    assert (tc["estimator"], tc["dataset_size"], tc["batch"], tc["seed"]) == ("mss", 300, 150, 0)  # 2 batches
    for part in ("joint", "continuous"):
        assert tc[part]["kl"] == pytest.approx(tc[part]["tc"] + tc[part]["index_code_mi"] + tc[part]["dim_kl"])
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["tc"] == pytest.approx(tc["joint"]["tc"])
    assert "joint: TC / index-code I / dimension-wise KL (nats, MSS)" in index
    assert set(m) == set(METRIC_FIELDS)
    missing = [k for k, v in m.items() if v is None]
    assert not missing, missing
    for name in ALWAYS + ["azimuth_scatter.png"]:
        assert name in m["figures"], name
    assert any(n.startswith("traversal_z") for n in m["figures"])
    assert m["source_kind"] == "run" and m["step"] == STEPS and m["dataset"] == "synthetic-chairs"
    assert m["n_test"] == 300 and m["edits"] == ["z0=1.5", "c0=2"]
    assert len(m["kl_cont"]) == CONT and len(m["kl_disc"]) == 1
    assert sorted(m["ranked_latents"]) == sorted([f"z{j}" for j in range(CONT)] + ["c0"])
    assert 0.0 <= m["mig"]["mig"] <= 1.0 and set(m["mig"]["gaps"]) == {"chair_type", "azimuth"}
    assert 0.0 <= m["azimuth"]["circular_linear_r"] <= 1.0 and m["azimuth"]["unit"] in m["azimuth"]["per_unit_r"]
    assert m["factor_accuracy"]["chair_type"]["variable"] == "c0"
    assert 1 / 3 - 0.1 < m["accuracy"]["hungarian"] <= m["accuracy"]["majority"] <= 1.0

    # the numbers agree with independent computations on the same model and images
    model = checkpoint.load_model(run_dir / "checkpoints" / f"step-{STEPS:08d}.pt")
    x = ds.test.float() / 255
    with torch.no_grad():
        mu, logvar, logits = model.encode(x)
    kl = (0.5 * (mu.double() ** 2 + logvar.double().exp() - 1 - logvar.double())).mean(0)
    np.testing.assert_allclose(m["kl_cont"], kl.numpy(), rtol=1e-4, atol=1e-6)
    # the continuous information bound from the textbook Gaussian KL to the moment-matched aggregate
    v, mean = logvar.double().exp(), mu.double().mean(0)
    s2 = (v + mu.double() ** 2).mean(0) - mean ** 2
    info = (0.5 * ((s2 / v).log() + (v + (mu.double() - mean) ** 2) / s2 - 1)).mean(0)
    np.testing.assert_allclose(m["info_cont"], info.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.add(m["info_cont"], m["agg_kl_cont"]), m["kl_cont"], rtol=1e-6, atol=1e-8)
    assert m["info_cont_sum"] == pytest.approx(sum(m["info_cont"]))
    p = torch.softmax(logits.double(), 1)
    np.testing.assert_allclose(m["kl_disc"], [(math.log(3) + (p * p.log()).sum(1)).mean().item()], rtol=1e-4, atol=1e-7)
    assert m["accuracy"]["hungarian"] == pytest.approx(hungarian_accuracy(logits.argmax(1).numpy(), ds.test_labels).accuracy)
    assert m["active_units"] == [j for j in np.argsort(-kl.numpy(), kind="stable") if kl[j] > INACTIVE_KL]

    # information of the discrete variable, computed directly; I + KL(q(c) || p) is the fused op's KL_c
    d = m["discrete_information"]["c0"]
    ent = lambda q: -(q * q.log()).sum(-1)  # noqa: E731
    assert d["information"] == pytest.approx((ent(p.mean(0)) - ent(p).mean()).item(), rel=1e-6, abs=1e-9)
    assert d["information"] + d["aggregate_kl"] == pytest.approx(m["kl_disc"][0], rel=1e-5, abs=1e-8)
    np.testing.assert_allclose(d["class_usage"], np.bincount(logits.argmax(1).numpy(), minlength=3) / 300)
    by_type = torch.stack([p[torch.from_numpy(ds.test_labels == t)].mean(0) for t in range(3)])
    share = torch.from_numpy(np.bincount(ds.test_labels, minlength=3) / 300)
    direct = (ent(p.mean(0)) - (share * ent(by_type)).sum()).item()
    assert m["factor_information"]["c0"]["chair_type"]["information"] == pytest.approx(direct, rel=1e-6, abs=1e-9)
    assert m["factor_information"]["c0"]["azimuth"]["bins"] == 12
    assert "What each discrete variable captures" in index
    # the contingency tables: argmax class x factor bin, counted directly; I(c; f) is the MI of the posterior mass
    cls, az_bins = logits.argmax(1).numpy(), np.linspace(0, 360, 13)
    ct, classes_edges = m["factor_contingency"]["c0"], np.arange(4) - 0.5
    assert ct["chair_type"]["bins"] == ["0", "1", "2"] and ct["azimuth"]["bins"][:2] == ["[0, 30)", "[30, 60)"]
    by_type = np.histogram2d(cls, ds.test_labels, bins=[classes_edges, classes_edges])[0]
    np.testing.assert_array_equal(ct["chair_type"]["counts"], by_type)
    by_az = np.histogram2d(cls, ds.test_factors["azimuth"], bins=[classes_edges, az_bins])[0]
    np.testing.assert_array_equal(ct["azimuth"]["counts"], by_az)
    for f in ("chair_type", "azimuth"):
        np.testing.assert_allclose(np.sum(ct[f]["counts"], 1), np.array(d["class_usage"]) * 300, rtol=0, atol=1e-9)
    az_codes = np.floor(ds.test_factors["azimuth"] / 30).astype(int)
    assert table_information(class_table(p.numpy(), az_codes, 12)) == pytest.approx(
        m["factor_information"]["c0"]["azimuth"]["information"], rel=1e-9, abs=1e-12)
    assert "Classes against factors" in index and "<caption>c0</caption>" in index
    assert '<th class=g colspan="12">azimuth</th>' in index
    rule = d["kl"] > 0.5 and d["information"] < 0.25 * d["kl"]
    cont_rule = m["kl_cont_sum"] > 0.5 and m["info_cont_sum"] < 0.25 * m["kl_cont_sum"]
    assert d["confident_but_uninformative"] == rule and len(m["warnings"]) == int(rule) + int(cont_rule)
    assert any("continuous units are confident but uninformative" in w for w in m["warnings"]) == cont_rule
    assert m["azimuth"]["candidates"] == [f"z{j}" for j in m["active_units"]]


def test_report_with_labels_only(run_dir, tmp_path):
    ckpt_file = run_dir / "checkpoints" / f"step-{STEPS:08d}.pt"
    out = tmp_path / "labelled"
    assert evaluate_main([str(ckpt_file), "--out", str(out), "--no-progress", "--limit", "100", "--inactive-kl", "0.3"],
                         dataset=make_dataset(200, seed=4, factors=False)) == 0
    m, _ = _report(out)
    assert m["inactive_threshold"] == 0.3
    assert m["active_units"] == sorted((j for j in range(CONT) if m["kl_cont"][j] > 0.3), key=lambda j: -m["kl_cont"][j])
    assert m["source_kind"] == "checkpoint" and m["n_test"] == 100
    for name in ALWAYS:  # the log is found from the checkpoint's run directory
        assert name in m["figures"], name
    assert "azimuth_scatter.png" not in m["figures"]
    assert m["accuracy"] is not None and m["mig"] is None and m["azimuth"] is None and m["factor_accuracy"] is None
    assert len(m["edits"]) == 5  # default: the top unit at -2..2


def _as_paper_state_dict(model):
    """Our state dict in the layout of the paper's published code (heads split out of to_posterior)."""
    sd = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("to_posterior")}
    w, b = model.to_posterior.weight.detach(), model.to_posterior.bias.detach()
    d = model.cont
    sd.update({"fc_mean.weight": w[:d], "fc_mean.bias": b[:d], "fc_log_var.weight": w[d:2 * d], "fc_log_var.bias": b[d:2 * d]})
    off = 2 * d
    for i, k in enumerate(model.disc):
        sd[f"fc_alphas.{i}.weight"], sd[f"fc_alphas.{i}.bias"] = w[off:off + k], b[off:off + k]
        off += k
    return {k: v.contiguous() for k, v in sd.items()}


def test_paper_checkpoint_folder_source(run_dir, tmp_path):
    model = checkpoint.load_model(run_dir / "checkpoints" / f"step-{STEPS:08d}.pt")
    folder = tmp_path / "official"
    folder.mkdir()
    torch.save(_as_paper_state_dict(model), folder / "model.pt", _use_new_zipfile_serialization=False)
    (folder / "specs.json").write_text(json.dumps({"latent_spec": {"cont": CONT, "disc": DISC}, "dataset": "mnist"}))
    ds = make_dataset(150, seed=5, factors=False)
    out_ref, out_ours = tmp_path / "official_eval", run_dir / "eval"  # the default report folders
    assert evaluate_main([str(folder), "--no-progress"], dataset=ds) == 0
    assert evaluate_main([str(run_dir), "--no-progress"], dataset=ds) == 0
    ref, ours = json.loads((out_ref / "metrics.json").read_text()), json.loads((out_ours / "metrics.json").read_text())
    assert ref["source_kind"] == "paper" and ref["dataset"] == "mnist" and ref["step"] is None
    np.testing.assert_allclose(ref["kl_cont"], ours["kl_cont"], rtol=1e-5, atol=1e-7)
    assert ref["accuracy"]["hungarian"] == ours["accuracy"]["hungarian"]


def test_a_code_equal_to_the_type_gives_a_diagonal_contingency_table():
    """Hand-made logits whose argmax is the type, on a split whose types have names (label_names, no labels): a
    diagonal table with named columns, I(c; type) = H(type), and the HTML table with the diagonal in bold."""
    ds = make_dataset(90, seed=12, labels=False)
    ds.label_names = ("short", "mid", "long")
    split = eval_split(ds, "bars")
    assert split.value_names == {"chair_type": ("short", "mid", "long")}
    t = split.factors["chair_type"]
    enc = Encoded(torch.zeros(90, 0), torch.zeros(90, 0), torch.from_numpy(40.0 * np.eye(3)[t]).float(), 0.0)
    info, fi, ct, _ = discrete_blocks(enc, [3], np.zeros(1), split.factors, split.value_names)
    table, n = ct["c0"]["chair_type"], np.bincount(t, minlength=3)
    assert table["bins"] == ["short", "mid", "long"] and n.min() > 0
    np.testing.assert_array_equal(table["counts"], np.diag(n))
    assert np.sum(ct["c0"]["azimuth"]["counts"]) == 90
    assert fi["c0"]["chair_type"]["normalized"] == pytest.approx(1.0, abs=1e-9)
    assert table_information(table["counts"]) == pytest.approx(fi["c0"]["chair_type"]["information"], rel=1e-9)
    page = _contingency_tables({"factor_contingency": ct, "discrete_information": info})
    assert f"<th>1 ({100 * n[1] / 90:.1f}%)</th><td class=g>0</td><td><b>{n[1]}</b></td><td>0</td>" in page
    assert "<th class=g>short</th><th>mid</th><th>long</th>" in page


def test_bad_inputs_exit_2_with_message(run_dir, tmp_path, capsys):
    assert evaluate_main([str(tmp_path / "nothing"), "--no-progress"], dataset=make_dataset(10, 0)) == 2
    assert "does not exist" in capsys.readouterr().err
    big = SimpleNamespace(test=torch.zeros(4, 1, 64, 64, dtype=torch.uint8))
    assert evaluate_main([str(run_dir), "--out", str(tmp_path / "x"), "--no-progress"], dataset=big) == 2
    assert "(1, 32, 32)" in capsys.readouterr().err
    assert evaluate_main([str(run_dir), "--out", str(tmp_path / "y"), "--no-progress", "--edit", "z9=1"],
                         dataset=make_dataset(10, 0)) == 2
    assert "z9" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert evaluate_main([str(run_dir), "--no-progress", "--device", "cuda"], dataset=make_dataset(10, 0)) == 2
        assert "no CUDA GPU" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert evaluate_main([str(tmp_path / "junk.pt"), "--no-progress"], dataset=make_dataset(10, 0)) == 2
    assert "error:" in capsys.readouterr().err


def test_editing_matches_manual_decode():
    torch.manual_seed(0)
    model = JointVAE((1, 32, 32), 3, [4]).eval()
    x = torch.rand(5, 1, 32, 32)
    edits = [parse_edit("z1=2.5"), parse_edit("c0=3"), parse_edit("0=-1")]
    strip = edit_strip(model, x, edits)
    assert strip.shape == (5, 5, 1, 32, 32)
    with torch.no_grad():
        mu, _, logits = model.encode(x)
        base = mode_latent(mu, logits, model.disc)
        torch.testing.assert_close(strip[:, 0], x)
        torch.testing.assert_close(strip[:, 1], torch.sigmoid(model.decode(base)))
        z = base.clone()
        z[:, 1] = 2.5
        torch.testing.assert_close(strip[:, 2], torch.sigmoid(model.decode(z)))
        c = base.clone()
        c[:, 3:] = torch.tensor([0.0, 0.0, 0.0, 1.0])
        torch.testing.assert_close(strip[:, 3], torch.sigmoid(model.decode(c)))
        torch.testing.assert_close(edit_images(model, x, edits[2]), strip[:, 4])
    assert edits[2] == Edit("z", 0, -1.0) and str(edits[1]) == "c0=3"
    for bad in ["z1", "q1=2", "c0=1.5", "z1=nan"]:
        with pytest.raises(ValueError):
            parse_edit(bad)
    with pytest.raises(ValueError, match="classes 0..3"):
        edit_strip(model, x, [parse_edit("c0=4")])


def test_read_training_log_skips_bad_lines(run_dir):
    recs = read_training_log(run_dir / "log.jsonl")
    assert [r["step"] for r in recs] == [10, 20, 30, 40]
    assert len(recs[0]["kl_cont"]) == CONT


class _Lazy:
    """A split materialised on demand: __len__ and gather(indices) -> uint8 [B, C, H, W]."""

    def __init__(self, images):
        self.images = images
        self.calls = 0

    def __len__(self):
        return len(self.images)

    def gather(self, idx):
        self.calls += 1
        return self.images[idx]


def test_lazily_gathered_split_gives_the_same_metrics(run_dir, tmp_path):
    ds = make_dataset(120, seed=6)
    lazy = SimpleNamespace(**{**vars(ds), "test": _Lazy(ds.test)})
    split = eval_split(lazy, "x", limit=100)
    assert split.images.shape == (100, 1, 32, 32) and torch.equal(split.images[3:57], ds.test[3:57])
    assert evaluate_main([str(run_dir), "--out", str(tmp_path / "l"), "--no-progress", "--limit", "100"], dataset=lazy) == 0
    m = json.loads((tmp_path / "l" / "metrics.json").read_text())
    assert lazy.test.calls > 0 and m["n_test"] == 100
    model = checkpoint.load_model(run_dir / "checkpoints" / f"step-{STEPS:08d}.pt")
    enc = encode_split(model, ds.test[:100], "cpu", batch_size=7, progress=False)
    kl_cont, kl_disc = kl_per_latent(enc, model.disc)
    np.testing.assert_allclose(m["kl_cont"], kl_cont, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(m["kl_disc"], kl_disc, rtol=1e-5, atol=1e-8)


def test_label_count_mismatch_is_an_error(run_dir, tmp_path, capsys):
    ds = make_dataset(50, seed=7)
    ds.test_labels = ds.test_labels[:40]
    assert evaluate_main([str(run_dir), "--out", str(tmp_path / "m"), "--no-progress"], dataset=ds) == 2
    assert "test_labels" in capsys.readouterr().err


@pytest.mark.parametrize("cont, disc", [(3, []), (0, [4, 2])])
def test_continuous_only_and_discrete_only_models(tmp_path, cont, disc):
    torch.manual_seed(0)
    path = tmp_path / "m.pt"
    checkpoint.save(path, JointVAE((1, 32, 32), cont, disc), meta={"dataset": "synthetic-chairs"})
    assert evaluate_main([str(path), "--no-progress"], dataset=make_dataset(40, seed=8)) == 0
    m = json.loads((tmp_path / "m_eval" / "metrics.json").read_text())
    assert len(m["kl_cont"]) == cont and len(m["kl_disc"]) == len(disc)
    assert (m["accuracy"] is None) == (not disc) and (m["azimuth"] is None) == (cont == 0)
    assert ("samples_by_class.png" in m["figures"]) == bool(disc)
    assert ("editing.png" in m["figures"]) == bool(cont)
    assert m["mig"]["mig"] is not None  # at least two latents in both cases


def test_with_the_data_module_synthetic_chairs(tmp_path):
    data = pytest.importorskip("jointvae_fast.data", reason="jointvae_fast.data not available")
    ds = data.load_dataset("synthetic-chairs", train_count=8, test_count=120, cache=False, progress=False)
    torch.manual_seed(0)
    path = tmp_path / "chairs.pt"
    checkpoint.save(path, JointVAE((1, 64, 64), 4, [7]), meta={"dataset": "synthetic-chairs"})
    assert evaluate_main([str(path), "--no-progress", "--out", str(tmp_path / "r")], dataset=ds) == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["dataset"] == "synthetic-chairs" and m["n_test"] == 120
    assert set(m["mig"]["gaps"]) <= set(ds.factor_names) and "azimuth" in m["mig"]["gaps"]
    assert m["azimuth"]["factor"] == "azimuth" and "type" in m["factor_accuracy"]
    # an untrained model has no active unit: no unit is reported (inactive units are never candidates)
    assert m["active_units"] == [] and m["azimuth"]["unit"] is None and m["azimuth"]["pair"] is None
    assert "azimuth_scatter.png" not in m["figures"]
    fi = m["factor_information"]["c0"]
    assert set(fi) == set(ds.factor_names) and fi["type"]["bins"] == 7 and fi["azimuth"]["bins"] == 12
    assert fi["elevation"]["bins"] == 2 and fi["seat_width"]["bins"] == 10
    ct = m["factor_contingency"]["c0"]
    present = sorted(set(ds.test_factors["type"].tolist()))
    assert ct["type"]["bins"] == [data.synthetic_chairs.CHAIR_TYPES[v] for v in present]
    assert all(np.sum(ct[f]["counts"]) == 120 for f in ds.factor_names)


def test_confident_but_uninformative_code_warns(tmp_path, capsys):
    """Logits that ignore the image and favour one class: KL_c large, I(x; c) = 0 -> a warning."""
    torch.manual_seed(0)
    model = JointVAE((1, 32, 32), 2, [4])
    with torch.no_grad():
        rows = slice(2 * model.cont, None)  # the logits rows of the posterior head
        model.to_posterior.weight[rows] = 0.0
        model.to_posterior.bias[rows] = torch.tensor([8.0, 0.0, 0.0, 0.0])
    path = tmp_path / "flat.pt"
    checkpoint.save(path, model, meta={"dataset": "synthetic-chairs"})
    assert evaluate_main([str(path), "--no-progress"], dataset=make_dataset(60, seed=9)) == 0
    m = json.loads((tmp_path / "flat_eval" / "metrics.json").read_text())
    d = m["discrete_information"]["c0"]
    assert d["kl"] > 1.0 and d["information"] == pytest.approx(0.0, abs=1e-9) and d["classes_in_use"] == 1
    assert d["confident_but_uninformative"] and len(m["warnings"]) == 1
    assert "warning: c0 is confident but uninformative" in capsys.readouterr().err
    assert all(v["information"] == pytest.approx(0.0, abs=1e-9) for v in m["factor_information"]["c0"].values())


def test_sweep_evaluates_every_kept_checkpoint(tmp_path, capsys):
    """A tiny run trained here by the training CLI (bar images), 3 checkpoints kept by --keep-every."""
    from jointvae_fast.train import main as train_main

    ds = make_dataset(120, seed=10)
    ds.train = make_dataset(256, seed=11).test
    run = tmp_path / "run"
    assert train_main(["--dataset", "mnist", "--cont", "3", "--disc", "3", "--batch-size", "16", "--steps", "6",
                       "--save-every", "2", "--keep", "1", "--keep-every", "2", "--log-every", "2", "--no-images",
                       "--out", str(run)], dataset=ds) == 0
    out = tmp_path / "sweep"
    assert evaluate_main(["--sweep", str(run), "--out", str(out), "--no-progress"], dataset=ds) == 0
    result = json.loads((out / "sweep.json").read_text())
    assert [r["step"] for r in result["checkpoints"]] == [2, 4, 6] and (out / "sweep.png").stat().st_size > 0
    assert not (out / "metrics.json").exists()  # metrics only, no report
    # each record is what a full evaluation of that checkpoint reports
    one = tmp_path / "one"
    assert evaluate_main([str(run / "checkpoints" / "step-00000004.pt"), "--out", str(one), "--no-progress"],
                         dataset=ds) == 0
    m, rec = json.loads((one / "metrics.json").read_text()), result["checkpoints"][1]
    assert rec["recon_nll"] == pytest.approx(m["recon_nll"], rel=1e-9)
    assert rec["accuracy_hungarian"] == m["accuracy"]["hungarian"] and rec["mig"] == pytest.approx(m["mig"]["mig"])
    assert rec["information"]["c0"] == pytest.approx(m["discrete_information"]["c0"]["information"], rel=1e-9, abs=1e-12)
    assert rec["azimuth_r"] == m["azimuth"]["circular_linear_r"]
    assert rec["factor_accuracy"] == {"chair_type": m["factor_accuracy"]["chair_type"]["hungarian"]}
    capsys.readouterr()
    assert evaluate_main(["--sweep", str(run / "checkpoints" / "step-00000004.pt"), "--no-progress"], dataset=ds) == 2
    assert "--sweep needs a run directory" in capsys.readouterr().err
