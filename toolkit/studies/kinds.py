"""Study kinds: what a spec file's top-level ``kind`` runs.

Every shipped study is one spec file in ``studies/`` run by one command,
``python -m toolkit sweep --spec FILE --out DIR``. A spec's ``kind`` (default
``sweep``) names the runner in :data:`STUDY_KINDS`; each is a function
``run_spec(path, out, *, quiet=False)``, imported only when its kind is run. A kind
other than ``sweep`` also has ``plan_spec(path, out)``: its dry run, a table of the
units it would train with a boolean ``stored`` column for those already in ``out``
(the sweep's own dry run is richer: :func:`toolkit.studies.sweep.plan`).
"""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.errors import InputError

if TYPE_CHECKING:
    import polars as pl

STUDY_KINDS: dict[str, str] = {
    "sweep": "toolkit.studies.sweep",
    "intrinsic-dimension": "toolkit.studies.intrinsic",
    "intrinsic-toy": "toolkit.studies.intrinsic_toy",
}
"""Kind -> module whose ``run_spec(path: Path, out: Path, *, quiet: bool) -> None`` runs it."""


def read_toml(path: Path) -> dict:
    """A spec file's TOML, or an :class:`InputError` that names the file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"spec={str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"spec={str(path)!r} is a directory, not a TOML file") from None
    except UnicodeDecodeError as error:
        raise InputError(f"spec={str(path)!r} is not UTF-8 text: {error.reason}") from None
    except OSError as error:
        raise InputError(f"spec={str(path)!r} cannot be read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"spec={str(path)!r} is not valid TOML: {error}") from None


def spec_kind(path: Path) -> str:
    """A spec file's ``kind`` (default ``sweep``), one of :data:`STUDY_KINDS`."""
    kind = read_toml(path).get("kind", "sweep")
    if kind not in STUDY_KINDS:
        allowed = ", ".join(repr(k) for k in STUDY_KINDS)
        raise InputError(f"{path}: kind={kind!r} is not one of {allowed}")
    return kind


def run_study(path: Path, out: Path, *, quiet: bool = False) -> None:
    """Run the study of the spec file at ``path`` into ``out`` with its kind's runner."""
    runner = importlib.import_module(STUDY_KINDS[spec_kind(path)])
    runner.run_spec(path, out, quiet=quiet)


def stored_groups(out: Path | None) -> set[str]:
    """The ids of the groups already in the results store at ``out`` (none where there is
    no store there); creates nothing."""
    if out is None or not Path(out, "store.json").exists():
        return set()
    from toolkit.store import Store

    return {file.stem for file in Store(out, create=False).files("runs")}


def plan_study(path: Path, out: Path | None = None) -> pl.DataFrame:
    """The dry run of the spec at ``path`` (a kind other than ``sweep``): its kind's
    ``plan_spec``, which trains and writes nothing."""
    kind = spec_kind(path)
    if kind == "sweep":
        raise ValueError("a sweep spec's dry run is toolkit.studies.sweep.plan")
    return importlib.import_module(STUDY_KINDS[kind]).plan_spec(path, out)
