"""Ctrl-C (SIGINT) and SIGTERM as a request to stop training between two steps.

Inside `with StopRequest() as stop:` the first of these signals only sets `stop.signal`;
the training loop reads it between steps, so a step, the solver update and a checkpoint
write are never cut in half. A second signal while the loop is in an `abandonable()`
block (the forward and backward passes, a validation: work that changes no weight)
raises Abandoned there, so a long step need not be waited for; anywhere else it is
ignored, since the loop is already on its way out. In an `abandonable(eager=True)` block
(setting a run up: nothing to save yet) the first signal raises Abandoned. Outside the
`with` the signals do what they did before (KeyboardInterrupt, or the process ends).

Only the main thread can receive signals; in any other thread StopRequest installs
nothing and the loop simply never sees a request.
"""
import contextlib
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_active = None  # the StopRequest in force, if any


class Abandoned(BaseException):
    """A second signal cut short work that had not changed the weights yet. A
    BaseException, as KeyboardInterrupt is, so that no `except Exception` around file
    reading (a checkpoint, an image) mistakes it for a damaged file."""


class StopRequest:
    def __init__(self):
        self.signal = None
        self._abandonable = self._eager = False
        self._previous = {}

    def __enter__(self):
        global _active
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        _active = self
        return self

    def __exit__(self, *failure):
        global _active
        _active = None
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def _handle(self, number, frame):
        first = self.signal is None
        if first:
            self.signal = number
        if self._abandonable and (self._eager or not first):
            self._abandonable = False
            raise Abandoned(signal.Signals(number).name)

    @property
    def name(self):
        return None if self.signal is None else signal.Signals(self.signal).name

    @contextlib.contextmanager
    def abandonable(self, eager=False):
        self._abandonable, self._eager = True, eager
        try:
            yield
        finally:
            self._abandonable = self._eager = False


def abandonable():
    """The block may be cut short by a second signal (a no-op with no StopRequest)."""
    return _active.abandonable() if _active is not None else contextlib.nullcontext()
