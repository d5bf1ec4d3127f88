"""Procedural sounds: random members of a few generic families of sound, for distillation.

The teacher's scores are labels for any audio, so sounds made from random parameters are
training data too: they show the student how the teacher answers sounds the corpus's recordings
do not hold (other pitches, rhythms, rooms, textures). The families are generic on purpose, not
imitations of any class:

- pulsed tones: one to seven harmonics, vibrato or two-tone alternation, gated on and off
  (beeps, alarms, electronic rings);
- struck partials: a few inharmonic partials decaying at once, struck once or repeatedly
  (bells, metal, ringing);
- transients: one to five short bursts of band-limited noise (clicks, knocks, snaps);
- dense textures: hundreds of tiny bursts at random times (crackle, rain, crowds of claps);
- calls: a harmonic tone with a pitch contour, vibrato, breath noise and resonances
  (animal- and voice-like);
- noise: band-limited noise under a slow or fast amplitude modulation (wind, engines, water).

A third of the sounds mix two families; half go through a synthetic room (exponentially
decaying noise); every sound is normalised to a random peak of -20 to -1 dBFS.

`climbed` then walks a sound towards a class the teacher hears in it: random edits (another
family mixed in, a band boosted or cut, a speed change, a room, a shifted copy laid over it),
each kept when the teacher's score for the class rises (a greedy search with the teacher as the
judge, as data-free distillation does; the edits are whole-sound changes, not sample-level
perturbations, so what the teacher hears is in the sound).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.signal import butter, resample, sosfilt

SAMPLE_RATE = 16000
NYQUIST = SAMPLE_RATE / 2


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def band_pass(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """`x` through a 2nd-order Butterworth band-pass of low..high Hz."""
    return sosfilt(butter(2, [low, high], btype="band", fs=SAMPLE_RATE, output="sos"), x)


def band_noise(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    """White noise through a band-pass of low..high Hz (clamped)."""
    low = min(max(low, 30.0), NYQUIST - 400)
    high = min(max(high, low * 1.1), NYQUIST - 200)
    return band_pass(rng.standard_normal(n), low, high)


def gate(rng: np.random.Generator, n: int) -> np.ndarray:
    """On/off at 0.5-25 Hz with a random duty cycle, edges smoothed over 4 ms."""
    rate, duty = rng.uniform(0.5, 25), rng.uniform(0.2, 0.8)
    on = ((np.arange(n) / SAMPLE_RATE * rate + rng.random()) % 1.0 < duty).astype(float)
    ramp = int(SAMPLE_RATE * 0.004)
    return np.convolve(on, np.ones(ramp) / ramp, mode="same")


def pulsed_tone(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    f0 = log_uniform(rng, 150, 4000)
    depth = rng.uniform(0, 0.3) if rng.random() < 0.5 else 0.0
    wobble = np.sin(2 * np.pi * rng.uniform(0, 30) * t)
    if rng.random() < 0.3:  # alternate between two pitches
        wobble = np.sign(wobble)
    phase = 2 * np.pi * np.cumsum(f0 * (1 + depth * wobble)) / SAMPLE_RATE
    harmonics = range(1, int(rng.integers(1, 8)) + 1)
    x = sum(rng.uniform(0.1, 1) / k * np.sin(k * phase) for k in harmonics)
    return x * gate(rng, n) if rng.random() < 0.5 else x


def struck(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    f0 = log_uniform(rng, 200, 5000)
    ratios = np.concatenate([[1.0], rng.uniform(1.2, 9.0, int(rng.integers(2, 8)))])
    decay = log_uniform(rng, 0.02, 2.0)  # seconds; higher partials die sooner
    ring = sum(rng.uniform(0.2, 1) * np.sin(2 * np.pi * f0 * r * t + rng.uniform(0, 2 * np.pi))
               * np.exp(-t * np.sqrt(r) / decay) for r in ratios if f0 * r < NYQUIST)
    rate = rng.uniform(1, 30) if rng.random() < 0.5 else 0.0
    strikes = np.arange(rng.uniform(0, 0.1), n / SAMPLE_RATE, 1 / rate) if rate else [0.0]
    x = np.zeros(n)
    for at in (int(s * SAMPLE_RATE) for s in strikes):
        x[at:] += ring[: n - at] * rng.uniform(0.5, 1)
    return x


def _burst(rng: np.random.Generator, length: int, low: float, high: float) -> np.ndarray:
    """Band-limited noise with an exponential decay."""
    return band_noise(rng, length, low, high) * np.exp(-np.arange(length) / (length / rng.uniform(2, 8)))


def transients(rng: np.random.Generator, n: int) -> np.ndarray:
    x = np.zeros(n)
    low = log_uniform(rng, 100, 4000)
    high = low * np.exp(rng.uniform(0.3, 2.5))
    at = rng.uniform(0, 0.5) * n
    for _ in range(int(rng.integers(1, 6))):
        start = int(at)
        if start >= n:
            break
        burst = _burst(rng, int(SAMPLE_RATE * rng.uniform(0.002, 0.06)), low * rng.uniform(0.8, 1.25), high)
        stop = min(n, start + len(burst))
        x[start:stop] += rng.uniform(0.3, 1) * burst[: stop - start]
        at += rng.uniform(0.01, 0.3) * SAMPLE_RATE
    return x


def texture(rng: np.random.Generator, n: int) -> np.ndarray:
    rate = log_uniform(rng, 5, 800)  # bursts per second
    low = log_uniform(rng, 200, 3000)
    burst_len = int(SAMPLE_RATE * rng.uniform(0.003, 0.03))
    source = band_noise(rng, 4 * burst_len, low, low * np.exp(rng.uniform(0.5, 2.5)))
    shape = np.exp(-np.arange(burst_len) / (burst_len / 4))
    x = np.zeros(n + burst_len)
    for start in rng.integers(0, n, rng.poisson(rate * n / SAMPLE_RATE)):
        offset = int(rng.integers(0, 3 * burst_len))
        x[start : start + burst_len] += rng.lognormal(0, 0.6) * shape * source[offset : offset + burst_len]
    return x[:n]


def call(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    length = rng.uniform(0.15, 1.0) * n / SAMPLE_RATE
    u = np.clip(t / length, 0, 1)
    start = log_uniform(rng, 80, 3000)
    contour = start * np.exp(rng.uniform(-1.5, 1.5) * u)  # a glide up or down
    shape = rng.integers(3)
    if shape == 1:  # rise and fall
        contour *= 1 + rng.uniform(0.1, 1.5) * np.sin(np.pi * u)
    elif shape == 2:  # vibrato
        contour *= 1 + rng.uniform(0.02, 0.3) * np.sin(2 * np.pi * rng.uniform(3, 20) * t)
    contour *= 1 + rng.uniform(0, 0.03) * np.cumsum(rng.standard_normal(n)) / np.sqrt(np.arange(1, n + 1))
    phase = 2 * np.pi * np.cumsum(contour) / SAMPLE_RATE
    tilt = rng.uniform(0.5, 2)
    harmonics = max(1, min(30, int(NYQUIST / contour.max())))  # up to 30, below Nyquist
    x = sum(np.sin(k * phase) / k**tilt for k in range(1, harmonics + 1))
    x = x + rng.uniform(0, 0.8) * np.abs(x).mean() * band_noise(rng, n, 300, 6000)  # breath
    for _ in range(int(rng.integers(0, 4))):  # resonances
        centre = log_uniform(rng, 300, 4000)
        half_width = centre * rng.uniform(0.05, 0.25)
        low, high = max(40, centre - half_width), min(NYQUIST - 100, centre + half_width)
        x = x + rng.uniform(0.5, 2) * band_pass(x, low, high)
    envelope = np.sin(np.pi * u) ** rng.uniform(0.3, 2) * (t < length)
    return np.roll(x * envelope, int(rng.uniform(0, max(0.0, 1 - length * SAMPLE_RATE / n)) * n))


def modulated_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    low = log_uniform(rng, 40, 3000)
    x = band_noise(rng, n, low, low * np.exp(rng.uniform(0.3, 4)))
    return x * (1 + rng.uniform(0, 0.9) * np.sin(2 * np.pi * rng.uniform(0.2, 40) * t + rng.uniform(0, 6)))


FAMILIES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "pulsed tone": pulsed_tone,
    "struck": struck,
    "transients": transients,
    "texture": texture,
    "call": call,
    "noise": modulated_noise,
}


def room(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """x heard in a synthetic room: decaying noise of RT60 0.1-0.8 s after a direct path."""
    tail = int(SAMPLE_RATE * rng.uniform(0.1, 0.8))
    response = rng.standard_normal(tail) * np.exp(-6.9 * np.arange(tail) / tail)  # -60 dB at the end
    response[0] = 1 / rng.uniform(0.05, 0.5)
    return np.convolve(x, response)[: len(x)]


def _unit_peak(x: np.ndarray) -> np.ndarray:
    return x / (float(np.abs(x).max()) or 1.0)


def procedural_sound(rng: np.random.Generator, samples: int) -> tuple[np.ndarray, str]:
    """A random sound of `samples` samples at 16 kHz (float32) and the families it is made of."""
    names = list(FAMILIES)
    first = names[rng.integers(len(names))]
    x = _unit_peak(FAMILIES[first](rng, samples))
    made_of = first
    if rng.random() < 1 / 3:
        second = names[rng.integers(len(names))]
        x = x + rng.uniform(0.1, 1) * _unit_peak(FAMILIES[second](rng, samples))
        made_of += " + " + second
    if rng.random() < 0.5:
        x = room(rng, x)
    return _at_random_peak(rng, x), made_of


def _at_random_peak(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """`x` scaled to a random peak of -20 to -1 dBFS, as float32."""
    return (_unit_peak(x) * 10 ** (rng.uniform(-20, -1) / 20)).astype(np.float32)


def _random_edit(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    edit = rng.integers(5)
    if edit == 0:  # another family mixed in
        return x + rng.uniform(0.05, 0.5) * _unit_peak(procedural_sound(rng, len(x))[0])
    if edit == 1:  # a band boosted or cut
        centre = log_uniform(rng, 100, 6000)
        half_width = centre * rng.uniform(0.1, 0.5)
        low, high = max(40, centre - half_width), min(NYQUIST - 200, centre + half_width)
        return x + rng.uniform(-0.9, 2.0) * band_pass(x, low, high)
    if edit == 2:  # faster or slower (and higher or lower), cut or padded back to length
        y = resample(x, int(len(x) / rng.uniform(0.8, 1.25)))
        return np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]
    if edit == 3:
        return room(rng, x)
    return x + rng.uniform(0.3, 1) * np.roll(x, int(rng.integers(len(x))))  # a shifted copy over it


def edited(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """`x` after one random edit, at a random peak of -20 to -1 dBFS (float32)."""
    return _at_random_peak(rng, _random_edit(rng, x))


def climbed(
    rng: np.random.Generator, start: np.ndarray, scores_of: Callable[[np.ndarray], np.ndarray],
    target: int, steps: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """A greedy climb from `start` towards class `target`: `steps` random edits, each kept when
    scores_of (the teacher: a score per class, NaN where it has none) rates the edited sound
    higher for the target than the sound it edits. The kept sounds with their scores, in order."""
    best = float(np.nan_to_num(scores_of(start)[target]))
    x, kept = start, []
    for _ in range(steps):
        candidate = edited(rng, x)
        scores = scores_of(candidate)
        if float(np.nan_to_num(scores[target])) > best:
            x, best = candidate, float(scores[target])
            kept.append((x, scores))
    return kept
