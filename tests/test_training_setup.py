"""Model set-up from a recipe: scratch, checkpoint and ImageNet starts, what a start keeps."""

from __future__ import annotations

import pytest
import torch

from asttag import checkpoint
from asttag.ensemble import Ensemble, save_bundle
from asttag.labels import LabelSet
from asttag.training import TrainingError, build_model, resolve
from training_fixtures import esc_recipe


def test_scratch_model_takes_its_size_and_features_from_the_recipe(tmp_path, esc):
    recipe = esc_recipe(tmp_path, esc)
    labels = LabelSet.from_names(list("abcde"), multi_label=False)
    model = build_model(recipe, labels)
    assert (model.config.embed_dim, model.config.depth, model.config.stride) == (64, 2, (16, 16))
    assert (model.features.num_mel_bins, model.features.target_length, model.features.mean) == (64, 100, -6.6268077)
    assert model.labels == labels
    assert torch.equal(build_model(recipe, labels).pos_embed, model.pos_embed)  # seeded


def test_checkpoint_init_transfers_the_encoder(tmp_path, esc):
    labels = LabelSet.from_names(list("abcde"), multi_label=False)
    source = build_model(esc_recipe(tmp_path, esc, seed=4), labels)
    path = checkpoint.save(source, tmp_path / "source.safetensors")
    same = build_model(esc_recipe(tmp_path, esc, init=str(path)), labels)
    for key, value in source.state_dict().items():  # same labels and input: the head stays
        assert torch.equal(same.state_dict()[key], value), key
    other = build_model(esc_recipe(tmp_path, esc, init=str(path), target_length=60),
                        LabelSet.from_names(list("xyz"), multi_label=True))
    assert other.head.weight.shape == (3, 64) and other.config.target_length == 60
    assert torch.equal(other.blocks[1].mlp.fc2.weight, source.blocks[1].mlp.fc2.weight)


def test_an_ensemble_bundle_is_refused_as_init(tmp_path, esc):
    model = build_model(esc_recipe(tmp_path, esc), LabelSet.from_names(list("abcde")))
    bundle = save_bundle(Ensemble([model, model]), tmp_path / "bundle.safetensors")
    with pytest.raises(TrainingError, match="bundle.safetensors: an ensemble bundle"):
        build_model(esc_recipe(tmp_path, esc, init=str(bundle)), model.labels)


def test_imagenet_init_from_a_local_deit_file(tmp_path, esc):
    import timm
    from safetensors.torch import save_file

    deit = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False)
    weights = tmp_path / "deit.safetensors"
    save_file({k: v.contiguous() for k, v in deit.state_dict().items()}, str(weights))
    recipe = esc_recipe(tmp_path, esc, init="imagenet", imagenet_weights=str(weights), model={}, stride=[10, 10])
    model = build_model(recipe, LabelSet.from_names(list("abc"), multi_label=False))
    assert torch.equal(model.blocks[11].attn.qkv.weight, deit.state_dict()["blocks.11.attn.qkv.weight"])
    assert model.config.grid == (5, 9)


def test_a_model_start_keeps_its_mel_bins_and_strides_and_its_size_sets_the_lr(tmp_path, esc):
    # `finetune esc50 --init default` used to rebuild the 64-mel, 16/16 default model on the
    # recipe's 128 mel bins and 10/10 strides, at AST-P's learning rate.
    labels = LabelSet.from_names(list("abcde"), multi_label=False)
    source = build_model(esc_recipe(tmp_path, esc, stride=[12, 12], num_mel_bins=48), labels)
    path = checkpoint.save(source, tmp_path / "source.safetensors")
    recipe = esc_recipe(tmp_path, esc, init=str(path), lr_by_init={"small": 3e-4, "none": 1.0})
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
