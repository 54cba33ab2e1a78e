"""`sepjax export --format stablehlo`: the serialized model runs in a process that never imports sepjax.models,
and gives the model's outputs."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from sepjax.cli import main
from sepjax.inference.bundle import save_bundle
from sepjax.models import build_model, get_config

LOADER = """
import json, sys
import numpy as np
from sepjax.exported import load_exported
separator = load_exported(sys.argv[1])
chunks = np.load(sys.argv[2])
np.save(sys.argv[3], separator(chunks))
assert not any(name.startswith(("sepjax.models", "sepjax.nn", "equinox")) for name in sys.modules), "model code"
print(json.dumps({"stems": separator.stem_names, "chunk": separator.chunk}))
"""


@pytest.mark.parametrize("name", ["dual-path-sepreformer-tiny", "sepreformer-tiny"])
def test_the_exported_model_runs_without_the_model_code(tmp_path, name, capsys):
    model = build_model(get_config(name), key=jax.random.PRNGKey(0))
    stems = [f"s{i}" for i in range(model.config.num_stems)]
    save_bundle(tmp_path / "bundle", model, stems, 8000, chunk_seconds=0.25)
    assert main(["export", str(tmp_path / "bundle"), "--format", "stablehlo", "--out", str(tmp_path / "out")]) == 0
    assert main(["export", str(tmp_path / "bundle"), "--out", str(tmp_path / "out")]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    chunks = np.random.default_rng(0).standard_normal((3, 1, 2000)).astype(np.float32)
    np.save(tmp_path / "chunks.npy", chunks)
    run = subprocess.run([sys.executable, "-c", LOADER, str(tmp_path / "out"), str(tmp_path / "chunks.npy"),
                          str(tmp_path / "out.npy")], capture_output=True, text=True, check=True)
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"stems": stems, "chunk": 2000}
    expected = np.asarray(jax.vmap(model)(chunks))
    # The same XLA program compiled twice: float32 rounding at most, relative to the output's scale.
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5 * np.max(np.abs(expected)))
