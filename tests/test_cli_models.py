"""`asttag models`: list, info, pull, convert and their errors."""

import json
import subprocess
import sys

import torch
from test_checkpoint import official_state
from typer.testing import CliRunner

from asttag import checkpoint
from asttag.cli import app
from conftest import tiny_model

runner = CliRunner()


def test_models_info_prints_what_a_checkpoint_holds(tmp_path):
    path = checkpoint.save(tiny_model(), tmp_path / "m.safetensors", extra={"epoch": 2})
    result = runner.invoke(app, ["models", "info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["format"] == "asttag" and data["labels"]["count"] == 4
    assert data["architecture"]["num_patches"] == 10 and data["extra"] == {"epoch": 2}
    text = runner.invoke(app, ["models", "info", str(path)])
    assert "10 patches" in text.stdout and "64 frames x 32 mel bins" in text.stdout


def test_models_info_on_a_missing_file_fails_with_its_name(tmp_path):
    result = runner.invoke(app, ["models", "info", str(tmp_path / "nope.safetensors")])
    assert result.exit_code == 1
    assert "nope.safetensors" in result.output and result.stdout == ""


def test_convert_official_to_asttag_and_to_transformers(tmp_path):
    # Head width 64, as in every released model (official files do not store the head count).
    model = tiny_model(num_mel_bins=128, target_length=512, stride=(12, 12), embed_dim=128)
    torch.save(official_state(model), tmp_path / "esc_12_12_0.9.pth")
    out = tmp_path / "m.safetensors"
    result = runner.invoke(app, ["models", "convert", str(tmp_path / "esc_12_12_0.9.pth"), str(out)])
    assert result.exit_code == 0, result.output
    converted = checkpoint.load(out)
    assert converted.config.stride == (12, 12) and converted.config.target_length == 512
    x = torch.randn(1, 512, 128)
    torch.testing.assert_close(converted(x), model(x))

    refused = runner.invoke(app, ["models", "convert", str(tmp_path / "esc_12_12_0.9.pth"), str(out)])
    assert refused.exit_code == 2 and "--force" in refused.output

    hf = tmp_path / "hf"
    result = runner.invoke(app, ["models", "convert", str(out), str(hf), "--to", "transformers"])
    assert result.exit_code == 0, result.output
    torch.testing.assert_close(checkpoint.load(hf)(x), model(x), atol=1e-4, rtol=0)


def test_convert_refuses_a_layout_it_would_guess_and_takes_what_the_flags_say(tmp_path):
    from test_checkpoint import official_tiny_16_16

    source = tmp_path / "mymodel.pth"
    torch.save(official_tiny_16_16(), source)
    out = tmp_path / "m.safetensors"
    refused = runner.invoke(app, ["models", "convert", str(source), str(out)])
    assert refused.exit_code == 1 and not out.exists()
    said = " ".join(refused.stderr.split())
    assert "stride 10/10 with 128 frames; stride 14/14 with any of 226-239 frames" in said
    assert "pass --stride F T and --target-length N" in said
    (tmp_path / "words.txt").write_text("".join(f"word {i}\n" for i in range(35)))
    result = runner.invoke(app, ["models", "convert", str(source), str(out), "--stride", "16", "16",
                                 "--target-length", "288", "--labels", str(tmp_path / "words.txt"),
                                 "--mean", "-5", "--std", "3", "--multi-label"])
    assert result.exit_code == 0, result.output
    assert "taken as" not in result.stderr  # nothing left to infer
    converted = checkpoint.load(out)
    assert converted.config.grid == (8, 18) and converted.labels.names[34] == "word 34"
    assert converted.labels.multi_label and (converted.features.mean, converted.features.std) == (-5, 3)
    said = " ".join(runner.invoke(app, ["models", "convert", str(source), str(out), "--force",
                                        "--stride", "16", "16", "--target-length", "288"]).stderr.split())
    assert ("35 classes taken as Speech Commands labels; Speech Commands normalisation "
            "statistics; single-label (softmax) scores") in said
    hf = tmp_path / "hf"
    runner.invoke(app, ["models", "convert", str(out), str(hf), "--to", "transformers"])
    misplaced = runner.invoke(app, ["models", "convert", str(hf), str(tmp_path / "x.safetensors"),
                                    "--mel-bins", "64"])
    assert misplaced.exit_code == 2 and "--mel-bins: for official .pth files only" in misplaced.stderr


def test_models_list_names_the_published_models():
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["audioset-10-10-0.4593"]["hub_id"] == "MIT/ast-finetuned-audioset-10-10-0.4593"
    assert "default" in rows


def test_pull_offline_explains_how_to_place_the_files(tmp_path, monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    monkeypatch.setenv("ASTTAG_CACHE", str(tmp_path))
    result = runner.invoke(app, ["models", "pull", "audioset-12-12-0.447"])
    assert result.exit_code == 1
    assert "asttag models convert DIR" in result.output
    assert "MIT/ast-finetuned-audioset-12-12-0.447" in result.output


def test_models_info_describes_an_ensemble_bundle(tmp_path):
    from asttag.ensemble import Ensemble, save_bundle

    bundle = save_bundle(Ensemble([tiny_model(0), tiny_model(1, stride=(8, 8))]), tmp_path / "b.safetensors")
    result = runner.invoke(app, ["models", "info", str(bundle), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["format"] == "ensemble"
    assert [m["stride"] for m in data["members"]] == [[10, 10], [8, 8]]
    text = runner.invoke(app, ["models", "info", str(bundle)])
    assert "member 1" in text.stdout and "stride 8/8" in text.stdout
    refused = runner.invoke(app, ["models", "convert", str(bundle), str(tmp_path / "x.safetensors")])
    assert refused.exit_code == 1 and "ensemble bundle" in refused.output


def test_library_warnings_reach_stderr_not_stdout(tmp_path):
    path = checkpoint.save(tiny_model(), tmp_path / "m.safetensors")  # eps 1e-6 / 1e-5
    result = runner.invoke(app, ["models", "convert", str(path), str(tmp_path / "hf"), "--to",
                                 "transformers"])
    assert result.exit_code == 0, result.output
    assert "one layer_norm_eps" in result.stderr
    assert result.stdout == ""


def test_models_info_shows_the_event_threshold_and_how_it_was_chosen(tmp_path):
    plain = checkpoint.save(tiny_model(), tmp_path / "plain.safetensors")
    text = runner.invoke(app, ["models", "info", str(plain)]).stdout
    assert "threshold    0.5 for events (fallback: no threshold was chosen" in text
    chosen = checkpoint.save(tiny_model(), tmp_path / "chosen.safetensors", extra={
        "event_threshold": {"value": 0.27, "rule": "maximises micro-F1 (0.61) against ..."}})
    data = json.loads(runner.invoke(app, ["models", "info", str(chosen), "--json"]).stdout)
    assert data["event_threshold"] == {"value": 0.27, "rule": "maximises micro-F1 (0.61) against ..."}


def test_models_list_in_a_pipe_gives_full_names_in_plain_rows_without_torch():
    from asttag.catalog import MODELS

    code = ("import sys; from typer.testing import CliRunner; from asttag.cli import app; "
            "r = CliRunner().invoke(app, ['models', 'list']); sys.stdout.write(r.stdout); "
            "sys.exit(2 if 'torch' in sys.modules else r.exit_code)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert [row[0] for row in rows] == list(MODELS) and {len(row) for row in rows} == {6}
