"""The ``flakeseg`` console script."""

import pytest

from flakeseg.cli import main


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "reproduce" in capsys.readouterr().out


def test_reproduce_rejects_an_unknown_profile_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:  # a usage mistake, found while parsing
        main(["reproduce", "--profile", "no_such_profile"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--profile: no profile 'no_such_profile'" in err
