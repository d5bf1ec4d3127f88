"""Build B7's small REAL data set: six classes of recorded sounds from three Debian packages.

The packages (see benchmarks/README.md for the commands that fetch and unpack them into SOURCE):
tuxpaint-stamps-default (GPL-2: the stamps' animal and household sounds, and the spoken
descriptions, `*_desc*.ogg`, in many languages), bucklespring-data (GPL-2+: recorded key presses
of one keyboard) and sound-theme-freedesktop (CC-BY-SA-3.0, CC-BY-3.0, GPL-2: desktop alerts,
bells and phone tones; its spoken channel names and test tone are left out). OUT gets one
subfolder per class, the layout `asttag finetune folder` reads, each with `--per-class` files
drawn by `--seed` from the class's candidates after dropping byte-identical copies (the alert
theme ships some sounds twice under two names, which would put one sound on both sides of a
split). Files keep their format; their names say where they came from.

    python benchmarks/probe_data.py /tmp/probe-src /tmp/probe-real
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
from pathlib import Path

STAMPS = "usr/share/tuxpaint/stamps"
ALERTS = "usr/share/sounds/freedesktop/stereo"


def candidates(source: Path) -> dict[str, list[Path]]:
    """Each class's files under the unpacked packages, sorted."""
    stamps = source / STAMPS

    def stamp_sounds(folder: str) -> list[Path]:
        return sorted(p for p in (stamps / folder).rglob("*.ogg") if "_desc" not in p.name)

    return {
        "alert": sorted(p for p in (source / ALERTS).glob("*.oga")
                        if not p.name.startswith(("audio-channel-", "audio-test-signal"))),
        "bird": stamp_sounds("animals/birds"),
        "household": stamp_sounds("household"),
        # bucklespring names each key's recordings NN-0 (press) and NN-1 (release): presses only.
        "keyboard": sorted((source / "usr/share/buckle/wav").glob("*-0.wav")),
        "mammal": stamp_sounds("animals/mammals"),
        "speech": sorted(stamps.rglob("*_desc*.ogg")),
    }


def distinct(paths: list[Path]) -> list[Path]:
    """`paths` without byte-identical repeats, the first of each kept."""
    seen: set[str] = set()
    kept = []
    for path in paths:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            kept.append(path)
    return kept


def build(source: Path, out: Path, *, per_class: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    counts = {}
    for name, paths in candidates(source).items():
        paths = distinct(paths)
        if len(paths) < per_class:
            raise SystemExit(f"{name}: {len(paths)} distinct files under {source}, "
                             f"fewer than --per-class {per_class}")
        (out / name).mkdir(parents=True, exist_ok=True)
        for path in rng.sample(paths, per_class):
            target = "_".join(path.relative_to(source / "usr/share").parts)
            shutil.copyfile(path, out / name / target)
        counts[name] = per_class
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the packages unpacked into one folder")
    parser.add_argument("out", type=Path, help="the data set's folder (must not exist)")
    parser.add_argument("--per-class", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; remove it or name another folder")
    counts = build(args.source, args.out, per_class=args.per_class, seed=args.seed)
    print(f"{args.out}: {len(counts)} classes x {args.per_class} files: {', '.join(counts)}")


if __name__ == "__main__":
    main()
