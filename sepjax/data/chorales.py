"""The embedded corpus: Bach's four-part chorales from music21, rendered to SATB stems offline.

`build_chorales(OUT)` writes the JaCappella layout, so the same loader reads it:

    OUT/bach/<bwv id>/{soprano,alto,tenor,bass,mixture}.wav
    OUT/test_song_list_for_vocal_ensemble_separation.txt, OUT/valid_song_list.txt

The split is fixed by chorale id (a hash, independent of --limit and --seed). Scores lose their
own tempo marks before we set ours; chorales whose repeats music21 cannot expand, or that are
not four SATB parts, are skipped with the reason.
"""

import hashlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sepjax.audio import fit, read, write
from sepjax.data.layouts import CHORALE_STEMS, JACAPPELLA_TEST_LIST, VALID_LIST
from sepjax.data.voice_synth import part_timbre, render_notes
from sepjax.errors import InputError, SetupError
from sepjax.files import staged_directory, write_text_atomic

PARTS = CHORALE_STEMS
SUBSET = "bach"
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/soundfonts/FluidR3_GM.sf2",
              "/usr/share/sounds/sf2/default-GM.sf2", "/usr/share/soundfonts/default.sf2")
GM_PROGRAMS = {"soprano": 52, "alto": 53, "tenor": 52, "bass": 53}  # Choir Aahs / Voice Oohs


class SkipChorale(Exception):
    """This chorale cannot be rendered as four SATB stems; the message says why."""


@dataclass
class ChoraleReport:
    written: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    audio_seconds: float = 0.0
    elapsed: float = 0.0

    @property
    def realtime_factor(self) -> float:
        return self.audio_seconds / self.elapsed if self.elapsed else 0.0


def chorale_ids() -> list[str]:
    """Every chorale music21 ships, as 'bwv…' ids, sorted."""
    from music21 import corpus

    names = corpus.chorales.Iterator(returnType="filename")
    return sorted({Path(str(n)).name for n in names})


def split_of(chorale_id: str) -> str:
    """A fixed split from the id alone: about 80% train, 10% valid, 10% test."""
    bucket = int(hashlib.sha1(chorale_id.encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


def score_notes(chorale_id: str, bpm: float) -> dict[str, list[tuple[float, float, float]]]:
    """(onset s, duration s, MIDI pitch) per SATB part, after stripping tempo marks and expanding repeats."""
    from music21 import corpus, repeat, tempo

    score = corpus.parse(f"bach/{chorale_id}")
    for mark in list(score.recurse().getElementsByClass(tempo.MetronomeMark)):
        mark.activeSite.remove(mark)
    parts = _satb_parts(score)
    try:
        expanded = [p.expandRepeats() for p in parts]
    except (repeat.ExpanderException, Exception) as err:
        raise SkipChorale(f"malformed repeats ({type(err).__name__}: {err})") from err
    seconds_per_quarter = 60.0 / bpm
    notes = {}
    for name, part in zip(PARTS, expanded, strict=True):
        events = []
        for n in part.stripTies().flatten().notes:
            pitch = n.pitches[0] if n.pitches else None
            if pitch is None or n.quarterLength <= 0:
                continue
            events.append((float(n.offset) * seconds_per_quarter, float(n.quarterLength) * seconds_per_quarter,
                           float(pitch.ps)))
        if not events:
            raise SkipChorale(f"part {name} has no notes")
        notes[name] = events
    return notes


def _satb_parts(score):
    parts = list(score.parts)
    by_name = {}
    for p in parts:
        label = f"{p.id} {p.partName or ''}".lower()
        for name in PARTS:
            if name in label and name not in by_name:
                by_name[name] = p
    if len(by_name) == 4:
        return [by_name[n] for n in PARTS]
    if len(parts) == 4:
        return parts
    raise SkipChorale(f"not four SATB parts ({len(parts)} parts)")


def chorale_rng(chorale_id: str, seed: int, stream: int) -> np.random.Generator:
    """Independent random streams per (seed, chorale): 0 for the tempo, 1 for the voices."""
    return np.random.default_rng([seed, int(hashlib.sha1(chorale_id.encode()).hexdigest()[:8], 16), stream])


def chorale_tempo(chorale_id: str, seed: int) -> float:
    """The tempo (quarter notes per minute) this chorale is sung at for `seed`."""
    return float(chorale_rng(chorale_id, seed, 0).uniform(60, 92))


def render_chorale(chorale_id: str, sample_rate: int, seed: int, renderer: str = "numpy",
                   programs: tuple[int, ...] | None = None) -> np.ndarray:
    """(4, T) SATB stems for one chorale; tempo and voices are drawn from (seed, chorale id). `programs`: the
    General MIDI program (0-127) of each part for the fluidsynth renderer, GM_PROGRAMS's when None."""
    bpm = chorale_tempo(chorale_id, seed)
    rng = chorale_rng(chorale_id, seed, 1)
    notes = score_notes(chorale_id, bpm)
    tail = 0.5
    length = int((max(o + d for evs in notes.values() for o, d, _ in evs) + tail) * sample_rate)
    if renderer == "fluidsynth":
        return _render_fluidsynth(notes, bpm, length, sample_rate,
                                  programs or tuple(GM_PROGRAMS[p] for p in PARTS))
    stems = [render_notes(notes[p], length, sample_rate, part_timbre(p, rng), rng) for p in PARTS]
    return np.stack(stems)


def find_soundfont() -> str | None:
    import os

    candidates = [os.environ.get("SEPJAX_SOUNDFONT", ""), *SOUNDFONTS]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def fluidsynth_available() -> bool:
    return shutil.which("fluidsynth") is not None and find_soundfont() is not None


def _render_fluidsynth(notes, bpm, length, sample_rate, programs: tuple[int, ...]) -> np.ndarray:
    from music21 import instrument, meter, note, stream, tempo

    soundfont = find_soundfont()
    stems = []
    with tempfile.TemporaryDirectory() as tmp:
        for part, program in zip(PARTS, programs, strict=True):
            s = stream.Stream([tempo.MetronomeMark(number=bpm), meter.TimeSignature("4/4")])
            inst = instrument.Instrument()
            inst.midiProgram = program
            s.insert(0, inst)
            for onset, duration, midi in notes[part]:
                n = note.Note(midi=int(round(midi)), quarterLength=duration * bpm / 60)
                s.insert(onset * bpm / 60, n)
            mid, wav = Path(tmp) / f"{part}.mid", Path(tmp) / f"{part}.wav"
            s.write("midi", fp=str(mid))
            subprocess.run(["fluidsynth", "-ni", "-g", "0.5", "-r", str(sample_rate), "-F", str(wav),
                            soundfont, str(mid)], check=True, capture_output=True)
            audio, _ = read(wav, sample_rate=sample_rate, channels=1)
            stems.append(fit(audio[0], length))
    return np.stack(stems)


def _render_to_folder(args) -> tuple[str, str, float, str | None]:
    chorale_id, folder, sample_rate, seed, renderer, programs = args
    try:
        stems = render_chorale(chorale_id, sample_rate, seed, renderer, programs)
    except SkipChorale as err:
        return chorale_id, "skipped", 0.0, str(err)
    mixture = stems.sum(axis=0)
    peak = float(np.max(np.abs(mixture)))
    gain = 0.9 / peak if peak > 0 else 1.0
    with staged_directory(folder, overwrite=True) as staging:  # the song appears whole or not at all
        for name, stem in zip(PARTS, stems, strict=True):
            write(staging / f"{name}.wav", stem * gain, sample_rate, bits="float")
        write(staging / "mixture.wav", (stems * gain).sum(axis=0), sample_rate, bits="float")
    return chorale_id, "written", stems.shape[-1] / sample_rate, None


def build_chorales(out: str | Path, *, sample_rate: int = 16000, limit: int | None = None, seed: int = 0,
                   workers: int = 2, renderer: str = "numpy", split: str | None = None,
                   programs: tuple[int, ...] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> ChoraleReport:
    """Render chorales into `out` in the JaCappella layout; songs already there are kept, not redone.
    `split` ('train', 'valid' or 'test') renders only that split's chorales, then `limit` the first N of them.
    `programs` (fluidsynth only): the General MIDI program of soprano, alto, tenor and bass."""
    if renderer not in ("numpy", "fluidsynth"):
        raise InputError(f"unknown renderer {renderer!r}; choose 'numpy' or 'fluidsynth'")
    if split not in (None, "train", "valid", "test"):
        raise InputError(f"unknown split {split!r}; choose 'train', 'valid' or 'test'")
    if programs is not None:
        if renderer != "fluidsynth":
            raise InputError(f"programs {list(programs)} choose General MIDI patches: they need --renderer fluidsynth")
        if len(programs) != len(PARTS) or not all(0 <= p <= 127 for p in programs):
            raise InputError(f"programs {list(programs)}: need {len(PARTS)} General MIDI programs (0-127), one "
                             f"each for {', '.join(PARTS)}")
        programs = tuple(int(p) for p in programs)
    if renderer == "fluidsynth" and not fluidsynth_available():
        raise SetupError("--renderer fluidsynth needs a `fluidsynth` binary and a General MIDI "
                           "soundfont (set SEPJAX_SOUNDFONT or install fluid-soundfont-gm)")
    out = Path(out)
    ids = [c for c in chorale_ids() if split is None or split_of(c) == split][: limit if limit else None]
    report = ChoraleReport()
    jobs = []
    for cid in ids:
        folder = out / SUBSET / cid
        if all((folder / f"{n}.wav").exists() for n in (*PARTS, "mixture")):
            report.present.append(cid)
        else:
            jobs.append((cid, str(folder), sample_rate, seed, renderer, programs))
    (out / SUBSET).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = pool.map(_render_to_folder, jobs, chunksize=1)
            _collect(results, report, len(jobs), progress)
    else:
        _collect(map(_render_to_folder, jobs), report, len(jobs), progress)
    report.elapsed = time.perf_counter() - start
    kept = sorted(report.written + report.present)
    _write_list(out / JACAPPELLA_TEST_LIST, [c for c in kept if split_of(c) == "test"])
    _write_list(out / VALID_LIST, [c for c in kept if split_of(c) == "valid"])
    return report


def _collect(results, report: ChoraleReport, total: int, progress) -> None:
    for done, (cid, status, seconds, reason) in enumerate(results, start=1):
        if status == "written":
            report.written.append(cid)
            report.audio_seconds += seconds
        else:
            report.skipped[cid] = reason
        if progress is not None:
            progress(done, total)


def _write_list(path: Path, names: list[str]) -> None:
    write_text_atomic(path, "".join(f"{n}\n" for n in names))
