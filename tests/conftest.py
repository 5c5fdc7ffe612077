"""Shared fixtures: real image files and projects, a real HTTP image host and a Sheets API emulator,
both on 127.0.0.1, and a throwaway service-account key. No test reaches the internet."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dcloop import table as tbl
from dcloop.backends.gsheet import SheetBackend
from dcloop.backends.sheet_http import RetryPolicy
from dcloop.config import Config, load_config
from dcloop.project import init_project

from .sheets_emulator import SheetsEmulator

# One network per sync: cross-fitting (on by default) is tested on its own in test_crossfit.py.
TINY_MODEL = {"model": {"epochs": 3, "batch_size": 16}, "suspicion": {"crossfit": 0}}


@pytest.fixture(autouse=True)
def trains_only_when_marked(request, monkeypatch):
    """A test that trains the model is marked ``training``, so ``pytest -m "not training"`` runs the
    fast subset alone. An unmarked test that trains fails here, naming the mark it lacks."""
    if request.node.get_closest_marker("training") is not None:
        return
    import dcloop.model

    def refuse(*args, **kwargs):
        raise AssertionError("this test trains the model: mark it @pytest.mark.training")

    monkeypatch.setattr(dcloop.model, "train", refuse)


def write_digits(folder: Path, classes=(0, 1, 7), per_class=30, seed=0) -> pd.DataFrame:
    """Real handwritten digit scans as PNG files; rows url,label (relative to folder's parent)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for digit in classes:
        for n in rng.choice(np.flatnonzero(digits.target == digit), per_class, replace=False):
            path = folder / f"d{digit}-{n:04d}.png"
            Image.fromarray((255 - digits.images[n] * 15).astype(np.uint8)).resize((32, 32)).save(path)
            rows.append({"url": f"{folder.name}/{path.name}", "label": str(digit)})
    return pd.DataFrame(rows)


def split_rows(rows: pd.DataFrame, val_every=4) -> pd.DataFrame:
    rows = rows.copy()
    rows["split"] = ["val" if n % val_every == 0 else "train" for n in range(len(rows))]
    return rows


@pytest.fixture
def make_project(tmp_path):
    """make_project(rows=None, **config overrides) -> project folder, from real digit PNGs."""

    def make(rows: pd.DataFrame | None = None, overrides: dict | None = None, name="proj") -> Path:
        root = tmp_path / name
        if rows is None:
            rows = split_rows(write_digits(root / "images"))
        init_project(root, rows)
        text = (root / "dcloop.toml").read_text()
        for section, values in {**TINY_MODEL, **(overrides or {})}.items():
            for key, value in values.items():
                text = replace_setting(text, section, key, value)
        (root / "dcloop.toml").write_text(text)
        return root

    return make


def replace_setting(text: str, section: str, key: str, value) -> str:
    from dcloop.config import toml_value
    lines, current = text.splitlines(), None
    for n, line in enumerate(lines):
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and line.split("=")[0].strip() == key:
            lines[n] = f"{key} = {toml_value(value)}"
    return "\n".join(lines) + "\n"


@pytest.fixture
def planted_error(make_project, tmp_path):
    """A synced-ready project of 0s and 1s where one training 0 is labeled 1; returns (root, its url)."""
    rows = write_digits(tmp_path / "proj" / "images", classes=(0, 1), per_class=40)
    rows["split"] = ["val" if n % 5 == 0 else "train" for n in range(len(rows))]
    wrong = rows.index[(rows["label"] == "0") & (rows["split"] == "train")][3]
    rows.loc[wrong, "label"] = "1"
    return make_project(rows, {"model": {"epochs": 8}}), rows.loc[wrong, "url"]


@pytest.fixture
def config_of():
    return lambda root: load_config(root, environ={})


class ImageHost(http.server.SimpleHTTPRequestHandler):
    """Serves files from a folder, plus /status/<code>, /hang and /endless for failure tests."""

    hang_seconds = 30.0

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path.startswith("/status/"):
            self.send_error(int(self.path.split("/")[2]))
        elif self.path == "/hang":
            time.sleep(self.hang_seconds)
        elif self.path == "/endless":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            chunk = b"\0" * 65536
            try:
                for _ in range(100_000):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            super().do_GET()


@pytest.fixture
def image_host(tmp_path):
    """A real HTTP server on 127.0.0.1:<free port> serving tmp_path/www; yields (base url, folder, server)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = lambda *a, **k: ImageHost(*a, directory=str(www), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", www, server
    server.shutdown()
    server.server_close()


ACCOUNT = "dcloop-test@dcloop-test.iam.gserviceaccount.com"
CLASSES = ["cat", "dog", "bird"]
FAST_RETRY = RetryPolicy(attempts=6, base_s=0.001, cap_s=0.01, deadline_s=5.0, quota_s=0.05)


@pytest.fixture(autouse=True)
def quick_maps(monkeypatch):
    """Reports in tests draw the PCA map: UMAP's first map in each process compiles for 20-40 s.
    test_report.py tests UMAP itself, and projects made with config_of read no environment."""
    monkeypatch.setenv("DCLOOP_REPORT_MAP", "pca")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """No test reaches the internet: only loopback connections are allowed."""
    connect = socket.socket.connect

    def loopback_only(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"test tried to reach {address}; tests may only use 127.0.0.1")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)


@pytest.fixture(scope="session")
def rsa_key():
    from cryptography.hazmat.primitives.asymmetric import rsa
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def emulator():
    emu = SheetsEmulator()
    emu.start()
    yield emu
    emu.stop()


def write_key(path, private_key, email: str, token_uri: str):
    """A service-account JSON key file like the one Google's console downloads."""
    from cryptography.hazmat.primitives import serialization
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "dcloop-test", "private_key_id": "0123abcd",
        "private_key": pem, "client_email": email, "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri}))
    return path


@pytest.fixture
def key_file(tmp_path, emulator, rsa_key):
    emulator.add_account(ACCOUNT, rsa_key.public_key())
    return write_key(tmp_path / "key.json", rsa_key, ACCOUNT, emulator.token_uri)


def sheet_config(key: str, credentials, endpoint: str, classes=CLASSES) -> Config:
    return Config(project={"classes": classes},
                  table={"backend": "gsheet", "sheet": key, "credentials": str(credentials), "endpoint": endpoint})


@pytest.fixture
def open_sheet(emulator, key_file, tmp_path):
    """open_sheet(key) -> a SheetBackend built by from_config, pointed at the emulator, retrying fast."""
    def opener(key: str, classes=CLASSES) -> SheetBackend:
        backend = SheetBackend.from_config(sheet_config(key, key_file, emulator.base_url, classes), tmp_path)
        backend.http.policy = FAST_RETRY
        return backend
    return opener


@pytest.fixture
def blank_sheet(emulator) -> str:
    """A new spreadsheet as Google makes it (one empty tab 'Sheet1'), shared with the test account."""
    return emulator.create_spreadsheet("dcloop test", editors=[ACCOUNT])


def make_table(n: int, http: bool = True) -> pd.DataFrame:
    """n rows with ids, urls, labels and splits, every column of the schema present."""
    scheme = "https://img.example/" if http else "/data/images/"
    rows = [{"id": f"r{i:04d}", "url": f"{scheme}{i}.png", "label": CLASSES[i % 3],
             "split": ["train", "train", "val", "test"][i % 4], "note": ""} for i in range(n)]
    return pd.DataFrame(rows).reindex(columns=tbl.COLUMNS, fill_value="")


@pytest.fixture
def sheet(open_sheet, blank_sheet) -> SheetBackend:
    """A backend on a sheet laid out by create() with 12 rows."""
    backend = open_sheet(blank_sheet)
    backend.create(make_table(12))
    return backend
