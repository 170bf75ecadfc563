"""Errors the user can act on. The CLI prints their message alone, no traceback.

`transient` is decided where an error is raised, by the code that knows what failed: True
only when the same call may succeed later (a git or DVC command that failed, e.g. a remote
that did not answer). Prefect retries those and nothing else: a bad file, a wrong key, a
held lock or a NaN loss fails the same way on every try.
"""


class GanaugError(Exception):
    """Base: a clear message naming the file or key and what is wrong."""

    transient = False


class ParamsError(GanaugError):
    pass


class DataError(GanaugError):
    """Bad input data: a file, a folder, a manifest row, a class name."""


class CheckpointError(GanaugError):
    pass


class StorageError(GanaugError):
    """The disk refused a write (full, quota, file size limit); the previous output is intact."""


class TrainingError(GanaugError):
    """Training failed (a NaN loss, a distributed run's worker, an unhealthy GAN when asked)."""
