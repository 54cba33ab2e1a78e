"""Official SepReformer checkpoints: parity with the PyTorch code's own outputs, the converter both ways, the
torch-free .pth reader, and an official file evaluated end to end.

tests/data/official/official_sepreformer_tiny.{npz,json} come from the official code (dmlguq456/SepReformer) at
sepjax's `sepreformer-tiny` configuration with randomised weights and BatchNorm statistics (its README says how);
sepreformer_tiny_epoch.pth is those weights in an official training checkpoint written by torch.save, and
layouts.pth a few tensors torch stores unusually (transposed, a view, bfloat16, int64).
"""

import io
import json
import pickle
import zipfile
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from fixtures import make_2mix

from sepjax.cli import main
from sepjax.inference.bundle import load_bundle
from sepjax.models import get_config
from sepjax.models.sepreformer.official import (
    ConversionError,
    config_from_official_yaml,
    from_official,
    official_config,
    to_official,
)
from sepjax.state_dicts import StateDictError, read_state_dict, write_state_dict
from sepjax.train.step import training_forward

DATA = Path(__file__).parent / "data" / "official"
REFERENCE = np.load(DATA / "official_sepreformer_tiny.npz")
STATE_DICT = {k.removeprefix("state_dict/"): REFERENCE[k] for k in REFERENCE.files if k.startswith("state_dict/")}
# The official model returns (frames − 1)·S + K samples (3000 of the 3001 in); sepjax pads to the input length.
COMMON = json.loads((DATA / "official_sepreformer_tiny.json").read_text())["output_length_rule"]["T_out"]
# Float32 forward passes through ~40 blocks agree to ~3e-7 relative (the reference's own record); 1e-5 leaves
# 30x room for another CPU's summation order and fused multiply-adds.
RTOL = 1e-5


def relative(ours, official) -> float:
    return float(np.max(np.abs(np.asarray(ours) - official)) / np.max(np.abs(official)))


@pytest.fixture(scope="module")
def converted():
    return from_official(STATE_DICT, official_config(STATE_DICT, dropout=0.0))


@pytest.fixture(scope="module")
def mixture():
    return jnp.asarray(REFERENCE["mixture"])[:, None, :]  # (2, 1, 3001): an odd length


def test_the_config_is_inferred_from_the_shapes():
    config = official_config(STATE_DICT)
    registered = get_config("sepreformer-tiny")
    assert config == registered.replace(dropout=config.dropout, layer_scale_init=config.layer_scale_init)


def test_eval_outputs_match_the_official_code(converted, mixture):
    estimates = jax.vmap(converted)(mixture)
    assert estimates.shape == (2, 2, 1, 3001)
    assert relative(estimates[:, :, 0, :COMMON], REFERENCE["eval/main"]) < RTOL


def test_train_mode_outputs_aux_heads_and_batch_norm_statistics_match(converted, mixture):
    estimates, aux, stats = eqx.filter_jit(training_forward)(converted, mixture, None)
    assert relative(estimates[:, :, 0, :COMMON], REFERENCE["train/main"]) < RTOL
    assert relative(aux[:, :, :, 0, :COMMON], REFERENCE["train/aux"]) < RTOL
    updated = to_official(converted.with_stats(stats))
    stat_names = [k for k in REFERENCE.files if k.startswith("train_stats/")]
    assert len(stat_names) == 28  # running mean and (unbiased) variance of all 14 BatchNorms
    for name in stat_names:
        assert relative(updated[name.removeprefix("train_stats/")], REFERENCE[name]) < RTOL, name
    after = jax.vmap(converted.with_stats(stats))(mixture)  # eval on the updated statistics, as they are
    assert relative(after[:, :, 0, :COMMON], REFERENCE["eval_after_train/main"]) < RTOL


def test_export_gives_back_every_official_tensor_exactly(converted):
    exported = to_official(converted)
    counters = {k for k in exported if k.endswith(".num_batches_tracked")}
    assert set(exported) - counters == set(STATE_DICT)
    for name, value in STATE_DICT.items():
        np.testing.assert_array_equal(exported[name], value, err_msg=name)


def test_leftover_missing_and_misshapen_tensors_are_named():
    config = official_config(STATE_DICT)
    extra = {**STATE_DICT, "separator.extra_block.weight": np.zeros(3, np.float32)}
    with pytest.raises(ConversionError, match=r"not used: separator\.extra_block\.weight"):
        from_official(extra, config)
    name = "separator.dec_stages.1.spk_attn_2.self_attn.linear_k.bias"
    missing = {k: v for k, v in STATE_DICT.items() if k != name}
    with pytest.raises(ConversionError, match=rf"missing official tensor: {name}"):
        from_official(missing, config)
    name = "separator.enc_stages.0.l_block_1.block.cla.dw_conv_1d.weight"
    misshapen = {**STATE_DICT, name: np.zeros((16, 1, 17), np.float32)}
    with pytest.raises(ConversionError, match=rf"shape mismatch: {name} \(16, 1, 17\)"):
        from_official(misshapen, config)
    with pytest.raises(ConversionError, match="norm='group'"):
        from_official(STATE_DICT, config.replace(norm="group"))


def test_the_pth_reader_matches_what_torch_saved():
    checkpoint = read_state_dict(DATA / "sepreformer_tiny_epoch.pth")  # {'model_state_dict': …, 'optimizer…'}
    assert set(checkpoint) - set(STATE_DICT) == {k for k in checkpoint if k.endswith("num_batches_tracked")}
    for name, value in STATE_DICT.items():
        np.testing.assert_array_equal(checkpoint[name], value, err_msg=name)
    unusual = read_state_dict(DATA / "layouts.pth")
    np.testing.assert_array_equal(unusual["t"], np.arange(12, dtype=np.float32).reshape(3, 4).T)
    np.testing.assert_array_equal(unusual["view"], np.array([2.0, 3.0, 4.0], np.float32))
    np.testing.assert_array_equal(unusual["h"], np.array([1.5, -2.0], np.float32))  # bfloat16, widened exactly
    assert unusual["i"].dtype == np.int64 and list(unusual["i"]) == [3, 4]


def test_the_pth_reader_runs_no_code_from_the_file(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must not run",))

    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps({"weight": Payload()}, protocol=2))
    with pytest.raises(StateDictError, match=r"evil\.pth: .*refusing to load (__builtin__|builtins)\.print"):
        read_state_dict(path)
    (tmp_path / "old.pth").write_bytes(pickle.dumps({"weight": 1}))
    with pytest.raises(StateDictError, match="not a zip-format torch checkpoint"):
        read_state_dict(tmp_path / "old.pth")
    (tmp_path / "w.h5").write_bytes(b"")
    with pytest.raises(StateDictError, match=r"unknown weights format '\.h5'"):
        read_state_dict(tmp_path / "w.h5")


def test_convert_both_ways_round_trips_through_safetensors_and_npz(tmp_path, capsys):
    bundle = tmp_path / "tiny"
    assert main(["convert", "sepreformer-official", str(DATA / "sepreformer_tiny_epoch.pth"),
                 "--out", str(bundle)]) == 0
    assert "F=16, 2 stages, 2 heads, 2 speakers, 8000 Hz" in capsys.readouterr().out
    loaded = load_bundle(bundle)
    assert loaded.stem_names == ("spk1", "spk2") and loaded.sample_rate == 8000 and loaded.input_std == 1.0
    leveled = tmp_path / "tiny-leveled"
    assert main(["convert", "sepreformer-official", str(DATA / "sepreformer_tiny_epoch.pth"), "--input-std", "0.05",
                 "--out", str(leveled)]) == 0
    assert load_bundle(leveled).input_std == 0.05
    assert main(["convert", "sepreformer-official", str(DATA / "sepreformer_tiny_epoch.pth"), "--input-std", "0",
                 "--out", str(tmp_path / "zero")]) == 2
    assert "input_std must be positive and finite, got 0.0" in capsys.readouterr().err
    assert not (tmp_path / "zero").exists()
    for suffix in (".safetensors", ".npz"):
        exported = tmp_path / f"tiny-{suffix[1:]}{suffix}"  # each with its own .yaml
        assert main(["convert", str(bundle), "--to", "sepreformer-official", "--out", str(exported)]) == 0
        tensors = read_state_dict(exported)
        for name, value in STATE_DICT.items():
            np.testing.assert_array_equal(tensors[name], value, err_msg=name)
        # Beside the tensors, the official config section that builds their network, the bundle's dropout included.
        written = yaml.safe_load(exported.with_suffix(".yaml").read_text())["model"]
        assert loaded.config.replace(**config_from_official_yaml(written)) == loaded.config
        assert main(["convert", "sepreformer-official", str(exported), "--config", str(exported.with_suffix(".yaml")),
                     "--out", str(tmp_path / f"back{suffix}")]) == 0
        again = load_bundle(tmp_path / f"back{suffix}")
        for a, b in zip(jax.tree.leaves(again.model), jax.tree.leaves(loaded.model), strict=True):
            np.testing.assert_array_equal(a, b)


def test_convert_refuses_to_overwrite_and_names_bad_arguments(tmp_path, capsys):
    bundle = tmp_path / "tiny"
    bundle.mkdir()
    (bundle / "keep.txt").write_text("mine")
    assert main(["convert", "sepreformer-official", str(DATA / "sepreformer_tiny_epoch.pth"),
                 "--out", str(bundle)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert [p.name for p in bundle.iterdir()] == ["keep.txt"]
    assert main(["convert", str(DATA / "sepreformer_tiny_epoch.pth"), "--out", str(tmp_path / "x")]) == 2
    assert "usage: sepjax convert sepreformer-official CHECKPOINT" in capsys.readouterr().err
    assert main(["convert", "sepreformer-official", str(DATA / "layouts.pth"), "--out", str(tmp_path / "y")]) == 2
    assert "has no tensor 'audio_encoder.conv1d.weight'" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_writing_pth_uses_torch_when_installed_and_says_how_to_get_it_otherwise(tmp_path):
    tensors = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "a.count": np.asarray(4, np.int64)}
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(StateDictError, match=r"writing \.pth needs torch \(pip install -e '\.\[torch\]'\)"):
            write_state_dict(tmp_path / "w.pth", tensors)
        assert not (tmp_path / "w.pth").exists()
        return
    write_state_dict(tmp_path / "w.pth", tensors)
    back = read_state_dict(tmp_path / "w.pth")
    np.testing.assert_array_equal(back["a.weight"], tensors["a.weight"])
    assert back["a.count"].shape == () and int(back["a.count"]) == 4


def test_write_state_dict_keeps_scalars_and_refuses_to_overwrite(tmp_path):
    path = write_state_dict(tmp_path / "w.safetensors", {"n": np.asarray(3, np.int64)})
    assert read_state_dict(path)["n"].shape == ()
    with pytest.raises(Exception, match="exists; pass --overwrite"):
        write_state_dict(path, {"n": np.asarray(4, np.int64)})
    assert int(read_state_dict(path)["n"]) == 3


def test_a_converted_official_checkpoint_evaluates_end_to_end(tmp_path, capsys):
    bundle = tmp_path / "tiny"
    assert main(["convert", "sepreformer-official", str(DATA / "sepreformer_tiny_epoch.pth"),
                 "--out", str(bundle)]) == 0
    root = make_2mix(tmp_path / "2mix")
    out = tmp_path / "evaluation"
    assert main(["evaluate", str(bundle), str(root), "--layout", "2mix", "--out", str(out), "--figures", "0",
                 "--chunk-seconds", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "| s1 | 2 |" in printed and "| s2 | 2 |" in printed  # spk1/spk2 scored against s1/s2 in the best order
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tracks"] == 2 and set(summary["per_stem"]) == {"s1", "s2"}
    assert all(np.isfinite(v["si_sdri"]["mean"]) for v in summary["per_stem"].values())


def test_pickled_checkpoints_in_memory_are_not_needed(tmp_path):
    # A bare state_dict in .npz (no `state_dict/` prefix) converts like the checkpoint.
    buffer = io.BytesIO()
    np.savez(buffer, **STATE_DICT)
    (tmp_path / "bare.npz").write_bytes(buffer.getvalue())
    model = from_official(read_state_dict(tmp_path / "bare.npz"), official_config(STATE_DICT))
    assert model.config.num_stems == 2


def test_init_from_takes_an_official_checkpoint_file(converted):
    from sepjax.models import build_model
    from sepjax.train.config import ConfigError
    from sepjax.train.init_from import array_paths, initialise_from

    fresh = build_model(get_config("sepreformer-tiny", dropout=0.0), key=jax.random.PRNGKey(1))
    model, report = initialise_from(fresh, str(DATA / "sepreformer_tiny_epoch.pth"))
    assert not (report.missing or report.mismatched or report.unused)
    theirs = array_paths(converted)
    for path, leaf in array_paths(model).items():
        np.testing.assert_array_equal(leaf, theirs[path], err_msg=path)
    with pytest.raises(ConfigError, match="no such checkpoint file"):
        initialise_from(fresh, str(DATA / "missing.pth"))


@pytest.mark.parametrize("name", ["sepreformer-t", "sepreformer-b"])
def test_the_papers_sizes_convert_with_their_configs_inferred(name):
    # The published T/B checkpoints have these shapes: a sepjax model exported to the official names converts back
    # to the same config (the stride from K/4, the heads from the relative-position table).
    from sepjax.models import build_model

    config = get_config(name)
    model = build_model(config, key=jax.random.PRNGKey(0))
    tensors = to_official(model)
    inferred = official_config(tensors)
    assert inferred == config.replace(dropout=inferred.dropout, layer_scale_init=inferred.layer_scale_init)
    back = from_official(tensors, inferred)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(model), strict=True))


OFFICIAL_YAML = """
wandb:
  init:
    config:
      model:
        num_stages: 2
        num_spks: 2
        module_audio_enc: {in_channels: 1, out_channels: 32, kernel_size: 16, stride: 8, groups: 1, bias: false}
        module_feature_projector: {num_channels: 32, in_channels: 32, out_channels: 16, kernel_size: 1}
        module_separator:
          num_stages: 2
          relative_positional_encoding: {in_channels: 16, num_heads: 2, maxlen: 64, embed_v: false}
          enc_stage:
            global_blocks: {in_channels: 16, num_mha_heads: 2, dropout_rate: 0.0}
            local_blocks: {in_channels: 16, kernel_size: 15, dropout_rate: 0.0}
            down_conv_layer: {in_channels: 16, samp_kernel_size: 5}
        module_audio_dec: {in_channels: 32, out_channels: 1, kernel_size: 16, stride: 8, bias: false}
"""


def test_the_official_configs_yaml_supplies_what_the_weights_do_not(tmp_path, capsys):
    from sepjax.inference.convert import read_official_yaml

    (tmp_path / "configs.yaml").write_text(OFFICIAL_YAML)
    fields = read_official_yaml(tmp_path / "configs.yaml")
    assert fields["encoder_stride"] == 8 and fields["dropout"] == 0.0
    assert main(["convert", "sepreformer-official", str(DATA / "sepreformer_tiny_epoch.pth"), "--config",
                 str(tmp_path / "configs.yaml"), "--out", str(tmp_path / "b")]) == 0
    assert load_bundle(tmp_path / "b").config.encoder_stride == 8
    (tmp_path / "other.yaml").write_text(OFFICIAL_YAML.replace("out_channels: 16", "out_channels: 24"))
    assert main(["convert", "sepreformer-official", str(DATA / "sepreformer_tiny_epoch.pth"), "--config",
                 str(tmp_path / "other.yaml"), "--out", str(tmp_path / "c")]) == 2
    assert "feature_projector.conv1d.weight (16, 32, 1) gives (16, 32), sepjax .project.weight needs (24, 32)" \
        in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("model: {num_stages: 2}\n")
    with pytest.raises(ConversionError, match="no `model:` section"):
        read_official_yaml(tmp_path / "bad.yaml")


def test_the_official_model_section_is_the_one_the_reference_was_built_from():
    from sepjax.models.sepreformer.official import official_model_section

    recorded = json.loads((DATA / "official_sepreformer_tiny.json").read_text())["official_config_model"]
    assert official_model_section(get_config("sepreformer-tiny", dropout=0.0)) == recorded
    for name in ("sepreformer-t", "sepreformer-b", "sepreformer-l"):  # and it inverts the yaml reader
        config = get_config(name)
        assert config.replace(**config_from_official_yaml(official_model_section(config))) == config
    for bad in ({"norm": "group"}, {"activation": "snake"}, {"shared_split": False}):
        with pytest.raises(ConversionError, match=f"{next(iter(bad))}="):
            official_model_section(get_config("sepreformer-t", **bad))


def test_export_refuses_an_existing_config_file_before_writing_the_tensors(tmp_path, capsys):
    bundle = tmp_path / "tiny"
    assert main(["convert", "sepreformer-official", str(DATA / "sepreformer_tiny_epoch.pth"),
                 "--out", str(bundle)]) == 0
    (tmp_path / "out.yaml").write_text("mine")
    assert main(["convert", str(bundle), "--to", "sepreformer-official", "--out", str(tmp_path / "out.npz")]) == 2
    assert "out.yaml exists; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "out.yaml").read_text() == "mine" and not (tmp_path / "out.npz").exists()
    assert main(["convert", str(bundle), "--to", "sepreformer-official", "--out", str(tmp_path / "out.npz"),
                 "--overwrite"]) == 0
    assert yaml.safe_load((tmp_path / "out.yaml").read_text())["model"]["num_stages"] == 2
