"""The quick check (dcloop.unchanged): a second `dcloop sync` that finds nothing can have changed replays
the first one's output without importing pandas or torch; anything that could change the outcome
sends it through the full sync. Real projects, real `dcloop sync` processes."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dcloop.lock import ProjectLock
from dcloop.project import init_project
from dcloop.unchanged import NOTE, read_stamp, stamp_path, sync_args
from tests.conftest import TINY_MODEL, replace_setting, split_rows, write_digits

trained = pytest.mark.training  # the template project is trained once, by a `dcloop sync` process
HEAVY = ["pandas", "numpy", "torch", "pydantic", "PIL", "sklearn"]
# The dcloop command as the console script runs it, and the heavy modules it imported, on stderr's last line.
PROBE = ("import atexit, json, sys\n"
         f"atexit.register(lambda: print('heavy: ' + json.dumps([m for m in {HEAVY!r} if m in sys.modules]),"
         " file=sys.stderr))\n"
         "from dcloop.cli import cli\n"
         "cli()\n")


class Done:
    def __init__(self, done: subprocess.CompletedProcess):
        self.code, self.stdout = done.returncode, done.stdout
        lines = done.stderr.splitlines()
        assert lines and lines[-1].startswith("heavy: "), done.stderr
        self.heavy = json.loads(lines[-1][len("heavy: "):])
        self.stderr = "\n".join(lines[:-1])

    @property
    def quick(self) -> bool:
        return NOTE in self.stderr


def dcloop(root: Path, *args: str, **env: str) -> Done:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DCLOOP_")}
    environ.update(PYTHONPATH=os.pathsep.join(sys.path), **env)
    return Done(subprocess.run([sys.executable, "-c", PROBE, "sync", str(root), *args], capture_output=True,
                               text=True, env=environ, timeout=300))


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A small project trained once by `dcloop sync`, its images inside it (urls relative to it)."""
    root = tmp_path_factory.mktemp("template") / "proj"
    init_project(root, split_rows(write_digits(root / "images")))
    text = (root / "dcloop.toml").read_text()
    for section, values in {**TINY_MODEL, "model": {**TINY_MODEL["model"], "threads": 1}}.items():
        for key, value in values.items():
            text = replace_setting(text, section, key, value)
    (root / "dcloop.toml").write_text(text)
    first = dcloop(root)
    assert first.code == 0 and first.stdout.startswith("Run "), first.stderr
    return root


@pytest.fixture
def synced(template, tmp_path) -> tuple[Path, Done]:
    """A copy of the template after a full no-change sync that wrote the stamp: (project, that sync)."""
    root = tmp_path / "proj"
    shutil.copytree(template, root, symlinks=True)
    for _ in range(2):  # the copy's paths are new to the local-files cache: the first sync rewrites it
        full = dcloop(root)
        assert full.code == 0 and full.stdout.startswith("Nothing changed since run"), full.stderr
    assert not full.quick and "pandas" in full.heavy and read_stamp(stamp_path(root)) is not None
    return root, full


@trained
def test_a_second_no_change_sync_replays_the_first_without_importing_pandas_or_torch(synced):
    root, full = synced
    quick = dcloop(root)
    assert quick.code == 0 and quick.quick
    assert quick.stdout == full.stdout
    assert quick.heavy == []
    assert dcloop(root).stdout == full.stdout  # and again: the quick check writes no stamp of its own


@trained
def test_the_json_form_has_its_own_stamp_and_replays_the_same_json(synced):
    root, _ = synced
    full = dcloop(root, "--json")
    assert not full.quick and json.loads(full.stdout)["trained"] is False
    quick = dcloop(root, "--json")
    assert quick.quick and quick.stdout == full.stdout and quick.heavy == []
    assert not dcloop(root).quick  # the stamp is the last plain sync's: the text form runs in full again


def edit_note(root: Path) -> None:
    """A cell outside the labels (the note column): the table's bytes change, its label version does not."""
    path = root / "labels.csv"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    rows[1][rows[0].index("note")] = "looked at it"
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def first_image(root: Path) -> Path:
    return sorted((root / "images").iterdir())[0]


def touch_image(root: Path) -> None:
    image = first_image(root)
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def another_digit_of_the_same_size(root: Path) -> tuple[Path, bytes]:
    """The largest image, and the bytes of a smaller image of another digit padded to its size (a PNG
    ends at its IEND chunk: the padding is never read): other pixels, and a decodable file."""
    images = sorted((root / "images").iterdir(), key=lambda p: (-p.stat().st_size, p.name))
    image = images[0]
    other = min((p for p in images if p.name[:2] != image.name[:2]), key=lambda p: p.stat().st_size)
    size = image.stat().st_size
    assert other.stat().st_size < size
    return image, other.read_bytes().ljust(size, b"\0")


def replace_image_keeping_its_size_and_mtime(root: Path) -> bytes:
    """What `cp -p` of a same-sized file does, rewriting it in place: only the ctime (and the bytes) tell."""
    image, data = another_digit_of_the_same_size(root)
    st = image.stat()
    image.write_bytes(data)
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    return data


def rename_image_over_keeping_its_size_and_mtime(root: Path) -> bytes:
    """What a save by rename does, with the old mtime put on the new file: the inode and ctime tell."""
    image, data = another_digit_of_the_same_size(root)
    st = image.stat()
    temporary = image.with_name(".replacement.tmp")
    temporary.write_bytes(data)
    os.utime(temporary, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(temporary, image)
    return data


def edit_settings(root: Path) -> None:
    with open(root / "dcloop.toml", "a") as f:
        f.write("# edited\n")


def corrupt_stamp(root: Path) -> None:
    stamp_path(root).write_text('{"format": 1, "digest": ')


def stamp_past_due(root: Path) -> None:
    """An http image fell due for revalidation since: the stamp is never used from then on."""
    stamp = json.loads(stamp_path(root).read_text())
    stamp_path(root).write_text(json.dumps({**stamp, "due_at": time.time() - 1}))


def stamp_of_other_output(root: Path) -> None:
    """A stamp whose digest is not the project's (here: a forged one): the sync runs and says the truth."""
    stamp = json.loads(stamp_path(root).read_text())
    stamp_path(root).write_text(json.dumps({**stamp, "digest": "0" * 64, "stdout": "forged\n"}))


@trained
@pytest.mark.parametrize("change", [edit_note, touch_image, edit_settings, corrupt_stamp, stamp_past_due,
                                    stamp_of_other_output])
def test_anything_that_could_change_the_outcome_runs_the_full_sync(synced, change):
    root, full = synced
    change(root)
    again = dcloop(root)
    assert again.code == 0 and not again.quick and "pandas" in again.heavy, again.stderr
    assert again.stdout.startswith("Nothing changed since run") and "forged" not in again.stdout


@trained
@pytest.mark.parametrize("replace", [replace_image_keeping_its_size_and_mtime,
                                     rename_image_over_keeping_its_size_and_mtime])
def test_an_image_replaced_with_its_size_and_mtime_kept_is_read_again_and_trained_on(synced, replace):
    """Not only the quick check: the full sync it falls back to must see the new pixels too (the local-files
    cache is keyed on the inode and ctime as well as the size and mtime), and retrain on them."""
    root, _ = synced
    versions = (root / ".dcloop" / "versions" / "index.csv").read_text()
    last = json.loads((root / ".dcloop" / "last_trained.json").read_text())
    data = replace(root)
    again = dcloop(root)
    assert again.code == 0 and not again.quick and "pandas" in again.heavy, again.stderr
    assert again.stdout.startswith("Run "), again.stdout  # the same labels, other pixels: a new training
    assert (root / ".dcloop" / "versions" / "index.csv").read_text() == versions  # no new label version
    sha = hashlib.sha256(data).hexdigest()
    assert sha in json.loads((root / ".dcloop" / "cache" / "local-files.json").read_text()).values()
    now = json.loads((root / ".dcloop" / "last_trained.json").read_text())
    assert now["run_id"] != last["run_id"] and now["key"] != last["key"] and now["version"] == last["version"]
    after = dcloop(root)
    assert after.code == 0 and after.stdout.startswith("Nothing changed since run"), after.stderr


@trained
def test_a_local_files_cache_of_the_older_format_is_read_once_without_retraining(synced):
    """A cache written before the key held the inode and ctime: no key matches, so each file is read once
    more, its hash is the same, and so is the training key: nothing changed, and the cache is rewritten."""
    root, _ = synced
    index_path = root / ".dcloop" / "cache" / "local-files.json"
    index = json.loads(index_path.read_text())
    older = {}
    for key, sha in index.items():
        path = key.split("|")[0]
        st = os.stat(path)
        older[f"{path}|{st.st_size}|{st.st_mtime_ns}"] = sha
    index_path.write_text(json.dumps(older))
    again = dcloop(root)
    assert again.code == 0 and not again.quick and again.stdout.startswith("Nothing changed since run"), again.stderr
    assert json.loads(index_path.read_text()) == index
    assert not dcloop(root).quick  # the sync that rewrote the cache writes no stamp: the next one does
    assert dcloop(root).quick


@trained
def test_a_dcloop_variable_runs_the_full_sync(synced):
    root, _ = synced
    again = dcloop(root, DCLOOP_IMAGES_TIMEOUT_S="20")
    assert again.code == 0 and not again.quick and again.stdout.startswith("Nothing changed")
    assert dcloop(root, DCLOOP_IMAGES_TIMEOUT_S="20").quick  # its own stamp, for that environment
    assert not dcloop(root).quick


@trained
def test_force_retrains_and_removes_the_stamp(synced):
    root, _ = synced
    forced = dcloop(root, "--force")
    assert forced.code == 0 and forced.stdout.startswith("Run "), forced.stderr
    assert not stamp_path(root).exists()
    assert not dcloop(root).quick  # the first sync after a training runs in full, and writes the stamp
    assert dcloop(root).quick


@trained
def test_a_label_edited_between_two_syncs_is_trained_on(synced):
    root, _ = synced
    versions = (root / ".dcloop" / "versions" / "index.csv").read_text().splitlines()
    path = root / "labels.csv"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    label = rows[0].index("label")
    rows[1][label] = "7" if rows[1][label] != "7" else "1"
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    again = dcloop(root)
    assert again.code == 0 and again.stdout.startswith("Run ") and "1 row(s) changed" in again.stdout, again.stderr
    assert len((root / ".dcloop" / "versions" / "index.csv").read_text().splitlines()) == len(versions) + 1


@trained
def test_an_excel_table_is_answered_too_and_an_edit_in_it_is_not(tmp_path):
    import openpyxl

    from tests.test_xlsx_backend import xlsx_project
    root = xlsx_project(tmp_path)
    assert dcloop(root).stdout.startswith("Run ")
    full = dcloop(root)
    if read_stamp(stamp_path(root)) is None:  # the first no-change sync may fill a cache: the second writes it
        full = dcloop(root)
    quick = dcloop(root)
    assert full.stdout.startswith("Nothing changed") and quick.quick and quick.stdout == full.stdout
    assert quick.heavy == []
    workbook = openpyxl.load_workbook(root / "labels.xlsx")
    sheet = workbook["labels"]
    header = [cell.value for cell in sheet[1]]
    sheet.cell(row=2, column=header.index("note") + 1, value="looked at it")
    workbook.save(root / "labels.xlsx")
    again = dcloop(root)
    assert again.code == 0 and not again.quick and again.stdout.startswith("Nothing changed"), again.stderr


@trained
def test_a_held_lock_is_reported_as_before(synced):
    """The quick check takes the lock as a sync does: while a watch or a training holds it, exit 3."""
    root, _ = synced
    with ProjectLock(root / ".dcloop", "dcloop sync --watch"):
        held = dcloop(root)
    assert held.code == 3 and "another dcloop process holds the project's lock" in held.stderr
    assert dcloop(root).quick  # the stamp still stands: nothing was written


@trained
def test_the_stamp_covers_every_file_a_no_change_sync_opens_or_lists(synced):
    """Every file or folder the full no-change sync opens or lists is in the stamp's digest (or is the lock)."""
    root, _ = synced
    stamp_path(root).unlink()
    log = root.parent / "opened.json"
    script = ("import json, sys\n"
              "import dcloop.sync as s\n"
              "seen, on = [], [False]\n"
              "def hook(event, args):\n"
              "    if on[0] and event in ('open', 'os.scandir', 'os.listdir') and isinstance(args[0], (str, bytes)):\n"
              "        seen.append(args[0] if isinstance(args[0], str) else args[0].decode())\n"
              "sys.addaudithook(hook)\n"
              "inner = s.sync\n"
              "def sync(*a, **k):\n"
              "    on[0] = True\n"
              "    try:\n"
              "        return inner(*a, **k)\n"
              "    finally:\n"
              "        on[0] = False\n"
              "s.sync = sync\n"
              "from dcloop.cli import cli\n"
              f"try:\n    cli()\nfinally:\n    open({str(log)!r}, 'w').write(json.dumps(seen))\n")
    done = subprocess.run([sys.executable, "-c", script, "sync", str(root)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("Nothing changed"), done.stderr
    stamp = read_stamp(stamp_path(root))
    assert stamp is not None
    covered = {os.path.abspath(p) for p in stamp["hashed"] + stamp["state"] + stamp["images"]}
    opened = {os.path.abspath(p) for p in json.loads(log.read_text())}
    ours = {p for p in opened if Path(p).is_relative_to(root)}
    assert ours and ours - covered == set()
    assert str(root / "labels.csv") in ours and str(root / ".dcloop" / "versions" / "index.csv") in ours


@pytest.mark.parametrize("argv, expected", [
    (["sync"], (".", False)), (["sync", "proj/"], ("proj", False)), (["sync", "--json", "p"], ("p", True)),
    (["sync", "p", "--force"], None), (["sync", "p", "q"], None), (["sync", "--watch"], None), (["status", "p"], None),
    (["sync", "p", "--json", "--json"], None), (["sync", ""], None), (["--version"], None), ([], None)])
def test_only_a_plain_sync_is_answered_by_a_stamp(argv, expected):
    assert sync_args(argv) == expected


def test_a_fetch_says_what_it_looked_at_and_when_an_http_image_falls_due(image_host, tmp_path):
    """images.Seen, which the stamp is made from: each local file's stat or why it is unreadable, and
    the moment the first cached http image is to be asked for again."""
    from dcloop.images import ImageStore, observed

    base, www, _ = image_host
    (www / "a.png").write_bytes(b"image a")
    (tmp_path / "b.png").write_bytes(b"image b")
    clock = [1000.0]
    store = lambda: ImageStore(tmp_path, tmp_path / "cache", revalidate_days=1, clock=lambda: clock[0])  # noqa: E731
    urls = [f"{base}/a.png", "b.png", "missing.png"]
    first = store()
    first.fetch(urls)
    assert not first.seen.complete  # an http image was fetched: that sync cannot vouch for the next
    clock[0] = 2000.0
    again = store()
    again.fetch(urls)
    local = str(tmp_path / "b.png")
    assert again.seen.complete and again.seen.due_at == 1000.0 + 86400
    assert again.seen.local == {local: observed(local), str(tmp_path / "missing.png"): "!missing file"}
    clock[0] = 1000.0 + 86400  # due: revalidated, so not complete either
    due = store()
    due.fetch(urls)
    assert not due.seen.complete


class Reads:
    """Counts the local files an ImageStore reads (images.read_regular)."""

    def __init__(self, monkeypatch):
        import dcloop.images as images
        self.paths: list[str] = []
        inner = images.read_regular

        def read(path, max_bytes):
            self.paths.append(str(path))
            return inner(path, max_bytes)
        monkeypatch.setattr(images, "read_regular", read)


def settle() -> None:
    """Past the kernel's coarse clock tick, so that the next change of a file gets a later ctime."""
    time.sleep(0.05)


def test_a_local_file_rewritten_or_renamed_over_with_its_size_and_mtime_kept_is_read_again(tmp_path, monkeypatch):
    from dcloop.images import ImageStore

    reads = Reads(monkeypatch)
    image = tmp_path / "b.png"
    image.write_bytes(b"image b")
    st = image.stat()
    store = lambda: ImageStore(tmp_path, tmp_path / "cache")  # noqa: E731
    first = store().fetch(["b.png"])["b.png"].sha
    assert store().fetch(["b.png"])["b.png"].sha == first and reads.paths == [str(image)]  # unchanged: not read
    settle()
    image.write_bytes(b"image c")  # in place: the same inode
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert store().fetch(["b.png"])["b.png"].sha == hashlib.sha256(b"image c").hexdigest()
    settle()
    (tmp_path / "new").write_bytes(b"image d")  # a save by rename: another inode
    os.utime(tmp_path / "new", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp_path / "new", image)
    assert store().fetch(["b.png"])["b.png"].sha == hashlib.sha256(b"image d").hexdigest()
    assert image.stat().st_size == st.st_size and image.stat().st_mtime_ns == st.st_mtime_ns
    assert len(reads.paths) == 3


def test_a_local_files_cache_of_the_older_format_reads_each_file_once_more(tmp_path, monkeypatch):
    """Keys of "path|size|mtime_ns" (before the inode and ctime were in them) match nothing: each file is
    read once, gives the hash it had, and the cache is rewritten; nothing fails."""
    from dcloop.images import ImageStore, stat_text

    image = tmp_path / "b.png"
    image.write_bytes(b"image b")
    store = lambda: ImageStore(tmp_path, tmp_path / "cache")  # noqa: E731
    sha = store().fetch(["b.png"])["b.png"].sha
    st = image.stat()
    index_path = tmp_path / "cache" / "local-files.json"
    index_path.write_text(json.dumps({f"{image}|{st.st_size}|{st.st_mtime_ns}": sha}))
    reads = Reads(monkeypatch)
    assert store().fetch(["b.png"])["b.png"].sha == sha and reads.paths == [str(image)]
    assert json.loads(index_path.read_text()) == {f"{image}|{stat_text(st)}": sha}
    assert store().fetch(["b.png"])["b.png"].sha == sha and len(reads.paths) == 1


class NoInode:
    """A stat as some filesystems give it (FAT, some network shares, Windows before it had file ids): st_ino 0."""

    def __init__(self, st):
        self.st = st

    def __getattr__(self, name):
        return 0 if name == "st_ino" else getattr(self.st, name)


def test_a_filesystem_without_inode_numbers_is_cached_by_size_mtime_and_ctime(tmp_path, monkeypatch):
    import dcloop.images as images

    inner = images.stat_regular
    monkeypatch.setattr(images, "stat_regular", lambda path, max_bytes: NoInode(inner(path, max_bytes)))
    reads = Reads(monkeypatch)
    image = tmp_path / "b.png"
    image.write_bytes(b"image b")
    st = image.stat()
    store = lambda: images.ImageStore(tmp_path, tmp_path / "cache")  # noqa: E731
    first = store()
    assert first.fetch(["b.png"])["b.png"].sha == hashlib.sha256(b"image b").hexdigest()
    assert first.seen.local[str(image)] == images.observed(str(image))
    assert store().fetch(["b.png"])["b.png"].sha == hashlib.sha256(b"image b").hexdigest() and len(reads.paths) == 1
    settle()
    image.write_bytes(b"image c")
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert store().fetch(["b.png"])["b.png"].sha == hashlib.sha256(b"image c").hexdigest() and len(reads.paths) == 2
