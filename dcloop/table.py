"""The label table: its columns, who owns them, validation, versions and the write-back patch.

Everything here is pure: DataFrames of strings in, DataFrames, dicts and strings out.
Rows are always matched by ``id``, never by position, because people sort and filter their sheets.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import unicodedata
from dataclasses import dataclass, field

import pandas as pd

from .errors import RowDropError, SchemaError
from .fsutil import SAFE_NAME_CHARS, is_safe_name

# The results table: one row per training (kinds "full", "quick" and "fast") or re-evaluation ("reeval"), in this
# order; every backend holds it beside the label table. The documentation's reference page is made from these.
RESULT_COLUMN_DOCS = {
    "run_id": "the run's id; its checkpoint and predictions are under .dcloop/runs/<run_id>/",
    "time_utc": "when the row was written (UTC)",
    "label_version": "the label version trained on (for a re-evaluation: scored on)",
    "kind": "full (the recipe), quick (sync --quick, a tenth of the epochs), fast (sync --fast, the fast "
            "schedule: a third of the recipe's time) or reeval (dcloop reeval)",
    "rows_train": "labeled, readable, unflagged train rows trained on",
    "rows_val": "val rows scored",
    "rows_test": "test rows scored",
    "rows_unlabeled": "usable rows without a label (predicted, not trained on)",
    "rows_flagged": "rows that validation or image loading flagged and left out",
    "labels_changed": "rows whose url, label or split changed since the last training",
    "val_accuracy": "accuracy on the val rows (the first seed's model)",
    "test_accuracy": "accuracy on the test rows (the first seed's model)",
    "val_macro_f1": "macro-averaged F1 on the val rows",
    "test_macro_f1": "macro-averaged F1 on the test rows",
    "best_epoch": "the epoch whose weights were kept (best validation accuracy)",
    "epochs": "epochs trained",
    "preset": "the fixed model's preset",
    "model_fingerprint": "a hash of the recipe: scores compare only under the same fingerprint",
    "images_per_s": "training throughput",
    "duration_s": "the whole sync's wall time",
    # How people answered the previous run's flags (dcloop.review.realised_precision).
    "prev_flagged": "rows the previous run flagged",
    "prev_relabeled": "of those, rows whose label changed since",
    "prev_excluded": "of those, rows set to exclude or deleted",
    "prev_confirmed": "of those, rows marked reviewed = ok",
    "prev_precision": "(relabeled + excluded) / (relabeled + excluded + confirmed): the flags' realised precision",
    # The noise across seeds (dcloop.effect).
    "seeds": "trainings under seed, seed+1, ... (sync --seeds N)",
    "val_mean": "mean val accuracy over the seeds",
    "val_std": "sample standard deviation of val accuracy over the seeds (blank for one seed)",
    "test_mean": "mean test accuracy over the seeds",
    "test_std": "sample standard deviation of test accuracy over the seeds (blank for one seed)",
    # What the edits did, against the previous comparable run (dcloop.effect).
    "compared_run": "the previous run of the same kind and fingerprint, compared with (blank on the first)",
    "val_change": "this run's mean val accuracy minus the compared run's",
    "test_change": "this run's mean test accuracy minus the compared run's",
    "edits": "rows whose label changed since the compared run and that both runs predicted",
    "edits_model_agrees": "of those, how many the new model predicts as the new label",
    "edits_old_agreed": "of those, how many the compared run had already predicted as the new label",
    # Model vs expert (dcloop.agreement).
    "expert_label_n": "rows with an expert class and a class label",
    "expert_label_agree": "of those, rows where expert and label agree",
    "expert_label_accuracy": "expert_label_agree / expert_label_n",
    "expert_label_kappa": "Cohen's kappa of expert vs label",
    "expert_model_n": "rows with an expert class and a prediction",
    "expert_model_agree": "of those, rows where expert and model agree",
    "expert_model_accuracy": "expert_model_agree / expert_model_n",
    "expert_model_kappa": "Cohen's kappa of expert vs model",
    # Re-evaluations (dcloop.reeval); blank on trainings.
    "reeval_of": "the run whose stored model was scored again on this row's label version",
    "reeval_seen": "how many of the val/test rows it scored that model had trained on",
    # How the training ran (dcloop.model); not part of the recipe, so not in the fingerprint.
    "threads": "CPU threads the training used: N, or N>1 when [model] threads = 0 (auto) went on with one "
               "thread because the machine got busy (blank on a GPU and on re-evaluations)",
}
RESULT_COLUMNS = list(RESULT_COLUMN_DOCS)


# Every column a table may have: (owner, what it holds). The documentation's column reference is made from it.
COLUMN_DOCS = {
    "id": ("dcloop", "the row's key: letters, digits, - and _; write-back matches rows by id, never by position, "
                     "so sort and filter freely. Rows without one get one at the next sync"),
    "image": ("dcloop", "the image to look at: in labels.csv a file:// link to a PNG thumbnail a click opens "
                        "(under .dcloop/thumbs), in labels.xlsx the cached file with a picture in the cell, on a "
                        "Google Sheet an =IMAGE() thumbnail"),
    "url": ("you", "where the image is: a local path (relative to the project folder), file:// or http(s)://"),
    "label": ("you", "one of the classes, or blank for unlabeled (predicted, not trained on)"),
    "split": ("you", "train, val, test or exclude; blank becomes [table] default_split at the next sync"),
    "note": ("you", "anything you like; dcloop writes it only for rows it makes (dcloop augment) and reads that "
                    "mark back"),
    "reviewed": ("you (optional)", "ok when you checked the row and its label is right: lowers its suspicion "
                                   "until the label or image changes"),
    "expert": ("you (optional)", "a second opinion's class, compared with the label and the model"),
    "prediction": ("dcloop", "the model's class (out of sample for train rows)"),
    "confidence": ("dcloop", "the model's probability for its class"),
    "label_prob": ("dcloop", "the probability the model gives the current label"),
    "suspicion": ("dcloop", "0 to 1, higher = more likely a wrong label or an image that does not belong; blank "
                            "for a row left out of training (unreadable, unknown label or split), which sorts first"),
    "flags": ("dcloop", "short reasons, e.g. 'label? model says 7 (0.91)', 'not-a-class? far from every class, "
                        "an odd image (z 3.1)', 'unreadable: http 404', "
                        "'unknown-label:cat', 'blank-url', 'bad-id: ...' (every unreadable: reason is listed in "
                        "Run unattended, Crash safety)"),
}
COLUMNS = ["id", "image", "url", "label", "split", "note",
           "prediction", "confidence", "label_prob", "suspicion", "flags"]
HUMAN_COLUMNS = ["url", "label", "split", "note"]
# Known human-owned columns a table may have but need not: normalize() does not add them.
OPTIONAL_COLUMNS = ["reviewed", "expert"]
MACHINE_COLUMNS = ["id", "image", "prediction", "confidence", "label_prob", "suspicion", "flags"]
REQUIRED_COLUMNS = ["url", "label"]
SPLITS = ["train", "val", "test", "exclude"]
VERSIONED_COLUMNS = ["id", "url", "label", "split"]

# A patch row for a row that had no id carries this key, so the backend can find the row again.
NEW_ROW_KEY = "_new_row_key"
# A patch row that gives a row its id back (see repair_ids) carries the row's id now and its url.
ID_WAS = "_id_was"
HEADER_ROWS = 1  # the header line; row numbers in messages count it, as a spreadsheet does


def row_number(position: int) -> int:
    """The 1-based line of a data row in a CSV file or sheet with one header row."""
    return position + HEADER_ROWS + 1


def normalize(raw: pd.DataFrame, source: str, check_ids: bool = True) -> pd.DataFrame:
    """Check the required columns and (unless not ``check_ids``) duplicate ids; add the missing known
    columns as blanks."""
    # dcloop's columns by their stripped name; a person's own column names are left as they are
    header = [str(c).strip() if str(c).strip() in COLUMNS + OPTIONAL_COLUMNS else str(c) for c in raw.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise SchemaError(
            f"{source}: missing required column(s) {', '.join(missing)}; "
            f"the header is: {', '.join(header) or '(empty)'}. "
            f"A label table needs at least the columns url,label.")
    repeated = sorted({c for c in header if header.count(c) > 1 and c in COLUMNS + OPTIONAL_COLUMNS})
    if repeated:
        raise SchemaError(f"{source}: column(s) {', '.join(repeated)} appear more than once in the header.")
    table = raw.copy()
    table.columns = header
    table = table.fillna("").astype(str)
    for column in COLUMNS:
        if column not in table.columns:
            table[column] = ""
    if check_ids:
        check_unique_ids(table, source)
    return table.reset_index(drop=True)


def check_unique_ids(table: pd.DataFrame, source: str) -> None:
    """Raise SchemaError naming every id that appears on more than one row."""
    ids = table["id"].str.strip()
    taken = ids[ids != ""]
    dupes = taken[taken.duplicated(keep=False)]
    if dupes.empty:
        return
    where = [f"{i!r} on rows {', '.join(str(row_number(p)) for p in dupes.index[dupes == i])}"
             for i in sorted(set(dupes))]
    if any(as_number(i) is not None for i in dupes):
        advice = ("These ids look converted to numbers by a spreadsheet program. Import the id column as "
                  "text (LibreOffice: Text Import, column type Text; Excel: Data > From Text/CSV > Transform "
                  "Data, id as Text), or undo the save; dcloop gives back the ids it recognises by url.")
    else:
        advice = "Every row needs its own id: clear the id cell of copied rows and dcloop will assign new ones."
    raise SchemaError(f"{source}: duplicate id(s): {'; '.join(where[:10])}. {advice}")


def as_number(cell: str) -> float | None:
    """The number a spreadsheet program would read ``cell`` as, or None."""
    try:
        return float(cell.strip().replace(",", "")) if any(ch.isdigit() for ch in cell) else None
    except ValueError:
        return None


def shows_number(cell: str, original: str) -> bool:
    """Whether ``cell`` is how a spreadsheet program shows the id ``original`` after reading it as a number.

    '2741470e07' becomes '2.74E+13' (3 significant digits) or '27414700000000', '0589138133'
    becomes '589138133', and an id too large for a number becomes the largest one, 1.79769313486232E+308.
    """
    shown_value, value = as_number(cell), as_number(original)
    if shown_value is None or value is None or cell.strip() == original.strip():
        return False
    if not math.isfinite(value):
        return abs(shown_value) >= 1.797e308
    mantissa = re.split(r"[eE]", cell.strip())[0]
    digits = max(1, len(mantissa.replace(".", "").replace(",", "").lstrip("+-").lstrip("0")))
    return f"{value:.{digits - 1}e}" == f"{shown_value:.{digits - 1}e}"


def repair_ids(table: pd.DataFrame, known: pd.DataFrame | None) -> list[tuple[int, str, str]]:
    """Rows whose id a spreadsheet program changed, or a person cleared: (position, id now, known id).

    ``known`` is the last recorded version (id, url). A row whose id that version lacks gets back the
    id of a row the table lost if exactly one fits: its id read as a number shows as this cell, or
    else its url is this row's. Such a row is the same row, never a removed one plus an added one.
    """
    if known is None or known.empty:
        return []
    ids, urls = table["id"].str.strip(), table["url"].str.strip()
    lost = known[~known["id"].isin(set(ids.tolist()))]  # tolist: a str column iterates cell by cell
    if lost.empty:
        return []
    known_ids = set(known["id"].tolist())
    by_url = lost.groupby(lost["url"].str.strip())["id"].apply(list).to_dict()
    numeric = [i for i in lost["id"] if as_number(i) is not None]
    repairs, taken = [], set()
    for position in [p for p, i in enumerate(ids) if i not in known_ids]:
        cell = ids.iat[position]
        match = [k for k in numeric if k not in taken and shows_number(cell, k)] if as_number(cell) is not None else []
        if len(match) != 1:
            match = [k for k in by_url.get(urls.iat[position], []) if k not in taken]
        if len(match) == 1:
            repairs.append((position, cell, match[0]))
            taken.add(match[0])
    return repairs


def id_repairs_patch(table: pd.DataFrame, repairs: list[tuple[int, str, str]]) -> pd.DataFrame:
    """Patch rows that give each repaired row its id back, found by the id it has now and its url."""
    urls = table["url"].str.strip()
    return pd.DataFrame({ID_WAS: [f"{old}\x1f{urls.iat[p]}" for p, old, _ in repairs],
                         "id": [new for _, _, new in repairs]})


def new_row_keys(table: pd.DataFrame) -> pd.Series:
    """A key for each row without an id: its url and which repeat of that url it is among such rows."""
    blank = table["id"].str.strip() == ""
    urls = table.loc[blank, "url"].str.strip()
    occurrence = urls.groupby(urls).cumcount()
    return urls + "#" + occurrence.astype(str)


# New ids: 'x' and ten characters without e, i, l, o, u. No spreadsheet program's default import
# reads such a text as a number (no digit first, no e followed by digits), a date or time (no month
# name, separator or colon), a boolean, a percentage, a currency amount or a formula.
ID_PREFIX = "x"
ID_ALPHABET = "0123456789abcdfghjkmnpqrstvwxyz"


def new_id(key: str) -> str:
    """The id a row with this key gets: a hash of the key written in ID_ALPHABET after ID_PREFIX."""
    number = int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big")
    chars = []
    for _ in range(10):
        number, digit = divmod(number, len(ID_ALPHABET))
        chars.append(ID_ALPHABET[digit])
    return ID_PREFIX + "".join(chars)


def assign_ids(table: pd.DataFrame) -> dict[str, str]:
    """Deterministic ids for the rows that have none: {new-row key: id}."""
    keys = new_row_keys(table)
    taken = set(table["id"].str.strip().tolist()) - {""}
    assigned = {}
    for key in keys:
        base = new_id(key)
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}-{n}"
        taken.add(candidate)
        assigned[key] = candidate
    return assigned


def with_ids(table: pd.DataFrame, ids: dict[str, str], default_split: str) -> pd.DataFrame:
    """The table with new rows given their ids and a split where they had none."""
    out = table.copy()
    keys = new_row_keys(out)
    out.loc[keys.index, "id"] = keys.map(ids)
    blank_split = out["split"].str.strip() == ""
    out.loc[keys.index.intersection(out.index[blank_split]), "split"] = default_split
    out["id"] = out["id"].str.strip()
    return out


def with_assigned_ids(table: pd.DataFrame, default_split: str) -> pd.DataFrame:
    """The table as sync would record it: rows without an id get the id sync will give them."""
    return with_ids(table, assign_ids(table), default_split)


BAD_ID_FLAG = (f"bad-id: an id is {SAFE_NAME_CHARS}; clear the id cell and the next sync gives the row "
               f"a new one")


def canonical_label(cell: str) -> str:
    """A label cell as it is compared with the classes: NFC, invisible characters removed, stripped.

    'i' typed on one keyboard and 'i' followed by a zero-width space pasted from a web page are one
    class; so are a precomposed and a decomposed accented letter.
    """
    text = unicodedata.normalize("NFC", str(cell))
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf").strip()


def canonical_labels(labels: pd.Series, classes: list[str]) -> pd.Series:
    """Each label cell in its canonical form where that names a class; other cells as they are."""
    canonical = labels.map(canonical_label)
    return canonical.where(canonical.isin(classes), labels)


def label_key(cell: str) -> str:
    """A label as a suggestion is looked up: canonical, compatibility forms folded, case folded.

    Only for "did you mean": labels stay case-sensitive, so 'IV' never trains as 'iv'.
    """
    return canonical_label(unicodedata.normalize("NFKC", canonical_label(cell))).casefold()


def suggested_class(label: str, classes: list[str]) -> str:
    """The one class ``label`` differs from only in case or form ('' for none, or for more than one)."""
    matches = [c for c in classes if label_key(c) == label_key(label)]
    return matches[0] if len(matches) == 1 else ""


def unknown_label_flag(label: str, classes: list[str]) -> str:
    """'unknown-label:IV (did you mean 'iv'?)': the value as shown, and the class it nearly is."""
    near = suggested_class(label, classes)
    return f"unknown-label:{shown(label)}" + (f" (did you mean {shown(near)!r}?)" if near else "")


def shown(text: str) -> str:
    """Text from the table as it may appear in a message or flag: printable, code points of the rest.

    'cat' stays 'cat'; an 'i' followed by a zero-width space becomes 'i? (U+0069 U+200B)', so two
    labels that look equal can be told apart.
    """
    if text.isascii() and text.isprintable():
        return text
    points = " ".join(f"U+{ord(ch):04X}" for ch in text[:16]) + (" ..." if len(text) > 16 else "")
    visible = "".join(ch if ch.isprintable() and unicodedata.category(ch) != "Cf" else "?" for ch in text[:40])
    return f"{visible} ({points})"


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def class_name_problem(name: str) -> str:
    """Why ``name`` cannot be a class ('' when it can): it becomes a folder name and a cell dcloop writes."""
    if not name or name != name.strip():
        return "blank, or with spaces around it"
    if name in (".", "..") or any(ch in name for ch in "/\\\x00"):
        return "not a plain folder name ('.', '..', '/', '\\' and NUL are refused)"
    if not name.isprintable() or canonical_label(name) != name:
        return f"has invisible or control characters or is not in Unicode NFC form: {shown(name)}"
    if formula_safe(name) != name:
        return "starts with =, +, -, @ and is not a number (a spreadsheet program would run it as a formula)"
    return ""


def check_class_names(classes: list[str], source: str) -> None:
    """Raise SchemaError naming every class name that cannot be used."""
    bad = [f"{shown(c)!r}: {why}" for c in classes if (why := class_name_problem(c))]
    if bad:
        raise SchemaError(f"{source}: class name(s) refused: {'; '.join(bad)}.")


def formula_safe(cell: str) -> str:
    """A cell dcloop writes into a CSV file, neutralized the way OWASP advises for CSV injection.

    A spreadsheet program runs a cell that starts with =, +, -, @, tab or CR as a formula; a leading
    apostrophe makes it text. Plain numbers, negative ones included, are left alone.
    """
    cell = str(cell)
    if cell.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


@dataclass(frozen=True)
class RowDrop:
    """How many known rows a read of the table may lack before dcloop refuses it.

    A person deletes a few rows; a file caught half-saved, or the wrong file, lacks many. Past the
    limit nothing is written, and the message says how many went missing and how to accept it.
    """

    share: float = 0.05
    rows: int = 20

    def allowed(self, known: int) -> int:
        return max(self.rows, math.ceil(self.share * known))

    def check(self, known: int, missing: int, source: str, accept: str = "") -> None:
        """Raise RowDropError when ``missing`` of ``known`` rows is more than allowed."""
        if missing > self.allowed(known):
            raise RowDropError(
                f"{source}: {missing} of the {known} rows dcloop knew are missing, more than the "
                f"{self.allowed(known)} that [table] max_row_drop_share and max_row_drop_rows allow. "
                f"Nothing was written. {accept or 'The file was probably caught while a program was saving it: sync again.'}")


@dataclass
class Validated:
    """A table ready for the pipeline: every row has an id, and every problem row a flag.

    Cleaned once, here: ``table``'s url, label and split cells are stripped, labels canonical where
    they name a class (canonical_label) and splits lower case, so no later stage cleans them again.
    """

    table: pd.DataFrame
    classes: list[str]
    flags: dict[str, list[str]] = field(default_factory=dict)

    @property
    def label(self) -> pd.Series:
        return self.table["label"]

    @property
    def split(self) -> pd.Series:
        return self.table["split"]

    @property
    def code(self) -> pd.Series:
        """Each row's class index; -1 for a blank or unknown label."""
        return self.table["label"].map({c: k for k, c in enumerate(self.classes)}).fillna(-1).astype(int)

    def usable(self) -> pd.Series:
        """Rows that validation did not flag."""
        return ~self.table["id"].isin(self.flags)

    def trainable(self, split: str) -> pd.Series:
        """Labeled, unflagged rows of one split."""
        return self.usable() & (self.split == split) & (self.label != "")

    def flag(self, row_id: str, reason: str) -> None:
        self.flags.setdefault(row_id, []).append(reason)


def validate(table: pd.DataFrame, classes: list[str]) -> Validated:
    """Flag the rows that cannot be used: an id dcloop cannot use, blank url, unknown label, unknown split.

    The table comes back with canonical labels (canonical_label) where they name a class, so every
    later stage compares them as they are.
    """
    table = table.copy()
    table["label"] = canonical_labels(table["label"], classes).str.strip()
    table["split"] = table["split"].str.strip().str.lower()
    table["url"] = table["url"].str.strip()
    result = Validated(table=table, classes=list(classes))
    known = set(classes)
    columns = (table["id"], table["url"], result.label, result.split)
    # tolist: pandas' str columns iterate one cell at a time, 100 times slower than a list
    for row_id, url, label, split in zip(*(column.tolist() for column in columns)):
        if not is_safe_name(row_id):
            result.flag(row_id, BAD_ID_FLAG)
        if not url:
            result.flag(row_id, "blank-url")
        if label and label not in known:
            result.flag(row_id, unknown_label_flag(label, classes))
        if split not in SPLITS:
            result.flag(row_id, f"unknown-split:{shown(split) or 'blank'}")
    return result


def versioned_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The columns a label version is made of, stripped and sorted by id."""
    rows = table[VERSIONED_COLUMNS].apply(lambda s: s.str.strip())
    rows["split"] = rows["split"].str.lower()
    return rows.sort_values("id", kind="stable").reset_index(drop=True)


def label_version(table: pd.DataFrame) -> str:
    """A content address for the labels and splits: same rows, same version."""
    rows = versioned_rows(table)
    # Every row's cells joined by \x1f and ended by \x1e, hashed as one text.
    text = "".join("\x1f".join(cells) + "\x1e" for cells in zip(*(rows[c].tolist() for c in VERSIONED_COLUMNS)))
    digest = hashlib.sha256(text.encode())
    return digest.hexdigest()[:12]


DIFF_COLUMNS = ["id", "change"] + [f"{c}_{w}" for c in ("url", "label", "split") for w in ("before", "after")]


def no_changes() -> pd.DataFrame:
    """What diff gives for two equal tables, without comparing them (a no-change sync has 10,000 rows)."""
    return pd.DataFrame({column: pd.Series(dtype=object) for column in DIFF_COLUMNS})


def diff(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Rows added, removed, or whose url, label or split changed, one line per row."""
    joined = versioned_rows(before).merge(versioned_rows(after), on="id", how="outer",
                                          suffixes=("_before", "_after"), indicator=True)
    compared = [f"{c}_{w}" for c in ("url", "label", "split") for w in ("before", "after")]
    joined[compared] = joined[compared].fillna("")
    changed = joined["_merge"] != "both"
    for column in ("url", "label", "split"):
        changed |= joined[f"{column}_before"] != joined[f"{column}_after"]
    out = joined[changed].copy()
    out["change"] = out["_merge"].map({"both": "changed", "left_only": "removed", "right_only": "added"}).astype(str)
    return out[DIFF_COLUMNS].reset_index(drop=True)


def apply_patch(current: pd.DataFrame, patch: pd.DataFrame) -> pd.DataFrame:
    """Write dcloop's columns of ``patch`` into ``current`` by id; human columns are never touched.

    Rows of ``current`` without an id are found through the patch's NEW_ROW_KEY (url and
    repeat number) and get their id; ``split`` is written only where the cell is blank.
    Rows missing from the patch, and rows the patch names but ``current`` lost, are left alone.
    Applying the same patch twice gives the same table as applying it once.
    """
    out = current.copy()
    for column in MACHINE_COLUMNS:
        if column not in out.columns:
            out[column] = ""
    if ID_WAS in patch.columns:
        renamed = patch[patch[ID_WAS].fillna("") != ""].set_index(ID_WAS)["id"]
        keys = out["id"].str.strip() + "\x1f" + out["url"].str.strip()
        found = keys[keys.isin(renamed.index)]
        out.loc[found.index, "id"] = found.map(renamed)
    if NEW_ROW_KEY in patch.columns:
        keyed = patch[patch[NEW_ROW_KEY].fillna("") != ""].set_index(NEW_ROW_KEY)["id"]
        keys = new_row_keys(out)
        found = keys[keys.isin(keyed.index)]
        out.loc[found.index, "id"] = found.map(keyed)
    by_id = patch.drop(columns=[NEW_ROW_KEY, ID_WAS], errors="ignore").set_index("id")
    ids = out["id"].str.strip()
    rows = ids[ids.isin(by_id.index)]
    for column in by_id.columns:
        values = rows.map(by_id[column])
        if column == "split":
            blank = out.loc[rows.index, "split"].str.strip() == ""
            values = values[blank]
        elif column not in MACHINE_COLUMNS:
            continue
        out.loc[values.index, column] = values.astype(str)
    return out


def apply_restore(current: pd.DataFrame, snapshot: pd.DataFrame) -> pd.DataFrame:
    """Set label and split by id to those of a recorded version: only `dcloop restore` writes these.

    Rows of the version that the table lost are added back at the end (id, url, label, split);
    rows added since, and every other column, are left as they are. Applying twice equals once.
    """
    out = current.copy()
    recorded = versioned_rows(snapshot).set_index("id")
    ids = out["id"].str.strip()
    present = ids[ids.isin(recorded.index)]
    for column in ("label", "split"):
        out.loc[present.index, column] = present.map(recorded[column])
    lost = recorded.loc[~recorded.index.isin(ids)].reset_index()
    if lost.empty:
        return out
    added = pd.DataFrame("", index=range(len(lost)), columns=out.columns)
    added[VERSIONED_COLUMNS] = lost[VERSIONED_COLUMNS].to_numpy()
    return pd.concat([out, added], ignore_index=True)


def apply_split_moves(current: pd.DataFrame, moves: pd.DataFrame) -> pd.DataFrame:
    """Set ``split`` by id to ``moves.to`` where the cell still says ``moves.from``; nothing else changes.

    The one write of a human column besides restore: `dcloop split --rebalance --apply`, which a
    person asks for. A row whose split was edited since the plan keeps the person's value.
    """
    out = current.copy()
    plan = moves.drop_duplicates("id", keep="last").set_index("id")
    ids = out["id"].str.strip()
    rows = ids[ids.isin(plan.index)]
    still = out.loc[rows.index, "split"].str.strip().str.lower() == rows.map(plan["from"]).str.lower()
    out.loc[still.index[still], "split"] = rows[still].map(plan["to"])
    return out


DECIDED_COLUMNS = ["label", "split", "reviewed"]  # the cells a review decision may set


def decision_cell(column: str, cell) -> str:
    """A label, split or reviewed cell as decisions compare it: canonical label, lower-case split and mark."""
    text = canonical_label(cell)
    return text if column == "label" else text.lower()


def apply_decisions(current: pd.DataFrame, decisions: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Set label, split and reviewed by id as a review decided; return the table and, for each decision
    refused, {its index in ``decisions``: why}.

    ``decisions`` has id, the three target cells and ``was_label``, ``was_split``, ``was_reviewed``:
    what the reviewer saw. A decision whose row now holds other values (someone edited it since),
    or that the table lost, is refused whole; the others set only the cells they change, in order,
    so a later decision on the same row (an undo) sees the earlier one. No other cell changes; a
    ``reviewed`` column is added when a decision needs one. Applying twice equals once.
    """
    out = current.copy()
    if "reviewed" not in out.columns and (decisions["reviewed"].str.strip() != "").any():
        out["reviewed"] = ""
    position = {row_id: n for n, row_id in enumerate(out["id"].str.strip())}
    columns = [c for c in DECIDED_COLUMNS if c in out.columns]
    refused = {}
    for key, d in zip(decisions.index, decisions.to_dict("records")):
        n = position.get(d["id"])
        if n is None:
            refused[key] = "the row is not in the table any more"
            continue
        now = {c: out[c].iat[n] if c in out.columns else "" for c in DECIDED_COLUMNS}
        edited = [c for c in DECIDED_COLUMNS if decision_cell(c, now[c]) != decision_cell(c, d[f"was_{c}"])]
        if edited:
            refused[key] = "edited in the table since the page loaded it: " + ", ".join(
                f"{c} {shown(d[f'was_{c}'])!r} is now {shown(now[c])!r}" for c in edited)
            continue
        for c in columns:
            if decision_cell(c, d[c]) != decision_cell(c, now[c]):
                out.iloc[n, out.columns.get_loc(c)] = d[c]
    return out, refused


def rows_changed(before: pd.DataFrame, after: pd.DataFrame) -> int:
    """Rows of ``before`` with a different cell in ``after`` (same order; a column only one has counts
    as blank in the other), plus rows added at the end."""
    columns = list(dict.fromkeys([*before.columns, *after.columns]))
    common = after.iloc[:len(before)].reindex(columns=columns, fill_value="")
    old = before.reindex(columns=columns, fill_value="")
    return int((common.to_numpy() != old.to_numpy()).any(axis=1).sum()) + max(0, len(after) - len(before))


def reorder(table: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """The same rows, those named in ``order`` first and in that order, the rest after as they were."""
    rank = {row_id: n for n, row_id in enumerate(order)}
    key = table["id"].str.strip().map(rank).fillna(len(order))
    return table.iloc[key.argsort(kind="stable")].reset_index(drop=True)


# --- rows made by `dcloop augment` ---------------------------------------------------

AUGMENTED_NOTE = "augmented from "  # the note of a made row: "augmented from <source id>: <transform>"
AUGMENTED_FLAG = "augmented"


def is_augmented(note: str) -> bool:
    """Whether a note is the one ``dcloop augment`` writes."""
    return str(note).strip().startswith(AUGMENTED_NOTE)


def augmented_source(note: str) -> str:
    """The source row id in an augment note ('' for any other note)."""
    if not is_augmented(note):
        return ""
    return str(note).strip()[len(AUGMENTED_NOTE):].split(":", 1)[0].strip()


def append_rows(current: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``current`` with ``rows`` added at the end; rows whose id it already has are skipped (twice = once).

    Columns ``current`` lacks are dropped, ones ``rows`` lacks are left blank; no existing cell changes.
    """
    known = set(current["id"].str.strip()) if "id" in current else set()
    fresh = rows[~rows["id"].isin(known)].reindex(columns=current.columns, fill_value="").fillna("").astype(str)
    return pd.concat([current, fresh], ignore_index=True) if len(fresh) else current


# --- what the flags column says, counted and ranked for a summary ---

LEFT_OUT_KINDS = ("bad-id", "blank-url", "unknown-label", "unknown-split", "unreadable")


FLAG_KIND_END = re.compile(r"[:\s(]")


def flag_kind(flag: str) -> str:
    """'unreadable: http 404' -> 'unreadable', 'unknown-label:cat' -> 'unknown-label', 'label? ...' -> 'label?'."""
    return FLAG_KIND_END.split(flag.strip(), maxsplit=1)[0]


@functools.lru_cache(maxsize=2**16)  # a sync's summary reads every row's cell twice (counts, then the top rows)
def kinds_in(cell) -> frozenset[str]:
    """The kinds of the flags in one flags cell: 'label? model says 7 (0.91); outlier' -> {'label?', 'outlier'}."""
    return frozenset(flag_kind(f) for f in str(cell).split(";") if f.strip())


def flag_counts(flags: pd.Series) -> dict[str, int]:
    """Rows per kind of flag in a flags column, most common first; the augmented mark is no finding."""
    counts: dict[str, int] = {}
    for cell in flags.tolist():
        for kind in kinds_in(cell) - {AUGMENTED_FLAG}:
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def ranked(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` rows most in need of a look, in the order sync writes them: rows left out of
    training first, then by suspicion."""
    left_out = table["flags"].map(lambda cell: bool(kinds_in(cell) & set(LEFT_OUT_KINDS)))
    key = pd.to_numeric(table["suspicion"], errors="coerce").fillna(-1.0).where(~left_out, 2.0)
    found = table[(key >= 0) & ((table["flags"] != "") | left_out | (key > 0))]
    return found.iloc[(-key[found.index]).argsort(kind="stable")].head(n)

