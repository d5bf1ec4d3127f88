"""A stand-in for YAMNet and generated tones, shared by the distillation and recipe tests."""

from __future__ import annotations

import numpy as np

from asttag import yamnet

RATE = 16000
SPEECH, MUSIC, DOG = "Speech", "Music", "Dog"


class FakeYamnet:
    """Stands in for YamnetTeacher: frames at YAMNet's hop; loud frames score Speech 0.9,
    quiet ones Music 0.6, and frame i scores Dog i / 10 (so a window's max is checkable)."""

    def __init__(self) -> None:
        names = yamnet.default_labels()
        self.columns = {name: names.index(name) for name in (SPEECH, MUSIC, DOG)}

    def frame_scores(self, wave16k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = yamnet.frame_count(len(wave16k))
        scores = np.full((n, yamnet.NUM_CLASSES), 0.01, dtype=np.float32)
        for i in range(n):
            piece = wave16k[i * yamnet.HOP_SAMPLES : i * yamnet.HOP_SAMPLES + yamnet.FRAME_SAMPLES]
            loud = piece.size and float(np.abs(piece).max()) > 0.3
            scores[i, self.columns[SPEECH if loud else MUSIC]] = 0.9 if loud else 0.6
            scores[i, self.columns[DOG]] = min(1.0, i / 10)
        times = np.arange(n) * yamnet.HOP_SECONDS + yamnet.FRAME_SECONDS / 2
        return times, scores

    def to_audioset(self, scores: np.ndarray) -> np.ndarray:
        return yamnet.to_audioset(scores)


def tone(seconds: float, level: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (level * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)).astype(np.float32)
