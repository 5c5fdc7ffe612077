"""Fixtures: a Sheets API emulator on 127.0.0.1, a throwaway service-account key, a sheet backend on both."""

from __future__ import annotations

import json
import socket

import pandas as pd
import pytest

from dcloop import table as tbl
from dcloop.backends.gsheet import SheetBackend
from dcloop.backends.sheet_http import RetryPolicy
from dcloop.config import Config

from .sheets_emulator import SheetsEmulator

ACCOUNT = "dcloop-test@dcloop-test.iam.gserviceaccount.com"
CLASSES = ["cat", "dog", "bird"]
FAST_RETRY = RetryPolicy(attempts=6, base_s=0.001, cap_s=0.01, deadline_s=5.0)


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
