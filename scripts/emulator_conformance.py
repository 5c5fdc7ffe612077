"""Replay recorded traffic with the real Google Sheets API against the emulator; print how much matches.

    python scripts/emulator_conformance.py [CASSETTES] [-v]

CASSETTES is gspread's ``tests/cassettes`` folder, or a git directory of gspread's repository (such
as the mirror ``fetch github:burnash/gspread`` makes; default /work/.mirror/burnash+gspread/repo),
read at run time: nothing of it is kept in this project. Without it the script says so and exits 0.

Each cassette file is one test's sequence of requests; it is replayed in order against a fresh
emulator. Spreadsheets the recordings create through Drive are made in the emulator under the same
key; sheet ids Google chose for addSheet are passed in the request so later requests find them.
Every Sheets request is sent, to keep the state, but only the kinds dcloop sends are counted:
values get, batchGet, update, batchUpdate, append, clear and batchClear, spreadsheets.get as dcloop
asks it (no ``fields``, no ``ranges``), spreadsheets.batchUpdate made only of the request kinds of
dcloop/backends/sheet_layout.py and gsheet.py, and spreadsheets.create.

An interaction matches when the status code and the fields dcloop reads agree (values; sheet ids,
titles, grid sizes, frozen rows, protections, conditional formats and charts; addSheet replies;
the error status word). ``-v`` lists what differs, and the wider figure adds what dcloop does not
read (updatedRange and counts, tableRange, clearedRange, error messages).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.sheets_emulator import SheetsEmulator, route  # noqa: E402

MIRROR = Path("/work/.mirror/burnash+gspread/repo")
ACCOUNT = "replay@dcloop-test.iam.gserviceaccount.com"
HEADERS = {"Authorization": "Bearer replay"}
DCLOOP_REQUESTS = {"addSheet", "updateSheetProperties", "updateDimensionProperties", "repeatCell",
                   "setDataValidation", "addProtectedRange", "addConditionalFormatRule", "addChart"}
COUNTED = {"values.get", "values.batchGet", "values.update", "values.batchUpdate", "values.append",
           "values.clear", "values.batchClear", "spreadsheets.get", "spreadsheets.batchUpdate",
           "spreadsheets.create"}


def cassettes(source: Path) -> dict[str, dict]:
    """{file name: recording} from a cassettes folder or from a git directory of gspread."""
    if source.is_dir() and any(source.glob("*.json")):
        return {p.name: json.loads(p.read_text()) for p in sorted(source.glob("*.json"))}
    git = ["git", f"--git-dir={source}"]
    names = subprocess.run([*git, "ls-tree", "--name-only", "HEAD:tests/cassettes/"], capture_output=True,
                           text=True, check=True).stdout.split()
    return {n: json.loads(subprocess.run([*git, "show", f"HEAD:tests/cassettes/{n}"], capture_output=True,
                                         text=True, check=True).stdout) for n in names if n.endswith(".json")}


def kind_of(request: dict) -> tuple[str | None, dict]:
    """The kind of a recorded Sheets request if dcloop sends that kind ('' if it is a Sheets request
    dcloop does not send, None for Drive and others), and its query."""
    parts = urlsplit(request["uri"])
    query = parse_qs(parts.query, keep_blank_values=True)
    if parts.netloc != "sheets.googleapis.com":
        return None, query
    try:
        kind = route(request["method"], parts.path)[0]
    except Exception:
        return "", query
    if kind == "spreadsheets.get" and ({"fields", "ranges"} & set(query)
                                       or query.get("includeGridData", ["false"])[0].lower() != "false"):
        return "", query
    if kind == "spreadsheets.batchUpdate":
        names = {name for r in json.loads(request["body"] or "{}").get("requests", []) for name in r}
        if not names <= DCLOOP_REQUESTS:
            return "", query
    return (kind if kind in COUNTED else ""), query


def body_of(interaction: dict) -> dict:
    text = interaction["response"]["body"].get("string") or ""
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}


def sheet_view(sheet: dict) -> dict:
    props = sheet.get("properties", {})
    grid = props.get("gridProperties", {})
    return {"sheetId": props.get("sheetId"), "title": props.get("title"), "index": props.get("index"),
            "rows": grid.get("rowCount"), "columns": grid.get("columnCount"),
            "frozen": grid.get("frozenRowCount", 0), "hidden": props.get("hidden", False),
            "protected": sorted(p.get("description", "") for p in sheet.get("protectedRanges", [])),
            "conditional": len(sheet.get("conditionalFormats", [])),
            "charts": sorted(c.get("spec", {}).get("title", "") for c in sheet.get("charts", []))}


def read_fields(kind: str, status: int, body: dict) -> object:
    """What dcloop reads of an answer of this kind."""
    if status != 200:
        return body.get("error", {}).get("status")
    if kind == "values.get":
        return body.get("values", [])
    if kind == "values.batchGet":
        return [r.get("values", []) for r in body.get("valueRanges", [])]
    if kind in ("spreadsheets.get", "spreadsheets.create"):
        return [sheet_view(s) for s in body.get("sheets", [])]
    if kind == "spreadsheets.batchUpdate":
        return [sheet_view(r["addSheet"]) if "addSheet" in r else sorted(r) for r in body.get("replies", [])]
    return None  # dcloop reads nothing else of writes: their status is what counts


def wider_fields(kind: str, status: int, body: dict) -> object:
    """What dcloop does not read but Google's answer holds: ranges, counts and error messages."""
    if status != 200:
        return body.get("error", {}).get("message")
    names = ("range", "majorDimension", "updatedRange", "updatedRows", "updatedColumns", "updatedCells",
             "tableRange", "clearedRange", "clearedRanges", "totalUpdatedCells")
    pick = lambda d: {n: d[n] for n in names if n in d}  # noqa: E731
    if kind == "values.append":
        return {**pick(body), "updates": pick(body.get("updates", {}))}
    if kind == "values.batchGet":
        return [pick(r) for r in body.get("valueRanges", [])]
    return pick(body)


def drive(emulator: SheetsEmulator, interaction: dict) -> None:
    """Replay what Drive did to spreadsheets: create (under the recorded key), copy, delete."""
    request, body = interaction["request"], body_of(interaction)
    path = urlsplit(request["uri"]).path
    if request["method"] == "POST" and path.endswith("/files") and "id" in body:
        emulator.create_spreadsheet(body.get("name", "Untitled"), editors=[ACCOUNT], key=body["id"])
    elif request["method"] == "POST" and path.endswith("/copy") and "id" in body:
        original = emulator.books.get(path.split("/")[-2])
        if original is not None:
            twin = original.clone()
            twin.key = body["id"]
            emulator.books[body["id"]] = twin
    elif request["method"] == "GET" and path.endswith("/files"):
        for listed in body.get("files", []):  # spreadsheets the account held from before the test
            if listed.get("id") and listed["id"] not in emulator.books:
                emulator.create_spreadsheet(listed.get("name", "Untitled"), editors=[ACCOUNT], key=listed["id"])
    elif request["method"] == "DELETE":
        emulator.books.pop(path.rsplit("/", 1)[-1], None)


def with_recorded_ids(request: dict, answer: dict) -> bytes:
    """The request body, each addSheet given the sheetId Google chose, so later requests find the tab."""
    body = request.get("body") or ""
    if not body or not answer.get("replies"):
        return body.encode()
    payload = json.loads(body)
    for sent, reply in zip(payload.get("requests", []), answer["replies"]):
        if "addSheet" in sent and "addSheet" in reply:
            sent["addSheet"].setdefault("properties", {})["sheetId"] = reply["addSheet"]["properties"]["sheetId"]
    return json.dumps(payload).encode()


def replay(recording: dict, name: str, tally: Counter, differences: list) -> None:
    emulator = SheetsEmulator()
    emulator.tokens["replay"] = ACCOUNT
    for n, interaction in enumerate(recording["interactions"]):
        request = interaction["request"]
        kind, _ = kind_of(request)
        if kind is None:
            drive(emulator, interaction)
            continue
        recorded, expected = interaction["response"]["status"]["code"], body_of(interaction)
        status, answer, _ = emulator.handle(request["method"], request["uri"].split("googleapis.com", 1)[1],
                                            HEADERS, with_recorded_ids(request, expected))
        if not kind:
            continue
        tally[(kind, "all")] += 1
        same = status == recorded and read_fields(kind, status, answer) == read_fields(kind, recorded, expected)
        wider = same and wider_fields(kind, status, answer) == wider_fields(kind, recorded, expected)
        tally[(kind, "match")] += same
        tally[(kind, "wider")] += wider
        if not wider:
            google = (recorded, read_fields(kind, recorded, expected), wider_fields(kind, recorded, expected))
            ours = (status, read_fields(kind, status, answer), wider_fields(kind, status, answer))
            differences.append((name, n, kind, "" if same else "DIFFERS", request["uri"][:140], google, ours))


def replay_all(recordings: dict[str, dict]) -> tuple[Counter, list]:
    """Counts by (kind, "all" / "match" / "wider"), and what differs."""
    tally, differences = Counter(), []
    for name, recording in recordings.items():
        replay(recording, name, tally, differences)
    return tally, differences


def main(argv: list[str]) -> int:
    verbose = "-v" in argv
    args = [a for a in argv if a != "-v"]
    source = Path(args[0]) if args else MIRROR
    if not source.exists():
        print(f"skipped: no gspread cassettes at {source} (fetch github:burnash/gspread, or pass the "
              f"path of its tests/cassettes folder)")
        return 0
    recordings = cassettes(source)
    tally, differences = replay_all(recordings)
    kinds = sorted({k for k, _ in tally})
    print(f"{'kind':<26}{'replayed':>9}{'match':>7}{'wider':>7}")
    for kind in kinds:
        print(f"{kind:<26}{tally[(kind, 'all')]:>9}{tally[(kind, 'match')]:>7}{tally[(kind, 'wider')]:>7}")
    total, match, wider = (sum(tally[(k, w)] for k in kinds) for w in ("all", "match", "wider"))
    print(f"{'all':<26}{total:>9}{match:>7}{wider:>7}")
    print(f"{len(recordings)} cassettes; status and the fields dcloop reads match for {match} of {total} "
          f"interactions ({match / max(total, 1):.1%}); with ranges, counts and messages {wider / max(total, 1):.1%}")
    if verbose:
        for name, n, kind, flag, uri, google, emulator in differences:
            print(f"\n{flag or 'wider'} {name} #{n} {kind} {uri}\n  google:   {google}\n  emulator: {emulator}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
