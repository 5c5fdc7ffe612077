"""Scoring a trained run: every row's prediction, out-of-sample label probability, suspicion and flags.

The signals and their combination are pure numpy in dcloop.suspicion; this stage gathers what they
need from a run (probabilities, embeddings, training dynamics, cross-fitted networks), the reviews
and the expert column, and makes the patch of dcloop's own columns that write-back puts in the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import table as tbl
from .config import Config
from .dataset import Dataset, Images, SplitRows, encode, stack
from .history import read_json, write_json
from .progress import Progress
from .runs import Predictions, state_dir


@dataclass
class Scored:
    """Every readable row's probabilities (out of sample for labeled rows) and its patch."""

    rows: pd.DataFrame
    position: dict[str, int]
    proba: np.ndarray
    embeddings: np.ndarray
    label_proba: np.ndarray
    dynamics: np.ndarray | None
    patch: pd.DataFrame
    knn_proba: np.ndarray | None = None  # cross-fitted: each row's neighbours' votes and outlier score
    outlier_z: np.ndarray | None = None  # from the networks that never saw it

    def predictions(self, crossfit: int) -> Predictions:
        """What the run keeps of its scoring (runs.save_predictions); ``crossfit`` is its [suspicion] crossfit."""
        rows = self.rows
        return Predictions(rows["id"].to_numpy(str), rows["label"].to_numpy(str),
                           rows["split"].to_numpy(str), self.proba, self.embeddings,
                           self.label_proba, self.dynamics, crossfit, self.knn_proba, self.outlier_z)


def score_rows(data: Dataset, networks, parts: SplitRows, standing: set[str], progress: Progress) -> Scored:
    """Predict every readable row; labeled rows are judged by networks (or folds) that never saw them.

    ``networks`` is what training.train_networks trained: the main network and the cross-fitting ones.
    """
    from . import model as fixed

    progress("predicting every row and scoring training rows out of sample")
    config, classes, train_rows = data.config, data.classes, parts.train
    readable = data.readable()
    proba, embeddings = fixed.predict(networks.main.model, stack(data.images, readable["id"]))
    position = {row_id: n for n, row_id in enumerate(readable["id"])}
    in_train = [position[i] for i in train_rows["id"]]
    from .suspicion import judged_out_of_sample
    evidence = gather_evidence(data, list(readable["id"]), proba, embeddings, standing)
    dynamics = training_dynamics(networks.main, parts, position, proba.shape)
    crossfit = bool(networks.crossfit)
    if crossfit:  # every labeled row judged by networks that never saw it, train and val alike: one scale
        evidence = judged_out_of_sample(evidence, crossfit_signals_of(config, evidence, networks))
    else:
        evidence.proba = pooled_label_proba(proba, embeddings, readable, classes, config)
        evidence.dynamics = dynamics
    label_proba = evidence.proba
    proba[in_train] = label_proba[in_train]  # a train row's prediction comes from folds that never saw it
    patch = merge_flags(predictions_patch(evidence, proba, classes, config.suspicion.low_label_prob), data)
    return Scored(readable, position, proba, embeddings, label_proba, dynamics, patch,
                  evidence.knn_proba if crossfit else None, evidence.outlier_z if crossfit else None)


def training_dynamics(trained, parts: SplitRows, position: dict[str, int], shape: tuple[int, int]) -> np.ndarray:
    """Each train and val row's softmax averaged up to the kept weights' epoch; zeros for the other rows."""
    out = np.zeros(shape, np.float32)
    for rows, dynamics in ((parts.train, trained.train_dynamics), (parts.val, trained.val_dynamics)):
        if dynamics is not None and len(rows):
            out[[position[i] for i in rows["id"]]] = dynamics
    return out


def crossfit_signals_of(config: Config, evidence, networks):
    """[suspicion] crossfit = K: each labeled row's probabilities, neighbour votes and outlier score from
    the networks that never trained on it (suspicion.crossfit_signals)."""
    from . import model as fixed
    from .suspicion import crossfit_signals
    spaces = [fixed.predict(trained.model, evidence.pixels)[1] for trained in networks.crossfit]
    outlier_classes = np.where(evidence.labels >= 0, evidence.labels, evidence.proba.argmax(1))
    return crossfit_signals(spaces, networks.held_out, evidence.labels, outlier_classes,
                            len(config.project.classes), config.suspicion.folds, config.model.seed)


def pooled_label_proba(proba: np.ndarray, embeddings: np.ndarray, readable: pd.DataFrame, classes: list[str],
                       config: Config) -> np.ndarray:
    """Cross-validated probabilities for every labeled train/val/test row, so all are judged alike.

    The network's softmax on val rows is sharper than the logistic regression's on train rows;
    mixing the two would rank val rows above train rows for the same doubt.
    """
    from .suspicion import cross_val_proba
    labeled = (readable["label"].isin(classes) & readable["split"].isin(["train", "val", "test"])).to_numpy()
    out = proba.copy()
    if labeled.sum() >= 2:
        out[labeled] = cross_val_proba(embeddings[labeled], encode(readable["label"][labeled], classes),
                                       len(classes), config.suspicion.folds, config.model.seed)
    return out


def gather_evidence(data: Dataset, ids: list[str], proba: np.ndarray, embeddings: np.ndarray, standing: set[str]):
    """What suspicion.assess needs about the readable rows ``ids``."""
    from .images import image_sizes
    from .suspicion import Evidence
    images, checked = data.images, data.checked
    rows = checked.table.assign(code=checked.code).set_index("id").loc[ids]
    codes = rows["code"].where(rows["split"] != "exclude", -1)  # a person already set these aside
    sizes = image_sizes({images.sha[i]: images.blob[i] for i in ids}, data.state / "cache")
    origins = [tbl.augmented_source(note) or row_id for row_id, note in zip(ids, rows["note"])]
    return Evidence(ids=list(ids), labels=codes.to_numpy(), splits=rows["split"].to_numpy(),
                    proba=proba, embeddings=embeddings, pixels=stack(images, ids),
                    sizes=[sizes[images.sha[i]] for i in ids], reviewed=np.array([i in standing for i in ids], bool),
                    origins=origins)


def predictions_patch(evidence, proba: np.ndarray, classes: list[str], low_label_prob: float) -> pd.DataFrame:
    """prediction and confidence from ``proba``; label_prob, suspicion, flags from suspicion.assess."""
    from .suspicion import assess
    best = proba.argmax(1) if len(proba) else np.zeros(0, int)
    out = pd.DataFrame({"id": evidence.ids, "prediction": [classes[k] for k in best],
                        "confidence": [f"{p:.3f}" for p in proba.max(1)] if len(proba) else []})
    out = out.merge(assess(evidence, classes, low_label_prob), on="id", how="left")
    out["sort_key"] = out["sort_key"].astype(str)  # a patch is all strings; write_back parses it
    return out


def merge_flags(patch: pd.DataFrame, data: Dataset) -> pd.DataFrame:
    """Add the validation and image flags; every row of the table gets a patch row."""
    checked, images, root = data.checked, data.images, data.root
    everyone = pd.DataFrame({"id": checked.table["id"]})
    out = everyone.merge(patch, on="id", how="left").fillna("")
    made = set(checked.table["id"][checked.table["note"].map(tbl.is_augmented)])  # rows `dcloop augment` made
    out["flags"] = [join_flags(*checked.flags.get(i, []), b, tbl.AUGMENTED_FLAG if i in made else "")
                    for i, b in zip(out["id"], out["flags"])]
    # Rows left out of training (unknown label or split, bad id) come first, as unreadable ones do:
    # the model could not judge their label, so their suspicion is blank, and a blank sorts first
    # (writeback.write_back, the report's queue reading the table).
    out.loc[out["id"].isin(checked.flags), ["sort_key", "suspicion"]] = ""
    if files_in_image_cells(data.config):
        out["image"] = out["id"].map(lambda i: thumbnail_cell(images, i, root))
    else:
        out["image"] = out["id"].map(lambda i: image_cell(images.blob.get(i), root))
    return out


def files_in_image_cells(config: Config) -> bool:
    """A CSV table's image cell links a thumbnail file; labels.xlsx embeds pictures from the cache path
    and a Google Sheet writes =IMAGE(url), so theirs keep the cache path."""
    return config.table.backend == "csv"


def join_flags(*reasons: str) -> str:
    """Flags as one cell: the non-blank reasons, in order, separated by '; '."""
    return "; ".join(r for r in reasons if r)


def image_cell(blob: Path | None, root: Path) -> str:
    return str(blob.relative_to(root)) if blob is not None else ""


def thumbnail_cell(images: Images, row_id: str, root: Path) -> str:
    """A file:// url of the row's thumbnail, which a click in a spreadsheet program or editor opens."""
    from .images import thumbnail_file
    if row_id not in images.sha:
        return ""
    path = thumbnail_file(state_dir(root), images.sha[row_id], images.blob[row_id])
    return path.resolve().as_uri() if path is not None else ""


def judge_reviews(data: Dataset) -> tuple[set[str], dict[str, str], bool]:
    """(ids with a standing review, {id: note} for stale reviews and bad cells, whether the record changed)."""
    from . import review
    marks, bad = review.reviewed_marks(data.checked.table)
    current = {i: [lab, data.images.sha.get(i, "")]
               for i, lab in zip(data.checked.table["id"].tolist(), data.checked.label.tolist())}
    path = data.state / "reviews.json"
    recorded = read_json(path, {})
    kept, standing, stale = review.update_reviews(recorded, marks, current)
    notes = {i: f"reviewed? {cell!r} is not ok or blank" for i, cell in bad.items()}
    notes.update({i: "review stale: label or image changed since; clear reviewed, sync, mark again"
                  for i in stale})
    if kept != recorded:
        write_json(path, kept)
    return standing, notes, kept != recorded


def with_expert_notes(notes: dict[str, str], checked: tbl.Validated) -> dict[str, str]:
    """The review notes plus a note for each expert cell that is not a class; the row still trains."""
    from .agreement import expert_cells, expert_notes
    out = dict(notes)
    for row_id, note in expert_notes(expert_cells(checked.table, checked.classes)[1]).items():
        out[row_id] = join_flags(out.get(row_id, ""), note)
    return out


def flagged_ids(patch: pd.DataFrame) -> list[str]:
    """Rows with a finding; the augmented mark alone is not one."""
    found = patch["flags"].map(lambda cell: any(f and f != tbl.AUGMENTED_FLAG for f in cell.split("; ")))
    return list(patch.loc[found, "id"])


