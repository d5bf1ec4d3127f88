import pytest

from asttag import labels
from asttag.labels import LabelSet, read_label_file


def test_audioset_has_527_classes_in_csv_order():
    a = labels.audioset()
    assert len(a) == 527 and a.multi_label
    assert a.names[0] == "Speech" and a.ids[0] == "/m/09x0r"
    assert a.names[1] == "Male speech, man speaking"  # names with commas survive
    assert a.index("/m/09x0r") == 0 and a.index("speech") == 0 and a.index(5) == 5


def test_esc50_and_speech_commands():
    esc = labels.esc50()
    assert len(esc) == 50 and not esc.multi_label
    assert (esc.names[0], esc.names[49]) == ("dog", "hand_saw")
    sc = labels.speech_commands()
    assert len(sc) == 35 and sc.names == tuple(sorted(sc.names))


def test_names_that_look_like_numbers_are_found_by_name():
    digits = LabelSet.from_names([str(i) for i in range(12)][::-1])  # "11", "10", ..., "0"
    assert digits.index("10") == 1
    assert digits.index(10) == 10
    with pytest.raises(KeyError, match="out of range"):
        digits.index(12)
    with pytest.raises(KeyError, match="unknown label 'bark'"):
        digits.index("bark")


def test_label_sets_refuse_duplicates_and_mismatches():
    with pytest.raises(ValueError, match="repeated: a"):
        LabelSet.from_names(["a", "b", "a"])
    with pytest.raises(ValueError, match="2 names but 1 ids"):
        LabelSet(("a", "b"), ("x",))


def test_round_trips(tmp_path):
    a = labels.audioset()
    assert LabelSet.from_dict(a.to_dict()) == a
    (tmp_path / "l.csv").write_text(a.to_csv())
    assert read_label_file(tmp_path / "l.csv") == a
    (tmp_path / "l.json").write_text('["cat", "dog"]')
    assert read_label_file(tmp_path / "l.json", multi_label=False) == LabelSet.from_names(
        ["cat", "dog"], multi_label=False)
    (tmp_path / "l.txt").write_text("cat\n\ndog\n")
    assert read_label_file(tmp_path / "l.txt").names == ("cat", "dog")


def test_bad_label_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="cannot read label file"):
        read_label_file(tmp_path / "missing.csv")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        read_label_file(tmp_path / "bad.json")
    (tmp_path / "gaps.csv").write_text("index,mid,display_name\n0,a,A\n2,b,B\n")
    with pytest.raises(ValueError, match="without gaps"):
        read_label_file(tmp_path / "gaps.csv")
