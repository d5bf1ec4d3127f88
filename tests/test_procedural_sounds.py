"""The default model's procedural sounds (models/recipes/procedural_sounds.py): generated,
seeded, of the asked length and level, from every family."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from conftest import recipe_script

WINDOW = 15360  # the 0.96 s student window at 16 kHz


@pytest.fixture(scope="module")
def sounds():
    with recipe_script("procedural_sounds") as module:
        yield module


def test_a_seed_gives_the_same_sound_and_another_seed_another(sounds):
    a, made_of = sounds.procedural_sound(np.random.default_rng([0, 7]), WINDOW)
    b, again = sounds.procedural_sound(np.random.default_rng([0, 7]), WINDOW)
    c, _ = sounds.procedural_sound(np.random.default_rng([0, 8]), WINDOW)
    assert made_of == again and np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("samples", [WINDOW, 40960])
def test_sounds_have_the_window_length_and_a_peak_between_minus_20_and_minus_1_dbfs(sounds, samples):
    for seed in range(12):
        wave, _ = sounds.procedural_sound(np.random.default_rng(seed), samples)
        peak_db = 20 * np.log10(np.abs(wave).max())
        assert wave.dtype == np.float32 and wave.shape == (samples,)
        assert np.isfinite(wave).all() and -20.01 <= peak_db <= -0.99


@pytest.mark.parametrize("family", ["pulsed tone", "struck", "transients", "texture", "call", "noise"])
def test_every_family_makes_finite_audible_sound(sounds, family):
    for seed in range(5):
        x = sounds.FAMILIES[family](np.random.default_rng(seed), WINDOW)
        assert x.shape == (WINDOW,) and np.isfinite(x).all() and np.abs(x).max() > 1e-3


def test_families_are_drawn_evenly_and_a_third_of_sounds_mix_two(sounds):
    made = [sounds.procedural_sound(np.random.default_rng(seed), 4000)[1] for seed in range(300)]
    firsts = {name: sum(m.split(" + ")[0] == name for m in made) for name in sounds.FAMILIES}
    assert min(firsts.values()) >= 25  # 50 expected each
    assert 70 <= sum(" + " in m for m in made) <= 130  # 100 expected


def test_families_differ_in_what_they_put_where(sounds):
    """The transient family is mostly silence between bursts; the noise family never is."""
    rng = np.random.default_rng(3)
    quiet = [np.mean(np.abs(sounds.FAMILIES["transients"](rng, WINDOW)) < 1e-4) for _ in range(5)]
    busy = [np.mean(np.abs(sounds.FAMILIES["noise"](rng, WINDOW)) < 1e-4) for _ in range(5)]
    assert min(quiet) > 0.3 and max(busy) < 0.05


def _brightness(x: np.ndarray) -> np.ndarray:
    """A stand-in judge with one class: the share of the sound's energy above 3 kHz."""
    power = np.abs(np.fft.rfft(x)) ** 2
    return np.array([power[np.fft.rfftfreq(len(x), 1 / 16000) > 3000].sum() / power.sum()])


def test_an_edit_keeps_the_length_and_renormalises_the_peak(sounds):
    x, _ = sounds.procedural_sound(np.random.default_rng(1), WINDOW)
    for seed in range(20):  # every kind of edit comes up in 20 draws
        y = sounds.edited(np.random.default_rng(seed), x)
        peak_db = 20 * np.log10(np.abs(y).max())
        assert y.dtype == np.float32 and y.shape == x.shape and np.isfinite(y).all()
        assert -20.01 <= peak_db <= -0.99 and not np.array_equal(y / np.abs(y).max(), x / np.abs(x).max())


def test_a_climb_keeps_only_edits_that_raise_the_target_and_is_seeded(sounds):
    start, _ = sounds.procedural_sound(np.random.default_rng(2), 4000)
    path = sounds.climbed(np.random.default_rng(5), start, _brightness, 0, steps=25)
    rising = [_brightness(start)[0]] + [float(scores[0]) for _, scores in path]
    assert path and all(a < b for a, b in pairwise(rising))
    assert all(np.array_equal(_brightness(wave), scores) and wave.shape == start.shape for wave, scores in path)
    again = sounds.climbed(np.random.default_rng(5), start, _brightness, 0, steps=25)
    assert [s for _, s in again] == [s for _, s in path]


def test_a_climb_that_cannot_rise_keeps_nothing(sounds):
    start, _ = sounds.procedural_sound(np.random.default_rng(2), 4000)
    assert sounds.climbed(np.random.default_rng(5), start, lambda x: np.array([0.5, np.nan]), 1, steps=10) == []
