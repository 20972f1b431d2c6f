"""The claims card: every published claim the toolkit can check, judged on result stores.

:func:`card` evaluates each :data:`~toolkit.analysis.claim_rules.CLAIMS` row's measure on
the stores (the shipped ``data/`` by default) and :func:`judge` gives it a verdict from
the measurement's interval and the claim's tolerance, by one rule for every claim (see
:mod:`toolkit.analysis.claim_rules`): ``holds`` when the whole interval lies inside the
claim's band, ``does not hold`` when it lies wholly outside, ``cannot tell`` when it
straddles the band's edge or there is no number. Polars out; no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from toolkit.analysis.claim_data import Measurement, Stores
from toolkit.analysis.claim_rules import CLAIMS, Claim
from toolkit.errors import InputError
from toolkit.paths import DATA

HOLDS, FAILS, UNKNOWN = "holds", "does not hold", "cannot tell"
"""The three verdicts."""

VERDICTS = (HOLDS, FAILS, UNKNOWN)

CARD_COLUMNS = ("id", "claim", "source", "store", "value", "lo", "hi", "level", "unit", "method",
                "expect", "target", "tolerance", "verdict", "reason")  # fmt: skip
"""The card's columns, in order: ``level`` is the interval's coverage (1 for an exact
number, NaN without an interval); ``expect``, ``target`` and ``tolerance`` the rule."""


def band(expect: str, target: float, tolerance: float) -> tuple[float, float]:
    """The values a claim expects, ``(low, high)`` (infinite on an open side): ``near``
    ``target ± tolerance``; ``below`` up to ``target - tolerance``; ``above`` from
    ``target + tolerance``; ``covers`` the target itself."""
    if expect == "near":
        return target - tolerance, target + tolerance
    if expect == "below":
        return -math.inf, target - tolerance
    if expect == "above":
        return target + tolerance, math.inf
    return target, target


def rule_text(expect: str, target: float, tolerance: float) -> str:
    """The band's edge or edges in words with their numbers: ``0 ± 0.25`` (``near``),
    ``-0.25 (0 minus the tolerance 0.25)`` (``below``), the target (``covers``)."""
    if expect == "near":
        return f"{target:.3g} ± {tolerance:.3g}"
    if expect == "covers":
        return f"{target:.3g}"
    if not tolerance:
        return f"{target:.3g} (tolerance 0)"
    sign, word = (-1, "minus") if expect == "below" else (1, "plus")
    return f"{target + sign * tolerance:.3g} ({target:.3g} {word} the tolerance {tolerance:.3g})"


_SAYS = {  # expect -> (holds, does not hold, cannot tell): how the interval sits
    "near": ("lies within", "lies outside", "straddles an edge of"),
    "below": ("lies below", "lies above", "straddles"),
    "above": ("lies above", "lies below", "straddles"),
    "covers": ("contains", "does not contain", "straddles"),
}


def number(value: float) -> str:
    """A card number: 3 significant digits, signed, ``-`` for none."""
    return "-" if value is None or math.isnan(value) else f"{value:+.3g}"


def judge(
    value: float, lo: float, hi: float, *, expect: str, target: float, tolerance: float,
    level: float = 0.95,
) -> tuple[str, str]:
    """The verdict on a measurement ``value`` with interval ``[lo, hi]`` at ``level`` under
    a claim's rule, and one sentence why (quoting the number, the interval and the rule).

    ``holds`` when ``[lo, hi]`` lies inside :func:`band` (for ``covers``: contains the
    target); ``does not hold`` when it lies wholly outside it (misses the target);
    ``cannot tell`` when it straddles an edge of the band, or when the value or interval
    is not a number.
    """
    rule = rule_text(expect, target, tolerance)
    if any(math.isnan(x) for x in (value, lo, hi)):
        return UNKNOWN, (f"{number(value)} has no interval, so it cannot be judged against "
                         f"{expect} {rule}")  # fmt: skip
    low, high = band(expect, target, tolerance)
    where = f"{number(value)} ({level:.0%} interval [{number(lo)}, {number(hi)}])"
    if level == 1.0:
        where = f"{number(value)} (exact)"
    holds, fails, straddles = _SAYS[expect]
    if expect == "covers":
        inside = lo <= target <= hi
        return (HOLDS, f"{where} {holds} {rule}") if inside else (FAILS, f"{where} {fails} {rule}")
    if low <= lo and hi <= high:
        return HOLDS, f"{where} {holds} {rule}"
    if hi < low or lo > high:
        return FAILS, f"{where} {fails} {rule}"
    return UNKNOWN, f"{where} {straddles} {rule}"


def _row(claim: Claim, stores: Stores) -> dict:
    if claim.store is not None and not stores.has(claim.store):
        shipped = "shipped" if stores.root == DATA else f"in {stores.root}"
        measured = Measurement.absent(f"no {claim.store} store {shipped}", unit="-",
                                      method="not measured")  # fmt: skip
    else:
        measured = claim.measure(stores)
    if measured.missing is not None:
        verdict, reason = UNKNOWN, measured.missing
    else:
        verdict, reason = judge(measured.value, measured.lo, measured.hi, expect=claim.expect,
                                target=claim.target, tolerance=claim.tolerance,
                                level=measured.level)  # fmt: skip
        if measured.note:
            reason += f"; {measured.note}"
    return {
        "id": claim.id, "claim": claim.claim, "source": claim.source, "store": claim.store,
        "value": measured.value, "lo": measured.lo, "hi": measured.hi, "level": measured.level,
        "unit": measured.unit, "method": measured.method, "expect": claim.expect,
        "target": claim.target, "tolerance": claim.tolerance, "verdict": verdict,
        "reason": reason + ".",
    }  # fmt: skip


def card(data: str | Path = DATA, *, claims: Sequence[Claim] = CLAIMS) -> pl.DataFrame:
    """Evaluate every claim on the stores under ``data``: one row per claim with
    :data:`CARD_COLUMNS`. A claim whose store is not there is ``cannot tell``, with that
    reason; a ``data`` that is not a directory is an :class:`InputError`."""
    root = Path(data)
    if not root.is_dir():
        raise InputError(f"data={str(data)!r} is not a directory; allowed: a directory of "
                         f"result stores such as {DATA}")  # fmt: skip
    stores = Stores(root)
    schema = {c: pl.String for c in CARD_COLUMNS}
    schema |= dict.fromkeys(("value", "lo", "hi", "level", "target", "tolerance"), pl.Float64)
    return pl.DataFrame([_row(claim, stores) for claim in claims], schema=schema)


def counts(frame: pl.DataFrame) -> dict[str, int]:
    """How many claims of a :func:`card` frame have each verdict (every verdict listed)."""
    return {v: int((frame["verdict"] == v).sum()) for v in VERDICTS}
