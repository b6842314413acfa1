"""Errors a user can cause and fix. The CLI prints them as one line and exits with code 2.

Anything else that escapes is a bug in evonas and keeps its traceback.
"""


class UserError(Exception):
    """Bad input: a file, a value, a run directory. The message is one line that says
    what is wrong and where."""


class GenomeError(UserError):
    """A genome (or genome file) that breaks the rules of its search space."""


class DataError(UserError):
    """A data set that is missing or malformed."""


class RunDirError(UserError):
    """A run directory that cannot be created, read or resumed."""


class ConfigError(UserError):
    """A configuration value that is out of range, unknown or inconsistent."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a long command; `hint` tells the user how to continue."""

    def __init__(self, hint: str):
        super().__init__(hint)
        self.hint = hint
