"""Recipes: the shipped ones hold the paper's numbers; overrides, errors and round trips."""

from __future__ import annotations

import pytest

from asttag.recipes import RecipeError, builtin_recipes, load_recipe, parse_override


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
