"""The quick check: a cron run of ``dcloop sync DIR`` that finds nothing can have changed prints what the
last sync printed, without importing pandas, pydantic or torch (seconds of a process that lasts one).

A sync that found nothing changed, owed nothing (no changed review to write, no predictions a held
file refused) and wrote nothing leaves STATE_DIR/unchanged.json (names.UNCHANGED), the stamp: the
exact text it printed on stdout and stderr, its exit status, and a digest of everything its outcome
depends on:

- the command (only a plain ``dcloop sync [DIR] [--json]`` qualifies), the working folder, every
  DCLOOP_* variable and the few others that change a path or the output's encoding (HOME, LANG, ...);
- the code: dcloop's version, the size and mtime of every file of the dcloop package, the Python
  interpreter, and the mtime of each site-packages folder (an installed or upgraded package changes it);
- the bytes of dcloop.toml and of the label table (csv or xlsx; a Google Sheet always syncs in full);
- the state a sync reads to decide, by stat (dcloop writes each whole, by rename: a new inode and
  ctime): last_trained.json, the versions index and the head's snapshot, the last run's predictions,
  reviews.json, the image caches, the results file, the report page;
- every local image file the table names, by stat: device, inode, mode, size, mtime and ctime (a
  file replaced or edited in any way, even with its mtime put back, has a new ctime or inode; the
  fields of images.stat_text, the fetch's cache key, are among them, so a file the full sync would
  read again never passes the quick check);
- cached http images: the moment the first falls due for revalidation ([images] revalidate_days);
  from then on the stamp is never used.

``replay`` is the first thing a ``dcloop`` process does (cli.DcloopGroup.main). When the digest of
the project now equals the stamp's, it prints the stamp's text and a note on stderr, and the process
exits with the stamp's status. Anything else (another command, an option, no stamp, a corrupt one, any error, a different
digest) returns, and the sync runs in full, which removes the stamp when it takes the lock and
writes it again only when it too finds nothing changed. When in doubt the sync runs: a stamp only
ever skips work whose outcome is already known.

Standard library only, and nothing here may import a module that imports pandas, pydantic or torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

from . import __version__
from .lock import ProjectLock
from .names import CONFIG_FILE, STATE_DIR, UNCHANGED

FORMAT = 1
NOTE = "dcloop: nothing changed (quick check): the last sync's output, replayed"
# Variables besides DCLOOP_* that change what a sync reads (HOME: ~ in a url) or how its text is written.
ENVIRONMENT = ("HOME", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONIOENCODING", "PYTHONUTF8")


def sync_args(argv: list[str]) -> tuple[str, bool] | None:
    """(DIR as the sync command prints it, --json) for ``sync [DIR] [--json]``; None for anything else."""
    if not argv or argv[0] != "sync" or argv.count("--json") > 1:
        return None
    rest = [a for a in argv[1:] if a != "--json"]
    if len(rest) > 1 or (rest and (not rest[0] or rest[0].startswith("-"))):
        return None
    return str(Path(rest[0] if rest else ".")), "--json" in argv


def context(directory: str, as_json: bool) -> dict:
    """The command, its surroundings and the code that answers it."""
    return {"format": FORMAT, "command": ["sync", directory, as_json], "cwd": os.getcwd(),
            "project": os.path.abspath(directory),
            "environment": sorted((k, v) for k, v in os.environ.items()
                                  if k.startswith("DCLOOP_") or k in ENVIRONMENT),
            "python": [sys.executable, sys.version], "code": code_fingerprint()}


def code_fingerprint() -> list:
    """dcloop's version and files (size, mtime), and each site-packages folder's stat: a change of code
    or of an installed package gives another fingerprint."""
    package = os.path.dirname(os.path.abspath(__file__))
    files = []
    for folder, subfolders, names in os.walk(package):
        subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
        for name in sorted(names):
            st = os.stat(os.path.join(folder, name))
            files.append([os.path.relpath(os.path.join(folder, name), package), st.st_size, st.st_mtime_ns])
    installed = [[p, fingerprint(p)] for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    return [__version__, package, files, installed]


def fingerprint(path: str) -> list:
    """A file's stat as the digest takes it, or the error number when there is none to take."""
    try:
        st = os.stat(path)
    except OSError as e:
        return ["!", e.errno]
    return [st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def content(path: str) -> str:
    """The sha256 of a file's bytes, or the error number."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as e:
        return f"!{e.errno}"


def inputs_digest(where: dict, hashed: list[str], state: list[str], images: list[str]) -> str:
    """The digest of a sync's inputs: ``where`` (context), the bytes of ``hashed``, the stat of ``state``
    and ``images``. The writer and the quick check both call this, with the lists the stamp keeps."""
    digest = hashlib.sha256(json.dumps(where, sort_keys=True).encode())
    for kind, paths, look in (("hashed", hashed, content), ("state", state, fingerprint),
                              ("images", images, fingerprint)):
        digest.update(f"\x1d{kind}\x1e".encode())
        for path in paths:
            digest.update(f"{path}\x1f{look(path)}\x1e".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def stamp_path(directory: str | Path) -> Path:
    return Path(directory) / STATE_DIR / UNCHANGED


def read_stamp(path: Path) -> dict | None:
    """The stamp, or None when absent, unreadable or not of this format."""
    try:
        stamp = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    keys = {"format": int, "digest": str, "due_at": (int, float), "hashed": list, "state": list, "images": list,
            "stdout": str, "stderr": list, "exit": int}
    if not isinstance(stamp, dict) or any(not isinstance(stamp.get(k), t) for k, t in keys.items()):
        return None
    lists = stamp["hashed"] + stamp["state"] + stamp["images"] + stamp["stderr"]
    if stamp["format"] != FORMAT or not all(isinstance(p, str) for p in lists):
        return None
    return stamp


def replay(argv: list[str]) -> int | None:
    """When nothing can have changed since the last no-change sync, print its output and return its exit
    status; None (run the sync in full) otherwise, whatever the reason."""
    args = sync_args(argv)
    if args is None or not stamp_path(args[0]).is_file():
        return None
    try:
        stamp = still_true(*args)
    except Exception:  # noqa: BLE001 - any doubt means the same: run the sync in full
        return None
    if stamp is None:
        return None
    sys.stdout.write(stamp["stdout"])
    sys.stdout.flush()
    sys.stderr.write("".join(f"{line}\n" for line in [*stamp["stderr"], NOTE]))
    return stamp["exit"]


def still_true(directory: str, as_json: bool) -> dict | None:
    """The stamp when its digest is the project's now, else None.

    It takes the project's lock, as a sync does, rather than reading without it: a sync in progress
    (or a watch) holds the lock, and then the full sync must run to say so (exit 3) just as it did
    before there was a quick check; and while the digest is taken no other dcloop command writes.
    It never waits: a held lock returns None. It writes nothing but the lock file's holder text.
    """
    where = context(directory, as_json)
    with ProjectLock(Path(directory) / STATE_DIR, "dcloop sync"):
        stamp = read_stamp(stamp_path(directory))
        if stamp is None or time.time() >= stamp["due_at"]:
            return None
        now = inputs_digest(where, stamp["hashed"], stamp["state"], stamp["images"])
        return stamp if now == stamp["digest"] else None


# --- The writer: a full sync that found nothing changed ---------------------------------------------

class Recorder:
    """Writes the stamp after a full ``dcloop sync [DIR] [--json]``, when it can vouch for it.

    ``begin`` runs before the config is read; ``look`` under the lock, before the sync; ``finish`` under
    the lock, after it. The stamp is written only if the sync found nothing changed, owed and wrote
    nothing, and nothing it read changed while it ran: the same digest before and after, and every
    image file as the sync's own look saw it (images.Seen).
    """

    def __init__(self, directory: Path, as_json: bool):
        self.directory = str(directory)
        self.where = context(self.directory, as_json)
        self.config_file = str(Path(self.directory) / CONFIG_FILE)
        self.config_sha = content(self.config_file)  # the bytes the config is about to be read from
        self.before: tuple[list[str], list[str], str] | None = None
        self.said: list[str] = []  # what the sync printed on stderr, as the CLI's say() printed it

    @classmethod
    def begin(cls, directory: Path, as_json: bool) -> Recorder | None:
        """A recorder for a plain sync, before its config is read; None when even that fails."""
        try:
            return cls(directory, as_json)
        except Exception:  # noqa: BLE001 - e.g. the working folder was removed: no stamp
            return None

    def heard(self, say):
        """``say``, keeping what it says for the stamp."""
        def progress(message: str) -> None:
            self.said.append(f"dcloop: {message}")
            say(message)
        return progress

    def look(self, config) -> None:
        """The inputs' digest before the sync, when the project can have a stamp at all."""
        try:
            if config.table.backend in ("csv", "xlsx") and config.images.local_paths_anywhere(config.table.backend):
                self.before = self.core(config)
        except Exception:  # noqa: BLE001 - no stamp, the sync goes on
            self.before = None

    def core(self, config) -> tuple[list[str], list[str], str]:
        hashed = [self.config_file, str(Path(self.directory) / config.table.path)]
        state = state_files(Path(self.directory), config)
        return hashed, state, inputs_digest(self.where, hashed, state, [])

    def finish(self, config, report, lines: list[str]) -> bool:
        """Write the stamp, with ``lines`` (the sync's stdout), if the sync can vouch for it; whether it
        did. Never fails the sync."""
        try:
            stamp = self.stamp(config, report, "".join(f"{line}\n" for line in lines), self.said)
            if stamp is None:
                return False
            from .history import write_json
            write_json(stamp_path(self.directory), stamp)
            return True
        except Exception:  # noqa: BLE001 - no stamp: the next sync runs in full
            return False

    def stamp(self, config, report, stdout: str, stderr: list[str]) -> dict | None:
        from .images import MAX_IMAGE_BYTES, observed

        seen = report.seen
        if self.before is None or report.trained or seen is None or not seen.complete or "\x1b" in stdout:
            return None  # (click.echo strips terminal escapes off a pipe, the replay would not: never mind them)
        if content(self.config_file) != self.config_sha or self.core(config) != self.before:
            return None  # the sync wrote something, or a person edited the table or the settings meanwhile
        images = sorted(seen.local)
        if any(observed(path, MAX_IMAGE_BYTES) != seen.local[path] for path in images):
            return None  # an image file changed after the sync looked at it
        hashed, state, _ = self.before
        due_at = seen.due_at if math.isfinite(seen.due_at) else 1e300
        return {"format": FORMAT, "digest": inputs_digest(self.where, hashed, state, images), "due_at": due_at,
                "hashed": hashed, "state": state, "images": images, "stdout": stdout, "stderr": stderr, "exit": 0}


def state_files(root: Path, config) -> list[str]:
    """The project's files a sync that finds nothing changed reads to decide, and their folders whose
    listing it reads; a ValueError when last_trained.json or the versions index is not as a sync left it."""
    from .fsutil import is_safe_name

    state = root / STATE_DIR
    last = json.loads((state / "last_trained.json").read_bytes())
    run_id, head = str(last.get("run_id", "")), last_version(state / "versions" / "index.csv")
    if not (is_safe_name(run_id) and is_safe_name(head)):
        raise ValueError("no run or version to name")
    cache, blobs = state / "cache", state / "cache" / "blobs"
    prefixes = sorted(e.path for e in os.scandir(blobs) if e.is_dir(follow_symlinks=False)) if blobs.is_dir() else []
    files = [state / "last_trained.json", state / "versions" / "index.csv", state / "versions" / head / "labels.csv",
             state / "runs" / run_id / "predictions.npz", state / "reviews.json",
             cache, cache / "local-files.json", cache / "urls.json", cache / f"decoded-{config.model.image_size}.npz",
             cache / "xlsx" / f"{Path(config.table.path).name}.json",  # backends.xlsx.READ_CACHE: labels.xlsx parsed
             root / config.table.results, root / "report" / "index.html", blobs]
    return [str(p) for p in files] + prefixes


def last_version(index: Path) -> str:
    """The versions index's last version (its first column), read without pandas."""
    import csv
    with open(index, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row]
    if len(rows) < 2 or rows[0][0] != "version":
        raise ValueError(f"{index}: no version recorded")
    return rows[-1][0]
