"""The project's configuration: dcloop.toml, DCLOOP_* variables and flags, resolved in one place.

Precedence: a flag > a DCLOOP_<SECTION>_<FIELD> variable > dcloop.toml > the default here.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .table import RowDrop, class_name_problem, shown

CONFIG_FILE = "dcloop.toml"
STATE_DIR = ".dcloop"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectSection(Section):
    classes: list[str] = Field(default_factory=list)
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
    backend: Literal["csv", "xlsx", "gsheet"] = "csv"
    path: str = "labels.csv"
    results: str = "results.csv"
    default_split: Literal["train", "val", "test", "exclude"] = "train"
    sheet: str = ""
    credentials: str = ""
    endpoint: str = Field("", description="Sheets API base URL override (tests and emulators)")
    max_row_drop_share: float = Field(0.05, ge=0, description="a read that lacks more known rows than this share "
                                      "(or max_row_drop_rows, whichever is larger) is refused")
    max_row_drop_rows: int = Field(20, ge=0, description="see max_row_drop_share")

    def row_drop(self) -> RowDrop:
        return RowDrop(self.max_row_drop_share, self.max_row_drop_rows)

    @model_validator(mode="after")
    def path_follows_backend(self):
        """backend = "xlsx" without a path means labels.xlsx (one workbook holds results and classes too)."""
        if self.backend == "xlsx" and "path" not in self.model_fields_set:
            self.path = "labels.xlsx"
        return self


class ModelSection(Section):
    preset: str = "dcai2021"
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(8, ge=1)
    image_size: int = Field(32, ge=8)
    seed: int = 123
    learning_rate: float = Field(1e-4, gt=0)
    device: str = "auto"
    threads: int = Field(0, ge=-1, description="CPU threads for training: N, 0 all cores, -1 the faster of 1 and all")
    seeds: int = Field(1, ge=1, description="trainings per sync, under seed, seed+1, ...: their spread shows the noise")

    def fingerprint(self) -> str:
        """Identifies the fixed model: scores are comparable only under the same fingerprint.

        ``seeds`` is left out: more seeds measure the same recipe's noise, they do not change it.
        """
        recipe = self.model_dump(exclude={"device", "threads", "seeds"})
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]


class SuspicionSection(Section):
    folds: int = Field(5, ge=2, description="folds for out-of-sample probabilities of training rows")
    low_label_prob: float = Field(0.2, ge=0, le=1)
    crossfit: int = Field(0, ge=0, description="K >= 2: also train K networks on the other folds of the train rows, "
                          "so train rows' labels are judged out of sample (K-1 more trainings); 0 or 1: off")
    sort: bool = Field(True, description="write the table's rows most suspicious first")


class ImagesSection(Section):
    timeout_s: float = Field(15.0, gt=0, description="seconds to connect and to wait for data, per http image")
    attempts: int = Field(3, ge=1, description="tries per http image before it is flagged unreadable")


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project: ProjectSection = Field(default_factory=ProjectSection)
    table: TableSection = Field(default_factory=TableSection)
    model: ModelSection = Field(default_factory=ModelSection)
    suspicion: SuspicionSection = Field(default_factory=SuspicionSection)
    images: ImagesSection = Field(default_factory=ImagesSection)


QUICK_EPOCH_SHARE = 10  # a quick schedule trains a tenth of the epochs


def quick_config(config: Config) -> Config:
    """The same project on the quick schedule: fewer epochs, hence its own model fingerprint."""
    epochs = max(1, config.model.epochs // QUICK_EPOCH_SHARE)
    return config.model_copy(update={"model": config.model.model_copy(update={"epochs": epochs})})


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


def load_config(root: Path, overrides: dict | None = None, environ: dict | None = None) -> Config:
    """Read ROOT/dcloop.toml, apply DCLOOP_* variables, then ``overrides`` ({section: {field: value}})."""
    path = Path(root) / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"{path}: no such file. Is {root} a dcloop project? Create one with 'dcloop init'.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    data = merge(data, env_overrides(os.environ if environ is None else environ))
    data = merge(data, overrides or {})
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"{path}: {problems}") from e


def new_config(overrides: dict | None = None, environ: dict | None = None) -> Config:
    """A config for a new project: defaults, then DCLOOP_* variables, then ``overrides``."""
    data = merge(env_overrides(os.environ if environ is None else environ), overrides or {})
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ConfigError(problems) from e


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
