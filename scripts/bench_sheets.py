"""Time a no-change sync and a full write-back of a 10,000-row sheet against the local emulator.

    python scripts/bench_sheets.py [ROWS]

Prints the Sheets API calls and seconds of each step. Nothing reaches Google: the emulator runs on
127.0.0.1 and a throwaway service-account key is made for it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from dcloop import table as tbl  # noqa: E402
from dcloop.backends.gsheet import SheetBackend  # noqa: E402
from tests.conftest import ACCOUNT, CLASSES, make_table, sheet_config, write_key  # noqa: E402
from tests.sheets_emulator import SheetsEmulator  # noqa: E402


def predictions(ids, salt: str) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame({"id": ids, "image": [f"images/{i}.png" for i in ids],
                         "prediction": [CLASSES[k % 3] for k in range(n)],
                         "confidence": [f"0.{(k * 7 + len(salt)) % 1000:03d}" for k in range(n)],
                         "label_prob": [f"0.{(k * 3) % 1000:03d}" for k in range(n)],
                         "suspicion": [f"0.{(k * 11) % 1000:03d}" for k in range(n)],
                         "flags": [salt if k % 10 == 0 else "" for k in range(n)]})


def step(name: str, emulator: SheetsEmulator, action):
    emulator.reset_counts()
    started = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - started
    kinds = {}
    for call in emulator.calls:
        if call.kind != "token":
            kinds[call.kind] = kinds.get(call.kind, 0) + 1
    detail = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    print(f"{name:<44} {emulator.api_calls():>2} calls  {seconds:6.2f}s   ({detail})")
    return result


def main(rows: int = 10_000) -> None:
    emulator = SheetsEmulator()
    emulator.start()
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    emulator.add_account(ACCOUNT, private.public_key())
    key = emulator.create_spreadsheet("bench", editors=[ACCOUNT])
    with tempfile.TemporaryDirectory() as folder:
        path = write_key(Path(folder) / "key.json", private, ACCOUNT, emulator.token_uri)
        config = sheet_config(key, path, emulator.base_url)
        print(f"{rows:,} rows, Sheets API emulator at {emulator.base_url}")
        step("init (create: lay out and fill)", emulator, lambda: SheetBackend.from_config(config, Path(folder))
             .create(make_table(rows)))
        backend = SheetBackend.from_config(config, Path(folder))
        table = step("read", emulator, lambda: tbl.normalize(backend.read(), "bench"))
        ids = list(table["id"])
        step("full write-back (all machine columns)", emulator, lambda: backend.write(predictions(ids, "a")))
        step("full write-back again, every value new", emulator, lambda: backend.write(predictions(ids, "bb")))
        fresh = SheetBackend.from_config(config, Path(folder))
        step("no-change sync (read + write, nothing differs)", emulator,
             lambda: (fresh.read(), fresh.write(predictions(ids, "bb"))))
        fresh = SheetBackend.from_config(config, Path(folder))
        step("full sync (read, write, result, classes)", emulator, lambda: (
            fresh.read(), fresh.write(predictions(ids, "ccc")), fresh.append_result({"run_id": "x"}),
            fresh.update_classes([{"class": c} for c in CLASSES])))
    emulator.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
