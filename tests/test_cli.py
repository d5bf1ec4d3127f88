"""The command line as a whole (asttag.cli and its app): the commands, help, version, the core's
choices, and library warnings on stderr."""

import re
import subprocess
import sys

import typer
from typer.testing import CliRunner

from asttag import checkpoint
from asttag.cli import app
from conftest import tiny_model

runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    # The first word of each row of the Commands panel, not any substring ("tag" is in "asttag").
    panel = result.output.split("Commands", 1)[1]
    listed = set(re.findall(r"^ +([a-z]+) {2,}\S", panel, flags=re.MULTILINE))
    registered = set(typer.main.get_command(app).commands)
    assert listed == registered
    assert {"tag", "train", "finetune", "distill", "evaluate", "average", "ensemble",
            "models"} <= registered


def test_version_goes_to_stdout():
    result = subprocess.run([sys.executable, "-m", "asttag", "--version"], capture_output=True,
                            text=True)
    assert result.returncode == 0 and result.stdout.startswith("asttag ")


def test_the_cli_offers_the_cores_choices():
    from typing import Literal, get_args, get_origin, get_type_hints

    from asttag.choices import AGGREGATES, DATASET_LAYOUTS, PADS, PRECISIONS, TAG_PRECISIONS
    from asttag.cli import distill, evaluate, tag, train
    from asttag.writers import WRITERS

    def choices(function, parameter: str) -> tuple:
        hint = get_type_hints(function, include_extras=True)[parameter]
        while get_origin(hint) is not Literal:  # through Annotated and Optional
            hint = next(a for a in get_args(hint) if a is not type(None))
        return get_args(hint)

    assert choices(tag.tag, "fmt") == tuple(WRITERS)
    assert choices(tag.tag, "pad") == PADS and choices(tag.tag, "aggregate") == AGGREGATES
    assert choices(tag.tag, "precision") == TAG_PRECISIONS
    for function in (train.train, train.finetune, evaluate.evaluate, distill.distill):
        assert choices(function, "precision") == PRECISIONS
    assert choices(train.finetune, "dataset") == DATASET_LAYOUTS


def _command_paths(command, path=()):
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, (*path, name))


def test_every_help_shows_arguments_without_python_types():
    for path in _command_paths(typer.main.get_command(app)):
        result = runner.invoke(app, [*path, "--help"], terminal_width=80)
        assert result.exit_code == 0, path
        usage = result.output.split("\n", 1)[0]
        assert "{" not in usage and "<" not in usage, (path, usage)
        placeholders = re.findall(r"^ +(-\S.*?<[^>]*>)", result.output, flags=re.MULTILINE)
        assert placeholders == [], (path, placeholders)  # e.g. --output <path>, INPUT <list[str]>
        assert not re.search(r"^ +[A-Z_.]+ <", result.output, flags=re.MULTILINE), path
    tag = runner.invoke(app, ["tag", "--help"], terminal_width=80).output
    assert "[OPTIONS] INPUT...\n" in tag and "\n  INPUT...  Audio" in tag


def test_a_bad_choice_is_said_in_the_tools_words():
    result = runner.invoke(app, ["tag", "--format", "xml", "x.wav"])
    assert result.exit_code == 2
    assert "'xml' is not one of 'csv'" in result.output and "Value error" not in result.output


def test_library_warnings_are_one_plain_line_however_long(tmp_path):
    wave = tmp_path / "a.wav"
    import numpy as np
    import soundfile

    soundfile.write(wave, np.zeros(16000, dtype=np.float32), 16000)
    model = checkpoint.save(tiny_model(), tmp_path / "tiny.safetensors")
    result = runner.invoke(app, ["tag", "-m", str(model), str(wave), "--hop", "2", "--window",
                                 "0.5"], terminal_width=40)
    lines = [line for line in result.stderr.splitlines() if "never analysed" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: hop 2 s is longer"), result.stderr
