"""DDP under torchrun (gloo, CPU): two processes, one run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from training_fixtures import finetune_args, tiny_recipe


def test_two_process_ddp_run_writes_one_run_directory(tmp_path, esc):
    # One epoch: the ranks' start (torch, the optimiser) costs far more than the training.
    recipe = tiny_recipe(tmp_path / "recipe.yaml", epochs=1, mixup=0.5)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "asttag", *finetune_args(esc, recipe, out)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)  # one summary: only rank 0 prints
    assert summary["epochs"] == 1 and summary["run_dir"] == str(out)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_001.safetensors"]
    state = torch.load(out / "training_state.pt", weights_only=True)
    assert state["world_size"] == 2 and state["global_step"] == 5  # batch 8 = 2 x 4 per step
    assert not list(tmp_path.glob("runs")) and len(list(tmp_path.iterdir())) == 2
