"""index.html of an evaluation report: the headline numbers, then each figure with its one-line caption."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:auto} img{max-width:100%}\n"
          "figure{margin:1.5em 0} td{padding:2px 10px}\n"
          ".ct{overflow-x:auto;margin:0.5em 0} .ct table{border-collapse:collapse;font-size:80%}\n"
          ".ct td,.ct th{padding:1px 4px;text-align:right} .ct .g{border-left:1px solid #999}")


def _tc_rows(tc: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """The decomposition of the KL (metrics["total_correlation"]) as one row per part of the latent."""
    if not tc:
        return []
    return [(f"{on}: TC / index-code I / dimension-wise KL (nats, {tc['estimator'].upper()})",
             f"{v['tc']:.3f} / {v['index_code_mi']:.3f} / {v['dim_kl']:.3f}")
            for on, v in ((on, tc[on]) for on in ("joint", "continuous")) if v]


def _summary_rows(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    """(label, value) of the numbers shown above the figures."""
    rows = [("dataset", metrics["dataset"]), ("test images", metrics["n_test"]),
            ("step", metrics["step"]), ("KL_z (sum over units)", metrics["kl_cont_sum"]),
            ("I(x; z) bound (sum over units, nats)", metrics["info_cont_sum"]),
            ("KL_c (sum over variables)", metrics["kl_disc_sum"]),
            *_tc_rows(metrics["total_correlation"]),
            ("active continuous units", ", ".join(f"z{j}" for j in metrics["active_units"]) or "none"),
            ("reconstruction NLL (nats/image)", metrics["recon_nll"])]
    if metrics["accuracy"]:
        a = metrics["accuracy"]
        rows += [(f"accuracy of {a['variable']} (Hungarian)", a["hungarian"]),
                 (f"accuracy of {a['variable']} (majority)", a["majority"])]
    if metrics["mig"]:
        rows.append(("MIG", metrics["mig"]["mig"]))
    for f, a in (metrics["factor_accuracy"] or {}).items():
        rows.append((f"{f}: accuracy of {a['variable']} (Hungarian)", a["hungarian"]))
    for name, d in (metrics["discrete_information"] or {}).items():
        rows.append((f"{name}: I(x; c) / KL(q(c) || p(c)) / KL_c (nats)",
                     f"{d['information']:.3f} / {d['aggregate_kl']:.3f} / {d['kl']:.3f}"))
        rows.append((f"{name}: classes in use", f"{d['classes_in_use']} of {len(d['class_usage'])}"))
    if metrics["azimuth"]:
        az = metrics["azimuth"]
        rows.append((f"azimuth: circular-linear R of {az['unit'] or 'an active unit (none)'}", az["circular_linear_r"]))
        if az.get("pair"):
            rows.append((f"azimuth: Fisher-Lee rho of angle({az['pair'][0]}, {az['pair'][1]})",
                         az["pair_circular_correlation"]))
    rows.append(("encoding time (s)", metrics["encode_seconds"]))
    return rows


def _factor_table(metrics: dict[str, Any]) -> str:
    """<table> of I(c; factor) in nats and normalised by H(factor): one row per discrete variable."""
    fi = metrics.get("factor_information")
    if not fi:
        return ""
    factors = list(next(iter(fi.values())))
    head = "".join(f"<th>{html.escape(f)} ({fi[next(iter(fi))][f]['bins']} bins)</th>" for f in factors)

    def cell(v):
        norm = "-" if v["normalized"] is None else f"{v['normalized']:.2f}"
        return f"<td>{v['information']:.3f} ({norm})</td>"

    body = "".join(f"<tr><td>{html.escape(c)}</td>{''.join(cell(row[f]) for f in factors)}</tr>" for c, row in fi.items())
    return ("<h2>What each discrete variable captures</h2><p>I(c; factor) in nats (in brackets: normalised by "
            f"H(factor), 1 = the code determines the factor).</p><table><tr><th></th>{head}</tr>{body}</table>")


def _count_cells(counts: list[int]) -> str:
    """<td>s of one class's counts over one factor's bins, the largest in bold, the first opening the group."""
    top = max(counts)
    cells = [f"<b>{n}</b>" if n == top and top > 0 else str(n) for n in counts]
    return "".join(f'<td{" class=g" if b == 0 else ""}>{c}</td>' for b, c in enumerate(cells))


def _contingency_table(var: str, per_factor: dict[str, Any], usage: list[float]) -> str:
    """<table> of one discrete variable: a row per class (its usage share), a column per factor bin."""
    groups = "".join(f'<th class=g colspan="{len(t["bins"])}">{html.escape(f)}</th>' for f, t in per_factor.items())
    bins = "".join(f'<th{" class=g" if b == 0 else ""}>{html.escape(str(label))}</th>'
                   for t in per_factor.values() for b, label in enumerate(t["bins"]))
    rows = "".join(f"<tr><th>{k} ({100 * share:.1f}%)</th>"
                   f"{''.join(_count_cells(t['counts'][k]) for t in per_factor.values())}</tr>"
                   for k, share in enumerate(usage))
    return (f'<div class="ct"><table><caption>{html.escape(var)}</caption><tr><th rowspan="2">class (usage)</th>'
            f"{groups}</tr><tr>{bins}</tr>{rows}</table></div>")


def _contingency_tables(metrics: dict[str, Any]) -> str:
    """One contingency table (class x factor bin counts) per discrete variable."""
    ct = metrics.get("factor_contingency")
    if not ct:
        return ""
    tables = "".join(_contingency_table(v, t, metrics["discrete_information"][v]["class_usage"]) for v, t in ct.items())
    return ("<h2>Classes against factors</h2><p>Test images by argmax class (rows) and factor bin (columns, the bins "
            "of the table above); the largest count of each row within a factor in bold. I(c; factor) above is "
            f"computed from the posteriors q(c|x), not from these counts.</p>{tables}")


def _img_tag(out: Path, name: str) -> str:
    """An <img>; small image grids are shown enlarged (up to 4x, to about 720 px) with sharp pixels."""
    from PIL import Image

    with Image.open(out / name) as im:
        w = im.width
    scale = max(1, min(4, 720 // max(w, 1)))
    style = f' style="width:{w * scale}px;image-rendering:pixelated"' if scale > 1 else ""
    return f'<img src="{html.escape(name)}" alt="{html.escape(name)}"{style}>'


def write_html(out: Path, metrics: dict[str, Any], figures: dict[str, str]) -> Path:
    """Write out/index.html for `metrics` and `figures` (file name -> caption); returns its path."""
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))

    table = "\n".join(f"<tr><td>{html.escape(str(k))}</td><td>{fmt(v)}</td></tr>" for k, v in _summary_rows(metrics))
    figs = "\n".join(
        f"<figure>{_img_tag(out, name)}<figcaption><b>{html.escape(name)}</b>: "
        f"{html.escape(caption)}</figcaption></figure>"
        for name, caption in figures.items()
    )
    source = html.escape(str(metrics["source"]))
    warn = "".join(f"<p><b>warning:</b> {html.escape(w)}</p>" for w in metrics.get("warnings") or [])
    text = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Joint-VAE evaluation: {source}</title>
<style>{_STYLE}</style></head><body>
<h1>Joint-VAE evaluation</h1>
<p>{source} ({html.escape(metrics['source_kind'])}); all numbers in metrics.json.</p>
{warn}<table>{table}</table>
{_factor_table(metrics)}
{_contingency_tables(metrics)}
{figs}
</body></html>
"""
    path = out / "index.html"
    path.write_text(text)
    return path
