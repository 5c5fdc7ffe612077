"""Augmentation inside the cap: seeded variants of labeled train rows, added as new rows of the table.

Each variant is one source image moved a little: rotated, shifted, scaled, its strokes made thicker
or thinner (a 3x3 min or max filter), sometimes cropped. It keeps the source's label and split, and its
note says where it came from: ``augmented from <source id>: <transform>``. Sync marks such rows
``augmented`` in flags; ``dcloop split`` keeps them in their source's split.

Thin classes (``--thin``): classes with fewer labeled train rows than the largest class. The budget goes
one variant at a time to the thin class with the fewest train rows at that moment, and no class is
raised above the largest, so the smallest classes are filled first.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

from . import table as tbl
from .backends import Backend, open_backend
from .config import Config
from .errors import CapError, ConfigError, DcloopError
from .fsutil import atomic_write_bytes, inside

FOLDER = "augmented"
MAX_ANGLE = 10.0      # degrees either way
MAX_SHIFT = 0.06      # of the width or height, either way
SCALES = (0.9, 1.1)
CROP_KEPT = (0.85, 1.0)  # of each side, when a variant is cropped


# --- transforms (pure: a seeded draw, and an image in, an image out) ---------------------------

@dataclass(frozen=True)
class Transform:
    angle: float = 0.0                        # degrees, counter-clockwise
    shift: tuple[float, float] = (0.0, 0.0)   # of width and height; + is right and down
    scale: float = 1.0
    stroke: int = 0                           # +1 thicker, -1 thinner
    crop: float = 1.0                         # share of each side kept, then resized back
    crop_at: tuple[float, float] = (0.5, 0.5)  # where the kept window sits, 0 left/top .. 1 right/bottom

    def describe(self) -> str:
        """'rotate -4.1°, shift +2.0%/-1.3%, scale 1.04, thicker strokes, crop 91%'."""
        parts = [f"rotate {self.angle:+.1f}°", f"shift {self.shift[0] * 100:+.1f}%/{self.shift[1] * 100:+.1f}%",
                 f"scale {self.scale:.2f}"]
        if self.stroke:
            parts.append("thicker strokes" if self.stroke > 0 else "thinner strokes")
        if self.crop < 1:
            parts.append(f"crop {self.crop * 100:.0f}% at ({self.crop_at[0]:.2f}, {self.crop_at[1]:.2f})")
        return ", ".join(parts)


def draw_transform(rng: np.random.Generator) -> Transform:
    """A small random transform: every variant is rotated, shifted and scaled; half get a stroke change or crop."""
    angle = rng.uniform(-MAX_ANGLE, MAX_ANGLE)
    shift = tuple(float(v) for v in rng.uniform(-MAX_SHIFT, MAX_SHIFT, 2))
    scale = rng.uniform(*SCALES)
    stroke = int(rng.choice([-1, 0, 0, 1]))
    cropped = rng.random() < 0.5
    crop = rng.uniform(*CROP_KEPT) if cropped else 1.0
    crop_at = tuple(float(v) for v in rng.uniform(0, 1, 2)) if cropped else (0.5, 0.5)
    return Transform(float(angle), shift, float(scale), stroke, float(crop), crop_at)


def background(image: Image.Image) -> tuple[int, ...]:
    """The median colour of the border pixels: what rotation and shifting fill in."""
    pixels = np.asarray(image)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return tuple(int(v) for v in np.median(border.reshape(len(border), -1), 0))


def dark_ink(image: Image.Image) -> bool:
    """Whether the strokes are darker than the background (black on white)."""
    gray = np.asarray(image.convert("L"))
    return bool(np.median(gray) >= 128)


def apply_transform(image: Image.Image, t: Transform) -> Image.Image:
    """``image`` moved by ``t``, same size and mode; uncovered corners take the background colour."""
    mode = image.mode if image.mode in ("L", "RGB") else "RGB"
    source = image.convert(mode)
    w, h = source.size
    fill = background(source)
    out = source.transform((w, h), Image.Transform.AFFINE, inverse_affine(t, w, h),
                           resample=Image.Resampling.BILINEAR, fillcolor=fill[0] if mode == "L" else fill)
    if t.stroke:
        thicker = ImageFilter.MinFilter if dark_ink(source) else ImageFilter.MaxFilter
        thinner = ImageFilter.MaxFilter if dark_ink(source) else ImageFilter.MinFilter
        out = out.filter((thicker if t.stroke > 0 else thinner)(3))
    if t.crop < 1:
        cw, ch = max(1, round(w * t.crop)), max(1, round(h * t.crop))
        left, top = round((w - cw) * t.crop_at[0]), round((h - ch) * t.crop_at[1])
        out = out.crop((left, top, left + cw, top + ch)).resize((w, h), Image.Resampling.BILINEAR)
    return out


def inverse_affine(t: Transform, w: int, h: int) -> tuple[float, ...]:
    """PIL's AFFINE data: for each output pixel, where to read in the input (rotate and scale about the centre)."""
    a = -math.radians(t.angle)
    cx, cy = w / 2, h / 2
    ox, oy = cx + t.shift[0] * w, cy + t.shift[1] * h  # where the centre lands
    m = (math.cos(a) / t.scale, math.sin(a) / t.scale, -math.sin(a) / t.scale, math.cos(a) / t.scale)
    return (m[0], m[1], cx - m[0] * ox - m[1] * oy, m[2], m[3], cy - m[2] * ox - m[3] * oy)


def ink_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) around the pixels that differ clearly from the background; None if blank."""
    gray = np.asarray(image.convert("L")).astype(np.int16)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    ys, xs = np.nonzero(np.abs(gray - np.median(border)) > 32)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if len(xs) else None


def fit_transform(t: Transform, image: Image.Image, margin: float = 0.02) -> Transform:
    """``t`` adjusted so no ink leaves the frame: less scale, less shift, a wider crop where needed.

    A stroke cut off can change the class (a 'vii' cropped to 'vi'), so the drawn transform yields.
    """
    box = ink_box(image)
    if box is None:
        return t
    w, h = image.size
    a = -math.radians(t.angle)
    corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[2], box[3]]], float)
    centred = corners - [w / 2, h / 2]
    turned = centred @ np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    low, high = turned.min(0), turned.max(0)
    edge = np.maximum(np.array([w, h]) * margin, 2.0)  # at least 2 px: bilinear sampling spreads ink by one
    room = np.array([w, h]) - 2 * edge
    scale = min(t.scale, *(room / np.maximum(high - low, 1e-9)))
    low, high = low * scale, high * scale
    centre = np.array([w / 2, h / 2]) + np.array(t.shift) * [w, h]
    centre = np.clip(centre, edge - low, np.array([w, h]) - edge - high)
    shift = tuple(float(v) for v in (centre - [w / 2, h / 2]) / [w, h])
    crop, crop_at = t.crop, t.crop_at
    if crop < 1:
        ink_low, ink_high = centre + low, centre + high
        crop = float(min(1.0, max(crop, *((ink_high - ink_low + 2 * edge) / [w, h]))))
        window = np.array([w, h]) * crop
        lo = np.clip(ink_high + edge - window, 0, None)
        hi = np.clip(ink_low - edge, None, np.array([w, h]) - window)
        left = lo + np.array(crop_at) * np.maximum(hi - lo, 0)
        spare = np.array([w, h]) - window
        crop_at = tuple(float(v) for v in np.where(spare > 0, left / np.where(spare > 0, spare, 1), 0.5))
    return Transform(t.angle, shift, float(scale), t.stroke, crop, crop_at)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- planning (pure: which classes, how many, from which sources) ------------------------------

def thin_classes(train_counts: dict[str, int]) -> list[str]:
    """Classes with fewer train rows than the largest class, in the order given."""
    if not train_counts:
        return []
    most = max(train_counts.values())
    return [c for c, n in train_counts.items() if n < most]


def allot(train_counts: dict[str, int], chosen: list[str], budget: int, ceiling: int | None = None) -> dict[str, int]:
    """Variants per class: one at a time to the chosen class with the fewest train rows (ties: first given).

    With ``ceiling``, no class is raised past that many train rows (fewer variants may result).
    """
    have = {c: train_counts.get(c, 0) for c in chosen}
    out = {c: 0 for c in chosen}
    for _ in range(budget):
        open_ = [c for c in chosen if ceiling is None or have[c] < ceiling]
        if not open_:
            break
        c = min(open_, key=lambda k: (have[k], chosen.index(k)))
        have[c] += 1
        out[c] += 1
    return {c: n for c, n in out.items() if n}


@dataclass(frozen=True)
class Variant:
    id: str
    source: str
    label: str
    split: str
    number: int          # the how-many-th variant of its source (1-based, over all runs)
    transform: Transform  # as drawn; make_files fits it to the image (no ink leaves the frame)


def stable_int(text: str) -> int:
    return zlib.crc32(text.encode())


def variant_id(source: str, number: int, taken: set[str]) -> str:
    base = "aug-" + hashlib.sha1(f"{source}\x1f{number}".encode()).hexdigest()[:10]
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def plan(sources: pd.DataFrame, allotment: dict[str, int], made_before: dict[str, int], taken: set[str],
         seed: int) -> list[Variant]:
    """The variants to make: per class, its sources in a seeded order, round robin, each variant seeded alone.

    ``sources`` has id, label, split; ``made_before`` {source id: variants made by earlier runs}, so a
    second run makes new variants rather than the same ones again. Same inputs, same plan.
    """
    out, taken, count = [], set(taken), dict(made_before)
    for label, wanted in allotment.items():
        mine = sources[sources["label"] == label].sort_values("id")
        order = np.random.default_rng([seed, stable_int(label)]).permutation(len(mine))
        for n in range(wanted):
            row = mine.iloc[order[n % len(mine)]]
            number = count.get(row["id"], 0) + 1
            count[row["id"]] = number
            rng = np.random.default_rng([seed, stable_int(row["id"]), number])
            new_id = variant_id(row["id"], number, taken)
            taken.add(new_id)
            out.append(Variant(new_id, row["id"], label, row["split"], number, draw_transform(rng)))
    return out


def safe_name(label: str) -> str:
    """A folder name for a class: letters, digits, '.', '_' and '-' kept, the rest '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", label).strip(".") or "_"


# --- the command: compose the stages ------------------------------------------------------------

@dataclass
class Augmented:
    asked: int
    rows: pd.DataFrame
    messages: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"asked": self.asked, "created": len(self.rows), "messages": self.messages,
                "per_class": self.rows["label"].value_counts().to_dict() if len(self.rows) else {},
                "rows": self.rows[["id", "url", "label", "split", "note"]].to_dict("records")}


def augment(root: Path, config: Config, budget: int, class_name: str | None = None, thin: bool = False,
            seed: int = 0, progress=None, backend: Backend | None = None) -> Augmented:
    """Make up to ``budget`` variants of train rows of ``class_name`` (or of the thin classes) and add them as rows."""
    from .dataset import counted_rows, load_images
    from .progress import quiet
    from .pull import pull

    progress = progress or quiet
    if bool(class_name) == bool(thin):
        raise ConfigError("give exactly one of --class CLASS or --thin.")
    if budget < 1:
        raise ConfigError(f"--budget {budget}: give the number of variants to make, 1 or more.")
    if class_name and class_name not in config.project.classes:
        raise ConfigError(f"--class {class_name!r} is not one of the project's classes: "
                          f"{', '.join(config.project.classes)}.")
    root = Path(root)
    backend = backend or open_backend(config, root)
    table = pull(backend, config)
    checked = tbl.validate(table, config.project.classes)
    images = load_images(root, config, checked, progress)
    counted = counted_rows(checked, images)
    messages: list[str] = []
    fits = within_cap(budget, len(counted), config.project.cap, messages)
    allotment = choose(counted, config.project.classes, fits, class_name, messages)
    sources = counted[(counted["split"] == "train") & ~counted["note"].map(tbl.is_augmented)]
    made_before = table["note"].map(tbl.augmented_source).value_counts().drop("", errors="ignore").to_dict()
    variants = plan(sources, allotment, made_before, set(table["id"]), seed)
    rows = make_files(root, variants, images.blob, progress)
    backend.append_rows(rows)
    progress(f"added {len(rows)} augmented row(s) to {backend.describe()}")
    return Augmented(budget, rows, messages)


def choose(counted: pd.DataFrame, classes: list[str], budget: int, class_name: str | None,
           messages: list[str]) -> dict[str, int]:
    """The allotment per class for ``--class`` or ``--thin``, with a message where the budget was cut."""
    train = counted[counted["split"] == "train"]
    originals = train[~train["note"].map(tbl.is_augmented)]
    counts = {c: int((train["label"] == c).sum()) for c in classes}
    if class_name:
        if not (originals["label"] == class_name).any():
            raise DcloopError(f"class {class_name!r} has no labeled, readable train rows to make variants of.")
        return {class_name: budget}
    thin = [c for c in thin_classes(counts) if (originals["label"] == c).any()]
    if originals.empty:
        raise DcloopError("no labeled, readable train rows to make variants of.")
    if not thin:
        raise DcloopError(f"no thin classes: every class with train rows has {max(counts.values(), default=0)} "
                          f"of them. Use --class CLASS to augment one class anyway.")
    allotment = allot(counts, thin, budget, ceiling=max(counts.values()))
    if sum(allotment.values()) < budget:
        messages.append(f"budget cut from {budget} to {sum(allotment.values())}: that raises every thin class to "
                        f"the largest class's {max(counts.values())} train rows")
    return allotment


def within_cap(budget: int, used: int, cap: int, messages: list[str]) -> int:
    """The budget cut to the room the cap leaves; no room at all is a CapError."""
    room = cap - used
    if room <= 0:
        raise CapError(f"at the cap: {used} labeled train+val rows and a cap of {cap} leave no room for augmented "
                       f"rows. Make room first ('dcloop cap' lists rows cheapest to drop) or raise [project] cap "
                       f"in dcloop.toml.")
    if budget > room:
        messages.append(f"budget cut from {budget} to {room}: {used} labeled train+val rows and the cap of {cap} "
                        f"leave room for {room} more")
    return min(budget, room)


def make_files(root: Path, variants: list[Variant], blobs: dict[str, Path], progress) -> pd.DataFrame:
    """Write each variant's PNG under ROOT/augmented/<class>/<id>.png; its table row."""
    rows = []
    for n, v in enumerate(variants, 1):
        relative = Path(FOLDER) / safe_name(v.label) / f"{v.id}.png"
        target = inside(root, *relative.parts)
        with Image.open(blobs[v.source]) as image:
            image.load()
            fitted = fit_transform(v.transform, image)
            atomic_write_bytes(target, png_bytes(apply_transform(image, fitted)))
        note = f"{tbl.AUGMENTED_NOTE}{v.source}: {fitted.describe()}"
        rows.append({"id": v.id, "url": relative.as_posix(), "label": v.label, "split": v.split, "note": note})
        if n % 200 == 0 or n == len(variants):
            progress(f"augmented images {n}/{len(variants)}")
    return pd.DataFrame(rows, columns=["id", "url", "label", "split", "note"]).astype(str)
