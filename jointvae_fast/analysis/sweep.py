"""Evaluate every kept checkpoint of a run (metrics only) -> sweep.json and sweep.png (metrics against the step).

Keep checkpoints along the way with the training flags --keep-every N (or a large --keep).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..progress import Progress
from ..store.run_layout import list_checkpoints
from .figures import plots
from .report import INACTIVE_KL, jsonable, measure
from .sources import EvaluationError, load_source
from .split import EvalSplit


def sweep_record(m: dict[str, Any]) -> dict[str, Any]:
    """The per-checkpoint summary of one metrics dict (None where the data does not allow a number)."""
    info = m["discrete_information"] or {}
    mig = m["mig"] or {}
    az = m["azimuth"] or {}
    return {
        "step": m["step"], "recon_nll": m["recon_nll"], "kl_cont_sum": m["kl_cont_sum"], "kl_disc": m["kl_disc"],
        "tc": m["total_correlation"]["joint"]["tc"],
        "accuracy_hungarian": m["accuracy"]["hungarian"] if m["accuracy"] else None,
        "factor_accuracy": {k: v["hungarian"] for k, v in (m["factor_accuracy"] or {}).items()},
        "mig": mig.get("mig"), "azimuth_r": az.get("circular_linear_r"),
        "azimuth_pair_rho": az.get("pair_circular_correlation"),
        "information": {k: v["information"] for k, v in info.items()},
        "classes_in_use": {k: v["classes_in_use"] for k, v in info.items()},
        "active_units": len(m["active_units"]), "warnings": m["warnings"],
    }


def sweep(run_dir, data: EvalSplit, out, device="cpu", progress: bool = True,
          inactive_kl: float = INACTIVE_KL) -> dict[str, Any]:
    """Measure every checkpoint of `run_dir` on `data`; write out/sweep.json and out/sweep.png; return the json."""
    run_dir, out = Path(run_dir), Path(out)
    found = list_checkpoints(run_dir)
    if not found:
        raise EvaluationError(f"--sweep: {run_dir} has no checkpoints (checkpoints/step-*.pt)")
    records = []
    with Progress(len(found), "evaluating checkpoints", unit="ckpt", enable=None if progress else False) as bar:
        for _, path in found:
            records.append(sweep_record(measure(load_source(path), data, device, False, inactive_kl).metrics))
            bar.update(1)
    result = {"run": str(run_dir), "dataset": data.name, "n_test": data.images.shape[0],
              "inactive_threshold": inactive_kl, "checkpoints": records}
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(jsonable(result), indent=2) + "\n")
    plots.sweep_figure(records, out / "sweep.png")
    return result
