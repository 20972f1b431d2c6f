"""The claims card (:func:`toolkit.analysis.claims.card`) as text: its headline, one
sentence per claim, a claim's number quoted in running text, and the Markdown summary the
README shows (``python -m toolkit claims --readme``)."""

from __future__ import annotations

import math

import polars as pl

from toolkit.analysis.claims import FAILS, HOLDS, UNKNOWN, counts, number


def claims_headline(card: pl.DataFrame) -> str:
    """The card's headline, each verdict with its count: ``N claims checked: holds a,
    does not hold b, cannot tell c.`` (``card``: :func:`toolkit.analysis.claims.card`)."""
    n = counts(card)
    tally = ", ".join(f"{verdict} {n[verdict]}" for verdict in (HOLDS, FAILS, UNKNOWN))
    return f"{card.height} claims checked: {tally}."


def claim_sentence(row: dict) -> str:
    """One claim of the card as a sentence: its id, the claim, its verdict and why (the
    reason quotes the card's number, interval and tolerance), with the source."""
    return (f"**{row['id']}** ({row['source']}): {row['claim']} *{row['verdict'].capitalize()}*: "
            f"{row['reason']}")  # fmt: skip


def _interval(row: dict) -> str:
    if row["level"] is None or math.isnan(row["level"]):
        return "-"
    if row["level"] == 1.0:
        return "exact"
    return f"[{number(row['lo'])}, {number(row['hi'])}] ({row['level']:.0%})"


def claim_quote(row: dict) -> str:
    """One claim's number for running text: value, unit, interval and verdict, e.g.
    ``-0.554 octaves of optimal LR per doubling of width (95% interval [-0.667, -0.44];
    holds)``."""
    if row["value"] is None or math.isnan(row["value"]):
        return f"no number ({row['verdict']})"
    level = row["level"]
    if level is None or math.isnan(level):
        interval = "no interval"
    elif level == 1.0:
        interval = "exact"
    else:
        interval = f"{level:.0%} interval [{number(row['lo'])}, {number(row['hi'])}]"
    return f"{number(row['value'])} {row['unit']} ({interval}; {row['verdict']})"


def claims_summary(card: pl.DataFrame) -> str:
    """The headline and a Markdown table of the card (claim, verdict, value, interval with
    its level, unit, store, source): the block the README shows."""
    lines = [
        claims_headline(card),
        "",
        "| claim | verdict | value | interval | unit | store | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in card.iter_rows(named=True):
        cells = (f"`{row['id']}`", row["verdict"], number(row["value"]), _interval(row),
                 row["unit"], row["store"] or "-", row["source"])  # fmt: skip
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def claim_sentences(card: pl.DataFrame) -> str:
    """One Markdown bullet per claim of the card (:func:`claim_sentence`)."""
    return "\n".join(f"- {claim_sentence(row)}" for row in card.iter_rows(named=True))


def claims_markdown(card: pl.DataFrame) -> str:
    """:func:`claims_summary`, then one bullet per claim (:func:`claim_sentences`)."""
    return f"{claims_summary(card)}\n\n{claim_sentences(card)}"
