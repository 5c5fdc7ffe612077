"""The label table as a local CSV file: the default backend, no account needed."""

from __future__ import annotations

import codecs
import csv
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import table as tbl
from ..errors import BackendError, DiskError, SchemaError
from ..fsutil import atomic_write_bytes, atomic_write_text, file_stamp
from ..table import RESULT_COLUMNS
from . import ORDER
from .rewrite import RewritingTable, busy

MAX_WRITE_ATTEMPTS = 5


SETTLE_S = 0.25             # a file modified this recently is read again once it has held still
UNTERMINATED_SETTLE_S = 2.0  # ... and longer when its last line has no end: a save may be under way
READ_ATTEMPTS = 20
DELIMITERS = (",", ";", "\t")


@dataclass(frozen=True)
class CsvFormat:
    """How a CSV file was written, so dcloop writes it back the same way.

    Excel in many locales saves ';', Windows programs end lines with CRLF and Excel's "CSV UTF-8"
    starts with a byte-order mark. ``header`` keeps each column's header cell exactly as the file
    had it (blank, repeated or padded names included) against the name dcloop uses for it.
    """

    delimiter: str = ","
    newline: str = "\n"
    bom: bool = False
    quote_all: bool = False
    header: tuple[tuple[str, str], ...] = ()  # (name dcloop uses, header cell as written)


def read_csv(path: Path) -> pd.DataFrame:
    """Every cell of a CSV file as a string; a clear SchemaError when it is not a CSV."""
    return read_csv_file(path)[0]


def read_csv_file(path: Path, sleep=time.sleep) -> tuple[pd.DataFrame, CsvFormat]:
    """The table and how it is written, read only once the file holds still.

    A program that saves in place (not by writing a new file and renaming it) can be caught
    half-way: the read is repeated until the file's size and modification time stay the same for
    a moment and, where its last line has no line end, a little longer.
    """
    path = Path(path)
    for _ in range(READ_ATTEMPTS):
        try:
            before = os.stat(path)
            data = path.read_bytes()
        except FileNotFoundError as e:
            raise BackendError(f"{path}: no such file. Run 'dcloop init' to create a project.") from e
        settle = SETTLE_S if data.endswith((b"\n", b"\r")) or not data else UNTERMINATED_SETTLE_S
        age = time.time() - before.st_mtime
        if age < settle:
            sleep(settle - age)
        after = os.stat(path)
        if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns) and after.st_size == len(data):
            return parse_csv(data, str(path))
    raise BackendError(f"{path}: the file kept changing while dcloop read it; wait until the program "
                       f"writing it has finished saving, then sync again.")


def parse_csv(data: bytes, source: str) -> tuple[pd.DataFrame, CsvFormat]:
    """The cells of a CSV file's bytes as strings, and the format they were written in."""
    bom = data.startswith(codecs.BOM_UTF8)
    try:
        text = data[len(codecs.BOM_UTF8) if bom else 0:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise SchemaError(not_utf8(data, source)) from e
    if not text.strip():
        raise SchemaError(f"{source}: the file is empty; a label table needs a header row with url,label.")
    first_line = text.splitlines()[0]
    delimiter = sniff_delimiter(first_line)
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True) if row]
    except csv.Error as e:
        raise SchemaError(f"{source}: not a valid CSV file: {e}") from e
    header, body = rows[0], rows[1:]
    width = max([len(header)] + [len(r) for r in body])
    header = header + [""] * (width - len(header))  # cells past the header keep a column of their own
    names = column_names(header)
    frame = pd.DataFrame([r + [""] * (width - len(r)) for r in body], columns=names, dtype=str)
    newline = "\r\n" if "\r\n" in text[:len(first_line) + 2] else "\n"
    quote_all = first_line.startswith('"') and all(
        cell.startswith('"') for cell in first_line.split(delimiter) if cell)
    return frame, CsvFormat(delimiter, newline, bom, quote_all, tuple(zip(names, header)))


def sniff_delimiter(header_line: str) -> str:
    """The separator that splits the header into the columns a label table needs; ',' by default."""
    def cells(d: str) -> list[str]:
        return [c.strip().strip('"').strip() for c in next(csv.reader([header_line], delimiter=d))]
    for d in DELIMITERS:
        if {"url", "label"} <= set(cells(d)):
            return d
    return max(DELIMITERS, key=lambda d: (len(cells(d)), d == ","))


def column_names(header: list[str]) -> list[str]:
    """A distinct name per column: dcloop's columns by their stripped name, a person's as written
    where that is distinct, else the written name with its position."""
    known = set(tbl.COLUMNS + tbl.OPTIONAL_COLUMNS)
    names, seen = [], set()
    for n, cell in enumerate(header, 1):
        name = cell.strip() if cell.strip() in known else cell
        if name in seen or not name.strip():
            name = f"{cell.strip() or 'column'} (column {n})"
        names.append(name)
        seen.add(name)
    return names


def render_csv(frame: pd.DataFrame, fmt: CsvFormat = CsvFormat()) -> bytes:
    """``frame`` written in ``fmt``: each column under its header cell as read, new columns by name."""
    written = dict(fmt.header)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=fmt.delimiter, lineterminator=fmt.newline,
                        quoting=csv.QUOTE_ALL if fmt.quote_all else csv.QUOTE_MINIMAL)
    writer.writerow([written.get(c, c) for c in frame.columns])
    writer.writerows(frame.astype(str).itertuples(index=False, name=None))
    return (codecs.BOM_UTF8 if fmt.bom else b"") + buffer.getvalue().encode("utf-8")


def not_utf8(data: bytes, path) -> str:
    """Where the first byte of a file's ``data`` that is not UTF-8 is, and what to do."""
    try:
        data.decode("utf-8")
        return f"{path}: not a text CSV file (it is not UTF-8)."
    except UnicodeDecodeError as e:
        if b"\0" in data:  # an image or a spreadsheet file, not text in another encoding
            return f"{path}: not a text CSV file (byte {e.start} is not UTF-8)."
        line = data.count(b"\n", 0, e.start) + 1
        return (f"{path}: line {line} is not UTF-8 (byte 0x{data[e.start]:02x} at position {e.start}); the file "
                f"was probably saved as Windows-1252 or Latin-1. Save it as CSV UTF-8 (Excel: Save As > "
                f"'CSV UTF-8 (Comma delimited)'; LibreOffice: character set 'Unicode (UTF-8)'), then sync again.")


def to_csv_text(frame: pd.DataFrame) -> str:
    return render_csv(frame).decode("utf-8")


def formula_safe(frame: pd.DataFrame, columns=None) -> pd.DataFrame:
    """``frame`` with the cells of ``columns`` (default: all) neutralized against CSV formula injection.

    Only for cells dcloop writes: a person's own cells are written back exactly as they were.
    """
    out = frame.copy()
    for column in out.columns if columns is None else [c for c in columns if c in out.columns]:
        out[column] = out[column].map(tbl.formula_safe)
    return out


# dcloop's own columns whose text may echo table data (flags quote labels); ids are generated and
# checked, so they are matched as they are.
WRITTEN_COLUMNS = [c for c in tbl.MACHINE_COLUMNS if c != "id"]


class CsvBackend(RewritingTable):
    capabilities = frozenset({ORDER})  # the file is rewritten whole: rows can be put in any order

    def __init__(self, path: Path, results_path: Path, row_drop: tbl.RowDrop = tbl.RowDrop()):
        self.path = Path(path)
        self.results_path = Path(results_path)
        self.row_drop = row_drop

    def read(self) -> pd.DataFrame:
        return read_csv(self.path)

    def write(self, patch: pd.DataFrame, order: list[str] | None = None) -> int:
        """Apply dcloop's columns by id; with ``order`` (ids), also move rows, their cells unchanged.

        Refused, with nothing written, when the file now lacks more of the patch's rows than
        ``row_drop`` allows: a file caught half-saved must not replace the whole table.
        """
        patch = formula_safe(patch, WRITTEN_COLUMNS)

        def change(current: pd.DataFrame) -> pd.DataFrame:
            known = set(patch["id"])
            self.row_drop.check(len(known), len(known - set(current["id"].str.strip())),
                                f"{self.path} (re-read before writing)")
            return tbl.apply_patch(current, patch)

        return self._rewrite(change, order)

    def _rewrite(self, change, order: list[str] | None = None) -> int:
        # Re-read right before writing, and only rename if nobody saved the file meanwhile:
        # a person's edits made during training are merged, never overwritten.
        for _ in range(MAX_WRITE_ATTEMPTS):
            stamp = file_stamp(self.path)
            frame, fmt = read_csv_file(self.path)
            current = tbl.normalize(frame, str(self.path), check_ids=False)  # pull checks them
            patched = change(current)
            changed = tbl.rows_changed(current, patched)
            if order is not None:  # rows move, their cells do not change
                patched = tbl.reorder(patched, order)
            if changed == 0 and (order is None or patched["id"].equals(current["id"])):
                return 0
            columns = list(dict.fromkeys([*current.columns, *patched.columns]))  # a reviewed column may be new
            if self._replace(render_csv(patched[columns], fmt), stamp):
                return changed
        raise BackendError(f"{self.path}: the file kept changing while dcloop tried to write "
                           f"{MAX_WRITE_ATTEMPTS} times; close the editor's autosave and sync again.")

    def create(self, table: pd.DataFrame) -> None:
        if self.path.exists():
            raise BackendError(f"{self.path} already exists; dcloop init will not overwrite a label table.")
        atomic_write_bytes(self.path, render_csv(table[tbl.COLUMNS]))
        if not self.results_path.exists():
            atomic_write_text(self.results_path, to_csv_text(pd.DataFrame(columns=RESULT_COLUMNS)))

    def update_classes(self, rows: list[dict[str, str]]) -> None:
        """A CSV file has no place for the per-class summary: `dcloop report` shows it."""

    def read_results(self) -> pd.DataFrame:
        if not self.results_path.exists() or self.results_path.stat().st_size == 0:
            return pd.DataFrame(columns=RESULT_COLUMNS)
        return read_csv(self.results_path)

    def append_result(self, row: dict[str, str]) -> None:
        results = pd.concat([self.read_results(), formula_safe(pd.DataFrame([row], dtype=str))], ignore_index=True)
        columns = list(dict.fromkeys(RESULT_COLUMNS + list(results.columns)))
        try:
            atomic_write_text(self.results_path.resolve(),
                              to_csv_text(results.reindex(columns=columns, fill_value="").fillna("")))
        except DiskError as e:
            raise busy(self.results_path, e) or e

