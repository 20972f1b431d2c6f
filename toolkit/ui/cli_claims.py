"""The ``claims`` verb: the claims card (:mod:`toolkit.analysis.claims`) on the command line.

A table and the headline by default; ``--markdown`` the card with one sentence per claim;
``--json`` every column; ``--readme PATH`` rewrites the block of a Markdown file between
:data:`README_MARKERS` with the card's summary, and every inline quote
``<!-- claim:ID -->...<!-- /claim -->`` with that claim's number (how the README's tour and
block are regenerated).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import polars as pl

from toolkit.errors import InputError
from toolkit.ui.console import print_json, print_table

README_MARKERS = ("<!-- claims:start -->", "<!-- claims:end -->")
"""The lines around the README's claims block (what ``claims --readme`` rewrites)."""

QUOTE = re.compile(r"<!-- claim:(?P<id>[a-z0-9-]+) -->(?P<text>.*?)<!-- /claim -->")
"""An inline quote of one claim's number in running text (``claims --readme`` fills it)."""


def claims_parser(sub) -> None:
    """Add the ``claims`` verb to the subparsers ``sub``."""
    parser = sub.add_parser(
        "claims",
        help="check published claims against the shipped result stores",
        description="Evaluate every published claim the toolkit can check on the result "
        "stores (default: the shipped data/) and give each its number, interval (with its "
        "level and method) and a verdict: holds, does not hold, or cannot tell (the interval "
        "straddles the claim's tolerance, or no store answers it).",
    )
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="directory of result stores (default: data/)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    output.add_argument("--markdown", action="store_true", help="the card as Markdown")
    output.add_argument(
        "--readme", default=None, metavar="PATH",
        help="rewrite the claims block of the Markdown file PATH (between "
        f"'{README_MARKERS[0]}' and '{README_MARKERS[1]}') with the card's summary, and "
        "each inline '<!-- claim:ID -->...<!-- /claim -->' with that claim's number",
    )  # fmt: skip
    parser.set_defaults(run=_run_claims)


def replace_block(text: str, block: str) -> str:
    """``text`` with the lines between :data:`README_MARKERS` replaced by ``block``;
    :class:`InputError` unless each marker occurs exactly once, start before end."""
    start, end = README_MARKERS
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise InputError(f"the file needs one {start!r} line followed by one {end!r} line")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{block}\n{end}{tail}"


def replace_quotes(text: str, card: pl.DataFrame) -> str:
    """``text`` with every :data:`QUOTE` filled with its claim's number
    (:func:`toolkit.ui.claims_text.claim_quote`); :class:`InputError` for an id not on the card."""
    from toolkit.ui.claims_text import claim_quote

    rows = {row["id"]: row for row in card.iter_rows(named=True)}

    def fill(match: re.Match) -> str:
        claim = match["id"]
        if claim not in rows:
            raise InputError(f"claim:{claim} is quoted but not on the card; ids: "
                             f"{', '.join(rows)}")  # fmt: skip
        return f"<!-- claim:{claim} -->{claim_quote(rows[claim])}<!-- /claim -->"

    return QUOTE.sub(fill, text)


def _run_claims(args: argparse.Namespace) -> None:
    from toolkit.analysis.claims import card
    from toolkit.io import write_atomically
    from toolkit.paths import DATA
    from toolkit.ui import claims_text

    frame = card(DATA if args.data is None else args.data)
    if args.json:
        print_json(frame.to_dicts())
    elif args.markdown:
        print(claims_text.claims_markdown(frame))
    elif args.readme:
        path = Path(args.readme)
        text = replace_block(path.read_text(), claims_text.claims_summary(frame))
        text = replace_quotes(text, frame)
        write_atomically(path, lambda f: f.write(text.encode()))
        print(f"{path}: claims block rewritten ({claims_text.claims_headline(frame)})")
    else:
        print_table(frame.select("id", "verdict", "value", "lo", "hi", "level", "unit"))
        print(claims_text.claims_headline(frame))
