"""Errors a user can act on. Each message names what is wrong and how to fix it."""


class HarnessError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero."""


class DataError(HarnessError):
    """Market data that cannot be loaded as it is (file, coin, row and the fix in the message)."""


class SignalsError(HarnessError):
    """A strategy produced Signals that break the contract (strategy, coin and bar named)."""


class LockboxError(HarnessError):
    """Something tried to read the lockbox without the explicit flag."""


class ConfigError(HarnessError):
    """An option or parameter outside what the harness accepts."""
