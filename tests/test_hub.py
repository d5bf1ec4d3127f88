"""Named models (asttag.hub): a name and a path spelled like it are told apart."""


import pytest


def test_a_folder_named_like_a_model_does_not_shadow_it(tmp_path, monkeypatch):
    from asttag.catalog import embedded_default
    from asttag.hub import load_model

    if embedded_default() is None:
        pytest.skip("this build ships no default model")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").mkdir()  # say, a folder of results
    assert len(load_model("default", device="cpu").labels) == 527
    with pytest.raises(Exception, match="default"):
        load_model("./default", device="cpu")  # spelled as a path, it is the folder
