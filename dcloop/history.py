"""Label versions and the results table's row format.

A version is a content address of (id, url, label, split) for every row. Each version keeps a
snapshot of those columns and the rows that changed since its parent, under .dcloop/versions/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import table as tbl
from .errors import DcloopError
from .fsutil import atomic_write_text

# One results row per training (kinds "full" and "quick") or re-evaluation ("reeval"), in this order;
# the reference page of the documentation is made from these descriptions.
RESULT_COLUMN_DOCS = {
    "run_id": "the run's id; its checkpoint and predictions are under .dcloop/runs/<run_id>/",
    "time_utc": "when the row was written (UTC)",
    "label_version": "the label version trained on (for a re-evaluation: scored on)",
    "kind": "full (the recipe), quick (sync --quick, a tenth of the epochs) or reeval (dcloop reeval)",
    "rows_train": "labeled, readable, unflagged train rows trained on",
    "rows_val": "val rows scored",
    "rows_test": "test rows scored",
    "rows_unlabeled": "usable rows without a label (predicted, not trained on)",
    "rows_flagged": "rows that validation or image loading flagged and left out",
    "labels_changed": "rows whose url, label or split changed since the last training",
    "val_accuracy": "accuracy on the val rows (the first seed's model)",
    "test_accuracy": "accuracy on the test rows (the first seed's model)",
    "val_macro_f1": "macro-averaged F1 on the val rows",
    "test_macro_f1": "macro-averaged F1 on the test rows",
    "best_epoch": "the epoch whose weights were kept (best validation accuracy)",
    "epochs": "epochs trained",
    "preset": "the fixed model's preset",
    "model_fingerprint": "a hash of the recipe: scores compare only under the same fingerprint",
    "images_per_s": "training throughput",
    "duration_s": "the whole sync's wall time",
    # How people answered the previous run's flags (dcloop.review.realised_precision).
    "prev_flagged": "rows the previous run flagged",
    "prev_relabeled": "of those, rows whose label changed since",
    "prev_excluded": "of those, rows set to exclude or deleted",
    "prev_confirmed": "of those, rows marked reviewed = ok",
    "prev_precision": "(relabeled + excluded) / (relabeled + excluded + confirmed): the flags' realised precision",
    # The noise across seeds (dcloop.effect).
    "seeds": "trainings under seed, seed+1, ... (sync --seeds N)",
    "val_mean": "mean val accuracy over the seeds",
    "val_std": "sample standard deviation of val accuracy over the seeds (blank for one seed)",
    "test_mean": "mean test accuracy over the seeds",
    "test_std": "sample standard deviation of test accuracy over the seeds (blank for one seed)",
    # What the edits did, against the previous comparable run (dcloop.effect).
    "compared_run": "the previous run of the same kind and fingerprint, compared with (blank on the first)",
    "val_change": "this run's mean val accuracy minus the compared run's",
    "test_change": "this run's mean test accuracy minus the compared run's",
    "edits": "rows whose label changed since the compared run and that both runs predicted",
    "edits_model_agrees": "of those, how many the new model predicts as the new label",
    "edits_old_agreed": "of those, how many the compared run had already predicted as the new label",
    # Model vs expert (dcloop.agreement).
    "expert_label_n": "rows with an expert class and a class label",
    "expert_label_agree": "of those, rows where expert and label agree",
    "expert_label_accuracy": "expert_label_agree / expert_label_n",
    "expert_label_kappa": "Cohen's kappa of expert vs label",
    "expert_model_n": "rows with an expert class and a prediction",
    "expert_model_agree": "of those, rows where expert and model agree",
    "expert_model_accuracy": "expert_model_agree / expert_model_n",
    "expert_model_kappa": "Cohen's kappa of expert vs model",
    # Re-evaluations (dcloop.reeval); blank on trainings.
    "reeval_of": "the run whose stored model was scored again on this row's label version",
    "reeval_seen": "how many of the val/test rows it scored that model had trained on",
}
RESULT_COLUMNS = list(RESULT_COLUMN_DOCS)
INDEX_COLUMNS = ["version", "parent", "time_utc", "rows", "changed"]


@dataclass(frozen=True)
class Recorded:
    version: str
    parent: str
    new: bool
    changes: pd.DataFrame


class History:
    """The versions under ``state/versions``, oldest first in ``index.csv``."""

    def __init__(self, state: Path):
        self.root = Path(state) / "versions"

    def folder(self, version: str) -> Path:
        return self.root / version

    def index(self) -> pd.DataFrame:
        path = self.root / "index.csv"
        if not path.exists():
            return pd.DataFrame(columns=INDEX_COLUMNS)
        return pd.read_csv(path, dtype=str, keep_default_na=False)

    def head(self) -> str:
        index = self.index()
        return index["version"].iloc[-1] if len(index) else ""

    def resolve(self, ref: str) -> str:
        """The recorded version that ``ref`` names in full or by a unique prefix."""
        known = list(dict.fromkeys(self.index()["version"]))
        ref = ref.strip()
        matches = [v for v in known if v.startswith(ref)] if ref else []
        if len(matches) == 1:
            return matches[0]
        if not matches:
            listed = ", ".join(known[-5:]) or "none yet; run dcloop sync first"
            raise DcloopError(f"{self.root}: no label version {ref!r}; recent versions: {listed} (see dcloop log).")
        raise DcloopError(f"label version prefix {ref!r} is ambiguous: it matches {', '.join(matches)}; "
                          f"give more characters.")

    def snapshot(self, version: str) -> pd.DataFrame:
        return pd.read_csv(self.folder(version) / "labels.csv", dtype=str, keep_default_na=False)

    def changes(self, version: str) -> pd.DataFrame:
        return pd.read_csv(self.folder(version) / "changes.csv", dtype=str, keep_default_na=False)

    def record(self, table: pd.DataFrame, now: str) -> Recorded:
        """Record the table's labels and splits as a version unless it equals the current head."""
        version, parent = tbl.label_version(table), self.head()
        if version == parent:
            return Recorded(version, parent, False, tbl.diff(table.iloc[0:0], table.iloc[0:0]))
        before = self.snapshot(parent) if parent else table.iloc[0:0]
        changes = tbl.diff(before, table)
        folder = self.folder(version)
        atomic_write_text(folder / "labels.csv", tbl.versioned_rows(table).to_csv(index=False))
        atomic_write_text(folder / "changes.csv", changes.to_csv(index=False))
        row = {"version": version, "parent": parent, "time_utc": now,
               "rows": str(len(table)), "changed": str(len(changes))}
        index = pd.concat([self.index(), pd.DataFrame([row])], ignore_index=True)
        # The index is written last: a crash before this line leaves no half-recorded version.
        atomic_write_text(self.root / "index.csv", index.to_csv(index=False))
        return Recorded(version, parent, True, changes)


def read_json(path: Path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return default


def write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def scores_by_entry(index: pd.DataFrame, results: pd.DataFrame) -> dict[int, dict]:
    """For each index position, the last results row trained under that entry (pure).

    A results row belongs to the latest entry of its label version recorded at or before it:
    a version can appear twice in the index (edits undone, or dcloop restore).
    """
    out: dict[int, dict] = {}
    for row in results.to_dict("records"):
        entry = entry_of(index, row)
        if entry is not None:
            out[entry] = row
    return out


def entry_of(index: pd.DataFrame, row: dict) -> int | None:
    """The index position a results row belongs to (see scores_by_entry), None if its version is unknown."""
    entries = index.index[index["version"] == row.get("label_version", "")]
    earlier = [n for n in entries if index.at[n, "time_utc"] <= row.get("time_utc", "")]
    return max(earlier) if earlier else (entries[-1] if len(entries) else None)


def is_reeval(results: pd.DataFrame) -> pd.Series:
    """Rows of kind "reeval": a stored model scored again on a later split, not a training."""
    return results["kind"] == "reeval" if "kind" in results.columns else pd.Series(False, index=results.index)
