"""The stop signals: SIGINT and SIGTERM go to one handler while a block runs, the old handlers after it.

`sync --watch` and the review page stop on either. Setting the handler also undoes an inherited
"ignore": Python leaves SIGINT ignored in a process started so (a background job of a script, a test
run started with &), and a Ctrl-C or SIGTERM would then never reach the command.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_signals_to(handler):
    """Inside: SIGINT and SIGTERM call ``handler``. Only the main thread may set handlers; elsewhere
    nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, handler) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
