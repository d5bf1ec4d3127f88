"""Embeddings: what the head sees per window and per file, in three formats, resumable, sharded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_runs import Recorder
from typer.testing import CliRunner

from asttag import checkpoint
from asttag.cli import app
from asttag.embedding import (
    EMBEDDING_WRITERS,
    Embedder,
    embedding_format,
    make_embedding_writer,
    read_embeddings,
)
from asttag.runs import Shard, tag_files
from test_tagger import tagger, tiny_model, write_wave


@pytest.fixture
def recordings(tmp_path) -> list[str]:
    folder = tmp_path / "audio"
    folder.mkdir()
    return [str(write_wave(folder / f"rec{i}.wav", seconds, seed=i))
            for i, seconds in enumerate((2.5, 0.4, 1.0))]


def embedder(**options) -> Embedder:
    return Embedder(tiny_model(), device="cpu", batch_size=options.pop("batch_size", 4), **options)


def test_the_head_turns_each_window_embedding_into_the_taggers_scores(recordings):
    model = tiny_model()
    for scored, embedded in zip(tagger(hop=0.3).tag_many(recordings),
                                embedder(hop=0.3).tag_many(recordings)):
        np.testing.assert_array_equal(embedded.starts, scored.starts)
        np.testing.assert_array_equal(embedded.ends, scored.ends)
        with torch.no_grad():
            probs = model.probabilities(model.classify(torch.from_numpy(embedded.embeddings)))
        np.testing.assert_array_equal(probs.numpy(), scored.scores)  # bit for bit
        np.testing.assert_allclose(embedded.file_embedding, embedded.embeddings.mean(axis=0))


def test_patch_embeddings_are_the_mean_of_the_patch_tokens(tmp_path):
    import soundfile as sf

    from asttag.features import clip_features

    model = tiny_model()
    path = write_wave(tmp_path / "short.wav", 0.5)  # one window: the whole clip
    (result,) = embedder(patches=True).tag_many([str(path)])

    wave = sf.read(str(path), dtype="float32")[0]
    with torch.no_grad():
        pooled, tokens = model.embed(torch.from_numpy(clip_features(wave, 16000, model.features))[None],
                                     return_tokens=True)
    np.testing.assert_allclose(result.embeddings, pooled.numpy(), atol=1e-5)
    np.testing.assert_allclose(result.patch_embeddings, tokens.mean(dim=1).numpy(), atol=1e-5)
    assert embedder().tag_many([str(path)]).__next__().patch_embeddings is None


def expected_table(recordings, *, patches=False):
    results = list(embedder(patches=patches).tag_many(recordings))
    return results, {
        "window_embeddings": np.concatenate([r.embeddings for r in results]),
        "window_file": np.concatenate([np.full(len(r.starts), i) for i, r in enumerate(results)]),
        "window_start": np.concatenate([r.starts for r in results]),
        "file_embeddings": np.stack([r.file_embedding for r in results]),
        "file_duration": np.asarray([r.duration for r in results]),
    }


@pytest.mark.parametrize("name", ["safetensors", "npy"])
def test_a_job_writes_every_window_and_file_mean(recordings, tmp_path, name):
    results, expected = expected_table(recordings, patches=True)
    output = tmp_path / f"emb{EMBEDDING_WRITERS[name].suffix}"
    assert embedding_format(output) == name
    writer = make_embedding_writer(name, dim=32, patches=True)
    job = tag_files(embedder(patches=True), recordings, writer=writer, output=output, model="tiny")
    assert job.tagged == 3
    data = read_embeddings(output)
    assert data["files"] == recordings
    for key, value in expected.items():
        np.testing.assert_allclose(data[key], value, atol=1e-6 if key == "window_start" else 0,
                                   err_msg=key)
    np.testing.assert_array_equal(data["window_patch_embeddings"],
                                  np.concatenate([r.patch_embeddings for r in results]))
    np.testing.assert_allclose(data["file_patch_embeddings"],
                               np.stack([r.file_patch_embedding for r in results]), rtol=1e-6)


def test_parquet_holds_a_row_per_window_and_per_file(recordings, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    _, expected = expected_table(recordings)
    output = tmp_path / "emb.parquet"
    tag_files(embedder(), recordings, writer=make_embedding_writer("parquet", dim=32),
              output=output, model="tiny")
    windows, files = pq.read_table(output), pq.read_table(tmp_path / "emb.files.parquet")
    assert windows.column("file").to_pylist() == [recordings[i] for i in expected["window_file"]]
    np.testing.assert_array_equal(np.stack(windows.column("embedding").to_numpy(zero_copy_only=False)),
                                  expected["window_embeddings"])
    np.testing.assert_allclose(np.stack(files.column("embedding").to_numpy(zero_copy_only=False)),
                               expected["file_embeddings"], rtol=1e-6)
    assert files.column("windows").to_pylist() == np.bincount(expected["window_file"]).tolist()


def test_parquet_without_pyarrow_is_refused_before_any_work(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"needs pyarrow: pip install 'asttag\[parquet\]'"):
        make_embedding_writer("parquet", dim=32)


def test_a_stopped_job_resumes_and_shards_fill_a_directory(recordings, tmp_path):
    writer = make_embedding_writer("safetensors", dim=32)
    output = tmp_path / "emb.safetensors"
    with pytest.raises(KeyboardInterrupt):
        tag_files(embedder(), recordings, writer=writer, output=output, model="tiny",
                  observer=Recorder(stop_after=1))
    assert not output.exists()
    observer = Recorder()
    tag_files(embedder(), recordings, writer=writer, output=output, model="tiny", observer=observer)
    assert observer.plans[0].resumed == 1 and observer.tagged == recordings[1:]
    _, expected = expected_table(recordings)
    np.testing.assert_array_equal(read_embeddings(output)["window_embeddings"],
                                  expected["window_embeddings"])

    for rank in (0, 1):
        tag_files(embedder(), recordings, writer=writer, output_dir=tmp_path / "each",
                  shard=Shard(rank=rank, world=2))
    each = read_embeddings(tmp_path / "each" / "rec2.safetensors")
    assert each["files"] == [recordings[2]]
    np.testing.assert_array_equal(each["file_embeddings"][0], expected["file_embeddings"][2])


def test_the_cli_offers_the_formats_there_are():
    from asttag.choices import EMBEDDING_FORMATS

    assert tuple(EMBEDDING_WRITERS) == EMBEDDING_FORMATS


def test_an_ensemble_gives_no_embeddings():
    from asttag.ensemble import Ensemble

    with pytest.raises(TypeError, match="single AST"):
        Embedder(Ensemble([tiny_model(0), tiny_model(1)]), device="cpu")


# --------------------------------------------------------------------------- the command


@pytest.fixture
def model_path(tmp_path):
    return checkpoint.save(tiny_model(), tmp_path / "tiny.safetensors")


def invoke(*args):
    return CliRunner().invoke(app, ["embed", *map(str, args)])  # the default decoding thread


def test_cli_embeds_files_and_reports_a_bad_one(model_path, recordings, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    output = tmp_path / "emb.npy"
    result = invoke(*recordings, broken, "-m", model_path, "-o", output, "--patches", "--hop", "0.5")
    assert result.exit_code == 1 and result.stdout == ""
    assert f"error: {broken}: " in result.stderr and "embedded 3 file(s)" in result.stderr
    data = read_embeddings(output)
    assert data["files"] == recordings and data["window_patch_embeddings"].shape[1] == 32
    assert data["file_embeddings"].shape == (3, 32) and len(data["window_start"]) > 3


@pytest.mark.parametrize("args,message", [
    ([], "give -o/--output FILE or --output-dir DIR"),
    (["-o", "emb.txt"], "no embedding format has the suffix '.txt'"),
    (["-o", "emb.npy", "-f", "npy"], "-f/--format goes with --output-dir"),
])
def test_cli_usage_errors(model_path, recordings, tmp_path, args, message):
    result = invoke(recordings[0], "-m", model_path, *[str(tmp_path / a) if a.startswith("emb")
                                                       else a for a in args])
    assert result.exit_code == 2 and message in result.stderr


def test_cli_output_dir_takes_a_format(model_path, recordings, tmp_path):
    result = invoke(*recordings, "-m", model_path, "--output-dir", tmp_path / "out", "-f", "npy")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix == ".npy") == [
        f"rec{i}{part}" for i in range(3) for part in (".files.npy", ".npy")]
