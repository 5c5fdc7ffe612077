"""dcloop's label-error ranking against cleanlab on known, planted label errors.

    python scripts/bench_label_errors.py [--roman ../shared/data/roman-numerals] [--scratch DIR]
        [--datasets digits,roman] [--epochs 25] [--batch-size 64] [--contact-sheet] [--json]

For each dataset (sklearn's digits; the Roman numerals train+val) and each noise setting (10% and
20% of labels flipped, uniformly or between classes a person confuses, seeded), the fixed model is
trained on the noisy labels and every row gets out-of-sample probabilities the way ``dcloop sync``
makes them (5-fold logistic regression on the fixed model's embeddings, for every labeled row).
cleanlab's ``get_label_quality_scores`` / ``find_label_issues`` score those probabilities; dcloop's
ranking scores the SAME probabilities with what else a sync knows (the neighbours' labels, the
training dynamics), and each of those is also shown switched off. cleanlab is a benchmark-only
dependency (pip install cleanlab).

Training uses a reduced schedule (batch 64, lr 1e-3, --epochs per dataset), not the 100-epoch
batch-8 recipe, so a setting trains in minutes on a CPU; probabilities and embeddings are cached per
setting under --scratch, so reruns only re-score. With few optimizer steps the Keras BatchNorm
momentum (0.01 in torch terms) leaves the running statistics unsettled; ``--bn-momentum 0.1``
trains with torch's default instead (the cache file name does not record it). ``--contact-sheet`` also ranks the Roman numerals as given
(no flips) and writes the 100 most suspicious rows to SCRATCH/roman-top100.png.

``--junk`` plants junk and flips instead: ``--flip-share`` of the labels flipped (half uniformly,
half to the confused class) and ``--junk-share`` more rows of junk images under random labels
(``JUNK_KINDS``: rendered letters and words from the fonts under /usr/share/fonts, sklearn digits,
blanks, noise scans, scribbles, fragments and rotations of real images), ``--train-share`` of each
in train. It trains one network and the cross-fitted pair on the planted table (cached), and scores
a sync's suspicion (cross-fitted, the default, and one network), its parts, and cleanlab's scores
on the same probabilities against flips, junk and both: AUROC, p@K, p@100, the AUROC within each
split, the train rows in the top 100, and each flag's precision.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from dcloop import suspicion
from dcloop.config import ModelSection, SuspicionSection
from dcloop.images import decode_one
from dcloop.project import rows_from_folder

ROMAN_CONFUSIONS = {"i": "ii", "ii": "iii", "iii": "ii", "iv": "vi", "v": "iv", "vi": "iv",
                    "vii": "viii", "viii": "vii", "ix": "x", "x": "ix"}
DIGIT_CONFUSIONS = {0: 6, 1: 7, 2: 7, 3: 8, 4: 9, 5: 6, 6: 5, 7: 1, 8: 3, 9: 4}
SETTINGS = [("uniform", 0.10), ("uniform", 0.20), ("pairs", 0.10), ("pairs", 0.20)]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_digits_set() -> dict:
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.stack([np.asarray(Image.fromarray((255 - d * 15).astype(np.uint8)).resize((32, 32))
                                  .convert("RGB")).transpose(2, 0, 1) for d in digits.images])
    rng = np.random.default_rng(0)
    splits = np.where(rng.random(len(pixels)) < 0.25, "val", "train")
    confusions = np.array([DIGIT_CONFUSIONS[k] for k in range(10)])
    return {"classes": [str(k) for k in range(10)], "pixels": pixels, "labels": digits.target.astype(int),
            "splits": splits, "confusions": confusions, "paths": None}


def load_roman_set(folder: Path, scratch: Path) -> dict:
    rows = rows_from_folder(folder)
    rows = rows[rows["split"].isin(["train", "val"])].reset_index(drop=True)
    classes = sorted(rows["label"].unique())
    cache = scratch / "roman-pixels.npz"
    if cache.exists():
        pixels = np.load(cache)["pixels"]
    else:
        log(f"decoding {len(rows)} Roman numeral images")
        pixels = np.stack([decode_one(Path(p), 32) for p in rows["url"]])
        np.savez(cache, pixels=pixels)
    index = {c: k for k, c in enumerate(classes)}
    return {"classes": classes, "pixels": pixels, "labels": rows["label"].map(index).to_numpy(),
            "splits": rows["split"].to_numpy(), "paths": list(rows["url"]),
            "confusions": np.array([index[ROMAN_CONFUSIONS[c]] for c in classes])}


def describe_run(saved: dict) -> str:
    accuracy = f"val acc {float(saved['val_accuracy']):.2f}, " if "val_accuracy" in saved else ""
    return f"{accuracy}training {float(saved['train_s']):.0f}s"


def flip(labels: np.ndarray, num_classes: int, kind: str, fraction: float, confusions: np.ndarray,
         seed: int) -> np.ndarray:
    """Labels with ``fraction`` of rows changed: to a random other class, or to the confused class."""
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    chosen = rng.choice(len(labels), int(round(fraction * len(labels))), replace=False)
    if kind == "uniform":
        noisy[chosen] = (labels[chosen] + rng.integers(1, num_classes, len(chosen))) % num_classes
    else:
        noisy[chosen] = confusions[labels[chosen]]
    return noisy


def set_bn_momentum(momentum: float) -> None:
    """Train with another BatchNorm momentum than the fixed model's Keras value (0: keep it)."""
    from dcloop import model as fixed
    if not momentum:
        return
    keras_like = fixed.keras_like

    def with_momentum(module):
        module = keras_like(module)
        for layer in module.modules():
            if isinstance(layer, fixed.nn.BatchNorm2d):
                layer.momentum = momentum
        return module
    fixed.keras_like = with_momentum


def model_settings(args) -> ModelSection:
    return ModelSection(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                        seed=args.seed, device="cpu", threads=args.threads)


def out_of_sample(data: dict, noisy: np.ndarray, args, cache: Path) -> dict:
    """Train the fixed model on the noisy labels; proba as dcloop sync makes it; cached on disk."""
    if cache.exists():
        with np.load(cache) as saved:
            if "dynamics" in saved:  # older caches lack the training dynamics: train again
                return dict(saved)
    from dcloop import model as fixed
    settings = model_settings(args)
    train, val = data["splits"] == "train", data["splits"] == "val"
    started = time.perf_counter()
    trained = fixed.train(data["pixels"][train], noisy[train], data["pixels"][val], noisy[val],
                          len(data["classes"]), settings, progress=log)
    train_s = time.perf_counter() - started
    proba, embeddings = fixed.predict(trained.model, data["pixels"])
    dynamics = np.zeros_like(proba)
    dynamics[train], dynamics[val] = trained.train_dynamics, trained.val_dynamics
    started = time.perf_counter()
    # As dcloop sync does for suspicion: cross-validated on the embeddings for every labeled row.
    proba = suspicion.cross_val_proba(embeddings, noisy, len(data["classes"]), 5, args.seed)
    result = {"proba": proba, "embeddings": embeddings, "train_s": np.array(train_s),
              "cv_s": np.array(time.perf_counter() - started), "best_epoch": np.array(trained.best_epoch),
              "val_accuracy": np.array(trained.best_val_accuracy or 0.0), "pooled": np.array(True),
              "dynamics": dynamics}
    np.savez(cache, **result)
    return result


def crossfit_out_of_sample(data: dict, noisy: np.ndarray, args, cache: Path) -> dict:
    """As ``dcloop sync`` with [suspicion] crossfit = K: K networks' embeddings and held-out rows; cached."""
    if not cache.exists():
        from dcloop.config import Config
        from dcloop import model as fixed
        from dcloop.networks import train_all
        from dcloop.training import crossfit_plan
        config = Config(model=model_settings(args), suspicion=SuspicionSection(
            crossfit=args.crossfit, crossfit_repeats=args.crossfit_repeats, crossfit_epoch_share=args.crossfit_epoch_share))
        config.project.classes = data["classes"]
        started = time.perf_counter()
        jobs, held_out = crossfit_plan(config, data["pixels"], noisy, data["splits"])
        spaces = [fixed.predict(trained.model, data["pixels"])[1] for trained in train_all(jobs, log, lambda: False)]
        np.savez(cache, spaces=np.stack(spaces), held_out=np.stack(held_out),
                 train_s=np.array(time.perf_counter() - started))
    with np.load(cache) as saved:
        saved = dict(saved)
    started = time.perf_counter()
    signals = suspicion.crossfit_signals(list(saved["spaces"]), list(saved["held_out"]), noisy, noisy,
                                         len(data["classes"]), 5, args.seed)
    return {**saved, "proba": signals.proba, "knn_proba": signals.knn_proba, "outlier_z": signals.outlier_z,
            "signals_s": np.array(time.perf_counter() - started)}


def rank_metrics(score: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Ranking quality of ``score`` (higher = more likely an error) against the planted errors."""
    from sklearn.metrics import average_precision_score, roc_auc_score
    k = int(truth.sum())
    order = np.argsort(-score, kind="stable")
    return {"p@K": truth[order[:k]].mean(), "r@K": truth[order[:k]].sum() / k,
            "auroc": roc_auc_score(truth, score), "auprc": average_precision_score(truth, score),
            "p@100": truth[order[:100]].mean()}


CLEANLAB_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")


def knn_votes(saved: dict, labels: np.ndarray) -> np.ndarray:
    """The neighbours' labels: cross-fitted ones when the run has them, else from the one network's embeddings."""
    if saved.get("knn_proba") is not None:  # cross-fitted, no main network: each network's own space
        return saved["knn_proba"]
    index, _ = suspicion.neighbours(saved["embeddings"])
    return suspicion.knn_label_proba(index, labels, saved["proba"].shape[1])


def score_setting(data: dict, noisy: np.ndarray, saved: dict) -> dict[str, dict[str, float]]:
    """dcloop's label score and every cleanlab label-quality score, on the same probabilities."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    truth = (noisy != data["labels"]).astype(int)
    proba = saved["proba"]
    started = time.perf_counter()
    without_dynamics = suspicion.blend(proba, knn_votes(saved, noisy))
    q = without_dynamics if saved.get("dynamics") is None else suspicion.with_dynamics(without_dynamics,
                                                                                       saved["dynamics"])
    rows = {"dcloop": rank_metrics(suspicion.label_error_score(q, noisy), truth)}
    seconds = time.perf_counter() - started
    rows["dcloop without training dynamics"] = rank_metrics(suspicion.label_error_score(without_dynamics, noisy),
                                                             truth)
    rows["dcloop without dynamics or kNN"] = rank_metrics(suspicion.label_error_score(proba, noisy), truth)
    if "own_knn_proba" in saved:
        rows["dcloop, neighbours in each network's space"] = rank_metrics(
            suspicion.label_error_score(suspicion.blend(proba, saved["own_knn_proba"]), noisy), truth)
    for method in CLEANLAB_METHODS:
        for adjust in (False, True) if method != "confidence_weighted_entropy" else (False,):  # cleanlab: no adjust
            scores = get_label_quality_scores(noisy, proba, method=method, adjust_pred_probs=adjust)
            rows[f"cleanlab {method}{' adjusted' if adjust else ''}"] = rank_metrics(1 - scores, truth)
    issues = find_label_issues(noisy, proba)
    _, texts = suspicion.label_findings(q, noisy, data["classes"], 0.2)
    ours_flagged = np.array([bool(t) for t in texts])
    rows["dcloop"].update(flagged=float(ours_flagged.sum()), flag_precision=truth[ours_flagged].mean(),
                          seconds=seconds)
    rows["cleanlab self_confidence"].update(flagged=float(issues.sum()), flag_precision=truth[issues].mean())
    return rows


def print_table(name: str, rows: dict[str, dict[str, float]]) -> None:
    print(f"\n{name}")
    print(f"  {'method':<40}{'p@K':>7}{'r@K':>7}{'AUROC':>7}{'AUPRC':>7}{'p@100':>7}")
    for method, m in rows.items():
        print(f"  {method:<40}{m['p@K']:>7.3f}{m['r@K']:>7.3f}{m['auroc']:>7.3f}{m['auprc']:>7.3f}{m['p@100']:>7.3f}")
    best = {m: max(v[m] for k, v in rows.items() if k.startswith("cleanlab")) for m in ("p@K", "auroc")}
    print(f"  dcloop minus the best cleanlab method: p@K {rows['dcloop']['p@K'] - best['p@K']:+.3f}, "
          f"AUROC {rows['dcloop']['auroc'] - best['auroc']:+.3f}")
    ours, theirs = rows["dcloop"], rows["cleanlab self_confidence"]
    print(f"  flagged: dcloop 'label?' {ours['flagged']:.0f} rows (precision {ours['flag_precision']:.3f}); "
          f"cleanlab find_label_issues {theirs['flagged']:.0f} rows (precision {theirs['flag_precision']:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roman", type=Path, default=Path("../shared/data/roman-numerals"))
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/dcloop-bench-label-errors"))
    parser.add_argument("--datasets", default="digits,roman")
    parser.add_argument("--epochs", default="digits=12,roman=12",
                        help="epochs per dataset, e.g. digits=12,roman=4")
    parser.add_argument("--flip-seed", type=int, default=7, help="seed of the planted label flips")
    parser.add_argument("--crossfit", type=int, default=2, metavar="K",
                        help="also score with K cross-fitted networks, as [suspicion] crossfit = K (0: skip)")
    parser.add_argument("--crossfit-repeats", type=int, default=SuspicionSection().crossfit_repeats,
                        help="as [suspicion] crossfit_repeats (default: dcloop's)")
    parser.add_argument("--crossfit-epoch-share", type=float, default=SuspicionSection().crossfit_epoch_share,
                        help="as [suspicion] crossfit_epoch_share (default: dcloop's)")
    parser.add_argument("--crossfit-only", action="store_true", help="skip the one-network runs")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for training (1: kind to a shared machine)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--bn-momentum", type=float, default=0.0, help="0: the fixed model's own (Keras) value")
    parser.add_argument("--contact-sheet", action="store_true")
    parser.add_argument("--clean-epochs", type=int, default=12, help="epochs for the unflipped Roman run")
    parser.add_argument("--cost", type=int, default=0, metavar="N",
                        help="also time everything after training (cross-validation, assess) on N rows")
    parser.add_argument("--junk", action="store_true",
                        help="plant junk images and flips unevenly across splits instead of flips alone")
    parser.add_argument("--junk-share", type=float, default=0.08, help="junk rows added, as a share of the rows")
    parser.add_argument("--flip-share", type=float, default=0.04, help="with --junk: labels flipped")
    parser.add_argument("--train-share", type=float, default=0.9, help="with --junk: the share of each in train")
    parser.add_argument("--plant-seed", type=int, default=11, help="with --junk: the seed of what is planted")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    set_bn_momentum(args.bn_momentum)
    epochs = dict(item.split("=") for item in args.epochs.split(","))
    log(f"reduced schedule: batch {args.batch_size}, lr {args.lr}, epochs {epochs} (not the 100-epoch recipe)")
    if args.junk:
        torch_threads(args.threads)
        report = junk_benchmark(args)
        if args.json:
            print(json.dumps(report, default=float))
        return
    report = {}
    for name in filter(None, args.datasets.split(",")):
        data = load_digits_set() if name == "digits" else load_roman_set(args.roman, args.scratch)
        args.epochs_now = int(epochs[name])
        for kind, fraction in SETTINGS:
            noisy = flip(data["labels"], len(data["classes"]), kind, fraction, data["confusions"], args.flip_seed)
            now = argparse.Namespace(**{**vars(args), "epochs": args.epochs_now})
            stem = args.scratch / f"{name}-{kind}-{int(fraction * 100)}-{cache_tag(now)}-flip{args.flip_seed}"
            runs = {} if args.crossfit_only else {"one network": out_of_sample(data, noisy, now,
                                                                               Path(f"{stem}.npz"))}
            if args.crossfit > 1:
                fitted = crossfit_out_of_sample(data, noisy, now, Path(f"{stem}-{crossfit_tag(args)}.npz"))
                if runs:  # as dcloop sync: neighbours in the main network's space
                    fitted = {**fitted, "knn_proba": None, "own_knn_proba": fitted["knn_proba"],
                              "embeddings": runs["one network"]["embeddings"],
                              "dynamics": runs["one network"]["dynamics"]}
                runs[f"cross-fitted, K={args.crossfit}"] = fitted
            for variant, saved in runs.items():
                setting = (f"{name} {kind} {int(fraction * 100)}%, {variant} ({len(noisy)} rows, "
                           f"{int((noisy != data['labels']).sum())} errors, flip seed {args.flip_seed}, "
                           f"{describe_run(saved)})")
                report[setting] = rows = score_setting(data, noisy, saved)
                if not args.json:
                    print_table(setting, rows)
    if args.json:
        print(json.dumps(report))
    if args.contact_sheet:
        contact_sheet(load_roman_set(args.roman, args.scratch), args)
    if args.cost:
        cost(args.cost, args)


def torch_threads(threads: int) -> None:
    """Predicting uses torch's own thread count; hold it to --threads as training does."""
    import torch
    torch.set_num_threads(threads)


def cache_tag(args) -> str:
    """What the cached training depends on besides the data and flips."""
    return f"e{args.epochs}-b{args.batch_size}-lr{args.lr:g}-bn{args.bn_momentum:g}-s{args.seed}"


def crossfit_tag(args) -> str:
    """The cross-fitting settings in a cache name (one split at the model's epochs: the old name)."""
    if args.crossfit_repeats == 1 and args.crossfit_epoch_share == 1:
        return f"cf{args.crossfit}"
    return f"cf{args.crossfit}x{args.crossfit_repeats}-share{args.crossfit_epoch_share:g}"


def contact_sheet(data: dict, args) -> None:
    """Rank the Roman numerals as given with dcloop's full suspicion; draw the top 100 with their flags."""
    from PIL import Image, ImageDraw
    now = argparse.Namespace(**{**vars(args), "epochs": args.clean_epochs})
    stem = args.scratch / f"roman-clean-{cache_tag(now)}"
    saved = out_of_sample(data, data["labels"], now, Path(f"{stem}.npz"))
    if args.crossfit > 1:
        fitted = crossfit_out_of_sample(data, data["labels"], now, Path(f"{stem}-{crossfit_tag(args)}.npz"))
        saved = {**saved, "proba": fitted["proba"]}
    ids = [Path(p).stem[:8] for p in data["paths"]]
    sizes = []
    for path in data["paths"]:
        with Image.open(path) as image:
            sizes.append(image.size)
    evidence = suspicion.Evidence(ids=ids, labels=data["labels"], splits=data["splits"], proba=saved["proba"],
                                  embeddings=saved["embeddings"], pixels=data["pixels"], sizes=sizes,
                                  reviewed=np.zeros(len(ids), bool), dynamics=saved["dynamics"])
    started = time.perf_counter()
    assessed = suspicion.assess(evidence, data["classes"])
    log(f"assess on {len(ids)} rows: {time.perf_counter() - started:.1f}s")
    top = assessed.sort_values("sort_key", ascending=False, kind="stable").head(100)
    cell_w, cell_h = 190, 150
    sheet = Image.new("RGB", (cell_w * 10, cell_h * 10), "white")
    draw = ImageDraw.Draw(sheet)
    lines = []
    for n, (row, item) in enumerate(top.iterrows()):
        x, y = (n % 10) * cell_w, (n // 10) * cell_h
        with Image.open(data["paths"][row]) as image:
            sheet.paste(image.convert("RGB").resize((84, 84)), (x + 4, y + 4))
        label = data["classes"][data["labels"][row]]
        draw.text((x + 92, y + 4), f"#{n + 1} {label} ({data['splits'][row]})\n{item['suspicion']}", fill="black")
        draw.text((x + 4, y + 92), wrap(item["flags"], 30), fill="red")
        lines.append(f"{n + 1}\t{item['id']}\t{label}\t{data['splits'][row]}\t{item['suspicion']}\t{item['flags']}"
                     f"\t{data['paths'][row]}")
    sheet.save(args.scratch / "roman-top100.png")
    (args.scratch / "roman-top100.tsv").write_text("\n".join(lines) + "\n")
    print(f"\ncontact sheet: {args.scratch / 'roman-top100.png'} (list: roman-top100.tsv)")
    flags = assessed["flags"]
    top_splits = data["splits"][top.index]
    print(f"top 100: {int((top_splits == 'train').sum())} train, {int((top_splits == 'val').sum())} val rows")
    print(f"roman as given: {len(ids)} rows, {int(flags.str.contains('label?', regex=False).sum())} label?, "
          f"{int(flags.str.contains('outlier').sum())} outlier, {int(flags.str.contains('dup-of').sum())} dup, "
          f"{int(flags.str.contains('blank').sum())} blank")


# --- planted junk and flips, uneven across splits ----------------------------------------------

JUNK_KINDS = ("letters", "digits", "blank", "noise", "scribble", "fragment", "rotation")
FONT_DIR = Path("/usr/share/fonts")
WORDS = ("A", "B", "K", "M", "W", "Z", "ok", "no", "hi", "?", "#", "&", "%", "ab", "cat", "Q", "8", "3")


def ink_image(gray: np.ndarray) -> np.ndarray:
    """float (32, 32) in [0, 1] of ink -> uint8 (3, 32, 32) dark ink on white paper."""
    paper = np.clip(255 - 255 * gray, 0, 255).astype(np.uint8)
    return np.repeat(paper[None], 3, 0)


def render_text(text: str, font: Path, rng) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont
    canvas = Image.new("L", (64, 64), 0)
    face = ImageFont.truetype(str(font), int(rng.integers(26, 44)))
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
    draw.text(((64 - right - left) / 2, (64 - bottom - top) / 2), text, fill=255, font=face)
    small = canvas.rotate(float(rng.uniform(-15, 15))).resize((32, 32))
    return ink_image(np.asarray(small, np.float32) / 255)


def scribble(rng) -> np.ndarray:
    from PIL import Image, ImageDraw
    canvas = Image.new("L", (64, 64), 0)
    points = [tuple(rng.uniform(8, 56, 2)) for _ in range(int(rng.integers(4, 12)))]
    ImageDraw.Draw(canvas).line(points, fill=255, width=int(rng.integers(2, 6)), joint="curve")
    return ink_image(np.asarray(canvas.resize((32, 32)), np.float32) / 255)


def noise_scan(rng) -> np.ndarray:
    speckle = (rng.random((32, 32)) < rng.uniform(0.03, 0.3)) * rng.uniform(0.3, 1.0)
    return ink_image(np.clip(speckle + rng.normal(0, 0.08, (32, 32)), 0, 1))


def blank(rng) -> np.ndarray:
    return ink_image(np.clip(rng.uniform(0, 0.15) + rng.normal(0, 0.01, (32, 32)), 0, 1))


def fragment(real: np.ndarray, rng) -> np.ndarray:
    from PIL import Image
    side = int(rng.integers(9, 16))
    top, left = rng.integers(0, 32 - side, 2)
    crop = Image.fromarray(real.transpose(1, 2, 0)[top:top + side, left:left + side])
    return np.asarray(crop.resize((32, 32))).transpose(2, 0, 1).copy()


def rotation(real: np.ndarray, rng) -> np.ndarray:
    from PIL import Image
    turned = Image.fromarray(real.transpose(1, 2, 0)).rotate(float(rng.choice([90, 270])) + rng.uniform(-20, 20),
                                                            fillcolor=(255, 255, 255))
    return np.asarray(turned).transpose(2, 0, 1).copy()


def digit_images(rng, count: int) -> np.ndarray:
    from PIL import Image
    from sklearn.datasets import load_digits
    images = load_digits().images[rng.choice(1797, count)]
    return np.stack([np.asarray(Image.fromarray((255 - d * 15).astype(np.uint8)).resize((32, 32))
                                .convert("RGB")).transpose(2, 0, 1) for d in images])


def junk_images(data: dict, count: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images that are no class, of JUNK_KINDS in turn (digits replaced by letters where the
    classes are digits), and the kind of each."""
    fonts = sorted(FONT_DIR.rglob("*.ttf"))
    kinds = np.array([JUNK_KINDS[k % len(JUNK_KINDS)] for k in range(count)])
    if data["classes"][0] == "0":
        kinds[kinds == "digits"] = "letters"
    made = np.zeros((count, 3, 32, 32), np.uint8)
    digits = digit_images(rng, count)
    for n, kind in enumerate(kinds):
        real = data["pixels"][rng.integers(len(data["pixels"]))]
        if kind == "letters" and fonts:
            made[n] = render_text(str(rng.choice(WORDS)), fonts[rng.integers(len(fonts))], rng)
        elif kind in ("letters", "scribble"):
            made[n] = scribble(rng)
        else:
            made[n] = {"digits": lambda: digits[n], "blank": lambda: blank(rng), "noise": lambda: noise_scan(rng),
                       "fragment": lambda: fragment(real, rng), "rotation": lambda: rotation(real, rng)}[kind]()
    return made, kinds


def uneven_rows(splits: np.ndarray, count: int, train_share: float, rng, among=None) -> np.ndarray:
    """``count`` row indices, ``train_share`` of them from train and the rest from val."""
    among = np.ones(len(splits), bool) if among is None else among
    in_train = int(round(train_share * count))
    train = rng.choice(np.flatnonzero(among & (splits == "train")), in_train, replace=False)
    val = rng.choice(np.flatnonzero(among & (splits == "val")), count - in_train, replace=False)
    return np.concatenate([train, val])


def plant(data: dict, junk: float, flips: float, train_share: float, seed: int) -> dict:
    """The data with ``flips`` of its rows relabeled (half uniform, half to the confused class) and
    ``junk`` more rows of junk images under random labels, ``train_share`` of each in train.

    Returns pixels, labels (as given), splits, and the truth: ``flip`` and ``junk`` masks, ``kind``.
    """
    rng = np.random.default_rng(seed)
    n, num_classes = len(data["labels"]), len(data["classes"])
    labels = data["labels"].copy()
    flipped = uneven_rows(data["splits"], int(round(flips * n)), train_share, rng)
    pairs = flipped[: len(flipped) // 2]
    labels[pairs] = data["confusions"][labels[pairs]]
    rest = flipped[len(flipped) // 2:]
    labels[rest] = (labels[rest] + rng.integers(1, num_classes, len(rest))) % num_classes
    count = int(round(junk * n))
    made, kinds = junk_images(data, count, rng)
    junk_splits = np.where(np.arange(count) < round(train_share * count), "train", "val")
    flip_mask = np.zeros(n + count, bool)
    flip_mask[flipped] = True
    return {"classes": data["classes"], "pixels": np.concatenate([data["pixels"], made]),
            "labels": np.concatenate([labels, rng.integers(0, num_classes, count)]),
            "splits": np.concatenate([data["splits"], junk_splits]), "flip": flip_mask,
            "junk": np.concatenate([np.zeros(n, bool), np.ones(count, bool)]),
            "kind": np.concatenate([np.where(flip_mask[:n], "flip", ""), kinds])}


def split_metrics(score: np.ndarray, truth: np.ndarray, splits: np.ndarray) -> dict[str, float]:
    """rank_metrics over the whole table, plus the AUROC within each split and train rows in the top 100."""
    from sklearn.metrics import roc_auc_score
    out = rank_metrics(score, truth)
    for split in ("train", "val"):
        rows = splits == split
        out[f"auroc {split}"] = roc_auc_score(truth[rows], score[rows]) if 0 < truth[rows].sum() < rows.sum() else np.nan
    out["train in top 100"] = float((splits[np.argsort(-score, kind="stable")[:100]] == "train").sum())
    return out


def planted_evidence(planted: dict, one: dict, fitted=None) -> suspicion.Evidence:
    """What a sync's assess sees: with ``fitted`` (crossfit) every labeled row judged out of sample."""
    n = len(planted["labels"])
    ev = suspicion.Evidence(ids=[f"r{k}" for k in range(n)], labels=planted["labels"], splits=planted["splits"],
                            proba=one["proba"], embeddings=one["embeddings"], pixels=planted["pixels"],
                            sizes=[(32, 32)] * n, reviewed=np.zeros(n, bool), dynamics=one["dynamics"])
    return ev if fitted is None else suspicion.judged_out_of_sample(ev, fitted)


def score_planted(planted: dict, one: dict, fitted) -> tuple[dict, dict]:
    """Per score, split_metrics against flips, junk and both; and each flag kind's precision (default run)."""
    from cleanlab.rank import get_label_quality_scores
    labels, splits = planted["labels"], planted["splits"]
    default = suspicion.assess(planted_evidence(planted, one, fitted), planted["classes"])
    judged = planted_evidence(planted, one, fitted)
    blank = suspicion.ink_fraction(planted["pixels"]) < suspicion.BLANK_INK
    scores = {"dcloop suspicion (crossfit 2, one scale)": default["suspicion"].astype(float).to_numpy(),
              "dcloop suspicion, crossfit 0": suspicion.assess(planted_evidence(planted, one), planted["classes"])
              ["suspicion"].astype(float).to_numpy(),
              "dcloop label error alone (crossfit 2)": suspicion.label_error_score(  # weighted as a sync does
                  suspicion.blend(judged.proba, judged.knn_proba, suspicion.CROSSFIT_KNN_WEIGHT), labels,
                  suspicion.CROSSFIT_SELF_CONFIDENCE_SHARE),
              "dcloop not-a-class alone": suspicion.not_a_class_findings(judged, blank)[0],
              "1 - label_prob (crossfit 2)": 1 - suspicion.self_confidence(judged.proba, labels)}
    for method in CLEANLAB_METHODS:
        scores[f"cleanlab {method} (crossfit 2)"] = 1 - get_label_quality_scores(labels, judged.proba, method=method)
    scores["cleanlab self_confidence, crossfit 0"] = 1 - get_label_quality_scores(labels, one["proba"])
    truths = {"flips": planted["flip"], "junk": planted["junk"], "both": planted["flip"] | planted["junk"]}
    table = {name: {t: split_metrics(s, truth, splits) for t, truth in truths.items()} for name, s in scores.items()}
    flags = {}
    for kind in ("label?", "not-a-class?", "outlier", "blank", "dup-of"):
        has = default["flags"].map(lambda cell: kind in cell).to_numpy()
        flags[kind] = {"rows": int(has.sum()), **{t: float(truth[has].mean()) if has.any() else np.nan
                                                   for t, truth in truths.items()}}
    return table, flags


def print_planted(setting: str, table: dict, flags: dict) -> None:
    print(f"\n{setting}")
    print(f"  {'score':<52}{'truth':<7}{'AUROC':>7}{'p@K':>7}{'p@100':>7}{'train':>7}{'val':>7}{'tr/100':>8}")
    for name, per_truth in table.items():
        for truth, m in per_truth.items():
            print(f"  {name:<52}{truth:<7}{m['auroc']:>7.3f}{m['p@K']:>7.3f}{m['p@100']:>7.3f}"
                  f"{m['auroc train']:>7.3f}{m['auroc val']:>7.3f}{m['train in top 100']:>8.0f}")
    print("  flags of the default run (share that are planted flips / junk / either):")
    for kind, f in flags.items():
        print(f"    {kind:<14}{f['rows']:>5} rows  {f['flips']:.2f} / {f['junk']:.2f} / {f['both']:.2f}")


def junk_benchmark(args) -> dict:
    """Planted junk (JUNK_KINDS) and flips, 90% of each in train, on each dataset; see the module docstring."""
    report = {}
    epochs = dict(item.split("=") for item in args.epochs.split(","))
    for name in filter(None, args.datasets.split(",")):
        data = load_digits_set() if name == "digits" else load_roman_set(args.roman, args.scratch)
        planted = plant(data, args.junk_share, args.flip_share, args.train_share, args.plant_seed)
        now = argparse.Namespace(**{**vars(args), "epochs": int(epochs[name]), "crossfit": 2})
        stem = args.scratch / (f"{name}-junk{round(args.junk_share * 100)}-flip{round(args.flip_share * 100)}"
                               f"-train{round(args.train_share * 100)}-{cache_tag(now)}-plant{args.plant_seed}")
        one = out_of_sample(planted, planted["labels"], now, Path(f"{stem}.npz"))
        fitted = crossfit_out_of_sample(planted, planted["labels"], now, Path(f"{stem}-cf2.npz"))
        fitted = suspicion.Crossfit(fitted["proba"], fitted["knn_proba"], fitted["outlier_z"])
        setting = (f"{name}: {int(planted['flip'].sum())} flips and {int(planted['junk'].sum())} junk rows in "
                   f"{len(planted['labels'])}, {round(args.train_share * 100)}% of each in train, plant seed "
                   f"{args.plant_seed}, {now.epochs} epochs")
        table, flags = score_planted(planted, one, fitted)
        report[setting] = {"scores": table, "flags": flags}
        if not args.json:
            print_planted(setting, table, flags)
    return report


def cost(n: int, args) -> None:
    """Seconds for everything a sync does after training, on n rows, against the default preset's training.

    As ``dcloop sync`` with the defaults: predict every row (probabilities and embeddings), the
    cross-validated probabilities of every labeled row, and ``assess``
    (neighbours, duplicates, outliers, image checks, the combination). The n images are the Roman
    numerals repeated, each copy shifted and speckled, so the duplicate search meets many near pairs;
    their labels and embeddings are those of the run on the Roman numerals as given (--contact-sheet's
    cache, trained if missing), each copy's embedding jittered. The training time it is compared with
    is the recipe's (100 epochs, batch 8) on the 70% of rows in train, from the step time measured now.
    """
    import torch
    from dcloop import model as fixed
    from dcloop.config import ModelSection
    seed, threads = args.seed, args.threads
    rng = np.random.default_rng(seed)
    data = load_roman_set(args.roman, args.scratch)
    now = argparse.Namespace(**{**vars(args), "epochs": args.clean_epochs})
    run = out_of_sample(data, data["labels"], now, args.scratch / f"roman-clean-{cache_tag(now)}.npz")
    source = np.arange(n) % len(data["labels"])
    copies = np.roll(data["pixels"][source].astype(np.int16), 1, axis=3) + rng.integers(-12, 13, (n, 3, 32, 32))
    pixels = np.clip(copies, 0, 255).astype(np.uint8)
    labels, num_classes = data["labels"][source], len(data["classes"])
    embeddings = run["embeddings"][source] * rng.normal(1, 0.05, (n, run["embeddings"].shape[1]))
    splits = np.where(rng.random(n) < 0.7, "train", "val")
    torch.set_num_threads(threads)
    recipe = ModelSection(threads=threads)
    network = fixed.build_model(recipe.preset, num_classes).eval()
    stages = {}
    started = time.perf_counter()
    fixed.predict(network, pixels)  # an untrained network predicts as fast as a trained one
    stages["predict"] = time.perf_counter() - started
    started = time.perf_counter()
    train = splits == "train"
    proba = suspicion.cross_val_proba(embeddings, labels, num_classes, 5, seed)
    stages["cross-validated probabilities of every labeled row"] = time.perf_counter() - started
    evidence = suspicion.Evidence(ids=[f"r{k}" for k in range(n)], labels=labels, splits=splits, proba=proba,
                                  embeddings=embeddings, pixels=pixels, sizes=[(32, 32)] * n,
                                  reviewed=np.zeros(n, bool))
    started = time.perf_counter()
    suspicion.assess(evidence, [str(k) for k in range(num_classes)])
    stages["assess (neighbours, duplicates, outliers, combination)"] = time.perf_counter() - started
    step = fixed.step_seconds(recipe, num_classes, torch.device("cpu"), steps=20)
    training = recipe.epochs * int(train.sum()) / recipe.batch_size * step
    total = sum(stages.values())
    print(f"\ncost after training on {n} rows ({threads} thread(s)):")
    for stage, seconds in stages.items():
        print(f"  {stage:<58}{seconds:>7.1f} s")
    print(f"  {'total':<58}{total:>7.1f} s  (budget 60 s)")
    print(f"  the default preset's training on {int(train.sum())} train rows: {recipe.epochs} epochs x "
          f"{int(train.sum()) // recipe.batch_size} steps x {step * 1000:.1f} ms = {training:.0f} s; "
          f"the rest is {100 * total / training:.1f}% of it (budget 10%)")


def wrap(text: str, width: int) -> str:
    import textwrap
    return "\n".join(textwrap.wrap(text, width)[:4])


if __name__ == "__main__":
    main()
