"""The training engine: schedules, sampling, mixup and augmentation, losses, model set-up,
run directories, learning, exact resume after a kill, and DDP under torchrun (gloo, CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from asttag import checkpoint
from asttag.cli import app
from asttag.datasets import Example
from asttag.ensemble import Ensemble, save_bundle
from asttag.features import FeatureConfig, normalize
from asttag.inference import ClipDataset
from asttag.labels import LabelSet
from asttag.recipes import Recipe, RecipeError, builtin_recipes, load_recipe, parse_override
from asttag.thresholds import FALLBACK, recommended
from asttag.training import (
    EpochSampler,
    Runtime,
    SampleKey,
    TrainingError,
    TrainingSet,
    add_noise,
    augment,
    balanced_weights,
    build_model,
    learning_rate,
    mix_waves,
    resolve,
    resume,
    train,
    training_loss,
)
from training_fixtures import make_esc50, tiny_recipe, write_clip

CPU = Runtime(device="cpu")


@pytest.fixture(scope="module")
def esc(tmp_path_factory) -> Path:
    """A small ESC-50-layout set: 5 classes, 2 clips per class and fold."""
    return make_esc50(tmp_path_factory.mktemp("esc") / "ESC-50", per_fold=2)


def _recipe(tmp_path: Path, data_dir: Path, **overrides) -> Recipe:
    return load_recipe(tiny_recipe(tmp_path / "recipe.yaml", **overrides)).replace(
        data_dir=str(data_dir), data={"fold": 1})


def _same_weights(a: Path, b: Path) -> bool:
    first, second = load_file(str(a)), load_file(str(b))
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


# --------------------------------------------------------------------------- recipes


def test_shipped_recipes_hold_the_papers_numbers():
    assert {"esc50", "speechcommands", "audioset-balanced", "audioset-full", "folder",
            "manifest"} <= set(builtin_recipes())
    esc = load_recipe("esc50")
    assert (esc.lr, esc.batch_size, esc.epochs, esc.target_length) == (1e-5, 48, 25, 512)
    assert (esc.freqm, esc.timem, esc.mixup, esc.loss, esc.lr_decay) == (24, 96, 0.0, "ce", 0.85)
    assert esc.replace(init="imagenet").resolved().lr == 1e-4  # AST-S
    sc = load_recipe("speechcommands")
    assert (sc.lr, sc.batch_size, sc.mixup, sc.noise, sc.loss, sc.target_length) == (
        2.5e-4, 128, 0.6, True, "bce", 128)
    bal, full = load_recipe("audioset-balanced"), load_recipe("audioset-full")
    assert (bal.lr, bal.warmup_steps, bal.average_epochs, bal.balanced_sampler) == (5e-5, 1000, (6, 25), False)
    assert (full.lr, full.epochs, full.average_epochs, full.balanced_sampler) == (1e-5, 5, (1, 5), True)
    for recipe in (esc, sc, bal, full):
        assert (recipe.weight_decay, recipe.betas) == (5e-7, (0.95, 0.999))


def test_recipe_overrides_and_errors(tmp_path):
    recipe = load_recipe("esc50").with_overrides(dict([parse_override("data.fold=3"),
                                                       parse_override("model.depth=2"),
                                                       parse_override("lr=1e-4")]))
    assert recipe.data == {"fold": 3} and recipe.model == {"depth": 2} and recipe.lr == 1e-4
    with pytest.raises(RecipeError, match="unknown recipe key 'learning_rate'"):
        recipe.with_overrides({"learning_rate": 1})
    with pytest.raises(RecipeError, match="epochs must be a whole number"):
        recipe.with_overrides({"epochs": "ten"})
    with pytest.raises(RecipeError, match="mixup must lie in"):
        recipe.with_overrides({"mixup": 1.5})
    (tmp_path / "bad.yaml").write_text("name: x\ndataset: esc50\nepochs: 1\nbatch_size: 2\nlr: 1\nwarmup: 3\n")
    with pytest.raises(RecipeError, match=r"bad.yaml: unknown recipe key\(s\) warmup"):
        load_recipe(tmp_path / "bad.yaml")
    with pytest.raises(RecipeError, match="no such recipe file or shipped recipe"):
        load_recipe("esc5O")
    round_trip = tmp_path / "again.yaml"
    round_trip.write_text(recipe.to_yaml())
    assert load_recipe(round_trip) == recipe


# --------------------------------------------------------------------------- schedule


@pytest.mark.parametrize("name", ["esc50", "speechcommands", "audioset-balanced", "audioset-full"])
def test_step_decay_follows_multisteplr_stepped_per_epoch(name):
    recipe = load_recipe(name)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=recipe.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, list(range(recipe.lr_decay_start, 1000, recipe.lr_decay_step)), gamma=recipe.lr_decay)
    for epoch in range(1, recipe.epochs + 1):
        after_warmup = recipe.warmup_steps + 1
        assert learning_rate(recipe, epoch=epoch, step=after_warmup) == pytest.approx(
            optimizer.param_groups[0]["lr"], rel=1e-12)
        optimizer.step()
        scheduler.step()


def test_warmup_scales_the_first_thousand_steps():
    recipe = load_recipe("audioset-balanced")
    assert learning_rate(recipe, epoch=1, step=1) == pytest.approx(recipe.lr / 1000)
    assert learning_rate(recipe, epoch=1, step=500) == pytest.approx(recipe.lr / 2)
    assert learning_rate(recipe, epoch=1, step=1000) == learning_rate(recipe, epoch=1, step=5000) == recipe.lr


# --------------------------------------------------------------------------- sampling


def test_balanced_weights_are_the_papers():
    examples = [Example("a.wav", (0,)), Example("b.wav", (0,)), Example("c.wav", (1, 2))]
    expected = [1000 / 2.01, 1000 / 2.01, 1000 / 1.01 + 1000 / 1.01]
    np.testing.assert_allclose(balanced_weights(examples, 3), expected)


def test_epoch_order_depends_on_seed_and_epoch_only():
    sampler = EpochSampler(10, seed=3)
    sampler.set_epoch(2)
    first = list(sampler)
    assert sorted(k.index for k in first) == list(range(10))
    assert [k.position for k in first] == list(range(10)) and {k.epoch for k in first} == {2}
    assert list(sampler) == first
    sampler.set_epoch(3)
    assert [k.index for k in sampler] != [k.index for k in first]


def test_weighted_sampling_draws_with_replacement_by_weight():
    sampler = EpochSampler(4000, seed=0, weights=np.tile([0.0, 1.0, 0.0, 3.0], 1000))
    drawn = np.array([k.index % 4 for k in sampler])
    assert len(drawn) == 4000 and set(drawn) == {1, 3}
    assert 0.7 < (drawn == 3).mean() < 0.8


def test_processes_share_one_order_round_robin():
    whole = [k.index for k in EpochSampler(11, seed=5)]
    shards = [list(EpochSampler(11, seed=5, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    padded = whole + whole[:1]  # 12 = 3 x 4: the start repeats, as DistributedSampler pads
    for rank, shard in enumerate(shards):
        assert [k.index for k in shard] == padded[rank::3]
        assert [k.position for k in shard] == list(range(rank, 12, 3))


# --------------------------------------------------------------------------- mixup and augmentation


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    kinds = ["low_tone", "high_tone", "noise_burst", "chirp"]
    examples = [Example(write_clip(folder / f"{k}.wav", k, seed=i, seconds=0.5 + 0.25 * i), (i,))
                for i, k in enumerate(kinds)]
    return ClipDataset(examples, FeatureConfig(num_mel_bins=32, target_length=64), cache=folder / "cache")


def test_mix_waves_cuts_or_pads_the_partner():
    a, b = torch.ones(5), torch.full((3,), 3.0)
    torch.testing.assert_close(mix_waves(a, b, 0.25), torch.tensor([2.5, 2.5, 2.5, 0.25, 0.25]))
    torch.testing.assert_close(mix_waves(b, a, 0.5), torch.full((3,), 2.0))


def test_mixup_mixes_waveforms_and_targets_with_one_beta_lambda(clips):
    data = TrainingSet(clips, 4, mixup=1.0, seed=7)
    lambdas = []
    for position in range(120):
        key = SampleKey(position % 4, 1, position)
        features, target = data[key]
        rng = np.random.default_rng([7, 1, position])  # the draws the key stands for
        rng.random()
        partner, lam = int(rng.integers(4)), float(rng.beta(10, 10))
        expected = np.zeros(4, dtype=np.float32)
        expected[key.index] += lam
        expected[partner] += 1 - lam
        np.testing.assert_allclose(target.numpy(), expected, rtol=1e-6)
        if position < 4:  # the input is the log-mel of the mixed waveform
            mixed = mix_waves(clips.wave(key.index), clips.wave(partner), lam)
            torch.testing.assert_close(features, clips.log_mel_of(mixed))
            assert torch.equal(data[key][0], features)  # same key, same example
        lambdas.append(lam)
    assert 0.45 < np.mean(lambdas) < 0.55 and 0.08 < np.std(lambdas) < 0.14  # Beta(10, 10)


def test_mixup_probability_is_per_example(clips):
    data = TrainingSet(clips, 4, mixup=0.3, seed=1)
    mixed = [data[SampleKey(0, 2, p)][1].max().item() < 1.0 for p in range(200)]
    # A partner of the same clip leaves a one-hot target: 1/4 of the mixed draws.
    assert 0.3 * 0.75 - 0.09 < np.mean(mixed) < 0.3 * 0.75 + 0.09
    plain = TrainingSet(clips, 4, mixup=0.0, seed=1)[SampleKey(2, 1, 0)]
    assert torch.equal(plain[0], clips.log_mel(2)) and plain[1].tolist() == [0, 0, 1, 0]


def test_spec_augment_masks_before_normalisation():
    features = FeatureConfig(num_mel_bins=32, target_length=64)
    recipe = Recipe(name="t", dataset="esc50", epochs=1, batch_size=1, lr=1.0, freqm=8, timem=10)
    torch.manual_seed(0)
    x = augment(torch.full((16, 64, 32), 5.0), recipe, features)
    masked, kept = normalize(torch.tensor(0.0), features), normalize(torch.tensor(5.0), features)
    assert set(torch.unique(x).tolist()) <= {masked.item(), kept.item()}
    assert (x == masked).any()
    plain = augment(torch.full((2, 64, 32), 5.0), recipe.replace(freqm=0, timem=0), features)
    assert torch.equal(plain, torch.full((2, 64, 32), kept.item()))


def test_noise_augmentation_adds_scaled_noise_then_rolls_each_example():
    torch.manual_seed(0)
    x = torch.arange(50.0)[None, :, None].expand(6, 50, 3).contiguous()
    y = add_noise(x)
    for row_in, row_out in zip(x, y):
        fits = [s for s in range(-10, 10)
                if (0 <= (row_out - row_in.roll(s, 0))).all() and ((row_out - row_in.roll(s, 0)) < 0.1).all()]
        assert len(fits) == 1


def test_losses_work_on_logits_and_keep_soft_targets_soft():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]])
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.2, 0.5, 0.3]])
    expected_ce = -(soft * logits.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(training_loss(logits, soft, "ce"), expected_ce)
    torch.testing.assert_close(training_loss(logits, soft, "bce"),
                               torch.nn.BCEWithLogitsLoss()(logits, soft))
    with pytest.raises(RecipeError, match="unknown loss"):
        training_loss(logits, soft, "hinge")


# --------------------------------------------------------------------------- model set-up


def test_scratch_model_takes_its_size_and_features_from_the_recipe(tmp_path, esc):
    recipe = _recipe(tmp_path, esc)
    labels = LabelSet.from_names(list("abcde"), multi_label=False)
    model = build_model(recipe, labels)
    assert (model.config.embed_dim, model.config.depth, model.config.stride) == (64, 2, (16, 16))
    assert (model.features.num_mel_bins, model.features.target_length, model.features.mean) == (64, 100, -6.6268077)
    assert model.labels == labels
    assert torch.equal(build_model(recipe, labels).pos_embed, model.pos_embed)  # seeded


def test_checkpoint_init_transfers_the_encoder(tmp_path, esc):
    labels = LabelSet.from_names(list("abcde"), multi_label=False)
    source = build_model(_recipe(tmp_path, esc, seed=4), labels)
    path = checkpoint.save(source, tmp_path / "source.safetensors")
    same = build_model(_recipe(tmp_path, esc, init=str(path)), labels)
    for key, value in source.state_dict().items():  # same labels and input: the head stays
        assert torch.equal(same.state_dict()[key], value), key
    other = build_model(_recipe(tmp_path, esc, init=str(path), target_length=60),
                        LabelSet.from_names(list("xyz"), multi_label=True))
    assert other.head.weight.shape == (3, 64) and other.config.target_length == 60
    assert torch.equal(other.blocks[1].mlp.fc2.weight, source.blocks[1].mlp.fc2.weight)


def test_an_ensemble_bundle_is_refused_as_init(tmp_path, esc):
    model = build_model(_recipe(tmp_path, esc), LabelSet.from_names(list("abcde")))
    bundle = save_bundle(Ensemble([model, model]), tmp_path / "bundle.safetensors")
    with pytest.raises(TrainingError, match="bundle.safetensors: an ensemble bundle"):
        build_model(_recipe(tmp_path, esc, init=str(bundle)), model.labels)


def test_imagenet_init_from_a_local_deit_file(tmp_path, esc):
    import timm
    from safetensors.torch import save_file

    deit = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False)
    weights = tmp_path / "deit.safetensors"
    save_file({k: v.contiguous() for k, v in deit.state_dict().items()}, str(weights))
    recipe = _recipe(tmp_path, esc, init="imagenet", imagenet_weights=str(weights), model={}, stride=[10, 10])
    model = build_model(recipe, LabelSet.from_names(list("abc"), multi_label=False))
    assert torch.equal(model.blocks[11].attn.qkv.weight, deit.state_dict()["blocks.11.attn.qkv.weight"])
    assert model.config.grid == (5, 9)


# --------------------------------------------------------------------------- runs


def test_a_run_writes_its_directory(tmp_path, esc):
    recipe = _recipe(tmp_path, esc, epochs=2, average_epochs=[1, 2], mixup=0.5, freqm=8, timem=10)
    result = train(recipe, tmp_path / "run", runtime=CPU)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == {"recipe.yaml", "metrics.jsonl", "checkpoints",
                                                "training_state.pt", "best.safetensors",
                                                "averaged.safetensors", "summary.json"}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert {"train_loss", "valid_loss", "accuracy", "mAP", "lr", "samples_per_second"} <= set(records[0])
    assert load_recipe(run / "recipe.yaml") == recipe
    meta = checkpoint.read_metadata(run / "checkpoints" / "epoch_002.safetensors")
    assert meta["extra"]["epoch"] == 2 and meta["extra"]["recipe"] == "tiny"
    assert meta["extra"]["metrics"]["accuracy"] == records[1]["accuracy"]
    # The event threshold it recommends was chosen on the validation clips, the rule recorded.
    recorded = recommended(checkpoint.load(run / "checkpoints" / "epoch_002.safetensors"))
    assert recorded.to_dict() == records[1]["event_threshold"] and "micro-F1" in recorded.rule
    assert recorded != FALLBACK and 0 < recorded.value < 1
    assert recommended(checkpoint.load(run / "averaged.safetensors")) != FALLBACK
    best = result.summary["best_epoch"]
    assert _same_weights(run / "best.safetensors", run / "checkpoints" / f"epoch_{best:03d}.safetensors")
    averaged = checkpoint.load(run / "averaged.safetensors")
    one, two = (checkpoint.load(run / "checkpoints" / f"epoch_00{e}.safetensors") for e in (1, 2))
    torch.testing.assert_close(averaged.head.weight, (one.head.weight + two.head.weight) / 2)
    state = torch.load(run / "training_state.pt", weights_only=True)
    assert state["epoch"] == 2 and state["global_step"] == 10  # 40 clips, batches of 8
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metric"] == "accuracy" and summary["averaged"]["epochs"] == [1, 2]
    # A finished run resumed only finishes again; a started one refuses a fresh start.
    assert resume(run, runtime=CPU).summary["best"] == result.summary["best"]
    with pytest.raises(TrainingError, match="already holds a training run"):
        train(recipe, run, runtime=CPU)


def test_batches_must_split_over_accumulation(tmp_path, esc):
    with pytest.raises(TrainingError, match="batch_size 8 does not split into 1 process"):
        train(_recipe(tmp_path, esc, grad_accum=3), tmp_path / "run", runtime=CPU)
    assert not (tmp_path / "run").exists()


def test_gradient_accumulation_matches_one_big_batch(tmp_path, esc):
    # Without dropout or augmentation two half batches give the gradients of the whole batch;
    # Adam turns rounding noise in near-zero gradients into steps of up to lr, hence atol.
    one = train(_recipe(tmp_path, esc, epochs=1), tmp_path / "one", runtime=CPU)
    two = train(_recipe(tmp_path, esc, epochs=1, grad_accum=2), tmp_path / "two", runtime=CPU)
    a, b = (load_file(str(r.run_dir / "checkpoints" / "epoch_001.safetensors")) for r in (one, two))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=2e-4, rtol=1e-3)


def test_a_target_source_replaces_the_data_targets(tmp_path, esc):
    seen = []

    def uniform(inputs, targets):
        seen.append((tuple(inputs.shape), tuple(targets.shape)))
        return torch.full_like(targets, 1 / targets.shape[1])

    recipe = _recipe(tmp_path, esc, epochs=1)
    train(recipe, tmp_path / "teacher", runtime=CPU, targets=uniform)
    train(recipe, tmp_path / "data", runtime=CPU)
    assert seen[0] == ((8, 100, 64), (8, 5)) and len(seen) == 5
    assert not _same_weights(tmp_path / "teacher" / "best.safetensors", tmp_path / "data" / "best.safetensors")


def test_a_tiny_ast_learns_five_synthetic_sound_types(tmp_path):
    """From scratch on a generated ESC-50-layout set, >= 90% on the held-out fold."""
    data = make_esc50(tmp_path / "esc", per_fold=12)
    recipe = _recipe(tmp_path, data, epochs=12, lr=5e-4, lr_decay=0.8, lr_decay_start=1)
    result = train(recipe, tmp_path / "run", runtime=Runtime(device="cpu", cache=tmp_path / "cache"))
    assert result.summary["last"]["accuracy"] >= 0.9, result.summary


# --------------------------------------------------------------------------- processes


def _finetune_args(esc: Path, recipe: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", "esc50", "-d", str(esc), "--recipe", str(recipe), "--fold", "1", "-q",
            "--device", "cpu", "-o", str(out), *extra]


def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path, esc):
    recipe = tiny_recipe(tmp_path / "recipe.yaml", epochs=3, mixup=0.5, freqm=8, timem=10,
                         noise=True, average_epochs=[2, 3])
    extra = ("--workers", "1")
    # Only the killed run needs a process of its own; the others run here (a process start costs
    # more than their training).
    whole = CliRunner().invoke(app, _finetune_args(esc, recipe, tmp_path / "whole", *extra))
    assert whole.exit_code == 0, whole.output
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "asttag",
                                *_finetune_args(esc, recipe, killed, *extra)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = killed / "training_state.pt"
    deadline = time.monotonic() + 120
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = torch.load(state, weights_only=True)["epoch"]
    assert done < 3, "the run ended before it could be killed"
    resumed = CliRunner().invoke(app, ["finetune", "--resume", str(killed), "--device", "cpu", "-q"])
    assert resumed.exit_code == 0, resumed.output
    for name in ("checkpoints/epoch_003.safetensors", "best.safetensors", "averaged.safetensors"):
        assert _same_weights(tmp_path / "whole" / name, killed / name), name
    strip = lambda path: [{k: v for k, v in json.loads(line).items() if "second" not in k}
                          for line in path.read_text().splitlines()]
    assert strip(killed / "metrics.jsonl") == strip(tmp_path / "whole" / "metrics.jsonl")


def test_two_process_ddp_run_writes_one_run_directory(tmp_path, esc):
    # One epoch: the ranks' start (torch, the optimiser) costs far more than the training.
    recipe = tiny_recipe(tmp_path / "recipe.yaml", epochs=1, mixup=0.5)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "asttag", *_finetune_args(esc, recipe, out)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)  # one summary: only rank 0 prints
    assert summary["epochs"] == 1 and summary["run_dir"] == str(out)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_001.safetensors"]
    state = torch.load(out / "training_state.pt", weights_only=True)
    assert state["world_size"] == 2 and state["global_step"] == 5  # batch 8 = 2 x 4 per step
    assert not list(tmp_path.glob("runs")) and len(list(tmp_path.iterdir())) == 2


def test_a_model_start_keeps_its_mel_bins_and_strides_and_its_size_sets_the_lr(tmp_path, esc):
    # `finetune esc50 --init default` used to rebuild the 64-mel, 16/16 default model on the
    # recipe's 128 mel bins and 10/10 strides, at AST-P's learning rate.
    labels = LabelSet.from_names(list("abcde"), multi_label=False)
    source = build_model(_recipe(tmp_path, esc, stride=[12, 12], num_mel_bins=48), labels)
    path = checkpoint.save(source, tmp_path / "source.safetensors")
    recipe = _recipe(tmp_path, esc, init=str(path), lr_by_init={"small": 3e-4, "none": 1.0})
    resolved, loaded = resolve(recipe)
    assert (resolved.stride, resolved.num_mel_bins, resolved.lr) == ((12, 12), 48, 3e-4)
    model = build_model(resolved, labels, source=loaded)
    assert model.config.stride == (12, 12) and model.features.num_mel_bins == 48
    for key, value in source.state_dict().items():  # nothing had to be adapted
        assert torch.equal(model.state_dict()[key], value), key
    # What the user sets wins; an encoder as wide as AST base takes the recipe's own lr.
    told, _ = resolve(recipe.with_overrides({"stride": [16, 16]}))
    assert (told.stride, told.num_mel_bins) == ((16, 16), 48)
    assert recipe.resolved(source.config.replace(embed_dim=768)).lr == recipe.lr
    assert recipe.replace(init="none").resolved().lr == 1.0
