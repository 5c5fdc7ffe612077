"""What a batch of edits did: a run against the previous comparable run, and the noise across seeds.

Comparable means the same kind (full, quick, fast) and model fingerprint. Each training records its
result row in ``runs/<run_id>/result.json`` and itself as the latest of its kind in
``comparable.json``, so the comparison needs no read of the results table (a Sheets call).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .agreement import edit_agreement
from .history import read_json, write_json
from .runs import load_predictions, read_result, write_result

SEED_FIELDS = ["seeds", "val_mean", "val_std", "test_mean", "test_std"]
EFFECT_FIELDS = ["compared_run", "val_change", "test_change", "edits", "edits_model_agrees", "edits_old_agreed"]
COMPARABLE_FILE = "comparable.json"


def seed_fields(runs: list[dict[str, float]]) -> dict[str, str]:
    """Mean and sample standard deviation of val and test accuracy over the seeds' runs (pure).

    ``runs`` has one {"val": accuracy, "test": accuracy} per seed; a split without rows is None.
    The spread is blank for a single seed: one training says nothing about the noise.
    """
    out = {"seeds": str(len(runs))}
    for split in ("val", "test"):
        values = [r[split] for r in runs if r.get(split) is not None]
        out[f"{split}_mean"] = f"{np.mean(values):.4f}" if values else ""
        out[f"{split}_std"] = f"{np.std(values, ddof=1):.4f}" if len(values) > 1 else ""
    return out


def mean_score(result: dict, split: str) -> float | None:
    """The seeds' mean when recorded, else the single training's accuracy (rows from before seeds)."""
    for column in (f"{split}_mean", f"{split}_accuracy"):
        try:
            return float(result.get(column, ""))
        except (TypeError, ValueError):
            continue
    return None


def score_change(result: dict, previous: dict, split: str) -> str:
    """'+0.0250': this run's mean minus the previous comparable run's; blank when either is missing."""
    now, before = mean_score(result, split), mean_score(previous, split)
    return "" if now is None or before is None else f"{now - before:+.4f}"


Z_95 = 1.959964  # the normal quantile of a two-sided 95% interval


def wilson_half_width(accuracy: float, n: int, z: float = Z_95) -> float:
    """Half the width of the Wilson score interval of an accuracy measured on ``n`` rows (pure).

    The noise a score carries from which rows happen to be in the split: 0.683 on 813 rows is
    0.683 +- 0.032. Wilson rather than the plain normal interval, which collapses to 0 at 0 and 1.
    """
    if n <= 0:
        return float("nan")
    centre_spread = accuracy * (1 - accuracy) / n + z * z / (4 * n * n)
    return z * float(np.sqrt(centre_spread)) / (1 + z * z / n)


def score_noise(result: dict, split: str) -> dict | None:
    """A split's score, its change against the previous comparable run and the noise it is judged by (pure).

    With seeds the noise is the measured spread, 2 standard deviations of the seeds' scores;
    without, the 95% Wilson half-width of the previous score (or this one, on a first run) on the
    split's rows. None when the split has no score.
    """
    score = mean_score(result, split)
    if score is None:
        return None
    change = float(result[f"{split}_change"]) if result.get(f"{split}_change") else None
    was = None if change is None else round(score - change, 4)
    seeds, std = int(result.get("seeds") or 1), result.get(f"{split}_std", "")
    rows = int(result.get(f"rows_{split}") or 0)
    if seeds > 1 and std:
        noise, basis = 2 * float(std), f"spread of {seeds} seeds"
    else:
        noise, basis = wilson_half_width(score if was is None else was, rows), f"noise of {rows} rows"
    return {"score": score, "was": was, "change": change, "noise": round(noise, 4), "basis": basis,
            "within_noise": None if change is None else abs(change) <= noise}


def comparable_key(result: dict) -> str:
    return f"{result.get('kind', '')}:{result.get('model_fingerprint', '')}"


def run_predictions(state: Path, run_id: str, classes: list[str]) -> tuple[dict, dict] | None:
    """({id: label}, {id: predicted class}) a run saved, or None when gone or made under other classes."""
    saved = load_predictions(Path(state), run_id) if run_id else None
    if saved is None:
        return None
    ids, labels, proba = saved.ids, saved.labels, saved.proba
    if proba.ndim != 2 or proba.shape[1] != len(classes):
        return None
    predicted = [classes[k] for k in proba.argmax(1)] if len(proba) else []
    return dict(zip(ids, labels)), dict(zip(ids, predicted))


def effect_fields(state: Path, result: dict, labels: dict[str, str], predicted: dict[str, str],
                  classes: list[str]) -> dict[str, str]:
    """Score change and edit agreement against the previous comparable run (blank fields on the first)."""
    previous_id = read_json(Path(state) / COMPARABLE_FILE, {}).get(comparable_key(result), "")
    previous = read_result(Path(state), previous_id) if previous_id else {}
    out = dict.fromkeys(EFFECT_FIELDS, "")
    if not previous:
        return out
    out.update(compared_run=previous_id, val_change=score_change(result, previous, "val"),
               test_change=score_change(result, previous, "test"))
    old = run_predictions(state, previous_id, classes)
    if old is not None:
        out.update({k: str(v) for k, v in edit_agreement(*old, labels, predicted).items()})
    return out


def record_run(state: Path, run_id: str, result: dict) -> None:
    """Keep the run's result row with its files and make it the one the next comparable run compares with."""
    write_result(Path(state), run_id, result)
    latest = read_json(Path(state) / COMPARABLE_FILE, {})
    latest[comparable_key(result)] = run_id
    write_json(Path(state) / COMPARABLE_FILE, latest)
