"""labels.csv as spreadsheet programs save it: separators, byte-order marks, line ends, quoting and
header cells are written back as found; half-saved files, mass row drops, symbolic links and files
another program holds never cost a person's work."""

from __future__ import annotations

import json
import os
import threading
import time

import pandas as pd
import pytest
from click.testing import CliRunner

from dcloop import table as tbl
from dcloop.backends.csv import CsvBackend, parse_csv, read_csv, read_csv_file, render_csv
from dcloop.cli import cli
from dcloop.errors import RowDropError
from dcloop.history import History
from dcloop.pull import pull

from .test_hostile_table import ONE_THREAD, humans


def old(path):
    """Give a file an mtime a minute ago, as a file saved earlier has."""
    past = time.time() - 60
    os.utime(path, (past, past))


def labels_file(tmp_path, text: str, encoding="utf-8"):
    path = tmp_path / "labels.csv"
    path.write_bytes(text.encode(encoding))
    old(path)
    return CsvBackend(path, tmp_path / "results.csv"), path


EXCEL_SEMICOLON = ('\ufeff"id";"url";"label";"note";"prediction"\r\n'
                   '"a";"x/1.png";"cat";"Grüße; und so";""\r\n'
                   '"b";"x/2.png";"dog";"";""\r\n')


def test_a_semicolon_bom_crlf_quoted_file_is_written_back_as_found(tmp_path):
    backend, path = labels_file(tmp_path, EXCEL_SEMICOLON)
    table = backend.read()
    assert list(table["note"]) == ["Grüße; und so", ""] and list(table["label"]) == ["cat", "dog"]
    assert backend.write(pd.DataFrame({"id": ["a", "b"], "prediction": ["dog", "dog"]})) == 2
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf\"id\";\"url\";\"label\";\"note\";\"prediction\"")
    assert data.count(b"\r\n") == 3 and b"\n" not in data.replace(b"\r\n", b"")
    assert '"a";"x/1.png";"cat";"Grüße; und so";"dog"' in data.decode("utf-8-sig")


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_the_separator_is_found_from_the_header(tmp_path, delimiter):
    text = delimiter.join(["id", "url", "label", "split"]) + "\n" + delimiter.join(["a", "p,q;r.png", "cat", "train"])
    frame, fmt = parse_csv(text.replace("p,q;r.png", '"p,q;r.png"').encode() + b"\n", "t.csv")
    assert fmt.delimiter == delimiter and frame.loc[0, "url"] == "p,q;r.png" and frame.loc[0, "split"] == "train"


def test_a_persons_header_cells_come_back_verbatim(tmp_path):
    header = "id,url,label, padded  ,reviewer,reviewer,,note"
    backend, path = labels_file(tmp_path, header + "\na,x.png,cat,1,ann,bob,z,hi\n")
    table = tbl.normalize(backend.read(), "labels.csv")
    assert {" padded  ", "reviewer", "reviewer (column 6)", "column (column 7)"} <= set(table.columns)
    backend.write(pd.DataFrame({"id": ["a"], "prediction": ["cat"]}))
    written = path.read_text().splitlines()
    assert written[0].startswith(header + ",")  # dcloop's missing columns are added after the person's
    assert written[1].startswith("a,x.png,cat,1,ann,bob,z,hi,")


def test_a_file_caught_half_saved_is_read_once_it_is_whole(tmp_path):
    rows = "".join(f"r{n},x/{n}.png,cat,train\n" for n in range(36))
    path = tmp_path / "labels.csv"
    whole = ("id,url,label,split\n" + rows).encode()
    cut = whole.index(b"\n", len(whole) // 2) - 3
    path.write_bytes(whole[:cut])  # cut mid-line, as a buffered write leaves it, modified just now

    def finish():
        time.sleep(0.6)
        with open(path, "r+b") as f:  # saved in place, not by rename
            f.write(whole)

    writer = threading.Thread(target=finish)
    writer.start()
    frame, _ = read_csv_file(path)
    writer.join()
    assert len(frame) == 36


def test_a_file_saved_in_place_line_by_line_is_read_once_it_holds_still(tmp_path):
    path = tmp_path / "labels.csv"
    lines = [b"id,url,label,split\n"] + [f"r{n},x/{n}.png,cat,train\n".encode() for n in range(36)]
    path.write_bytes(b"".join(lines[:10]))

    def finish():
        with open(path, "ab") as f:
            for line in lines[10:]:
                time.sleep(0.02)
                f.write(line)
                f.flush()

    writer = threading.Thread(target=finish)
    writer.start()
    frame, _ = read_csv_file(path)
    writer.join()
    assert len(frame) == 36


def test_a_write_back_refuses_a_reread_that_lost_most_rows(tmp_path):
    backend, path = labels_file(tmp_path, "id,url,label\n" + "".join(f"r{n},x.png,cat\n" for n in range(10)))
    before = path.read_bytes()
    patch = pd.DataFrame({"id": [f"r{n}" for n in range(36)], "prediction": ["cat"] * 36})
    with pytest.raises(RowDropError, match=r"labels.csv \(re-read before writing\): 26 of the 36 rows dcloop knew "
                                            r"are missing, more than the 20 .* Nothing was written"):
        backend.write(patch)
    assert path.read_bytes() == before


def test_a_sync_refuses_a_table_that_lost_many_rows_until_accepted(make_project, config_of):
    root = make_project(None)
    table = read_csv(root / "labels.csv")
    History(root / ".dcloop").record(tbl.normalize(table, "labels.csv"), "2026-12-01T00:00:00Z")
    table.iloc[:40].to_csv(root / "labels.csv", index=False)
    old(root / "labels.csv")
    result = CliRunner().invoke(cli, ["sync", str(root)])
    assert result.exit_code == 1
    assert result.output == ("Error: labels.csv: 50 of the 90 rows dcloop knew are missing, more than the 20 that "
                             "[table] max_row_drop_share and max_row_drop_rows allow. Nothing was written. If the rows "
                             "were deleted on purpose, run: dcloop sync --accept-row-drop\n")
    config, known = config_of(root), History(root / ".dcloop").snapshot(History(root / ".dcloop").head())
    backend = CsvBackend(root / "labels.csv", root / "results.csv")
    assert len(pull(backend, config, known, accept_row_drop=True)) == 40
    assert len(pull(backend, config, known.iloc[:59])) == 40  # 19 gone: allowed


def test_a_symbolic_link_stays_a_link_and_its_target_is_written(tmp_path):
    shared = tmp_path / "synced"
    shared.mkdir()
    target = shared / "labels.csv"
    target.write_text("id,url,label\na,x.png,cat\n")
    old(target)
    (tmp_path / "proj").mkdir()
    link = tmp_path / "proj" / "labels.csv"
    link.symlink_to(target)
    backend = CsvBackend(link, tmp_path / "proj" / "results.csv")
    assert backend.write(pd.DataFrame({"id": ["a"], "prediction": ["dog"]})) == 1
    assert link.is_symlink() and read_csv(target).loc[0, "prediction"] == "dog"
    assert [p.name for p in shared.iterdir()] == ["labels.csv"]


@pytest.mark.training
def test_a_file_another_program_holds_keeps_the_run_for_the_next_sync(make_project, monkeypatch):
    import dcloop.fsutil as fsutil

    root = make_project(None, ONE_THREAD)
    real_replace = os.replace

    def excel_holds_labels(src, dst):
        if str(dst) == str(root / "labels.csv"):
            raise PermissionError(13, "Permission denied")
        return real_replace(src, dst)

    monkeypatch.setattr(fsutil.os, "replace", excel_holds_labels)
    before = read_csv(root / "labels.csv")
    result = CliRunner().invoke(cli, ["sync", str(root)])
    assert result.exit_code == 1
    assert "Error: labels.csv is open in another program or cannot be replaced (Permission denied): close it and " \
           "run dcloop sync again. Nothing in it was changed. The model trained (run " in result.output
    assert read_csv(root / "labels.csv").equals(before)
    last = json.loads((root / ".dcloop/last_trained.json").read_text())
    assert last["unwritten"] is True

    monkeypatch.setattr(fsutil.os, "replace", real_replace)
    result = CliRunner().invoke(cli, ["sync", str(root)])
    assert result.exit_code == 0 and result.stdout.startswith(f"Nothing changed since run {last['run_id']}")
    assert f"wrote run {last['run_id']}'s predictions, which the last sync could not write" in result.stderr
    after = read_csv(root / "labels.csv")
    assert (after["prediction"] != "").all()
    assert humans(after).equals(humans(before))
    assert "unwritten" not in json.loads((root / ".dcloop/last_trained.json").read_text())


def test_render_then_parse_is_the_identity_for_every_format():
    frame = pd.DataFrame({"id": ["a", "b"], "url": ['q"uote.png', "line\nbreak.png"], "label": ["x;y", "z,w"]})
    for delimiter in (",", ";", "\t"):
        for newline in ("\n", "\r\n"):
            for bom in (False, True):
                fmt = parse_csv(render_csv(frame), "t")[1].__class__(delimiter, newline, bom, False, ())
                back, found = parse_csv(render_csv(frame, fmt), "t")
                assert back.equals(frame) and (found.delimiter, found.newline, found.bom) == (delimiter, newline, bom)
