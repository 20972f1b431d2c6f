"""Where things live: the repository's shipped studies and stores, the data cache,
the user's own results.

Every other module asks here instead of walking up from its own ``__file__``.
"""

from __future__ import annotations

import os
from pathlib import Path

from toolkit.errors import InputError

REPOSITORY = Path(__file__).resolve().parent.parent
"""The checkout the package runs from (an editable install; see the README)."""

DATA = REPOSITORY / "data"
"""Shipped results stores and shipped data files (read-only for users)."""

STUDIES = REPOSITORY / "studies"
"""The shipped studies' specs (TOML)."""


def smoke_mode() -> bool:
    """True when ``TOOLKIT_SMOKE=1``: notebooks and data commands use tiny grids."""
    return os.environ.get("TOOLKIT_SMOKE", "") == "1"


def shipped(study: str) -> Path:
    """Path of a results store shipped in ``data/`` (e.g. ``width_transfer``)."""
    path = DATA / study
    if not (path / "store.json").exists():
        available = sorted(p.parent.name for p in DATA.glob("*/store.json"))
        raise InputError(f"study={study!r} is not shipped in {DATA}; shipped: {available}")
    return path


def study_spec(name: str) -> Path:
    """Path of a study's spec shipped in ``studies/`` (e.g. ``width_transfer``)."""
    path = STUDIES / f"{name}.toml"
    if not path.exists():
        available = sorted(p.stem for p in STUDIES.glob("*.toml"))
        raise InputError(f"study={name!r} has no spec in {STUDIES}; available: {available}")
    return path


def corpus_path() -> Path:
    """The committed character corpus, ``data/chars/corpus.txt``."""
    return DATA / "chars" / "corpus.txt"


def cache_dir() -> Path:
    """Directory for generated-data caches.

    ``$TOOLKIT_CACHE`` if set, else ``$XDG_CACHE_HOME/toolkit``, else
    ``~/.cache/toolkit``. It is created on first write, not here.
    """
    explicit = os.environ.get("TOOLKIT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "toolkit"
    return Path.home() / ".cache" / "toolkit"
