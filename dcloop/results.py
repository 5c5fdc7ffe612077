"""The results row of a training run: one builder, and the fields that compare it with earlier runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import table as tbl
from .dataset import Dataset, SplitRows
from .scoring import Scored
from .history import History, utc_now
from .metrics import fmt
from .runs import read_flagged, state_dir


def changed_since(history: History, version: str, table: pd.DataFrame) -> int:
    """Rows whose url, label or split differ from a recorded version (all rows if there is none)."""
    if not history.has_snapshot(version):
        return len(table)
    return len(tbl.diff(history.snapshot(version), table))


@dataclass
class TrainedRun:
    """One training of a sync, as its results row reports it."""

    run_id: str
    version: str        # the label version it trained on
    kind: str           # full, quick or fast (config.SCHEDULES)
    networks: object    # training.Networks: the main network, the other seeds, the cross-fitting ones
    parts: SplitRows
    scores: dict[str, dict[str, float]]  # {"val": {...}, "test": {...}}: {} for a split without rows

    @property
    def trained(self):
        """The main network's model.Trained: its weights, predictions and scores are the run's."""
        return self.networks.main

    @property
    def other_seeds(self) -> list[dict]:
        """The val and test accuracy under seed+1, seed+2, ..."""
        return self.networks.other_seeds


def result_row(data: Dataset, run: TrainedRun, changed: int, seconds: float) -> dict:
    """The results row of a training (before the fields that compare it with earlier runs)."""
    checked, model = data.checked, data.config.model
    unlabeled = checked.usable() & (checked.label == "")
    return {
        "run_id": run.run_id, "time_utc": utc_now(), "label_version": run.version, "kind": run.kind,
        **{f"rows_{split}": str(len(rows)) for split, rows in zip(("train", "val", "test"), run.parts)},
        "rows_unlabeled": str(int(unlabeled.sum())), "rows_flagged": str(len(checked.flags)),
        "labels_changed": str(changed), **score_fields(run.scores),
        "best_epoch": str(run.trained.best_epoch), "epochs": str(model.epochs),
        "preset": model.preset, "model_fingerprint": model.fingerprint(),
        "images_per_s": f"{run.trained.images_per_s:.0f}", "duration_s": f"{seconds:.1f}",
        "threads": run.trained.threads_used,
    }


def score_fields(scores: dict[str, dict[str, float]]) -> dict[str, str]:
    """val_accuracy, test_accuracy, val_macro_f1, test_macro_f1 (blank for a split without rows)."""
    return {f"{split}_{metric}": fmt(scores.get(split, {}).get(metric))
            for metric in ("accuracy", "macro_f1") for split in ("val", "test")}


def previous_flags(root: Path, history: History, last: dict, table: pd.DataFrame, standing: set[str]) -> dict:
    """The realised precision of the previous run's flags (blank fields on a first run)."""
    from .review import realised_precision
    flagged = read_flagged(state_dir(root), last.get("run_id", ""))
    version = last.get("version", "")
    if not history.has_snapshot(version):
        return realised_precision([], table, table, standing)
    return realised_precision(flagged, history.snapshot(version), table, standing)


def seed_and_comparison_fields(data: Dataset, run: TrainedRun, scored: Scored, result: dict) -> dict[str, str]:
    """The result row's seeds block, its change against the previous comparable run, and expert agreement."""
    from .agreement import expert_agreement, expert_cells
    from .effect import effect_fields, seed_fields
    checked, classes = data.checked, data.classes
    fields = seed_fields([{split: run.scores[split].get("accuracy") for split in ("val", "test")}] + run.other_seeds)
    predicted = dict(zip(scored.rows["id"], [classes[k] for k in scored.proba.argmax(1)])) if len(scored.rows) else {}
    labels = {i: label for i, label in zip(checked.table["id"], checked.label) if label in classes}
    expert, _ = expert_cells(checked.table, classes)
    fields.update(effect_fields(data.state, {**result, **fields}, labels, predicted, classes))
    return {**fields, **expert_agreement(expert, labels, predicted).fields()}
