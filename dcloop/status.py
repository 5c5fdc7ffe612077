"""What `dcloop status` reports: the table now, the recorded versions, the last score."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from . import table as tbl
from .backends import open_backend
from .config import Config
from .history import History
from .lock import current_holder, holder_age_minutes, holder_overrun
from .pull import current_table
from .results import changed_since
from .runs import read_last_trained, state_dir


def project_status(root: Path, config: Config) -> dict:
    backend = open_backend(config, Path(root))
    with_ids = current_table(backend, config)
    checked = tbl.validate(with_ids, config.project.classes)
    history = History(state_dir(root))
    trained = read_last_trained(state_dir(root)).get("version", "")
    everything = backend.read_results()
    kinds = everything["kind"] if "kind" in everything else pd.Series("full", index=everything.index)
    # quick and fast runs' scores are shown apart from the recipe's; re-evaluations score old models on today's split
    results = everything[~kinds.isin(["quick", "fast", "reeval"])]
    quick, fast = everything[kinds == "quick"], everything[kinds == "fast"]
    per_class = {}
    for label in config.project.classes + sorted(set(checked.label) - set(config.project.classes) - {""}):
        mine = checked.label == label
        per_class[label] = {s: int((mine & (checked.split == s)).sum()) for s in tbl.SPLITS}
    per_class["(unlabeled)"] = {s: int(((checked.label == "") & (checked.split == s)).sum()) for s in tbl.SPLITS}
    return {
        "version": tbl.label_version(with_ids), "recorded_version": history.head(),
        "rows": len(with_ids), "flagged": len(checked.flags), "trained_version": trained,
        "flag_counts": tbl.flag_counts(with_ids["flags"]) if "flags" in with_ids else {},
        "edited_since_training": changed_since(history, trained, with_ids),
        "splits": tbl.SPLITS, "per_class": per_class,
        "last_result": results.iloc[-1].to_dict() if len(results) else None,
        "last_quick_result": quick.iloc[-1].to_dict() if len(quick) else None,
        "last_fast_result": fast.iloc[-1].to_dict() if len(fast) else None,
        "expert": expert_status(root, config, checked, results),
        "lock": lock_status(root, config),
    }


def lock_status(root: Path, config: Config) -> dict | None:
    """The lock's holder now, its age in minutes and whether it overran [sync] max_minutes; None if free."""
    holder = current_holder(state_dir(root))
    if holder is None:
        return None
    now = datetime.now(timezone.utc)
    age = holder_age_minutes(holder, now)
    return {**holder, "age_minutes": None if age is None else round(age, 1),
            "max_minutes": config.sync.max_minutes, "overrun": holder_overrun(holder, config.sync.max_minutes, now)}


def expert_status(root: Path, config: Config, checked: tbl.Validated, results) -> dict | None:
    """Expert vs label and vs the last trained run's predictions now, the rows where model and expert
    differ, bad expert cells, and the figures each version's run recorded; None without an expert column."""
    from .agreement import EXPERT_FIELDS, bad_expert_rows, expert_agreement, expert_cells
    from .effect import run_predictions
    if "expert" not in checked.table.columns:
        return None
    classes = config.project.classes
    expert, bad = expert_cells(checked.table, classes)
    run_id = read_last_trained(state_dir(root)).get("run_id", "")
    saved = run_predictions(state_dir(root), run_id, classes)
    labels = {i: label for i, label in zip(checked.table["id"], checked.label) if label in classes}
    predicted = saved[1] if saved else {}
    found = expert_agreement(expert, labels, predicted)
    lines = {row_id: tbl.row_number(n) for n, row_id in enumerate(checked.table["id"])}
    recorded = results[results["expert_model_n"] != ""] if "expert_model_n" in results else results.iloc[0:0]
    by_version = recorded.drop_duplicates("label_version", keep="last")
    return {"rows": len(expert), "run_id": run_id if saved else "",
            "label": agreement_json(found.label), "model": agreement_json(found.model),
            "differ": [{"id": i, "row": lines[i], "expert": expert[i], "label": labels.get(i, ""),
                        "prediction": predicted[i]} for i in found.differ],
            "bad_cells": bad_expert_rows(checked.table, bad),
            "by_version": [{"label_version": r.get("label_version", ""), "run_id": r.get("run_id", ""),
                            **{k: r.get(k, "") for k in EXPERT_FIELDS}} for r in by_version.to_dict("records")]}


def agreement_json(found) -> dict:
    return {"n": found.n, "agree": found.agree, "accuracy": found.accuracy, "kappa": found.kappa}
