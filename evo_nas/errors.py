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


class DeviceLost(UserError):
    """A CUDA error left this process's CUDA context unusable (an illegal address, a launch
    failure, a device-side assert): nothing more can run on that GPU in this process. Not bad
    input, but a stop in one line all the same; a fresh process can go on. `result` is the
    failed Result of the evaluation it surfaced in."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result

    def __reduce__(self):
        return type(self), (str(self), self.result)


class DiskFull(UserError):
    """A write found its file system full (ENOSPC) or the user's quota spent (EDQUOT). What was
    written before stays whole; the command can run again once there is space."""


class SearchFailed(UserError):
    """Every evaluation of a generation failed: breeding from failures would only waste time."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or a plain `kill` (SIGTERM) during a long command; `hint` tells the user
    how to continue, `signum` which signal stopped it (the exit code is 128 + signum)."""

    def __init__(self, hint: str = "nothing finished was lost", signum: int = 2):
        super().__init__(hint)
        self.hint, self.signum = hint, signum

    def __reduce__(self):
        return type(self), (self.hint, self.signum)


SHORT = 60  # characters of a user's value an error message quotes at most


def short(value: object, limit: int = SHORT) -> str:
    """repr(value), cut to `limit` characters. A message quotes what the user wrote so that they
    can find it, never all of it: a value from a hostile file may be gigabytes once expanded,
    nested thousands deep, or an integer too long for str(). reprlib stops after a few items
    and levels, so the cost does not grow with the value's size either."""
    try:
        text = _REPR.repr(value)
    except ValueError:  # an int beyond Python's 4,300-digit str() limit
        text = f"<an integer of {value.bit_length():,} bits>" if isinstance(value, int) else f"<{type(value).__name__}>"
    except RecursionError:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _short_repr():
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 3, 8, 8, 4, 4
    r.maxstring = r.maxlong = r.maxother = SHORT + 2
    return r


_REPR = _short_repr()
