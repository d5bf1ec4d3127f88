"""The core's choice lists: one home each, importable without torch for the CLI."""

from __future__ import annotations

import subprocess
import sys

from asttag import recipes, tagger
from asttag.choices import PRECISIONS, TAG_PRECISIONS


def test_one_list_of_precisions_serves_recipes_and_the_tagger():
    assert PRECISIONS == ("auto", "fp32", "bf16", "fp16")
    assert recipes.PRECISIONS is PRECISIONS
    assert set(TAG_PRECISIONS) - set(PRECISIONS) == {"int8"}
    assert not hasattr(tagger, "PRECISIONS")


def test_the_choices_import_without_torch():
    code = "import sys, asttag.choices; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
