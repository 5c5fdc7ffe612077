"""Re-evaluation: score the stored checkpoints of earlier runs on today's val and test split.

When splits change, scores trained under different splits do not compare. Each stored model is
scored again on the current val and test rows (images through the decode path sync uses) and the
scores are appended to the results table as rows of kind "reeval": ``reeval_of`` names the run
whose model was scored, ``label_version`` the version whose rows it was scored on.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pandas as pd

from . import table as tbl
from .backends import Backend, open_backend
from .config import Config, ModelSection
from .errors import DcloopError
from .history import History
from .dataset import Images, load_images, rows_of
from .history import utc_now
from .metrics import fmt, split_scores
from .progress import Progress, quiet
from .pull import current_table
from .results import score_fields
from .runs import CHECKPOINT, has_run_file, load_predictions, run_file, state_dir

KIND = "reeval"
LAST = re.compile(r"^last[\s:=]*(\d+)$")


def pick_runs(spec: str, trained: list[str]) -> list[str]:
    """'all', 'last N' (also last:N, or just N) or comma-separated run ids or unique prefixes; oldest first."""
    spec = spec.strip().lower()
    if spec == "all":
        return list(trained)
    last = LAST.match(spec) or re.match(r"^(\d+)$", spec)
    if last:
        return list(trained)[-int(last.group(1)):] if int(last.group(1)) else []
    picked = []
    for ref in (r.strip() for r in spec.split(",") if r.strip()):
        matches = [run for run in trained if run.startswith(ref)]
        if len(matches) != 1:
            known = ", ".join(trained[-5:]) or "none yet; run dcloop sync first"
            why = "matches no stored run" if not matches else f"is ambiguous ({', '.join(matches)})"
            raise DcloopError(f"--runs: {ref!r} {why}; give all, last N or run ids. Recent runs: {known}.")
        picked.append(matches[0])
    return [run for run in trained if run in picked]


def trained_runs(state: Path, results: pd.DataFrame) -> list[str]:
    """Runs with a training row in the results table and a stored checkpoint, oldest first."""
    if results.empty or "run_id" not in results.columns:
        return []
    kinds = results["kind"] if "kind" in results.columns else pd.Series("", index=results.index)
    runs = results.loc[kinds != KIND, "run_id"]
    # run ids come from the results table, which anyone with access to a shared sheet can edit
    return [r for r in dict.fromkeys(runs) if has_run_file(state, r, CHECKPOINT)]


def trained_on(state: Path, run_id: str) -> set[str]:
    """The ids a run trained on: labeled rows in its train split (from its saved predictions)."""
    saved = load_predictions(state, run_id)
    if saved is None:
        return set()
    return set(saved.ids[(saved.splits == "train") & (saved.labels != "")])


def reeval(root: Path, config: Config, runs: str = "all", backend: Backend | None = None,
           progress: Progress = quiet) -> list[dict]:
    """Score each picked run's checkpoint on the current val/test rows; append one results row per run."""

    root, state = Path(root), state_dir(root)
    backend = backend or open_backend(config, root)
    results = backend.read_results()
    picked = pick_runs(runs, trained_runs(state, results))
    if not picked:
        raise DcloopError(f"{root}: no stored checkpoints to re-evaluate (runs: {runs!r}); run dcloop sync first.")
    table = current_table(backend, config)
    version = History(state).record(table, utc_now()).version
    checked = tbl.validate(table, config.project.classes)
    decoded: dict[int, Images] = {}
    original = results.drop_duplicates("run_id", keep="last").set_index("run_id")
    rows = []
    for run_id in picked:
        row = evaluate(root, config, checked, decoded, run_id, version, progress)
        if row is None:
            continue
        if run_id in original.index:
            row.update({k: str(original.at[run_id, k]) for k in ("rows_train", "best_epoch") if k in original})
        backend.append_result(row)
        rows.append(row)
    return rows


def evaluate(root: Path, config: Config, checked: tbl.Validated, decoded: dict[int, Images], run_id: str,
             version: str, progress: Progress) -> dict | None:
    """One re-evaluation's results row, or None (and a note) when the run's classes differ from today's."""
    from . import model as fixed

    started = time.perf_counter()
    state, classes = state_dir(root), config.project.classes
    network, meta = fixed.load_checkpoint(run_file(state, run_id, CHECKPOINT), config.model.device)
    if list(meta["classes"]) != list(classes):
        progress(f"run {run_id}: skipped, it was trained on classes {', '.join(meta['classes'])}, "
                 f"the project now has {', '.join(classes)}")
        return None
    recipe = ModelSection.model_validate(meta["model"])
    size = recipe.image_size
    if size not in decoded:
        sized = config.model_copy(update={"model": config.model.model_copy(update={"image_size": size})})
        decoded[size] = load_images(root, sized, checked, progress)
    images = decoded[size]
    parts = {s: rows_of(checked, images, s) for s in ("val", "test")}
    found = {}
    for split, part in parts.items():
        found[split] = split_scores(network, images, part, classes)
    seen = trained_on(state, run_id) & (set(parts["val"]["id"]) | set(parts["test"]["id"]))
    progress(f"run {run_id} (trained on version {meta.get('version', '?')}): "
             + ", ".join(f"{s} accuracy {fmt(found[s].get('accuracy')) or '-'}" for s in found)
             + (f"; it trained on {len(seen)} of these val/test rows" if seen else ""))
    return {"run_id": uuid.uuid4().hex[:8], "time_utc": utc_now(), "label_version": version, "kind": KIND,
            "rows_val": str(len(parts["val"])), "rows_test": str(len(parts["test"])),
            "rows_flagged": str(len(checked.flags)),
            **score_fields(found),
            "epochs": str(recipe.epochs), "preset": recipe.preset, "model_fingerprint": recipe.fingerprint(),
            "duration_s": f"{time.perf_counter() - started:.1f}", "reeval_of": run_id, "reeval_seen": str(len(seen))}
