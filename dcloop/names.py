"""Names and constants the command line needs before anything heavy is imported.

Standard library only: a cron run of ``dcloop sync`` that finds nothing changed reads these before
it decides whether to import pandas, pydantic or torch at all (dcloop.unchanged). dcloop.config
re-exports them; other modules import them from there.
"""

from __future__ import annotations

CONFIG_FILE = "dcloop.toml"
STATE_DIR = ".dcloop"
# STATE_DIR/UNCHANGED: what the last sync that found nothing changed printed, and the digest of what it
# read (dcloop.unchanged); every command that takes the project's lock removes it first.
UNCHANGED = "unchanged.json"

# The fast schedule, for iterating between full trainings: the same model, 4x the batch with 4x the
# learning rate (linear scaling) and 40 epochs. Measured on the Roman numerals at 1 thread
# (docs/benchmarks/performance.md, "Fast schedule"; scripts/bench_fast.py): a batch-32 epoch cost
# 7.0-8.1 s of CPU against 10.8 s at batch 8, so 40 epochs took 0.28 of the recipe's time; over 3
# seeds val 0.714 +- 0.018 against the recipe's 0.681 and label_book 0.609 +- 0.040 against 0.654
# (one recipe seed; 52 images, +-0.13 noise). The same runs' first 30 epochs scored less (val 0.697,
# label_book 0.570); 50 (seed 123 only) 0.742 and 0.596 in 0.32 of the time.
FAST_SCHEDULE = {"batch_size": 32, "learning_rate": 4e-4, "epochs": 40}


def fast_schedule_text() -> str:
    """'batch 32, Adam lr 4e-4, 40 epochs': the fast schedule, for help and messages."""
    lr = f"{FAST_SCHEDULE['learning_rate']:.0e}".replace("e-0", "e-")
    return f"batch {FAST_SCHEDULE['batch_size']}, Adam lr {lr}, {FAST_SCHEDULE['epochs']} epochs"
