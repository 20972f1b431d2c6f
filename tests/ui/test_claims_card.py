"""What a user sees of the claims card: the verb, its sentences, its figure, the README block."""

from __future__ import annotations

import json
import subprocess
import sys

import matplotlib
import polars as pl
import pytest

from toolkit.analysis.claims import card
from toolkit.errors import InputError
from toolkit.paths import REPOSITORY
from toolkit.ui import claims_text, plots
from toolkit.ui.cli import main
from toolkit.ui.cli_claims import QUOTE, README_MARKERS, replace_block, replace_quotes

matplotlib.use("Agg")

REGENERATE = "python -m toolkit claims --readme README.md"


@pytest.fixture(scope="module")
def shipped() -> pl.DataFrame:
    """The card on the shipped stores, evaluated once for the module."""
    return card()


def test_claims_json_parses_and_exits_0():
    result = subprocess.run([sys.executable, "-m", "toolkit", "claims", "--json"],
                            capture_output=True, text=True, cwd=REPOSITORY)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) >= 12
    assert {"id", "value", "lo", "hi", "level", "method", "verdict", "reason"} <= set(rows[0])


def test_a_bad_flag_value_exits_2_with_one_line(capsys, tmp_path):
    status = main(["claims", "--data", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert "nowhere" in err[0] and "not a directory" in err[0]
    status = main(["claims", "--json", "--markdown"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "not allowed" in err[0]


def test_the_headline_counts_the_verdicts(shipped):
    n = {v: int((shipped["verdict"] == v).sum()) for v in ("holds", "does not hold",
                                                           "cannot tell")}  # fmt: skip
    assert claims_text.claims_headline(shipped) == (
        f"{shipped.height} claims checked: holds {n['holds']}, does not hold "
        f"{n['does not hold']}, cannot tell {n['cannot tell']}."
    )


def test_each_claim_sentence_quotes_the_cards_numbers(shipped):
    for row in shipped.iter_rows(named=True):
        sentence = claims_text.claim_sentence(row)
        assert row["id"] in sentence and row["verdict"].capitalize() in sentence
        if row["value"] == row["value"]:  # not NaN
            assert f"{row['value']:+.3g}" in sentence
            if row["level"] < 1:
                assert f"[{row['lo']:+.3g}, {row['hi']:+.3g}]" in sentence


def test_the_markdown_table_has_one_row_per_claim_with_no_stray_pipes(shipped):
    summary = claims_text.claims_summary(shipped)
    rows = [line for line in summary.splitlines() if line.startswith("| `")]
    assert len(rows) == shipped.height
    header = summary.splitlines()[2]
    cells = header.count(" | ")
    assert all(row.replace("\\|", "").count(" | ") == cells for row in rows)


def test_the_readme_block_is_the_cards_summary(shipped):
    text = (REPOSITORY / "README.md").read_text()
    start, end = README_MARKERS
    block = text.split(start)[1].split(end)[0].strip()
    assert block == claims_text.claims_summary(shipped), (
        f"README.md's claims block is stale; regenerate it with: {REGENERATE}"
    )


def test_replacing_the_block_keeps_the_rest_and_needs_both_markers():
    start, end = README_MARKERS
    text = f"before\n{start}\nold\n{end}\nafter\n"
    assert replace_block(text, "new") == f"before\n{start}\nnew\n{end}\nafter\n"
    with pytest.raises(InputError, match="claims:end"):
        replace_block(f"{start}\nno end\n", "new")


def test_the_claim_figure_draws_the_interval_against_the_band(shipped):
    claim = "sp-optimal-lr-drifts-down"
    row = shipped.filter(pl.col("id") == claim).row(0, named=True)
    fig = plots.claim_interval(shipped, claim=claim)
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    assert low < row["lo"] and row["hi"] < high
    assert row["verdict"] in ax.get_title()
    with pytest.raises(InputError, match="no-such-claim"):
        plots.claim_interval(shipped, claim="no-such-claim")


def test_the_claims_explorer_narrows_to_a_verdict_and_redraws(shipped):
    from toolkit.ui.widgets import claims_explorer

    explorer = claims_explorer(shipped)
    before = explorer.image.value
    assert before and not explorer.message
    explorer.controls["verdict"].value = "does not hold"
    failing = shipped.filter(pl.col("verdict") == "does not hold")["id"].to_list()
    assert list(explorer.controls["claim"].options) == failing
    assert explorer.values()["claim"] == failing[0]
    assert explorer.image.value != before


def test_the_readme_tour_quotes_the_cards_numbers(shipped):
    text = (REPOSITORY / "README.md").read_text()
    quoted = QUOTE.findall(text)
    assert len(quoted) >= 5, "the tour quotes its numbers from the card"
    assert replace_quotes(text, shipped) == text, (
        f"README.md quotes numbers the card no longer gives; regenerate them with: {REGENERATE}"
    )


def test_a_quote_is_filled_with_its_claims_number_and_an_unknown_id_is_refused(shipped):
    row = shipped.filter(pl.col("id") == "sp-optimal-lr-drifts-down").row(0, named=True)
    text = "SP drifts <!-- claim:sp-optimal-lr-drifts-down -->stale text<!-- /claim -->."
    filled = replace_quotes(text, shipped)
    assert claims_text.claim_quote(row) in filled and "stale text" not in filled
    assert f"{row['value']:+.3g}" in filled and row["verdict"] in filled
    with pytest.raises(InputError, match="claim:no-such-claim"):
        replace_quotes("<!-- claim:no-such-claim -->x<!-- /claim -->", shipped)
