"""The one error every weight reader raises for a file it cannot use."""
from ..errors import UserError


class WeightsFileError(UserError, ValueError):
    """A weights file that is truncated, corrupt, of an unknown format or of the wrong net.

    The message names the file and what is wrong with it, on one line, so that the command
    line can print it as is. `path` and `reason` are kept apart for callers that want them.
    """

    def __init__(self, path, reason):
        super().__init__(str(path), reason)  # both in args, so the error pickles
        self.path = str(path)
        self.reason = reason

    def __str__(self):
        return f"{self.path}: {self.reason}"
