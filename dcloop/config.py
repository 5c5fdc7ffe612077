"""The project's configuration: dcloop.toml, DCLOOP_* variables and flags, resolved in one place.

Precedence: a flag > a DCLOOP_<SECTION>_<FIELD> variable > dcloop.toml > the default here.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .names import CONFIG_FILE, FAST_SCHEDULE, STATE_DIR, fast_schedule_text  # noqa: F401 - re-exported
from .table import RowDrop, class_name_problem, shown


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectSection(Section):
    """What the project is: its classes and the cap on train+val rows."""

    classes: list[str] = Field(default_factory=list, description="the class names, in order; labels must be one of "
                               "these (init fills them in from the labels found or --classes)")
    cap: int = Field(10_000, ge=1, description="most rows allowed in train+val")

    @field_validator("classes")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        v = [c.strip() for c in v]
        if any(not c for c in v) or len(set(v)) != len(v):
            raise ValueError("classes must be distinct, non-blank names")
        bad = [f"{shown(c)!r}: {why}" for c in v if (why := class_name_problem(c))]
        if bad:
            raise ValueError(f"class name(s) refused: {'; '.join(bad)}")
        return v


class TableSection(Section):
    """Where the label table and the results live."""

    backend: Literal["csv", "xlsx", "gsheet"] = Field("csv", description="csv: labels.csv in the project folder; "
                                                      "xlsx: labels.xlsx, an Excel workbook with pictures; gsheet: "
                                                      "a Google Sheet")
    path: str = Field("labels.csv", description="the label table's file, relative to the project folder (csv, "
                      "xlsx; init makes it labels.xlsx for xlsx)")
    results: str = Field("results.csv", description="the results table's file, relative to the project folder (csv)")
    default_split: Literal["train", "val", "test", "exclude"] = Field(
        "train", description="the split a row with a blank split gets at the next sync")
    sheet: str = Field("", description="the Google Sheet: its url or key (gsheet)")
    credentials: str = Field("", description="the service-account JSON key (gsheet); blank: "
                             "GOOGLE_APPLICATION_CREDENTIALS, then gspread's default place")
    endpoint: str = Field("", description="Sheets API base URL override (tests and emulators)")
    max_row_drop_share: float = Field(0.05, ge=0, description="a read that lacks more known rows than this share "
                                      "(or max_row_drop_rows, whichever is larger) is refused")
    max_row_drop_rows: int = Field(20, ge=0, description="see max_row_drop_share")

    def row_drop(self) -> RowDrop:
        return RowDrop(self.max_row_drop_share, self.max_row_drop_rows)
    connect_timeout_s: float = Field(10.0, gt=0, description="seconds to connect to Google, per request")
    read_timeout_s: float = Field(60.0, gt=0, description="seconds to wait for Google's answer, per request: a "
                                  "request that is never answered is retried, then the sync stops with an error")


    @model_validator(mode="after")
    def path_follows_backend(self):
        """backend = "xlsx" without a path means labels.xlsx (one workbook holds results and classes too)."""
        if self.backend == "xlsx" and "path" not in self.model_fields_set:
            self.path = "labels.xlsx"
        return self


class ModelSection(Section):
    """The fixed model and its training recipe; every key but device, threads and seeds is in the fingerprint."""

    preset: str = Field("dcai2021", description="the fixed model: dcai2021 is the competition's ResNet-50 cut "
                        "after its first stage, from scratch")
    epochs: int = Field(100, ge=1, description="training epochs; the weights of the best validation epoch are kept")
    batch_size: int = Field(8, ge=1, description="images per optimizer step")
    image_size: int = Field(32, ge=8, le=512, description="images are resized to image_size x image_size pixels; at "
                            "most 512: the decoded-image cache holds 3*size*size bytes per image in memory (512: "
                            "768 KiB each, 7.5 GiB for 10,000 images), and the fixed model's recipes are for small images")
    seed: int = Field(123, description="the seed of weights and batch order: same data and seed, same model")
    learning_rate: float = Field(1e-4, gt=0, description="Adam's learning rate")
    device: str = Field("auto", description="auto (a CUDA GPU when torch sees one), cpu or cuda")
    threads: int = Field(0, ge=-1, description="CPU threads for training: N (the same N, seed and data give the "
                         "same weights), or 0 auto: the faster of 1 and all cores, timed at the start, going on "
                         "with 1 thread if steps get slower than 1 thread was (another process took the cores); "
                         "the results row's threads column says which; -1 is the same as 0. With 0 or 1, a "
                         "sync's several networks (seeds, cross-fitting) train at once as processes of 1 thread "
                         "each, one per core; 2 or more keeps them one after another in one process")
    seeds: int = Field(1, ge=1, description="trainings per sync, under seed, seed+1, ...: their spread shows the noise")

    def fingerprint(self) -> str:
        """Identifies the fixed model: scores are comparable only under the same fingerprint.

        ``seeds`` is left out: more seeds measure the same recipe's noise, they do not change it.
        """
        recipe = self.model_dump(exclude={"device", "threads", "seeds"})
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]


class SuspicionSection(Section):
    """How every row's suspicion and flags are computed."""

    folds: int = Field(5, ge=2, description="folds for out-of-sample probabilities of training rows")
    low_label_prob: float = Field(0.2, ge=0, le=1, description="a label the model gives less than this "
                                  "probability, while it prefers another class, is flagged label?")
    crossfit: int = Field(2, ge=0, description="K >= 2: also train networks on the other folds of the train rows, "
                          "so every labeled row is judged by networks that never saw it, train and val on one "
                          "scale; 0 or 1: off, one network")
    crossfit_repeats: int = Field(8, ge=1, description="with crossfit = K: split the train rows into K folds this "
                                  "many times, each with its own seed (K x repeats networks); each train row is "
                                  "judged by this many networks and their mean")
    crossfit_epoch_share: float = Field(0.05, gt=0, le=1, description="each cross-fitting network trains this "
                                        "share of [model] epochs, but at least 600 steps (fewer repeats then, "
                                        "never a costlier set): several short networks judge labels better than "
                                        "one long one (docs: explanation/suspicion)")
    sort: bool = Field(True, description="write the table's rows most suspicious first (labels.csv; a Google "
                                         "Sheet keeps its order and has the filter view 'most suspicious first')")


class ImagesSection(Section):
    """How images are fetched."""

    timeout_s: float = Field(15.0, gt=0, description="seconds to connect and to wait for data, per http image")
    attempts: int = Field(3, ge=1, description="tries per http image before it is flagged unreadable")
    local_paths: Literal["auto", "roots", "any"] = Field(
        "auto", description="which local paths a url may name: roots = only inside the project folder and "
        "local_roots; any; auto = roots for a Google Sheet, any for a CSV file")
    local_roots: list[str] = Field(default_factory=list, description="more folders local urls may read from "
                                   "(relative ones from the project folder); init records the folder it read")
    private_hosts: Literal["auto", "refuse", "allow"] = Field(
        "auto", description="http urls whose host resolves to a loopback, private or link-local address: "
        "auto = refuse for a Google Sheet, allow for a CSV file")
    revalidate_days: float = Field(7.0, ge=0, description="ask the server again whether an http image changed "
                                   "once its copy is this old (0: only with sync --refetch)")

    def local_paths_anywhere(self, backend: str) -> bool:
        """Whether a local url may name any path: a shared sheet's editors may not read the server's files."""
        return self.local_paths == "any" or (self.local_paths == "auto" and backend != "gsheet")

    def private_hosts_allowed(self, backend: str) -> bool:
        return self.private_hosts == "allow" or (self.private_hosts == "auto" and backend != "gsheet")


class SyncSection(Section):
    max_minutes: float = Field(180, gt=0, description="a sync running longer stops at its next safe point "
                               "(exit 4), and a lock held longer by a sync is reported as overrun (exit 5)")


class ReportSection(Section):
    """The HTML report written after each training."""

    map: Literal["umap", "pca"] = Field("umap", description="the embedding map: umap (separates the classes; "
                                        "its first map in a process compiles for 20-40 s) or pca (instant)")


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project: ProjectSection = Field(default_factory=ProjectSection)
    table: TableSection = Field(default_factory=TableSection)
    model: ModelSection = Field(default_factory=ModelSection)
    suspicion: SuspicionSection = Field(default_factory=SuspicionSection)
    images: ImagesSection = Field(default_factory=ImagesSection)
    sync: SyncSection = Field(default_factory=SyncSection)
    report: ReportSection = Field(default_factory=ReportSection)


QUICK_EPOCH_SHARE = 10  # a quick schedule trains a tenth of the epochs


def quick_config(config: Config) -> Config:
    """The same project on the quick schedule: fewer epochs, hence its own model fingerprint."""
    epochs = max(1, config.model.epochs // QUICK_EPOCH_SHARE)
    return config.model_copy(update={"model": config.model.model_copy(update={"epochs": epochs})})


# FAST_SCHEDULE (dcloop.names): the fast schedule's batch size, learning rate and epochs, as measured there.
SCHEDULES = ("full", "quick", "fast")  # a results row's kind for a training; only the same kind compares


def fast_config(config: Config) -> Config:
    """The same project on the fast schedule: its batch size, learning rate and epochs replace the
    [model] ones (they were measured against the recipe's), hence its own model fingerprint."""
    return config.model_copy(update={"model": config.model.model_copy(update=FAST_SCHEDULE)})


def schedule_of(quick: bool = False, fast: bool = False) -> str:
    """'full', 'quick' or 'fast' from the two flags; both at once is an error."""
    if quick and fast:
        raise ConfigError("--quick and --fast are two schedules: pick one.")
    return "quick" if quick else "fast" if fast else "full"


def scheduled(config: Config, schedule: str) -> Config:
    """The config a training on ``schedule`` uses (one of SCHEDULES)."""
    return {"full": lambda c: c, "quick": quick_config, "fast": fast_config}[schedule](config)


def env_overrides(environ: dict[str, str]) -> dict[str, dict[str, str]]:
    """DCLOOP_MODEL_EPOCHS=3 -> {"model": {"epochs": "3"}} for every known section and field."""
    out: dict[str, dict[str, str]] = {}
    for section, info in Config.model_fields.items():
        for name in info.annotation.model_fields:
            value = environ.get(f"DCLOOP_{section}_{name}".upper())
            if value is not None:
                out.setdefault(section, {})[name] = value
    return out


def merge(base: dict, overrides: dict) -> dict:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, values in overrides.items():
        out.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    return out


def validated(file: dict, env: dict, flags: dict, file_name: str) -> Config:
    """The Config of the file's settings, DCLOOP_* variables over them and command-line flags over those;
    a ConfigError names where each bad value came from (the flag, the variable or the file)."""
    try:
        return Config.model_validate(merge(merge(file, env), flags))
    except ValidationError as e:
        raise ConfigError("; ".join(f"{source_of(err['loc'], env, flags, file_name)}: "
                                    f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())) from e


def source_of(loc: tuple, env: dict, flags: dict, file_name: str) -> str:
    """Where the value at ``loc`` ([section, field, ...]) was set: a flag, a variable, else the file."""
    section, name = (list(map(str, loc)) + ["", ""])[:2]
    if flags.get(section, {}).get(name) is not None:
        return f"the command line (--{name.replace('_', '-')})"
    if name in env.get(section, {}):
        return f"the environment (DCLOOP_{section.upper()}_{name.upper()})"
    return file_name


def load_config(root: Path, overrides: dict | None = None, environ: dict | None = None) -> Config:
    """Read ROOT/dcloop.toml, apply DCLOOP_* variables, then ``overrides`` ({section: {field: value}})."""
    path = Path(root) / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"{path}: no such file. Is {root} a dcloop project? Create one with 'dcloop init'.")
    try:
        data = tomllib.loads(config_text(path))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    return validated(data, env_overrides(os.environ if environ is None else environ), overrides or {}, str(path))


def config_text(path: Path) -> str:
    """dcloop.toml as text: UTF-8, a leading byte-order mark (Windows editors add one) dropped."""
    data = path.read_bytes()
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        at = bom + e.start
        line = data.count(b"\n", 0, at) + 1
        raise ConfigError(f"{path}: not UTF-8 text: byte {at} (line {line}) is 0x{data[at]:02x}. "
                          f"Save the file as UTF-8.") from e


def new_config(overrides: dict | None = None, environ: dict | None = None) -> Config:
    """A config for a new project: defaults, then DCLOOP_* variables, then ``overrides``."""
    return validated({}, env_overrides(os.environ if environ is None else environ), overrides or {}, "the new project's settings")


def to_toml(config: Config) -> str:
    """dcloop.toml text for a config; every field written, so the file documents itself."""
    lines = ["# dcloop project settings. Flags and DCLOOP_<SECTION>_<FIELD> variables override these.", ""]
    for section, values in config.model_dump().items():
        lines.append(f"[{section}]")
        lines += [f"{name} = {toml_value(value)}" for name, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)
