"""Every verb explains itself: ``--help`` prints usage and exits 0."""

from __future__ import annotations

import pytest

from toolkit.ui.cli import VERBS, build_parser, main


def _verbs() -> list[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "verb"]
    return sorted(sub.choices)


def test_every_verb_is_listed():
    assert len(_verbs()) == len(VERBS) >= 7


@pytest.mark.parametrize("verb", _verbs())
def test_help_of_every_verb_exits_zero(verb, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([verb, "--help"])
    assert exit_.value.code == 0
    assert f"python -m toolkit {verb}" in capsys.readouterr().out
