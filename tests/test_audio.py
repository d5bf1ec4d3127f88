"""Decoding (libsndfile and FFmpeg), resampling at any rate, sample checks and input discovery."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as F

from asttag import audio
from asttag.audio import AudioError, find_audio, iter_blocks, load
from asttag.tagger import TagFailure
from conftest import write_with_pyav
from test_tagger import tagger, write_wave


def tone(seconds: float, rate: int, *, channels: int = 2, freq: float = 440.0,
         noise: float = 0.02) -> np.ndarray:
    """(channels, n) float32: a tone with a little noise, the second channel at half level."""
    rng = np.random.default_rng(0)
    t = np.arange(round(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + noise * rng.standard_normal(t.size)
    return np.stack([wave, 0.5 * wave][:channels]).astype(np.float32)


@pytest.mark.parametrize("name,codec,rate,video", [
    ("memo.m4a", "aac", 44100, False),
    ("film.mp4", "aac", 48000, True),
    ("clip.webm", "libopus", 48000, False),
    ("voice.opus", "libopus", 48000, False),
    ("music.mkv", "flac", 44100, False),
])
def test_ffmpeg_reads_containers_libsndfile_does_not(tmp_path, name, codec, rate, video):
    path = write_with_pyav(tmp_path / name, tone(2.0, rate), rate, codec, video=video)
    meta = audio.info(path)
    assert (meta.sample_rate, meta.channels) == (rate, 2)
    assert meta.decoder == ("soundfile" if name.endswith(".opus") else "ffmpeg")
    result = tagger().tag(path)
    assert result.duration == pytest.approx(2.0, abs=0.03) and len(result.scores) == 2


def test_the_same_audio_in_wav_and_in_flac_inside_mkv_scores_identically(tmp_path):
    samples = (tone(3.3, 44100) * 32767).astype(np.int16)
    wav = tmp_path / "a.wav"
    sf.write(str(wav), samples.T, 44100, subtype="PCM_16")
    mkv = write_with_pyav(tmp_path / "a.mkv", samples, 44100, "flac")
    assert audio.info(mkv).decoder == "ffmpeg"
    np.testing.assert_array_equal(load(mkv), load(wav))
    got, want = tagger(block_seconds=1.3).tag(mkv), tagger(block_seconds=1.3).tag(wav)
    assert np.array_equal(got.scores, want.scores) and got.duration == want.duration


def test_lossy_aac_scores_within_a_stated_bound_of_the_wav(tmp_path):
    samples = tone(4.0, 44100)
    wav = tmp_path / "a.wav"
    sf.write(str(wav), samples.T, 44100, subtype="FLOAT")
    m4a = write_with_pyav(tmp_path / "a.m4a", samples, 44100, "aac")
    got, want = tagger().tag(m4a), tagger().tag(wav)
    # AAC at FFmpeg's default bit rate; the encoder's delay is trimmed, so the audio lines up.
    assert got.scores.shape == want.scores.shape
    assert np.abs(got.scores - want.scores).max() < 0.02


def test_a_long_container_is_decoded_in_blocks_equal_to_the_whole(tmp_path):
    path = write_with_pyav(tmp_path / "a.m4a", tone(5.0, 48000), 48000, "aac")
    blocks = list(iter_blocks(path, block_seconds=0.7))
    assert len(blocks) >= 7 and max(b.size for b in blocks) <= 0.7 * 16000 + 1
    np.testing.assert_allclose(np.concatenate(blocks), load(path), atol=1e-6, rtol=0)


def test_a_truncated_m4a_fails_with_ffmpegs_reason_and_the_run_goes_on(tmp_path):
    whole = write_with_pyav(tmp_path / "whole.m4a", tone(2.0, 44100), 44100, "aac")
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    out = list(tagger().tag_many([whole, cut, whole]))
    assert isinstance(out[1], TagFailure)
    assert out[1].reason == "cannot decode audio (moov atom not found)"
    assert [len(r.scores) for r in (out[0], out[2])] == [2, 2]


def test_a_file_no_decoder_reads_names_the_reason_of_its_suffix(tmp_path):
    text = tmp_path / "notes.m4a"
    text.write_text("not audio at all\n" * 20)
    with pytest.raises(AudioError, match="cannot decode audio \\(moov atom not found\\)$"):
        audio.info(text)
    wav = tmp_path / "notes.wav"
    wav.write_text("not audio at all\n" * 20)
    with pytest.raises(AudioError, match="cannot decode audio \\(Format not recognised"):
        audio.info(wav)


def test_a_container_without_audio_says_so(tmp_path):
    import av

    path = tmp_path / "silent_film.mp4"
    with av.open(str(path), "w") as container:
        picture = container.add_stream("mpeg4", rate=10)
        picture.width = picture.height = 32
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        container.mux(picture.encode(frame))
        container.mux(picture.encode())
    with pytest.raises(AudioError, match="no audio stream"):
        audio.info(path)


def test_a_flac_corrupted_midway_is_reported_where_it_broke(tmp_path):
    rate = 16000
    half = tmp_path / "half.flac"
    sf.write(str(half), tone(2.5, rate, channels=1).T, rate)
    path = tmp_path / "broken.flac"
    sf.write(str(path), tone(5.0, rate, channels=1).T, rate)
    data = bytearray(path.read_bytes())
    at = half.stat().st_size  # the bytes of the first 2.5 s, give or take a frame
    data[at : at + 2000] = bytes((b * 31 + 7) & 255 for b in data[at : at + 2000])
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match="cannot decode audio") as caught:
        list(iter_blocks(path))
    where = float(caught.value.reason.split(" after ")[1].removesuffix(" s"))
    assert 2.0 <= where <= 2.6


@pytest.mark.parametrize("rate", [16001, 11127, 44101, 191999])
def test_rates_sharing_no_factor_resample_accurately_in_blocks(tmp_path, rate):
    path = tmp_path / "odd.wav"
    sf.write(str(path), tone(3.0, rate, channels=1, freq=1000.0, noise=0).T, rate, subtype="FLOAT")
    whole = load(path)
    assert whole.shape == (48000,) and whole.dtype == np.float32
    blocks = list(iter_blocks(path, block_seconds=1.2))
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-5, rtol=0)
    # The tone comes out where the exact 16 kHz tone is (away from the edges), within the
    # windowed sinc's pass-band ripple: 1e-3 of full scale, as torchaudio's own.
    exact = 0.3 * np.sin(2 * np.pi * 1000 * np.arange(48000) / 16000)
    assert np.abs(whole - exact)[400:-400].max() < 1e-3


def full_scale_noise(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


@pytest.mark.parametrize("orig,new", [
    (48000, 16000), (44100, 16000), (22050, 16000), (8000, 16000), (32000, 16000), (16000, 8000),
])
def test_resampling_agrees_with_torchaudio(orig, new):
    # Lengths that are and are not whole periods of both rates, down to a single sample.
    for length in (1, 2, 7, orig // 10 + 3, 3 * orig, 3 * orig + 1):
        wave = full_scale_noise(length, seed=length)
        got = audio.resample(wave, orig, new)
        want = F.resample(torch.from_numpy(wave), orig, new).numpy()
        assert got.shape == want.shape and got.dtype == np.float32
        assert np.abs(got - want).max() < 1e-6
    stereo = full_scale_noise((2, orig))
    got = audio.resample(stereo, orig, new)
    np.testing.assert_allclose(got, F.resample(torch.from_numpy(stereo), orig, new).numpy(),
                               atol=1e-6, rtol=0)


def test_the_bounded_resampler_agrees_with_torchaudio():
    noise = full_scale_noise(44100 * 2)
    for orig, new, up, down in [(44100, 16000, 160, 441), (8000, 16000, 2, 1), (48000, 16000, 1, 3)]:
        want = F.resample(torch.from_numpy(noise[: orig * 2]), orig, new).numpy()
        got = audio._sinc_resample(noise[: orig * 2], up, down)
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-4


def test_odd_rates_do_not_build_huge_polyphase_kernels(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the polyphase kernel would take gigabytes here")

    monkeypatch.setattr(audio, "_polyphase_resample", refuse)
    out = audio.resample(np.zeros(16001, dtype=np.float32), 16001, 16000)
    assert out.shape == (16000,)


def test_decoding_and_resampling_do_not_import_torch(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(str(path), tone(1.0, 44100).T, 44100)
    code = ("import sys\n"
            "from asttag import audio\n"
            f"audio.load({str(path)!r}); list(audio.iter_blocks({str(path)!r}, block_seconds=0.3))\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("value,reason", [
    (1e30, "audio samples out of range (peak 1e+30, first at 1.500 s"),
    (np.inf, "audio contains NaN or infinite samples (first at 1.500 s)"),
])
def test_extreme_samples_are_refused_with_where(tmp_path, value, reason):
    wave = np.full(3 * 16000, 0.1, dtype=np.float32)
    wave[24000] = value
    path = tmp_path / "loud.wav"
    sf.write(str(path), wave, 16000, subtype="FLOAT")
    with pytest.raises(AudioError) as caught:
        tagger().tag(path)
    assert caught.value.reason.startswith(reason)
    wave[24000] = 900.0  # hot, but a level some float files hold: tagged
    sf.write(str(path), wave, 16000, subtype="FLOAT")
    assert np.isfinite(tagger().tag(path).scores).all()


def test_unsupported_sample_rates_are_refused(tmp_path):
    path = tmp_path / "fast.wav"
    sf.write(str(path), np.zeros(100, np.float32), 2_000_000)
    with pytest.raises(AudioError, match="unsupported sample rate 2000000 Hz"):
        audio.info(path)


def test_names_that_are_not_utf8_are_read(tmp_path):
    name = os.fsdecode(b"caf\xe9")  # Latin-1 bytes: not UTF-8
    wav = tmp_path / f"{name}.wav"
    write_wave(tmp_path / "plain.wav", 1.0).rename(wav)  # soundfile cannot write such a name
    m4a = write_with_pyav(tmp_path / f"{name}.m4a", tone(1.0, 16000), 16000, "aac")
    assert find_audio([str(tmp_path)]) == [str(m4a), str(wav)]
    assert [len(tagger().tag(p).scores) for p in (wav, m4a)] == [1, 1]


def test_directories_pick_up_every_suffix_read(tmp_path):
    for name in ("b.wav", "a.m4a", "c.mkv", "d.webm", "notes.txt", "sub/e.mp4"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [Path(p).name for p in find_audio([str(tmp_path)])] == ["a.m4a", "b.wav", "c.mkv", "d.webm"]
    deep = find_audio([str(tmp_path)], recursive=True)
    assert [Path(p).name for p in deep] == ["a.m4a", "b.wav", "c.mkv", "d.webm", "e.mp4"]


def test_a_directory_named_like_audio_is_an_input_that_fails(tmp_path):
    (tmp_path / "x.wav").mkdir()
    write_wave(tmp_path / "x.wav" / "inside.wav", 1.0)
    assert find_audio([str(tmp_path / "x.wav")]) == [str(tmp_path / "x.wav")]
    with pytest.raises(AudioError, match="is a directory"):
        tagger().tag(tmp_path / "x.wav")


def test_the_readme_lists_every_suffix_directories_take():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    inputs = text[text.index("**Inputs** are files") : text.index("**Runtime.**")]
    listed = {word.strip(".,;()`") for word in inputs.split()}
    assert {suffix.lstrip(".") for suffix in audio.AUDIO_SUFFIXES} <= listed


def test_one_file_under_two_spellings_is_one_input(tmp_path, monkeypatch, caplog):
    wav = write_wave(tmp_path / "a.wav", 1.0)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("WARNING", logger="asttag.audio"):
        assert find_audio(["a.wav", "./a.wav", str(wav), "a.wav"]) == ["a.wav"]
    assert "./a.wav names the same file as a.wav" in caplog.text
