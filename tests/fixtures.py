"""Small datasets in every supported layout, written on the fly into tmp_path."""

from pathlib import Path

import numpy as np
import soundfile as sf


def tone(seconds: float, sample_rate: int, freq: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    """(T, C) harmonic tone plus a little noise, so every stem is distinct and non-silent."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = 0.2 * np.sin(2 * np.pi * freq * t) + 0.05 * np.sin(2 * np.pi * 2 * freq * t)
    wave = wave + 0.01 * rng.standard_normal(t.size)
    return np.stack([wave * (1 - 0.2 * c) for c in range(channels)], axis=1).astype(np.float32)


def write_track(folder: Path, stems: dict[str, np.ndarray], sample_rate: int, mixture: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, audio in stems.items():
        sf.write(folder / f"{name}.wav", audio, sample_rate, subtype="FLOAT")
    if mixture and stems:
        sf.write(folder / "mixture.wav", sum(stems.values()), sample_rate, subtype="FLOAT")


def make_jacappella(root: Path, sample_rate: int = 48000, seconds: float = 1.5) -> Path:
    parts = {"lead_vocal": 440, "soprano": 523, "alto": 392, "tenor": 262, "bass": 131}
    songs = {
        "pop/song_a": list(parts),
        "pop/song_b": ["lead_vocal", "soprano", "tenor", "bass"],  # no alto
        "jazz/song_c": list(parts),
        "jazz/song_d": [*parts, "finger_snap"],
    }
    for i, (song, names) in enumerate(songs.items()):
        stems = {n: tone(seconds, sample_rate, parts.get(n, 1000), seed=i * 10 + j) for j, n in enumerate(names)}
        write_track(root / song, stems, sample_rate)
    (root / "test_song_list_for_vocal_ensemble_separation.txt").write_text("song_c\n")
    return root


def make_musdb(root: Path, sample_rate: int = 44100, seconds: float = 1.0) -> Path:
    names = {"vocals": 440, "drums": 100, "bass": 55, "other": 660}
    tracks = {"train/Track One": 0, "train/Leaf - Summerghost": 1, "test/Track Three": 2}
    for track, seed in tracks.items():
        stems = {n: tone(seconds, sample_rate, f, channels=2, seed=seed * 5 + j)
                 for j, (n, f) in enumerate(names.items())}
        write_track(root / track, stems, sample_rate)
    return root


def make_stems(root: Path, sample_rate: int = 22050) -> Path:
    for i, name in enumerate(["t1", "t2", "t3"]):
        stems = {"vocals": tone(1.0, sample_rate, 300 + 50 * i), "accompaniment": tone(1.0, sample_rate, 80)}
        write_track(root / name, stems, sample_rate, mixture=False)
    (root / "test_list.txt").write_text("t3\n")
    return root


def make_2mix(root: Path, sample_rate: int = 8000) -> Path:
    for folder in ("tr", "cv", "tt"):
        for u in range(2):
            s1, s2 = tone(0.8, sample_rate, 200 + u * 30, seed=u), tone(0.8, sample_rate, 320, seed=u + 5)
            for name, audio in (("s1", s1), ("s2", s2), ("mix", s1 + s2)):
                (root / folder / name).mkdir(parents=True, exist_ok=True)
                sf.write(root / folder / name / f"utt{u}.wav", audio, sample_rate)
    return root
