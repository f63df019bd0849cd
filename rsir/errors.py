"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


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
