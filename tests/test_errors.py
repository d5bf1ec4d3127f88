"""Library errors speak to Python callers; the argument they are about is named for front ends."""

from __future__ import annotations

import pytest

from asttag.averaging import AveragingError, select_top
from asttag.errors import about, parameter_of
from asttag.recipes import load_recipe
from asttag.training import TrainingError
from asttag.training.setup import load_splits
from training_fixtures import tiny_recipe


def test_about_names_the_argument_and_keeps_the_error():
    error = about(ValueError("no data"), "data_dir")
    assert isinstance(error, ValueError) and str(error) == "no data"
    assert parameter_of(error) == "data_dir" and parameter_of(ValueError("x")) is None


def test_library_messages_name_no_command_line_flags(tmp_path):
    with pytest.raises(AveragingError) as top:
        select_top([], 0, metric="mAP")
    with pytest.raises(TrainingError) as no_data:
        load_splits(load_recipe(tiny_recipe(tmp_path / "r.yaml")).replace(data_dir=None))
    for caught in (top, no_data):
        assert "--" not in str(caught.value), caught.value
    assert parameter_of(no_data.value) == "data_dir"
