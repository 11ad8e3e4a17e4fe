"""Figures of a trained Joint-VAE (matplotlib, Agg: no display needed; no pyplot global state).

- kl_bar_figure: per-unit KL on the test split, units ranked, inactive units marked.
- ranked_traversal_figure: the paper's Fig. 8: each unit's KL next to its latent traversal.
- kl_training_figure: the paper's Fig. 7: KL per unit / per discrete variable over training with C_z, C_c.
- azimuth_scatter_figure: the paper's Fig. 9a: inferred value of a unit against the true azimuth.
- class_usage_figure: per discrete variable, the share of images per argmax class.
- sweep_figure: metrics of a run's checkpoints against the step.
- read_training_log: the records of a run's log.jsonl.
Each figure function writes a PNG to `path` and returns the path.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...grids.images import image_grid

DPI = 110


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def read_training_log(path) -> list[dict[str, Any]]:
    """The JSON records of a run's log.jsonl, in file order (blank or unreadable lines skipped).

    Needs per record: step, kl_cont (list [D]), kl_disc (list [V]), c_cont, c_disc.
    """
    records = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "step" in rec:
            records.append(rec)
    return records


def kl_bar_figure(kl_cont: Sequence[float], kl_disc: Sequence[float], threshold: float, path) -> Path:
    """Bars of KL (nats) per continuous unit z_j and discrete variable c_i, ranked high to low."""
    names = [f"z{j}" for j in range(len(kl_cont))] + [f"c{i}" for i in range(len(kl_disc))]
    values = np.array(list(kl_cont) + list(kl_disc), dtype=np.float64)
    kinds = ["cont"] * len(kl_cont) + ["disc"] * len(kl_disc)
    order = np.argsort(-values, kind="stable")
    fig = _figure(max(4.0, 0.28 * len(names) + 1.5), 3.2)
    ax = fig.add_subplot()
    colors = [("tab:blue" if kinds[i] == "cont" else "tab:orange") if values[i] > threshold else "lightgray" for i in order]
    ax.bar(range(len(order)), values[order], color=colors)
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([names[i] for i in order], rotation=90, fontsize=8)
    ax.axhline(threshold, color="k", lw=0.8, ls="--", label=f"inactive below {threshold:g} nats")
    ax.set_ylabel("KL on the test split (nats)")
    ax.set_title("KL per latent, ranked (blue: continuous, orange: discrete, grey: inactive)", fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)


def ranked_traversal_figure(
    names: Sequence[str], kls: Sequence[float], strips: Sequence[np.ndarray], threshold: float, path
) -> Path:
    """Fig. 8: one row per latent (ranked by the caller): its name and KL on the left, its traversal strip on the right.

    strips: per row, images [S, C, H, W] (float in [0, 1]) of that latent's traversal.
    """
    if not (len(names) == len(kls) == len(strips)) or not names:
        raise ValueError(f"names, kls and strips must be non-empty and of equal length, got {len(names)}, {len(kls)}, {len(strips)}")
    rows = len(names)
    width = max(len(s) for s in strips)
    fig = _figure(2.5 + 0.6 * width, 0.62 * rows + 0.4)
    grid = fig.add_gridspec(rows, 2, width_ratios=[1.6, 0.6 * width], wspace=0.05, hspace=0.08)
    kmax = max(max(kls), threshold, 1e-12)
    for r, (name, kl, strip) in enumerate(zip(names, kls, strips)):
        axb = fig.add_subplot(grid[r, 0])
        axb.barh([0], [kl], color="tab:blue" if kl > threshold else "lightgray")
        axb.set_xlim(0, kmax * 1.05)
        axb.set_yticks([])
        axb.text(0.02, 0.5, f"{name}  {kl:.2f}", transform=axb.transAxes, va="center", fontsize=8)
        if r < rows - 1:
            axb.set_xticks([])
        else:
            axb.set_xlabel("KL (nats)", fontsize=8)
        axi = fig.add_subplot(grid[r, 1])
        g = image_grid(strip, nrow=len(strip), padding=1)
        axi.imshow(g[:, :, 0] if g.shape[2] == 1 else g, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        axi.axis("off")
    return _save(fig, path)


def kl_training_figure(records: Sequence[dict[str, Any]], path) -> Path:
    """Fig. 7: KL per continuous unit (left) and per discrete variable (right) against the step, with C_z and C_c."""
    if not records:
        raise ValueError("records is empty: the run's log has no lines")
    steps = np.array([r["step"] for r in records], dtype=np.float64)
    kc = np.array([r.get("kl_cont", []) for r in records], dtype=np.float64).reshape(len(records), -1)
    kd = np.array([r.get("kl_disc", []) for r in records], dtype=np.float64).reshape(len(records), -1)
    fig = _figure(10, 3.6)
    panels = [(kc, "c_cont", "C_z", "z", "continuous unit", "KL_z"), (kd, "c_disc", "C_c", "c", "discrete variable", "KL_c")]
    for p, (kl, ckey, cname, label, what, total_name) in enumerate(panels):
        ax = fig.add_subplot(1, 2, p + 1)
        if kl.shape[1]:
            final = kl[-1]
            order = np.argsort(-final, kind="stable")
            for rank, j in enumerate(order):
                ax.plot(steps, kl[:, j], lw=1.0, label=f"{label}{j}" if rank < 8 else None)
            ax.plot(steps, kl.sum(1), color="k", lw=1.5, label=f"{total_name} (sum)")
        c = np.array([r.get(ckey, math.nan) for r in records], dtype=np.float64)
        if np.isfinite(c).any():
            ax.plot(steps, c, color="k", ls="--", lw=1.2, label=cname)
        ax.set_xlabel("step")
        ax.set_ylabel("KL (nats)")
        ax.set_title(f"KL per {what} over training", fontsize=9)
        if kl.shape[1] or np.isfinite(c).any():
            ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def azimuth_scatter_figure(azimuth_deg, values, unit_name: str, r: float, path, fit=None) -> Path:
    """Fig. 9a: inferred value of `unit_name` against the true azimuth (degrees), with the fitted sinusoid."""
    az = np.asarray(azimuth_deg, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    fig = _figure(5, 3.6)
    ax = fig.add_subplot()
    ax.scatter(az, v, s=3, alpha=0.4, lw=0)
    if fit is not None:
        grid = np.linspace(az.min(), az.max(), 200)
        ax.plot(grid, fit.predict(np.deg2rad(grid)), color="tab:red", lw=1.5, label="a + b cos(azimuth - phase)")
        ax.legend(fontsize=8)
    ax.set_xlabel("true azimuth (degrees)")
    ax.set_ylabel(f"inferred {unit_name} (posterior mean)")
    ax.set_title(f"{unit_name} vs azimuth: circular-linear correlation R = {r:.3f}", fontsize=9)
    return _save(fig, path)


def class_usage_figure(usage: dict[str, Sequence[float]], information: dict[str, float], threshold: float,
                       path) -> Path:
    """One bar chart per discrete variable (name -> usage [K]), the in-use threshold dashed."""
    if not usage:
        raise ValueError("usage is empty: no discrete variable")
    fig = _figure(min(4.0 * len(usage), 14.0), 2.8)
    for p, (name, u) in enumerate(usage.items()):
        ax = fig.add_subplot(1, len(usage), p + 1)
        u = np.asarray(u, dtype=np.float64)
        ax.bar(range(len(u)), u, color=["tab:orange" if v >= threshold else "lightgray" for v in u])
        ax.axhline(threshold, color="k", lw=0.8, ls="--")
        ax.set_xticks(range(len(u)))
        ax.set_xlabel("class")
        if p == 0:
            ax.set_ylabel("share of test images")
        ax.set_title(f"{name}: {int((u >= threshold).sum())} classes in use, I(x; c) = {information[name]:.2f} nats",
                     fontsize=9)
    return _save(fig, path)


def _sweep_panels(records: Sequence[dict[str, Any]]) -> list[tuple[str, dict[str, list]]]:
    """(panel title, {series label: values per record}) of the sweep figure, panels with no number dropped."""
    get = lambda key: [r.get(key) for r in records]  # noqa: E731
    info_names = list(dict.fromkeys(k for r in records for k in (r.get("information") or {})))
    first_factor = next(iter(records[0].get("factor_accuracy") or {}), None)  # e.g. the chairs' type
    accuracy = ({"labels": get("accuracy_hungarian")} if records[0].get("accuracy_hungarian") is not None else
                {first_factor: [(r.get("factor_accuracy") or {}).get(first_factor) for r in records]})
    panels = [
        ("accuracy of c (Hungarian)", accuracy),
        ("MIG", {"MIG": get("mig")}),
        ("azimuth correlation", {"best unit (R)": get("azimuth_r"), "best pair (|rho|)":
                                 [None if v is None else abs(v) for v in get("azimuth_pair_rho")]}),
        ("I(x; c) (nats)", {k: [(r.get("information") or {}).get(k) for r in records] for k in info_names}),
        ("recon NLL (nats/image)", {"recon NLL": get("recon_nll")}),
    ]
    return [(t, {k: v for k, v in s.items() if any(x is not None for x in v)}) for t, s in panels
            if any(x is not None for v in s.values() for x in v)]


def sweep_figure(records: Sequence[dict[str, Any]], path) -> Path:
    """Metrics of a run's checkpoints (records: step, accuracy_hungarian, factor_accuracy {factor: value}, mig,
    azimuth_r, azimuth_pair_rho, information {c<i>: nats}, recon_nll; None where absent) against the step, one
    panel per metric; the accuracy is against the labels, else against the first discrete factor."""
    panels = _sweep_panels(records)
    if not panels:
        raise ValueError("records hold no metric to plot")
    steps = np.array([np.nan if r.get("step") is None else r["step"] for r in records], dtype=np.float64)
    fig = _figure(3.2 * len(panels), 2.9)
    for p, (title, series) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1)
        for label, values in series.items():
            y = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            ax.plot(steps, y, marker="o", ms=3, lw=1.2, label=label)
        ax.set_xlabel("step")
        ax.set_title(title, fontsize=9)
        if len(series) > 1 or title.startswith("accuracy"):
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def class_members_figure(labels: Sequence[str], strips: Sequence[np.ndarray], columns: int, path) -> Path:
    """One row per class: its label on the left, then up to `columns` test images (strips[k]: float [n_k, C, H, W]
    in [0, 1], n_k may be 0: "no test image")."""
    if len(labels) != len(strips) or not labels:
        raise ValueError(f"labels and strips must be non-empty and of equal length, got {len(labels)}, {len(strips)}")
    rows = len(labels)
    fig = _figure(1.4 + 0.6 * columns, 0.62 * rows + 0.3)
    grid = fig.add_gridspec(rows, 2, width_ratios=[1.4, 0.6 * columns], wspace=0.02, hspace=0.08)
    for r, (label, strip) in enumerate(zip(labels, strips)):
        axl = fig.add_subplot(grid[r, 0])
        axl.axis("off")
        axl.text(0.0, 0.5, label, transform=axl.transAxes, va="center", fontsize=8)
        axi = fig.add_subplot(grid[r, 1])
        axi.axis("off")
        if len(strip) == 0:
            axi.text(0.0, 0.5, "(no test image)", transform=axi.transAxes, va="center", fontsize=8, color="gray")
            continue
        g = image_grid(strip, nrow=columns, padding=1)
        axi.imshow(g[:, :, 0] if g.shape[2] == 1 else g, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        axi.set_xlim(-0.5, columns * (strip.shape[-1] + 1) + 0.5)
    return _save(fig, path)
