"""A printable summary of a track index: tracks and hours per split, stems present/missing, rates."""

from collections import Counter

from sepjax.data.index import TrackIndex


def summarise(index: TrackIndex) -> str:
    lines = [f"{index.root}  (layout {index.layout}, {len(index.tracks)} tracks)", ""]
    lines.append(f"{'split':<8}{'tracks':>8}{'hours':>9}  sample rates")
    for split in index.splits():
        tracks = index.split(split)
        hours = sum(t.seconds for t in tracks) / 3600
        rates = ", ".join(f"{r} Hz×{n}" for r, n in sorted(Counter(t.sample_rate for t in tracks).items()))
        lines.append(f"{split:<8}{len(tracks):>8}{hours:>9.2f}  {rates}")
    lines += ["", f"{'stem':<20}{'present':>8}{'missing':>8}"]
    present = Counter(s for t in index.tracks for s in t.stems)
    for stem in index.stems:
        lines.append(f"{stem:<20}{present[stem]:>8}{len(index.tracks) - present[stem]:>8}")
    extra = sorted(set(present) - set(index.stems))
    if extra:
        lines.append("extra stems (not trained on): " + ", ".join(f"{s}×{present[s]}" for s in extra))
    if index.skipped:
        lines += ["", f"skipped {len(index.skipped)} track(s):", *(f"  {s}" for s in index.skipped)]
    return "\n".join(lines)
