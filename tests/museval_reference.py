"""museval's BSS Eval v4, imported without the `museval` package's own `__init__`.

`import museval` imports musdb, whose stempeg dependency raises at import time when no ffmpeg binary is on
PATH. The metrics live in `museval/metrics.py`, which needs only NumPy and SciPy, so it is loaded from the
installed package's folder on its own.
"""

import importlib.util
from pathlib import Path

import numpy as np


def _load_metrics():
    spec = importlib.util.find_spec("museval")  # locates the package without executing its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("museval is not installed: pip install -e '.[dev]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "metrics.py"
    module_spec = importlib.util.spec_from_file_location("museval_metrics", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


metrics = _load_metrics()


def framewise_sdr(references: np.ndarray, estimates: np.ndarray, window: int, hop: int) -> np.ndarray:
    """(sources, frames) SDR of (sources, samples, channels) arrays, as `museval.evaluate(..., mode="v4")`."""
    sdr, _isr, _sir, _sar, _perm = metrics.bss_eval(references, estimates, compute_permutation=False, window=window,
                                                    hop=hop, framewise_filters=False, bsseval_sources_version=False)
    return sdr
