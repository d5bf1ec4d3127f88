"""The CLI's shared options: numbers checked in one place, recipes from the options given."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from asttag.cli import app

# Every numeric option of every command, after what the command needs to get that far.
NUMERIC = [
    (["tag", "x.wav"], ["--top", "--threshold", "--window", "--hop", "--batch-size", "--threads",
                        "--workers"]),
    (["embed", "x.wav", "-o", "x.npy"], ["--window", "--hop", "--batch-size", "--threads",
                                         "--workers"]),
    (["plot", "x.wav", "-o", "x.png"], ["--top", "--threshold", "--hop", "--width"]),
    (["train"], ["--fstride", "--tstride", "--epochs", "--lr", "--batch-size", "--grad-accum",
                 "--seed", "--workers"]),
    (["finetune", "esc50"], ["--epochs", "--lr", "--batch-size", "--workers"]),
    (["distill", "x.wav"], ["--depth", "--mel-bins", "--length", "--epochs", "--lr", "--seed"]),
    (["evaluate", "data"], ["--batch-size", "--workers"]),
    (["ensemble", "evaluate", "m", "data"], ["--batch-size", "--workers"]),
    (["average", "a", "-o", "b"], ["--from-epoch", "--to-epoch", "--top"]),
    (["models", "convert", "a", "b"], ["--target-length", "--mel-bins", "--mean", "--std"]),
]
# nan passes every comparison: the value that once slipped through ranges.
CASES = [(command, option, "nan") for command, options in NUMERIC for option in options]
CASES += [(["tag", "x.wav"], "--hop", value) for value in ("inf", "-inf", "1e400", "-1", "x", "")]


@pytest.mark.parametrize("command,option,value", CASES)
def test_every_numeric_option_refuses_what_is_no_number_in_its_range(command, option, value):
    result = CliRunner().invoke(app, [*command, option, value])
    assert result.exit_code == 2, result.output
    assert f"'{option}'" in result.stderr and "expected a" in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


@pytest.mark.parametrize("args", [["tag", "x.wav", "--hop", "0"], ["tag", "x.wav", "--window", "0"],
                                  ["tag", "x.wav", "--threshold", "1.5"],
                                  ["tag", "x.wav", "--top", "2.5"], ["models", "convert", "a", "b",
                                                                     "--std", "0"]])
def test_zero_and_out_of_range_values_name_the_range(args):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and f"'{args[-2]}'" in result.stderr
    assert "expected a whole number" in result.stderr or "expected a finite number" in result.stderr


def test_help_reads_like_a_command_line_tool():
    text = CliRunner().invoke(app, ["tag", "--help"], terminal_width=80).stdout
    assert text.index("Examples:") < text.index("Options:")
    assert "--hop SECONDS" in text and "--threads N" in text and "default: torch's" in text
    for leak in ("<str>", "<bool>", "<float>", "<int", "╭", "│"):
        assert leak not in text.split("Options:")[1], leak
    longest = max(len(line) for line in text.splitlines())
    assert longest <= 80


def test_a_resume_refusal_names_a_given_argument_as_usage_does(tmp_path):
    # An argument is spelled as usage shows it; asking Typer's parameter for click's
    # human_readable_name raised AttributeError instead of this usage error.
    result = CliRunner().invoke(app, ["finetune", "esc50", "--resume", str(tmp_path), "--epochs", "3"])
    assert result.exit_code == 2, result.output
    assert sorted(result.stderr.split("; drop ")[1].strip().split(", ")) == ["--epochs", "DATASET"]
