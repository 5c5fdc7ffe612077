"""Progress: every long operation takes a ``progress(message)`` callable; the CLI prints to stderr."""

from __future__ import annotations

from typing import Callable

Progress = Callable[[str], None]


def quiet(message: str) -> None:
    """A progress that says nothing (library calls and tests)."""
