"""The one exception type for bad input: the CLI prints it as a single ``error: ...`` line and exits non-zero."""


class InputError(Exception):
    """Bad user input (a file, a flag, a point cloud): the message says what and where, in one line."""
