"""The ``flakeseg`` console script."""

import pytest

from flakeseg.cli import main


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "reproduce" in capsys.readouterr().out


def test_reproduce_rejects_an_unknown_profile_in_one_line(capsys, caplog):
    assert main(["reproduce", "--profile", "no_such_profile"]) == 1
    assert "--profile: no profile 'no_such_profile'" in caplog.text
