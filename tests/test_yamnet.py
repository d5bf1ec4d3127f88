"""The YAMNet teacher without the real model: label mapping, window targets, framing through a
fake interpreter, and the errors for files that are missing or not YAMNet."""

from __future__ import annotations

import io
import math
import sys
import zipfile

import numpy as np
import pytest

from asttag import yamnet
from asttag.labels import audioset
from asttag.yamnet import (
    FRAME_SAMPLES,
    HOP_SAMPLES,
    MISSING_AUDIOSET_CLASSES,
    NUM_CLASSES,
    YamnetTeacher,
    audioset_mask,
    default_labels,
    read_embedded_labels,
    to_audioset,
    window_targets,
)


class FakeInterpreter:
    """Stands in for the TFLite interpreter. Each frame's "scores" describe the frame itself:
    [0] its first sample, [1] its last sample, [2] how many of its samples are non-zero."""

    def __init__(self, input_shape=(FRAME_SAMPLES,), output_shape=(1, NUM_CLASSES)) -> None:
        self.input_shape = input_shape
        self.output_shape = output_shape
        self.frames: list[np.ndarray] = []

    def get_input_details(self):
        return [{"index": 0, "shape": np.array(self.input_shape)}]

    def get_output_details(self):
        return [{"index": 7, "shape": np.array(self.output_shape)}]

    def allocate_tensors(self) -> None:
        pass

    def set_tensor(self, index, value) -> None:
        assert index == 0 and value.shape == (FRAME_SAMPLES,) and value.dtype == np.float32
        self.frames.append(value.copy())

    def invoke(self) -> None:
        pass

    def get_tensor(self, index):
        assert index == 7
        frame = self.frames[-1]
        out = np.zeros(self.output_shape, dtype=np.float32)
        out[0, :3] = [frame[0], frame[-1], np.count_nonzero(frame)]
        return out


def teacher(fake: FakeInterpreter | None = None) -> YamnetTeacher:
    return YamnetTeacher(fake or FakeInterpreter(), labels=default_labels())


def fake_tflite(path, *, labels: list[str] | None = None) -> None:
    """Bytes that pass for a .tflite file (flatbuffer identifier at 4..8), with the label list
    appended as a zip archive the way TFLite metadata packs associated files."""
    data = bytearray(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    if labels is not None:
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("yamnet_label_list.txt", "\n".join(labels) + "\n")
        data += archive.getvalue()
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- label mapping


def test_default_labels_are_audioset_without_the_six_missing_classes():
    labels = default_labels()
    assert len(labels) == NUM_CLASSES == 521
    assert not set(MISSING_AUDIOSET_CLASSES) & set(labels)
    assert labels[:2] == ("Speech", "Child speech, kid speaking")


def test_mask_marks_exactly_the_521_classes_with_signal():
    names = audioset().names
    mask = audioset_mask()
    assert mask.shape == (527,) and mask.dtype == bool
    assert mask.sum() == 521
    assert {names[i] for i in np.flatnonzero(~mask)} == set(MISSING_AUDIOSET_CLASSES)


def test_to_audioset_moves_each_score_to_its_class_by_name():
    names = audioset().names
    scores = np.arange(2 * 521, dtype=np.float32).reshape(2, 521) / 2000
    mapped = to_audioset(scores)
    assert mapped.shape == (2, 527)
    for j, name in enumerate(default_labels()):
        np.testing.assert_array_equal(mapped[:, names.index(name)], scores[:, j])
    assert np.isnan(mapped[:, ~audioset_mask()]).all()
    assert not np.isnan(mapped[:, audioset_mask()]).any()


def test_to_audioset_follows_the_model_label_order_not_positions():
    labels = list(reversed(default_labels()))
    scores = np.zeros((1, 521), dtype=np.float32)
    scores[0, labels.index("Dog")] = 0.9
    mapped = to_audioset(scores, labels=labels)
    assert mapped[0, audioset().index("Dog")] == pytest.approx(0.9)
    assert np.nanmax(mapped) == pytest.approx(0.9)


def test_to_audioset_rejects_the_wrong_number_of_scores_and_unknown_names():
    with pytest.raises(ValueError, match="521"):
        to_audioset(np.zeros((3, 527)))
    with pytest.raises(ValueError, match="Not a class"):
        to_audioset(np.zeros((1, 2)), labels=["Speech", "Not a class"])


# --------------------------------------------------------------------------- window targets


def test_window_targets_take_the_max_over_frames_centred_inside_each_window():
    times = np.array([0.5, 1.0, 1.5, 2.0, 2.5])
    scores = np.array([[0.1, 0.9], [0.7, 0.1], [0.2, 0.3], [0.4, 0.0], [0.0, 0.8]], dtype=np.float32)
    targets = window_targets(times, scores, [0.0, 1.0, 2.0], 1.0)
    np.testing.assert_allclose(targets[0], [0.1, 0.9])  # frame at 0.5 only
    np.testing.assert_allclose(targets[1], [0.7, 0.3])  # frames at 1.0 and 1.5
    np.testing.assert_allclose(targets[2], [0.4, 0.8])  # frames at 2.0 and 2.5


def test_window_without_a_frame_centre_takes_the_nearest_frame():
    times = np.array([0.5, 1.0, 1.5])
    scores = np.array([[1.0], [2.0], [3.0]])
    targets = window_targets(times, scores, [1.3], 0.15)  # [1.3, 1.45): no centre; 1.5 nearest
    assert targets[0, 0] == 3.0


def test_window_targets_keep_classes_without_signal_as_nan():
    times = np.array([0.4875, 0.9675])
    mapped = to_audioset(np.full((2, 521), 0.25, dtype=np.float32))
    targets = window_targets(times, mapped, [0.0], 2.0)
    assert np.isnan(targets[0, ~audioset_mask()]).all()
    assert (targets[0, audioset_mask()] == 0.25).all()


def test_window_targets_reject_mismatched_frames():
    with pytest.raises(ValueError, match="same frames"):
        window_targets(np.zeros(3), np.zeros((2, 4)), [0.0], 1.0)
    with pytest.raises(ValueError, match="positive"):
        window_targets(np.zeros(2), np.zeros((2, 4)), [0.0], 0.0)


# --------------------------------------------------------------------------- framing


def test_frames_step_by_the_hop_and_the_last_one_is_zero_padded():
    fake = FakeInterpreter()
    n = FRAME_SAMPLES + 2 * HOP_SAMPLES + 100  # needs a fourth frame for the last 100 samples
    wave = np.linspace(0.001, 0.999, n, dtype=np.float32)
    times, scores = teacher(fake).frame_scores(wave)
    assert len(fake.frames) == 4 and scores.shape == (4, 521) and times.shape == (4,)
    for i in range(4):
        assert scores[i, 0] == wave[i * HOP_SAMPLES]
    assert scores[2, 1] == wave[2 * HOP_SAMPLES + FRAME_SAMPLES - 1]
    last_real = n - 3 * HOP_SAMPLES
    assert scores[3, 2] == last_real  # the rest of the last frame is padding
    assert scores[3, 1] == 0.0
    np.testing.assert_allclose(times, np.arange(4) * 0.48 + FRAME_SAMPLES / 16000 / 2)


@pytest.mark.parametrize("n, frames", [(1, 1), (FRAME_SAMPLES, 1), (FRAME_SAMPLES + 1, 2), (16000 * 10, 20)])
def test_frame_count_covers_every_sample(n, frames):
    assert yamnet.frame_count(n) == frames
    assert (frames - 1) * HOP_SAMPLES + FRAME_SAMPLES >= n
    assert frames == 1 or (frames - 2) * HOP_SAMPLES + FRAME_SAMPLES < n
    assert frames == max(1, 1 + math.ceil((n - FRAME_SAMPLES) / HOP_SAMPLES))


def test_frame_scores_rejects_empty_and_multichannel_audio():
    with pytest.raises(ValueError, match="empty"):
        teacher().frame_scores(np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match="mono"):
        teacher().frame_scores(np.zeros((2, 16000), dtype=np.float32))


def test_teacher_maps_its_own_scores_onto_audioset():
    _, scores = teacher().frame_scores(np.full(20000, 0.5, dtype=np.float32))
    mapped = teacher().to_audioset(scores)
    assert mapped.shape == (2, 527)
    assert mapped[0, audioset().index("Speech")] == 0.5  # YAMNet output 0 is Speech


@pytest.mark.parametrize(
    "fake, problem",
    [
        (FakeInterpreter(input_shape=(1, 16000)), "15600 samples"),
        (FakeInterpreter(output_shape=(1, 1000)), "521 classes"),
    ],
)
def test_a_model_that_is_not_yamnet_is_refused(fake, problem):
    with pytest.raises(ValueError, match=problem):
        YamnetTeacher(fake, labels=default_labels(), source="other.tflite")


def test_wrong_number_of_labels_is_refused():
    with pytest.raises(ValueError, match="521 YAMNet labels"):
        YamnetTeacher(FakeInterpreter(), labels=["Speech"] * 10)


# --------------------------------------------------------------------------- loading


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "yamnet.tflite"
    with pytest.raises(FileNotFoundError, match="yamnet.tflite: no such file"):
        YamnetTeacher.from_file(path)


def test_a_file_that_is_not_tflite_is_named(tmp_path):
    path = tmp_path / "weights.tflite"
    path.write_bytes(b"RIFF....WAVEfmt " + bytes(100))
    with pytest.raises(ValueError, match="weights.tflite: not a TFLite model"):
        YamnetTeacher.from_file(path)
    with pytest.raises(ValueError, match="directory"):
        YamnetTeacher.from_file(tmp_path)


def test_missing_interpreter_says_how_to_install_it(tmp_path, monkeypatch):
    path = tmp_path / "yamnet.tflite"
    fake_tflite(path)
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(ImportError, match=r"pip install 'asttag\[yamnet\]'"):
        YamnetTeacher.from_file(path)


def test_label_list_embedded_in_the_model_file_is_read(tmp_path):
    path = tmp_path / "yamnet.tflite"
    fake_tflite(path, labels=["Speech", "Music", "Dog"])
    assert read_embedded_labels(path) == ("Speech", "Music", "Dog")
    fake_tflite(path)
    assert read_embedded_labels(path) is None
