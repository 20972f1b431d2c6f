"""Ctrl-C that is never lost.

Python turns SIGINT into :class:`KeyboardInterrupt` wherever the main thread happens to
be. Raised inside a destructor or a callback of the garbage collector, it is printed as
"Exception ignored" and dropped, and the work goes on as if Ctrl-C had not been pressed.
While :func:`remembered` is active an interrupt is also noted, and :func:`check`, which
training calls between steps, raises it again until the block ends.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_pending = False


def _interrupt(signum: int, frame: object) -> None:
    global _pending
    _pending = True
    raise KeyboardInterrupt


@contextmanager
def remembered() -> Iterator[None]:
    """Note every Ctrl-C during the block (only in the main thread, the one that
    receives signals; elsewhere the block runs as it is)."""
    global _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _interrupt)
    try:
        yield
    finally:
        _pending = False
        signal.signal(signal.SIGINT, previous)


def check() -> None:
    """Raise :class:`KeyboardInterrupt` if a Ctrl-C noted by :func:`remembered` was lost."""
    if _pending:
        raise KeyboardInterrupt
