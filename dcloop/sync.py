"""One sync cycle: pull, validate, version, fetch, train, score, write back, record.

This is the only module that knows the order of the stages; each stage lives in a module named for
what it does (docs/architecture.md): pull, dataset (images and rows), training, scoring, writeback,
runs (the run's files) and results (its results row).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from . import table as tbl
from .backends import Backend, open_backend
from .cap import check_cap
from .config import Config, schedule_of, scheduled
from .dataset import Dataset, SplitRows, encode, load_images
from .effect import record_run
from .errors import DcloopError, TableBusy
from .history import History, Recorded, utc_now
from .images import Seen, materialize
from .metrics import class_rows, fmt, scores
from .progress import Progress, quiet
from .pull import pull
from .report import report_after_sync
from .results import TrainedRun, changed_since, previous_flags, result_row, seed_and_comparison_fields
from .runs import CHECKPOINT, mark_written, read_last_trained, run_file, save_predictions, state_dir, write_flagged, \
    write_last_trained
from .scoring import Scored, flagged_ids, judge_reviews, score_rows, with_expert_notes
from .training import StopRule, stop_if, train_networks, training_key
from .writeback import as_written, keep_if_busy, rescore, write_back


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
    schedule: str = "full"  # the training's kind: full, quick or fast
    findings: Findings | None = None
    seen: Seen | None = None  # a no-change sync that owed nothing: what its fetch looked at (dcloop.unchanged)

    def to_json(self) -> dict:
        return {"version": self.version, "new_version": self.new_version, "trained": self.trained,
                "labels_changed": self.labels_changed, "message": self.message, "result": self.result,
                "flagged": {k: "; ".join(v) for k, v in self.flagged.items()},
                "rows_written": self.rows_written, "quick": self.schedule == "quick", "schedule": self.schedule,
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
class Asked:
    """What the person asked of this cycle beyond the settings."""

    force: bool = False            # retrain even when nothing changed
    schedule: str = "full"         # full, quick or fast (config.SCHEDULES)
    refetch: bool = False          # revalidate every cached http image
    accept_row_drop: bool = False  # a table that lost many rows is what the person wants


@dataclass
class Cycle:
    """What the stages of one cycle share once the table is pulled, checked and its images fetched."""

    data: Dataset
    backend: Backend
    progress: Progress
    history: History
    table: pd.DataFrame
    recorded: Recorded
    last: dict             # last_trained.json: the run the table shows
    key: str               # what a training of this table would be (training_key)
    changed: int           # rows changed since the last training
    standing: set[str]     # ids with a standing review
    notes: dict[str, str]  # review and expert notes, added to the flags written back
    reviews_changed: bool

    def unchanged(self) -> bool:
        return self.last.get("key") == self.key


def sync(root: Path, config: Config, force: bool = False, progress: Progress = quiet,
         backend: Backend | None = None, should_stop: Callable[[], bool] = lambda: False,
         quick: bool = False, refetch: bool = False, accept_row_drop: bool = False,
         fast: bool = False) -> SyncReport:
    """Run one cycle on the project at ``root``; retrain only when something changed (or ``force``).

    ``refetch`` revalidates every cached http image; one changed at its url retrains.

    ``quick`` and ``fast`` train on the quick or the fast schedule (config.py); the result row says
    kind "quick" or "fast" and has its own model fingerprint, so it is never compared with full trainings.
    """
    started = time.perf_counter()
    asked = Asked(force, schedule_of(quick, fast), refetch, accept_row_drop)
    stop = StopRule(should_stop, config.sync.max_minutes, time.monotonic())
    config = scheduled(config, asked.schedule)
    root = Path(root)
    cycle = pulled(root, config, backend or open_backend(config, root), progress, stop, asked)
    if cycle.unchanged() and not asked.force:
        return catch_up(cycle)
    parts = cycle.data.split_rows()
    run = train(cycle, parts, stop, asked.schedule)
    scored = score_rows(cycle.data, run.networks, parts, cycle.standing, progress)
    stop_if(stop, "after predicting")
    return keep_run(cycle, run, scored, started)


def pulled(root: Path, config: Config, backend: Backend, progress: Progress, stop: StopRule, asked: Asked) -> Cycle:
    """Pull and validate the table, record its version, fetch its images, judge its reviews."""
    history = History(state_dir(root))
    head = history.head()
    known = history.snapshot(head) if history.has_snapshot(head) else None  # record() repairs a lost one
    table = pull(backend, config, known, asked.accept_row_drop, progress)
    checked = tbl.validate(table, config.project.classes)
    recorded = history.record(table, utc_now(), progress)
    images = load_images(root, config, checked, progress, asked.refetch)
    check_cap(checked, images, config.project.cap, root)
    stop_if(stop, "after fetching images")
    data = Dataset(root, config, checked, images)
    last = read_last_trained(data.state, progress)
    changed = 0 if last.get("version") == recorded.version else changed_since(history, last.get("version", ""), table)
    standing, notes, reviews_changed = judge_reviews(data)
    return Cycle(data, backend, progress, history, table, recorded, last, training_key(recorded.version, config, images),
                 changed, standing, with_expert_notes(notes, checked), reviews_changed)


def catch_up(cycle: Cycle) -> SyncReport:
    """Nothing to train: write what is owed (changed reviews, predictions a held file refused) and say so."""
    last, data = cycle.last, cycle.data
    owed = cycle.reviews_changed or last.get("unwritten")
    if owed:
        rescore(data, cycle.backend, last["run_id"], cycle.standing, cycle.notes)
    if last.get("unwritten"):
        cycle.progress(f"wrote run {last['run_id']}'s predictions, which the last sync could not write")
        mark_written(data.state, last)
    message = (f"Nothing changed since run {last.get('run_id')} (label version {cycle.recorded.version}, "
               f"model {data.config.model.fingerprint()}): not retraining. Use --force to retrain.")
    return SyncReport(cycle.recorded.version, cycle.recorded.new, cycle.changed, False, message,
                      flagged=data.checked.flags, findings=Findings.of(cycle.table),
                      seen=None if owed or cycle.recorded.new else data.images.seen)


def train(cycle: Cycle, parts: SplitRows, stop: StopRule, kind: str) -> TrainedRun:
    """Materialize the version's class folders and train the fixed model on them, with its extra seeds and
    cross-fitting networks."""
    data, progress = cycle.data, cycle.progress
    config, images = data.config, data.images
    if not len(parts.train):
        raise DcloopError(f"{cycle.backend.describe()}: no labeled, readable rows in split 'train' to train on.")
    materialize(cycle.history.folder(cycle.recorded.version),
                [(i, s, lab, images.blob[i], u) for part in parts
                 for i, s, lab, u in zip(part["id"], part["split"], part["label"], part["url"])])
    progress(f"training {config.model.preset} on {len(parts.train)} rows, validating on {len(parts.val)}"
             + (f"; {config.model.seeds} seeds from {config.model.seed}" if config.model.seeds > 1 else "")
             + (f"; {config.suspicion.crossfit} cross-fitting networks" if config.suspicion.crossfit > 1 else ""))
    networks = train_networks(data, parts, progress, stop)
    return TrainedRun(uuid.uuid4().hex[:8], cycle.recorded.version, kind, networks, parts, {})


def keep_run(cycle: Cycle, run: TrainedRun, scored: Scored, started: float) -> SyncReport:
    """Keep the run's files, write its predictions back, append its results row; last, make it the table's run.

    A sync killed before the last step trains again next time. A table file another program holds
    (Excel) is reported after the run is kept: the next sync writes its predictions without training.
    """
    from . import model as fixed
    data, backend, run_id = cycle.data, cycle.backend, run.run_id
    config, classes, state = data.config, data.classes, data.state
    run.scores = {split: scores(scored.proba[[scored.position[i] for i in rows["id"]]], encode(rows["label"], classes),
                                len(classes)) for split, rows in (("val", run.parts.val), ("test", run.parts.test))}
    fixed.save_checkpoint(run.trained, run_file(state, run_id, CHECKPOINT),
                          {"version": run.version, "classes": classes, "model": config.model.model_dump()})
    save_predictions(state, run_id, scored.predictions(config.suspicion.crossfit), run.trained.history)
    try:
        written, busy = write_back(backend, scored.patch, cycle.notes, config.suspicion.sort), None
    except TableBusy as e:
        written, busy = 0, e
    write_flagged(state, run_id, flagged_ids(scored.patch))
    result = result_row(data, run, cycle.changed, time.perf_counter() - started)
    result.update(previous_flags(data.root, cycle.history, cycle.last, cycle.table, cycle.standing))
    result.update(seed_and_comparison_fields(data, run, scored, result))
    busy = keep_if_busy(lambda: backend.append_result(result), busy)  # labels.xlsx holds results too
    record_run(state, run_id, result)
    y_val = encode(run.parts.val["label"], classes)
    busy = keep_if_busy(lambda: backend.update_classes(class_rows(data.checked, classes, scored.proba,
                                                                  scored.position, run.parts.val, y_val)), busy)
    write_last_trained(state, cycle.key, run_id, run.version, unwritten=busy is not None)
    if busy:
        raise TableBusy(f"{busy} The model trained (run {run_id}) and its predictions are kept: the next "
                        f"sync writes them without training again.")
    after = as_written(cycle.table, scored.patch, backend, config.suspicion.sort)  # as the report reads it
    report_after_sync(data.root, config, backend, run_id, cycle.progress, after)
    summary = ", ".join(f"{split} accuracy {fmt(s['accuracy'])}" for split, s in run.scores.items() if s) \
        or "no val or test rows"
    message = (f"Run {run_id}: {summary} (label version {run.version}, "
               f"{cycle.changed} row(s) changed since the last training, {time.perf_counter() - started:.0f}s)")
    return SyncReport(run.version, cycle.recorded.new, cycle.changed, True, message,
                      result, data.checked.flags, written, run.kind, Findings.of(after))
