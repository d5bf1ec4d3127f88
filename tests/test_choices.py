"""The core's choice lists: one home each (tests/test_imports.py checks they load without torch)."""

from __future__ import annotations

from asttag import recipes, tagger
from asttag.choices import PRECISIONS, TAG_PRECISIONS


def test_one_list_of_precisions_serves_recipes_and_the_tagger():
    assert PRECISIONS == ("auto", "fp32", "bf16", "fp16")
    assert recipes.PRECISIONS is PRECISIONS
    assert set(TAG_PRECISIONS) - set(PRECISIONS) == {"int8"}
    assert not hasattr(tagger, "PRECISIONS")
