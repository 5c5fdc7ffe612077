"""Time the review page's first suspect for a project of N rows (default 10,000), without training.

    python scripts/bench_review.py [--rows 10000] [--keep DIR] [--browser [--decide N]] [--json]

The table cycles over the quickstart's 1,797 digit images, each written again with one pixel changed
so that every row has its own image. What a sync leaves is laid down synthetically: prediction,
confidence, suspicion and flags in the table (2% of rows flagged label?), and the run's
predictions.npz with probabilities and 256-wide embeddings (the map is PCA, as with [report] map = "pca").

The figure is what a browser fetches before the first suspect shows, in order, over HTTP from a
server started on the project: the page, its script and style, api/state (the table read, the
suspects ranked, every row sent), the first suspect's neighbours and its large image. It is
measured twice: cold (no thumbnail made yet) and warm. With --browser, headless Chromium (through
the system's chromedriver) also loads the page until the first image is shown, and with --decide N
presses k N times: decisions per minute at machine speed (WebDriver's key events, not a person).
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from dcloop import review_page as rp
from dcloop.backends.csv import render_csv
from dcloop.config import STATE_DIR, load_config
from dcloop.history import write_json
from dcloop.project import init_project
from dcloop.quickstart import digit_rows


def project(folder: Path, rows: int, seed: int) -> Path:
    """A project of ``rows`` distinct digit images with a synthetic last run."""
    rng = np.random.default_rng(seed)
    source, _ = digit_rows(folder / "digits")
    picked = source.iloc[np.arange(rows) % len(source)].reset_index(drop=True)
    root = folder / "project"
    (root / "images").mkdir(parents=True)
    urls = []
    for n, url in enumerate(picked["url"]):
        pixels = np.array(Image.open(folder / "digits" / Path(url).name).convert("L"))
        pixels.flat[n % pixels.size] ^= 1 + n % 7
        Image.fromarray(pixels).save(root / "images" / f"img-{n:05d}.png")
        urls.append(f"images/img-{n:05d}.png")
    picked["url"] = urls
    config, table = init_project(root, picked[["url", "label", "split"]])[:2]
    classes = config.project.classes
    k, n = len(classes), len(table)
    codes = table["label"].map({c: i for i, c in enumerate(classes)}).fillna(0).astype(int).to_numpy()
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), codes] += 3
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    suspicion = 1 - proba[np.arange(n), codes]
    flagged = suspicion > np.quantile(suspicion, 0.98)
    predicted = proba.argmax(1)
    table["prediction"] = [classes[p] for p in predicted]
    table["confidence"] = [f"{c:.3f}" for c in proba.max(1)]
    table["suspicion"] = [f"{s:.3f}" for s in suspicion]
    table["flags"] = [f"label? model says {classes[p]} ({c:.2f})" if f else ""
                      for p, c, f in zip(predicted, proba.max(1), flagged)]
    table = table.iloc[np.argsort(-suspicion, kind="stable")]
    (root / config.table.path).write_bytes(render_csv(table))
    run = root / STATE_DIR / "runs" / "bench0001"
    run.mkdir(parents=True)
    embeddings = rng.normal(size=(k, 256))[codes] * 3 + rng.normal(size=(n, 256))
    np.savez(run / "predictions.npz", ids=table["id"].to_numpy(str), labels=table["label"].to_numpy(str),
             splits=table["split"].to_numpy(str), proba=proba.astype(np.float32),
             embeddings=embeddings.astype(np.float32))
    write_json(root / STATE_DIR / "last_trained.json", {"run_id": "bench0001"})
    return root


def get(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", path)
    answer = connection.getresponse()
    body = answer.read()
    connection.close()
    if answer.status != 200:
        raise RuntimeError(f"GET {path}: {answer.status} {body[:200]!r}")
    return body


def first_suspect(server) -> tuple[float, float, int]:
    """Wall and CPU seconds (this process: server and client) for what a browser fetches before the
    first suspect shows; and the state's size."""
    port, base = server.server_address[1], f"/{server.token}/"
    started, cpu = time.perf_counter(), time.process_time()
    for name in ("", "review.js", "review.css"):
        get(port, base + name)
    state = get(port, base + "api/state")
    first = json.loads(state)
    row_id = first["id"][first["queue"][0]]
    get(port, base + f"api/item/{row_id}")
    get(port, base + f"img/{row_id}/large")
    return time.perf_counter() - started, time.process_time() - cpu, len(state)


def in_browser(url: str, profile: Path, decide: int) -> tuple[float, float | None]:
    """Seconds from navigation until the first suspect's image is shown, in headless Chromium; then,
    with ``decide``, keep decisions per minute: 'k' pressed that many times as fast as WebDriver sends
    keys, until the last one is written (machine speed, not a person's)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
    try:
        driver.get("about:blank")
        started = time.perf_counter()
        driver.get(url)
        while not driver.execute_script("var i = document.getElementById('image');"
                                        "return i && i.complete && i.naturalWidth > 0;"):
            time.sleep(0.01)
        first = time.perf_counter() - started
        if not decide:
            return first, None
        started = time.perf_counter()
        for _ in range(decide):
            ActionChains(driver).send_keys("k").perform()
        time.sleep(0.05)
        while driver.execute_script("return document.body.getAttribute('data-pending')") != "0":
            time.sleep(0.01)
        return first, decide / ((time.perf_counter() - started) / 60)
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="build the project in this folder and keep it (reused)")
    parser.add_argument("--browser", action="store_true", help="also time headless Chromium")
    parser.add_argument("--decide", type=int, default=0, metavar="N",
                        help="with --browser: press k N times and report decisions per minute (machine speed)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dcloop-bench-review-") as scratch:
        folder = Path(args.keep or scratch)
        root = folder / "project"
        if not (root / "dcloop.toml").exists():
            print(f"writing {args.rows} distinct images and a synthetic run", file=sys.stderr)
            folder.mkdir(parents=True, exist_ok=True)
            root = project(folder, args.rows, args.seed)
        shutil.rmtree(root / STATE_DIR / "cache" / "thumbs", ignore_errors=True)
        config = load_config(root)
        started = time.perf_counter()
        server = rp.start(root, config)
        start_s = time.perf_counter() - started
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            while not server.review.files:  # the background search of every row's image, not racing the figure
                time.sleep(0.05)
            cold, cold_cpu, state_bytes = first_suspect(server)
            warm, warm_cpu, _ = first_suspect(server)
            browser, per_minute = (in_browser(server.url, Path(scratch) / "profile", args.decide) if args.browser
                                   else (None, None))
        finally:
            server.shutdown()
            server.close()
        rows = len(pd.read_csv(root / config.table.path, dtype=str))
    figures = {"rows": rows, "server_start_s": round(start_s, 2), "first_suspect_cold_s": round(cold, 3),
               "first_suspect_cold_cpu_s": round(cold_cpu, 3), "first_suspect_warm_s": round(warm, 3),
               "first_suspect_warm_cpu_s": round(warm_cpu, 3), "state_kib": state_bytes // 1024,
               **({"browser_first_image_s": round(browser, 3)} if browser is not None else {}),
               **({"keyboard_decisions_per_minute": round(per_minute)} if per_minute else {})}
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:<30}{value}")


if __name__ == "__main__":
    main()
