"""Writing rows most suspicious first moves whole rows; no cell a person owns changes."""

import pandas as pd

from dcloop import table as tbl
from dcloop.backends.csv import CsvBackend
from dcloop.backends.memory import MemoryBackend

CSV = ('id,image,url,label,split,note,prediction,confidence,label_prob,suspicion,flags,reviewed\n'
       'a,,images/a.png,ii,train,"fine, I think",,,,,,ok\n'
       'b,,images/b.png,iii,val,"said ""iii""",,,,,,\n'
       'c,,images/c.png,v,train,,,,,,,\n')


def test_csv_write_in_order_moves_rows_and_keeps_human_cells_byte_for_byte(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(CSV)
    backend = CsvBackend(path, tmp_path / "results.csv")
    patch = pd.DataFrame({"id": ["a", "b", "c"], "suspicion": ["0.100", "0.900", "0.500"], "flags": ["", "x", ""]})
    assert backend.write(patch, order=["b", "c", "a"]) == 3
    lines = path.read_text().splitlines()
    assert lines[0] == CSV.splitlines()[0]
    assert [line.split(",")[0] for line in lines[1:]] == ["b", "c", "a"]
    assert lines[1].startswith('b,,images/b.png,iii,val,"said ""iii""",') and lines[3].endswith(",ok")
    assert backend.write(patch, order=["b", "c", "a"]) == 0  # same cells, same order: no write
    assert backend.write(patch) == 0


def test_reorder_puts_unnamed_rows_last_in_their_order():
    table = pd.DataFrame({"id": ["a", "b", "c", "d"]})
    assert list(tbl.reorder(table, ["c", "a"])["id"]) == ["c", "a", "b", "d"]
    memory = MemoryBackend(table.assign(url="u", label="", split="train"))
    memory.write(pd.DataFrame({"id": ["d"], "flags": ["x"]}), order=["d"])
    assert list(memory.read()["id"]) == ["d", "a", "b", "c"]
