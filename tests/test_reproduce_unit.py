"""The reproduction protocol's pieces: profiles, grid cost, selection, Table 1."""

import pytest

from flakeseg.errors import ConfigError
from flakeseg.studies.reproduce import (
    PAPER_TABLE1,
    Profile,
    _fmt,
    grid_command,
    select_best,
    selected_config,
    table1_markdown,
)


def _row(augment, loss, lr, batch, epochs, acc, prec):
    return {
        "data": "mos2",
        "augment": augment,
        "loss": loss,
        "lr": lr,
        "batch_size": batch,
        "epochs": epochs,
        "cv/mean_class_acc": acc,
        "cv/mean_class_acc_std": 0.01,
        "cv/macro_precision": prec,
        "cv/macro_precision_std": 0.02,
        "job": "x",
    }


def test_paper_profile_is_the_papers_grid_and_costs_five_times_fewer_runs():
    profile = Profile.load("paper")
    assert profile.lr == [1e-5, 1e-4, 1e-3]
    assert profile.batch_size == [1, 5, 10, 50, 100]
    assert profile.epochs == [10, 30, 50, 100, 500]
    assert len(profile.cells) == 8
    cost = profile.cost()
    assert cost["configs"] == 8 * 3 * 5 * 5
    assert cost["runs_naive"] == 8 * 3 * 5 * 5 * 3
    assert cost["runs"] == cost["runs_naive"] // 5
    assert cost["epochs_naive"] == 8 * 3 * 5 * 3 * (10 + 30 + 50 + 100 + 500)
    assert cost["epochs"] == 8 * 3 * 5 * 3 * 500


def test_unknown_profile_is_one_clear_error():
    with pytest.raises(ConfigError, match="--profile: no profile 'nope'"):
        Profile.load("nope")


def test_select_best_by_accuracy_then_precision():
    rows = [
        _row("contrast", "ce", 1e-4, 5, 10, 0.70, 0.50),
        _row("contrast", "ce", 1e-3, 5, 30, 0.72, 0.40),
        _row("contrast", "ce", 1e-3, 5, 50, 0.72, 0.45),  # tie on accuracy, better precision
        _row("none", "ce", 1e-5, 1, 10, 0.60, 0.30),
    ]
    best = select_best(rows)
    assert best[("contrast", "ce")]["epochs"] == 50
    assert best[("none", "ce")]["lr"] == 1e-5
    # a full tie goes to the cheaper run, whatever the row order
    tied = [_row("none", "ce", 1e-3, 5, 30, 0.6, 0.3), _row("none", "ce", 1e-3, 5, 10, 0.6, 0.3)]
    assert select_best(tied)[("none", "ce")]["epochs"] == 10
    assert select_best(tied[::-1])[("none", "ce")]["epochs"] == 10


def test_selected_config_and_table1_show_the_choice_beside_the_paper():
    profile = Profile.load("paper")
    best = select_best([_row("contrast", "weighted_ce", 1e-5, 10, 100, 0.8, 0.5)])
    text = selected_config(best[("contrast", "weighted_ce")])
    assert "override /augment: contrast" in text and "lr: 1.0e-05" in text and "max_epochs: 100" in text
    table = table1_markdown("mos2", profile, best, {})
    assert f"{PAPER_TABLE1['mos2'][('contrast', 'weighted_ce')]:.3f}" in table
    assert "**0.800 ± 0.010**" in table
    assert table.count("failed") == 7  # the cells without results say so


def test_numbers_are_written_so_yaml_reads_floats():
    assert _fmt(1e-5) == "1.0e-05" and _fmt(0.001) == "0.001" and _fmt(1e-4) == "0.0001"
    command = grid_command(Profile.load("paper"), ["mos2"], __import__("pathlib").Path("out"))
    assert "optim.lr=1.0e-05,0.0001,0.001" in command
    assert "cv.eval_epochs=[10,30,50,100,500]" in command and "trainer.max_epochs=500" in command
