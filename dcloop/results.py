"""The results row of a training run: one builder, and the fields that compare it with earlier runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import table as tbl
from .scoring import Scored
from .dataset import SplitRows
from .history import History, utc_now
from .metrics import fmt
from .runs import read_flagged, state_dir


def changed_since(history: History, version: str, table: pd.DataFrame) -> int:
    """Rows whose url, label or split differ from a recorded version (all rows if there is none)."""
    if not history.has_snapshot(version):
        return len(table)
    return len(tbl.diff(history.snapshot(version), table))


def result_row(run_id, version, changed, config, checked, parts: SplitRows, val_scores, test_scores, trained,
               seconds, kind: str) -> dict:
    train_rows, val_rows, test_rows = parts
    unlabeled = checked.usable() & (checked.label == "")
    return {
        "run_id": run_id, "time_utc": utc_now(), "label_version": version, "kind": kind,
        "rows_train": str(len(train_rows)), "rows_val": str(len(val_rows)), "rows_test": str(len(test_rows)),
        "rows_unlabeled": str(int(unlabeled.sum())), "rows_flagged": str(len(checked.flags)),
        "labels_changed": str(changed),
        "val_accuracy": fmt(val_scores.get("accuracy")), "test_accuracy": fmt(test_scores.get("accuracy")),
        "val_macro_f1": fmt(val_scores.get("macro_f1")), "test_macro_f1": fmt(test_scores.get("macro_f1")),
        "best_epoch": str(trained.best_epoch), "epochs": str(config.model.epochs),
        "preset": config.model.preset, "model_fingerprint": config.model.fingerprint(),
        "images_per_s": f"{trained.images_per_s:.0f}", "duration_s": f"{seconds:.1f}",
        "threads": trained.threads_used,
    }


def previous_flags(root: Path, history: History, last: dict, table: pd.DataFrame, standing: set[str]) -> dict:
    """The realised precision of the previous run's flags (blank fields on a first run)."""
    from .review import realised_precision
    flagged = read_flagged(state_dir(root), last.get("run_id", ""))
    version = last.get("version", "")
    if not history.has_snapshot(version):
        return realised_precision([], table, table, standing)
    return realised_precision(flagged, history.snapshot(version), table, standing)


def seed_and_comparison_fields(root: Path, checked: tbl.Validated, scored: Scored, result: dict,
                               classes: list[str], seed_runs: list[dict]) -> dict[str, str]:
    """The result row's seeds block, its change against the previous comparable run, and expert agreement."""
    from .agreement import expert_agreement, expert_cells
    from .effect import effect_fields, seed_fields
    fields = seed_fields(seed_runs)
    predicted = dict(zip(scored.rows["id"], [classes[k] for k in scored.proba.argmax(1)])) if len(scored.rows) else {}
    labels = {i: label for i, label in zip(checked.table["id"], checked.label) if label in classes}
    expert, _ = expert_cells(checked.table, classes)
    fields.update(effect_fields(state_dir(root), {**result, **fields}, labels, predicted, classes))
    return {**fields, **expert_agreement(expert, labels, predicted).fields()}


