"""dcloop's speed, measured side by side in one run: training, the ceiling, the rest of a sync.

    python scripts/bench.py ../shared/data/roman-numerals [--small] [--json-out bench.json]

1. Training the dcai2021 recipe (batch 8, Adam 1e-4, best-val weights) on train/ and val/, scored
   on label_book/: dcloop's sync against a plain hand-written torchvision loop (ImageFolder, PIL
   decode and resize every epoch), 2 seeds each, with images/s, wall time and both accuracies.
   10 epochs by default, not the recipe's 100: the hand-written loop alone would take 20 minutes
   a seed at 100; both paths run the same epochs, so the ratio and the accuracies still compare.
2. The ceiling: raw forward+backward on random tensors at the same batch size, per thread count
   and memory layout; dcloop's training images/s as a percent of the best of them.
3. The rest of a sync (everything but training and prediction) at 1,000/3,000/10,000 rows:
   synthetic tables pointing at the real image files, cold (images served once from a local HTTP
   server on 127.0.0.1) and warm (cache filled), and a no-change sync at the largest size, for
   the CSV table and for a Google Sheet on the local Sheets API emulator (with its API calls).
   The no-change sync also as a whole process (`dcloop sync` in a subprocess: interpreter, imports,
   the sync), in full (no stamp) and answered by the quick check (dcloop.unchanged), against
   `python -c 'import pandas'` timed in the same run.
4. A busy machine: images/s of a short training alone and beside one CPU-bound process (a Python
   busy loop), for all cores fixed (the old default) and for [model] threads = 0 (auto, the default).

    python scripts/bench.py DATA --parts busy,sync --rows 10000 --backends csv   # only some parts
    python scripts/bench.py DATA --parts sync --rows 10000 --backends csv --urls local   # images by path
    python scripts/bench.py DATA --parts nochange --rows 10000 --backends csv --urls local --before ../dcloop-old
                                                    # the no-change sync alone, against older code in turn
    python scripts/bench.py DATA --parts crossfit --rows 10000 --epochs 10 --keep-projects /tmp/cost
                                                    # what cross-fitting adds to a sync (about 35 minutes)

Ratios mean something within one run only; the machine's other load moves all the figures.
The images are read by path; nothing is copied into the repository.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dcloop import model as fixed
from dcloop import sync as dsync
from dcloop.config import load_config
from dcloop.project import init_project, rows_from_folder

BATCH = 8


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# 1. Training -------------------------------------------------------------------------------------

def train_dcloop(data: Path, epochs: int, seed: int, threads: int) -> dict:
    """One real sync of a fresh project: decode once, then train, predict, write back."""
    with tempfile.TemporaryDirectory(prefix="bench-dcloop-") as folder:
        root = Path(folder) / "roman"
        init_project(root, rows_from_folder(data))
        config = load_config(root, {"model": {"epochs": epochs, "seed": seed, "threads": threads}}, environ={})
        started = time.perf_counter()
        report = dsync.sync(root, config, progress=lambda m: None)
        wall = time.perf_counter() - started
    result = report.result
    return {"kind": "dcloop", "seed": seed, "epochs": epochs, "wall_s": wall,
            "train_images_per_s": float(result["images_per_s"]),
            "val_accuracy": float(result["val_accuracy"]), "label_book_accuracy": float(result["test_accuracy"])}


def train_baseline(data: Path, epochs: int, seed: int) -> dict:
    """The recipe as one would write it by hand with torchvision: decode and resize every epoch."""
    from torchvision import datasets, transforms

    mean = torch.tensor(fixed.CAFFE_BGR_MEAN).view(3, 1, 1)
    prepare = transforms.Compose([
        transforms.PILToTensor(),
        transforms.Resize((32, 32), interpolation=transforms.InterpolationMode.BILINEAR, antialias=False),
        transforms.Lambda(lambda x: x.flip(0).float() - mean),  # keras' caffe preprocessing
    ])
    train_set, val_set, book_set = (datasets.ImageFolder(str(data / split), transform=prepare)
                                    for split in ("train", "val", "label_book"))
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(train_set, batch_size=BATCH, shuffle=True)
    model = fixed.build_model("dcai2021", len(train_set.classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    best_accuracy, best_state = -1.0, None
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
        accuracy = evaluate(model, val_set)
        if accuracy > best_accuracy:
            best_accuracy, best_state = accuracy, copy.deepcopy(model.state_dict())
    wall = time.perf_counter() - started
    model.load_state_dict(best_state)
    return {"kind": "baseline", "seed": seed, "epochs": epochs, "wall_s": wall,
            "train_images_per_s": epochs * len(train_set) / wall, "val_accuracy": best_accuracy,
            "label_book_accuracy": evaluate(model, book_set)}


@torch.no_grad()
def evaluate(model, dataset) -> float:
    model.eval()
    correct = 0
    for x, y in torch.utils.data.DataLoader(dataset, batch_size=64):
        correct += int((model(x).argmax(1) == y).sum())
    return correct / len(dataset)


# 2. The ceiling ----------------------------------------------------------------------------------

def ceiling(threads: int, channels_last: bool, seconds: float) -> float:
    """Images/s of forward+backward alone on random tensors, batch 8, the dcai2021 model."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = fixed.build_model("dcai2021", 10).to(memory_format=layout)
    x = torch.randn(BATCH, 3, 32, 32).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (BATCH,))
    try:
        for _ in range(3):
            torch.nn.functional.cross_entropy(model(x), y).backward()
        steps, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            model.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            steps += 1
        return steps * BATCH / (time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous)


def ceilings(seconds: float) -> list[dict]:
    cores = fixed.usable_cores()
    return [{"threads": t, "layout": "channels_last" if cl else "contiguous",
             "images_per_s": ceiling(t, cl, seconds)}
            for t in sorted({1, cores}) for cl in (False, True)]


# 3. The rest of a sync ---------------------------------------------------------------------------

class Stages:
    """Wall time of each stage of dcloop.sync.sync, by wrapping (not replacing) its functions."""

    NAMES = ["pull", "load_images", "materialize", "save_predictions", "changed_since", "train_networks", "score_rows",
             "report_after_sync"]
    MODEL = ["train", "predict"]

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def timed(self, name, function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        return wrapper

    @contextlib.contextmanager
    def installed(self):
        import dcloop.suspicion as suspicion
        saved = [(dsync, n, getattr(dsync, n)) for n in self.NAMES]
        saved += [(fixed, n, getattr(fixed, n)) for n in self.MODEL]
        saved.append((suspicion, "cross_val_proba", suspicion.cross_val_proba))
        for module, name, function in saved:
            setattr(module, name, self.timed(name, function))
        try:
            yield self
        finally:
            for module, name, function in saved:
                setattr(module, name, function)


@contextlib.contextmanager
def image_server(folder: Path):
    """Serve ``folder`` on 127.0.0.1:<free port>; yields the base url and a request counter."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def synthetic_rows(source: pd.DataFrame, n: int, farm: Path, base_url: str, urls: str = "http",
                   train: int = 200, val: int = 100) -> pd.DataFrame:
    """n rows, each its own url (a link to a real image), ``train`` train and ``val`` val, the rest test.

    ``urls``: "http" serves the links from ``base_url``; "local" names them by path, as a table of
    files on one's own disk does (a no-change sync then stats every one).
    """
    rows = []
    for i in range(n):
        real = source.iloc[i % len(source)]
        link = farm / f"{i:06d}.png"
        if not link.exists():
            os.symlink(real["url"], link)
        split = "train" if i < train else "val" if i < train + val else "test"
        url = f"{base_url}/{link.name}" if urls == "http" else str(link)
        rows.append({"url": url, "label": real["label"], "split": split})
    return pd.DataFrame(rows)


SYNC_SETTINGS = {"model": {"epochs": 1}}  # written into dcloop.toml: `dcloop sync` in a process reads the same


def write_settings(root: Path, settings: dict) -> None:
    """Set [section] key = value lines of a project's dcloop.toml (the keys init wrote)."""
    from dcloop.config import toml_value
    lines, current = (root / "dcloop.toml").read_text().splitlines(), None
    for n, line in enumerate(lines):
        if line.startswith("["):
            current = line.strip("[]")
        elif current in settings and line.split("=")[0].strip() in settings[current]:
            key = line.split("=")[0].strip()
            lines[n] = f"{key} = {toml_value(settings[current][key])}"
    (root / "dcloop.toml").write_text("\n".join(lines) + "\n")


class NoCalls:
    """The CSV backend makes no API calls."""

    def reset(self) -> None:
        pass

    def counts(self) -> dict[str, int]:
        return {}


def open_csv(root: Path, rows: pd.DataFrame, work: Path):
    init_project(root, rows)
    return NoCalls()


class SheetCalls:
    """Sheets API calls the emulator answered since the last reset, by kind."""

    def __init__(self, emulator):
        self.emulator = emulator

    def reset(self) -> None:
        self.emulator.reset_counts()

    def counts(self) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for call in self.emulator.calls:
            if call.kind != "token":
                kinds[call.kind] = kinds.get(call.kind, 0) + 1
        return kinds


@functools.cache
def sheets_emulator():
    """The local Sheets API emulator (tests/sheets_emulator.py) with a throwaway service account."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from cryptography.hazmat.primitives.asymmetric import rsa
    from tests.conftest import ACCOUNT
    from tests.sheets_emulator import SheetsEmulator
    emulator = SheetsEmulator()
    emulator.start()
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    emulator.add_account(ACCOUNT, private.public_key())
    return emulator, private


def open_gsheet(root: Path, rows: pd.DataFrame, work: Path):
    """A project whose table is a sheet on the emulator at 127.0.0.1; nothing reaches Google."""
    from dcloop.config import Config
    emulator, private = sheets_emulator()  # puts the repository on sys.path for tests/
    from tests.conftest import ACCOUNT, write_key
    key = emulator.create_spreadsheet(root.name, editors=[ACCOUNT])
    credentials = write_key(work / f"{root.name}-key.json", private, ACCOUNT, emulator.token_uri)
    config = Config(table={"backend": "gsheet", "sheet": key, "credentials": str(credentials),
                           "endpoint": emulator.base_url})
    init_project(root, rows, config=config)
    return SheetCalls(emulator)


# A backend setup takes (project folder, rows, scratch folder), makes the project and returns its
# API-call counter.
BACKENDS = {"csv": open_csv, "gsheet": open_gsheet}


def bench_project(backend_name: str, rows, root: Path, work: Path, settings: dict):
    """A project of ``rows`` at ``root`` on the named backend, with ``settings``: (root, config, call counter)."""
    calls = BACKENDS[backend_name](root, rows, work)
    write_settings(root, settings)
    return root, load_config(root, environ={}), calls


def sync_timings(data: Path, sizes: list[int], backends: list[str], work: Path,
                 urls: str = "http", before: Path | None = None) -> tuple[list[dict], dict]:
    source = rows_from_folder(data)
    farm = work / "images"
    farm.mkdir()
    out, no_change = [], {}
    with image_server(farm) as base_url:
        for backend_name in backends:
            for n in sizes:
                root, config, calls = bench_project(backend_name, synthetic_rows(source, n, farm, base_url, urls),
                                                   work / f"{backend_name}-{n}", work, SYNC_SETTINGS)
                for case in ("cold", "warm"):
                    say(f"sync {backend_name} {n} rows, {case} cache")
                    out.append(timed_sync(root, config, n, case, backend_name, calls))
                if n == max(sizes):
                    no_change[backend_name] = {**no_change_sync(root, config, n, backend_name, calls, before=before),
                                               "urls": urls}
    return out, no_change


NO_CHANGE_SETTINGS = {"model": {"epochs": 1}, "suspicion": {"crossfit": 0}}  # --parts nochange: one short training


def no_change_timings(data: Path, n: int, backends: list[str], work: Path, urls: str = "http",
                      before: Path | None = None) -> dict:
    """--parts nochange: only the no-change sync at ``n`` rows, on a project trained once (1 epoch, one
    network), without part 3's forced syncs."""
    source = rows_from_folder(data)
    farm = work / "images"
    farm.mkdir()
    no_change = {}
    with image_server(farm) as base_url:
        for backend_name in backends:
            root, config, calls = bench_project(backend_name, synthetic_rows(source, n, farm, base_url, urls),
                                               work / f"{backend_name}-{n}", work, NO_CHANGE_SETTINGS)
            say(f"sync {backend_name} {n} rows: the one training")
            assert dsync.sync(root, config).trained
            no_change[backend_name] = {**no_change_sync(root, config, n, backend_name, calls, before=before),
                                       "urls": urls}
    return no_change


def timed_sync(root, config, n, case, backend_name, calls) -> dict:
    stages = Stages()
    calls.reset()
    with stages.installed():
        started = time.perf_counter()
        dsync.sync(root, config, force=True)
        total = time.perf_counter() - started
    model = sum(stages.seconds.get(k, 0.0) for k in ("train", "predict", "cross_val_proba"))
    return {"backend": backend_name, "rows": n, "cache": case, "total_s": total, "model_s": model,
            "rest_s": total - model, **{f"{k}_s": v for k, v in stages.seconds.items()},
            "api_calls": calls.counts()}


def no_change_sync(root, config, n, backend_name, calls, repeats: int = 3, before: Path | None = None) -> dict:
    """A sync that finds nothing changed, each time in a fresh backend (a new process or cron run)."""
    times = []
    for _ in range(repeats):
        calls.reset()
        started = time.perf_counter()
        report = dsync.sync(root, config)
        times.append(time.perf_counter() - started)
        assert not report.trained, report.message
    return {"backend": backend_name, "rows": n, "median_s": float(np.median(times)), "runs_s": times,
            "api_calls": calls.counts(), **no_change_process(root, 5, backend_name != "gsheet", before)}


def no_change_process(root: Path, repeats: int, quick: bool = True, before: Path | None = None) -> dict:
    """`dcloop sync ROOT` as a whole process (a cron run), against a process that only imports pandas.

    Two no-change syncs per round: "full", with no stamp (the sync as it ran before the quick check,
    and as the first run after any change runs), which writes .dcloop/unchanged.json; then "quick",
    which finds nothing can have changed and replays it (dcloop.unchanged). The command is the one
    the dcloop console script runs. The three alternate, so all see the same load; the ratios are
    what compares across runs. A Google Sheet always syncs in full: there "quick" is a full sync too.

    ``before``: a checkout of dcloop's code before the quick check (its repository folder); its
    `dcloop sync` on the same project is timed in turn too ("before").
    """
    from dcloop.unchanged import NOTE, stamp_path

    sync_cmd = [sys.executable, "-c", "from dcloop.cli import cli; cli()", "sync", str(root)]
    pandas_cmd = [sys.executable, "-c", "import pandas"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    commands = [("full", sync_cmd, env), ("quick", sync_cmd, env), ("pandas", pandas_cmd, env)]
    if before is not None:
        here = Path(__file__).resolve().parent.parent
        path = [str(before)] + [p for p in sys.path if p and Path(p).resolve() != here]
        commands.insert(0, ("before", sync_cmd, {**env, "PYTHONPATH": os.pathsep.join(path)}))
    times: dict[str, list[float]] = {name: [] for name, _, _ in commands}
    same_as_before = True
    for _ in range(repeats):
        stamp_path(root).unlink(missing_ok=True)
        out = {}
        for name, command, environ in commands:
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, env=environ)
            times[name].append(time.perf_counter() - started)
            out[name] = done
            assert done.returncode == 0 and (name == "pandas" or "Nothing changed" in done.stdout), done.stderr
        assert NOTE not in out["full"].stderr and (NOTE in out["quick"].stderr) == quick, out["quick"].stderr
        assert out["quick"].stdout == out["full"].stdout
        same_as_before = same_as_before and ("before" not in out or out["before"].stdout == out["full"].stdout)
    figures = {"process_s": float(np.median(times["quick"])), "process_best_s": min(times["quick"]),
               "full_process_s": float(np.median(times["full"])), "full_process_best_s": min(times["full"]),
               "import_pandas_s": float(np.median(times["pandas"])), "import_pandas_best_s": min(times["pandas"]),
               "process_runs_s": times["quick"], "full_process_runs_s": times["full"],
               "import_pandas_runs_s": times["pandas"], "load_avg": os.getloadavg()[0]}
    if before is not None:
        figures.update(before_process_s=float(np.median(times["before"])), before_process_best_s=min(times["before"]),
                       before_process_runs_s=times["before"], before_code=str(before),
                       same_output_as_before=same_as_before)
    return figures


# 4. A busy machine -------------------------------------------------------------------------------

@contextlib.contextmanager
def competitor():
    """One CPU-bound process beside the measurement: a Python busy loop."""
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        process.kill()
        process.wait()


def short_training(threads: int, seconds: float) -> dict:
    """A training on random 32x32 images at batch 8, stopped after ``seconds``: its images/s and
    the seconds before it (auto's timing of 1 thread vs all cores, and building the model)."""
    rng = np.random.default_rng(0)
    pixels, labels = rng.integers(0, 255, (80, 3, 32, 32), dtype=np.uint8), np.arange(80) % 10
    settings = recipe_settings(threads).model_copy(update={"epochs": 10_000, "device": "cpu"})
    started = time.perf_counter()
    trained = fixed.train(pixels, labels, pixels[:0], labels[:0], 10, settings,
                          should_stop=lambda: time.perf_counter() - started > seconds)
    return {"images_per_s": trained.images_per_s, "start_s": time.perf_counter() - started - trained.seconds,
            "threads_used": trained.threads_used, "load_avg": os.getloadavg()[0]}


def busy_machine(seconds: float, repeats: int = 2) -> list[dict]:
    """A short training alone and beside a competitor, under all cores fixed and under auto.

    Alone and beside alternate, ``repeats`` times each; the best of each is kept, as the figure
    least disturbed by load from elsewhere.
    """
    out = []
    for name, threads in (("all cores fixed (old default)", fixed.usable_cores()), ("auto (default)", 0)):
        runs: dict[str, list[dict]] = {"alone": [], "busy": []}
        for n in range(repeats):
            say(f"busy machine: {name}, alone and beside a busy loop ({n + 1}/{repeats})")
            runs["alone"].append(short_training(threads, seconds))
            with competitor():
                runs["busy"].append(short_training(threads, seconds))
        best = {k: max(v, key=lambda r: r["images_per_s"]) for k, v in runs.items()}
        out.append({"setting": name, **best, "runs": runs,
                    "ratio": best["busy"]["images_per_s"] / best["alone"]["images_per_s"]})
    return out


# 5. bfloat16 --------------------------------------------------------------------------------------

def precision_rates(seconds: float) -> list[dict]:
    """Images/s of a training step (batch 8) and of inference (the eval batch) on 1 thread, float32
    against bfloat16 autocast; float32 and bf16 alternate twice, the best of each is kept."""
    out = []
    with torch_threads(1):
        for bf16 in (False, True, False, True):
            out.append({"precision": "bfloat16" if bf16 else "float32", "train_images_per_s": train_rate(bf16, seconds),
                        "predict_images_per_s": predict_rate(bf16, seconds), "load_avg": os.getloadavg()[0]})
    return out


def train_rate(bf16: bool, seconds: float) -> float:
    model = fixed.build_model("dcai2021", 10).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, foreach=True)
    x = torch.randn(BATCH, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,))

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    return rate(step, BATCH, seconds)


@torch.inference_mode()
def predict_rate(bf16: bool, seconds: float) -> float:
    model = fixed.build_model("dcai2021", 10).eval()
    x = torch.randn(fixed.EVAL_BATCH, 3, 32, 32)

    def forward():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x)
    return rate(forward, fixed.EVAL_BATCH, seconds)


def rate(step, images: int, seconds: float) -> float:
    step()  # warm-up: oneDNN builds its kernels on the first call
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        steps += 1
    return steps * images / (time.perf_counter() - started)


# 6. Several networks at once ----------------------------------------------------------------------

CROSSFIT_OFF = {"suspicion": {"crossfit": 0}}


def crossfit_cost(data: Path, rows: int, epochs: int, work: Path, roman_epochs: int | None = None) -> list[dict]:
    """--parts crossfit: what the default cross-fitting networks add to a sync, as the wall time of a forced
    sync with [suspicion] crossfit = 0 and one with the defaults, in turn on the same project.

    Two projects: the Roman numerals as given (train, val, label_book) at the recipe's 100 epochs (or
    ``roman_epochs``: --small), and ``rows`` rows (70% train, 30% val, links to the real images by
    path) at ``epochs``. Both syncs of a project start with its images decoded and cached, so the
    difference is training and scoring; the report each sync writes after it (the first writes every
    thumbnail) is timed apart and left out of the total.
    """
    source = rows_from_folder(data)
    farm = work / "images"
    farm.mkdir(parents=True)
    tables = [("Roman numerals as given", source, roman_epochs),
              (f"{rows} rows", synthetic_rows(source, rows, farm, "", "local", int(0.7 * rows), rows - int(0.7 * rows)),
               epochs)]
    out = []
    for name, table, table_epochs in tables:
        root = work / f"cost-{len(out)}"
        init_project(root, table)
        if table_epochs:
            write_settings(root, {"model": {"epochs": table_epochs}})
        say(f"cost: {name}: decoding the images once")
        warm_images(root)
        for setting, overrides in (("crossfit 0", CROSSFIT_OFF), ("default", {})):
            config = load_config(root, overrides, environ={})
            say(f"cost: {name}: a forced sync, {setting}, {config.model.epochs} epochs")
            stages, load = Stages(), os.getloadavg()[0]
            started = time.perf_counter()
            with stages.installed():
                dsync.sync(root, config, force=True)
            seconds = stages.seconds
            report_s = seconds.get("report_after_sync", 0.0)
            out.append({"table": name, "rows": len(table), "setting": setting, "epochs": config.model.epochs,
                        "total_s": time.perf_counter() - started - report_s, "report_s": report_s,
                        "train_s": seconds.get("train_networks", 0.0), "score_s": seconds.get("score_rows", 0.0),
                        "load_avg": load, "networks": crossfit_networks(config, int((table["split"] == "train").sum()))})
    return out


def warm_images(root: Path) -> None:
    """Fetch and decode a project's images into its cache, as a sync's first stage does, without training."""
    from dcloop.dataset import load_images
    from dcloop.table import validate
    config = load_config(root, environ={})
    checked = validate(dsync.open_backend(config, root).read(), config.project.classes)
    load_images(root, config, checked, lambda message: None)


def crossfit_networks(config, train_rows: int) -> str:
    from dcloop.training import crossfit_shape
    if config.suspicion.crossfit < 2:
        return "main only"
    repeats, epochs = crossfit_shape(config, train_rows)
    return f"main + {config.suspicion.crossfit * repeats} x {epochs} epochs"


def roman_arrays(data: Path) -> dict[str, np.ndarray]:
    """train/ and val/ as uint8 (N, 3, 32, 32) arrays and class codes, decoded as dcloop decodes them."""
    from dcloop.images import decode_one
    out, everything = {}, rows_from_folder(data)
    classes = sorted(everything["label"].unique())
    for split in ("train", "val"):
        rows = everything[everything["split"] == split]
        out[split] = np.stack([decode_one(data / url, 32) for url in rows["url"]])
        out[f"{split}_labels"] = rows["label"].map({c: k for k, c in enumerate(classes)}).to_numpy()
    return out


def networks_at_once(data: Path, epochs: int) -> list[dict]:
    """Wall seconds of K networks (K = 1, 2, 3 seeds on the whole train split, and a default sync's
    set: the main network and 2 cross-fitting ones on half the rows each) trained one after another
    (auto threads, as before) and at once (dcloop.networks), as ratios to one network alone."""
    from dcloop import networks
    from dcloop.config import Config
    from dcloop.training import crossfit_plan
    arrays = roman_arrays(data)
    settings = recipe_settings(0).model_copy(update={"epochs": epochs, "device": "cpu"})

    def seeds(k: int) -> list:
        return [networks.Job(f"seed {n}", arrays["train"], arrays["train_labels"], arrays["val"], arrays["val_labels"],
                             10, settings.model_copy(update={"seed": settings.seed + n})) for n in range(k)]

    pixels = np.concatenate([arrays["train"], arrays["val"]])
    labels = np.concatenate([arrays["train_labels"], arrays["val_labels"]])
    splits = np.array(["train"] * len(arrays["train"]) + ["val"] * len(arrays["val"]))
    config = Config(model=settings)
    config.project.classes = [str(k) for k in range(10)]
    crossfit_jobs, _ = crossfit_plan(config, pixels, labels, splits)
    sets = [("1 network", seeds(1)), ("2 networks (seeds)", seeds(2)), ("3 networks (seeds)", seeds(3)),
            ("a default sync's: main + 2 cross-fitting", seeds(1) + crossfit_jobs)]
    out = []
    for name, jobs in sets:
        row = {"networks": name, "k": len(jobs), "load_avg": os.getloadavg()[0]}
        for how, threshold in (("one_after_another", 10 ** 15), ("at_once", networks.MIN_WORK_IN_PROCESSES)):
            if len(jobs) == 1 and how == "at_once":
                continue
            say(f"networks: {name}, {how.replace('_', ' ')}, {epochs} epochs")
            networks.MIN_WORK_IN_PROCESSES = threshold
            started = time.perf_counter()
            trained = networks.train_all(jobs, lambda m: None, lambda: False)
            row[f"{how}_s"] = time.perf_counter() - started
            row[f"{how}_threads"] = ",".join(t.threads_used for t in trained)
        networks.MIN_WORK_IN_PROCESSES = threshold
        out.append(row)
    one = out[0]["one_after_another_s"]
    for row in out:
        row["one_after_another_x"] = row["one_after_another_s"] / one
        row["at_once_x"] = row.get("at_once_s", one) / one
    return out


# The run and its table ---------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder with train/, val/, label_book/")
    parser.add_argument("--small", action="store_true", help="a ~2 minute version: 1 seed, 2 epochs, small tables")
    parser.add_argument("--epochs", type=int,
                        help="training epochs (default 10, so the suite fits in 30 minutes on 2 cores; 2 with --small)")
    parser.add_argument("--seeds", type=int, help="seeds per training path (default 2; 1 with --small)")
    parser.add_argument("--rows", help="table sizes, comma-separated (default 1000,3000,10000)")
    parser.add_argument("--backends", default="csv,gsheet", help=f"comma-separated, of: {', '.join(BACKENDS)}")
    parser.add_argument("--urls", choices=["http", "local"], default="http",
                        help="the synthetic tables' image urls: served from 127.0.0.1, or local paths")
    parser.add_argument("--threads", type=int, default=0,
                        help="dcloop's [model] threads (0: auto, timed at the start; N pinned); the baseline uses the count it starts with")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    parser.add_argument("--before", type=Path,
                        help="with the sync or nochange part: a checkout of dcloop before the quick check, whose "
                             "no-change `dcloop sync` is timed in turn with this one's")
    parser.add_argument("--keep-projects", type=Path,
                        help="with the crossfit part: make its projects in this new folder and keep them (the Roman "
                             "project's labels.csv can then be scored with scripts/score_against_review.py)")
    parser.add_argument("--json-out", type=Path, default=Path("bench.json"))
    args = parser.parse_args()
    if args.keep_projects and args.keep_projects.exists():
        parser.error(f"--keep-projects {args.keep_projects}: already exists; name a new folder")
    epochs = args.epochs or (2 if args.small else 10)
    seeds = args.seeds or (1 if args.small else 2)
    sizes = [int(s) for s in (args.rows or ("300,1000" if args.small else "1000,3000,10000")).split(",")]
    parts = args.parts.split(",")
    figures = {"machine": machine(), "epochs": epochs, "batch_size": BATCH}

    if "training" in parts:
        say("ceiling: raw forward+backward on random tensors")
        figures["ceiling"] = ceilings(2.0 if args.small else 5.0)
        threads = fixed.pick_threads(recipe_settings(args.threads), 10, torch.device("cpu"))
        figures["threads"] = threads
        runs = []
        for seed in range(1, seeds + 1):
            say(f"training dcloop, seed {seed}, {epochs} epochs")
            runs.append(train_dcloop(args.data, epochs, seed, threads))
            say(f"training the torchvision baseline, seed {seed}, {epochs} epochs, {threads} thread(s)")
            with torch_threads(threads):
                runs.append(train_baseline(args.data, epochs, seed))
        figures["training"] = runs
        figures["ceiling"] += [dict(c, when="after") for c in ceilings(2.0 if args.small else 5.0)]
    if "sync" in parts:
        with tempfile.TemporaryDirectory(prefix="bench-sync-") as folder:
            figures["sync"], figures["no_change"] = sync_timings(args.data, sizes, args.backends.split(","),
                                                                 Path(folder), args.urls, args.before)
    if "nochange" in parts:
        with tempfile.TemporaryDirectory(prefix="bench-nochange-") as folder:
            figures["no_change"] = no_change_timings(args.data, max(sizes), args.backends.split(","), Path(folder),
                                                     args.urls, args.before)
    if "busy" in parts:
        figures["busy"] = busy_machine(6.0 if args.small else 15.0)
    if "precision" in parts:
        say("float32 vs bfloat16 autocast, 1 thread")
        figures["precision"] = precision_rates(2.0 if args.small else 4.0)
    if "networks" in parts:
        figures["networks"] = networks_at_once(args.data, epochs)
    if "crossfit" in parts:
        with contextlib.ExitStack() as stack:
            folder = args.keep_projects or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-crossfit-")))
            figures["crossfit"] = crossfit_cost(args.data, max(sizes), epochs, folder,
                                                epochs if args.small else None)
    args.json_out.write_text(json.dumps(figures, indent=2) + "\n")
    print(report(figures))
    say(f"figures written to {args.json_out}")


PARTS = ["training", "sync", "busy", "precision", "networks"]
# and, only when named: "nochange" (part 3's no-change sync alone), "crossfit" (what cross-fitting adds to a
# sync: two recipe-length trainings of the Roman numerals, about 30 minutes on 2 cores)


def recipe_settings(threads: int = 0):
    """The default [model] settings (the recipe), with a thread setting to resolve."""
    from dcloop.config import ModelSection
    return ModelSection(threads=threads)


@contextlib.contextmanager
def torch_threads(n: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def machine() -> dict:
    return {"cores": fixed.usable_cores(), "torch": torch.__version__, "load_avg_start": os.getloadavg()[0],
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def report(f: dict) -> str:
    lines = [f"machine: {f['machine']['cores']} cores, torch {f['machine']['torch']}, "
             f"load average at start {f['machine']['load_avg_start']:.1f}", ""]
    if "training" in f:
        lines += training_report(f)
    if "sync" in f or "no_change" in f:
        lines += sync_report(f)
    if "busy" in f:
        lines += busy_report(f["busy"])
    if "precision" in f:
        lines += precision_report(f["precision"], f["machine"])
    if "networks" in f:
        lines += networks_report(f["networks"], f["epochs"])
    if "crossfit" in f:
        lines += crossfit_report(f["crossfit"])
    return "\n".join(lines)


def training_report(f: dict) -> list[str]:
    lines = [f"dcloop trained with {f['threads']} thread(s); {f['epochs']} epochs, batch {f['batch_size']}"]
    runs = pd.DataFrame(f["training"])
    lines.append("training        seed  wall s   img/s   val   label_book")
    for r in runs.itertuples():
        lines.append(f"{r.kind:<14}{r.seed:>6}{r.wall_s:>8.1f}{r.train_images_per_s:>8.0f}"
                     f"{r.val_accuracy:>7.3f}{r.label_book_accuracy:>9.3f}")
    mean = runs.groupby("kind")[["wall_s", "train_images_per_s", "val_accuracy", "label_book_accuracy"]].mean()
    if {"dcloop", "baseline"} <= set(mean.index):
        # img/s of both counts the training loop with its per-epoch validation; dcloop's wall is a
        # whole sync (first decode, prediction, cross-validation, write-back, report), the baseline's
        # its training loop only, so at few epochs the wall ratio mostly measures the sync's fixed costs.
        speed = mean.loc["dcloop", "train_images_per_s"] / mean.loc["baseline", "train_images_per_s"]
        wall = mean.loc["baseline", "wall_s"] / mean.loc["dcloop", "wall_s"]
        lines.append(f"dcloop vs baseline: training {speed:.2f}x the images/s; whole sync vs training loop "
                     f"wall {wall:.2f}x; val {mean.loc['dcloop', 'val_accuracy']:.3f} vs "
                     f"{mean.loc['baseline', 'val_accuracy']:.3f}, label_book "
                     f"{mean.loc['dcloop', 'label_book_accuracy']:.3f} vs {mean.loc['baseline', 'label_book_accuracy']:.3f}")
    lines += ["", "ceiling (fwd+bwd, random tensors, batch 8)  threads  layout          img/s"]
    for c in f["ceiling"]:
        lines.append(f"{'  after training' if c.get('when') else '  before training':<44}{c['threads']:>7}  "
                     f"{c['layout']:<14}{c['images_per_s']:>7.0f}")
    best = max(c["images_per_s"] for c in f["ceiling"])
    if "dcloop" in mean.index:
        lines.append(f"dcloop's training (optimizer and per-epoch validation included): "
                     f"{100 * mean.loc['dcloop', 'train_images_per_s'] / best:.0f}% of the best ceiling")
    return lines + [""]


def sync_report(f: dict) -> list[str]:
    lines = ["sync without training  rows  cache   total s  model s  rest s  rest per 1k rows  API calls"] \
        if "sync" in f else []
    for s in f.get("sync", []):
        lines.append(f"  {s['backend']:<20}{s['rows']:>6}  {s['cache']:<6}{s['total_s']:>8.1f}{s['model_s']:>9.1f}"
                     f"{s['rest_s']:>8.2f}{1000 * s['rest_s'] / s['rows']:>10.2f}  {call_summary(s['api_calls'])}")
    for nc in f["no_change"].values():
        lines.append(f"no-change sync, {nc['rows']} rows ({nc['backend']}, {nc.get('urls', 'http')} urls): in process "
                     f"median {nc['median_s']:.2f} s  {call_summary(nc['api_calls'])}")
        runs = len(nc.get("process_runs_s", [])) or "some"
        if "full_process_s" in nc:  # since the quick check: both kinds of process, best and median of each
            lines.append(f"  as a whole process (`dcloop sync`, target < 1 s), best / median of {runs} rounds: "
                         f"quick check {nc['process_best_s']:.2f} / {nc['process_s']:.2f} s, full sync "
                         f"{nc['full_process_best_s']:.2f} / {nc['full_process_s']:.2f} s "
                         f"({nc['full_process_best_s'] / nc['process_best_s']:.1f}x the quick check's best); "
                         f"`import pandas` {nc['import_pandas_best_s']:.2f} / {nc['import_pandas_s']:.2f} s "
                         f"(load average {nc['load_avg']:.1f})")
            if "before_process_s" in nc:
                lines.append(f"  the code before the quick check ({nc['before_code']}): {nc['before_process_best_s']:.2f} / "
                             f"{nc['before_process_s']:.2f} s, {nc['before_process_best_s'] / nc['process_best_s']:.1f}x "
                             f"the quick check's best; same output: {nc['same_output_as_before']}")
        else:
            lines.append(f"  as a whole process (`dcloop sync`, target < 1 s): median {nc['process_s']:.2f} s of "
                         f"{runs} runs, {nc['process_s'] / nc['import_pandas_s']:.2f}x a process that imports "
                         f"pandas ({nc['import_pandas_s']:.2f} s; load average {nc['load_avg']:.1f})")
    return lines + [""]


def busy_report(busy: list[dict]) -> list[str]:
    lines = ["busy machine: a short training, batch 8   alone img/s  beside a busy loop  ratio  threads used, "
             "start-up s, load average (alone; beside)"]
    for b in busy:
        a, c = b["alone"], b["busy"]
        lines.append(f"  {b['setting']:<38}{a['images_per_s']:>11.1f}{c['images_per_s']:>20.1f}{b['ratio']:>7.2f}  "
                     f"{a['threads_used']}, {a['start_s']:.1f}, {a['load_avg']:.1f}; "
                     f"{c['threads_used']}, {c['start_s']:.1f}, {c['load_avg']:.1f}")
    return lines


def precision_report(runs: list[dict], machine: dict) -> list[str]:
    best = pd.DataFrame(runs).groupby("precision")[["train_images_per_s", "predict_images_per_s"]].max()
    ratio = best.loc["bfloat16"] / best.loc["float32"]
    return ["", f"bfloat16 autocast vs float32, 1 thread (CPU capability {machine['cpu_capability']}): "
            f"training at batch 8 {best.loc['float32', 'train_images_per_s']:.0f} vs "
            f"{best.loc['bfloat16', 'train_images_per_s']:.0f} img/s ({ratio['train_images_per_s']:.2f}x), "
            f"prediction at batch {fixed.EVAL_BATCH} {best.loc['float32', 'predict_images_per_s']:.0f} vs "
            f"{best.loc['bfloat16', 'predict_images_per_s']:.0f} img/s ({ratio['predict_images_per_s']:.2f}x); "
            f"load average {runs[0]['load_avg']:.1f}-{runs[-1]['load_avg']:.1f}"]


def networks_report(rows: list[dict], epochs: int) -> list[str]:
    lines = ["", f"several networks, {epochs} epochs each: wall s (x one network alone)   one after another   "
             "at once (threads per network)   load average"]
    for r in rows:
        at_once = (f"{r['at_once_s']:>7.1f} ({r['at_once_x']:.2f}x) [{r['at_once_threads']}]"
                   if "at_once_s" in r else f"{'-':>7}")
        lines.append(f"  {r['networks']:<42}{r['one_after_another_s']:>7.1f} ({r['one_after_another_x']:.2f}x)   "
                     f"{at_once}   {r['load_avg']:.1f}")
    return lines


def crossfit_report(rows: list[dict]) -> list[str]:
    lines = ["", "what cross-fitting adds to a forced sync    setting     networks                 "
             "train s  score s  total s (report apart)  load average"]
    for r in rows:
        lines.append(f"  {r['table']:<28}{r['epochs']:>4} ep  {r['setting']:<12}{r['networks']:<25}"
                     f"{r['train_s']:>7.0f}{r['score_s']:>9.1f}{r['total_s']:>9.0f} ({r['report_s']:.0f})        {r['load_avg']:.1f}")
    for off, on in zip(rows[::2], rows[1::2]):
        lines.append(f"  {on['table']}: the default adds {on['total_s'] - off['total_s']:.0f} s to the sync, "
                     f"{on['total_s'] / off['total_s']:.2f}x the sync without cross-fitting "
                     f"(training {on['train_s'] / off['train_s']:.2f}x, scoring {on['score_s'] / max(off['score_s'], 1e-9):.2f}x)")
    return lines


def call_summary(calls: dict[str, int]) -> str:
    return f"{sum(calls.values())} ({', '.join(f'{k} {v}' for k, v in sorted(calls.items()))})" if calls else "-"


if __name__ == "__main__":
    main()
