"""The errors dcloop raises on purpose; the CLI turns each into a one-line message and its exit code
(1 unless the class says otherwise)."""


class DcloopError(Exception):
    """Base class: something the user can fix, with a message that says how."""

    exit_code = 1


class ConfigError(DcloopError):
    """dcloop.toml or an option is wrong or missing."""


class SchemaError(DcloopError):
    """The label table cannot be used: a missing column, a duplicate id, not a CSV."""


class BackendError(DcloopError):
    """The table's storage (a file, a Google Sheet) could not be read or written."""


class TableBusy(BackendError):
    """The table's file is held by another program (Excel locks the files it has open)."""


class RowDropError(BackendError):
    """A read of the table lacks more rows than a person plausibly deleted: refused, nothing written."""


class ImageError(DcloopError):
    """An image could not be fetched or decoded."""


class CapError(DcloopError):
    """More train+val rows than the cap allows."""


class UnsafePath(DcloopError):
    """A path built from table data would leave its folder: refused before anything is written."""


class StateError(DcloopError):
    """A file under .dcloop that is not a cache (a label version, a run, a record) cannot be read."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason


class DiskError(DcloopError):
    """A write failed for lack of space or permission (ENOSPC, EDQUOT, EROFS, EACCES, EPERM)."""


class LockedError(DcloopError):
    """Another dcloop process holds the project's lock."""

    exit_code = 3


class LockOverrun(LockedError):
    """The lock's holder has run longer than [sync] max_minutes: it may be hung, which needs a person."""

    exit_code = 5


class Stopped(DcloopError):
    """A stop was asked for (SIGINT/SIGTERM in watch mode); the cycle ended at a safe point."""


class TimedOut(Stopped):
    """The sync ran past [sync] max_minutes and ended at a safe point."""

    exit_code = 4
