"""`dcloop review`: a local page that walks the suspects by keyboard and writes each decision to the table.

The server listens on 127.0.0.1 only and answers a request only when its path starts with the
server's random token, its Host is the server's own address and its Origin, when it has one, too:
another page in the browser cannot post to it (a cross-site request carries its Origin, a DNS
rebinding its Host), and the token keeps other local users' pages out. Decisions are batched
(BATCH_SECONDS) and written through the backend's ``decide``: label, split and reviewed by id, never
one of dcloop's columns, refused per row where someone edited that row since the page loaded it.
Values from the table are untrusted: a label written is one of the classes (or the cell's own value
back, for an undo), images are served by row id from the project's image cache, re-encoded as PNG.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd

from . import table as tbl
from .config import STATE_DIR, Config
from .errors import DcloopError
from .fsutil import is_safe_name
from .images import access_of
from .progress import Progress, quiet
from .report import Thumbnails, image_files, latest_run_id, load_run, projection
from .signals import stop_signals_to

BATCH_SECONDS = 0.4  # decisions made within this long go in one write (one Sheets request, not one each)
CLOSE_SECONDS = 60  # a Ctrl-C waits this long for the last write: a stalled one must not keep the server forever
IMAGE_SIZES = {"large": 448, "small": 96}
NEIGHBOURS_SHOWN = 8
MAX_BODY_BYTES = 4 << 20  # a relabel of every row of a large project fits
SYNC_LINES = 30
STATIC = {"": ("review.html", "text/html; charset=utf-8"), "review.js": ("review.js", "text/javascript; charset=utf-8"),
          "review.css": ("review.css", "text/css; charset=utf-8")}
# Everything from this server, nothing inline, nothing from elsewhere, never in a frame.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
    "X-Frame-Options": "DENY"}
IMAGE_COLUMNS = ["id", "image", "url"]  # what image_files finds a row's image by
DUPLICATE_OF = re.compile(r"dup-of:([A-Za-z0-9_-]{1,64})")

# ---- pure: what the page shows, what a decision may write ------------------------------------

def rows_json(table: pd.DataFrame, classes: list[str]) -> dict:
    """Every row as columns the page reads, and ``queue``: the positions of the suspects in the order
    the table is sorted in (``table.ranked``)."""
    queue = tbl.ranked(table, len(table))
    reviewed = table["reviewed"] if "reviewed" in table.columns else pd.Series("", index=table.index)
    return {"id": table["id"].str.strip().tolist(), "label": table["label"].tolist(), "split": table["split"].tolist(),
            "reviewed": reviewed.tolist(), "model": table["prediction"].str.strip().tolist(),
            "conf": table["confidence"].str.strip().tolist(), "susp": table["suspicion"].str.strip().tolist(),
            "flags": table["flags"].str.strip().tolist(), "queue": table.index.get_indexer(queue.index).tolist(),
            "kinds": sorted(set().union(*map(tbl.kinds_in, queue["flags"].unique())) if len(queue) else []),
            "classes": classes, "splits": tbl.SPLITS}


def allowed_cell(column: str, value: str, loaded: str, classes: list[str]) -> str | None:
    """The cell a decision may write into ``column`` (None: refused): a class, a split, ok or blank,
    or the value the page loaded (an undo)."""
    if value == loaded:  # the person's own cell back, as it was: never a formula dcloop made
        return value
    if column == "label":
        label = tbl.canonical_label(value)
        return label if label in classes else None
    text = value.strip().lower()
    ok = tbl.SPLITS if column == "split" else ["ok", ""]
    return text if text in ok else None


def duplicates_of(row_id: str, flags: str, same_file: list[str], ids) -> list[str]:
    """The rows ``same_file`` (those with the row's image file) and those its dup-of flags name, that
    ``ids`` has, the row itself left out."""
    named = DUPLICATE_OF.findall(flags)
    return [i for i in dict.fromkeys([*same_file, *named]) if i in ids and i != row_id]


def by_file(files: dict[str, Path]) -> dict[Path, list[str]]:
    """The rows of each image file that more than one row has."""
    rows: dict[Path, list[str]] = {}
    for row_id, path in files.items():
        rows.setdefault(path, []).append(row_id)
    return {path: ids for path, ids in rows.items() if len(ids) > 1}


def nearest(unit: np.ndarray, row: int, k: int = NEIGHBOURS_SHOWN) -> list[tuple[int, float]]:
    """The ``k`` rows most similar to ``row`` by cosine over unit-length embeddings, best first."""
    sims = unit @ unit[row]
    sims[row] = -np.inf
    k = min(k, len(unit) - 1)
    if k <= 0:
        return []
    top = np.argpartition(-sims, k - 1)[:k]
    return [(int(n), float(sims[n])) for n in top[np.argsort(-sims[top], kind="stable")]]


# ---- the project as the page sees it -----------------------------------------------------------

@dataclass
class Decided:
    """What one posted decision came to."""

    id: str
    ok: bool
    message: str = ""

    def to_json(self) -> dict:
        return {"id": self.id, "ok": self.ok, "message": self.message}


class Review:
    """The table as the page loaded it (the cells each decision expects), images, embeddings."""

    def __init__(self, root: Path, config: Config, backend=None):
        from .backends import open_backend

        self.root, self.config = Path(root), config
        self.backend = backend or open_backend(config, self.root)
        self.classes = list(config.project.classes)
        self.lock = threading.Lock()
        self.loaded: dict[str, dict[str, str]] = {}  # cells as read at the last load
        self.known: dict[str, dict[str, str]] = {}  # cells as read, and as written since
        self.first: dict[str, dict[str, str]] = {}  # cells when the server first saw each row
        self.table = pd.DataFrame(columns=tbl.COLUMNS)
        self.files: dict[str, Path] = {}  # every row's image, found in the background after a load
        self.same_file: dict[Path, list[str]] = {}  # rows that share an image file
        self.loads = 0  # how many times the table's images changed: which background search is current
        self.flags: dict[str, str] = {}
        self.run = None
        self.unit: np.ndarray | None = None
        self.run_rows: dict[str, int] = {}

    def load(self) -> dict:
        """Read the table again; the page's view, and the cells decisions are checked against from now on."""
        table = tbl.normalize(self.backend.read(), self.backend.describe())
        table["label"] = tbl.canonical_labels(table["label"], self.classes)
        rows = rows_json(table, self.classes)
        cells = {i: {"label": lab, "split": s, "reviewed": r}
                 for i, lab, s, r in zip(rows["id"], rows["label"], rows["split"], rows["reviewed"])}
        with self.lock:
            self.loaded, self.known = cells, {i: dict(c) for i, c in cells.items()}
            for i, c in cells.items():
                self.first.setdefault(i, dict(c))
            self.flags = dict(zip(rows["id"], rows["flags"]))
            same_images = table[IMAGE_COLUMNS].equals(self.table[IMAGE_COLUMNS])
            self.table = table
            if not same_images:
                self.files, self.same_file, self.loads = {}, {}, self.loads + 1
        if not same_images:  # every row's image takes a while on a large table: the first suspect's does not wait
            threading.Thread(target=self.find_files, args=(table, self.loads), daemon=True).start()
        self.load_run()
        return {**rows, "project": self.root.resolve().name, "table": self.backend.describe(),
                "changed": self.changed(), "has_run": self.run is not None}

    def find_files(self, table: pd.DataFrame, load: int) -> None:
        files = image_files(self.root, table, access_of(self.root, self.config))
        with self.lock:
            if load == self.loads:  # not a table read before the last change of images
                self.files, self.same_file = files, by_file(files)

    def file_of(self, row_id: str) -> Path | None:
        """The row's image file: found already, or looked up alone (report.image_files' rules)."""
        with self.lock:
            found, table = self.files.get(row_id), self.table
        if found is not None:
            return found
        rows = table[table["id"].str.strip() == row_id]
        return image_files(self.root, rows, access_of(self.root, self.config)).get(row_id) if len(rows) else None

    def load_run(self) -> None:
        """The last trained run's embeddings, for neighbours and the map; none before the first sync."""
        from .suspicion import unit_rows

        state = self.root / STATE_DIR
        try:
            run_id = latest_run_id(state, self.backend.read_results())
            if self.run is not None and run_id == self.run.run_id:
                return
            run = load_run(state, run_id)
        except DcloopError:
            self.run, self.unit, self.run_rows = None, None, {}
            return
        self.run, self.unit = run, unit_rows(run.embeddings) if len(run.ids) else None
        self.run_rows = {i: n for n, i in enumerate(run.ids.tolist())}

    def changed(self) -> int:
        """Rows whose label, split or reviewed differ from when this server first saw them."""
        with self.lock:  # a page reload may be adding rows to both meanwhile
            return sum(self.known[i] != c for i, c in self.first.items() if i in self.known)

    def map_json(self) -> dict:
        """The run's 2-D map (report.projection: the report's own, cached with the run)."""
        if self.run is None:
            return {"id": [], "x": [], "y": [], "axes": {}}
        xy, axes = projection(self.root / STATE_DIR / "runs" / self.run.run_id, self.run.embeddings,
                              self.config.model.seed, self.config.report.map)
        return {"id": self.run.ids.tolist(), "x": [round(float(v), 4) for v in xy[:, 0]],
                "y": [round(float(v), 4) for v in xy[:, 1]], "axes": axes}

    def item_json(self, row_id: str) -> dict:
        """A row's nearest neighbours (from the run's embeddings) and duplicates, as ids the table has."""
        near = nearest(self.unit, self.run_rows[row_id]) if self.unit is not None and row_id in self.run_rows else []
        with self.lock:
            known, same = self.known, self.same_file.get(self.files.get(row_id), [])
            found = [{"id": i, "label": known[i]["label"], "sim": round(sim, 3)}
                     for i, sim in ((str(self.run.ids[n]), sim) for n, sim in near) if i in known]
            dups = duplicates_of(row_id, self.flags.get(row_id, ""), same, known)
            return {"id": row_id, "neighbours": found,
                    "duplicates": [{"id": i, "label": known[i]["label"]} for i in dups]}

    def image(self, row_id: str, size: str) -> bytes | None:
        """A PNG of the row's image from the project's cache (report.Thumbnails), or None."""
        path = self.file_of(row_id) if size in IMAGE_SIZES else None
        if path is None:
            return None
        return Thumbnails(self.root / STATE_DIR / "cache", IMAGE_SIZES[size]).one(path)[1]

    def check(self, posted: dict) -> tuple[dict | None, str]:
        """(the decision's target cells, '') or (None, why it is refused before any write)."""
        row_id = str(posted.get("id", ""))
        with self.lock:
            loaded = self.loaded.get(row_id) if is_safe_name(row_id) else None
        if loaded is None:
            return None, f"row {tbl.shown(row_id)!r} is not one the page loaded"
        target = {"id": row_id}
        for column in tbl.DECIDED_COLUMNS:
            value = str(posted.get(column, loaded[column]))
            target[column] = allowed_cell(column, value, loaded[column], self.classes)
            if target[column] is None:
                return None, f"row {row_id}: {column} {tbl.shown(value)!r} is not allowed"
        return target, ""

    def decide(self, targets: list[dict]) -> list[Decided]:
        """Write a batch through the backend; each decision expects the cells the one before it left.

        The results are in the order of ``targets``.
        """
        with self.lock:
            here = [t for t in targets if t["id"] in self.known]  # not so after a reload without the row
            expected = {t["id"]: dict(self.known[t["id"]]) for t in here}
            rows = []
            for t in here:
                rows.append({**t, **{f"was_{c}": expected[t["id"]][c] for c in tbl.DECIDED_COLUMNS}})
                expected[t["id"]] = {c: t[c] for c in tbl.DECIDED_COLUMNS}
        refused = self.backend.decide(pd.DataFrame(rows)) if rows else {}
        why = {id(t): refused[n] for n, t in enumerate(here) if n in refused}
        why.update({id(t): "the row is not in the table any more" for t in targets if t["id"] not in expected})
        out = []
        with self.lock:
            for t in targets:
                if id(t) in why:
                    out.append(Decided(t["id"], False, f"row {t['id']} was not changed: {why[id(t)]}. "
                                                       f"Reload the page to see the table as it is now."))
                else:
                    self.known[t["id"]] = {c: t[c] for c in tbl.DECIDED_COLUMNS}
                    out.append(Decided(t["id"], True))
        return out


# ---- batching the writes --------------------------------------------------------------------------

class Writer:
    """Collects decisions for BATCH_SECONDS and writes them in one ``Review.decide``; one thread."""

    def __init__(self, review: Review, window: float = BATCH_SECONDS, progress: Progress = quiet):
        self.review, self.window, self.progress = review, window, progress
        self.pending: list[tuple[dict, Future]] = []
        self.busy = False
        self.hurry = False  # flush(): write now, without waiting out the window
        self.closing = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self.run, name="dcloop-review-writer", daemon=True)
        self.thread.start()

    def submit(self, targets: list[dict]) -> list[Future]:
        futures = [Future() for _ in targets]
        with self.cond:
            if self.closing:
                raise DcloopError("the review server is stopping; the decision was not written")
            self.pending += list(zip(targets, futures))
            self.cond.notify_all()
        return futures

    def run(self) -> None:
        while True:
            with self.cond:
                while not self.pending and not self.closing:
                    self.cond.wait()
                if not self.pending:
                    return
                deadline = time.monotonic() + self.window  # the decisions of the next moments join this write
                while not (self.closing or self.hurry) and time.monotonic() < deadline:
                    self.cond.wait(deadline - time.monotonic())
                batch, self.pending, self.busy, self.hurry = self.pending, [], True, False
            try:
                self.write(batch)
            finally:
                with self.cond:
                    self.busy = False
                    self.cond.notify_all()

    def write(self, batch: list[tuple[dict, Future]]) -> None:
        try:
            results = self.review.decide([t for t, _ in batch])
        except Exception as e:  # noqa: BLE001 - a busy file or a Sheets error: each decision says so
            message = str(e) if isinstance(e, DcloopError) else f"{type(e).__name__}: {e}"
            self.say(f"review: {len(batch)} decision(s) not written: {message}")
            results = [Decided(t["id"], False, f"not written: {message}") for t, _ in batch]
        for (_, future), result in zip(batch, results):
            future.set_result(result)
        self.say(f"review: wrote {sum(r.ok for r in results)} of {len(results)} decision(s) "
                 f"to {self.review.backend.describe()}")

    def say(self, message: str) -> None:
        """Progress that cannot end the writer: with stderr gone (its terminal closed) a failed print
        would stop this thread, and every later decision, and Ctrl-C's last write, would wait for it forever."""
        try:
            self.progress(message)
        except (OSError, ValueError):  # a closed or broken stream
            pass

    def flush(self) -> None:
        """Return once every decision submitted so far is written (or refused)."""
        with self.cond:
            self.hurry = bool(self.pending)
            self.cond.notify_all()
            while self.pending or self.busy:
                self.cond.wait(0.05)

    def close(self, wait: float = CLOSE_SECONDS) -> bool:
        """Write what is pending, then stop the thread; False when the write had not ended after ``wait`` seconds."""
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        return joined(self.thread, wait)


def joined(thread: threading.Thread, seconds: float) -> bool:
    """Whether ``thread`` ended within ``seconds``. Joined in short waits: the OS may hand a second
    Ctrl-C to another thread, and the main thread only raises it between waits, never inside a long one."""
    deadline = time.monotonic() + seconds
    while thread.is_alive() and time.monotonic() < deadline:
        thread.join(min(0.1, max(deadline - time.monotonic(), 0)))
    return not thread.is_alive()


# ---- a sync started from the page -------------------------------------------------------------

@dataclass
class SyncRun:
    """A `dcloop sync` in a child process, as the command line runs it (the project lock included)."""

    root: Path
    state: str = "idle"  # idle, running, done, failed
    lines: deque = field(default_factory=lambda: deque(maxlen=SYNC_LINES))
    result: dict = field(default_factory=dict)
    process: subprocess.Popen | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def command(self) -> list[str]:
        return [sys.executable, "-c", "from dcloop.cli import main; main()", "sync", str(self.root), "--json"]

    def start(self) -> bool:
        """Start a sync unless one runs; False when one does."""
        with self.lock:
            if self.state == "running":
                return False
            self.state, self.result = "running", {}
            self.lines.clear()
            # its own session: a Ctrl-C in the terminal reaches the server, which stops the sync itself
            self.process = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        threading.Thread(target=self.follow, args=(self.process,), daemon=True).start()
        return True

    def follow(self, process: subprocess.Popen) -> None:
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.append(process.stdout.read()), daemon=True)
        reader.start()
        for line in process.stderr:
            self.lines.append(line.rstrip("\n").removeprefix("dcloop: "))
        rc = process.wait()
        reader.join()
        try:
            found = json.loads(out[0]) if out and out[0].strip() else {}
        except ValueError:
            found = {}
        with self.lock:
            self.result = {"rc": rc, "message": found.get("message", ""), "scores": found.get("scores", {}),
                           "trained": found.get("trained", False)}
            self.state = "done" if rc == 0 else "failed"

    def to_json(self) -> dict:
        with self.lock:
            return {"state": self.state, "lines": list(self.lines), **self.result}

    def stop(self, progress: Progress) -> None:
        """Interrupt a running sync the way Ctrl-C would, and wait for it to stop at a safe point."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        progress("review: stopping the sync started from the page")
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---- the HTTP server -------------------------------------------------------------------------------

class ReviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, review: Review, port: int = 0, progress: Progress = quiet, window: float = BATCH_SECONDS):
        super().__init__(("127.0.0.1", port), Handler)
        self.review, self.progress = review, progress
        self.token = secrets.token_urlsafe(24)
        port = self.server_address[1]
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        self.origins = {f"http://{h}" for h in self.hosts}
        self.writer = Writer(review, window, progress)
        self.sync = SyncRun(review.root)

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a page closed mid-answer is no error
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{self.token}/"

    def close(self) -> None:
        """Write the pending decisions, stop a sync started from the page, close the socket."""
        if not self.writer.close():
            self.progress(f"review: the write to {self.review.backend.describe()} did not end within "
                          f"{CLOSE_SECONDS:g}s; the decisions in it may not have been written")
        self.sync.stop(self.progress)
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        pass

    # --- checks ---

    def route(self) -> str | None:
        """The path after the token, or None after answering a request that fails a check."""
        host, origin = self.headers.get("Host", ""), self.headers.get("Origin")
        if host not in self.server.hosts:
            return self.refuse(HTTPStatus.FORBIDDEN, "wrong Host")
        if origin is not None and origin not in self.server.origins:
            return self.refuse(HTTPStatus.FORBIDDEN, "cross-origin request")
        if self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return self.refuse(HTTPStatus.FORBIDDEN, "cross-site request")
        path = urlsplit(self.path).path
        token, _, rest = path.lstrip("/").partition("/")
        if not hmac.compare_digest(token.encode(), self.server.token.encode()):
            return self.refuse(HTTPStatus.NOT_FOUND, "not found")
        if not path.startswith(f"/{token}/"):
            return self.redirect(f"/{token}/")
        return unquote(rest)

    def refuse(self, status: HTTPStatus, why: str) -> None:
        self.close_connection = True  # a body it did not read must not be taken for the next request
        self.send(status, json.dumps({"error": why}).encode(), "application/json", {"Connection": "close"})
        return None

    def redirect(self, where: str) -> None:
        self.send_response(HTTPStatus.FOUND)
        self.send_header("Location", where)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return None

    def send(self, status: HTTPStatus, body: bytes, kind: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reply(self, data: dict, status: HTTPStatus = HTTPStatus.OK) -> None:
        self.send(status, json.dumps(data, allow_nan=False, ensure_ascii=False).encode("utf-8"),
                  "application/json; charset=utf-8")

    # --- requests ---

    def do_GET(self):  # noqa: N802 - the stdlib's name
        rest = self.route()
        if rest is None:
            return
        try:
            self.get(rest)
        except DcloopError as e:
            self.reply({"error": str(e)}, HTTPStatus.INTERNAL_SERVER_ERROR)

    def get(self, rest: str) -> None:
        review = self.server.review
        if rest in STATIC:
            name, kind = STATIC[rest]
            self.send(HTTPStatus.OK, (resources.files("dcloop") / "templates" / name).read_bytes(), kind)
        elif rest == "api/state":
            self.reply(review.load())
        elif rest == "api/map":
            self.reply(review.map_json())
        elif rest == "api/sync":
            self.reply({**self.server.sync.to_json(), "changed": review.changed()})
        elif rest.startswith("api/item/") and is_safe_name(rest[9:]):
            self.reply(review.item_json(rest[9:]))
        elif rest.startswith("img/") and rest.count("/") == 2:
            _, row_id, size = rest.split("/")
            png = review.image(row_id, size) if is_safe_name(row_id) else None
            if png is None:
                return self.refuse(HTTPStatus.NOT_FOUND, "no image")
            self.send(HTTPStatus.OK, png, "image/png")
        else:
            self.refuse(HTTPStatus.NOT_FOUND, "not found")

    def do_POST(self):  # noqa: N802
        rest = self.route()
        if rest is None:
            return
        # JSON only: a form cannot send it, and a script elsewhere would need a preflight this server never grants
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            return self.refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send JSON")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            return self.refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "a JSON body of at most 4 MiB, with its length")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self.refuse(HTTPStatus.BAD_REQUEST, "not JSON")
        if rest == "api/decide" and isinstance(body, dict) and isinstance(body.get("decisions"), list):
            self.decide([d for d in body["decisions"] if isinstance(d, dict)])
        elif rest == "api/sync":
            self.server.writer.flush()  # the sync trains on every decision made so far
            started = self.server.sync.start()
            self.reply({**self.server.sync.to_json(), "started": started})
        else:
            self.refuse(HTTPStatus.NOT_FOUND, "not found")

    def decide(self, posted: list[dict]) -> None:
        review, results, targets, slots = self.server.review, [], [], []
        for n, decision in enumerate(posted):
            target, why = review.check(decision)
            results.append(Decided(str(decision.get("id", "")), False, why) if target is None else None)
            if target is not None:
                targets.append(target)
                slots.append(n)
        try:
            futures = self.server.writer.submit(targets)
        except DcloopError as e:
            return self.reply({"error": str(e)}, HTTPStatus.SERVICE_UNAVAILABLE)
        for n, future in zip(slots, futures):
            results[n] = future.result()
        self.reply({"results": [r.to_json() for r in results], "changed": review.changed()})

    def do_OPTIONS(self):  # noqa: N802 - no CORS preflight is ever granted
        self.refuse(HTTPStatus.METHOD_NOT_ALLOWED, "no cross-origin requests")


# ---- the command ------------------------------------------------------------------------------

def start(root: Path, config: Config, port: int = 0, backend=None, progress: Progress = quiet,
          window: float = BATCH_SECONDS) -> ReviewServer:
    """A review server for the project, bound and ready; ``serve_forever`` it in a thread (tests) or via ``serve``."""
    review = Review(root, config, backend)
    review.load()  # a table that cannot be read is an error now, not on the page
    return ReviewServer(review, port, progress, window)


def serve(root: Path, config: Config, port: int = 0, open_browser: bool = False, progress: Progress = quiet,
          show_url: Callable[[str], None] = print) -> None:
    """Run the review page until Ctrl-C or SIGTERM; then write what is pending, and return."""
    server = start(root, config, port, progress=progress)
    with stop_signals_to(signal.default_int_handler):  # KeyboardInterrupt: the way out that writes what is pending
        try:  # from here on: a Ctrl-C right after the url is printed stops the writer thread and the socket too
            show_url(server.url)
            progress("review: keys: digits or a class's first letters label, Enter accepts the model's class, "
                     "k keeps, x excludes, u undoes, arrows move. Ctrl-C stops.")
            if open_browser:
                import webbrowser
                webbrowser.open(server.url)
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            progress("review: stopping; writing the decisions still pending")
        finally:
            server.close()
    progress(f"review: {server.review.changed()} row(s) changed in {server.review.backend.describe()}")
