"""Write-back: dcloop's own columns into the table by id, and the catching up a held file needs."""

from __future__ import annotations

from typing import Callable

import pandas as pd

from . import table as tbl
from .backends import Backend, accepts_order
from .dataset import Dataset
from .errors import TableBusy
from .runs import load_predictions
from .scoring import gather_evidence, join_flags, merge_flags, predictions_patch


def write_back(backend: Backend, patch: pd.DataFrame, notes: dict[str, str], sort: bool) -> int:
    """Write the patch, review notes added to flags, rows most suspicious first when ``sort``."""
    patch = patch.copy()
    patch["flags"] = [join_flags(a, notes.get(i, "")) for i, a in zip(patch["id"], patch["flags"])]
    order = written_order(patch)
    patch = patch.drop(columns="sort_key")
    if sort and accepts_order(backend):
        return backend.write(patch, order=order)
    return backend.write(patch)


def written_order(patch: pd.DataFrame) -> list[str]:
    """The patch's ids most suspicious first (unusable rows first of all), as a sorted table is written."""
    key = pd.to_numeric(patch["sort_key"], errors="coerce").fillna(2.0)
    return list(patch["id"].iloc[(-key).argsort(kind="stable")])


def as_written(table: pd.DataFrame, patch: pd.DataFrame, backend: Backend, sort: bool) -> pd.DataFrame:
    """The table with the patch applied, its rows in the order write_back put them in."""
    after = tbl.apply_patch(table, patch)
    if not (sort and accepts_order(backend)):
        return after
    return after.set_index("id", drop=False).loc[written_order(patch)].reset_index(drop=True)


def keep_if_busy(write: Callable[[], None], busy: TableBusy | None) -> TableBusy | None:
    """Run ``write``; a file another program holds is reported after the run is kept, not raised here."""
    try:
        write()
    except TableBusy as e:
        return busy or e
    return busy


def rescore(data: Dataset, backend: Backend, run_id: str, standing: set[str], notes: dict[str, str]) -> None:
    """Rewrite suspicion and flags from a run's saved predictions (reviews changed, labels did not)."""
    saved = load_predictions(data.state, run_id)
    if saved is None:  # read_last_trained vouched for the file a moment ago
        return
    ids, proba, label_proba, embeddings, dynamics = (list(saved.ids), saved.proba, saved.label_proba,
                                                    saved.embeddings, saved.dynamics)
    keep = [n for n, i in enumerate(ids) if i in data.images.sha]
    evidence = gather_evidence(data, [ids[n] for n in keep], label_proba[keep], embeddings[keep], standing)
    evidence.dynamics = None if dynamics is None else dynamics[keep]
    if saved.knn_proba is not None:  # cross-fitted: judged as the run judged it, on one scale
        evidence.knn_proba, evidence.outlier_z, evidence.dynamics = saved.knn_proba[keep], saved.outlier_z[keep], None
    suspicion = data.config.suspicion
    patch = merge_flags(predictions_patch(evidence, proba[keep], data.classes, suspicion.low_label_prob), data)
    write_back(backend, patch, notes, suspicion.sort)


