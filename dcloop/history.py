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

RESULT_COLUMNS = [
    "run_id", "time_utc", "label_version", "kind", "rows_train", "rows_val", "rows_test",
    "rows_unlabeled", "rows_flagged", "labels_changed", "val_accuracy", "test_accuracy",
    "val_macro_f1", "test_macro_f1", "best_epoch", "epochs", "preset", "model_fingerprint",
    "images_per_s", "duration_s",
    # How people answered the previous run's flags (dcloop.review.realised_precision).
    "prev_flagged", "prev_relabeled", "prev_excluded", "prev_confirmed", "prev_precision",
    # Issue 8: the noise across seeds and what the edits did (dcloop.effect), model vs expert (dcloop.agreement).
    "seeds", "val_mean", "val_std", "test_mean", "test_std",
    "compared_run", "val_change", "test_change", "edits", "edits_model_agrees", "edits_old_agreed",
    "expert_label_n", "expert_label_agree", "expert_label_accuracy", "expert_label_kappa",
    "expert_model_n", "expert_model_agree", "expert_model_accuracy", "expert_model_kappa",
    # kind "reeval" (dcloop.reeval): the run whose checkpoint was scored on this row's label version, and how
    # many of the val/test rows scored it had trained on (blank on trainings).
    "reeval_of", "reeval_seen",
]
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
