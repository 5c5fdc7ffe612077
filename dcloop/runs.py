"""The project folder's own files, and the one reader and writer of each file a training run leaves.

    .dcloop/runs/RUN/model.pt          the checkpoint (written and read by dcloop.model)
    .dcloop/runs/RUN/predictions.npz   every readable row's probabilities and embedding: Predictions
    .dcloop/runs/RUN/epochs.json       the training curve
    .dcloop/runs/RUN/flagged.json      the ids the run flagged (the next run measures their precision)
    .dcloop/runs/RUN/result.json       its results row
    .dcloop/last_trained.json          {key, run_id, version}: the run the table shows

Older runs saved fewer arrays; ``load_predictions`` gives their defaults here, once, so no reader
has to know which version of dcloop wrote a run. Run ids that come from the results table are
untrusted (anyone with access to a shared sheet can edit it): every path goes through ``inside``.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import STATE_DIR
from .errors import UnsafePath
from .fsutil import atomic_write_bytes, inside, is_safe_name
from .history import parse_json, read_json, state_error, write_json
from .progress import Progress, quiet

PREDICTIONS = "predictions.npz"
CHECKPOINT = "model.pt"
FLAGGED = "flagged.json"
RESULT = "result.json"
EPOCHS = "epochs.json"
LAST_TRAINED = "last_trained.json"


def state_dir(root: Path) -> Path:
    """The project's own folder, ``ROOT/.dcloop``."""
    return Path(root) / STATE_DIR


def run_file(state: Path, run_id: str, name: str) -> Path:
    """A run's file; an UnsafePath for a run id that is not one plain name."""
    path = inside(Path(state) / "runs", str(run_id), name)
    if not is_safe_name(str(run_id)):
        raise UnsafePath(f"run id {str(run_id)[:40]!r} is not a run's name")
    return path


def has_run_file(state: Path, run_id: str, name: str) -> bool:
    """Whether a run has the file; False for a run id or folder that leads elsewhere (never followed)."""
    try:
        return run_file(state, run_id, name).is_file()
    except UnsafePath:
        return False


@dataclass
class Predictions:
    """What a run saw and said of every readable row, in one row order."""

    ids: np.ndarray            # str
    labels: np.ndarray         # str: the label it trained or was judged under ('' for none)
    splits: np.ndarray         # str: lower case
    proba: np.ndarray          # the probabilities the table shows (out of sample for train rows)
    embeddings: np.ndarray
    label_proba: np.ndarray    # what suspicion judged the label with; runs before it: proba
    dynamics: np.ndarray | None = None  # softmax averaged over epochs; runs before it: None
    crossfit: int | None = None         # the run's [suspicion] crossfit; runs before it: None (unknown)
    knn_proba: np.ndarray | None = None  # cross-fitted runs: the neighbours' votes from the networks that
    outlier_z: np.ndarray | None = None  # never saw each row, and its outlier score; otherwise None


def save_predictions(state: Path, run_id: str, saved: Predictions, epochs: list[dict]) -> None:
    """Write a run's predictions.npz and epochs.json (atomically: a reader sees the old file or the new)."""
    buffer = io.BytesIO()
    arrays = {"ids": saved.ids.astype(str), "labels": saved.labels.astype(str), "splits": saved.splits.astype(str),
              "proba": saved.proba.astype(np.float32), "embeddings": saved.embeddings.astype(np.float32),
              "label_proba": saved.label_proba.astype(np.float32)}
    for name in ("dynamics", "knn_proba", "outlier_z"):
        if getattr(saved, name) is not None:
            arrays[name] = getattr(saved, name).astype(np.float32)
    if saved.crossfit is not None:  # None: a run that did not say (kept unknown, never read as 0)
        arrays["crossfit"] = np.int64(saved.crossfit)
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(run_file(state, run_id, PREDICTIONS), buffer.getvalue())
    write_json(run_file(state, run_id, EPOCHS), epochs)


def load_predictions(state: Path, run_id: str) -> Predictions | None:
    """A run's predictions; None when the run has none; a StateError naming the file when unreadable."""
    if not has_run_file(state, run_id, PREDICTIONS):
        return None
    path = run_file(state, run_id, PREDICTIONS)
    try:
        with np.load(path, allow_pickle=False) as saved:
            proba = saved["proba"]
            return Predictions(saved["ids"].astype(str), saved["labels"].astype(str), saved["splits"].astype(str),
                               proba, saved["embeddings"],
                               saved["label_proba"] if "label_proba" in saved else proba,
                               saved["dynamics"] if "dynamics" in saved else None,
                               int(saved["crossfit"]) if "crossfit" in saved else None,
                               *(saved[name] if name in saved else None for name in ("knn_proba", "outlier_z")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise state_error(path, f"{type(e).__name__}: {str(e)[:120]}") from e


def read_last_trained(state: Path, progress: Progress = quiet) -> dict:
    """last_trained.json ({key, run_id, version}); {} ("never trained") when absent, unreadable or
    naming a run whose predictions are gone: then the next sync trains again, which is always safe."""
    path = Path(state) / LAST_TRAINED
    try:
        last = parse_json(path, {})
    except (ValueError, OSError) as e:
        progress(f"{path}: unreadable ({str(e)[:120]}); treating it as no previous training: this sync retrains")
        return {}
    run_id = str(last.get("run_id", ""))
    if last and not has_run_file(state, run_id, PREDICTIONS):
        where = Path(state) / "runs" / run_id / PREDICTIONS if is_safe_name(run_id) else "not a run's name"
        progress(f"{path} names run {run_id[:40]!r}, whose predictions ({where}) are gone; "
                 f"treating it as no previous training: this sync retrains")
        return {}
    return last


def write_last_trained(state: Path, key: str, run_id: str, version: str, unwritten: bool = False) -> None:
    """Record the run the table shows; ``unwritten`` when its predictions could not be written yet."""
    write_json(Path(state) / LAST_TRAINED, {"key": key, "run_id": run_id, "version": version,
                                            **({"unwritten": True} if unwritten else {})})


def mark_written(state: Path, last: dict) -> None:
    """The last run's predictions are in the table now: last_trained.json as it was, less ``unwritten``."""
    write_json(Path(state) / LAST_TRAINED, {k: v for k, v in last.items() if k != "unwritten"})


def last_run_id(state: Path) -> str:
    """The run the table shows ('' before any)."""
    return read_last_trained(state).get("run_id", "")


def read_flagged(state: Path, run_id: str) -> list[str]:
    """The ids a run flagged ([] for no run or a run before dcloop kept them)."""
    return read_json(run_file(state, run_id, FLAGGED), []) if has_run_file(state, run_id, FLAGGED) else []


def write_flagged(state: Path, run_id: str, ids: list[str]) -> None:
    write_json(run_file(state, run_id, FLAGGED), ids)


def read_result(state: Path, run_id: str) -> dict:
    """A run's results row as it recorded it ({} when none)."""
    return read_json(run_file(state, run_id, RESULT), {}) if has_run_file(state, run_id, RESULT) else {}


def write_result(state: Path, run_id: str, result: dict) -> None:
    write_json(run_file(state, run_id, RESULT), result)
