"""The official SepReformer's `state_dict` (github.com/dmlguq456/SepReformer) ⇄ sepjax's `SepReformer`.

The layout is written from the official tensor names and shapes; no official code is used. Every sepjax
array has an official counterpart and the other way round:

    official                                         sepjax (`model.network…`)
    audio_encoder.conv1d.weight (C, 1, K)            encoder.conv.weight
    feature_projector.norm / .conv1d (F, C, 1)       project_norm / project (1x1 conv = Linear)
    separator.pos_emb.pe_k.weight (2·max, F/H)       positions.table
    separator.enc_stages.i.{g,l}_block_{1,2}         enc_stages[i].blocks[0..3]; .downconv → .down
    separator.bottleneck_G.*                         bottleneck
    separator.spk_split_block.{linear.0,linear.2,norm}   splits[0].{expand, shrink, norm}
    separator.simple_fusion.i                        dec_stages[i].fuse
    separator.dec_stages.i.{g_block,l_block,spk_attn}_{1..3}   dec_stages[i].rounds[0..2]
    out_layer / audio_decoder                        output / decoder
    out_layer_bn.i / decoder_bn.i                    aux_outputs[i] / aux_decoders[i]

Attention's separate linear_q/k/v are sepjax's fused `qkv` (concatenated on the output axis); LayerScale
(1, 1, F) is a vector; a depthwise conv's bias (C,) is Equinox's (C, 1); a ConvTranspose1d weight
(in, out, K) is Equinox's (out, in, K) flipped along K. BatchNorm running statistics go to `model.stats`.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from sepjax.errors import InputError
from sepjax.models.sepreformer.config import SepReformerConfig
from sepjax.models.sepreformer.model import SepReformer
from sepjax.nn.batch_norm import BatchNorm


class ConversionError(InputError):
    """An official state_dict that does not fit a sepjax SepReformer; the message names the tensors."""


@dataclass(frozen=True)
class Rule:
    """One sepjax array made of official tensors, and back."""

    names: tuple[str, ...]
    to_sepjax: Callable[..., np.ndarray]
    to_official: Callable[[np.ndarray], tuple[np.ndarray, ...]]


def _same(name: str) -> Rule:
    return Rule((name,), lambda x: x, lambda x: (x,))


def _squeeze_last(name: str) -> Rule:  # a 1x1 Conv1d weight (out, in, 1) used as a Linear (out, in)
    return Rule((name,), lambda x: x[..., 0], lambda x: (x[..., None],))


def _column(name: str) -> Rule:  # a conv bias (C,) is Equinox's (C, 1)
    return Rule((name,), lambda x: x[:, None], lambda x: (x[:, 0],))


def _layer_scale(name: str) -> Rule:  # (1, 1, F) → (F,)
    return Rule((name,), lambda x: x.reshape(-1), lambda x: (x.reshape(1, 1, -1),))


def _transposed_conv(name: str) -> Rule:  # torch ConvTranspose1d (in, out, K) ⇄ Equinox (out, in, K) flipped
    return Rule((name,), lambda x: np.flip(np.swapaxes(x, 0, 1), -1), lambda x: (np.flip(np.swapaxes(x, 0, 1), -1),))


def _fused(names: tuple[str, str, str]) -> Rule:  # linear_q, linear_k, linear_v → qkv
    return Rule(names, lambda *xs: np.concatenate(xs, 0), lambda x: tuple(np.split(x, 3, 0)))


class _Layout:
    """Collects {sepjax path: Rule} and {sepjax BatchNorm path: official BatchNorm prefix}."""

    def __init__(self):
        self.rules: dict[str, Rule] = {}
        self.batch_norms: dict[str, str] = {}

    def add(self, path: str, rule: Rule) -> None:
        self.rules[path] = rule

    def affine(self, ours: str, theirs: str, bias: bool = True) -> None:  # Linear or norm: weight (+ bias)
        self.add(f"{ours}.weight", _same(f"{theirs}.weight"))
        if bias:
            self.add(f"{ours}.bias", _same(f"{theirs}.bias"))

    def conv1x1(self, ours: str, theirs: str, bias: bool = True) -> None:
        self.add(f"{ours}.weight", _squeeze_last(f"{theirs}.weight"))
        if bias:
            self.add(f"{ours}.bias", _same(f"{theirs}.bias"))

    def depthwise(self, ours: str, theirs: str) -> None:
        self.add(f"{ours}.conv.weight", _same(f"{theirs}.weight"))
        self.add(f"{ours}.conv.bias", _column(f"{theirs}.bias"))

    def batch_norm(self, ours: str, theirs: str) -> None:
        self.affine(f"{ours}.batch_norm", theirs)
        self.batch_norms[f"{ours}.batch_norm"] = theirs

    def attention(self, ours: str, theirs: str) -> None:
        self.affine(f"{ours}.norm", f"{theirs}.layer_norm")
        for part in ("weight", "bias"):
            self.add(f"{ours}.attention.qkv.{part}", _fused(tuple(f"{theirs}.linear_{x}.{part}" for x in "qkv")))
        self.affine(f"{ours}.attention.out", f"{theirs}.linear_out")
        self.add(f"{ours}.scale", _layer_scale(f"{theirs}.Layer_scale.layer_scale"))

    def gcfn(self, ours: str, theirs: str) -> None:
        self.affine(f"{ours}.norm", f"{theirs}.net1.0")
        self.affine(f"{ours}.up", f"{theirs}.net1.1")
        self.depthwise(f"{ours}.conv", f"{theirs}.depthwise")
        self.affine(f"{ours}.down", f"{theirs}.net2.2")
        self.add(f"{ours}.scale", _layer_scale(f"{theirs}.Layer_scale.layer_scale"))

    def global_block(self, ours: str, theirs: str) -> None:
        self.attention(f"{ours}.ega.attn", f"{theirs}.block.ega.block.self_attn")
        self.affine(f"{ours}.ega.gate_norm", f"{theirs}.block.ega.block.linear.0")
        self.affine(f"{ours}.ega.gate", f"{theirs}.block.ega.block.linear.1")
        self.gcfn(f"{ours}.gcfn", f"{theirs}.block.gcfn")

    def local_block(self, ours: str, theirs: str) -> None:
        cla, their_cla = f"{ours}.cla", f"{theirs}.block.cla"
        self.affine(f"{cla}.norm", f"{their_cla}.layer_norm")
        self.affine(f"{cla}.gated", f"{their_cla}.linear1")
        self.depthwise(f"{cla}.conv", f"{their_cla}.dw_conv_1d")
        self.affine(f"{cla}.up", f"{their_cla}.linear2")
        self.batch_norm(f"{cla}.mid_norm", f"{their_cla}.BN")
        self.affine(f"{cla}.down", f"{their_cla}.linear3.1")
        self.add(f"{cla}.scale", _layer_scale(f"{their_cla}.Layer_scale.layer_scale"))
        self.gcfn(f"{ours}.gcfn", f"{theirs}.block.gcfn")

    def encoder_stage(self, ours: str, theirs: str, downsample: bool) -> None:
        for i, name in enumerate(("g_block_1", "l_block_1", "g_block_2", "l_block_2")):
            block = self.global_block if name.startswith("g") else self.local_block
            block(f"{ours}.blocks[{i}]", f"{theirs}.{name}")
        if downsample:
            self.depthwise(f"{ours}.down.conv", f"{theirs}.downconv.down_conv")
            self.batch_norm(f"{ours}.down.norm", f"{theirs}.downconv.BN")

    def output_layer(self, ours: str, theirs: str) -> None:
        self.affine(f"{ours}.up", f"{theirs}.end_conv1x1.0")
        self.affine(f"{ours}.down", f"{theirs}.end_conv1x1.2")


def official_layout(config: SepReformerConfig) -> _Layout:
    """The mapping for `config`; paths are those of `jax.tree_util.keystr` below `model.network`."""
    unsupported = {"norm": (config.norm, "batch"), "activation": (config.activation, "gelu"),
                   "shared_split": (config.shared_split, True)}
    wrong = [f"{k}={v!r} (the official model has {k}={want!r})" for k, (v, want) in unsupported.items() if v != want]
    if wrong:
        raise ConversionError("no official SepReformer layout for this config: " + ", ".join(wrong))
    layout = _Layout()
    layout.add(".encoder.conv.weight", _same("audio_encoder.conv1d.weight"))
    layout.affine(".project_norm", "feature_projector.norm")
    layout.conv1x1(".project", "feature_projector.conv1d", bias=False)
    layout.add(".positions.table", _same("separator.pos_emb.pe_k.weight"))
    for i in range(config.num_stages):
        layout.encoder_stage(f".enc_stages[{i}]", f"separator.enc_stages.{i}", downsample=True)
    layout.encoder_stage(".bottleneck", "separator.bottleneck_G", downsample=False)
    layout.conv1x1(".splits[0].expand", "separator.spk_split_block.linear.0")
    layout.conv1x1(".splits[0].shrink", "separator.spk_split_block.linear.2")
    layout.affine(".splits[0].norm", "separator.spk_split_block.norm")
    for i in range(config.num_stages):
        ours, theirs = f".dec_stages[{i}]", f"separator.dec_stages.{i}"
        layout.conv1x1(f"{ours}.fuse", f"separator.simple_fusion.{i}")
        for j in range(3):
            layout.global_block(f"{ours}.rounds[{j}][0]", f"{theirs}.g_block_{j + 1}")
            layout.local_block(f"{ours}.rounds[{j}][1]", f"{theirs}.l_block_{j + 1}")
            layout.attention(f"{ours}.rounds[{j}][2].attn", f"{theirs}.spk_attn_{j + 1}.self_attn")
            layout.gcfn(f"{ours}.rounds[{j}][2].gcfn", f"{theirs}.spk_attn_{j + 1}.feed_forward")
    layout.output_layer(".output", "out_layer")
    layout.add(".decoder.conv.weight", _transposed_conv("audio_decoder.weight"))
    for i in range(config.num_stages if config.aux_heads else 0):
        layout.output_layer(f".aux_outputs[{i}]", f"out_layer_bn.{i}")
        layout.add(f".aux_decoders[{i}].conv.weight", _transposed_conv(f"decoder_bn.{i}.weight"))
    return layout


IGNORED_SUFFIXES = (".num_batches_tracked",)
"""Official tensors that carry no weights: PyTorch's BatchNorm step counters (kept in sepjax's statistics)."""


def _arrays(tree) -> dict[str, jax.Array]:
    leaves = jax.tree_util.tree_flatten_with_path(eqx.filter(tree, eqx.is_array))[0]
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def _batch_norms(network) -> dict[str, BatchNorm]:
    found = jax.tree_util.tree_flatten_with_path(network, is_leaf=lambda x: isinstance(x, BatchNorm))[0]
    return {jax.tree_util.keystr(path): leaf for path, leaf in found if isinstance(leaf, BatchNorm)}


def from_official(state_dict: Mapping[str, np.ndarray], config: SepReformerConfig) -> SepReformer:
    """A `SepReformer` with every array taken from the official `state_dict` (names as `model.state_dict()`).

    Every official tensor must be used and every sepjax array assigned, with matching shapes; otherwise a
    `ConversionError` lists what is left over.
    """
    tensors = {_strip_parallel(k): np.asarray(v) for k, v in state_dict.items()}
    layout = official_layout(config)
    skeleton = SepReformer(config, key=jax.random.PRNGKey(0))
    ours = _arrays(skeleton.network)
    problems, used = [], set()
    unmapped = [p for p in ours if p not in layout.rules]
    problems += [f"sepjax array with no official counterpart: {p}" for p in unmapped]
    values = {}
    for path, rule in layout.rules.items():
        missing = [n for n in rule.names if n not in tensors]
        if missing:
            problems += [f"missing official tensor: {n} (for {path})" for n in missing]
            continue
        used.update(rule.names)
        value = rule.to_sepjax(*(tensors[n] for n in rule.names))
        want = ours[path].shape
        if value.shape != want:
            shapes = ", ".join(f"{n} {tuple(tensors[n].shape)}" for n in rule.names)
            problems.append(f"shape mismatch: {shapes} gives {tuple(value.shape)}, sepjax {path} needs {tuple(want)}")
            continue
        values[path] = jnp.asarray(value, ours[path].dtype)
    stats = {}
    for path, prefix in layout.batch_norms.items():
        names = (f"{prefix}.running_mean", f"{prefix}.running_var")
        missing = [n for n in names if n not in tensors]
        if missing:
            problems += [f"missing official tensor: {n}" for n in missing]
            continue
        used.update(names)
        tracked = tensors.get(f"{prefix}.num_batches_tracked")
        stats[path] = (tensors[names[0]], tensors[names[1]], 0 if tracked is None else int(np.asarray(tracked).item()))
    leftovers = sorted(n for n in tensors if n not in used and not n.endswith(IGNORED_SUFFIXES))
    problems += [f"official tensor not used: {n} {tuple(tensors[n].shape)}" for n in leftovers]
    if problems:
        raise ConversionError(f"the state_dict does not fit sepjax's SepReformer ({_describe(config)}):\n  "
                              + "\n  ".join(problems))

    def take(path, leaf):
        return values[jax.tree_util.keystr(path)]

    arrays, static = eqx.partition(skeleton.network, eqx.is_array)
    network = eqx.combine(jax.tree_util.tree_map_with_path(take, arrays), static)
    state = jax.tree.map(lambda x: x, skeleton.stats)
    for path, bn in _batch_norms(network).items():
        mean, var, tracked = stats[path]
        state = state.set(bn.stats, (jnp.asarray(mean, jnp.float32), jnp.asarray(var, jnp.float32),
                                     jnp.asarray(tracked, jnp.int32)))
    return eqx.tree_at(lambda m: (m.network, m.stats), skeleton, (network, state))


def to_official(model: SepReformer) -> dict[str, np.ndarray]:
    """The official `state_dict` of `model` (float32 NumPy arrays; `num_batches_tracked` as int64)."""
    layout = official_layout(model.config)
    ours = _arrays(model.network)
    out: dict[str, np.ndarray] = {}
    for path, rule in layout.rules.items():
        for name, value in zip(rule.names, rule.to_official(np.asarray(ours[path])), strict=True):
            out[name] = np.array(value, np.float32, order="C")
    for path, bn in _batch_norms(model.network).items():
        mean, var, tracked = model.stats.get(bn.stats)
        prefix = layout.batch_norms[path]
        out[f"{prefix}.running_mean"] = np.asarray(mean, np.float32)
        out[f"{prefix}.running_var"] = np.asarray(var, np.float32)
        out[f"{prefix}.num_batches_tracked"] = np.asarray(tracked, np.int64)
    return out


def _strip_parallel(name: str) -> str:
    """`nn.DataParallel` checkpoints prefix every name with `module.`."""
    return name[len("module."):] if name.startswith("module.") else name


def _describe(config: SepReformerConfig) -> str:
    return (f"F={config.dim}, {config.num_stages} stages, {config.heads} heads, encoder {config.encoder_channels} "
            f"channels K{config.encoder_kernel}, {config.num_stems} speakers")


def official_config(state_dict: Mapping[str, np.ndarray], **overrides) -> SepReformerConfig:
    """The config the official tensors' shapes imply. The encoder stride, dropout and LayerScale init leave no
    trace in the weights: the stride defaults to K/4 (as in every official config), the others to sepjax's
    defaults, and `overrides` (e.g. from the official configs.yaml) replace any field."""
    t = {_strip_parallel(k): v for k, v in state_dict.items()}

    def shape(name: str) -> tuple[int, ...]:
        if name not in t:
            raise ConversionError(f"not an official SepReformer state_dict: it has no tensor {name!r}")
        return tuple(np.shape(t[name]))

    channels, in_channels, kernel = shape("audio_encoder.conv1d.weight")
    dim = shape("feature_projector.conv1d.weight")[0]
    offsets, head_dim = shape("separator.pos_emb.pe_k.weight")
    if dim % head_dim:
        raise ConversionError(f"separator.pos_emb.pe_k.weight {(offsets, head_dim)}: F={dim} is not a multiple "
                              f"of its head size {head_dim}")
    stages = 0
    while f"separator.enc_stages.{stages}.downconv.down_conv.weight" in t:
        stages += 1
    if stages == 0:
        raise ConversionError("not an official SepReformer state_dict: no separator.enc_stages.0")
    split_out = shape("separator.spk_split_block.linear.2.weight")[0]
    if split_out % dim:
        raise ConversionError(f"separator.spk_split_block.linear.2.weight: {split_out} outputs is not a multiple "
                              f"of F={dim}")
    fields = dict(
        dim=dim, num_stages=stages, heads=dim // head_dim, encoder_channels=channels, encoder_kernel=kernel,
        encoder_stride=max(kernel // 4, 1), local_kernel=shape("separator.enc_stages.0.l_block_1.block.cla"
                                                                ".dw_conv_1d.weight")[-1],
        down_kernel=shape("separator.enc_stages.0.downconv.down_conv.weight")[-1],
        max_relative_position=offsets // 2, num_stems=split_out // dim, in_channels=in_channels,
        out_channels=shape("audio_decoder.weight")[1], norm="batch", shared_split=True, activation="gelu",
        aux_heads="out_layer_bn.0.end_conv1x1.0.weight" in t)
    fields.update(overrides)
    try:
        return SepReformerConfig(**fields)
    except (TypeError, ValueError) as err:
        raise ConversionError(f"the official tensors imply an invalid config: {err}") from err


def config_from_official_yaml(model_section: Mapping) -> dict:
    """Config fields from the `model:` section of an official configs.yaml (only what it states)."""
    try:
        enc = model_section["module_audio_enc"]
        sep = model_section["module_separator"]
        fields = dict(
            num_stages=int(model_section["num_stages"]), num_stems=int(model_section["num_spks"]),
            in_channels=int(enc["in_channels"]), encoder_channels=int(enc["out_channels"]),
            encoder_kernel=int(enc["kernel_size"]), encoder_stride=int(enc["stride"]),
            dim=int(model_section["module_feature_projector"]["out_channels"]),
            heads=int(sep["relative_positional_encoding"]["num_heads"]),
            max_relative_position=int(sep["relative_positional_encoding"]["maxlen"]),
            down_kernel=int(sep["enc_stage"]["down_conv_layer"]["samp_kernel_size"]),
            dropout=float(sep["enc_stage"]["global_blocks"]["dropout_rate"]),
            out_channels=int(model_section["module_audio_dec"]["out_channels"]))
        local = sep["enc_stage"]["local_blocks"]
        if "kernel_size" in local:
            fields["local_kernel"] = int(local["kernel_size"])
    except (KeyError, TypeError, ValueError) as err:
        raise ConversionError(f"the official config's model section lacks or garbles {err}") from err
    return fields


def official_model_section(config: SepReformerConfig) -> dict:
    """The `model:` section of an official configs.yaml that builds `config`'s network with the official
    `SepReformer_Base_WSJ0` `Model` (the inverse of `config_from_official_yaml`). The official code has BatchNorm,
    GELU and one speaker split shared by every stage, and always builds the auxiliary heads; a config it cannot
    build is a ConversionError naming the field."""
    unsupported = [f"{name}={getattr(config, name)!r} (the official code has {want!r})"
                   for name, want in (("norm", "batch"), ("activation", "gelu"), ("shared_split", True))
                   if getattr(config, name) != want]
    if unsupported:
        raise ConversionError(f"no official counterpart for {_describe(config)}: " + ", ".join(unsupported))
    f, heads, drop = config.dim, config.heads, config.dropout

    def global_blocks() -> dict:
        return {"in_channels": f, "num_mha_heads": heads, "dropout_rate": drop}

    def local_blocks() -> dict:
        return {"in_channels": f, "kernel_size": config.local_kernel, "dropout_rate": drop}

    channels = config.encoder_channels
    return {
        "num_stages": config.num_stages, "num_spks": config.num_stems,
        "module_audio_enc": {"in_channels": config.in_channels, "out_channels": channels,
                             "kernel_size": config.encoder_kernel, "stride": config.encoder_stride, "groups": 1,
                             "bias": False},
        "module_feature_projector": {"num_channels": channels, "in_channels": channels, "out_channels": f,
                                     "kernel_size": 1, "bias": False},
        "module_separator": {
            "num_stages": config.num_stages,
            "relative_positional_encoding": {"in_channels": f, "num_heads": heads,
                                             "maxlen": config.max_relative_position, "embed_v": False},
            "enc_stage": {"global_blocks": global_blocks(), "local_blocks": local_blocks(),
                          "down_conv_layer": {"in_channels": f, "samp_kernel_size": config.down_kernel}},
            "spk_split_stage": {"in_channels": f, "num_spks": config.num_stems},
            "simple_fusion": {"out_channels": f},
            "dec_stage": {"num_spks": config.num_stems, "global_blocks": global_blocks(),
                          "local_blocks": local_blocks(),
                          "spk_attention": {"in_channels": f, "num_mha_heads": heads, "dropout_rate": drop}}},
        "module_output_layer": {"in_channels": channels, "out_channels": f, "num_spks": config.num_stems},
        "module_audio_dec": {"in_channels": channels, "out_channels": config.out_channels,
                             "kernel_size": config.encoder_kernel, "stride": config.encoder_stride, "bias": False},
    }
