"""torchrun (gloo, CPU), two processes: DDP training writes one run directory, and tagging and
embedding with the model just trained, in the same processes, merge into one process's outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from typer.testing import CliRunner

from asttag.cli import app
from asttag.embedding import read_embeddings
from test_tagger import write_wave
from training_fixtures import finetune_args, tiny_recipe

# Every job runs in each torchrun process, one after another, as a Python caller may run them:
# a second job in one process once failed at its rendezvous (torch reused the first process
# group's keys in torchrun's store; asttag.processgroup now joins once per process).
JOBS = """
import json, sys
from asttag.cli import app
for argv in json.loads(sys.argv[1]):
    assert app(argv, standalone_mode=False) in (None, 0), argv
"""


def test_one_launch_trains_with_ddp_then_tags_and_embeds_with_the_model(tmp_path, esc):
    # One epoch: the ranks' start (torch, the optimiser) costs far more than the training.
    recipe = tiny_recipe(tmp_path / "recipe.yaml", epochs=1, mixup=0.5)
    out = tmp_path / "ddp"
    model = out / "checkpoints" / "epoch_001.safetensors"
    audio = tmp_path / "audio"
    audio.mkdir()
    recordings = [str(write_wave(audio / f"rec{i}.wav", seconds, seed=i))
                  for i, seconds in enumerate((3.5, 0.4, 2.0))]
    outputs = {"tag": tmp_path / "tags.jsonl", "embed": tmp_path / "embeddings.safetensors"}
    jobs = [finetune_args(esc, recipe, out),
            *([job, "-m", str(model), "--threads", "1", *recordings, "-o", str(path)]
              for job, path in outputs.items())]
    script = tmp_path / "jobs.py"
    script.write_text(JOBS)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), json.dumps(jobs)],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)  # one summary: only rank 0 prints
    assert summary["epochs"] == 1 and summary["run_dir"] == str(out)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_001.safetensors"]
    state = torch.load(out / "training_state.pt", weights_only=True)
    assert state["world_size"] == 2 and state["global_step"] == 5  # batch 8 = 2 x 4 per step
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "audio", "ddp", "embeddings.safetensors", "jobs.py", "recipe.yaml", "tags.jsonl"]

    for job, path in outputs.items():
        single = CliRunner().invoke(app, [job, "-m", str(model), "--threads", "1", *recordings,
                                          "-o", str(tmp_path / f"single{path.suffix}")])
        assert single.exit_code == 0, single.output
    assert outputs["tag"].read_text() == (tmp_path / "single.jsonl").read_text()
    merged, alone = (read_embeddings(p) for p in (outputs["embed"], tmp_path / "single.safetensors"))
    assert merged["files"] == alone["files"] == recordings
    for key in ("window_embeddings", "file_embeddings", "window_start"):
        assert torch.equal(torch.as_tensor(merged[key]), torch.as_tensor(alone[key])), key
