"""Bundles shipped inside the package, by registered name: `sepjax separate chorales-satb song.wav --out DIR`.

Each lives in `sepjax/pretrained/<name>/` as a bundle (bundle.json, weights.eqx) with its MODEL_CARD.md and
the `sepjax evaluate` summary of its test split (summary.json).
"""

import json
from pathlib import Path

from sepjax.inference.bundle import META_FILE, BundleError

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
SUMMARY_FILE = "summary.json"


def shipped_bundles() -> dict[str, Path]:
    """Registered name → bundle folder, for every bundle shipped with sepjax."""
    if not PRETRAINED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(PRETRAINED_DIR.iterdir()) if (p / META_FILE).is_file()}


def resolve_bundle(name_or_path: str | Path) -> Path:
    """A bundle folder: the path itself when it exists, else the shipped bundle of that name."""
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = shipped_bundles()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    names = ", ".join(shipped) or "none"
    raise BundleError(f"{name_or_path}: no such bundle folder, and no shipped model of that name (shipped: {names})")


def shipped_summary(bundle: Path) -> dict | None:
    """The test-split evaluation shipped with a bundle, if any."""
    path = bundle / SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else None
