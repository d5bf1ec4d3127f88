"""The catalog's embedded default model as a user meets it: shipped inside the package, used by
`asttag tag` without --model, and tagging the repository's example clips (held out of its
training) sensibly."""

import csv
import io
import json
from pathlib import Path

from typer.testing import CliRunner

from asttag import checkpoint
from asttag.catalog import embedded_default
from asttag.cli import app
from asttag.tagger import Tagger
from asttag.thresholds import FALLBACK, recommended

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
runner = CliRunner()


def top_tags(*names: str, top: int) -> dict[str, list[str]]:
    result = runner.invoke(app, ["tag", *(str(EXAMPLES / n) for n in names), "--top", str(top),
                                 "-f", "csv", "--quiet"])
    assert result.exit_code == 0, result.output
    tags: dict[str, list[str]] = {}
    for row in csv.DictReader(io.StringIO(result.stdout)):
        tags.setdefault(Path(row["file"]).name, []).append(row["label"])
    return tags


def test_the_default_model_ships_small_and_self_described():
    path = embedded_default()
    assert path is not None, "asttag/data/default.safetensors is missing from the package"
    assert path.stat().st_size <= 25 * 2**20
    assert checkpoint.safetensors_header(path)["format"] == "asttag"
    assert len(checkpoint.load(path).labels) == 527


def test_the_default_model_recommends_an_event_threshold_chosen_on_held_out_windows():
    """`default_model.py export` calibrates it; without -t, `asttag tag --events` uses it."""
    model = checkpoint.load(embedded_default())
    threshold = recommended(model)
    assert threshold != FALLBACK and 0 < threshold.value < 1
    assert "micro-F1" in threshold.rule and "held-out windows" in threshold.rule
    assert Tagger(model, device="cpu").event_threshold == threshold.value


def test_tag_without_a_model_uses_the_default_and_hears_speech_and_music():
    tags = top_tags("speech.flac", "music.flac", top=1)
    assert tags == {"speech.flac": ["Speech"], "music.flac": ["Music"]}


def test_models_list_says_the_default_is_embedded():
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0
    assert next(m for m in json.loads(result.stdout) if m["name"] == "default")["status"] == "embedded"
