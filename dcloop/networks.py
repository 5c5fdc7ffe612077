"""Training a sync's networks at once: the main one, its extra seeds and the cross-fitting ones.

At batch 8 one training is bound by per-op overhead, not arithmetic: a second thread adds about 15%
to it, while a second process with one thread of its own trains a second network at nearly full
speed. So on a CPU with 2+ cores, under ``[model] threads = 0`` (auto) or 1, a sync's networks
train as processes of one thread each, at most one per usable core, the longest first so the short
ones fill the other cores. A count pinned above 1, a GPU, one core or work too small to be worth a
process's start (importing torch: 2-3 s) train them one after another in this process, as before.

One thread per network keeps the weights reproducible: a network trained in a worker has the same
weights as one trained here with ``threads = 1`` (same data, settings and seed).

torch stays in dcloop.model; this module only decides where each training runs and gathers them.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import DcloopError
from .progress import Progress

# Image passes (rows x epochs, validation included) below which the networks train one after
# another here: about 10 s of training at 1 thread, where starting worker processes (2-3 s each,
# on the same cores) would cost more than it saves.
MIN_WORK_IN_PROCESSES = 10_000
POLL_S = 0.5  # how often the parent forwards progress and looks for a stop request
ORPHAN_CHECK_S = 1.0  # how often a worker looks whether the sync that started it is still there


@dataclass
class Job:
    """One network to train: its rows, its validation rows and the [model] settings (seed included)."""

    name: str  # said in progress: "main", "seed 2/3 (seed 124)", "cross-fitting network 1/2"
    pixels: np.ndarray
    labels: np.ndarray
    val_pixels: np.ndarray
    val_labels: np.ndarray
    num_classes: int
    settings: object  # config.ModelSection

    @property
    def work(self) -> int:
        """Image passes: what its training costs, to start the longest first."""
        return (len(self.pixels) + len(self.val_pixels)) * self.settings.epochs


def processes_for(jobs: list[Job], cores: int, on_cpu: bool) -> int:
    """How many worker processes train ``jobs``: 0 means one after another in this process."""
    if len(jobs) < 2 or not on_cpu or cores < 2 or jobs[0].settings.threads > 1:
        return 0
    if sum(job.work for job in jobs) < MIN_WORK_IN_PROCESSES:
        return 0
    return min(cores, len(jobs))


def train_all(jobs: list[Job], progress: Progress, should_stop: Callable[[], bool]) -> list:
    """Train every job; the list of ``model.Trained`` in the jobs' order.

    Once ``should_stop()`` is true every training ends after its current epoch and the ones not
    started are skipped (None in their place): the caller stops the cycle (training.stop_if).
    """
    from . import model as fixed
    on_cpu = fixed.pick_device(jobs[0].settings.device).type == "cpu" if jobs else True
    workers = processes_for(jobs, fixed.usable_cores(), on_cpu)
    if not workers:
        return [None if should_stop() else train_here(job, progress, should_stop) for job in jobs]
    progress(f"training {len(jobs)} networks at once: {workers} processes of one thread each")
    return train_in_processes(jobs, workers, progress, should_stop)


def train_here(job: Job, progress: Progress, should_stop: Callable[[], bool]):
    from . import model as fixed
    if job.name != "main":
        progress(f"{job.name}: training on {len(job.pixels)} rows")
    return fixed.train(job.pixels, job.labels, job.val_pixels, job.val_labels, job.num_classes, job.settings,
                       progress, should_stop)


def train_in_processes(jobs: list[Job], workers: int, progress: Progress, should_stop: Callable[[], bool]) -> list:
    from . import model as fixed
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools mid-use
    messages, stop = context.Queue(), context.Event()
    one_thread = [job_with(job, threads=1) for job in jobs]
    longest_first = sorted(range(len(jobs)), key=lambda n: -jobs[n].work)
    pids: list[int] = []
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=start_worker,
                               initargs=(messages, stop, os.getpid()))
    try:
        futures = {pool.submit(train_in_worker, one_thread[n]): n for n in longest_first}
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            forward(messages, progress, pids)
            if should_stop():
                stop.set()
        forward(messages, progress, pids)
        trained: list = [None] * len(jobs)
        for future, n in futures.items():
            packed = future.result()
            trained[n] = None if packed is None else fixed.from_bytes(packed)
        return trained
    except BrokenProcessPool as e:
        end_workers(stop, messages, progress, pids)  # the pool waits for them, and they for it: end them
        raise DcloopError("a training process ended without a result (killed by the system, perhaps for "
                          "memory?); nothing was written. Set [model] threads = 2 in dcloop.toml to train "
                          "the networks one after another in one process.") from e
    except BaseException:
        end_workers(stop, messages, progress, pids)  # a second Ctrl-C or an error here: now, not after training
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def end_workers(stop, messages, progress: Progress, pids: list[int]) -> None:
    stop.set()
    forward(messages, progress, pids)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:  # already gone
            pass


def job_with(job: Job, **settings) -> Job:
    return Job(job.name, job.pixels, job.labels, job.val_pixels, job.val_labels, job.num_classes,
               job.settings.model_copy(update=settings))


def forward(messages, progress: Progress, pids: list[int]) -> None:
    """Say what the workers said, each line prefixed with its network's name; note each worker's pid."""
    while True:
        try:
            name, message = messages.get_nowait()
        except queue.Empty:
            return
        if name is None:
            pids.append(message)
        else:
            progress(f"{name}: {message}")


# In the worker processes ---------------------------------------------------------------------

_worker: dict = {}


def start_worker(messages, stop, parent: int) -> None:
    """A worker leaves signals to the parent, which asks it to stop through ``stop``, and ends
    itself once the parent is gone (killed, say): it would otherwise wait on the pool forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _worker.update(messages=messages, stop=stop, parent=parent)
    threading.Thread(target=exit_when_orphaned, args=(parent,), daemon=True).start()
    messages.put((None, os.getpid()))


def exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_S)
    os._exit(1)


def train_in_worker(job: Job) -> bytes | None:
    """Train one job here (one thread); its ``model.Trained`` as bytes, None if stopped before it began."""
    from . import model as fixed
    messages, stop = _worker["messages"], _worker["stop"]

    def should_stop() -> bool:
        return stop.is_set()

    if should_stop():
        return None
    trained = fixed.train(job.pixels, job.labels, job.val_pixels, job.val_labels, job.num_classes, job.settings,
                          lambda message: messages.put((job.name, message)), should_stop)
    return fixed.to_bytes(trained)
