"""The history commands: log, diff, checkout and restore of label versions.

Each composes the recorded versions (history.py) with the table (backends), the image cache
(images.py) and the pure diff and restore of table.py. Version names may be unique prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import table as tbl
from .backends import Backend, open_backend
from .config import Config
from .effect import EFFECT_FIELDS, SEED_FIELDS
from .errors import DcloopError
from .fsutil import is_safe_name
from .history import History, entry_of, is_reeval, scores_by_entry
from .images import ImageStore, materialize
from .history import utc_now
from .progress import quiet
from .pull import current_table
from .runs import state_dir

CHECKOUT_SPLITS = ["train", "val", "test"]


def log(root: Path, config: Config, backend: Backend | None = None) -> list[dict]:
    """One dict per recorded version, newest first: what changed and the score trained under it."""
    history = History(state_dir(root))
    index = history.index()
    backend = backend or open_backend(config, Path(root))
    results = backend.read_results()
    scores = scores_by_entry(index, results[~is_reeval(results)])
    reevals = reevals_by_entry(index, results[is_reeval(results)])
    snapshots: dict[str, pd.DataFrame] = {}

    def snapshot(version: str) -> pd.DataFrame:
        if version not in snapshots:
            snapshots[version] = history.snapshot(version)
        return snapshots[version]

    entries = []
    for n, entry in index.iterrows():
        before = snapshot(entry["parent"]) if entry["parent"] else pd.DataFrame(columns=tbl.VERSIONED_COLUMNS)
        result = scores.get(n, {})
        entries.append({**entry.to_dict(), **change_counts(tbl.diff(before, snapshot(entry["version"]))),
                        "run_id": result.get("run_id", ""), "val_accuracy": result.get("val_accuracy", ""),
                        "test_accuracy": result.get("test_accuracy", ""), "reevals": reevals.get(n, []),
                        **{k: str(result.get(k, "")) for k in SEED_FIELDS + EFFECT_FIELDS}})
    return entries[::-1]


def reevals_by_entry(index: pd.DataFrame, reevals: pd.DataFrame) -> dict[int, list[dict]]:
    """Each index position's re-evaluations: which run's model scored what on that version (pure)."""
    out: dict[int, list[dict]] = {}
    for row in reevals.to_dict("records"):
        entry = entry_of(index, row)
        if entry is not None:
            out.setdefault(entry, []).append({k: row.get(k, "") for k in (
                "run_id", "time_utc", "reeval_of", "val_accuracy", "test_accuracy", "reeval_seen")})
    return out


def change_counts(changes: pd.DataFrame) -> dict[str, int]:
    """Rows added and removed, and rows whose label or split changed, in one diff (pure)."""
    both = changes[changes["change"] == "changed"]
    return {"added": int((changes["change"] == "added").sum()),
            "removed": int((changes["change"] == "removed").sum()),
            "label_changed": int((both["label_before"] != both["label_after"]).sum()),
            "split_changed": int((both["split_before"] != both["split_after"]).sum())}


def diff_versions(root: Path, a: str, b: str) -> tuple[str, str, pd.DataFrame]:
    """The rows whose url, label or split differ from version ``a`` to version ``b``."""
    history = History(state_dir(root))
    a, b = history.resolve(a), history.resolve(b)
    return a, b, tbl.diff(history.snapshot(a), history.snapshot(b))


def checkout(root: Path, config: Config, ref: str, dest: Path, progress=quiet) -> dict:
    """Copy a version's images into ``dest/<split>/<class>/<id><ext>`` (an ImageFolder tree).

    The rows sync would train or evaluate on under that version: labeled with a known class, in
    train, val or test, with an image that can be fetched. Images are taken as their urls give
    them now (from the cache where possible): a version records labels and splits, not pixels.
    """
    history = History(state_dir(root))
    version = history.resolve(ref)
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DcloopError(f"{dest}: not an empty folder; checkout writes into a new or empty folder.")
    rows = history.snapshot(version)
    rows["label"] = tbl.canonical_labels(rows["label"], config.project.classes)
    skipped = {"unlabeled": int((rows["label"] == "").sum()),
               "unknown label": int(((rows["label"] != "") & ~rows["label"].isin(config.project.classes)).sum()),
               "not in train/val/test": int(((rows["label"] != "") & ~rows["split"].isin(CHECKOUT_SPLITS)).sum())}
    skipped["bad id"] = int((~rows["id"].map(is_safe_name)).sum())  # never a file name
    rows = rows[rows["label"].isin(config.project.classes) & rows["split"].isin(CHECKOUT_SPLITS)
                & rows["id"].map(is_safe_name)]
    store = ImageStore.of_project(root, config, progress)
    fetched = store.fetch(list(rows["url"]))
    readable = rows["url"].map(lambda u: u in fetched and fetched[u].ok)
    skipped["unreadable"] = int((~readable).sum())
    rows = rows[readable]
    placed = materialize(dest, [(r.id, r.split, r.label, fetched[r.url].path, r.url)
                                for r in rows.itertuples()], link=False)
    return {"version": version, "path": str(dest), "images": placed,
            "splits": {s: int((rows["split"] == s).sum()) for s in CHECKOUT_SPLITS},
            "skipped": {k: v for k, v in skipped.items() if v}}


@dataclass
class RestorePlan:
    """What `dcloop restore` would change: the rows of the table whose label or split differ."""

    version: str
    snapshot: pd.DataFrame
    changes: pd.DataFrame  # tbl.diff of the table now against the table restored

    def summary(self) -> dict[str, int]:
        return change_counts(self.changes)


def plan_restore(root: Path, config: Config, ref: str, backend: Backend | None = None) -> RestorePlan:
    history = History(state_dir(root))
    version = history.resolve(ref)
    snapshot = history.snapshot(version)
    current = current_table(backend or open_backend(config, Path(root)), config)
    return RestorePlan(version, snapshot, tbl.diff(current, tbl.apply_restore(current, snapshot)))


def restore(root: Path, config: Config, plan: RestorePlan, backend: Backend | None = None) -> dict:
    """Write the version's labels and splits into the table and record the result as a new version."""
    backend = backend or open_backend(config, Path(root))
    written = backend.restore(plan.snapshot)
    recorded = History(state_dir(root)).record(current_table(backend, config), utc_now())
    return {"restored": plan.version, "rows_written": written, "version": recorded.version,
            "new_version": recorded.new, **plan.summary()}

