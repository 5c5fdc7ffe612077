"""Draw the seeded review sample of the Roman-numeral images and make contact sheets to review it.

The sample behind ``scripts/roman_review_sample.csv`` (see ``scripts/README_review.md``):

* population: every image file under ``train/<class>/`` and ``val/<class>/`` of the data folder
  (2,067 + 813 = 2,880); ``label_book/`` is left out;
* stratified by split, in proportion to the split sizes: n_split = round(N * size_split / 2,880)
  with N = 320, which gives 230 train + 90 val;
* per split, the relative paths (``train/iv/abc.png``) are sorted as strings and
  ``numpy.random.default_rng(SEED + k).choice(len, n_split, replace=False)`` picks the rows, with
  SEED = 17 and k = 0 for train, 1 for val; the sample is then ordered train first, then val, each in
  the order drawn; the sample number is the position in that order (0-based).

Decision rule (apply it to the picture alone; the given label only says which class "keep" means):

* Read the image as a person would with no label shown: which numeral of i..x does it show?
* ``keep``: exactly one numeral of i..x reads clearly and it is the given label. Case, serifs and
  top/bottom bars ("boxed" numerals), slant, curved, broken, dotted or heavy strokes, background
  noise, grid lines, specks and small partial marks at an edge do not matter while the numeral itself
  reads one way only.
* ``fix``: exactly one numeral reads clearly and it is another class; ``correct_label`` is that class.
  A rotated or cropped numeral is a ``fix`` when what is visible reads unambiguously as another numeral
  (three slanted parallel strokes = III).
* ``remove``: no single readable numeral: blank, noise scan, scribble, ink blot, another symbol (heart,
  letter, word), a fragment (a numeral cut so that the rest is part of one, or reads as nothing in i..x,
  such as X plus a cut stroke), two numerals, strokes too faint to count, strokes that read as no
  numeral.
* Strokes: count every visible stroke, also when strokes run together at the bottom (cursive ii, vii);
  two strokes that meet or cross only at the bottom (often at a bottom bar) are a V, an X crosses near
  the middle; two strokes that do not meet are II.
* ``unsure`` = ``yes`` wherever a second reading is plausible (between keep and fix, or between a weak
  numeral and remove); the decision given is the more likely reading.
* Duplicates are not a problem by themselves; those noticed are named in ``reason``.

The tuning sample behind ``scripts/roman_tuning_sample.csv`` (``--purpose tuning``) is drawn the same
way from the population MINUS every path in ``scripts/roman_review_sample.csv`` (2,560 files: 1,837
train + 723 val), so the two samples are disjoint: N = 300 (215 train + 85 val), SEED_TUNING = 29
(k = 0 train, 1 val). The inclusion probabilities are then about 300/2,560 = 11.7% per split (of the
files left after the reporting sample). It is for tuning (weights, thresholds, choosing variants); the
reporting sample stays for reporting. Same decision rule as below.

The images are never copied into the repository: the CSV holds relative paths only, and the contact
sheets this script makes go to a folder under /tmp.

    PYTHONPATH=. python scripts/roman_review_sample.py --data /work/shared/data/roman-numerals \\
        --sample-out /tmp/rr/sample.csv --sheets /tmp/rr
    PYTHONPATH=. python scripts/roman_review_sample.py --data /work/shared/data/roman-numerals \\
        --purpose tuning --sample-out /tmp/tune/sample.csv --sheets /tmp/tune-sheets
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 17
N = 320
SEED_TUNING = 29
N_TUNING = 300
HERE = Path(__file__).resolve().parent
REPORTING_CSV = HERE / "roman_review_sample.csv"
SPLITS = ("train", "val")
SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


def population(data: Path) -> dict[str, list[str]]:
    out = {}
    for split in SPLITS:
        files = [p for p in (data / split).glob("*/*") if p.is_file() and p.suffix.lower() in SUFFIXES]
        out[split] = sorted(p.relative_to(data).as_posix() for p in files)
    return out


def draw(data: Path, n: int = N, seed: int = SEED, exclude: set[str] | frozenset[str] = frozenset()
         ) -> pd.DataFrame:
    """Draw n rows stratified by split; paths in ``exclude`` are left out of the population first."""
    pop = {split: [p for p in paths if p not in exclude] for split, paths in population(data).items()}
    total = sum(len(v) for v in pop.values())
    rows = []
    for k, split in enumerate(SPLITS):
        size = round(n * len(pop[split]) / total)
        picks = np.random.default_rng(seed + k).choice(len(pop[split]), size, replace=False)
        for i in picks:
            path = pop[split][i]
            rows.append({"path": path, "split": split, "label": path.split("/")[1]})
    return pd.DataFrame(rows)


def draw_tuning(data: Path, reporting: Path = REPORTING_CSV) -> pd.DataFrame:
    """The tuning sample: N_TUNING rows with SEED_TUNING, disjoint from the reporting sample."""
    exclude = set(pd.read_csv(reporting)["path"])
    return draw(data, N_TUNING, SEED_TUNING, exclude)


def contact_sheets(data: Path, sample: pd.DataFrame, out: Path, per_sheet: int = 40, cols: int = 8,
                   cell: int = 112, prefix: str = "sheet") -> list[Path]:
    from PIL import Image, ImageDraw
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for start in range(0, len(sample), per_sheet):
        part = sample.iloc[start:start + per_sheet]
        rows = -(-len(part) // cols)
        sheet = Image.new("RGB", (cols * cell, rows * (cell + 16)), "white")
        draw_ = ImageDraw.Draw(sheet)
        for j, (number, row) in enumerate(part.iterrows()):
            x, y = (j % cols) * cell, (j // cols) * (cell + 16)
            with Image.open(data / row["path"]) as im:
                im = im.convert("RGB")
                im.thumbnail((cell - 8, cell - 8))  # keeps the aspect ratio
                if max(im.size) < cell - 8:         # small ones are upscaled
                    f = (cell - 8) / max(im.size)
                    im = im.resize((max(1, round(im.size[0] * f)), max(1, round(im.size[1] * f))))
            sheet.paste(im, (x + 4, y + 4))
            draw_.rectangle([x + 3, y + 3, x + 4 + im.size[0], y + 4 + im.size[1]], outline="red")
            draw_.text((x + 4, y + cell - 2), f"{number} {row['label']}", fill="blue")
        path = out / f"{prefix}_{start:03d}.png"
        sheet.save(path)
        made.append(path)
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--sample-out", type=Path, help="write the drawn sample (path,split,label) here")
    ap.add_argument("--sheets", type=Path, help="write contact sheets (PNG) into this folder (not the repo)")
    ap.add_argument("--purpose", choices=("reporting", "tuning"), default="reporting",
                    help="reporting (default): the 320-row sample, seed 17; tuning: 300 rows, seed 29, "
                         "disjoint from scripts/roman_review_sample.csv")
    ap.add_argument("--per-sheet", type=int, default=40)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--cell", type=int, default=112, help="cell size in px (image is cell - 8)")
    args = ap.parse_args()
    sample = draw_tuning(args.data) if args.purpose == "tuning" else draw(args.data)
    if args.sample_out:
        sample.to_csv(args.sample_out, index_label="sample")
    if args.sheets:
        for p in contact_sheets(args.data, sample, args.sheets, args.per_sheet, args.cols, args.cell):
            print(p)
    print(sample["split"].value_counts().to_dict())


if __name__ == "__main__":
    main()
