"""Splits that represent the data: counts, leakage and thin strata; a stratified rebalance.

The core is pure: duplicate groups (duplicate pairs from ``suspicion`` plus augmented variants and
their source row), embedding clusters within each class, seen-versus-expected counts, and the
rebalance plan. The adapters read the table, the images (through the decode path sync uses) and
the last run's embeddings, and write the planned moves through the backend's ``move_splits``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import table as tbl
from .backends import Backend, open_backend
from .config import Config
from .errors import ConfigError
from .history import History
from . import suspicion
from .dataset import load_images, stack
from .history import utc_now
from .progress import Progress, quiet
from .pull import current_table
from .runs import last_run_id, load_predictions, state_dir

USED = ["train", "val", "test"]
THIN_SHARE = 0.5      # seen below this share of the expected count: thin
MIN_EXPECTED = 2.0    # expected counts below this are too small to call anything thin
CLUSTER_ROWS = 25     # rows of a class per embedding cluster
MAX_CLUSTERS = 5      # clusters per class at most


@dataclass
class SplitData:
    """The labeled, readable rows in train, val or test, in one order."""

    ids: np.ndarray          # str
    labels: np.ndarray       # class index
    splits: np.ndarray       # train / val / test
    pairs: list[tuple[int, int, str]]  # (a, b, kind): exact, near or augmented, a < b
    clusters: np.ndarray     # embedding cluster within the row's class, -1 without an embedding
    embeddings_from: str     # the run whose embeddings gave clusters and near duplicates, '' if none

    @property
    def groups(self) -> np.ndarray:
        return suspicion.link_groups(len(self.ids), [(a, b) for a, b, _ in self.pairs])


# --- the pure core ----------------------------------------------------------------------------

def augmented_pairs(ids: list[str], notes: list[str]) -> list[tuple[int, int]]:
    """(variant, source) positions for rows whose note names a source row present in ``ids``."""
    position = {row_id: n for n, row_id in enumerate(ids)}
    out = []
    for n, note in enumerate(notes):
        source = tbl.augmented_source(note or "")
        if source in position and position[source] != n:
            out.append((n, position[source]))
    return out


def duplicate_pairs(pixels: np.ndarray, embeddings: np.ndarray | None, has: np.ndarray) -> list[tuple[int, int, str]]:
    """Exact duplicates among all rows, near duplicates among rows with an embedding (suspicion's rules)."""
    n = len(pixels)
    keys = suspicion.content_keys(pixels)
    index, similarity = np.zeros((n, 0), int), np.zeros((n, 0), np.float32)
    rows = np.flatnonzero(has)
    if embeddings is not None and len(rows) > 1:
        near_index, near_similarity = suspicion.neighbours(embeddings[rows])
        index = np.zeros((n, near_index.shape[1]), int)
        similarity = np.full((n, near_index.shape[1]), -1.0, np.float32)
        index[rows], similarity[rows] = rows[near_index], near_similarity
    found = suspicion.duplicate_pairs(keys, suspicion.perceptual_hash(pixels), index, similarity, pixels)
    return [(a, b, "exact" if keys[a] == keys[b] else "near") for a, b in found]


def class_clusters(embeddings: np.ndarray | None, labels: np.ndarray, has: np.ndarray, seed: int) -> np.ndarray:
    """k-means on the embeddings within each class, one cluster per CLUSTER_ROWS rows (at most MAX_CLUSTERS)."""
    from sklearn.cluster import KMeans

    out = np.full(len(labels), -1)
    if embeddings is None or not has.any():
        return out
    x = suspicion.unit_rows(embeddings[has])
    codes, positions = labels[has], np.flatnonzero(has)
    for k in np.unique(codes):
        rows = np.flatnonzero(codes == k)
        count = min(MAX_CLUSTERS, len(rows) // CLUSTER_ROWS)
        if count < 2:
            out[positions[rows]] = 0
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = KMeans(count, n_init=4, random_state=seed).fit_predict(x[rows])
        out[positions[rows]] = relabel_by_size(found)
    return out


def relabel_by_size(clusters: np.ndarray) -> np.ndarray:
    """Cluster numbers ordered by size, largest 0, so the names do not depend on k-means' order."""
    sizes = np.bincount(clusters)
    rank = np.empty_like(sizes)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(len(sizes))
    return rank[clusters]


def judge(seen: float, expected: float) -> str:
    """'absent', 'thin' or '' for a count against what the train split's proportions predict."""
    if expected < MIN_EXPECTED or seen >= THIN_SHARE * expected:
        return ""
    return "absent" if seen == 0 else "thin"


def thin_findings(labels: np.ndarray, splits: np.ndarray, clusters: np.ndarray, classes: list[str]) -> list[dict]:
    """Classes, and clusters within a class, that train has but val or test has too few of.

    A class's expected count in val is val's size times the class's share of train; a cluster's is
    its class's val count times the cluster's share of the class in train.
    """
    out = []
    train = splits == "train"
    for other in ("val", "test"):
        theirs = splits == other
        for k, name in enumerate(classes):
            mine = labels == k
            expected = theirs.sum() * (mine & train).sum() / max(train.sum(), 1)
            out += finding(name, None, other, int((mine & theirs).sum()), expected, int((mine & train).sum()))
            clustered = mine & (clusters >= 0)
            found = sorted(set(clusters[clustered]))
            for c in found if len(found) > 1 else []:
                here = clustered & (clusters == c)
                expected = (clustered & theirs).sum() * (here & train).sum() / max((clustered & train).sum(), 1)
                out += finding(name, int(c), other, int((here & theirs).sum()), expected, int((here & train).sum()))
    return out


def finding(name: str, cluster: int | None, split: str, seen: int, expected: float, train: int) -> list[dict]:
    verdict = judge(seen, expected)
    return [{"class": name, "cluster": cluster, "split": split, "seen": seen, "expected": round(expected, 1),
             "train": train, "status": verdict}] if verdict else []


def leakage(data: SplitData, classes: list[str]) -> list[dict]:
    """Duplicate pairs (and augmented variants) whose rows sit in different splits."""
    return [{"a": data.ids[a], "a_split": data.splits[a], "a_label": classes[data.labels[a]],
             "b": data.ids[b], "b_split": data.splits[b], "b_label": classes[data.labels[b]], "kind": kind}
            for a, b, kind in data.pairs if data.splits[a] != data.splits[b]]


def counts_per_class(labels: pd.Series, splits: pd.Series, classes: list[str]) -> dict[str, dict[str, int]]:
    """Rows per split for each class (labels outside ``classes`` and blanks left out)."""
    labels, splits = labels.str.strip(), splits.str.strip().str.lower()
    return {name: {s: int(((labels == name) & (splits == s)).sum()) for s in tbl.SPLITS} for name in classes}


def largest_remainder(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` into whole numbers that sum to it."""
    if not weights or sum(weights) == 0:
        return [0] * len(weights)
    exact = np.array(weights, float) * total / sum(weights)
    out = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - out), kind="stable")[: total - out.sum()]:
        out[i] += 1
    return out.tolist()


def plan_rebalance(data: SplitData, shares: dict[str, float], seed: int) -> pd.DataFrame:
    """Few moves that give each (class, cluster) stratum ``shares`` of its rows in each split.

    ``shares`` names the splits that may change besides train (e.g. {"val": 0.2}); train takes the
    rest. A duplicate group moves as one; a group with a row in a split that may not change stays.
    Returns one row per moved row: id, label (index), cluster, from, to.
    """
    movable = {"train", *shares}
    if not len(data.ids):
        return pd.DataFrame(columns=["id", "label", "cluster", "from", "to"])
    groups = data.groups
    frame = pd.DataFrame({"row": np.arange(len(data.ids)), "group": groups, "label": data.labels,
                          "cluster": data.clusters, "split": data.splits})
    pinned = frame.groupby("group")["split"].transform(lambda s: not set(s) <= movable).astype(bool)
    per_group = frame[~pinned].groupby("group").agg(size=("row", "size"), label=("label", mode),
                                                    cluster=("cluster", mode), split=("split", split_mode))
    assigned = per_group["split"].to_dict()
    rng = np.random.default_rng(seed)
    for _, of_class in per_group.groupby("label"):
        strata = of_class.groupby("cluster")
        sizes = [int(g["size"].sum()) for _, g in strata]
        for split, share in shares.items():
            targets = largest_remainder(round(share * sum(sizes)), sizes)
            for (_, stratum), target in zip(strata, targets):
                fill(stratum, split, target, assigned, rng)
    to = frame["group"].map(assigned).where(~pinned, frame["split"])
    moved = frame[to != frame["split"]]
    return pd.DataFrame({"id": data.ids[moved["row"]], "label": moved["label"].to_numpy(),
                         "cluster": moved["cluster"].to_numpy(), "from": moved["split"].to_numpy(),
                         "to": to[moved.index].to_numpy()})


def fill(stratum: pd.DataFrame, split: str, target: int, assigned: dict, rng: np.random.Generator) -> None:
    """Move whole groups between train and ``split`` until the stratum's count is closest to ``target``."""
    inside = [g for g in stratum.index if assigned[g] == split]
    count = int(stratum.loc[inside, "size"].sum())
    if count > target:
        source, dest = inside, "train"
    else:
        source, dest = [g for g in stratum.index if assigned[g] == "train"], split
    for group in rng.permutation(np.array(source, dtype=int)):
        size = int(stratum.at[group, "size"])
        after = count - size if dest == "train" else count + size
        if abs(after - target) < abs(count - target):
            assigned[group], count = dest, after


def mode(values: pd.Series):
    return values.value_counts(sort=True).index[0]


def split_mode(values: pd.Series) -> str:
    """The split most of a group's rows are in; ties go to the split listed first in USED."""
    counts = values.value_counts()
    return max(counts.index, key=lambda s: (counts[s], -USED.index(s)))


# --- adapters ---------------------------------------------------------------------------------

def last_embeddings(root: Path) -> tuple[str, dict[str, np.ndarray]]:
    """The last trained run's id and its embedding of each row id it saw ('' and {} before any run)."""
    run_id = last_run_id(state_dir(root))
    saved = load_predictions(state_dir(root), run_id) if run_id else None
    if saved is None:
        return "", {}
    return run_id, dict(zip(saved.ids, saved.embeddings))


def load_split_data(root: Path, config: Config, backend: Backend, seed: int,
                    progress: Progress = quiet) -> tuple[SplitData, pd.DataFrame]:
    """The rows a split is made of, their duplicates and clusters; and the whole table (ids assigned)."""

    table = current_table(backend, config)
    checked = tbl.validate(table, config.project.classes)
    images = load_images(root, config, checked, progress)
    used = checked.usable() & (checked.label != "") & checked.split.isin(USED) & table["id"].isin(images.sha)
    rows = table[used]
    ids = rows["id"].to_numpy(str)
    run_id, embedded = last_embeddings(root)
    has = np.array([i in embedded for i in ids], bool)
    embeddings = None
    if has.any():  # rows added since the run have none: they get exact duplicates only, no cluster
        embeddings = np.zeros((len(ids), len(next(iter(embedded.values())))), np.float32)
        embeddings[has] = np.stack([embedded[i] for i in ids[has]])
    labels = rows["label"].str.strip().map({c: k for k, c in enumerate(config.project.classes)}).to_numpy(int)
    progress(f"looking for duplicates among {len(ids)} rows"
             + (f" (near duplicates and clusters from run {run_id}'s embeddings)" if has.any() else
                " (exact only: no trained run's embeddings yet)"))
    pairs = duplicate_pairs(stack(images, ids), embeddings, has)
    pairs += [(min(a, b), max(a, b), "augmented") for a, b in augmented_pairs(list(ids), list(rows["note"]))]
    data = SplitData(ids, labels, checked.split[used].to_numpy(str), sorted(set(pairs)),
                     class_clusters(embeddings, labels, has, seed), run_id if has.any() else "")
    return data, table


def check_splits(root: Path, config: Config, seed: int | None = None, backend: Backend | None = None,
                 progress: Progress = quiet) -> dict:
    """Per class counts per split, duplicates across splits, and classes or clusters thin in val or test."""
    root = Path(root)
    backend = backend or open_backend(config, root)
    data, table = load_split_data(root, config, backend, config.model.seed if seed is None else seed, progress)
    classes = config.project.classes
    return {"per_class": counts_per_class(table["label"], table["split"], classes),
            "leakage": leakage(data, classes),
            "thin": thin_findings(data.labels, data.splits, data.clusters, classes),
            "clusters": {name: int(len(set(data.clusters[(data.labels == k) & (data.clusters >= 0)])))
                         for k, name in enumerate(classes)},
            "embeddings_from": data.embeddings_from, "rows": len(data.ids)}


@dataclass
class Rebalance:
    """A proposed split: the moves, counts before and after, and what it could not fix."""

    moves: pd.DataFrame     # id, label, cluster, from, to
    before: dict[str, dict[str, int]]
    after: dict[str, dict[str, int]]
    stuck: list[dict]       # duplicates across a fixed split that the plan could not join

    def to_json(self) -> dict:
        return {"moves": self.moves.to_dict("records"), "before": self.before, "after": self.after,
                "stuck": self.stuck}


def plan(root: Path, config: Config, val: float = 0.2, seed: int | None = None, include_test: bool = False,
         test: float | None = None, backend: Backend | None = None, progress: Progress = quiet) -> Rebalance:
    """Propose a split stratified by class and embedding cluster that keeps duplicate groups together."""
    root = Path(root)
    backend = backend or open_backend(config, root)
    seed = config.model.seed if seed is None else seed
    data, table = load_split_data(root, config, backend, seed, progress)
    shares = {"val": val}
    if include_test:
        counted = np.isin(data.splits, USED)
        shares["test"] = float((data.splits == "test").sum() / max(counted.sum(), 1)) if test is None else test
    if sum(shares.values()) >= 1 or min(shares.values()) < 0:
        given = " and ".join(f"--{split} {share:g}" for split, share in shares.items())
        raise ConfigError(f"{given}: each share must be at least 0 and together less than 1, so train keeps rows.")
    moves = plan_rebalance(data, shares, seed)
    classes = config.project.classes
    moves["label"] = [classes[k] for k in moves["label"]]
    after = tbl.apply_split_moves(table, moves)
    fixed = {s for s in USED if s != "train" and s not in shares}
    stuck = [pair for pair in leakage(data, classes) if {pair["a_split"], pair["b_split"]} & fixed]
    return Rebalance(moves, counts_per_class(table["label"], table["split"], classes),
                     counts_per_class(after["label"], after["split"], classes), stuck)


def apply(root: Path, config: Config, moves: pd.DataFrame, backend: Backend | None = None) -> dict:
    """Write the moves into the ``split`` column by id and record the table as a new label version.

    Only ``split`` cells of the moved rows change, and only where the cell still holds the split
    the plan saw: a person's edit made since wins.
    """

    backend = backend or open_backend(config, Path(root))
    written = backend.move_splits(moves[["id", "from", "to"]]) if len(moves) else 0
    recorded = History(state_dir(root)).record(current_table(backend, config), utc_now())
    return {"rows_written": written, "skipped": len(moves) - written, "version": recorded.version,
            "new_version": recorded.new}
