import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asttag.datasets import (
    DatasetError,
    DatasetSplits,
    Example,
    load_dataset,
    target_vector,
)
from asttag.labels import ESC50_CLASSES, audioset, esc50, speech_commands


def write_audio(path: Path, *, rate: int = 16000, seconds: float = 0.1) -> Path:
    """A short clip of seeded noise, in the format its suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(len(path.name)).uniform(-0.1, 0.1, int(rate * seconds))
    soundfile.write(path, noise.astype(np.float32), rate)
    return path


def names(examples: list[Example]) -> list[str]:
    return [e.path.name for e in examples]


def test_the_cli_offers_the_layouts_there_are():
    from asttag.choices import DATASET_LAYOUTS
    from asttag.datasets import DATASETS

    assert tuple(DATASETS) == DATASET_LAYOUTS


# --- Example and target_vector -------------------------------------------------------------


def test_example_normalises_labels_and_builds_multi_hot_targets():
    example = Example("a.wav", (3, 1, 3))
    assert example.path == Path("a.wav") and example.labels == (1, 3)
    np.testing.assert_array_equal(target_vector(example, 4), [0, 1, 0, 1])
    assert target_vector(example, 4).dtype == np.float32


def test_soft_examples_return_their_scores_and_compare_by_value():
    example = Example("a.wav", soft=[0.2, 0.7])
    vector = target_vector(example, 2)
    np.testing.assert_allclose(vector, [0.2, 0.7])
    vector[0] = 1.0  # a copy: the example itself stays read-only and unchanged
    assert example.soft[0] == pytest.approx(0.2)
    assert example == Example("a.wav", soft=[0.2, 0.7])
    assert example != Example("a.wav", soft=[0.3, 0.7])
    assert example != Example("a.wav", (1,))
    assert len({example, Example("a.wav", soft=[0.2, 0.7])}) == 1


@pytest.mark.parametrize(
    ("example", "n_classes", "message"),
    [
        (Example("a.wav", (5,)), 3, "class index 5 is out of range for 3 classes"),
        (Example("a.wav", soft=[0.1, 0.9]), 3, "2 soft scores for 3 classes"),
    ],
)
def test_target_vector_refuses_a_wrong_class_count(example, n_classes, message):
    with pytest.raises(ValueError, match=message):
        target_vector(example, n_classes)


def test_example_refuses_labels_and_scores_together_and_negative_indices():
    with pytest.raises(ValueError, match=r"labels or soft scores, not both"):
        Example("a.wav", (1,), soft=[0.0, 1.0])
    with pytest.raises(ValueError, match=r"must be >= 0"):
        Example("a.wav", (-1,))
    assert issubclass(DatasetError, ValueError)


# --- ESC-50 --------------------------------------------------------------------------------

ESC_COLUMNS = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]


def make_esc50(root: Path, categories, *, clips_per_fold: int = 2, folds: int = 5) -> Path:
    """ESC-50's release layout with generated 44.1 kHz clips."""
    rows = []
    for target, category in enumerate(categories):
        for fold in range(1, folds + 1):
            for take in range(clips_per_fold):
                source = 1000 * target + 10 * fold + take
                name = f"{fold}-{source}-A-{target}.wav"
                write_audio(root / "audio" / name, rate=44100, seconds=0.02)
                rows.append([name, fold, target, category, "False", source, "A"])
    write_rows(root / "meta" / "esc50.csv", ESC_COLUMNS, rows)
    return root


def write_rows(path: Path, header, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


FIVE_SOUNDS = ["chirp", "click", "hum", "noise", "sweep"]


def test_esc50_holds_out_one_fold(tmp_path):
    root = make_esc50(tmp_path, FIVE_SOUNDS)
    splits = load_dataset("esc50", root, fold=3)
    assert isinstance(splits, DatasetSplits)
    assert splits.labels.names == tuple(FIVE_SOUNDS) and not splits.labels.multi_label
    assert len(splits.valid) == 5 * 2 and len(splits.train) == 5 * 2 * 4
    assert all(name.startswith("3-") for name in names(splits.valid))
    assert not any(name.startswith("3-") for name in names(splits.train))
    assert splits.test is None
    for example in splits.train + splits.valid:
        assert example.labels == (int(example.path.stem.rsplit("-", 1)[1]),)
        assert example.path.parent == root / "audio"


def test_esc50_standard_categories_give_the_builtin_label_set(tmp_path):
    root = make_esc50(tmp_path, ESC50_CLASSES, clips_per_fold=1, folds=2)
    assert load_dataset("esc50", root, fold=2).labels == esc50()


def corrupt_esc50(root: Path, row: int, column: str, value) -> None:
    meta = root / "meta" / "esc50.csv"
    rows = read_rows(meta)
    rows[row][ESC_COLUMNS.index(column)] = value
    write_rows(meta, rows[0], rows[1:])


@pytest.mark.parametrize(
    ("row", "column", "value", "message"),
    [
        (2, "fold", "x", r"esc50.csv:3: fold must be a whole number, got 'x'"),
        (1, "category", "bark", r"target 0 is named both 'bark' and 'chirp'"),
        (1, "filename", "", r"esc50.csv:2: empty filename or category"),
    ],
)
def test_esc50_bad_rows_are_named(tmp_path, row, column, value, message):
    root = make_esc50(tmp_path, FIVE_SOUNDS)
    corrupt_esc50(root, row, column, value)
    with pytest.raises(DatasetError, match=message):
        load_dataset("esc50", root)


def test_esc50_targets_must_run_without_gaps(tmp_path):
    root = make_esc50(tmp_path, FIVE_SOUNDS)
    meta = root / "meta" / "esc50.csv"
    rows = read_rows(meta)
    write_rows(meta, rows[0], [r for r in rows[1:] if r[2] != "2"])
    with pytest.raises(
        DatasetError, match=r"targets must run 0..3 without gaps, found \[0, 1, 3, 4\]"
    ):
        load_dataset("esc50", root)


def test_esc50_layout_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"ESC-50 folder not found"):
        load_dataset("esc50", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"meta/esc50.csv not found"):
        load_dataset("esc50", tmp_path)
    root = make_esc50(tmp_path, FIVE_SOUNDS)
    with pytest.raises(DatasetError, match=r"fold must be a whole number, got '3'"):
        load_dataset("esc50", root, fold="3")
    with pytest.raises(DatasetError, match=r"fold 7 not found; folds present: \[1, 2, 3, 4, 5\]"):
        load_dataset("esc50", root, fold=7)
    write_rows(root / "meta" / "esc50.csv", ["filename", "target"], [["a.wav", 0]])
    with pytest.raises(
        DatasetError, match=r"missing column.s. fold, category; found filename, target"
    ):
        load_dataset("esc50", root)


def test_esc50_missing_audio_fails_with_a_summary(tmp_path):
    root = make_esc50(tmp_path, FIVE_SOUNDS)
    for path in sorted((root / "audio").glob("2-*"))[:7]:
        path.unlink()
    with pytest.raises(
        DatasetError, match=r"7 of 50 listed audio files are missing \(.*2-.*and 2 more\)"
    ):
        load_dataset("esc50", root, fold=1)


# --- Speech Commands -----------------------------------------------------------------------


def make_speech_commands(root: Path, words=("yes", "no", "up"), *, clips: int = 4) -> Path:
    """Speech Commands v0.02's layout: word folders, the two lists, background noise."""
    for word in words:
        for i in range(clips):
            write_audio(root / word / f"{i:08x}_nohash_0.wav", seconds=0.01)
    write_audio(root / "_background_noise_" / "white_noise.wav", seconds=0.01)
    (root / "validation_list.txt").write_text(
        "".join(f"{w}/00000000_nohash_0.wav\n" for w in words)
    )
    (root / "testing_list.txt").write_text("".join(f"{w}/00000001_nohash_0.wav\n" for w in words))
    (root / "LICENSE").write_text("CC-BY 4.0")
    return root


def test_speech_commands_splits_follow_the_lists(tmp_path):
    root = make_speech_commands(tmp_path)
    splits = load_dataset("speechcommands", root)
    assert splits.labels.names == ("no", "up", "yes") and not splits.labels.multi_label
    assert len(splits.train) == 3 * 2 and len(splits.valid) == 3 and len(splits.test) == 3
    assert set(names(splits.valid)) == {"00000000_nohash_0.wav"}
    assert set(names(splits.test)) == {"00000001_nohash_0.wav"}
    every = splits.train + splits.valid + splits.test
    assert len({e.path for e in every}) == len(every)
    assert all(splits.labels.names[e.labels[0]] == e.path.parent.name for e in every)
    assert "white_noise.wav" not in names(every)


def test_speech_commands_real_words_give_the_builtin_label_set(tmp_path):
    root = make_speech_commands(tmp_path, speech_commands().names, clips=3)
    assert load_dataset("speechcommands", root).labels == speech_commands()


def test_speech_commands_errors(tmp_path):
    root = make_speech_commands(tmp_path)
    (root / "testing_list.txt").unlink()
    with pytest.raises(
        DatasetError, match=r"testing_list.txt: Speech Commands split list not found"
    ):
        load_dataset("speechcommands", root)
    make_speech_commands(root)
    (root / "validation_list.txt").write_text("yes/00000000_nohash_0.wav\ncat/a.wav\n")
    with pytest.raises(
        DatasetError, match=r"validation_list.txt:2: 'cat/a.wav' is not a clip inside a word folder"
    ):
        load_dataset("speechcommands", root)
    (root / "validation_list.txt").write_bytes(b"yes/\xff.wav\n")
    with pytest.raises(DatasetError, match=r"validation_list.txt: .* is not UTF-8 text"):
        load_dataset("speechcommands", root)
    (root / "validation_list.txt").write_text("yes/gone.wav\n")
    with pytest.raises(
        DatasetError, match=r"validation_list.txt: 1 of 1 listed audio files are missing"
    ):
        load_dataset("speechcommands", root)


def test_class_folder_layout_errors(tmp_path):
    root = make_speech_commands(tmp_path)
    (root / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"class folder.s. without audio files: empty"):
        load_dataset("speechcommands", root)
    (root / "empty").rmdir()
    write_audio(root / "stray.wav")
    with pytest.raises(
        DatasetError, match=r"found 1 audio file.s. directly in the folder \(stray.wav\)"
    ):
        load_dataset("speechcommands", root)


# --- AudioSet ------------------------------------------------------------------------------

SEGMENTS_HEADER = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids=3, num_segs=3, num_unique_labels=3, num_positive_labels=4\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)


def write_segments(path: Path, rows) -> None:
    lines = [
        f'{ytid}, {start:.3f}, {start + 10:.3f}, "{",".join(mids)}"\n' for ytid, start, mids in rows
    ]
    path.write_text(SEGMENTS_HEADER + "".join(lines))


def make_audioset(root: Path) -> tuple[Path, list[str]]:
    """Balanced, unbalanced and eval segments CSVs and clips named in every accepted way."""
    mids = list(audioset().ids)
    write_segments(
        root / "balanced_train_segments.csv",
        [("--PJHxphWEs", 30, [mids[0], mids[5]]), ("-0RWZT-miFs", 420, [mids[1]]),
         ("missingclip", 0, [mids[2]])],
    )  # fmt: skip
    write_segments(root / "unbalanced_train_segments.csv", [("x_y-z012345", 10, [mids[3]])])
    write_segments(root / "eval_segments.csv", [("evalclip001", 0, [mids[526], mids[0]])])
    write_audio(root / "clips" / "balanced" / "--PJHxphWEs.wav")
    write_audio(root / "clips" / "balanced" / "-0RWZT-miFs_420.000_430.000.flac")
    write_audio(root / "clips" / "unbalanced" / "x_y-z012345_10000.wav")
    write_audio(root / "clips" / "eval" / "evalclip001.ogg")
    (root / "clips" / "eval" / "evalclip001.txt").write_text("not audio")
    return root, mids


def test_audioset_segments_find_clips_by_youtube_id(tmp_path):
    root, _ = make_audioset(tmp_path)
    splits = load_dataset("audioset", root, audio_dir=root / "clips")
    assert splits.labels == audioset() and splits.labels.multi_label
    assert names(splits.train) == ["--PJHxphWEs.wav", "-0RWZT-miFs_420.000_430.000.flac"]
    assert splits.train[0].labels == (0, 5)
    assert names(splits.valid) == ["evalclip001.ogg"] and splits.valid[0].labels == (0, 526)
    assert target_vector(splits.valid[0], 527).sum() == 2
    assert len(splits.notes) == 1
    assert "balanced_train_segments.csv: 1 of 3 segments have no clip" in splits.notes[0]
    assert "missingclip" in splits.notes[0]


def test_audioset_full_training_set_reads_both_training_csvs(tmp_path):
    root, _ = make_audioset(tmp_path)
    splits = load_dataset("audioset", root, train="full")  # clips searched under root itself
    assert names(splits.train)[-1] == "x_y-z012345_10000.wav"
    assert splits.train[-1].labels == (3,)


def test_audioset_missing_clips_can_be_an_error(tmp_path):
    root, _ = make_audioset(tmp_path)
    with pytest.raises(DatasetError, match=r"1 of 3 segments have no clip.*missingclip"):
        load_dataset("audioset", root, strict=True)
    (root / "clips" / "eval" / "evalclip001.ogg").unlink()
    with pytest.raises(DatasetError, match=r"eval_segments.csv: 1 of 1 segments have no clip"):
        load_dataset("audioset", root)


def test_audioset_segment_errors(tmp_path):
    root, mids = make_audioset(tmp_path)
    write_audio(root / "clips" / "copy" / "--PJHxphWEs.flac")
    with pytest.raises(DatasetError, match=r"several clips for YouTube id --PJHxphWEs"):
        load_dataset("audioset", root)
    (root / "clips" / "copy" / "--PJHxphWEs.flac").unlink()
    csv_path = root / "eval_segments.csv"
    write_segments(csv_path, [("evalclip001", 0, [mids[0], "/m/nonsense"])])
    with pytest.raises(DatasetError, match=r"eval_segments.csv:4: unknown label '/m/nonsense'"):
        load_dataset("audioset", root)
    csv_path.write_text(SEGMENTS_HEADER + "evalclip001, 0.000, 10.000\n")
    with pytest.raises(DatasetError, match=r"eval_segments.csv:4: expected YTID, .* got 3 field"):
        load_dataset("audioset", root)
    csv_path.write_text(SEGMENTS_HEADER + 'evalclip001, zero, 10.000, "/m/09x0r"\n')
    with pytest.raises(DatasetError, match=r"eval_segments.csv:4: start and end must be seconds"):
        load_dataset("audioset", root)
    csv_path.unlink()
    with pytest.raises(DatasetError, match=r"eval_segments.csv: AudioSet segments CSV not found"):
        load_dataset("audioset", root)
    with pytest.raises(DatasetError, match=r"unknown AudioSet training set 'half'"):
        load_dataset("audioset", root, train="half")


def write_ast_manifest(path: Path, entries) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"data": [{"wav": w, "labels": lab, "extra": 1} for w, lab in entries]})
    )
    return path


def test_audioset_json_manifest(tmp_path):
    mids = audioset().ids
    write_audio(tmp_path / "wavs" / "a.wav")
    write_audio(tmp_path / "wavs" / "b.wav")
    train = write_ast_manifest(
        tmp_path / "train.json",
        [("wavs/a.wav", f"{mids[0]},{mids[7]}"), (str(tmp_path / "wavs" / "b.wav"), mids[1])],
    )
    valid = write_ast_manifest(tmp_path / "valid.json", [("wavs/b.wav", mids[2])])
    splits = load_dataset("audioset", train, valid=valid)
    assert [e.path for e in splits.train] == [
        tmp_path / "wavs" / "a.wav",
        tmp_path / "wavs" / "b.wav",
    ]
    assert splits.train[0].labels == (0, 7) and splits.valid[0].labels == (2,)
    assert splits.test is None and splits.labels == audioset()


def test_audioset_json_manifest_with_own_label_file(tmp_path):
    write_audio(tmp_path / "a.wav")
    label_file = tmp_path / "class_labels_indices.csv"
    label_file.write_text("index,mid,display_name\n0,/x/bird,Bird\n1,/x/car,Car\n")
    train = write_ast_manifest(tmp_path / "train.json", [("a.wav", "/x/car")])
    splits = load_dataset("audioset", train, label_file=label_file)
    assert splits.labels.names == ("Bird", "Car") and splits.train[0].labels == (1,)


def test_audioset_json_manifest_errors(tmp_path):
    write_audio(tmp_path / "a.wav")
    train = write_ast_manifest(
        tmp_path / "train.json", [("a.wav", "/m/09x0r"), ("a.wav", "/m/bogus")]
    )
    with pytest.raises(DatasetError, match=r"train.json: data\[1\]: unknown label '/m/bogus'"):
        load_dataset("audioset", train)
    write_ast_manifest(train, [("a.wav", "/m/09x0r"), ("gone.wav", "/m/09x0r")])
    with pytest.raises(
        DatasetError, match=r"train.json: 1 of 2 listed audio files are missing \(.*gone.wav\)"
    ):
        load_dataset("audioset", train)
    train.write_text('[{"wav": "a.wav"}]')
    with pytest.raises(DatasetError, match=r'expected \{"data"'):
        load_dataset("audioset", train)
    train.write_text("{")
    with pytest.raises(DatasetError, match=r"train.json: not valid JSON"):
        load_dataset("audioset", train)
    with pytest.raises(
        DatasetError, match=r"unknown option.s. audio_dir; accepted: valid, test, label_file"
    ):
        load_dataset("audioset", train, audio_dir=tmp_path)


# --- a folder per class --------------------------------------------------------------------


def make_class_folders(root: Path, counts: dict[str, int]) -> Path:
    for name, count in counts.items():
        for i in range(count):
            write_audio(root / name / ("deep" if i % 2 else "") / f"clip{i}.flac", seconds=0.01)
    return root


def test_folder_classes_are_sorted_subfolders(tmp_path):
    root = make_class_folders(tmp_path, {"dog": 3, "cat": 2})
    (root / "cat" / "notes.txt").write_text("not audio")
    (root / "cat" / "._clip0.wav").write_bytes(b"macOS resource fork")
    (root / "dog" / "memo.m4a").write_bytes(b"FFmpeg's, taken like libsndfile's")
    write_audio(root / ".cache" / "x.wav")
    splits = load_dataset("folder", root)
    assert splits.labels.names == ("cat", "dog") and not splits.labels.multi_label
    assert [e.labels for e in splits.train] == [(0,), (0,), (1,), (1,), (1,), (1,)]
    assert splits.valid == [] and splits.test is None


def test_folder_validation_split_is_stratified_and_seeded(tmp_path):
    root = make_class_folders(tmp_path, {"a": 10, "b": 20, "c": 5})
    splits = load_dataset("folder", root, valid_fraction=0.2, seed=1)
    assert [sum(e.labels == (k,) for e in splits.valid) for k in range(3)] == [2, 4, 1]
    assert len(splits.train) + len(splits.valid) == 35
    assert not {e.path for e in splits.train} & {e.path for e in splits.valid}
    again = load_dataset("folder", root, valid_fraction=0.2, seed=1)
    other = load_dataset("folder", root, valid_fraction=0.2, seed=2)
    assert again.valid == splits.valid and other.valid != splits.valid


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"no class subfolders found"):
        load_dataset("folder", tmp_path)
    root = make_class_folders(tmp_path, {"a": 1})
    with pytest.raises(DatasetError, match=r"validation fraction 0.2 of 1 examples selects none"):
        load_dataset("folder", root, valid_fraction=0.2)
    with pytest.raises(DatasetError, match=r"strictly between 0 and 1, got 1.5"):
        load_dataset("folder", root, valid_fraction=1.5)


# --- manifests -----------------------------------------------------------------------------


def test_csv_manifest_with_label_lists(tmp_path):
    write_audio(tmp_path / "audio" / "a.wav")
    write_audio(tmp_path / "audio" / "b.wav")
    write_audio(tmp_path / "c.wav")
    manifest = tmp_path / "train.csv"
    write_rows(
        manifest,
        ["path", "labels", "duration"],
        [["audio/a.wav", "Speech; Inside, small room", 3], ["audio/b.wav", "dog,Speech", 1],
         [str(tmp_path / "c.wav"), "", 2]],
    )  # fmt: skip
    splits = load_dataset("manifest", manifest)
    assert splits.labels.names == ("Inside, small room", "Speech", "dog")
    assert splits.labels.multi_label
    assert [e.labels for e in splits.train] == [(0, 1), (1, 2), ()]
    assert splits.train[0].path == tmp_path / "audio" / "a.wav"


def test_single_label_is_inferred_and_digit_names_stay_names(tmp_path):
    for i in range(3):
        write_audio(tmp_path / f"{i}.wav")
    manifest = tmp_path / "digits.csv"
    write_rows(manifest, ["path", "labels"], [["0.wav", "10"], ["1.wav", "2"], ["2.wav", "1"]])
    splits = load_dataset("manifest", manifest)
    assert splits.labels.names == ("1", "10", "2") and not splits.labels.multi_label
    assert [splits.labels.names[e.labels[0]] for e in splits.train] == ["10", "2", "1"]


def test_csv_manifest_with_soft_scores(tmp_path):
    write_audio(tmp_path / "a.wav")
    write_audio(tmp_path / "b.wav")
    manifest = tmp_path / "teacher.csv"
    write_rows(manifest, ["path", "rain", "wind"], [["a.wav", 0.9, 0.4], ["b.wav", 0.0, 0.05]])
    splits = load_dataset("manifest", manifest)
    assert splits.labels.names == ("rain", "wind") and splits.labels.multi_label
    np.testing.assert_allclose(target_vector(splits.train[0], 2), [0.9, 0.4])
    assert splits.train[0].labels == ()


def test_json_lines_manifests_for_every_split_with_a_label_file(tmp_path):
    for name in ("a", "b", "c"):
        write_audio(tmp_path / f"{name}.wav")
    label_file = tmp_path / "labels.txt"
    label_file.write_text("cat\ndog\nbird\n")
    (tmp_path / "train.jsonl").write_text(
        '{"path": "a.wav", "scores": {"Dog": 0.75, "cat": 0.25}}\n'
        "\n"  # blank lines are skipped
        '{"path": "b.wav", "labels": ["bird"]}\n'
    )
    (tmp_path / "valid.jsonl").write_text('{"path": "c.wav", "labels": "dog"}\n')
    (tmp_path / "test.jsonl").write_text('{"path": "a.wav", "labels": ["cat"]}\n')
    splits = load_dataset(
        "manifest", tmp_path / "train.jsonl", valid=tmp_path / "valid.jsonl",
        test=tmp_path / "test.jsonl", label_file=label_file,
    )  # fmt: skip
    assert splits.labels.names == ("cat", "dog", "bird")
    assert not splits.labels.multi_label  # one label per row and scores summing to 1
    np.testing.assert_allclose(target_vector(splits.train[0], 3), [0.25, 0.75, 0.0])
    assert splits.train[1].labels == (2,)
    assert splits.valid[0].labels == (1,) and splits.test[0].labels == (0,)


def test_manifest_valid_fraction_holds_out_part_of_train(tmp_path):
    rows = []
    for i in range(10):
        write_audio(tmp_path / f"{i}.wav")
        rows.append([f"{i}.wav", "odd" if i % 2 else "even"])
    write_rows(tmp_path / "m.csv", ["path", "labels"], rows)
    splits = load_dataset("manifest", tmp_path / "m.csv", valid_fraction=0.4, seed=0)
    assert len(splits.valid) == 4 and len(splits.train) == 6
    assert sorted(e.labels for e in splits.valid) == [(0,), (0,), (1,), (1,)]
    with pytest.raises(DatasetError, match=r"validation manifest or valid_fraction, not both"):
        load_dataset("manifest", tmp_path / "m.csv", valid=tmp_path / "m.csv", valid_fraction=0.2)


MANIFEST_ERRORS = [
    ("m.jsonl", '{"path": "a.wav"}\n', {}, r'm.jsonl:1: needs exactly one of "labels" and'),
    ("m.jsonl", '{"path": "a.wav", "labels": ["x"]}\n{oops\n', {}, r"m.jsonl:2: not valid JSON"),
    ("m.jsonl", '{"path": "a.wav", "scores": {"x": 1.5}}\n', {}, r"m.jsonl:1: score of 'x' must"),
    ("m.jsonl", '{"path": "a.wav", "labels": [1]}\n', {}, r'm.jsonl:1: "labels" must be a list'),
    ("m.jsonl", '{"labels": ["x"]}\n', {}, r'm.jsonl:1: expected an object with a string "path"'),
    ("m.csv", "path,labels\na.wav,x\na.wav,nope\n", {"label_file": "labels.txt"},
     r"m.csv:3: unknown label 'nope'"),
    ("m.csv", "path,labels\na.wav,x\na.wav,x;y\n", {"multi_label": False},
     r"m.csv:3: single-label data needs exactly one label per clip, got 2"),
    ("m.csv", "path,x\na.wav,high\n", {}, r"m.csv:2: score of 'x' is not a number: 'high'"),
    ("m.csv", "path\na.wav\n", {}, r"m.csv: needs a labels column or one score column per class"),
    ("m.csv", "file,labels\na.wav,x\n", {}, r"m.csv: missing column.s. path; found file, labels"),
    ("m.csv", "path,labels\na.wav,x,extra\n", {}, r"m.csv:2: expected 2 fields"),
    ("m.csv", "path,labels\n", {}, r"m.csv: the manifest lists no clips"),
    ("m.csv", "path,labels\na.wav,x\ngone.wav,x\n", {},
     r"m.csv: 1 of 2 listed audio files are missing \(.*gone.wav\)"),
    ("m.txt", "a.wav x\n", {}, r"unknown manifest type .txt; use .csv, .jsonl, .ndjson"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "options", "message"), MANIFEST_ERRORS)
def test_manifest_errors_name_the_row(tmp_path, name, text, options, message):
    write_audio(tmp_path / "a.wav")
    (tmp_path / "labels.txt").write_text("x\ny\n")
    (tmp_path / name).write_text(text)
    options = {k: tmp_path / v if k == "label_file" else v for k, v in options.items()}
    with pytest.raises(DatasetError, match=message):
        load_dataset("manifest", tmp_path / name, **options)


# --- the registry --------------------------------------------------------------------------


def test_registry_refuses_unknown_layouts_and_options(tmp_path):
    with pytest.raises(
        DatasetError, match=r"unknown data set layout 'librispeech'; known: esc50, "
    ):
        load_dataset("librispeech", tmp_path)
    with pytest.raises(DatasetError, match=r"esc50: unknown option.s. folds; accepted: fold"):
        load_dataset("esc50", tmp_path, folds=2)
    with pytest.raises(
        DatasetError, match=r"speechcommands: unknown option.s. seed; accepted: none"
    ):
        load_dataset("speechcommands", tmp_path, seed=2)
