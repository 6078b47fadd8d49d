"""Errors a scientist can act on.

Every failure the package reports on purpose is a :class:`TomomlError`; widgets show it as a
napari notification and the CLI prints it and exits non-zero. Subclasses also derive from the
matching builtin so ordinary ``except ValueError`` code keeps working.
"""


class TomomlError(Exception):
    """Base class of every error napari-tomoml raises on purpose."""


class ScanReadError(TomomlError, OSError):
    """A file or folder cannot be read as a scan: missing dataset, corrupt, empty, wrong layout."""


class InputError(TomomlError, ValueError):
    """An array argument is unusable: wrong shape or dtype, NaN/inf, angle-count mismatch."""


class ModelFileError(TomomlError, ValueError):
    """A model file is missing, corrupt, of the wrong architecture, or not a model file at all."""


class Cancelled(TomomlError):
    """The user stopped a running task."""


class OutputExistsError(TomomlError, FileExistsError):
    """A writer was asked to write over an existing file or folder without ``overwrite=True``."""


class OutputError(TomomlError, OSError):
    """An output cannot be written where asked: a read-only or missing folder, the input itself."""


class ResultError(TomomlError, ArithmeticError):
    """A computation produced no usable result (e.g. all NaN/inf); nothing was written."""
