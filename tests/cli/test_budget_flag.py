"""--budget on play and serve: typed once at the command boundary, a bad value refused in one line (exit 2)."""

import pytest

from soundscape.cli import main


@pytest.mark.parametrize("argv, message", [
    (["play", "forest", "--budget", "0"], "--budget: expected a percentage from 1 to 100, got '0'"),
    (["play", "forest", "--budget", "lots"], "--budget: expected a percentage from 1 to 100, got 'lots'"),
    (["serve", "--budget", "101"], "--budget: expected a percentage from 1 to 100, got '101'"),
    (["serve", "--budget", "30", "--ray"], "--budget 30: applies to serve in this process, not to Ray replicas"),
])
def test_a_bad_budget_is_refused_with_exit_2(capsys, argv, message):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusal (usage, then the one line)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_the_budget_reaches_play_options():
    import argparse

    from soundscape.cli.play import add_parsers, play_options

    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    assert play_options(parser.parse_args(["play", "forest", "--budget", "30"])).budget == 30.0
    # Not given: None, so that the scene's generation.budget schedule applies (100 without one).
    assert play_options(parser.parse_args(["play", "forest"])).budget is None
