"""The sliding-window tagger: windows, blocks, batching, aggregation, events and bad input."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asttag.audio import AudioError, find_audio, iter_blocks, load
from asttag.features import FeatureConfig
from asttag.labels import LabelSet
from asttag.model import AST, ASTConfig
from asttag.tagger import TagFailure, Tagger, TagResult, WindowPlan, default_batch_size

LABELS = ("Speech", "Inside, small room", "Music", "Dog")
RATE = 16000


def tiny_model(seed: int = 0) -> AST:
    """A random AST with 1 s windows (100 frames x 32 mel bins): milliseconds per window."""
    torch.manual_seed(seed)
    config = ASTConfig(embed_dim=32, depth=1, num_heads=2, target_length=100, num_mel_bins=32,
                       num_classes=len(LABELS), preset=None)
    return AST(config, labels=LabelSet(LABELS, ("/m/speech", "/m/room", "/m/music", "/m/dog")))


def write_wave(path: Path, seconds: float, *, rate: int = RATE, channels: int = 1,
               seed: int = 0) -> Path:
    """Noise with tones whose pitch changes every second, so windows differ from each other."""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    t = np.arange(n) / rate
    freq = 200 + 150 * np.floor(t) % 2000
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(n)
    data = np.stack([wave, 0.5 * wave], axis=1) if channels == 2 else wave
    sf.write(str(path), data.astype(np.float32), rate, subtype="FLOAT")
    return path


def tagger(**options) -> Tagger:
    return Tagger(tiny_model(), device="cpu", batch_size=options.pop("batch_size", 4), **options)


def test_a_long_recording_scores_like_each_window_cut_out_as_its_own_file(tmp_path):
    long = write_wave(tmp_path / "long.wav", 23.37)
    t = tagger(hop=0.7, block_seconds=2.3)
    result = t.tag(long)
    audio, _ = sf.read(str(long), dtype="float32")
    window = int(t.plan.window_seconds * RATE)
    cuts = []
    for i, start in enumerate(result.starts):
        first = round(start * RATE)
        cuts.append(tmp_path / f"window{i:03d}.wav")
        sf.write(str(cuts[-1]), audio[first : first + window], RATE, subtype="FLOAT")
    singles = list(t.tag_many(cuts))
    assert len(singles) == len(result.scores) == 33  # 1 + ceil((23.37 - 1) / 0.7), last one partial
    for i, single in enumerate(singles):
        assert single.scores.shape == (1, len(LABELS))
        np.testing.assert_array_equal(single.scores[0], result.scores[i], err_msg=f"window {i}")


def test_block_size_and_batch_neighbours_do_not_change_scores(tmp_path):
    files = [write_wave(tmp_path / f"{i}.wav", s, seed=i) for i, s in enumerate((7.5, 0.4, 12.0))]
    reference = [tagger(block_seconds=60).tag(f).scores for f in files]
    for options in ({"block_seconds": 1.3}, {"block_seconds": 0.05}, {"workers": 2}):
        mixed = list(tagger(**options).tag_many(files))
        assert [Path(r.path) for r in mixed] == files
        for got, want in zip(mixed, reference):
            np.testing.assert_array_equal(got.scores, want)


def test_windows_cover_the_recording_and_short_clips_get_one_window(tmp_path):
    t = tagger()
    result = t.tag(write_wave(tmp_path / "a.wav", 3.25))
    np.testing.assert_allclose(result.starts, [0, 1, 2, 3])
    np.testing.assert_allclose(result.ends, [1, 2, 3, 3.25])
    assert result.duration == pytest.approx(3.25)
    short = t.tag(write_wave(tmp_path / "short.wav", 0.3))
    assert len(short.scores) == 1 and short.ends[0] == pytest.approx(0.3)
    overlapping = tagger(hop=0.25).tag(tmp_path / "a.wav")
    np.testing.assert_allclose(overlapping.starts, np.arange(10) * 0.25)  # the last reaches 3.25
    gapped = tagger(hop=1.5)  # windows 1 s long every 1.5 s: none starts past the end
    np.testing.assert_allclose(gapped.tag(tmp_path / "a.wav").starts, [0, 1.5, 3.0])
    np.testing.assert_allclose(gapped.tag(write_wave(tmp_path / "b.wav", 1.2)).starts, [0])


def test_window_plan_rejects_what_the_model_cannot_take():
    features = FeatureConfig(num_mel_bins=32, target_length=100)
    assert WindowPlan.build(features).window_seconds == pytest.approx(1.0)
    with pytest.raises(ValueError, match="longer than the model's input"):
        WindowPlan.build(features, window=2.0)
    with pytest.raises(ValueError, match="multiple of 10 ms"):
        WindowPlan.build(features, hop=0.123)
    with pytest.raises(ValueError, match="multiple of 10 ms"):
        WindowPlan.build(features, hop=-1)


def test_repeat_padding_tiles_a_short_clip_instead_of_zeros(tmp_path):
    clip = write_wave(tmp_path / "clip.wav", 0.33)
    zero = tagger().tag(clip).scores
    repeat = tagger(pad="repeat").tag(clip).scores
    assert not np.allclose(zero, repeat)
    # A full window is not padded by either (only the 2 frames past its last whole frame are).
    full = write_wave(tmp_path / "full.wav", 1.0)
    np.testing.assert_array_equal(tagger().tag(full).scores, tagger(pad="repeat").tag(full).scores)


def test_stereo_48k_input_is_mixed_and_resampled_like_a_whole_file_load(tmp_path):
    stereo = write_wave(tmp_path / "stereo.wav", 6.3, rate=48000, channels=2)
    mono16 = tmp_path / "mono16.wav"
    sf.write(str(mono16), load(stereo, sample_rate=RATE), RATE, subtype="FLOAT")
    got = tagger(block_seconds=1.1).tag(stereo)
    want = tagger().tag(mono16)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
    assert got.duration == pytest.approx(6.3)


@pytest.mark.parametrize("rate,channels", [(48000, 2), (44100, 1), (8000, 1), (RATE, 2)])
def test_block_reader_equals_loading_the_whole_file(tmp_path, rate, channels):
    path = write_wave(tmp_path / "x.wav", 3.01, rate=rate, channels=channels)
    whole = load(path, sample_rate=RATE)
    blocks = list(iter_blocks(path, sample_rate=RATE, block_seconds=0.7))
    assert len(blocks) == 5 and max(b.size for b in blocks) <= 0.7 * RATE + 1
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("suffix,options", [
    (".flac", {}), (".ogg", {}), (".mp3", {"format": "MP3"}),
    (".opus", {"format": "OGG", "subtype": "OPUS"}),
])
def test_compressed_formats_at_other_rates(tmp_path, suffix, options):
    rate = 48000 if suffix == ".opus" else 44100
    wave = 0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * rate) / rate)
    path = tmp_path / f"tone{suffix}"
    sf.write(str(path), np.stack([wave, wave], axis=1).astype(np.float32), rate, **options)
    result = tagger().tag(path)
    assert result.duration == pytest.approx(3.0) and len(result.scores) == 3


class EnergyModel:
    """A stand-in with the interface the tagger uses: class 0 is loud audio, class 1 quiet.

    Anything with `features`, `labels`, `predict`, `to` and `eval` tags like a model.
    """

    def __init__(self) -> None:
        self.features = FeatureConfig(num_mel_bins=32, target_length=100)
        self.labels = LabelSet.from_names(["loud", "quiet"])

    def to(self, *args, **kwargs) -> EnergyModel:
        return self

    def eval(self) -> EnergyModel:
        return self

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        loud = (x.mean(dim=(1, 2)) > 0).float()  # normalised log-mel: loud windows sit above 0
        return torch.stack([loud, 1 - loud], dim=1) * 0.9 + 0.05


def write_loud_middle(path: Path) -> Path:
    """10 s: quiet, loud from 3 s to 6 s, quiet."""
    rng = np.random.default_rng(0)
    wave = 1e-4 * rng.standard_normal(10 * RATE)
    wave[3 * RATE : 6 * RATE] = 0.5 * rng.standard_normal(3 * RATE)
    sf.write(str(path), wave.astype(np.float32), RATE)
    return path


def test_events_merge_consecutive_windows_over_the_threshold(tmp_path):
    path = write_loud_middle(tmp_path / "loud.wav")
    result = Tagger(EnergyModel(), device="cpu", batch_size=3).tag(path)
    loud = [e for e in result.events if e.label == "loud"]
    assert [(e.start, e.end) for e in loud] == [(3.0, 6.0)]
    assert loud[0].peak == pytest.approx(0.95) and loud[0].mean == pytest.approx(0.95)
    quiet = [(e.start, e.end) for e in result.events if e.label == "quiet"]
    assert quiet == [(0.0, 3.0), (6.0, 10.0)]
    assert [e.start for e in result.events] == sorted(e.start for e in result.events)
    # Overlapping windows still give one event per run, not one per window.
    overlapping = Tagger(EnergyModel(), device="cpu", hop=0.5).tag(path)
    assert len([e for e in overlapping.events if e.label == "loud"]) == 1


def test_clip_tags_aggregate_filter_and_rank(tmp_path):
    path = write_loud_middle(tmp_path / "loud.wav")
    model = EnergyModel()
    by_max = Tagger(model, device="cpu").tag(path)
    assert [(t.label, round(t.score, 3)) for t in by_max.tags] == [("loud", 0.95), ("quiet", 0.95)]
    by_mean = Tagger(model, device="cpu", aggregate="mean").tag(path)
    assert [(t.label, round(t.score, 3)) for t in by_mean.tags] == [("quiet", 0.68), ("loud", 0.32)]
    best = Tagger(model, device="cpu", aggregate="mean", top_k=1).tag(path)
    assert [t.label for t in best.tags] == ["quiet"]
    over = Tagger(model, device="cpu", aggregate="mean", threshold=0.5).tag(path)
    assert [t.label for t in over.tags] == ["quiet"]
    only = Tagger(model, device="cpu", labels=["loud"]).tag(path)
    assert {t.label for t in only.tags} | {e.label for e in only.events} == {"loud"}
    segments = Tagger(model, device="cpu", top_k=1).tag(path).segments
    assert [(s.start, s.label) for s in segments][2:5] == [(2.0, "quiet"), (3.0, "loud"), (4.0, "loud")]
    with pytest.raises(ValueError, match="unknown label 'Cat'"):
        Tagger(model, device="cpu", labels=["Cat"])


def write_nan(path: Path, *, at: float, seconds: float, value: float = np.nan) -> Path:
    wave = np.full(int(seconds * RATE), 0.1, dtype=np.float32)
    wave[int(at * RATE)] = value
    sf.write(str(path), wave, RATE, subtype="FLOAT")
    return path


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Every kind of unusable file, with the reason the tagger must give."""
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage" + bytes(range(200)))
    zero = tmp_path / "zero.wav"
    sf.write(str(zero), np.zeros(0, dtype=np.float32), RATE)
    too_short = tmp_path / "short.wav"
    sf.write(str(too_short), np.zeros(100, dtype=np.float32), RATE)
    return {
        "missing": (tmp_path / "missing.wav", "no such file"),
        "empty": (empty, "empty file (0 bytes)"),
        "corrupt": (corrupt, "cannot decode audio"),
        "zero-length": (zero, "no audio samples (zero length)"),
        "too short": (too_short, "too short"),
        "nan": (write_nan(tmp_path / "nan.wav", at=2.5, seconds=4),
                "NaN or infinite samples (first at 2.500 s)"),
        "inf late": (write_nan(tmp_path / "inf.wav", at=70.0, seconds=75, value=np.inf),
                     "NaN or infinite samples (first at 70.000 s)"),
    }


@pytest.mark.parametrize(
    "kind", ["missing", "empty", "corrupt", "zero-length", "too short", "nan", "inf late"])
def test_bad_input_fails_that_file_only(tmp_path, kind):
    path, reason = bad_inputs(tmp_path)[kind]
    good = [write_wave(tmp_path / "good1.wav", 2.5), write_wave(tmp_path / "good2.wav", 1.5, seed=1)]
    out = list(tagger(block_seconds=10).tag_many([good[0], path, good[1]]))
    assert isinstance(out[1], TagFailure) and out[1].path == str(path) and reason in out[1].reason
    assert [len(r.scores) for r in (out[0], out[2])] == [3, 2]
    with pytest.raises(AudioError, match=str(path)):
        tagger().tag(path)


def test_silence_is_tagged_not_an_error(tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(RATE * 2, dtype=np.float32), RATE)
    result = tagger().tag(silent)
    assert isinstance(result, TagResult) and len(result.scores) == 2


def test_precisions(tmp_path):
    path = write_wave(tmp_path / "a.wav", 2.0)
    fp32 = tagger().tag(path).scores
    np.testing.assert_allclose(tagger(precision="bf16").tag(path).scores, fp32, atol=0.05)
    np.testing.assert_allclose(tagger(precision="int8").tag(path).scores, fp32, atol=0.05)
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        tagger(precision="fp16")


def test_progress_adds_up_to_the_audio_duration(tmp_path):
    files = [write_wave(tmp_path / f"{i}.wav", s) for i, s in enumerate((3.25, 0.5, 2.0))]
    seen: list[float] = []
    list(tagger(hop=0.5).tag_many(files, progress=seen.append))
    assert all(s > 0 for s in seen) and sum(seen) == pytest.approx(5.75)


def test_find_audio_expands_directories_and_globs(tmp_path):
    for name in ("b.wav", "a.flac", "notes.txt", "sub/c.wav"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    top = [Path(p).name for p in find_audio([str(tmp_path)])]
    assert top == ["a.flac", "b.wav"]
    assert [Path(p).name for p in find_audio([str(tmp_path)], recursive=True)] == ["a.flac", "b.wav", "c.wav"]
    globbed = find_audio([str(tmp_path / "*.wav"), str(tmp_path / "b.wav"), str(tmp_path / "nope*.wav")])
    assert [Path(p).name for p in globbed] == ["b.wav", "nope*.wav"]


def test_tagger_is_the_public_api():
    import asttag

    assert asttag.Tagger is Tagger


def test_default_batch_holds_more_windows_of_smaller_inputs_on_a_cpu():
    full = FeatureConfig()  # AST's 1024 frames x 128 bins
    assert default_batch_size(full, "cpu") == 8
    assert default_batch_size(FeatureConfig(target_length=4096), "cpu") == 8  # never fewer
    assert default_batch_size(FeatureConfig(target_length=256), "cpu") == 32
    assert default_batch_size(FeatureConfig(num_mel_bins=64, target_length=96), "cpu") == 64
    assert default_batch_size(FeatureConfig(num_mel_bins=64, target_length=96), "cuda") == 32
    model = tiny_model()
    assert Tagger(model, device="cpu").batch_size == 64  # 100 frames x 32 bins
    assert Tagger(model, device="cpu", batch_size=3).batch_size == 3


class FixedScores(EnergyModel):
    """The default model's window (0.96 s of 10 ms frames) with scores the test chooses."""

    def __init__(self) -> None:
        self.features = FeatureConfig(num_mel_bins=32, target_length=96)
        self.labels = LabelSet.from_names(["always", "bursts"])


@pytest.mark.parametrize("hop", [0.96, 0.48])
def test_events_of_hours_merge_every_touching_or_overlapping_window(hop):
    # Three hours of windows: float seconds (67 * 0.96 + 0.96 < 68 * 0.96) split touching events
    # past about a minute; positions on the frame grid do not.
    duration = 3 * 3600.0
    t = Tagger(FixedScores(), device="cpu", hop=hop)
    count = t.plan.count(round(duration * 100))
    rng = np.random.default_rng(0)
    bursts = np.repeat(rng.random(count // 50 + 1) > 0.5, 50)[:count]
    scores = np.stack([np.full(count, 0.9), np.where(bursts, 0.8, 0.1)], axis=1)
    result = t._result("3h.wav", duration, scores)
    always = [e for e in result.events if e.label == "always"]
    assert [(e.start, e.end) for e in always] == [(0.0, duration)]
    runs = [e for e in result.events if e.label == "bursts"]
    assert len(runs) == np.count_nonzero(np.diff(bursts.astype(int)) == 1) + bursts[0]
    for before, after in itertools.pairwise(runs):
        assert after.start > before.end, (before, after)
    assert result.ends[-1] == duration and result.starts[68] == 68 * hop


@pytest.mark.parametrize(("hop", "fraction", "said"), [
    (2.0, 0.52, "52.0% of the audio (1.04 s of every hop)"),
    (1.0, 0.04, "4.0% of the audio (0.04 s of every hop)"),
    (0.96, 0.0, None), (0.48, 0.0, None),
])
def test_a_hop_longer_than_the_window_says_how_much_audio_is_never_analysed(caplog, hop, fraction,
                                                                             said):
    with caplog.at_level("WARNING", logger="asttag"):
        t = Tagger(FixedScores(), device="cpu", hop=hop)
    assert t.plan.unanalysed_fraction == pytest.approx(fraction)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if said is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and said in warnings[0] and "never analysed" in warnings[0]


def test_events_use_the_threshold_the_checkpoint_recommends_unless_one_is_given(tmp_path):
    from asttag.thresholds import KEY

    path = write_loud_middle(tmp_path / "loud.wav")
    model = EnergyModel()
    assert Tagger(model, device="cpu").event_threshold == 0.5  # no record: the fallback
    model.extra = {KEY: {"value": 0.96, "rule": "chosen on held-out clips"}}
    t = Tagger(model, device="cpu")
    assert t.event_threshold == 0.96 and t.event_threshold_source.rule == "chosen on held-out clips"
    result = t.tag(path)
    assert result.events == []  # every window scores 0.95
    best = t.strongest(result)
    assert (best.score, best.start, best.end) == (pytest.approx(0.95), 0.0, 1.0)
    assert t.strongest(result, clip=True).end == result.duration
    assert len(Tagger(model, device="cpu", threshold=0.5).tag(path).events) == 3


def test_decoding_threads_tag_as_decoding_in_turn_and_pass_errors_on(tmp_path, monkeypatch):
    paths = [write_wave(tmp_path / f"{i}.wav", seconds, seed=i)
             for i, seconds in enumerate([2.5, 0.3, 4.0, 1.0])]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    files = [str(p) for p in [paths[0], broken, *paths[1:]]]
    in_turn = list(tagger(workers=0).tag_many(files))
    threaded = list(tagger(workers=3).tag_many(files))
    assert [r.path for r in threaded] == files  # in the order given, whatever thread read it
    assert isinstance(threaded[1], TagFailure) and threaded[1] == in_turn[1]
    for a, b in zip(threaded, in_turn):
        if not isinstance(a, TagFailure):
            assert np.array_equal(a.scores, b.scores)

    import asttag.tagger

    def broken_reader(*args, **kwargs):
        raise RuntimeError("disk on fire")
        yield

    monkeypatch.setattr(asttag.tagger, "iter_blocks", broken_reader)
    with pytest.raises(RuntimeError, match="disk on fire"):  # not swallowed by the thread
        list(tagger(workers=2).tag_many(files))
