"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the known name closest to a misspelt one, else ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class RsirError(Exception):
    """Base class for every error rsir reports to the user."""


class DataFormatError(RsirError):
    """An input file is malformed; the message names the file, line and reason."""


class ConfigError(RsirError):
    """A configuration key, value or command-line option is invalid."""


class CheckpointError(RsirError):
    """A checkpoint cannot be loaded or does not match the data it is used with."""


class RunInUseError(RsirError):
    """Another process is writing the run directory."""
