"""How many CPU threads a training uses while it runs: the rule, apart from torch (pure; durations in, counts out).

At batch 8 every op of the fixed model is small. On idle cores two threads are faster than one; once
another CPU-bound process runs, OpenMP threads wait on each other at every op and a training on all
cores falls to 1/15-1/60 of its idle speed, while one thread keeps a core's worth. A count timed
once at the start cannot follow load that starts later, so [model] threads = 0 (auto) also watches
the training's own steps and drops to one thread for good once they are slower than one thread was.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

# Steps per look at the step times: 25 steps are 200 images at batch 8, under a second on idle
# cores and 10-20 s once collapsed. The median of a window ignores a one-off stall (a page fault,
# the first step's oneDNN set-up).
WINDOW = 25


@dataclass
class ThreadGovernor:
    """The thread count of one training: fixed, or (auto) the start's choice until steps get slower
    than ``one_thread_step_s``, then 1 for the rest of the training.

    >>> g = ThreadGovernor(2, one_thread_step_s=0.030, window=2)
    >>> g.step(0.020), g.step(0.020), g.step(0.500), g.step(0.600)
    (2, 2, 2, 1)
    >>> g.used(), g.dropped_at
    ('2>1', 4)
    """

    threads: int
    one_thread_step_s: float = float("inf")  # inf: a fixed count, never changed
    window: int = WINDOW
    started_with: int = 0
    dropped_at: int | None = None  # the step after which training went on with one thread
    steps: int = 0
    recent: list[float] = field(default_factory=list)

    def __post_init__(self):
        self.started_with = self.started_with or self.threads

    def step(self, seconds: float) -> int:
        """Count one training step that took ``seconds``; the thread count for the next one."""
        self.steps += 1
        if self.threads == 1:
            return 1
        self.recent.append(seconds)
        if len(self.recent) >= self.window:
            if statistics.median(self.recent) > self.one_thread_step_s:
                self.threads, self.dropped_at = 1, self.steps
            self.recent.clear()
        return self.threads

    def used(self) -> str:
        """The counts trained with, for the results row: "2", or "2>1" when it dropped to one thread."""
        return f"{self.started_with}>1" if self.dropped_at else str(self.started_with)
