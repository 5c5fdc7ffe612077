"""dcloop against the organisers' Keras script, end to end: whole processes on the same data, seeds alternating.

    python scripts/bench_keras.py ../shared/data/roman-numerals --keras-python .venv-keras/bin/python
        [--epochs 100] [--seeds 3] [--dcloop-variants default,recipe] [--json-out bench-keras.json]
    python scripts/bench_keras.py --from-json bench-keras.json    # the table of an earlier (or interrupted) run

For each seed (123, 124, ...), in turn:

- keras: ``scripts/keras_recipe.py`` (tf-keras, the competition's recipe) as one process in the
  Keras virtualenv (pyproject's ``keras-baseline`` extra; it needs no dcloop);
- dcloop: ``dcloop init --from-folder DATA`` then ``dcloop sync --json`` in a fresh temporary
  project (train/ and val/ as given, label_book/ as the test split), as two processes in this
  Python's environment, once per variant: ``default`` is the sync as shipped (the recipe plus the
  cross-fitting networks that judge the train labels), ``recipe`` is ``sync --crossfit 0`` (the
  recipe's one training, as the Keras script does).

Each process is timed whole (interpreter, imports, reading the images, training, scoring and for
dcloop the write-back and the report); val and label_book accuracy come from each tool's own
output. Printed: every run, mean ± sample sd per tool, keras wall / dcloop wall per variant, and
whether the accuracies differ by more than two standard errors of the difference of means.

Each tool runs with its default threading. --threads N limits both to N threads (TensorFlow's
intra-op and inter-op pools; dcloop's [model] threads = N): for smoke runs on a shared machine,
not for the comparison. --dcloop-set model.device=cpu passes any dcloop setting as its
DCLOOP_<SECTION>_<FIELD> variable. The images are read where they lie; nothing is copied into the
repository.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERAS_RECIPE = ROOT / "scripts" / "keras_recipe.py"
FIRST_SEED = 123  # the default seed of both dcloop and keras_recipe.py

# dcloop variants: the extra `dcloop sync` arguments of each
VARIANTS = {"default": [], "recipe": ["--crossfit", "0"]}
TITLES = {"keras": "keras script (tf-keras)", "default": "dcloop default sync",
          "recipe": "dcloop recipe only (crossfit 0)"}


def say(message: str) -> None:
    print(f"bench_keras: {message}", file=sys.stderr, flush=True)


# Running the tools -------------------------------------------------------------------------------

def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Wall seconds of one whole process and its stdout; its stderr (progress) passes through."""
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"bench_keras: {' '.join(command)} exited with {done.returncode}")
    return seconds, done.stdout


def last_json(stdout: str) -> dict:
    """The last line of a process's stdout that is a JSON object."""
    for line in reversed(stdout.splitlines()):
        if line.strip().startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON object in the output: {stdout[-500:]!r}")


def run_keras(python: Path, data: Path, epochs: int, seed: int, threads: int) -> dict:
    command = [str(python), str(KERAS_RECIPE), str(data), "--epochs", str(epochs), "--seed", str(seed)]
    load = os.getloadavg()[0]
    wall, stdout = timed(command + (["--threads", str(threads)] if threads else []))
    found = last_json(stdout)
    return {"tool": "keras", "seed": seed, "wall_s": wall, "val_accuracy": found["val_accuracy"],
            "label_book_accuracy": found["label_book_accuracy"], "load_avg": load, "detail": found}


def dcloop_env(seed: int, threads: int, settings: dict[str, str]) -> dict[str, str]:
    """This environment, with the repository's dcloop first on the path and the run's settings as DCLOOP_*."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "DCLOOP_MODEL_SEED": str(seed)}
    if threads:
        env["DCLOOP_MODEL_THREADS"] = str(threads)
    return env | settings


def run_dcloop(variant: str, data: Path, epochs: int, seed: int, threads: int, settings: dict[str, str],
               keep: Path | None = None) -> dict:
    """`dcloop init` and `dcloop sync --json` in a fresh project; the wall time is both processes'.
    ``keep``: a folder to copy the synced labels.csv into (as <variant>-seed<N>-labels.csv), to score
    its ranking afterwards (scripts/score_against_review.py)."""
    dcloop = [sys.executable, "-c", "from dcloop.cli import cli; cli()"]
    env = dcloop_env(seed, threads, settings)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-keras-") as folder:
        root = Path(folder) / "roman"
        init_s, _ = timed(dcloop + ["init", str(root), "--from-folder", str(data)], env)
        sync_s, stdout = timed(dcloop + ["sync", str(root), "--json", "--epochs", str(epochs)]
                               + VARIANTS[variant], env)
        if keep:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / "labels.csv", keep / f"{variant}-seed{seed}-labels.csv")
    return {"tool": variant, "seed": seed, "wall_s": init_s + sync_s, "init_s": init_s, "sync_s": sync_s,
            "load_avg": load, **dcloop_scores(last_json(stdout))}


def dcloop_scores(sync_json: dict) -> dict:
    """Val and label_book (the test split) accuracy and the training's figures from `dcloop sync --json`."""
    result = sync_json["result"]
    if not sync_json.get("trained") or not result:
        raise ValueError(f"the sync did not train: {sync_json.get('message')}")
    return {"val_accuracy": float(result["val_accuracy"]), "label_book_accuracy": float(result["test_accuracy"]),
            "detail": {k: result.get(k, "") for k in ("run_id", "epochs", "best_epoch", "images_per_s",
                                                       "duration_s", "threads")}}


# Summaries (pure) --------------------------------------------------------------------------------

def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def summarize(runs: list[dict]) -> dict[str, dict]:
    """Per tool, in order of first appearance: n, and mean and sd of wall, val and label_book accuracy."""
    out: dict[str, dict] = {}
    for tool in dict.fromkeys(r["tool"] for r in runs):
        mine = [r for r in runs if r["tool"] == tool]
        out[tool] = {"n": len(mine), **{key: mean_sd([r[key] for r in mine])
                                        for key in ("wall_s", "val_accuracy", "label_book_accuracy")}}
    return out


def ratios(runs: list[dict]) -> dict[str, dict]:
    """Per dcloop variant: keras wall / dcloop wall of the means, and per seed (runs of the same seed)."""
    keras = {r["seed"]: r["wall_s"] for r in runs if r["tool"] == "keras"}
    means = summarize(runs)
    out = {}
    for tool, s in means.items():
        if tool == "keras" or "keras" not in means:
            continue
        per_seed = {r["seed"]: keras[r["seed"]] / r["wall_s"] for r in runs if r["tool"] == tool and r["seed"] in keras}
        out[tool] = {"of_means": means["keras"]["wall_s"][0] / s["wall_s"][0], "per_seed": per_seed}
    return out


def difference(a: dict, b: dict, key: str) -> tuple[float, float]:
    """b's mean minus a's, and the standard error of that difference (nan under 2 runs each)."""
    (mean_a, sd_a), (mean_b, sd_b) = a[key], b[key]
    return mean_b - mean_a, math.sqrt(sd_a ** 2 / a["n"] + sd_b ** 2 / b["n"])


def plus_minus(pair: tuple[float, float], digits: int) -> str:
    mean, sd = pair
    return f"{mean:.{digits}f}" + ("" if math.isnan(sd) else f" ± {sd:.{digits}f}")


def verdict(diff: float, se: float) -> str:
    if math.isnan(se):
        return "one seed: no noise estimate"
    return f"{'within' if abs(diff) <= 2 * se else 'beyond'} 2 SE ({2 * se:.3f})"


def report(figures: dict) -> str:
    runs = figures["runs"]
    m = figures["machine"]
    lines = [f"{figures['epochs']} epochs, {figures['seeds']} seed(s); {m['cores']} usable cores, load average "
             f"{m['load_avg_start']:.1f} at the start, {m['load_avg_end']:.1f} at the end; threads: "
             f"{figures['threads'] or 'each tool its default'}; tf {m.get('tf_version', '?')}", "",
             f"{'run':<34}{'seed':>5}{'wall s':>9}{'val':>8}{'label_book':>12}{'load':>6}"]
    for r in runs:
        lines.append(f"{TITLES.get(r['tool'], r['tool']):<34}{r['seed']:>5}{r['wall_s']:>9.1f}"
                     f"{r['val_accuracy']:>8.3f}{r['label_book_accuracy']:>12.3f}{r['load_avg']:>6.1f}")
    means = summarize(runs)
    lines += ["", f"{'mean ± sd over seeds':<34}{'n':>3}  {'wall s':<16}{'val':<16}{'label_book':<16}"]
    for tool, s in means.items():
        lines.append(f"{TITLES.get(tool, tool):<34}{s['n']:>3}  {plus_minus(s['wall_s'], 1):<16}"
                     f"{plus_minus(s['val_accuracy'], 3):<16}{plus_minus(s['label_book_accuracy'], 3):<16}")
    lines.append("")
    for tool, r in ratios(runs).items():
        seeds = ", ".join(f"{v:.2f}" for v in r["per_seed"].values())
        lines.append(f"keras wall / {TITLES.get(tool, tool)} wall: {r['of_means']:.2f}x (per seed {seeds})")
        for key, name in (("val_accuracy", "val"), ("label_book_accuracy", "label_book")):
            diff, se = difference(means["keras"], means[tool], key)
            lines.append(f"  {name} {diff:+.3f} against keras, {verdict(diff, se)}")
    return "\n".join(line.rstrip() for line in lines)


# The run -----------------------------------------------------------------------------------------

def keras_version(python: Path) -> str:
    done = subprocess.run([str(python), "-c", "import tf_keras, tensorflow; print(tensorflow.__version__)"],
                          capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode != 0:
        raise SystemExit(f"bench_keras: {python} cannot import tensorflow and tf_keras. Make a virtualenv for them "
                         f"(python -m venv .venv-keras && .venv-keras/bin/pip install 'tensorflow>=2.16' "
                         f"'tf-keras>=2.16') and pass --keras-python .venv-keras/bin/python; see "
                         f"docs/benchmarks/performance.md, \"Keras baseline\".")
    return done.stdout.strip()


def settings_env(pairs: list[str]) -> dict[str, str]:
    """["model.device=cpu"] -> {"DCLOOP_MODEL_DEVICE": "cpu"}."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        section, dot, field = key.partition(".")
        if not (sep and dot and section and field):
            raise SystemExit(f"bench_keras: --dcloop-set {pair!r}: expected SECTION.FIELD=VALUE, e.g. model.device=cpu")
        out[f"DCLOOP_{section}_{field}".upper()] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="?", help="folder with train/, val/, label_book/")
    parser.add_argument("--keras-python", type=Path, default=ROOT / ".venv-keras" / "bin" / "python",
                        help="the Python of the virtualenv with tensorflow and tf-keras (default: .venv-keras/bin/python)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3, help=f"seeds {FIRST_SEED}, {FIRST_SEED + 1}, ... (default 3)")
    parser.add_argument("--dcloop-variants", default="default,recipe",
                        help=f"comma-separated, of: {', '.join(VARIANTS)} (default: both)")
    parser.add_argument("--threads", type=int, default=0,
                        help="limit both tools to N threads (smoke runs on a busy machine; default 0: each its own)")
    parser.add_argument("--dcloop-set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="a dcloop setting for every dcloop run, e.g. model.device=cpu (repeatable)")
    parser.add_argument("--json-out", type=Path, default=Path("bench-keras.json"),
                        help="every figure, rewritten after each run (default bench-keras.json)")
    parser.add_argument("--keep-labels", type=Path, metavar="DIR",
                        help="copy each dcloop run's labels.csv here, to score its ranking afterwards")
    parser.add_argument("--from-json", type=Path, help="print the table of an earlier --json-out and stop")
    args = parser.parse_args()
    if args.from_json:
        print(report(json.loads(args.from_json.read_text())))
        return
    if args.data is None:
        parser.error("give the data folder (train/, val/, label_book/), or --from-json FILE")
    variants = args.dcloop_variants.split(",")
    if unknown := set(variants) - set(VARIANTS):
        parser.error(f"--dcloop-variants: unknown {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")
    data, settings = args.data.resolve(), settings_env(args.dcloop_set)
    machine = {"cores": len(os.sched_getaffinity(0)), "load_avg_start": os.getloadavg()[0],
               "tf_version": keras_version(args.keras_python)}
    figures = {"machine": machine, "epochs": args.epochs, "seeds": args.seeds, "threads": args.threads,
               "dcloop_settings": settings, "runs": []}
    for seed in range(FIRST_SEED, FIRST_SEED + args.seeds):
        say(f"seed {seed}: the keras script, {args.epochs} epochs")
        record(figures, run_keras(args.keras_python, data, args.epochs, seed, args.threads), args.json_out)
        for variant in variants:
            say(f"seed {seed}: dcloop init + sync ({variant}), {args.epochs} epochs")
            record(figures, run_dcloop(variant, data, args.epochs, seed, args.threads, settings, args.keep_labels),
                   args.json_out)
    print(report(figures))
    say(f"figures written to {args.json_out}")


def record(figures: dict, run: dict, path: Path) -> None:
    """Add a run and rewrite the JSON file, so an interrupted benchmark keeps what it measured."""
    figures["runs"].append(run)
    figures["machine"]["load_avg_end"] = os.getloadavg()[0]
    figures.update(summary=summarize(figures["runs"]), ratios=ratios(figures["runs"]))
    path.write_text(json.dumps(figures, indent=2, default=str) + "\n")

if __name__ == "__main__":
    main()
