"""Helpers for the tests of running unattended: real dcloop processes (start, watch stderr, kill)."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLI = "from dcloop.cli import cli; cli()"

# Kill the process with SIGKILL the moment it reaches a chosen point, from inside: exact, not a race.
KILL_AT = """
import os, signal
def _die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def one_torch_thread():
    """Tiny trainings on a shared 2-core machine run faster, and burn less CPU, on one thread."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Dcloop:
    """A `dcloop ARGS` subprocess whose stderr lines are collected as they come."""

    def __init__(self, *args, prelude: str = ""):
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-c", prelude + "\n" + CLI, *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self.stdout_lines: queue.Queue[str] = queue.Queue()
        self.threads = [threading.Thread(target=self._pump, args=pair, daemon=True)
                        for pair in ((self.proc.stderr, self.lines), (self.proc.stdout, self.stdout_lines))]
        for thread in self.threads:
            thread.start()

    @staticmethod
    def _pump(stream, into):
        for line in stream:
            into.put(line)

    def wait_for(self, pattern: str, timeout: float = 60.0, stdout: bool = False) -> str:
        """The first new line matching ``pattern``; fails if the process ends or time runs out."""
        source = self.stdout_lines if stdout else self.lines
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = source.get(timeout=0.05)
            except queue.Empty:
                if self.proc.poll() is not None and source.empty():
                    break
                continue
            if not stdout:
                self.stderr.append(line)
            if re.search(pattern, line):
                return line
        self.kill()
        raise AssertionError(f"no line matching {pattern!r}; rc={self.proc.returncode}; "
                             f"stderr so far: {''.join(self.stderr)[-2000:]}")

    def finish(self, timeout: float = 60.0) -> int:
        rc = self.proc.wait(timeout)
        for thread in self.threads:
            thread.join(5)
        while not self.lines.empty():
            self.stderr.append(self.lines.get())
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
