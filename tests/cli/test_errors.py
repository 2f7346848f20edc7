"""Library errors name arguments as Python does; the command line names them as flags."""

from neuralct.cli import build_parser, in_flags


def test_a_backquoted_argument_becomes_the_commands_flag():
    parser = build_parser()
    message = "`lag_ps` 0.3 is not a whole number of frames; `vamp_lags_ps` too"
    assert in_flags(message, parser, "train") == "--lag-ps 0.3 is not a whole number of frames; --vamp-lags-ps too"


def test_a_backquoted_word_that_is_no_option_of_the_command_is_left_alone():
    parser = build_parser()
    message = "`lag_ps` and `frobnicate`; run `neuralct simulate` first"
    assert in_flags(message, parser, "export") == message
    assert in_flags("`chains` must be >= 2", parser, "sample") == "--chains must be >= 2"
