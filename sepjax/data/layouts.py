"""Dataset folder layouts. Each one lists tracks as (track_id, split, {stem: path}); stem names live here.

    chorales    the embedded corpus (`sepjax data chorales`): jacappella with soprano/alto/tenor/bass
    jacappella  ROOT/<subset>/<song>/{lead_vocal,soprano,alto,tenor,bass,vocal_percussion,...,mixture}.wav
                split from the official test list (or any list file); optional valid list
    musdb       ROOT/{train,test}/<track>/{mixture,vocals,drums,bass,other}.wav   (MUSDB18-HQ)
                the standard 14-track validation subset of train is split "valid"
    stems       ROOT/<track>/<stem>.{wav,flac} with the stem names given; split from list files
    2mix        ROOT/{tr,cv,tt}/{mix,s1,s2}/<utt>.wav  (wsj0-2mix / Libri2Mix style)
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sepjax.errors import InputError

AUDIO_SUFFIXES = (".wav", ".flac")

JACAPPELLA_STEMS = ("lead_vocal", "soprano", "alto", "tenor", "bass", "vocal_percussion")
JACAPPELLA_TEST_LIST = "test_song_list_for_vocal_ensemble_separation.txt"
CHORALE_STEMS = ("soprano", "alto", "tenor", "bass")
VALID_LIST = "valid_song_list.txt"
MUSDB_STEMS = ("vocals", "drums", "bass", "other")
TWOMIX_STEMS = ("s1", "s2")
TWOMIX_SPLITS = {"tr": "train", "cv": "valid", "tt": "test"}
# The validation subset of MUSDB18 train used by open-unmix, demucs and the museval tools.
MUSDB_VALID_TRACKS = frozenset({
    "Actions - One Minute Smile", "Clara Berry And Wooldog - Waltz For My Victims",
    "Johnny Lokke - Promises & Lies", "Patrick Talbot - A Reason To Leave",
    "Triviul - Angelsaint", "Alexander Ross - Goodbye Bolero", "Fergessen - Nos Palpitants",
    "Leaf - Summerghost", "Skelpolu - Human Mistakes", "Young Griffo - Pennies",
    "ANiMAL - Rockshow", "James May - On The Line", "Meaxic - Take A Step",
    "Traffic Experiment - Sirens",
})


# MUSDB18 .stem.mp4 substreams: 0 is the mixture.
MUSDB_STEM_STREAMS = {"drums": 1, "bass": 2, "other": 3, "vocals": 4}
StemRef = Path | tuple[Path, int]
"""A stem's file, or (file, substream) inside a multi-stream .stem.mp4."""


def ref_path(ref: StemRef) -> Path:
    return ref[0] if isinstance(ref, tuple) else ref


class LayoutError(InputError):
    """A dataset root that does not match its declared layout; the message names the path."""


@dataclass(frozen=True)
class Layout:
    """How to find tracks under a root. `stems` is the canonical stem order for batches."""

    name: str
    stems: tuple[str, ...]
    test_list: str | None = None
    valid_list: str | None = None
    split_names: dict[str, str] = field(default_factory=dict)

    def scan(self, root: Path) -> Iterator[tuple[str, str, dict[str, "StemRef"]]]:
        if not root.is_dir():
            raise LayoutError(f"{root}: dataset root is not a folder")
        yield from SCANNERS[self.name](self, root)


def read_list(root: Path, name: str | None) -> set[str]:
    """Song names from a list file (one per line), relative to root unless absolute."""
    if name is None:
        return set()
    path = Path(name) if Path(name).is_absolute() else root / name
    if not path.exists():
        return set()
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def audio_files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in AUDIO_SUFFIXES}


def visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_by_lists(layout: Layout, root: Path):
    test, valid = read_list(root, layout.test_list), read_list(root, layout.valid_list)
    return lambda song: "test" if song in test else "valid" if song in valid else "train"


def _scan_jacappella(layout: Layout, root: Path):
    split_of = _split_by_lists(layout, root)
    for subset in visible_dirs(root):
        for song in visible_dirs(subset):
            files = audio_files(song)
            # Extra parts (finger_snap, …) are indexed and reported, but only layout.stems are trained on.
            stems = {k: v for k, v in files.items() if k != "mixture"}
            yield f"{subset.name}/{song.name}", split_of(song.name), stems


def _scan_musdb(layout: Layout, root: Path):
    for split in ("train", "test"):
        folder = root / split
        if not folder.is_dir():
            continue
        for track in visible_dirs(folder):
            files = audio_files(track)
            stems = {k: files[k] for k in layout.stems if k in files}
            yield f"{split}/{track.name}", _musdb_split(split, track.name), stems
        for mp4 in sorted(folder.glob("*.stem.mp4")):  # MUSDB18 (compressed), read through stempeg
            name = mp4.name[: -len(".stem.mp4")]
            stems = {k: (mp4, MUSDB_STEM_STREAMS[k]) for k in layout.stems if k in MUSDB_STEM_STREAMS}
            yield f"{split}/{name}", _musdb_split(split, name), stems


def _musdb_split(split: str, name: str) -> str:
    return "valid" if split == "train" and name in MUSDB_VALID_TRACKS else split


def _scan_stems(layout: Layout, root: Path):
    split_of = _split_by_lists(layout, root)
    for track in visible_dirs(root):
        files = audio_files(track)
        yield track.name, split_of(track.name), {k: files[k] for k in layout.stems if k in files}


def _scan_2mix(layout: Layout, root: Path):
    for folder, split in layout.split_names.items():
        base = root / folder
        if not (base / "mix").is_dir():
            continue
        for mix in sorted(p for p in (base / "mix").iterdir() if p.suffix.lower() in AUDIO_SUFFIXES):
            stems = {s: base / s / mix.name for s in layout.stems if (base / s / mix.name).exists()}
            yield f"{folder}/{mix.stem}", split, stems


LAYOUT_NAMES = ("jacappella", "chorales", "musdb", "stems", "2mix")
SPEAKER_LAYOUTS = frozenset({"2mix"})
"""Layouts whose stems are speakers with no order: a model's outputs are matched to them by the best permutation."""
SCANNERS = {"jacappella": _scan_jacappella, "musdb": _scan_musdb, "stems": _scan_stems, "2mix": _scan_2mix}


def get_layout(name: str, *, stems: tuple[str, ...] | None = None, test_list: str | None = None,
               valid_list: str | None = None) -> Layout:
    """The layout `name`; `stems` overrides its stem names (required for `stems`)."""
    if name == "jacappella":
        return Layout("jacappella", stems or JACAPPELLA_STEMS, test_list or JACAPPELLA_TEST_LIST,
                      valid_list or VALID_LIST)
    if name == "chorales":  # the embedded corpus: the JaCappella layout with SATB stems
        return get_layout("jacappella", stems=stems or CHORALE_STEMS, test_list=test_list,
                          valid_list=valid_list)
    if name == "musdb":
        return Layout("musdb", stems or MUSDB_STEMS)
    if name == "stems":
        if not stems:
            raise LayoutError("layout 'stems' needs the stem names, e.g. stems=('vocals', 'accompaniment')")
        return Layout("stems", stems, test_list or "test_list.txt", valid_list or VALID_LIST)
    if name == "2mix":
        return Layout("2mix", stems or TWOMIX_STEMS, split_names=dict(TWOMIX_SPLITS))
    raise LayoutError(f"unknown layout {name!r}; choose from {', '.join(LAYOUT_NAMES)}")
