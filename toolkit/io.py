"""The one atomic writer: the results store, the data cache and figure export use it.

A file is first written in full to a hidden temporary file beside its target
(``.<name>.<random>.tmp``), flushed and fsynced, then renamed over the target, so a
reader never sees a torn file and a crash leaves the old file (or none) in place.
Several files can be staged together and moved into place only when every one of
them has been written (a figure exported as PDF, SVG and PNG).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

Writer = Callable[[BinaryIO], object]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()
"""What ``open`` would give a new file (mkstemp makes 0600; stores are shared files)."""


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is the temporary file of an atomic write (``.<name>.<random>.tmp``)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (POSIX; a no-op elsewhere)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stage(path: Path, write: Writer) -> Path:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return Path(temp)


def write_all_atomically(writes: Mapping[Path, Writer]) -> None:
    """Write every ``path: write`` pair; no target changes unless all were written.

    ``write(handle)`` fills a binary file handle. The directories must exist.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, write in writes.items():
            staged.append((_stage(Path(path), write), Path(path)))
        for temp, path in staged:
            os.replace(temp, path)
    finally:
        for temp, _ in staged:
            temp.unlink(missing_ok=True)
    for directory in {path.parent for _, path in staged}:
        fsync_dir(directory)


def write_atomically(path: Path, write: Writer) -> None:
    """Write one file atomically (see the module docstring)."""
    write_all_atomically({Path(path): write})
