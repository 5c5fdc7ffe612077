"""`dcloop doctor`: check a project's state; with ``repair``, fix what can be fixed without losing anything.

Caches (decoded images, the file, url and size indexes, image blobs) are deleted when damaged: the
next sync rebuilds them. State (label versions, runs, last_trained.json, comparable.json,
reviews.json) is changed only where the README's table says it is safe; a state file that is
replaced is kept beside it as ``<name>.broken``. The label table and the results are only read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import table as tbl
from .config import STATE_DIR, Config, load_config
from .errors import DcloopError, StateError
from .fsutil import remove_temp_files
from .history import INDEX_COLUMNS, History, parse_json, read_json, write_json
from .lock import LOCK_FILE, ProjectLock, current_holder, describe_holder

CACHE_JSON = ("local-files.json", "sizes.json", "urls.json")
# A repair is described once, in the past tense; a problem line says what --repair would do.
IMPERATIVE = {"removed": "remove", "rebuilt": "rebuild", "deleted": "delete", "recorded": "record",
              "dropped": "drop", "moved": "move", "set": "set"}


@dataclass
class Finding:
    status: str  # ok, problem or repaired
    what: str    # a file, or a part of the project
    detail: str

    def line(self) -> str:
        return f"{self.status:<8} {self.what}: {self.detail}"


@dataclass
class Checkup:
    """The findings of one doctor run; healthy when no problem remains."""

    root: Path
    repair: bool
    findings: list[Finding] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(f.status != "problem" for f in self.findings)

    def ok(self, what, detail: str) -> None:
        self.findings.append(Finding("ok", str(what), detail))

    def problem(self, what, detail: str, fix: Callable[[], object] | None = None, done: str = "") -> None:
        """Record a problem; with --repair and a ``fix``, run it and record ``done`` (past tense) instead."""
        if fix is not None and self.repair:
            fix()
            self.findings.append(Finding("repaired", str(what), f"{detail}; {done}"))
        elif fix is not None:
            verb, rest = done.split(" ", 1)
            self.findings.append(Finding("problem", str(what), f"{detail}; --repair would {IMPERATIVE[verb]} {rest}"))
        else:
            self.findings.append(Finding("problem", str(what), detail))

    def to_json(self) -> dict:
        return {"project": str(self.root), "healthy": self.healthy, "repair": self.repair,
                "findings": [asdict(f) for f in self.findings]}


def doctor(root: Path, repair: bool = False) -> Checkup:
    """Check (and with ``repair`` fix) the project at ``root``; takes the project's lock to repair."""
    root = Path(root)
    state = root / STATE_DIR
    found = Checkup(root, repair)
    config = check_config(root, found)
    lock_ok = check_lock_file(state, found)
    table = check_table(root, config, found)
    if repair and not (lock_ok and state.is_dir()):
        found.repair = False  # no lock to take (or no project): nothing is changed, only reported
    with ProjectLock(state, "dcloop doctor --repair", config.sync.max_minutes) if found.repair \
            else contextlib.nullcontext():
        check_temp_files(root, config, found)
        check_versions(History(state), table, found)
        check_runs(state, found)
        check_reviews(state, found)
        check_caches(state / "cache", found)
    found.repair = repair
    return found


def check_config(root: Path, found: Checkup) -> Config:
    try:
        config = load_config(root)
    except DcloopError as e:
        path = root / "dcloop.toml"
        found.problem(path, f"{str(e).removeprefix(f'{path}: ')} (the other checks use the default settings)")
        return Config()
    found.ok(root / "dcloop.toml", "parses")
    return config


def check_table(root: Path, config: Config, found: Checkup) -> pd.DataFrame | None:
    """The label table with ids as sync would give them, or None when it cannot be read."""
    from .backends import open_backend
    try:
        backend = open_backend(config, root)
        table = tbl.normalize(backend.read(), backend.describe())
        results = backend.read_results()
    except DcloopError as e:
        found.problem("label table", str(e))
        return None
    found.ok(backend.describe(), f"{len(table)} rows readable, and {len(results)} result row(s)")
    return tbl.with_assigned_ids(table, config.table.default_split)


def check_lock_file(state: Path, found: Checkup) -> bool:
    """Whether the lock path is usable (absent or a regular file); an empty folder there is removed."""
    path = state / LOCK_FILE
    if not os.path.lexists(path):
        found.ok(path, "no lock file yet")
        return True
    mode = os.lstat(path).st_mode
    if stat.S_ISREG(mode):
        holder = current_holder(state)
        held = (f"held by {describe_holder(holder, None, datetime.now(timezone.utc))}" if holder is not None
                else "a regular file, not held")
        found.ok(path, held)
        return True
    if stat.S_ISDIR(mode) and not any(path.iterdir()):
        found.problem(path, "an empty folder where the lock file belongs: every command fails", path.rmdir,
                      "removed the empty folder; the next command creates the lock file")
        return not path.exists()
    kind = "a folder that is not empty" if stat.S_ISDIR(mode) else "not a regular file"
    found.problem(path, f"{kind} where the lock file belongs: every command fails. Look at it, move it away "
                        f"by hand, then run doctor again")
    return False


def check_temp_files(root: Path, config: Config, found: Checkup) -> None:
    places = [(root / STATE_DIR, None)]
    if config.table.backend == "csv":
        places += [((root / name).parent, [Path(name).name]) for name in (config.table.path, config.table.results)]
    leftovers = [p for folder, names in places for p in temp_files(folder, names)]
    if not leftovers:
        found.ok("temporary files", "none")
        return
    found.problem("temporary files", f"{len(leftovers)} left by a killed process, or being written by a running "
                                     f"one (e.g. {leftovers[0]})",
                  lambda: [remove_temp_files(folder, names) for folder, names in places],
                  "removed them (holding the lock, so no running dcloop owned them)")


def temp_files(folder: Path, names: list[str] | None) -> list[Path]:
    if names is None:
        return sorted(folder.rglob(".*.tmp")) if folder.is_dir() else []
    return sorted(p for name in names for p in folder.glob(f".{name}.*.tmp"))


def check_versions(history: History, table: pd.DataFrame | None, found: Checkup) -> None:
    path = history.root / "index.csv"
    try:
        index = history.index()
    except StateError as e:
        found.problem(path, f"cannot be read ({e.reason})", lambda: rebuild_index(history),
                      "rebuilt it from the version folders, in the order of their files' modification times "
                      "(the damaged file is kept as index.csv.broken)")
        return
    if not len(index) and saved_versions(history):
        found.problem(path, f"missing, but {len(saved_versions(history))} version folder(s) exist",
                      lambda: rebuild_index(history), "rebuilt it from the version folders")
        return
    gone = [v for v in dict.fromkeys(index["version"]) if not readable_snapshot(history, v)]
    head = index["version"].iloc[-1] if len(index) else ""
    if head in gone:
        gone.remove(head)
        check_head(history, index, table, found)
    if gone:
        trained = runs_by_version(history.root.parent)
        under = "; ".join(f"{v} (run {', '.join(trained[v])})" for v in gone if v in trained)
        found.problem(path, f"{len(gone)} listed label version(s) have no readable snapshot: {', '.join(gone)}"
                            + (f"; runs trained under {under} keep their results rows" if under else ""),
                      lambda: drop_versions(history, index, gone),
                      "dropped them from the index (the old index is kept as index.csv.broken); dcloop log "
                      "no longer lists them")
    else:
        found.ok(path, f"{len(index)} label version(s), every older snapshot readable")


def check_head(history: History, index: pd.DataFrame, table: pd.DataFrame | None, found: Checkup) -> None:
    """The newest version's snapshot is gone: written again when the table is that version, else dropped."""
    head = index["version"].iloc[-1]
    problem = f"the snapshot of the newest label version {head} is missing or unreadable"
    if table is None:
        found.problem(history.folder(head), f"{problem}; the table could not be read, so doctor cannot tell "
                                            f"whether the table still holds that version: fix the table first")
    elif tbl.label_version(table) == head:
        found.problem(history.folder(head), problem,
                      lambda: history.write_snapshot(head, table, grandparent(history, index, table)),
                      "recorded it again from the table, which holds exactly that version")
    else:
        found.problem(history.folder(head), f"{problem}, and the table has changed since",
                      lambda: drop_versions(history, index, [head]),
                      "dropped it from the index (the old index is kept as index.csv.broken): the next sync "
                      "records the table against the version before it")


def readable_snapshot(history: History, version: str) -> bool:
    try:
        history.snapshot(version)
        return True
    except DcloopError:
        return False


def saved_versions(history: History) -> list[Path]:
    """Version folders with a readable snapshot, oldest file first."""
    if not history.root.is_dir():
        return []
    folders = [p for p in history.root.iterdir() if p.is_dir() and readable_snapshot(history, p.name)]
    return sorted(folders, key=lambda p: (p / "labels.csv").stat().st_mtime_ns)


def rebuild_index(history: History) -> None:
    rows, before = [], pd.DataFrame(columns=tbl.VERSIONED_COLUMNS)
    for folder in saved_versions(history):
        snapshot = history.snapshot(folder.name)
        when = datetime.fromtimestamp((folder / "labels.csv").stat().st_mtime, timezone.utc)
        rows.append({"version": folder.name, "parent": rows[-1]["version"] if rows else "",
                     "time_utc": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "rows": str(len(snapshot)),
                     "changed": str(len(tbl.diff(before, snapshot)))})
        before = snapshot
    keep_broken(history.root / "index.csv")
    history.write_index(pd.DataFrame(rows, columns=INDEX_COLUMNS))


def drop_versions(history: History, index: pd.DataFrame, gone: list[str]) -> None:
    keep_broken(history.root / "index.csv")
    kept = index[~index["version"].isin(gone)].copy()
    kept.loc[kept["parent"].isin(gone), "parent"] = ""  # a parent without a snapshot cannot be diffed against
    history.write_index(kept)


def grandparent(history: History, index: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    parent = index["parent"].iloc[-1]
    return history.snapshot(parent) if readable_snapshot(history, parent) else table.iloc[0:0]


def keep_broken(path: Path) -> None:
    """Move a state file aside before replacing it; the first damaged copy is the one kept."""
    broken = path.with_name(path.name + ".broken")
    if path.exists() and not broken.exists():
        os.replace(path, broken)


def runs_by_version(state: Path) -> dict[str, list[str]]:
    """{label version: run ids trained under it}, from each run's result.json (unreadable ones skipped)."""
    out: dict[str, list[str]] = {}
    for path in sorted((Path(state) / "runs").glob("*/result.json")):
        try:
            out.setdefault(parse_json(path, {}).get("label_version", ""), []).append(path.parent.name)
        except (ValueError, OSError):
            continue
    return out


def check_runs(state: Path, found: Checkup) -> None:
    """last_trained.json and comparable.json, and the files of the runs they name."""
    last_path = state / "last_trained.json"
    retrain = "deleted it: the next sync trains again"
    try:
        last = parse_json(last_path, {})
    except (ValueError, OSError) as e:
        found.problem(last_path, f"unreadable ({e})", last_path.unlink, retrain)
        last = None
    if last:
        run = state / "runs" / str(last.get("run_id", ""))
        damage = npz_damage(run / "predictions.npz", ("ids", "proba", "embeddings"))
        if damage:
            found.problem(last_path, f"names run {last.get('run_id')!r}, whose predictions.npz is {damage}",
                          last_path.unlink, retrain)
        else:
            found.ok(last_path, f"run {last.get('run_id')}, label version {last.get('version')}")
            check_json(run / "flagged.json", [], found, "deleted it: the next result row leaves the previous "
                                                        "flags' precision blank")
    elif last is not None:
        found.ok(last_path, "readable, no training recorded" if last_path.exists() else "absent: the next sync trains")
    check_comparable(state, found)


def check_comparable(state: Path, found: Checkup) -> None:
    path = state / "comparable.json"
    if not check_json(path, {}, found, "deleted it: the next run is compared with no earlier run"):
        return
    latest = read_json(path, {})
    broken = {kind: run for kind, run in latest.items() if run_damage(state / "runs" / str(run))}
    if broken:
        found.problem(path, f"names run(s) whose result.json or predictions.npz cannot be read: "
                            f"{', '.join(map(str, broken.values()))}",
                      lambda: write_json(path, {k: v for k, v in latest.items() if k not in broken}),
                      "dropped them: the next run of that kind is compared with no earlier run")


def run_damage(run: Path) -> bool:
    """Whether a run's result.json, or its predictions.npz where there is one, cannot be read."""
    predictions = run / "predictions.npz"
    return (json_damage(run / "result.json", {}) is not None
            or (predictions.exists() and bool(npz_damage(predictions, ("ids", "labels", "proba")))))


def check_reviews(state: Path, found: Checkup) -> None:
    path = state / "reviews.json"
    damage = json_damage(path, {})
    if damage is None:
        found.ok(path, "readable" if path.exists() else "absent (no reviews recorded)")
        return
    found.problem(path, damage, lambda: keep_broken(path),
                  "moved it to reviews.json.broken: the rows marked reviewed in the table are recorded afresh "
                  "at the next sync")


def check_json(path: Path, default, found: Checkup, done: str) -> bool:
    """Report a JSON state file whose loss only costs what ``done`` says; True when it is readable."""
    damage = json_damage(path, default)
    if damage is None:
        if path.exists():
            found.ok(path, "readable")
        return True
    found.problem(path, damage, path.unlink, done)
    return False


def json_damage(path: Path, default) -> str | None:
    try:
        parse_json(path, default)
        return None
    except (ValueError, OSError) as e:
        return f"unreadable ({str(e)[:120]})"


def npz_damage(path: Path, keys: tuple[str, ...]) -> str:
    """'' when the .npz loads with ``keys``, else what is wrong."""
    if not path.is_file():
        return "missing"
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        return f"unreadable ({type(e).__name__})"
    return f"missing {', '.join(missing)}" if missing else ""


def check_caches(cache: Path, found: Checkup) -> None:
    """Every cache file that cannot be read is deleted on repair: the next sync rebuilds it."""
    if not cache.is_dir():
        found.ok(cache, "absent (the next sync fills it)")
        return
    rebuilt = "deleted it: the next sync rebuilds it"
    for path in sorted(cache.glob("decoded-*.npz")):
        damage = npz_damage(path, ("hashes", "pixels"))
        if damage:
            found.problem(path, damage, path.unlink, rebuilt)
        else:
            found.ok(path, "readable")
    for name in CACHE_JSON:
        damage = json_damage(cache / name, {})
        if damage:
            found.problem(cache / name, damage, (cache / name).unlink, rebuilt)
    bad = [p for p in sorted((cache / "blobs").glob("*/*")) if p.is_file() and not p.name.startswith(".")
           and sha256_file(p) != p.name]
    if bad:
        found.problem(cache / "blobs", f"{len(bad)} image(s) whose content does not match their name "
                                       f"(e.g. {bad[0].name})", lambda: [p.unlink() for p in bad],
                      "deleted them: the next sync fetches them again")
    mode = stat.S_IMODE(cache.stat().st_mode)
    if mode & 0o077:
        found.problem(cache, f"permissions {mode:04o}: other users can read the cached images",
                      lambda: cache.chmod(0o700), "set them to 0700")
    else:
        found.ok(cache, f"permissions {mode:04o}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
