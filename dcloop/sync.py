"""One sync cycle: pull, validate, version, fetch, materialize, train, predict, write back, record.

This is the only module that knows the order of the stages; each stage lives in its own module.
"""

from __future__ import annotations

import hashlib
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import table as tbl
from .backends import Backend, open_backend
from .config import STATE_DIR, Config, quick_config
from .effect import record_run
from .errors import CapError, DcloopError, Stopped, TableBusy, TimedOut
from .fsutil import atomic_write_bytes
from .history import History, read_json, read_last_trained, state_error, write_json
from .images import DecodedCache, ImageStore, materialize
from .report import report_after_sync

Progress = Callable[[str], None]


def quiet(message: str) -> None:
    pass


@dataclass
class SyncReport:
    version: str
    new_version: bool
    labels_changed: int
    trained: bool
    message: str
    result: dict[str, str] = field(default_factory=dict)
    flagged: dict[str, list[str]] = field(default_factory=dict)
    rows_written: int = 0
    quick: bool = False
    findings: Findings | None = None

    def to_json(self) -> dict:
        return {"version": self.version, "new_version": self.new_version, "trained": self.trained,
                "labels_changed": self.labels_changed, "message": self.message, "result": self.result,
                "flagged": {k: "; ".join(v) for k, v in self.flagged.items()},
                "rows_written": self.rows_written, "quick": self.quick,
                **(self.findings or Findings()).to_json()}


TOP_ROWS = 10
TOP_COLUMNS = ["id", "url", "label", "prediction", "confidence", "suspicion", "flags"]


@dataclass
class Findings:
    """What the table says after a sync: rows per kind of flag, the suspects, the rows to look at first."""

    flag_counts: dict[str, int] = field(default_factory=dict)
    suspects: int = 0
    top: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, table: pd.DataFrame, n: int = TOP_ROWS) -> Findings:
        """Counted from the table's flags and suspicion columns as written (pure)."""
        counts = tbl.flag_counts(table["flags"])
        top = tbl.ranked(table, n)
        # a suspect is a row flagged label?, as the report counts them
        return cls(counts, counts.get("label?", 0), top.reindex(columns=TOP_COLUMNS, fill_value="").to_dict("records"))

    def to_json(self) -> dict:
        return {"flag_counts": self.flag_counts, "suspects": self.suspects, "top": self.top}


@dataclass
class Images:
    """What fetching and decoding gave: pixels by content hash, each row's hash and blob."""

    sha: dict[str, str]            # row id -> content hash (readable rows only)
    blob: dict[str, Path]          # row id -> cached file
    pixels: dict[str, np.ndarray]  # content hash -> uint8 (3, H, W)


@dataclass
class StopRule:
    """When a cycle must end at its next safe point: a stop was asked for, or [sync] max_minutes passed."""

    asked: Callable[[], bool]
    max_minutes: float
    started: float
    clock: Callable[[], float] = time.monotonic

    def overrun(self) -> bool:
        return self.clock() - self.started > self.max_minutes * 60

    def __call__(self) -> bool:
        return self.asked() or self.overrun()


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def state_dir(root: Path) -> Path:
    return Path(root) / STATE_DIR


ACCEPT_ROW_DROP = "If the rows were deleted on purpose, run: dcloop sync --accept-row-drop"


def pull(backend: Backend, config: Config, known: pd.DataFrame | None = None, accept_row_drop: bool = False,
         progress: Progress = quiet) -> pd.DataFrame:
    """The table with every row given an id; ids given or given back are written at once.

    ``known`` is the last recorded version. A table with far fewer rows is refused before anything
    is written (see table.RowDrop), unless ``accept_row_drop``; ids a spreadsheet program changed
    are given back (see table.repair_ids).
    """
    source = backend.describe()
    table = tbl.normalize(backend.read(), source, check_ids=False)
    known_rows = 0 if known is None else len(known)
    if not accept_row_drop:
        config.table.row_drop().check(known_rows, max(0, known_rows - len(table)), source, ACCEPT_ROW_DROP)
    repairs = tbl.repair_ids(table, known)
    if repairs:
        progress(f"{source}: gave {len(repairs)} row(s) back the id a spreadsheet program or an edit had changed: "
                 + ", ".join(f"line {tbl.row_number(p)} {tbl.shown(old) or '(blank)'} -> {new}"
                             for p, old, new in repairs[:10]) + (" ..." if len(repairs) > 10 else ""))
        table.loc[[p for p, _, _ in repairs], "id"] = [new for _, _, new in repairs]
    tbl.check_unique_ids(table, source)
    ids = tbl.assign_ids(table)
    patches = [tbl.id_repairs_patch(table, repairs)] if repairs else []
    if ids:
        table = tbl.with_ids(table, ids, config.table.default_split)
        new_rows = pd.DataFrame({tbl.NEW_ROW_KEY: list(ids), "id": list(ids.values())})
        new_rows["split"] = new_rows["id"].map(table.set_index("id")["split"])
        patches.append(new_rows)
    if patches:
        backend.write(pd.concat(patches, ignore_index=True).fillna(""))
    return table


def load_images(root: Path, config: Config, checked: tbl.Validated, progress: Progress,
                refetch: bool = False) -> Images:
    """Fetch and decode every row's image; rows that fail are flagged, the sync goes on.

    ``refetch`` asks every http image's server whether the image changed at its url.
    """
    cache = state_dir(root) / "cache"
    table = checked.table
    urls = dict(zip(table["id"], table["url"].str.strip()))
    store = ImageStore.of_project(root, config, progress, refetch)
    fetched = store.fetch([u for i, u in urls.items() if u])
    sha, blob = {}, {}
    for row_id, url in urls.items():
        result = fetched.get(url)
        if result is None:
            continue
        if not result.ok:
            checked.flag(row_id, f"unreadable: {result.error}")
        else:
            sha[row_id], blob[row_id] = result.sha, result.path
    pixels, errors = DecodedCache(cache, config.model.image_size).get(
        {sha[i]: blob[i] for i in sha}, progress)
    for row_id in [i for i in sha if sha[i] in errors]:
        checked.flag(row_id, f"unreadable: {errors[sha.pop(row_id)]}")
    return Images(sha, blob, pixels)


def counted_rows(checked: tbl.Validated, images: Images) -> pd.DataFrame:
    """The rows the cap counts: labeled, readable, unflagged train and val rows (label and split stripped)."""
    ready = checked.usable() & checked.table["id"].isin(images.sha) & (checked.label != "")
    rows = checked.table[ready & checked.split.isin(["train", "val"])].copy()
    rows["label"], rows["split"] = rows["label"].str.strip(), rows["split"].str.strip().str.lower()
    return rows


def check_cap(checked: tbl.Validated, images: Images, cap: int, root: Path) -> None:
    """Over the cap: a CapError with the counts per class and split, and a file of rows to drop."""
    from .cap import SUGGESTIONS_FILE, assess_cap
    rows = counted_rows(checked, images)
    if len(rows) > cap:
        findings = assess_cap(rows, stack(images, rows["id"]), state_dir(root), cap, root / SUGGESTIONS_FILE)
        raise CapError(findings.message())


def training_key(version: str, config: Config, images: Images) -> str:
    """Same labels, splits, image contents and model recipe -> same key -> no need to retrain."""
    seeds = f"|seeds={config.model.seeds}" if config.model.seeds > 1 else ""  # one seed keeps the old keys
    crossfit = f"|crossfit {config.suspicion.crossfit}" if config.suspicion.crossfit > 1 else ""
    digest = hashlib.sha256(f"{version}|{config.model.fingerprint()}|{config.project.classes}{seeds}{crossfit}".encode())
    for row_id in sorted(images.sha):
        digest.update(f"{row_id}:{images.sha[row_id]};".encode())
    return digest.hexdigest()[:16]


def rows_of(checked: tbl.Validated, images: Images, split: str) -> pd.DataFrame:
    mask = checked.trainable(split) & checked.table["id"].isin(images.sha)
    return checked.table[mask]


def stack(images: Images, ids) -> np.ndarray:
    size = next(iter(images.pixels.values())).shape if images.pixels else (3, 1, 1)
    return np.stack([images.pixels[images.sha[i]] for i in ids]) if len(ids) else np.zeros((0, *size), np.uint8)


def encode(labels: pd.Series, classes: list[str]) -> np.ndarray:
    return labels.str.strip().map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)


def scores(proba: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    from sklearn.metrics import f1_score
    if not len(labels):
        return {}
    predicted = proba.argmax(1)
    return {"accuracy": float((predicted == labels).mean()),
            "macro_f1": float(f1_score(labels, predicted, labels=range(num_classes),
                                       average="macro", zero_division=0))}


def split_scores(model, images: Images, rows: pd.DataFrame, classes: list[str]) -> dict[str, float]:
    """Accuracy and macro-F1 of ``model`` on ``rows`` ({} for none)."""
    from . import model as fixed
    return scores(fixed.predict(model, stack(images, rows["id"]))[0], encode(rows["label"], classes), len(classes))


def per_class_accuracy(proba: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, float]:
    predicted = proba.argmax(1)
    return {c: float((predicted[labels == k] == k).mean()) for k, c in enumerate(classes) if (labels == k).any()}


def predictions_patch(evidence, proba: np.ndarray, classes: list[str], low_label_prob: float) -> pd.DataFrame:
    """prediction and confidence from ``proba``; label_prob, suspicion, flags from suspicion.assess."""
    from .suspicion import assess
    best = proba.argmax(1) if len(proba) else np.zeros(0, int)
    out = pd.DataFrame({"id": evidence.ids, "prediction": [classes[k] for k in best],
                        "confidence": [f"{p:.3f}" for p in proba.max(1)] if len(proba) else []})
    out = out.merge(assess(evidence, classes, low_label_prob), on="id", how="left")
    out["sort_key"] = out["sort_key"].astype(str)  # a patch is all strings; write_back parses it
    return out


def pooled_label_proba(proba: np.ndarray, embeddings: np.ndarray, readable: pd.DataFrame, classes: list[str],
                       config: Config) -> np.ndarray:
    """Cross-validated probabilities for every labeled train/val/test row, so all are judged alike.

    The network's softmax on val rows is sharper than the logistic regression's on train rows;
    mixing the two would rank val rows above train rows for the same doubt.
    """
    from .suspicion import cross_val_proba
    splits = readable["split"].str.strip().str.lower()
    labeled = (readable["label"].str.strip().isin(classes) & splits.isin(["train", "val", "test"])).to_numpy()
    out = proba.copy()
    if labeled.sum() >= 2:
        out[labeled] = cross_val_proba(embeddings[labeled], encode(readable["label"][labeled], classes),
                                       len(classes), config.suspicion.folds, config.model.seed)
    return out


def gather_evidence(root: Path, checked: tbl.Validated, images: Images, ids: list[str], proba: np.ndarray,
                    embeddings: np.ndarray, classes: list[str], standing: set[str]):
    """What suspicion.assess needs about the readable rows ``ids``."""
    from .images import image_sizes
    from .suspicion import Evidence
    rows = checked.table.set_index("id").loc[ids]
    codes = rows["label"].str.strip().map({c: k for k, c in enumerate(classes)}).fillna(-1).astype(int)
    codes[rows["split"].str.strip().str.lower() == "exclude"] = -1  # a person already set these aside
    sizes = image_sizes({images.sha[i]: images.blob[i] for i in ids}, state_dir(root) / "cache")
    origins = [tbl.augmented_source(note) or row_id for row_id, note in zip(ids, rows["note"])]
    return Evidence(ids=list(ids), labels=codes.to_numpy(), splits=rows["split"].str.strip().str.lower().to_numpy(),
                    proba=proba, embeddings=embeddings, pixels=stack(images, ids),
                    sizes=[sizes[images.sha[i]] for i in ids], reviewed=np.array([i in standing for i in ids], bool),
                    origins=origins)


def judge_reviews(root: Path, checked: tbl.Validated, images: Images) -> tuple[set[str], dict[str, str], bool]:
    """(ids with a standing review, {id: note} for stale reviews and bad cells, whether the record changed)."""
    from . import review
    marks, bad = review.reviewed_marks(checked.table)
    current = {i: [lab, images.sha.get(i, "")] for i, lab in zip(checked.table["id"], checked.label)}
    path = state_dir(root) / "reviews.json"
    recorded = read_json(path, {})
    kept, standing, stale = review.update_reviews(recorded, marks, current)
    notes = {i: f"reviewed? {cell!r} is not ok or blank" for i, cell in bad.items()}
    notes.update({i: "review stale: label or image changed since; clear reviewed, sync, mark again"
                  for i in stale})
    if kept != recorded:
        write_json(path, kept)
    return standing, notes, kept != recorded


def write_back(backend: Backend, patch: pd.DataFrame, notes: dict[str, str], sort: bool) -> int:
    """Write the patch, review notes added to flags, rows most suspicious first when ``sort``."""
    from .backends import accepts_order
    patch = patch.copy()
    patch["flags"] = [join_flags(a, notes.get(i, "")) for i, a in zip(patch["id"], patch["flags"])]
    key = pd.to_numeric(patch.pop("sort_key"), errors="coerce").fillna(2.0)  # unusable rows first
    if sort and accepts_order(backend):
        return backend.write(patch, order=list(patch["id"].iloc[(-key).argsort(kind="stable")]))
    return backend.write(patch)


def keep_if_busy(write: Callable[[], None], busy: TableBusy | None) -> TableBusy | None:
    """Run ``write``; a file another program holds is reported after the run is kept, not raised here."""
    try:
        write()
    except TableBusy as e:
        return busy or e
    return busy


def flagged_ids(patch: pd.DataFrame) -> list[str]:
    """Rows with a finding; the augmented mark alone is not one."""
    found = patch["flags"].map(lambda cell: any(f and f != tbl.AUGMENTED_FLAG for f in cell.split("; ")))
    return list(patch.loc[found, "id"])


def sync(root: Path, config: Config, force: bool = False, progress: Progress = quiet,
         backend: Backend | None = None, should_stop: Callable[[], bool] = lambda: False,
         quick: bool = False, refetch: bool = False, accept_row_drop: bool = False) -> SyncReport:
    """Run one cycle on the project at ``root``; retrain only when something changed (or ``force``).

    ``refetch`` revalidates every cached http image; one changed at its url retrains.

    ``quick`` trains on the quick schedule; its result row says kind "quick" and has its own
    model fingerprint, so it is never compared with full trainings.
    """
    started = time.perf_counter()
    should_stop = StopRule(should_stop, config.sync.max_minutes, time.monotonic())
    config = quick_config(config) if quick else config
    root = Path(root)
    backend = backend or open_backend(config, root)
    classes = config.project.classes
    history = History(state_dir(root))
    head = history.head()
    known = history.snapshot(head) if history.has_snapshot(head) else None  # record() repairs a lost one
    table = pull(backend, config, known, accept_row_drop, progress)
    checked = tbl.validate(table, classes)
    recorded = history.record(table, utc_now(), progress)
    images = load_images(root, config, checked, progress, refetch)
    check_cap(checked, images, config.project.cap, root)
    stop_if(should_stop, "after fetching images")
    key = training_key(recorded.version, config, images)
    last = read_last_trained(state_dir(root), progress)
    changed = 0 if last.get("version") == recorded.version else changed_since(history, last.get("version", ""), table)
    standing, notes, reviews_changed = judge_reviews(root, checked, images)
    notes = with_expert_notes(notes, checked)
    if not force and last.get("key") == key:
        if reviews_changed or last.get("unwritten"):
            rescore(root, config, backend, checked, images, last["run_id"], standing, notes)
        if last.get("unwritten"):
            progress(f"wrote run {last['run_id']}'s predictions, which the last sync could not write")
            write_json(state_dir(root) / "last_trained.json", {k: v for k, v in last.items() if k != "unwritten"})
        message = (f"Nothing changed since run {last.get('run_id')} (label version {recorded.version}, "
                   f"model {config.model.fingerprint()}): not retraining. Use --force to retrain.")
        return SyncReport(recorded.version, recorded.new, changed, False, message,
                          flagged=checked.flags, findings=Findings.of(table))

    from . import model as fixed  # torch: imported only when training (a no-change sync does without it)

    train_rows, val_rows, test_rows = (rows_of(checked, images, s) for s in ("train", "val", "test"))
    if not len(train_rows):
        raise DcloopError(f"{backend.describe()}: no labeled, readable rows in split 'train' to train on.")
    folder = history.folder(recorded.version)
    materialize(folder, [(i, s, lab, images.blob[i], u) for part in (train_rows, val_rows, test_rows)
                         for i, s, lab, u in zip(part["id"], part["split"].str.strip().str.lower(),
                                                 part["label"].str.strip(), part["url"].str.strip())])
    progress(f"training {config.model.preset} on {len(train_rows)} rows, validating on {len(val_rows)}"
             + (f"; seed 1/{config.model.seeds} (seed {config.model.seed})" if config.model.seeds > 1 else ""))
    y_train, y_val, y_test = (encode(p["label"], classes) for p in (train_rows, val_rows, test_rows))
    trained = fixed.train(stack(images, train_rows["id"]), y_train, stack(images, val_rows["id"]), y_val,
                          len(classes), config.model, progress, should_stop)
    stop_if(should_stop, f"during training (after epoch {len(trained.history)})")
    other_seeds = train_other_seeds(config, images, (train_rows, val_rows, test_rows), (y_train, y_val, y_test),
                                    progress, should_stop)

    scored = score_rows(root, config, checked, images, trained, (train_rows, val_rows, test_rows),
                        standing, progress)
    proba, patch, position = scored.proba, scored.patch, scored.position
    val_scores = scores(proba[[position[i] for i in val_rows["id"]]], y_val, len(classes))
    test_scores = scores(proba[[position[i] for i in test_rows["id"]]], y_test, len(classes))
    stop_if(should_stop, "after predicting")

    run_id = uuid.uuid4().hex[:8]
    run_dir = state_dir(root) / "runs" / run_id
    fixed.save_checkpoint(trained, run_dir / "model.pt",
                          {"version": recorded.version, "classes": classes, "model": config.model.model_dump()})
    save_predictions(run_dir, scored, trained.history, config.suspicion.crossfit)
    try:
        written, busy = write_back(backend, patch, notes, config.suspicion.sort), None
    except TableBusy as e:  # Excel holds the file: keep the run, write its predictions next time
        written, busy = 0, e
    write_json(run_dir / "flagged.json", flagged_ids(patch))
    result = result_row(run_id, recorded.version, changed, config, checked, (train_rows, val_rows, test_rows),
                        val_scores, test_scores, trained, time.perf_counter() - started, "quick" if quick else "full")
    result.update(previous_flags(root, history, last, table, standing))
    result.update(seed_and_comparison_fields(root, checked, scored, result, classes,
                                             [{"val": val_scores.get("accuracy"), "test": test_scores.get("accuracy")}]
                                             + other_seeds))
    busy = keep_if_busy(lambda: backend.append_result(result), busy)  # labels.xlsx holds results too
    record_run(state_dir(root), run_id, result)
    busy = keep_if_busy(lambda: backend.update_classes(class_rows(checked, classes, proba, position, val_rows,
                                                                  y_val)), busy)
    # Written last: a sync killed before this point trains again next time.
    write_json(state_dir(root) / "last_trained.json", {"key": key, "run_id": run_id, "version": recorded.version,
                                                        **({"unwritten": True} if busy else {})})
    if busy:
        raise TableBusy(f"{busy} The model trained (run {run_id}) and its predictions are kept: the next "
                        f"sync writes them without training again.")
    after = tbl.apply_patch(table, patch)
    report_after_sync(root, config, backend, run_id, progress, after)
    summary = ", ".join(f"{split} accuracy {fmt(s['accuracy'])}"
                        for split, s in (("val", val_scores), ("test", test_scores)) if s) or "no val or test rows"
    message = (f"Run {run_id}: {summary} (label version {recorded.version}, "
               f"{changed} row(s) changed since the last training, {time.perf_counter() - started:.0f}s)")
    return SyncReport(recorded.version, recorded.new, changed, True, message,
                      result, checked.flags, written, quick, Findings.of(after))


@dataclass
class Scored:
    """Every readable row's probabilities (out of sample for labeled rows) and its patch."""

    rows: pd.DataFrame
    position: dict[str, int]
    proba: np.ndarray
    embeddings: np.ndarray
    label_proba: np.ndarray
    dynamics: np.ndarray
    patch: pd.DataFrame


def score_rows(root: Path, config: Config, checked: tbl.Validated, images: Images, trained, parts,
               standing: set[str], progress: Progress) -> Scored:
    """Predict every readable row; training rows are scored by folds that never saw them."""
    from . import model as fixed

    progress("predicting every row and scoring training rows out of sample")
    classes, train_rows = config.project.classes, parts[0]
    readable = checked.table[checked.table["id"].isin(images.sha)]
    proba, embeddings = fixed.predict(trained.model, stack(images, readable["id"]))
    position = {row_id: n for n, row_id in enumerate(readable["id"])}
    in_train = [position[i] for i in train_rows["id"]]
    evidence = gather_evidence(root, checked, images, list(readable["id"]), proba, embeddings, classes, standing)
    if config.suspicion.crossfit > 1:
        label_proba = crossfit_label_proba(config, evidence, progress)
    else:
        label_proba = pooled_label_proba(proba, embeddings, readable, classes, config)
    proba[in_train] = label_proba[in_train]  # a train row's prediction comes from folds that never saw it
    # Neighbours and outliers stay in the main network's space, cross-fitted or not: measured better
    # than each network's own space (scripts/bench_label_errors.py).
    evidence.proba = label_proba
    evidence.dynamics = training_dynamics(trained, parts, position, proba.shape)
    patch = merge_flags(predictions_patch(evidence, proba, classes, config.suspicion.low_label_prob),
                        checked, images, root, config)
    return Scored(readable, position, proba, embeddings, label_proba, evidence.dynamics, patch)


def training_dynamics(trained, parts, position: dict[str, int], shape: tuple[int, int]) -> np.ndarray:
    """Each train and val row's softmax averaged up to the kept weights' epoch; zeros for the other rows."""
    out = np.zeros(shape, np.float32)
    for rows, dynamics in ((parts[0], trained.train_dynamics), (parts[1], trained.val_dynamics)):
        if dynamics is not None and len(rows):
            out[[position[i] for i in rows["id"]]] = dynamics
    return out


def crossfit_label_proba(config: Config, evidence, progress: Progress) -> np.ndarray:
    """[suspicion] crossfit = K: labeled rows' probabilities from the networks that never trained on them;
    other rows keep the main network's."""
    from .suspicion import crossfit_proba
    spaces, held_out = crossfit_spaces(config, evidence.pixels, evidence.labels, evidence.splits, progress)
    out, labeled = evidence.proba.copy(), evidence.labels >= 0
    out[labeled] = crossfit_proba(spaces, held_out, evidence.labels, len(config.project.classes),
                                  config.suspicion.folds, config.model.seed)[labeled]
    return out


def crossfit_spaces(config: Config, pixels: np.ndarray, labels: np.ndarray, splits: np.ndarray,
                    progress: Progress) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """[suspicion] crossfit = K: K networks, each trained on the other folds of the labeled train rows.

    Returns each network's embeddings of every row and the rows it never trained on: every train
    row is held out by one network, val and test rows by all K.
    """
    from . import model as fixed
    from .suspicion import crossfit_folds
    k, num_classes = config.suspicion.crossfit, len(config.project.classes)
    train = np.flatnonzero((splits == "train") & (labels >= 0))
    val = np.flatnonzero((splits == "val") & (labels >= 0))
    fold = crossfit_folds(labels[train], k, config.model.seed)
    spaces, held_out = [], []
    for m in range(k):
        fit = train[fold != m]
        progress(f"cross-fitting network {m + 1}/{k}: training on {len(fit)} of {len(train)} train rows")
        trained = fixed.train(pixels[fit], labels[fit], pixels[val], labels[val], num_classes, config.model, progress)
        spaces.append(fixed.predict(trained.model, pixels)[1])
        held_out.append(~np.isin(np.arange(len(pixels)), fit))
    return spaces, held_out


def stop_if(should_stop: StopRule, where: str) -> None:
    """End the cycle at a safe point: nothing of it has been written back yet."""
    nothing = "no predictions or results were written; the next sync trains again."
    if should_stop.asked():
        raise Stopped(f"stopped {where}; {nothing}")
    if should_stop.overrun():
        raise TimedOut(f"stopped {where}: the sync ran longer than [sync] max_minutes = "
                       f"{should_stop.max_minutes:g}; {nothing} Raise max_minutes in dcloop.toml if "
                       f"this project needs longer.")


def save_predictions(run_dir: Path, scored: Scored, epochs: list[dict], crossfit: int = 0) -> None:
    """What later stages (reports, re-evaluation, rescoring) need from a run, without retraining.

    ``crossfit`` is the run's [suspicion] crossfit: whether its train rows were judged out of sample.
    """
    import io
    buffer = io.BytesIO()
    rows = scored.rows
    np.savez_compressed(buffer, ids=rows["id"].to_numpy(str), labels=rows["label"].str.strip().to_numpy(str),
                        splits=rows["split"].str.strip().str.lower().to_numpy(str),
                        proba=scored.proba.astype(np.float32), embeddings=scored.embeddings.astype(np.float32),
                        label_proba=scored.label_proba.astype(np.float32),
                        dynamics=scored.dynamics.astype(np.float32), crossfit=np.int64(crossfit))
    atomic_write_bytes(run_dir / "predictions.npz", buffer.getvalue())
    write_json(run_dir / "epochs.json", epochs)


def merge_flags(patch: pd.DataFrame, checked: tbl.Validated, images: Images, root: Path,
                config: Config) -> pd.DataFrame:
    """Add the validation and image flags; every row of the table gets a patch row."""
    everyone = pd.DataFrame({"id": checked.table["id"]})
    out = everyone.merge(patch, on="id", how="left").fillna("")
    made = set(checked.table["id"][checked.table["note"].map(tbl.is_augmented)])  # rows `dcloop augment` made
    out["flags"] = [join_flags(*checked.flags.get(i, []), b, tbl.AUGMENTED_FLAG if i in made else "")
                    for i, b in zip(out["id"], out["flags"])]
    # Rows left out of training (unknown label or split, bad id) come first, as unreadable ones do:
    # the model could not judge their label, so their suspicion is blank, and a blank sorts first
    # (write_back here, the report's queue reading the table).
    out.loc[out["id"].isin(checked.flags), ["sort_key", "suspicion"]] = ""
    if files_in_image_cells(config):
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


def class_rows(checked, classes, proba, position, val_rows, y_val) -> list[dict[str, str]]:
    val_accuracy = per_class_accuracy(proba[[position[i] for i in val_rows["id"]]], y_val, classes)
    rows = []
    for name in classes:
        mine = checked.label == name
        row = {"class": name, **{s: str(int((mine & (checked.split == s)).sum())) for s in tbl.SPLITS}}
        row["val_accuracy"] = fmt(val_accuracy.get(name))
        rows.append(row)
    return rows


def changed_since(history: History, version: str, table: pd.DataFrame) -> int:
    """Rows whose url, label or split differ from a recorded version (all rows if there is none)."""
    if not history.has_snapshot(version):
        return len(table)
    return len(tbl.diff(history.snapshot(version), table))


def result_row(run_id, version, changed, config, checked, parts, val_scores, test_scores, trained, seconds,
               kind: str) -> dict:
    train_rows, val_rows, test_rows = parts
    unlabeled = checked.usable() & (checked.label == "")
    return {
        "run_id": run_id, "time_utc": utc_now(), "label_version": version, "kind": kind,
        "rows_train": str(len(train_rows)), "rows_val": str(len(val_rows)), "rows_test": str(len(test_rows)),
        "rows_unlabeled": str(int(unlabeled.sum())), "rows_flagged": str(len(checked.flags)),
        "labels_changed": str(changed),
        "val_accuracy": fmt(val_scores.get("accuracy")), "test_accuracy": fmt(test_scores.get("accuracy")),
        "val_macro_f1": fmt(val_scores.get("macro_f1")), "test_macro_f1": fmt(test_scores.get("macro_f1")),
        "best_epoch": str(trained.best_epoch), "epochs": str(config.model.epochs),
        "preset": config.model.preset, "model_fingerprint": config.model.fingerprint(),
        "images_per_s": f"{trained.images_per_s:.0f}", "duration_s": f"{seconds:.1f}",
        "threads": trained.threads_used,
    }


def fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def rescore(root: Path, config: Config, backend: Backend, checked: tbl.Validated, images: Images,
            run_id: str, standing: set[str], notes: dict[str, str]) -> None:
    """Rewrite suspicion and flags from a run's saved predictions (reviews changed, labels did not)."""
    path = state_dir(root) / "runs" / run_id / "predictions.npz"
    try:
        with np.load(path) as saved:
            ids, proba, embeddings = list(saved["ids"]), saved["proba"], saved["embeddings"]
            label_proba = saved["label_proba"] if "label_proba" in saved else proba
            dynamics = saved["dynamics"] if "dynamics" in saved else None  # runs before dcloop kept them
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise state_error(path, f"{type(e).__name__}: {str(e)[:120]}") from e
    keep = [n for n, i in enumerate(ids) if i in images.sha]
    evidence = gather_evidence(root, checked, images, [ids[n] for n in keep], label_proba[keep], embeddings[keep],
                               config.project.classes, standing)
    evidence.dynamics = None if dynamics is None else dynamics[keep]
    patch = merge_flags(predictions_patch(evidence, proba[keep], config.project.classes,
                                          config.suspicion.low_label_prob), checked, images, root, config)
    write_back(backend, patch, notes, config.suspicion.sort)


def previous_flags(root: Path, history: History, last: dict, table: pd.DataFrame, standing: set[str]) -> dict:
    """The realised precision of the previous run's flags (blank fields on a first run)."""
    from .review import realised_precision
    flagged = read_json(state_dir(root) / "runs" / last.get("run_id", "-") / "flagged.json", [])
    version = last.get("version", "")
    if not history.has_snapshot(version):
        return realised_precision([], table, table, standing)
    return realised_precision(flagged, history.snapshot(version), table, standing)


# --- trainings under more seeds, what the edits did, model vs expert ---

def train_other_seeds(config: Config, images: Images, parts, encoded, progress: Progress,
                      should_stop: Callable[[], bool]) -> list[dict]:
    """Val and test accuracy of the fixed model under seed+1, seed+2, ...: the main run is seed 1 of N.

    Only scores are kept: predictions, suspicion and the checkpoint come from the main run, so the
    table reads the same with one seed or five.
    """
    from . import model as fixed
    (train_rows, val_rows, test_rows), (y_train, y_val, _) = parts, encoded
    classes, runs = config.project.classes, []
    x_train, x_val = stack(images, train_rows["id"]), stack(images, val_rows["id"])
    for k in range(1, config.model.seeds):
        settings = config.model.model_copy(update={"seed": config.model.seed + k})
        progress(f"seed {k + 1}/{config.model.seeds} (seed {settings.seed}): training")
        trained = fixed.train(x_train, y_train, x_val, y_val, len(classes), settings, progress, should_stop)
        stop_if(should_stop, f"during training under seed {settings.seed}")
        runs.append({split: split_scores(trained.model, images, rows, classes).get("accuracy")
                     for split, rows in (("val", val_rows), ("test", test_rows))})
        progress(f"seed {settings.seed}: val accuracy {fmt(runs[-1]['val']) or '-'}, "
                 f"test accuracy {fmt(runs[-1]['test']) or '-'}")
    return runs


def seed_and_comparison_fields(root: Path, checked: tbl.Validated, scored: Scored, result: dict,
                               classes: list[str], seed_runs: list[dict]) -> dict[str, str]:
    """The result row's seeds block, its change against the previous comparable run, and expert agreement."""
    from .agreement import expert_agreement, expert_cells
    from .effect import effect_fields, seed_fields
    fields = seed_fields(seed_runs)
    predicted = dict(zip(scored.rows["id"], [classes[k] for k in scored.proba.argmax(1)])) if len(scored.rows) else {}
    labels = {i: label for i, label in zip(checked.table["id"], checked.label) if label in classes}
    expert, _ = expert_cells(checked.table, classes)
    fields.update(effect_fields(state_dir(root), {**result, **fields}, labels, predicted, classes))
    return {**fields, **expert_agreement(expert, labels, predicted).fields()}


def with_expert_notes(notes: dict[str, str], checked: tbl.Validated) -> dict[str, str]:
    """The review notes plus a note for each expert cell that is not a class; the row still trains."""
    from .agreement import expert_cells, expert_notes
    out = dict(notes)
    for row_id, note in expert_notes(expert_cells(checked.table, checked.classes)[1]).items():
        out[row_id] = join_flags(out.get(row_id, ""), note)
    return out


# --- the cap, looked at without a sync ---

def cap_findings(root: Path, config: Config, target: int | None = None, progress: Progress = quiet,
                 backend: Backend | None = None):
    """Count the rows the cap counts against ``target`` (default [project] cap); over it, write suggestions."""
    from .cap import SUGGESTIONS_FILE, assess_cap
    root = Path(root)
    backend = backend or open_backend(config, root)
    checked = tbl.validate(pull(backend, config), config.project.classes)
    images = load_images(root, config, checked, progress)
    rows = counted_rows(checked, images)
    limit = config.project.cap if target is None else target
    return assess_cap(rows, stack(images, rows["id"]), state_dir(root), limit, root / SUGGESTIONS_FILE)
