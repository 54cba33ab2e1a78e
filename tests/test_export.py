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
print(json.dumps({"stems": separator.stem_names, "chunk": separator.chunk, "input_std": separator.input_std}))
"""


@pytest.mark.parametrize("name", ["dual-path-sepreformer-tiny", "sepreformer-tiny"])
def test_the_exported_model_runs_without_the_model_code(tmp_path, name, capsys):
    model = build_model(get_config(name), key=jax.random.PRNGKey(0))
    stems = [f"s{i}" for i in range(model.config.num_stems)]
    save_bundle(tmp_path / "bundle", model, stems, 8000, chunk_seconds=0.25, input_std=0.3)
    assert main(["export", str(tmp_path / "bundle"), "--format", "stablehlo", "--out", str(tmp_path / "out")]) == 0
    assert main(["export", str(tmp_path / "bundle"), "--out", str(tmp_path / "out")]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    chunks = np.random.default_rng(0).standard_normal((3, 1, 2000)).astype(np.float32)
    np.save(tmp_path / "chunks.npy", chunks)
    run = subprocess.run([sys.executable, "-c", LOADER, str(tmp_path / "out"), str(tmp_path / "chunks.npy"),
                          str(tmp_path / "out.npy")], capture_output=True, text=True, check=True)
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"stems": stems, "chunk": 2000, "input_std": 0.3}
    expected = np.asarray(jax.vmap(model)(chunks))
    # The same XLA program compiled twice: float32 rounding at most, relative to the output's scale.
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5 * np.max(np.abs(expected)))


@pytest.mark.parametrize("name", ["dual-path-sepreformer-tiny", "sepreformer-tiny"])
def test_the_onnx_export_matches_jax_in_onnxruntime(tmp_path, name, capsys):
    import onnxruntime

    from sepjax.inference.export import ONNX_TOLERANCE

    model = build_model(get_config(name), key=jax.random.PRNGKey(1))
    stems = [f"s{i}" for i in range(model.config.num_stems)]
    save_bundle(tmp_path / "bundle", model, stems, 8000, chunk_seconds=0.25, input_std=0.3)
    assert main(["export", str(tmp_path / "bundle"), "--format", "onnx", "--batch-size", "2",
                 "--out", str(tmp_path / "out")]) == 0
    assert "onnxruntime matches JAX to" in capsys.readouterr().out
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["chunk"] == 2000 and meta["batch_size"] == 2 and meta["stem_names"] == stems
    assert meta["input_std"] == 0.3  # what a deployment scales its z-scored input to
    # An independent check on other chunks, at the bundle's chunk length, in a session of our own.
    session = onnxruntime.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    chunks = np.random.default_rng(7).standard_normal((2, 1, 2000)).astype(np.float32)
    got = session.run(None, {"chunks": chunks})[0]
    expected = np.asarray(jax.vmap(model)(chunks))
    assert got.shape == expected.shape == (2, len(stems), 1, 2000)
    np.testing.assert_allclose(got, expected, atol=ONNX_TOLERANCE * np.max(np.abs(expected)))
    assert main(["export", str(tmp_path / "bundle"), "--format", "onnx", "--out", str(tmp_path / "out")]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "bundle"), "--batch-size", "2", "--out", str(tmp_path / "hlo")]) == 2
    assert "--batch-size applies to --format onnx" in capsys.readouterr().err


def test_an_onnx_graph_that_disagrees_with_jax_is_not_written(tmp_path, monkeypatch):
    import onnxruntime

    from sepjax.inference.export import ExportMismatch, export_onnx

    model = build_model(get_config("dual-path-sepreformer-tiny", num_stems=2), key=jax.random.PRNGKey(1))
    save_bundle(tmp_path / "bundle", model, ["a", "b"], 8000, chunk_seconds=0.25)
    real = onnxruntime.InferenceSession

    class Off:  # a runtime whose outputs are off by 1e-3 of their scale
        def __init__(self, *args, **kwargs):
            self.session = real(*args, **kwargs)

        def run(self, names, feeds):
            out = self.session.run(names, feeds)[0]
            return [out + 1e-3 * np.max(np.abs(out))]

    monkeypatch.setattr(onnxruntime, "InferenceSession", Off)
    with pytest.raises(ExportMismatch, match="nothing was written"):
        export_onnx(tmp_path / "bundle", tmp_path / "out")
    assert not (tmp_path / "out").exists()
