"""The cap on train+val rows: what counts, the counts per class and split, and which rows are cheapest to drop.

``drop_candidates`` is pure: rows, their decoded pixels and (optionally) embeddings in, a ranked
list of rows out, each with its reason. The tiers, cheapest first:

1. exact duplicates (same decoded pixels): one row of each group is kept
2. augmented variants (a ``note`` starting ``augmented from``): made by ``dcloop augment``, cheap to make again
3. near duplicates (perceptual hash, embedding and pixels all close): one row of each group is kept
4. outliers: far from the centre of their class
5. rows the last run flagged (label?, dup-of, blank, ...)
6. redundant rows of the largest classes, as many as still needed: one at a time from the class with the
   most train rows, the row most similar to another of its class first
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import table as tbl
from .backends import Backend, open_backend
from .backends.csv import formula_safe, to_csv_text
from .config import Config
from .dataset import Images, counted_rows, load_images, stack
from .errors import CapError
from .fsutil import atomic_write_text
from .progress import Progress, quiet
from .pull import pull
from .runs import last_run_id, load_predictions, read_flagged, state_dir
from .table import AUGMENTED_FLAG, augmented_source, is_augmented

COUNTED_SPLITS = ("train", "val")
SUGGESTIONS_FILE = "cap-suggestions.csv"
SUGGESTION_COLUMNS = ["rank", "id", "split", "label", "url", "reason"]
SHOWN_CLASSES = 12  # classes named in the error message per split; the rest are summed


def class_counts(rows: pd.DataFrame) -> dict[str, dict[str, int]]:
    """{split: {label: rows}} for the counted splits, labels in order of appearance."""
    return {split: rows.loc[rows["split"] == split, "label"].value_counts(sort=False).to_dict()
            for split in COUNTED_SPLITS}


def format_counts(counts: dict[str, dict[str, int]], shown: int = SHOWN_CLASSES) -> str:
    """'train: a 40, b 27; val: a 13, b 10', largest classes first, the tail summed as '+N more classes'."""
    parts = []
    for split, per_class in counts.items():
        ranked = sorted(per_class.items(), key=lambda kv: (-kv[1], kv[0]))
        text = ", ".join(f"{name} {n}" for name, n in ranked[:shown])
        if len(ranked) > shown:
            rest = ranked[shown:]
            text += f", +{len(rest)} more classes with {sum(n for _, n in rest)}"
        parts.append(f"{split}: {text or 'none'}")
    return "; ".join(parts)


def groups_of(pairs: list[tuple[int, int]], n: int) -> list[list[int]]:
    """Connected groups (of two or more) of ``n`` rows joined by ``pairs``, each sorted."""
    from .suspicion import link_groups
    members: dict[int, list[int]] = {}
    for row, group in enumerate(link_groups(n, pairs)):
        members.setdefault(int(group), []).append(row)
    return sorted(g for g in members.values() if len(g) > 1)


def keep_one(group: list[int], augmented: np.ndarray) -> int:
    """The row a duplicate group keeps: the first that is not an augmented variant (else the first)."""
    originals = [i for i in group if not augmented[i]]
    return (originals or group)[0]


def drop_candidates(rows: pd.DataFrame, pixels: np.ndarray, embeddings: np.ndarray | None,
                    flagged: dict[str, str], excess: int) -> pd.DataFrame:
    """Rows cheapest to drop first, with reasons; at least ``excess`` of them where the table has that many.

    ``rows`` has id, label, split (train/val), url, note; ``pixels`` are their decoded images (N, 3, H, W);
    ``embeddings`` the last run's (None: judged on the pixels); ``flagged`` {id: flags of the last run}.
    """
    from .suspicion import OUTLIER_Z, class_outlier_z, content_keys, duplicate_pairs, gray, neighbours, perceptual_hash

    n = len(rows)
    ids, labels = rows["id"].tolist(), rows["label"].to_numpy()
    augmented = rows["note"].map(is_augmented).to_numpy(bool)
    features = embeddings if embeddings is not None else gray(pixels).reshape(n, -1)
    index, similarity = neighbours(features) if n > 1 else (np.zeros((n, 0), int), np.zeros((n, 0)))
    keys = content_keys(pixels)
    pairs = duplicate_pairs(keys, perceptual_hash(pixels), index, similarity, pixels) if n > 1 else []
    chosen: dict[int, str] = {}

    def propose(rows_: list[int], reason: str) -> None:
        for row in rows_:
            chosen.setdefault(int(row), reason)

    for group in groups_of([(a, b) for a, b in pairs if keys[a] == keys[b]], n):
        kept = keep_one(group, augmented)
        propose([r for r in group if r != kept], f"exact duplicate of {ids[kept]} (kept)")
    for row in np.flatnonzero(augmented):
        propose([row], f"augmented variant of {augmented_source(rows['note'].iloc[row])}")
    for group in groups_of(pairs, n):
        kept = keep_one([r for r in group if r not in chosen] or group, augmented)
        propose([r for r in group if r != kept], f"near duplicate of {ids[kept]} (kept)")
    codes = pd.factorize(labels)[0]
    z = class_outlier_z(features, codes) if n else np.zeros(0)
    for row in np.flatnonzero(z >= OUTLIER_Z):
        propose([row], f"outlier: far from the other {labels[row]} rows (robust z {z[row]:.1f})")
    for row, row_id in enumerate(ids):
        if row_id in flagged:
            propose([row], f"flagged by the last run: {flagged[row_id] or 'flagged'}")
    for row, reason in redundant(rows, index, similarity, set(chosen), excess - len(chosen)):
        propose([row], reason)
    order = sorted(chosen, key=lambda r: tier(chosen[r]))  # stable: within a tier, in the order found
    out = rows.iloc[order][["id", "split", "label", "url"]].reset_index(drop=True)
    out.insert(0, "rank", range(1, len(out) + 1))
    out["reason"] = [chosen[r] for r in order]
    return out[SUGGESTION_COLUMNS]


TIERS = ("exact duplicate", "augmented", "near duplicate", "outlier", "flagged", "redundant")


def tier(reason: str) -> int:
    return next(n for n, prefix in enumerate(TIERS) if reason.startswith(prefix))


def redundant(rows: pd.DataFrame, index: np.ndarray, similarity: np.ndarray, taken: set[int],
              needed: int) -> list[tuple[int, str]]:
    """``needed`` train rows from the classes with the most train rows, the most redundant row first.

    A row's redundancy is its similarity to its nearest neighbour of the same label.
    """
    labels, splits, ids = rows["label"].to_numpy(), rows["split"].to_numpy(), rows["id"].to_numpy()
    nearest = np.zeros(len(rows))
    partner = np.full(len(rows), -1)
    for row in range(len(rows)):
        same = np.flatnonzero(labels[index[row]] == labels[row]) if index.shape[1] else []
        if len(same):
            nearest[row], partner[row] = similarity[row, same[0]], index[row, same[0]]
    queues = {}
    for label in pd.unique(labels):
        mine = [r for r in np.flatnonzero((labels == label) & (splits == "train")) if r not in taken]
        queues[label] = sorted(mine, key=lambda r: (-nearest[r], r))
    left = {label: int(((labels == label) & (splits == "train")).sum()) - sum(
        1 for r in taken if labels[r] == label and splits[r] == "train") for label in queues}
    out = []
    while len(out) < needed and any(queues.values()):
        label = max((lab for lab in queues if queues[lab]), key=lambda lab: (left[lab], -list(queues).index(lab)))
        row = queues[label].pop(0)
        left[label] -= 1
        like = f", most like {ids[partner[row]]}" if partner[row] >= 0 else ""
        out.append((row, f"redundant: {label} is the largest class in train ({left[label] + 1} rows at this "
                         f"point){like}"))
    return out


def last_run_evidence(state: Path) -> tuple[dict[str, np.ndarray], set[str]]:
    """({id: embedding}, flagged ids) of the last trained run; empty when there is none."""
    run_id = last_run_id(Path(state))
    saved = load_predictions(Path(state), run_id) if run_id else None
    if saved is None:
        return {}, set()
    return dict(zip(saved.ids.tolist(), saved.embeddings)), set(read_flagged(Path(state), run_id))


def evidence_for(rows: pd.DataFrame, state: Path) -> tuple[np.ndarray | None, dict[str, str]]:
    """The last run's embeddings if it saw every row (else None), and {id: flags cell} of the rows it flagged."""
    embeddings, flagged = last_run_evidence(state)
    known = rows["id"].isin(embeddings.keys())
    stack = np.stack([embeddings[i] for i in rows["id"]]) if len(rows) and known.all() else None
    cells = dict(zip(rows["id"], rows["flags"] if "flags" in rows else [""] * len(rows)))
    return stack, {i: without_augmented(cells.get(i, "")) for i in rows["id"] if i in flagged}


def without_augmented(flags: str) -> str:
    return "; ".join(f for f in flags.split("; ") if f and f != AUGMENTED_FLAG)


def write_suggestions(path: Path, suggestions: pd.DataFrame) -> None:
    atomic_write_text(path, to_csv_text(formula_safe(suggestions.fillna("").astype(str))))


@dataclass
class CapFindings:
    """Where a project stands against a cap, and (over it) the rows suggested for dropping."""

    used: int
    cap: int
    counts: dict[str, dict[str, int]]
    suggestions: pd.DataFrame
    path: Path | None = None

    @property
    def excess(self) -> int:
        return max(0, self.used - self.cap)

    def message(self) -> str:
        """The over-the-cap error: the totals, per class and split, and where the suggestions are."""
        totals = {s: sum(c.values()) for s, c in self.counts.items()}
        text = (f"{self.used} labeled rows in train+val ({totals['train']} train, {totals['val']} val) exceed "
                f"the cap of {self.cap}. Per class: {format_counts(self.counts)}.")
        if self.path is not None:
            listed = len(self.suggestions)
            enough = (f"dropping the first {self.excess} gets under the cap" if listed >= self.excess
                      else f"they cover only {listed} of the {self.excess} rows over it")
            text += f" {listed} rows cheapest to drop, with reasons, are listed in {self.path}; {enough}."
        return text + " Set their split to 'exclude', or raise [project] cap in dcloop.toml."

    def to_json(self) -> dict:
        return {"used": self.used, "cap": self.cap, "excess": self.excess, "counts": self.counts,
                "path": str(self.path) if self.path else None,
                "suggestions": self.suggestions.to_dict("records")}


def assess_cap(rows: pd.DataFrame, pixels: np.ndarray, state: Path, cap: int, path: Path) -> CapFindings:
    """Count ``rows`` (the counted train and val rows); over ``cap``, rank rows to drop and write them to ``path``."""
    counts = class_counts(rows)
    if len(rows) <= cap:
        return CapFindings(len(rows), cap, counts, pd.DataFrame(columns=SUGGESTION_COLUMNS))
    embeddings, flagged = evidence_for(rows, state)
    suggestions = drop_candidates(rows, pixels, embeddings, flagged, len(rows) - cap)
    write_suggestions(path, suggestions)
    return CapFindings(len(rows), cap, counts, suggestions, path)


# --- the cap in a sync, and looked at without one ---

def check_cap(checked: tbl.Validated, images: Images, cap: int, root: Path) -> None:
    """Over the cap: a CapError with the counts per class and split, and a file of rows to drop."""
    rows = counted_rows(checked, images)
    if len(rows) > cap:
        findings = assess_cap(rows, stack(images, rows["id"]), state_dir(root), cap, root / SUGGESTIONS_FILE)
        raise CapError(findings.message())


def cap_findings(root: Path, config: Config, target: int | None = None, progress: Progress = quiet,
                 backend: Backend | None = None):
    """Count the rows the cap counts against ``target`` (default [project] cap); over it, write suggestions."""
    root = Path(root)
    backend = backend or open_backend(config, root)
    checked = tbl.validate(pull(backend, config), config.project.classes)
    images = load_images(root, config, checked, progress)
    rows = counted_rows(checked, images)
    limit = config.project.cap if target is None else target
    return assess_cap(rows, stack(images, rows["id"]), state_dir(root), limit, root / SUGGESTIONS_FILE)
