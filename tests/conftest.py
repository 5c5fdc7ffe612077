"""Shared fixtures: real image files, real projects, a real HTTP image host on 127.0.0.1."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dcloop.config import load_config
from dcloop.project import init_project

TINY_MODEL = {"model": {"epochs": 3, "batch_size": 16}}


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
