"""A table's urls are untrusted: every hostile or careless cell becomes its row's flag, in bounded time.

Real files (a FIFO, /dev/zero, /proc, symlinks out of the project), real HTTP servers on 127.0.0.1
and the Sheets emulator; no test reaches the internet.
"""

import hashlib
import json
import http.server
import os
import shutil
import socket
import struct
import threading
import time
import zlib
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from dcloop import image_http
from dcloop import table as tbl
from dcloop.backends.csv import read_csv
from dcloop.config import Config, load_config
from dcloop.image_http import is_private
from dcloop.images import (NOT_REGULAR, OUTSIDE_ROOTS, PRIVATE_HOST, Access, ImageStore, access_of, decode_one,
                           image_sizes, read_regular)
from dcloop.project import init_project
from dcloop.backends import open_backend
from dcloop.cli import cli
from dcloop.dataset import load_images
from dcloop.pull import pull
from dcloop.sync import sync
from tests.conftest import ImageHost, replace_setting, sheet_config, split_rows, write_digits
from tests.test_sync_gsheet import sheet_frame
from tests.unattended import one_torch_thread  # noqa: F401

TRAIN_TINY = {"model": {"epochs": 2, "batch_size": 16, "threads": 1}}
HUMAN = ["url", "label", "split", "note"]


class HostileHost(ImageHost):
    """ImageHost plus /trickle (a byte every 0.2 s), /slow-headers, /redirect/<n> (n hops, then /img.png),
    /to?<url> (a redirect to any url) and request headers recorded for revalidation."""

    def do_GET(self):
        self.server.seen.append((self.path, self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since")))
        if self.path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.trickle(b"x" * 1000)
        elif self.path == "/slow-headers":
            self.trickle(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000)
        elif self.path.startswith("/redirect/"):
            hops = int(self.path.split("/")[2])
            self.redirect(f"/redirect/{hops - 1}" if hops > 1 else "/img.png")
        elif self.path.startswith("/to?"):
            self.redirect(unquote(self.path[4:]))
        else:
            super().do_GET()

    def trickle(self, data: bytes):
        try:
            for n in range(len(data)):
                self.wfile.write(data[n:n + 1])
                time.sleep(0.2)
        except OSError:
            pass

    def redirect(self, location: str):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def end_headers(self):
        if self.path == "/tagged.png":
            self.send_header("ETag", self.server.etag)
        super().end_headers()

    def send_head(self):
        if self.path == "/tagged.png" and self.headers.get("If-None-Match") == self.server.etag:
            self.send_response(304)
            self.end_headers()
            return None
        return super().send_head()


@pytest.fixture
def hostile_host(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www; yields (base url, folder, server)."""
    www = tmp_path / "www"
    www.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a, **k: HostileHost(*a, directory=str(www), **k))
    server.daemon_threads, server.requests, server.seen, server.etag = True, [], [], '"v1"'
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", www, server
    server.shutdown()
    server.server_close()


def png_bytes(seed: int = 0) -> bytes:
    path = Path(f"/tmp/dcloop-test-{os.getpid()}-{seed}.png")
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (16, 16, 3), np.uint8)).save(path)
    data = path.read_bytes()
    path.unlink()
    return data


def files_outside(tmp_path: Path, root: Path) -> set[Path]:
    """Every file under tmp_path but outside the project folder (which holds .dcloop)."""
    return {p for p in tmp_path.rglob("*") if not p.is_relative_to(root) and not p.is_dir()}


def cached_bytes(root: Path) -> list[bytes]:
    return [p.read_bytes() for p in (root / ".dcloop").rglob("*") if p.is_file()]


def store(root: Path, access=Access(), **settings) -> ImageStore:
    return ImageStore(root, root / ".dcloop/cache", access=access, **settings)


# --- 1. local urls ---

def test_local_urls_outside_the_allowed_folders_are_refused_alike_whether_the_file_exists_or_not(tmp_path):
    root, data, outside = tmp_path / "proj", tmp_path / "data", tmp_path / "outside"
    for folder in (root / "images", data, outside):
        folder.mkdir(parents=True)
    secret = outside / "secret.png"
    secret.write_bytes(png_bytes(1))
    (root / "images/escape.png").symlink_to(secret)
    (root / "images/ok.png").write_bytes(png_bytes(2))
    (data / "listed.png").write_bytes(png_bytes(3))
    config = Config(table={"backend": "gsheet"}, images={"local_roots": ["../data"]})
    before = files_outside(tmp_path, root)
    hostile = [str(secret), str(outside / "nope.png"), f"file://{secret}", f"file://{outside}/nope.png",
               "images/escape.png", "images/../../outside/secret.png", "~/.config/gspread/service_account.json",
               "/proc/self/environ", "/etc/shadow", "/dev/zero"]
    fetched = store(root, access_of(root, config)).fetch(hostile + ["images/ok.png", str(data / "listed.png")])
    assert {u: fetched[u].error for u in hostile} == {u: OUTSIDE_ROOTS for u in hostile}
    assert fetched["images/ok.png"].ok and fetched[str(data / "listed.png")].ok
    assert secret.read_bytes() not in cached_bytes(root)
    assert files_outside(tmp_path, root) == before


@pytest.mark.parametrize("source", ["--from-folder", "--from-csv"])
def test_init_records_the_folder_it_read_as_a_local_root(tmp_path, source):
    rows = write_digits(tmp_path / "data" / "1", classes=(1,), per_class=2)
    rows.to_csv(tmp_path / "data" / "list.csv", index=False)
    given = tmp_path / "data" if source == "--from-folder" else tmp_path / "data" / "list.csv"
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "p"), source, str(given)])
    assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "p", environ={})
    assert config.images.local_roots == [str(tmp_path / "data")]
    assert config.images.local_paths == "auto" and config.images.private_hosts == "auto"
    assert config.images.revalidate_days == 7


def test_local_paths_default_to_the_roots_for_a_sheet_and_anywhere_for_a_csv(tmp_path):
    sheet, csv = Config(table={"backend": "gsheet"}), Config()
    assert access_of(tmp_path, sheet) == Access((tmp_path.resolve(),), private_hosts=False)
    assert access_of(tmp_path, csv) == Access(None, private_hosts=True)
    either = Config(table={"backend": "gsheet"}, images={"local_paths": "any", "private_hosts": "allow"})
    assert access_of(tmp_path, either) == Access(None, private_hosts=True)


@pytest.mark.parametrize("roots", ["any", "roots"])
def test_special_files_become_flags_in_bounded_time(tmp_path, roots):
    root = tmp_path / "proj"
    (root / "images/folder").mkdir(parents=True)
    os.mkfifo(root / "images/fifo.png")
    access = Access((tmp_path.resolve(), Path("/dev"), Path("/proc"))) if roots == "roots" else Access()
    expected = {"images/fifo.png": NOT_REGULAR, "/dev/zero": NOT_REGULAR, "images/folder": NOT_REGULAR,
                "images/a\0b.png": "cannot read file (embedded null byte)",
                "/proc/self/mem": "cannot read file (Input/output error)",
                "/proc/self/maps": f"file over {1024 / 2**20:g} MiB",  # reports size 0, holds more
                "images/missing.png": "missing file", "file://[::1": NOT_REGULAR}  # the project folder itself
    started = time.monotonic()
    fetched = store(root, access, max_bytes=1024).fetch(list(expected))
    assert {u: fetched[u].error for u in expected} == expected
    assert time.monotonic() - started < 5


def test_a_fifo_swapped_in_after_the_stat_does_not_block_the_read(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ValueError, match=NOT_REGULAR):
        read_regular(tmp_path / "fifo", 1024)


def test_cached_images_are_private_to_their_owner(tmp_path):
    root = tmp_path / "proj"
    (root / "images").mkdir(parents=True)
    (root / "images/a.png").write_bytes(png_bytes())
    fetched = store(root).fetch(["images/a.png"])["images/a.png"]
    blob = fetched.path
    modes = [os.stat(p).st_mode & 0o777 for p in (root / ".dcloop/cache", blob.parent.parent, blob.parent, blob)]
    assert modes == [0o700, 0o700, 0o700, 0o600]


# --- 2. private hosts ---

@pytest.mark.parametrize("address, private", [
    ("169.254.169.254", True), ("127.0.0.1", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("::ffff:169.254.169.254", True), ("10.1.2.3", True), ("172.16.0.1", True), ("192.168.1.1", True),
    ("100.64.0.1", True), ("fd00::1", True), ("fe80::1%eth0", True), ("0.0.0.0", True), ("::", True),
    ("224.0.0.1", True), ("ff02::1", True), ("240.0.0.1", True), ("255.255.255.255", True),
    ("64:ff9b::a9fe:a9fe", True), ("2002:a00:1::", True),
    ("8.8.8.8", False), ("1.1.1.1", False), ("2606:4700:4700::1111", False), ("::ffff:8.8.8.8", False),
])
def test_addresses_are_classified_public_or_private(address, private):
    assert is_private(address) == private


def test_a_private_host_is_refused_before_any_request(tmp_path, hostile_host):
    base, www, server = hostile_host
    (www / "img.png").write_bytes(png_bytes())
    urls = [f"{base}/img.png", f"{base.replace('127.0.0.1', 'localhost')}/img.png", f"{base}/redirect/1"]
    fetched = store(tmp_path, Access(private_hosts=False), timeout_s=2).fetch(urls)
    assert {u: fetched[u].error for u in urls} == {u: PRIVATE_HOST for u in urls}
    assert server.seen == []
    assert store(tmp_path, Access(private_hosts=True), timeout_s=2).fetch(urls[:1])[urls[0]].ok


def test_every_redirect_hop_is_checked(tmp_path, hostile_host, monkeypatch):
    base, www, server = hostile_host
    # The test host stands in for a public one; the redirect points at the cloud metadata address.
    monkeypatch.setattr(image_http, "is_private", lambda address: address != "127.0.0.1")
    (www / "img.png").write_bytes(png_bytes())
    metadata = f"{base}/to?http://169.254.169.254/latest/meta-data/"
    urls = [metadata, f"{base}/to?file:///etc/passwd", f"{base}/redirect/5", f"{base}/redirect/6"]
    fetched = store(tmp_path, Access(private_hosts=False), timeout_s=2).fetch(urls)
    assert fetched[metadata].error == PRIVATE_HOST  # no_network would have failed the connection otherwise
    assert fetched[urls[1]].error == "redirected to a url that is not http(s)"
    assert fetched[urls[2]].ok
    assert fetched[urls[3]].error == "more than 5 redirects"


# --- 3. nothing hangs ---

@pytest.mark.parametrize("path", ["/trickle", "/slow-headers"])
def test_a_trickling_server_is_cut_at_the_deadline(tmp_path, hostile_host, path):
    base, _, server = hostile_host
    started = time.monotonic()
    fetched = store(tmp_path, timeout_s=0.5).fetch([f"{base}{path}"])
    assert fetched[f"{base}{path}"].error == "body still arriving after 2s"
    assert time.monotonic() - started < 6
    assert [p for p, _, _ in server.seen] == [path]  # final: not tried again


def test_a_tls_handshake_trickled_a_byte_at_a_time_is_bounded_by_the_timeout(tmp_path):
    """CPython's TLS handshake keeps one deadline for the whole handshake, not one per read."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle():  # a TLS record header announcing 16 KiB of handshake, then a byte every 0.2 s
        conn = server.accept()[0]
        conn.recv(4096)
        conn.sendall(b"\x16\x03\x03\x40\x00")
        while not stop.wait(0.2):
            try:
                conn.sendall(b"\x00")
            except OSError:
                break
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    url = f"https://127.0.0.1:{server.getsockname()[1]}/img.png"
    started = time.monotonic()
    error = store(tmp_path, timeout_s=0.5).fetch([url])[url].error
    assert error.startswith("fetch failed: ReadTimeout") and error.endswith("Read timed out. (read timeout=0.5)")
    assert time.monotonic() - started < 6
    stop.set()
    server.close()


# --- 4. one bad cell does not stop the sync ---

def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels: Pillow refuses it at open, before any pixel."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [30000, 10000])
def test_a_decompression_bomb_is_flagged_not_decoded(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(side, side))
    with pytest.raises(ValueError, match=rf"^image too large to decode \(over {Image.MAX_IMAGE_PIXELS} pixels\)$"):
        decode_one(path, 32)
    if side == 30000:  # over twice the limit: Pillow refuses it even to read its size
        assert image_sizes({"sha": path}, tmp_path) == {"sha": (0, 0)}


def test_16_bit_and_float_greyscale_decode_to_a_gradient(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    Image.fromarray((ramp / 65535 * 3.5 - 1).astype(np.float32)).save(tmp_path / "ramp.tif")
    for name in ("ramp16.png", "ramp.tif"):
        row = decode_one(tmp_path / name, 64)[0, 0].astype(int)
        assert row[0] == 0 and row[-1] == 255 and (np.diff(row) >= 0).all() and len(set(row)) > 50, name
    with Image.open(tmp_path / "ramp16.png") as image:
        assert image.mode.startswith("I")


def test_hostile_cells_in_a_csv_table_become_flags_and_human_cells_stay(make_project, config_of, hostile_host,
                                                                        tmp_path):
    base, www, _ = hostile_host
    root = make_project(split_rows(write_digits(tmp_path / "proj" / "images", per_class=4)))
    (root / "images/folder").mkdir()
    (root / "images/bomb.png").write_bytes(png_header_only(30000, 30000))
    expected = {"http://[::1": "invalid url (InvalidURL)",
                "images/folder": NOT_REGULAR, "/dev/zero": NOT_REGULAR, "images/bomb.png": f"image too large to decode (over {Image.MAX_IMAGE_PIXELS} pixels)",
                f"{base}/trickle": "body still arriving after 2s"}
    rows = pd.DataFrame({"url": list(expected), "label": "0", "split": "train", "note": "hand-written"})
    pd.concat([read_csv(root / "labels.csv"), rows], ignore_index=True).fillna("").to_csv(root / "labels.csv",
                                                                                         index=False)
    before = files_outside(tmp_path, root)
    config = load_config(root, {"images": {"timeout_s": 0.5}}, environ={})
    table = pull(open_backend(config, root), config)
    checked = tbl.validate(table, config.project.classes)
    loaded = load_images(root, config, checked, lambda message: None)
    flags = {u: checked.flags.get(i) for i, u in zip(table["id"], table["url"]) if u in expected}
    assert flags == {u: [f"unreadable: {text}"] for u, text in expected.items()}
    assert len(loaded.sha) == 12
    assert files_outside(tmp_path, root) == before


# --- a Google Sheet's defaults, through the emulator ---

@pytest.mark.training
def test_a_sheet_row_naming_a_file_outside_the_roots_is_refused_and_never_cached(
        tmp_path, emulator, key_file, blank_sheet, hostile_host, one_torch_thread):
    base, www, _ = hostile_host
    (www / "img.png").write_bytes(png_bytes(4))
    rows = split_rows(write_digits(tmp_path / "data" / "images", per_class=6))
    rows["url"] = [str(tmp_path / "data" / u) for u in rows["url"]]
    secret = tmp_path / "outside" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(png_bytes(5))
    hostile = {str(secret): OUTSIDE_ROOTS, str(tmp_path / "outside/nope.png"): OUTSIDE_ROOTS,
               f"{base}/img.png": PRIVATE_HOST}
    rows = pd.concat([rows, pd.DataFrame({"url": list(hostile), "label": "0", "split": "train", "note": "mine"})],
                     ignore_index=True)
    root = tmp_path / "p"
    config = sheet_config(blank_sheet, key_file, emulator.base_url, classes=["0", "1", "7"])
    init_project(root, rows, config=config, sources=[tmp_path / "data"])
    text = (root / "dcloop.toml").read_text()
    assert f'local_roots = ["{tmp_path / "data"}"]' in text
    for key, value in TRAIN_TINY["model"].items():
        text = replace_setting(text, "model", key, value)
    (root / "dcloop.toml").write_text(text)
    before, human = files_outside(tmp_path, root), sheet_frame(emulator, blank_sheet)[["id"] + HUMAN]

    report = sync(root, load_config(root, environ={}))
    assert report.trained
    after = sheet_frame(emulator, blank_sheet).set_index("id")
    flags = {u: f for u, f in zip(after["url"], after["flags"]) if u in hostile}
    assert flags == {u: f"unreadable: {text}" for u, text in hostile.items()}
    assert secret.read_bytes() not in cached_bytes(root)
    # nor a thumbnail of it for the report, which would be named by its hash
    assert hashlib.sha256(secret.read_bytes()).hexdigest() not in str(list((root / ".dcloop").rglob("*")))
    assert after.loc[human["id"], HUMAN].reset_index(drop=True).equals(human[HUMAN])
    assert files_outside(tmp_path, root) == before


# --- 5. revalidation ---

def test_an_image_changed_at_its_url_is_revalidated_by_age_or_on_request(tmp_path, hostile_host):
    base, www, server = hostile_host
    (www / "img.png").write_bytes(png_bytes(6))
    (www / "tagged.png").write_bytes(png_bytes(7))
    urls = [f"{base}/img.png", f"{base}/tagged.png"]
    now, said = [1000.0], []
    make = lambda **kw: store(tmp_path, clock=lambda: now[0], progress=said.append, revalidate_days=1, **kw)  # noqa
    first = make().fetch(urls)
    (www / "img.png").write_bytes(png_bytes(8))
    os.utime(www / "img.png", (time.time() + 60, time.time() + 60))
    server.seen.clear()
    assert make().fetch(urls) == first and server.seen == []  # fresh: no request at all

    now[0] += 86400
    second = make().fetch(urls)
    assert second[urls[0]].sha != first[urls[0]].sha and second[urls[0]].path.read_bytes() == png_bytes(8)
    assert second[urls[1]] == first[urls[1]]
    asked = {path: (etag, modified) for path, etag, modified in server.seen}
    assert asked["/img.png"][0] is None and asked["/img.png"][1]  # If-Modified-Since, as no ETag came
    assert asked["/tagged.png"][0] == '"v1"'
    assert said[-1] == "revalidated 2 cached http image(s): 1 changed at their url"

    server.seen.clear()
    assert make(refetch=True).fetch(urls) == second and len(server.seen) == 2

    shutil.rmtree(www)  # the host now answers 404: the cached copies stay, no row is flagged
    server.etag = '"v2"'
    assert make(refetch=True).fetch(urls) == second
    assert said[-1].endswith("2 could not be checked, their cached copy kept")


@pytest.mark.training
def test_the_old_url_index_is_read_and_a_changed_image_retrains(make_project, config_of, hostile_host, tmp_path,
                                                                one_torch_thread):
    base, www, server = hostile_host
    rows = split_rows(write_digits(tmp_path / "src", per_class=5))
    for url in rows["url"]:
        shutil.copy(tmp_path / "src" / Path(url).name, www)
    rows["url"] = [f"{base}/{Path(u).name}" for u in rows["url"]]
    root = make_project(rows, TRAIN_TINY)
    sync(root, config_of(root))
    index_path = root / ".dcloop/cache/urls.json"
    old = {u: e["sha"] for u, e in json.loads(index_path.read_text()).items()}
    index_path.write_text(json.dumps(old))  # the format before revalidation: url -> sha
    assert sync(root, config_of(root)).message.startswith("Nothing changed")

    changed = rows["url"][3]
    (www / Path(changed).name).write_bytes(png_bytes(9))
    os.utime(www / Path(changed).name, (time.time() + 60, time.time() + 60))
    said = []
    report = sync(root, config_of(root), refetch=True, progress=said.append)
    assert report.trained
    assert "revalidated 15 cached http image(s): 1 changed at their url" in said
    assert (read_csv(root / "labels.csv")[HUMAN].sort_values("url").reset_index(drop=True)
            .equals(rows.assign(note="")[HUMAN].sort_values("url").reset_index(drop=True)))
