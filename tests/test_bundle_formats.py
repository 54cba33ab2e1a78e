"""Bundles written by earlier formats load, or fail with an error naming the format version.

tests/data/bundles/format1-* were written by sepjax's format-1 code (its `save_bundle`, before bundles recorded
`format_version`), with the output of each model on a fixed input next to them.
"""

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sepjax.inference.bundle import FORMAT_VERSION, BundleError, load_bundle, save_bundle

DATA = Path(__file__).parent / "data" / "bundles"
MIXTURE = jnp.sin(jnp.arange(1000, dtype=jnp.float32) / 7.0)[None] * 0.3


@pytest.mark.parametrize("name", ["format1-dual-path-tiny", "format1-sepreformer-tiny"])
def test_a_format_1_bundle_loads_and_separates_as_it_did(name):
    assert "format_version" not in json.loads((DATA / name / "bundle.json").read_text())
    bundle = load_bundle(DATA / name)
    assert bundle.config.attention_impl == "xla" and bundle.sample_rate == 8000
    expected = np.load(DATA / f"{name}-expected.npy")
    # The format-1 model ran other kernels on the CPU (head-major attention, a polynomial sine): the same function
    # to float32 rounding, relative to the output's scale.
    np.testing.assert_allclose(np.asarray(bundle.model(MIXTURE)), expected, rtol=1e-4,
                               atol=1e-4 * float(np.max(np.abs(expected))))


def test_a_saved_bundle_records_the_current_format(tmp_path):
    bundle = load_bundle(DATA / "format1-dual-path-tiny")
    path = save_bundle(tmp_path / "b", bundle.model, bundle.stem_names, bundle.sample_rate)
    assert json.loads((path / "bundle.json").read_text())["format_version"] == FORMAT_VERSION
    np.testing.assert_array_equal(np.asarray(load_bundle(path).model(MIXTURE)), np.asarray(bundle.model(MIXTURE)))


def test_a_newer_format_is_refused_by_its_version(tmp_path):
    shutil.copytree(DATA / "format1-dual-path-tiny", tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=f"bundle format {FORMAT_VERSION + 1} is newer .*format {FORMAT_VERSION}"):
        load_bundle(tmp_path / "b")


def test_weights_that_do_not_fit_name_the_format_version(tmp_path):
    shutil.copytree(DATA / "format1-dual-path-tiny", tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    meta["config"]["ff_dim"] = 48
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=f"weights do not match .*bundle format 1, this sepjax reads format "
                                          f"{FORMAT_VERSION}"):
        load_bundle(tmp_path / "b")


def test_a_format_2_paper_model_with_equinox_batch_norm_statistics_evaluates_as_it_did():
    # Written by the format-2 code after three training forwards: its BatchNorm counters are 3, so inference
    # divided the stored statistics by 1 − 0.9³. The PyTorch-semantics BatchNorm gets them divided once on load.
    name = "format2-sepreformer-tiny-trained"
    assert json.loads((DATA / name / "bundle.json").read_text())["format_version"] == 2
    bundle = load_bundle(DATA / name)
    counts = [int(x) for x in jax.tree.leaves(bundle.model.stats) if x.dtype == jnp.int32]
    assert counts and set(counts) == {3}
    expected = np.load(DATA / f"{name}-expected.npy")
    np.testing.assert_allclose(np.asarray(bundle.model(MIXTURE)), expected, rtol=1e-5,
                               atol=1e-5 * float(np.max(np.abs(expected))))
