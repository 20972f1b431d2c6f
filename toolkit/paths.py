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


def check_smoke_output(out: str | Path | None) -> None:
    """Refuse, in smoke mode, to write into the shipped stores (``data/``): tiny-grid runs
    would join the shipped runs and every figure and number drawn from them."""
    if out is None or not smoke_mode():
        return
    if Path(out).expanduser().resolve().is_relative_to(DATA.resolve()):
        raise InputError(
            f"out={str(out)!r} is inside the shipped stores ({DATA}) and TOOLKIT_SMOKE=1 "
            "trains tiny grids: they would mix with the shipped runs. Write smoke runs "
            "elsewhere (e.g. make data DATA_DIR=/tmp/smoke), or unset TOOLKIT_SMOKE"
        )


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


def _base_directory(variable: str, xdg: str, default: Path) -> Path:
    """``$variable`` if set, else ``$xdg/toolkit`` (the XDG base directory), else ``default``."""
    explicit = os.environ.get(variable)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get(xdg)
    return Path(base).expanduser() / "toolkit" if base else default


def cache_dir() -> Path:
    """Directory for generated-data caches.

    ``$TOOLKIT_CACHE`` if set, else ``$XDG_CACHE_HOME/toolkit``, else
    ``~/.cache/toolkit``. It is created on first write, not here.
    """
    return _base_directory("TOOLKIT_CACHE", "XDG_CACHE_HOME", Path.home() / ".cache" / "toolkit")


def user_data_dir() -> Path:
    """Where a user's own results go: ``$TOOLKIT_USER_DATA`` if set, else
    ``$XDG_DATA_HOME/toolkit``, else ``~/.local/share/toolkit``. Never inside the
    repository, so the shipped stores stay as they were committed."""
    default = Path.home() / ".local" / "share" / "toolkit"
    return _base_directory("TOOLKIT_USER_DATA", "XDG_DATA_HOME", default)


def user_store(study: str) -> Path:
    """The user's store for ``study``: the runs a notebook trains on top of the shipped ones."""
    return user_data_dir() / "stores" / study


def is_shipped(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a store shipped in ``data/`` (read-only for users)."""
    return Path(path).resolve().parent == DATA.resolve()
