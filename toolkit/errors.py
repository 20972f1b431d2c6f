"""The one error type for a user's mistake, and the checks that raise it.

Validation happens once, at a public entry point (scikit-learn's
``utils/validation.py`` is the model): the message names the argument, the value
given and what is allowed. The command line turns an :class:`InputError` into one
line on stderr and exit status 2; any other exception is a bug and shows as one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable


class InputError(ValueError):
    """A value a user gave is not allowed; the message names it and what is allowed."""


def check_choice(argument: str, value: object, allowed: Iterable[object]) -> None:
    """Raise :class:`InputError` naming ``argument`` if ``value`` is not one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        names = ", ".join(repr(a) for a in allowed)
        raise InputError(f"{argument}={value!r} is not one of {names}")


def check_positive(argument: str, value: float, *, integer: bool = False) -> None:
    """Raise :class:`InputError` naming ``argument`` unless ``value`` is a positive (int) number."""
    kind = "integer" if integer else "number"
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok or not math.isfinite(value) or value <= 0:
        raise InputError(f"{argument}={value!r} must be a positive {kind}")
