"""What `dcloop status` reports: the table now, the recorded versions, the last score."""

from __future__ import annotations

from pathlib import Path

from . import table as tbl
from .backends import open_backend
from .config import Config
from .history import History, read_json
from .sync import changed_since, state_dir


def project_status(root: Path, config: Config) -> dict:
    backend = open_backend(config, Path(root))
    table = tbl.normalize(backend.read(), backend.describe())
    with_ids = tbl.with_ids(table, tbl.assign_ids(table), config.table.default_split)
    checked = tbl.validate(with_ids, config.project.classes)
    history = History(state_dir(root))
    trained = read_json(state_dir(root) / "last_trained.json", {}).get("version", "")
    results = backend.read_results()
    # quick runs are not scores; re-evaluations score old models on today's split, not the last training
    results = results[~results["kind"].isin(["quick", "reeval"])] if "kind" in results else results
    per_class = {}
    for label in config.project.classes + sorted(set(checked.label) - set(config.project.classes) - {""}):
        mine = checked.label == label
        per_class[label] = {s: int((mine & (checked.split == s)).sum()) for s in tbl.SPLITS}
    per_class["(unlabeled)"] = {s: int(((checked.label == "") & (checked.split == s)).sum()) for s in tbl.SPLITS}
    return {
        "version": tbl.label_version(with_ids), "recorded_version": history.head(),
        "rows": len(table), "flagged": len(checked.flags), "trained_version": trained,
        "edited_since_training": changed_since(history, trained, with_ids),
        "splits": tbl.SPLITS, "per_class": per_class,
        "last_result": results.iloc[-1].to_dict() if len(results) else None,
    }
