"""The one kind of error the `minifcn` command reports as a message rather than a bug.

A UserError is about what the user asked for or handed over: a file that is missing or
of the wrong kind, a dataset folder laid out otherwise, a package not installed. Its
message names the file or option and says what to do, on one line, so `minifcn` prints
it and exits with status 1. Any other exception is a bug in minifcn and shows its
traceback. The errors of the data and weights readers (DataError, WeightsFileError) are
UserErrors, and ValueErrors too, so Python callers can catch either.
"""


class UserError(Exception):
    """A problem with the user's input, explained by the message alone."""


class OptionError(UserError, ValueError):
    """Options that cannot go together, or a value out of its range, found past argparse
    (e.g. a net that trains only on one kind of data); a ValueError for Python callers."""
