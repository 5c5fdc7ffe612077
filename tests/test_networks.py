"""A sync's networks trained at once (dcloop.networks): where each trains, and the same weights as one by one."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dcloop import model as fixed
from dcloop import networks
from dcloop.config import ModelSection
from dcloop.errors import DcloopError
from dcloop.networks import Job, processes_for, train_all

SETTINGS = ModelSection(epochs=2, batch_size=8, image_size=16, device="cpu", threads=0)


def job(name="main", rows=40, settings=SETTINGS, seed=0) -> Job:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (rows, 3, 16, 16), dtype=np.uint8)
    return Job(name, pixels, np.arange(rows) % 3, pixels[:12], np.arange(12) % 3, 3, settings)


def test_where_the_networks_train():
    big = ModelSection(epochs=100)
    three = [job(settings=big), job("seed 2/2", settings=big), job("cross-fitting network 1/2", settings=big)]
    assert processes_for(three, cores=2, on_cpu=True) == 2  # one per core
    assert processes_for(three, cores=16, on_cpu=True) == 3  # one per network
    assert processes_for(three[:1], cores=2, on_cpu=True) == 0  # one network: here, on the auto thread count
    assert processes_for(three, cores=1, on_cpu=True) == 0
    assert processes_for(three, cores=2, on_cpu=False) == 0  # a GPU trains them one after another
    pinned = [job(settings=big.model_copy(update={"threads": 2})) for _ in range(3)]
    assert processes_for(pinned, cores=2, on_cpu=True) == 0  # a pinned count of 2+ threads is kept
    one = [job(settings=big.model_copy(update={"threads": 1})) for _ in range(3)]
    assert processes_for(one, cores=2, on_cpu=True) == 2  # threads = 1 is what each worker uses anyway
    tiny = [job(rows=10, settings=ModelSection(epochs=2)) for _ in range(3)]
    assert processes_for(tiny, cores=2, on_cpu=True) == 0  # not worth starting processes for


def test_the_longest_training_starts_first():
    assert job(rows=100).work > job(rows=40).work
    assert job(settings=ModelSection(epochs=100)).work == 100 * job(settings=ModelSection(epochs=1)).work


@pytest.mark.training
def test_networks_trained_at_once_have_the_weights_of_networks_trained_one_by_one(monkeypatch):
    monkeypatch.setattr(networks, "MIN_WORK_IN_PROCESSES", 0)
    jobs = [job("main", rows=48, seed=1), job("cross-fitting network 1/2", rows=24, seed=2),
            job("cross-fitting network 2/2", rows=24, seed=3)]
    said = []
    together = train_all(jobs, said.append, lambda: False)
    assert "training 3 networks at once: 2 processes of one thread each" in said
    assert any(m.startswith("cross-fitting network 2/2: epoch 2/2") for m in said)  # the workers' progress
    one_thread = [networks.job_with(j, threads=1) for j in jobs]
    monkeypatch.setattr(networks, "MIN_WORK_IN_PROCESSES", 10 ** 12)
    one_by_one = train_all(one_thread, lambda m: None, lambda: False)
    for a, b, j in zip(together, one_by_one, jobs):
        assert a.threads_used == b.threads_used == "1"
        assert a.best_epoch == b.best_epoch and len(a.history) == 2
        assert np.allclose(fixed.predict(a.model, j.pixels)[0], fixed.predict(b.model, j.pixels)[0], atol=1e-5)
        assert np.allclose(a.train_dynamics, b.train_dynamics, atol=1e-5)


@pytest.mark.training
def test_a_stop_ends_every_worker_after_its_epoch(monkeypatch):
    monkeypatch.setattr(networks, "MIN_WORK_IN_PROCESSES", 0)
    long = SETTINGS.model_copy(update={"epochs": 1000})
    trained = train_all([job(settings=long), job("other", settings=long)], lambda m: None, lambda: True)
    assert all(t is None or len(t.history) <= 2 for t in trained)


class DiesWhenUnpickled:
    """Stands for a worker killed by the system: unpickling it in the worker ends the process."""

    def __reduce__(self):
        return os._exit, (3,)


@pytest.mark.training
def test_a_worker_that_dies_is_an_error_not_a_wait(monkeypatch):
    monkeypatch.setattr(networks, "MIN_WORK_IN_PROCESSES", 0)
    dying = job()
    dying.labels = DiesWhenUnpickled()
    with pytest.raises(DcloopError, match="a training process ended without a result"):
        train_all([dying, job("other")], lambda m: None, lambda: False)


KILLED_SYNC = """
import sys
import numpy as np
from dcloop import networks
from dcloop.config import ModelSection
networks.MIN_WORK_IN_PROCESSES = 0
pixels = np.zeros((16, 3, 16, 16), np.uint8)
settings = ModelSection(epochs=10 ** 6, batch_size=8, image_size=16, device="cpu")
jobs = [networks.Job(str(n), pixels, np.arange(16) % 2, pixels, np.arange(16) % 2, 2, settings) for n in range(2)]
networks.train_all(jobs, lambda message: print(message, flush=True), lambda: False)
"""


def children_of(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


@pytest.mark.training
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_workers_end_when_the_sync_that_started_them_is_killed():
    sync = subprocess.Popen([sys.executable, "-c", KILLED_SYNC], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    try:
        for line in sync.stdout:  # a worker trains: its first epoch was said
            if ": epoch 1/" in line:
                break
        workers = children_of(sync.pid)
        assert workers
    finally:
        sync.kill()
        sync.wait()
    deadline = time.monotonic() + 30
    while workers and time.monotonic() < deadline:
        workers = {pid for pid in workers if Path(f"/proc/{pid}").exists()
                   and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()}
        time.sleep(0.2)
    assert not workers, "training processes outlived the sync that started them"
