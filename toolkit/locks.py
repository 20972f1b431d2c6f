"""Who is working on a results store: the store lock and per-run claims.

Two processes may write into one store at once (two sweeps started by hand, Ray
workers). Two rules keep the store exact:

* **Claims.** Before training a run, a writer claims its ``run_id``: an exclusive
  ``flock`` on ``DIR/claims/<run_id>``, held until the run's group is written.
  A run claimed by another live process is left to it. The kernel drops a
  ``flock`` when its process dies, even by ``kill -9``, so a dead writer's claims
  are taken over at once, with no stale-claim bookkeeping. After taking a claim
  the writer checks whether the run finished meanwhile (the claim's previous
  holder may have written it), see :meth:`toolkit.store.Store.claim`.
* **The store lock.** Writers hold a shared ``flock`` on ``DIR/.writers`` while
  they write; maintenance that moves or rewrites files (quarantine, dedupe) takes
  it exclusively and refuses to run while any writer holds it.

``flock`` is advisory and local to one machine's kernel (and to file systems
that honour it, NFSv4 and most cluster file systems do). Where ``fcntl`` does not
exist (Windows) claims always succeed and the lock is never held: run one writer
at a time there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from toolkit.errors import InputError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

CLAIMS = "claims"
WRITERS_LOCK = ".writers"


class StoreBusy(InputError):
    """The store lock is held by a writer; the message says what was refused."""


def _lock(fd: int, exclusive: bool) -> bool:
    """Take a ``flock`` on ``fd`` without waiting; whether it was granted."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _claim_one(path: Path) -> int | None:
    """An open, locked descriptor of ``path`` if no live process holds it, else ``None``.

    A claim file is deleted by its holder once the run is stored; a process that
    opened the old file just before may then lock a file that is no longer at
    ``path``. Comparing inodes after locking catches that, and it tries again.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if not _lock(fd, exclusive=True):
            os.close(fd)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


class Claims:
    """Claims on some runs of a store, held until :meth:`release`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._held: dict[str, int] = {}

    @property
    def run_ids(self) -> set[str]:
        """The runs this process holds."""
        return set(self._held)

    def take(self, run_ids: Iterable[str]) -> set[str]:
        """Claim every run of ``run_ids`` that no live process holds; return those claimed."""
        self.directory.mkdir(exist_ok=True)
        taken = set()
        for run_id in run_ids:
            if run_id in self._held:
                taken.add(run_id)
                continue
            fd = _claim_one(self.directory / run_id)
            if fd is not None:
                self._held[run_id] = fd
                taken.add(run_id)
        return taken

    def release(self, run_ids: Iterable[str] | None = None) -> None:
        """Give up the claims on ``run_ids`` (default: all), deleting their files."""
        for run_id in list(self._held if run_ids is None else run_ids):
            fd = self._held.pop(run_id, None)
            if fd is None:
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.directory / run_id)
            os.close(fd)


@contextlib.contextmanager
def writing(store_dir: Path) -> Iterator[None]:
    """Hold the store lock shared for as long as a writer writes."""
    fd = os.open(store_dir / WRITERS_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while maintenance runs
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def maintenance(store_dir: Path, what: str) -> Iterator[None]:
    """Hold the store lock exclusively; :class:`StoreBusy` while any writer holds it."""
    fd = os.open(store_dir / WRITERS_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if not _lock(fd, exclusive=True):
            raise StoreBusy(
                f"{what} refused: a sweep is writing to {store_dir}; run it when that has finished"
            )
        yield
    finally:
        os.close(fd)
