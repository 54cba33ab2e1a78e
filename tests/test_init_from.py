"""Fine-tuning: `--train.init-from` loads trained weights (all, or the compatible ones), `--train.freeze` holds
parameters by path pattern."""

import jax
import numpy as np
import pytest
from train_helpers import tiny_experiment

from sepjax.inference.bundle import BundleError, save_bundle
from sepjax.models import build_model, get_config
from sepjax.train.config import ConfigError
from sepjax.train.init_from import array_paths, frozen_mask, initialise_from
from sepjax.train.loop import replace, train

TINY = get_config("dual-path-sepreformer-tiny", num_stems=4)
STEMS = ["soprano", "alto", "tenor", "bass"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("init") / "bundle"
    return save_bundle(path, build_model(TINY, key=jax.random.PRNGKey(7)), STEMS, 8000)


def test_every_array_comes_from_the_bundle(source):
    fresh = build_model(TINY, key=jax.random.PRNGKey(0))
    model, report = initialise_from(fresh, str(source))
    trained = build_model(TINY, key=jax.random.PRNGKey(7))
    for path, leaf in array_paths(model).items():
        np.testing.assert_array_equal(leaf, array_paths(trained)[path], err_msg=path)
    assert len(report.loaded) == len(array_paths(fresh)) and not (report.missing or report.mismatched)


def test_another_stem_count_is_refused_by_name_or_loaded_in_part(source):
    three = build_model(TINY.replace(num_stems=3), key=jax.random.PRNGKey(0))
    with pytest.raises(ConfigError, match=r"\.split\.expand\.weight \(128, 32\) → \(96, 32\)"):
        initialise_from(three, str(source))
    model, report = initialise_from(three, str(source), partial=True)
    assert {m.split()[0] for m in report.mismatched} == {".split.expand.weight", ".split.expand.bias"}
    np.testing.assert_array_equal(model.split.expand.weight, three.split.expand.weight)  # kept as initialised
    np.testing.assert_array_equal(model.encoder.conv.weight,
                                  build_model(TINY, key=jax.random.PRNGKey(7)).encoder.conv.weight)


def test_a_freeze_pattern_that_matches_nothing_or_does_not_parse_is_an_error():
    model = build_model(TINY, key=jax.random.PRNGKey(0))
    with pytest.raises(ConfigError, match="no parameter path matches"):
        frozen_mask(model, (r"^\.decoderz",))
    with pytest.raises(ConfigError, match=r"'\(encoder': not a regular expression"):
        frozen_mask(model, ("(encoder",))


def test_an_unknown_source_is_an_error_before_the_run_folder_exists(tmp_path):
    config = replace(tiny_experiment(tmp_path), train={"init_from": str(tmp_path / "nowhere")})
    with pytest.raises(BundleError, match="nowhere: no such bundle folder"):
        train(config)
    assert not (tmp_path / "run").exists()


def test_fine_tuning_moves_only_the_parameters_not_frozen(tmp_path, source):
    config = tiny_experiment(tmp_path, steps=2, checkpoint_every=2, valid_every=2)
    config = replace(config, train={"init_from": str(source), "freeze": (r"^\.encoder\.", r"\.sep_blocks\.intra\.")})
    result = train(config)
    before = array_paths(build_model(TINY, key=jax.random.PRNGKey(7)))
    after = array_paths(result.state.model)
    assert before.keys() == after.keys()
    moved = {path: not np.array_equal(after[path], before[path]) for path in before}
    frozen = {p for p in before if p.startswith(".encoder.") or ".sep_blocks.intra." in p}
    assert frozen and not any(moved[p] for p in frozen)
    assert all(moved[p] for p in before if p not in frozen)
