"""The one atomic writer: the results store, the data cache and figure export use it.

A file is first written in full to a hidden temporary file beside its target
(``.<name>.<pid>@<host>.<random>.tmp``), flushed and fsynced, then renamed over the
target, so a reader never sees a torn file and a crash leaves the old file (or none)
in place. Several files can be staged together and moved into place only when every
one of them has been written (a figure exported as PDF, SVG and PNG). The writer's
process id and host in the temporary name let a later writer delete the leftovers of
a killed one (:func:`remove_stale_temporaries`) without touching a live writer's.

Checksummed files (the results store's tables) carry a SHA-256 of their bytes in a
sidecar ``<name>.sha256`` written together with them; :func:`read_verified` reads
the bytes and checks them against it, so damage anywhere in the file is detected
before a parser sees it.
"""

from __future__ import annotations

import hashlib
import os
import socket
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


_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
"""This machine, as written into temporary names (hostnames may hold dots)."""

CHECKSUM_SUFFIX = ".sha256"


class ChecksumError(OSError):
    """A file's bytes do not match the checksum recorded when it was written."""


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
    prefix = f".{path.name}.{os.getpid()}@{_HOST}."
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
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

    The targets are replaced in the order given.

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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the temporary files in ``directory`` left by dead writers on this host.

    A temporary file of a live process, of another host, or without a writer in
    its name is kept. Returns the files deleted.
    """
    removed = []
    for path in Path(directory).glob(".*.tmp"):
        owner = path.name[: -len(".tmp")].rsplit(".", 2)
        if len(owner) != 3 or "@" not in owner[1]:
            continue
        pid, _, host = owner[1].partition("@")
        if host == _HOST and pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def checksum_path(path: Path) -> Path:
    """The sidecar that holds ``path``'s SHA-256 (``<name>.sha256``)."""
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def write_checksummed(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and its SHA-256 to the sidecar, both atomically."""
    digest = hashlib.sha256(data).hexdigest().encode() + b"\n"
    # The sidecar goes into place first: a reader that finds a new file finds its checksum.
    write_all_atomically(
        {
            checksum_path(Path(path)): lambda handle: handle.write(digest),
            Path(path): lambda handle: handle.write(data),
        }
    )


def read_verified(path: Path) -> bytes:
    """The bytes of ``path``, checked against its sidecar.

    Raises:
        ChecksumError: the sidecar is missing or unreadable, or the bytes differ
            from what was written.
        OSError: ``path`` cannot be read.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        recorded = checksum_path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ChecksumError(f"{path} has no readable checksum ({error})") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != recorded:
        raise ChecksumError(f"{path} is damaged: its SHA-256 differs from the one written with it")
    return data
