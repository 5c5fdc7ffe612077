"""Image hosts that fail: each failing url becomes an unreadable row for this cycle, in bounded time."""

import json
import socket
import threading
import time

import pandas as pd
import pytest

from dcloop.images import HOST_FAILURE_LIMIT, ImageStore
from dcloop.sync import sync
from tests.conftest import split_rows, write_digits
from tests.test_sync import labels, results
from tests.unattended import one_torch_thread  # noqa: F401


@pytest.fixture
def silent_host():
    """A host on 127.0.0.1 that accepts connections and never answers; counts the connections."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    server.close()
    for conn in accepted:
        conn.close()


def store(tmp_path, **settings):
    return ImageStore(tmp_path, tmp_path / "cache", **settings)


def test_a_500_is_retried_then_flagged_and_a_404_is_not_retried(tmp_path, image_host):
    base, _, server = image_host
    fetched = store(tmp_path, timeout_s=2).fetch([f"{base}/status/500", f"{base}/status/404"])
    assert fetched[f"{base}/status/500"].error == "http 500"
    assert fetched[f"{base}/status/404"].error == "http 404"
    assert server.requests.count("/status/500") == 3 and server.requests.count("/status/404") == 1


def test_an_endless_body_stops_at_the_size_limit_without_retrying(tmp_path, image_host):
    base, _, server = image_host
    fetched = store(tmp_path, timeout_s=2, max_bytes=2 * 2**20).fetch([f"{base}/endless"])
    assert fetched[f"{base}/endless"].error == "body over 2 MiB"
    assert server.requests == ["/endless"]


def test_a_host_that_never_answers_costs_a_few_timeouts_not_a_few_per_url(tmp_path, silent_host):
    base, accepted = silent_host
    urls = [f"{base}/img{n}.png" for n in range(20)]
    started = time.monotonic()
    fetched = store(tmp_path, timeout_s=0.3).fetch(urls)
    assert all(not fetched[u].ok for u in urls)
    assert any("ReadTimeout" in fetched[u].error for u in urls)
    # 8 threads start at once; once HOST_FAILURE_LIMIT urls failed the rest are skipped, not tried 3 times each.
    assert len(accepted) <= 8 + HOST_FAILURE_LIMIT < 3 * len(urls)
    assert time.monotonic() - started < 15  # the fixture's /hang would hold a fetch for 30 s


@pytest.mark.training
def test_a_host_that_is_down_flags_its_rows_and_the_sync_trains_on_the_rest(make_project, config_of, image_host,
                                                                             tmp_path, one_torch_thread):
    base, www, server = image_host
    rows = split_rows(write_digits(tmp_path / "proj" / "images", per_class=6))
    failing = rows.iloc[:3].assign(url=[f"{base}/status/500", f"{base}/hang", f"{base}/endless"], split="train")
    root = make_project(pd.concat([rows, failing], ignore_index=True), {"images": {"timeout_s": 0.5}})
    report = sync(root, config_of(root))
    assert report.trained
    flags = dict(zip(labels(root)["url"], labels(root)["flags"]))
    assert flags[f"{base}/status/500"] == "unreadable: http 500"
    assert flags[f"{base}/hang"].startswith("unreadable: fetch failed: ") and "timed out" in flags[f"{base}/hang"]
    assert flags[f"{base}/endless"] == "unreadable: body over 50 MiB"
    assert results(root)["rows_train"].iloc[0] == str((rows["split"] == "train").sum())
    assert json.loads((root / ".dcloop/cache/urls.json").read_text()) == {}  # not cached: the next cycle retries
    before = len(server.requests)
    sync(root, config_of(root))
    assert len(server.requests) > before
