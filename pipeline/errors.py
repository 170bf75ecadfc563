"""Errors the user can act on. The CLI prints their message alone, no traceback."""


class GanaugError(Exception):
    """Base: a clear message naming the file or key and what is wrong."""


class ParamsError(GanaugError):
    pass


class DataError(GanaugError):
    """Bad input data: a file, a folder, a manifest row, a class name."""


class CheckpointError(GanaugError):
    pass
