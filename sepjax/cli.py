"""The `sepjax` command."""

import argparse
import sys
from pathlib import Path

from sepjax.errors import SetupError

DEFAULT_CHUNK_SECONDS = 4.0
DEFAULT_SHARE_TEXT = "half"


def _layout_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", type=Path)
    p.add_argument("--layout", required=True, help="jacappella | chorales | musdb | stems | 2mix")
    p.add_argument("--stems", help="comma-separated stem names (required for --layout stems)")
    p.add_argument("--test-list", help="file of test song names (default: the layout's own)")
    p.add_argument("--valid-list", help="file of validation song names")


def _index(args):
    from sepjax.data.index import build_index
    from sepjax.data.layouts import get_layout

    stems = tuple(s.strip() for s in args.stems.split(",")) if args.stems else None
    layout = get_layout(args.layout, stems=stems, test_list=args.test_list, valid_list=args.valid_list)
    return build_index(args.root, layout)


def _programs(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated General MIDI program numbers, "
                                         f"e.g. 52,53,52,53") from None


def cmd_data_chorales(args) -> int:
    from tqdm import tqdm

    from sepjax.data.chorales import build_chorales

    bar = tqdm(desc="rendering chorales", unit="chorale")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    report = build_chorales(args.out, sample_rate=args.sample_rate, limit=args.limit, seed=args.seed,
                            workers=args.workers, renderer=args.renderer, split=args.split,
                            programs=args.programs, progress=progress)
    bar.close()
    print(f"wrote {len(report.written)} chorales ({report.audio_seconds / 60:.1f} min of audio, "
          f"{report.realtime_factor:.0f}x real time); {len(report.present)} were already present")
    for cid, reason in sorted(report.skipped.items()):
        print(f"skipped {cid}: {reason}")
    print(f"{args.out}: JaCappella layout, stems soprano/alto/tenor/bass/mixture at {args.sample_rate} Hz")
    return 0


def cmd_data_index(args) -> int:
    from sepjax.data.summary import summarise

    index = _index(args)
    print(summarise(index))
    if args.level:
        from sepjax.data.pipeline import PipelineConfig, input_level

        rate = index.split("train")[0].sample_rate if index.split("train") else index.tracks[0].sample_rate
        level = input_level(index, PipelineConfig(sample_rate=rate, segment_seconds=4.0, batch_size=1))
        print(f"\ntraining mixtures: median standard deviation {level:.4g} (64 segments of 4 s, mono downmix, "
              f"not augmented); a model trained on them as they are wants `sepjax convert --input-std {level:.4g}`")
    return 0


def cmd_data_preview(args) -> int:
    import numpy as np

    from sepjax.audio import write
    from sepjax.data.augment import AugmentConfig
    from sepjax.data.pipeline import PipelineConfig, training_dataset
    from sepjax.tensorboard_log import RunLogger

    index = _index(args)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        print(f"error: {out} is not empty; pass --overwrite to write into it", file=sys.stderr)
        return 2
    augment = AugmentConfig(gain_db=(-args.gain_db, args.gain_db), remix_prob=args.remix,
                            channel_swap_prob=args.swap, polarity_flip_prob=args.flip,
                            subset_prob=args.subset, max_shift_seconds=args.shift, speed=tuple(args.speed))
    config = PipelineConfig(sample_rate=args.sample_rate, segment_seconds=args.seconds, batch_size=1,
                            channels=args.channels, split=args.split, seed=args.seed, augment=augment,
                            shard_index=0, shard_count=1)
    logger = RunLogger(out / "tensorboard")
    batches = iter(training_dataset(index, config))
    for i in range(args.count):
        batch = {k: v[0] for k, v in next(batches).items()}
        folder = out / f"segment_{i:02d}"
        write(folder / "mixture.wav", batch["mixture"], args.sample_rate, overwrite=args.overwrite)
        for name, stem, present in zip(index.stems, batch["targets"], batch["mask"], strict=True):
            if present:
                write(folder / f"{name}.wav", stem, args.sample_rate, overwrite=args.overwrite)
        logger.separation_audio(i, batch["mixture"], batch["targets"], batch["targets"], list(index.stems),
                                args.sample_rate)
        err = float(np.max(np.abs(batch["mixture"] - batch["targets"].sum(axis=0))))
        print(f"{folder}: stems {[n for n, m in zip(index.stems, batch['mask'], strict=True) if m]}, "
              f"mixture − Σstems = {err:.1e}")
    logger.close()
    print(f"TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
    return 0


def _device(name: str | None):
    import jax

    if name is None:
        return None
    try:
        return jax.devices(name)[0]
    except RuntimeError as err:
        raise SetupError(f"--device {name}: not available here ({err})") from err


def _inference_args(p: argparse.ArgumentParser, normalize: str = "track") -> None:
    p.add_argument("--chunk-seconds", type=float, default=None,
                   help=f"model input length per chunk (default: the bundle's, else {DEFAULT_CHUNK_SECONDS})")
    p.add_argument("--overlap", type=float, default=0.5, help="fraction of a chunk shared with the next")
    p.add_argument("--hop-seconds", type=float, default=None, help="chunk spacing (overrides --overlap)")
    p.add_argument("--window", default="hann", choices=["hann", "triangular", "rectangular"])
    p.add_argument("--padding", default="reflect", choices=["reflect", "constant", "replicate"])
    p.add_argument("--batch-size", type=int, default=None, help="chunks per model call (default: chosen to fit "
                   "--max-memory)")
    p.add_argument("--max-memory", default=None, metavar="SIZE",
                   help=f"memory for the model, e.g. 4GB (default: {DEFAULT_SHARE_TEXT} of the free memory); chooses "
                   "the chunk length and batch size that --chunk-seconds and --batch-size leave open")
    p.add_argument("--device", default=None, help="cpu, gpu or tpu (default: JAX's default device)")
    p.add_argument("--tta", default=None, metavar="polarity,swap",
                   help="average over sign-flipped and (stereo) channel-swapped copies of each chunk")
    p.add_argument("--shifts", type=int, default=0, metavar="N",
                   help="average N runs with the chunk grid shifted by random offsets (demucs-style)")
    p.add_argument("--normalize", default=normalize, choices=["track", "start", "none"],
                   help=f"z-score the input by the whole track's statistics, its first chunk's, or not at all "
                   f"(default: {normalize})")


def inference_config(args, bundle, live: bool = False):
    """Chunking from the flags. Without both --chunk-seconds and --batch-size, what is not given is chosen to fit
    --max-memory (default: a share of the free memory) by measuring the compiled model. `live` (a stream) keeps
    the bundle's chunk and one chunk per call, the shortest latency, and checks them against --max-memory."""
    from sepjax.inference.memory_budget import BATCH_SIZES, DEFAULT_SHARE, choose_chunking, free_memory, parse_size
    from sepjax.inference.separate import InferenceConfig

    sample_rate = bundle.sample_rate
    seconds = next(s for s in (args.chunk_seconds, bundle.chunk_seconds, DEFAULT_CHUNK_SECONDS) if s is not None)
    chunk, batch = int(round(seconds * sample_rate)), args.batch_size
    if live:
        batch = batch or 1
    if args.chunk_seconds is None or batch is None or (live and args.max_memory is not None):
        budget = (parse_size(args.max_memory) if args.max_memory is not None
                  else int(DEFAULT_SHARE * free_memory(_device(args.device))))
        choice = choose_chunking(bundle.model, bundle.config.in_channels, sample_rate, budget, chunk,
                                 chunks=None if args.chunk_seconds is None and not live else (chunk,),
                                 batch_sizes=BATCH_SIZES if batch is None else (batch,))
        chunk, batch = choice.chunk, choice.batch_size
        print(f"chunks of {chunk / sample_rate:.2f} s in batches of {batch}: {choice.bytes / 1e6:.0f} MB of the "
              f"{budget / 1e6:.0f} MB budget", file=sys.stderr)
    hop = None if args.hop_seconds is None else max(int(round(args.hop_seconds * sample_rate)), 1)
    return InferenceConfig(chunk=chunk, overlap=args.overlap, hop=hop, batch_size=batch, window=args.window,
                           padding=args.padding, shifts=args.shifts, normalize=args.normalize)


def chunk_model(args, bundle, inference):
    """The bundle's model over batches of chunks, with the test-time augmentation `--tta` asks for. Normalised
    inputs reach the model at the level it trained at (the bundle's `input_std`); `--normalize none` passes the
    input as it is."""
    from sepjax.inference.separate import BatchedModel
    from sepjax.inference.tta import TTAModel, parse_tta

    transforms = parse_tta(args.tta)
    input_std = bundle.input_std if inference.normalize != "none" else 1.0
    model_fn = BatchedModel(bundle.model, inference.batch_size, _device(args.device), input_std)
    if not transforms:
        return model_fn
    return TTAModel(model_fn, transforms, bundle.config.in_channels, bundle.config.out_channels)


def cmd_separate(args) -> int:
    import soundfile as sf
    from tqdm import tqdm

    from sepjax.errors import UserError
    from sepjax.inference.bundle import load_bundle
    from sepjax.inference.pretrained import resolve_bundle
    from sepjax.inference.separate_files import DerivedStem, OutputOptions, audio_inputs, separate_file

    names, input_args = _ensemble_members(args)
    bundles = [load_bundle(resolve_bundle(name)) for name in names]
    bundle = bundles[0]
    derive = tuple(DerivedStem.parse(d, bundle.stem_names) for d in args.derive)
    options = OutputOptions(args.out, args.format, args.bits, derive, args.overwrite)
    inference = inference_config(args, bundle)
    if args.ensemble is None:
        model_fn = chunk_model(args, bundle, inference)
    else:
        from sepjax.inference.ensemble import EnsembleModel, check_compatible

        check_compatible(bundles, names)
        model_fn = EnsembleModel([chunk_model(args, b, inference) for b in bundles], args.ensemble,
                                 args.weights)
    inputs, failed = audio_inputs(input_args)
    done = []
    bar = tqdm(inputs, desc="separating", unit="file")
    for path, name in bar:
        bar.set_postfix_str(path.name)
        try:
            done.append(separate_file(model_fn, bundle.config.in_channels, bundle.config.out_channels,
                                      bundle.sample_rate, bundle.stem_names, path, name, inference, options))
        except (OSError, UserError, sf.SoundFileError) as err:  # one bad file: report it at the end, keep going
            failed.append(f"{path}: {err}" if str(path) not in str(err) else str(err))
    bar.close()
    print(f"separated {len(done)} file(s) into {args.out}")
    if failed:
        print(f"{len(failed)} input(s) failed:", file=sys.stderr)
        for line in failed:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def cmd_stream(args) -> int:
    from sepjax.errors import InputError
    from sepjax.inference.bundle import load_bundle
    from sepjax.inference.pretrained import resolve_bundle
    from sepjax.inference.stream import RawFormat, open_input, stem_paths, stream_separate

    raw_flags = (args.raw_rate, args.raw_channels, args.raw_format)
    if any(f is not None for f in raw_flags) and args.raw_rate is None:
        raise InputError("headerless PCM needs --raw-rate (and --raw-channels, --raw-format if not 1 and PCM_16)")
    raw = None if args.raw_rate is None else RawFormat(args.raw_rate, args.raw_channels or 1,
                                                       args.raw_format or "PCM_16")
    bundle = load_bundle(resolve_bundle(args.bundle))
    paths = stem_paths(args.out, bundle.stem_names, args.overwrite)
    inference = inference_config(args, bundle, live=True)
    if inference.normalize == "track":
        raise InputError("--normalize track needs the whole track, which a stream does not have: use start or none")
    model_fn = chunk_model(args, bundle, inference)
    name = "standard input" if args.input == "-" else args.input
    with open_input(args.input, raw) as f:
        hop = inference.plan(None).hop
        latency = (inference.chunk + hop) / bundle.sample_rate
        print(f"streaming {name} ({f.samplerate} Hz, {f.channels} ch) into {args.out}/: chunks of "
              f"{inference.chunk / bundle.sample_rate:.2f} s every {hop / bundle.sample_rate:.2f} s, latency at most "
              f"{latency:.2f} s plus compute", file=sys.stderr)
        report = stream_separate(model_fn, bundle.config.in_channels, bundle.config.out_channels, bundle.sample_rate,
                                 bundle.stem_names, f, name, paths, inference, args.bits)
    how = "interrupted after" if report.interrupted else "read"
    print(f"{how} {report.input_seconds:.2f} s; wrote {report.written_seconds:.2f} s of "
          f"{', '.join(bundle.stem_names)} to {args.out}/", file=sys.stderr)
    return 130 if report.interrupted else 0


def _ensemble_members(args) -> tuple[list[str], list[Path]]:
    """(bundles, inputs): with --ensemble, the positional arguments after the first bundle that are bundles too
    (a folder holding bundle.json, or a shipped model's name) join the ensemble; the rest are inputs."""
    from sepjax.errors import InputError
    from sepjax.inference.bundle import META_FILE
    from sepjax.inference.pretrained import shipped_bundles

    names, inputs = [args.bundle], list(args.inputs)
    if args.ensemble is None:
        if args.weights is not None:
            raise InputError("--weights need --ensemble mean")
        return names, inputs
    shipped = shipped_bundles()
    while inputs and ((inputs[0] / META_FILE).is_file() or (not inputs[0].exists() and str(inputs[0]) in shipped)):
        names.append(str(inputs.pop(0)))
    if len(names) < 2:
        raise InputError(f"--ensemble needs at least two bundles before the inputs, got {names[0]}")
    if not inputs:
        raise InputError("--ensemble: no audio inputs after the bundles")
    return names, inputs


def cmd_evaluate(args) -> int:
    from sepjax.audio import to_channels
    from sepjax.inference.bundle import load_bundle
    from sepjax.inference.evaluate import evaluate, markdown_table
    from sepjax.inference.pretrained import resolve_bundle
    from sepjax.inference.separate import separate_array

    bundle = load_bundle(resolve_bundle(args.bundle))
    index = _index(args)
    inference = inference_config(args, bundle)
    model_fn = chunk_model(args, bundle, inference)
    in_channels = bundle.config.in_channels

    def separate(mixture, track):
        return separate_array(model_fn, to_channels(mixture, in_channels), inference)

    result = evaluate(separate, index, args.split, bundle.stem_names, bundle.sample_rate, bundle.config.out_channels,
                      args.out, overwrite=args.overwrite, tensorboard_tracks=args.tensorboard,
                      figure_tracks=args.figures)
    print(markdown_table(result["per_stem"]))
    print(f"{args.out}: metrics.csv (per track and stem), summary.json, summary.md")
    for line in result["failed"]:
        print(f"failed: {line}", file=sys.stderr)
    return 1 if result["failed"] else 0


def cmd_models(args) -> int:
    from sepjax.inference.bundle import load_bundle
    from sepjax.inference.pretrained import shipped_bundles, shipped_summary

    shipped = shipped_bundles()
    if not shipped:
        print("no shipped models")
        return 0
    for name, path in shipped.items():
        bundle = load_bundle(path)
        stems = ", ".join(bundle.stem_names)
        print(f"{name}: {bundle.config.family}, {bundle.sample_rate} Hz, stems {stems}  ({path})")
        summary = shipped_summary(path)
        if summary is not None:
            cells = ", ".join(f"{stem} {values['si_sdri']['mean']:+.2f}"
                              for stem, values in summary["per_stem"].items())
            print(f"  SI-SDRi mean on {summary['tracks']} {summary['split']} tracks (dB): {cells}")
    return 0


def cmd_convert(args) -> int:
    from sepjax.errors import InputError
    from sepjax.inference.convert import OFFICIAL, convert_official, export_official, official_yaml_path

    if args.to is None:
        if len(args.sources) != 2 or args.sources[0] != OFFICIAL:
            raise InputError(f"usage: sepjax convert {OFFICIAL} CHECKPOINT --out BUNDLE, or sepjax convert BUNDLE "
                             f"--to {OFFICIAL} --out FILE (got {' '.join(args.sources)})")
        stems = tuple(s.strip() for s in args.stems.split(",")) if args.stems else None
        path, config = convert_official(args.sources[1], args.out, config_yaml=args.config, stem_names=stems,
                                        sample_rate=args.sample_rate, input_std=args.input_std,
                                        overwrite=args.overwrite)
        print(f"{args.sources[1]} → bundle {path}: SepReformer F={config.dim}, {config.num_stages} stages, "
              f"{config.heads} heads, {config.num_stems} speakers, {args.sample_rate} Hz")
        print(f"separate with: sepjax separate {path} mixture.wav --out separated/")
        return 0
    if len(args.sources) != 1:
        raise InputError(f"--to {args.to} converts one bundle, got {len(args.sources)} arguments")
    path = export_official(args.sources[0], args.out, overwrite=args.overwrite)
    print(f"{args.sources[0]} → official SepReformer state_dict {path}, and its config's model section "
          f"{official_yaml_path(path)}")
    return 0


def cmd_export(args) -> int:
    from sepjax.errors import InputError
    from sepjax.inference.export import export_onnx, export_stablehlo

    if args.format == "onnx":
        done = export_onnx(args.bundle, args.out, chunk_seconds=args.chunk_seconds, batch_size=args.batch_size,
                           overwrite=args.overwrite)
        print(f"{args.bundle} → onnx {done.path}/model.onnx for batches of {args.batch_size} (onnxruntime matches "
              f"JAX to {done.max_error:.1e} of the output's scale)")
        return 0
    if args.batch_size != 1:
        raise InputError("--batch-size applies to --format onnx (a StableHLO export takes any batch)")
    path = export_stablehlo(args.bundle, args.out, chunk_seconds=args.chunk_seconds, overwrite=args.overwrite)
    print(f"{args.bundle} → {args.format} {path}/ (load it with sepjax.exported.load_exported, JAX only)")
    return 0


def cmd_train(args) -> int:
    from sepjax.train.cli import load_experiment, run_experiment

    module = load_experiment(args.experiment)
    run_experiment(module.CONFIG, args.overrides, description=module.__doc__)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sepjax", description="SepReformer source separation in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="datasets: render the chorale corpus, index and preview layouts")
    data_sub = data.add_subparsers(dest="data_command", required=True)

    p = data_sub.add_parser("chorales", help="render music21's Bach chorales to SATB stems")
    p.add_argument("out", type=Path)
    p.add_argument("--limit", type=int, default=None, help="render only the first N chorales")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--renderer", default="numpy", choices=["numpy", "fluidsynth"])
    p.add_argument("--split", default=None, choices=["train", "valid", "test"],
                   help="render only this split's chorales (a test set rendered another way, say)")
    p.add_argument("--programs", type=_programs, default=None, metavar="S,A,T,B",
                   help="General MIDI programs (0-127) of soprano, alto, tenor and bass for --renderer fluidsynth "
                        "(default 52,53,52,53: Choir Aahs and Voice Oohs)")
    p.set_defaults(func=cmd_data_chorales)

    p = data_sub.add_parser("index", help="index a dataset and print a summary")
    _layout_args(p)
    p.add_argument("--level", action="store_true",
                   help="also measure the level of the training split's mixtures (`sepjax.data.pipeline.input_level`)")
    p.set_defaults(func=cmd_data_index)

    p = data_sub.add_parser("preview", help="write augmented training segments as wav and TensorBoard audio")
    _layout_args(p)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--split", default="train")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--channels", type=int, default=1, choices=[1, 2])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gain-db", type=float, default=3.0)
    p.add_argument("--remix", type=float, default=0.5)
    p.add_argument("--swap", type=float, default=0.0)
    p.add_argument("--flip", type=float, default=0.0)
    p.add_argument("--subset", type=float, default=0.25)
    p.add_argument("--shift", type=float, default=0.0)
    p.add_argument("--speed", type=float, nargs=2, default=[1.0, 1.0], metavar=("LO", "HI"),
                   help="play each segment LO to HI times as fast (tempo and pitch together)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_data_preview)

    p = sub.add_parser("separate", help="separate audio files with a trained model bundle")
    p.add_argument("bundle", help="a bundle folder, or the name of a shipped model (`sepjax models` lists them)")
    p.add_argument("inputs", type=Path, nargs="+", help="audio files or folders (searched recursively); with "
                   "--ensemble, more bundles first")
    p.add_argument("--ensemble", choices=["mean", "median"], default=None,
                   help="combine the estimates of all the bundles given (same stems and rate)")
    p.add_argument("--weights", type=float, nargs="+", default=None, help="per-bundle weights for --ensemble mean")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--format", default="wav", choices=["wav", "flac"])
    p.add_argument("--bits", default="float", choices=["16", "24", "float"])
    p.add_argument("--derive", action="append", default=[], metavar="NAME=EXPR",
                   help="extra stem from others, e.g. instrumental=mixture-lead_vocal (repeatable)")
    p.add_argument("--overwrite", action="store_true")
    _inference_args(p)
    p.set_defaults(func=cmd_separate)

    p = sub.add_parser("stream", help="separate live audio from a pipe, writing each stem as it is finished")
    p.add_argument("bundle", help="a bundle folder, or the name of a shipped model (`sepjax models` lists them)")
    p.add_argument("--in", dest="input", default="-", help="- for standard input (default), or a named pipe or file")
    p.add_argument("--out", type=Path, required=True, help="folder for <stem>.wav, written as the stream goes")
    p.add_argument("--raw-rate", type=int, default=None, metavar="HZ", help="the input is headerless PCM at HZ")
    p.add_argument("--raw-channels", type=int, default=None, help="headerless PCM's channels (default 1)")
    p.add_argument("--raw-format", default=None, choices=["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"],
                   help="headerless PCM's little-endian samples (default PCM_16)")
    p.add_argument("--bits", default="float", choices=["16", "24", "float"])
    p.add_argument("--overwrite", action="store_true")
    _inference_args(p, normalize="start")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("evaluate", help="separate a dataset split and score it (CSV, JSON, Markdown)")
    p.add_argument("bundle", help="a bundle folder, or the name of a shipped model (`sepjax models` lists them)")
    _layout_args(p)
    p.add_argument("--split", default="test")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tensorboard", type=int, default=0, metavar="N",
                   help="also log audio and spectrograms of the first N tracks")
    p.add_argument("--figures", type=int, default=1, metavar="N",
                   help="write spectrogram PNGs of the first N tracks to OUT/figures/ (0: none)")
    p.add_argument("--overwrite", action="store_true")
    _inference_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("models", help="list the models shipped with sepjax and their test metrics")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("convert", help="official SepReformer checkpoints to sepjax bundles, and back",
                       description="sepjax convert sepreformer-official CHECKPOINT --out BUNDLE\n"
                                   "sepjax convert BUNDLE --to sepreformer-official --out FILE",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="ARG",
                   help="`sepreformer-official CHECKPOINT` (.pth, .safetensors or .npz), or a BUNDLE with --to")
    p.add_argument("--out", type=Path, required=True, help="the bundle folder, or with --to the state_dict file "
                   "(.safetensors, .npz, or .pth with torch installed)")
    p.add_argument("--to", choices=["sepreformer-official"], help="export a bundle as an official state_dict")
    p.add_argument("--config", type=Path, help="the official configs.yaml (otherwise inferred from the shapes)")
    p.add_argument("--stems", help="comma-separated stem names (default spk1,spk2,...)")
    p.add_argument("--sample-rate", type=int, default=8000)
    p.add_argument("--input-std", type=float, default=None,
                   help="the standard deviation of the mixtures the checkpoint trained on, which inference scales "
                        "each normalised input to (default 1.0); `sepjax data index ROOT --layout L --level` "
                        "measures it")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("export", help="a bundle as an artifact that runs without sepjax's model code")
    p.add_argument("bundle", help="a bundle folder, or the name of a shipped model")
    p.add_argument("--format", choices=["stablehlo", "onnx"], default="stablehlo",
                   help="stablehlo: jax.export's serialized StableHLO, weights included, for JAX; onnx: an ONNX "
                   "graph for onnxruntime and other ONNX runtimes")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--batch-size", type=int, default=1, help="chunks per call of an ONNX graph (fixed)")
    p.add_argument("--chunk-seconds", type=float, default=None,
                   help=f"the chunk length it takes (default: the bundle's, else {DEFAULT_CHUNK_SECONDS})")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export)

    example = "sepjax train experiments/chorales_sepreformer.py --train.steps 2000 --optim.lr 1e-3"
    p = sub.add_parser("train", help="run an experiment file with command-line overrides", description=example)
    p.add_argument("experiment", type=Path)
    p.add_argument("overrides", nargs=argparse.REMAINDER, help="flags for the experiment's config (see --help there)")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    from sepjax.errors import UserError
    from sepjax.train.host_memory import keep_host_memory, relaunch_on_huge_pages

    args = build_parser().parse_args(argv)
    if argv is None and args.func is cmd_train:  # a program started for a long run, not a call from Python
        relaunch_on_huge_pages()
    keep_host_memory()
    try:
        return args.func(args)
    except UserError as err:  # anything else is a bug: its traceback is what a report needs
        message = f"error: {err}"
    _release_failed_work()
    print(message, file=sys.stderr)
    return 2


def _release_failed_work() -> None:
    """Collect what a failed command left behind now, quietly: an interrupted orbax save leaves a coroutine that
    was never awaited, whose warning would otherwise be the last line the user sees, after the error."""
    import gc
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
        gc.collect()


if __name__ == "__main__":
    sys.exit(main())
