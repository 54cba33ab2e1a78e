"""Errors a user can act on: a bad file, flag or value, or a machine that cannot hold what a run writes.

Their messages name the file or value and say what to do. The `sepjax` command prints such a message on one
line and exits 2; any other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Base class of sepjax's user-facing errors."""


class InputError(UserError, ValueError):
    """A value, flag or file that sepjax cannot use."""


class OutputExistsError(UserError, FileExistsError):
    """An output that exists and is not to be replaced without --overwrite."""


class MissingInputError(UserError, FileNotFoundError):
    """A named input that does not exist."""


class SetupError(UserError, RuntimeError):
    """A tool or device this machine lacks."""
