"""The `vqvae` command line: train a VQ-VAE, then its prior, sample, evaluate.

    vqvae demo                                        # everything, offline
    vqvae demo --dataset speech                       # the same on speech
    vqvae train --model-dir runs/photos               # scikit-image photos
    vqvae train --preset demo --model-dir runs/small  # the demo's config
    vqvae train --dataset tfds:cifar10 --model-dir runs/cifar --epochs 50
    vqvae train --model-dir runs/cifar                # again: resumes
    vqvae inspect --model-dir runs/cifar              # what each code means
    vqvae train --config runs/cifar/config.json --model-dir runs/cifar2
    vqvae train --strategy mirrored ...               # all local GPUs
    TF_CONFIG='{...}' vqvae train --strategy multi-worker ...
    vqvae train --dataset speech --model-dir runs/speech   # audio defaults
    vqvae reconstruct --model-dir runs/speech in.wav out.wav
    vqvae convert --model-dir runs/speech --speaker 3 in.wav out.wav

This module only parses flags and prints. The commands are the functions of
`tf_vqvae.training.commands`, imported (with TensorFlow) only when one runs,
so `vqvae --help` is fast; the options, their defaults and help live in
`training/config.py`, what a model dir holds in `training/layout.py`.

Exit codes: 0 done, 1 training failed (non-finite loss, disk full), an
export does not match its manifest, or an unexpected error, 2 bad input (the
message says what to change; nothing is left behind; also a model dir
another command holds), 130 Ctrl-C (training saves a checkpoint first and
says how to resume). Every failure prints one line; `--debug` (or
`VQVAE_DEBUG=1`) shows the traceback of an unexpected error instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable

from tf_vqvae.options import (
    OFF,
    PRECISIONS,
    TFLITE_QUANTIZATIONS,
    decoder_option_declarations,
    describe_choices,
    quantizer_option_declarations,
)
from tf_vqvae.training.config import (
    MAX_SAMPLES,
    PRESETS,
    SAMPLES_PER_GRID,
    ConfigError,
    PriorConfig,
    TrainConfig,
    audio_train_config,
    int_or_off,
    load_config,
    saved_config_path,
)
from tf_vqvae.training.interrupts import is_interrupt, noting_interrupts
from tf_vqvae.training.layout import (
    AUDIO_SAMPLES_FILE,
    CALIBRATION_FILE,
    CLASSES_FILE,
    CODES_DIR,
    EVALUATION_FILE,
    EXPORT_DIR,
    PRIOR_DIR,
    SAMPLES_FILE,
)
from tf_vqvae.training.startup import import_commands
from tf_vqvae.version import __version__

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
DEBUG_VARIABLE = "VQVAE_DEBUG"


def _commands():
    """`tf_vqvae.training.commands` (imports TensorFlow, without its
    start-up lines: not for --help)."""
    return import_commands()


# ----------------------------------------------------------------- parsing
def add_config_flags(
    parser: argparse.ArgumentParser, config_class: type = TrainConfig
) -> None:
    """One flag per field of `config_class`, with the field's help and
    choices (`metadata`), plus `--config` and `--preset`.

    Defaults are `None` so that only the flags given override the base config
    (`--config` or `--preset`, the model dir's saved config, or the
    defaults).
    """
    base = parser.add_mutually_exclusive_group()
    base.add_argument(
        "--config",
        default=None,
        help="A config.json of an earlier run; flags given override it.",
    )
    base.add_argument(
        "--preset",
        default=None,
        choices=sorted(PRESETS),
        help="Start from a named config: "
        f"{describe_choices({k: p.description for k, p in PRESETS.items()})}"
        "; flags given override it.",
    )
    for field in dataclasses.fields(config_class):
        if field.metadata.get("quantizer_options"):
            _add_option_flags(parser, _QUANTIZER_OPTIONS)
            continue
        if field.metadata.get("decoder_options"):
            _add_option_flags(parser, _DECODER_OPTIONS)
            continue
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        shown = "" if default is None else f" (default: {default})"
        kwargs = dict(default=None, help=field.metadata["help"] + shown)
        annotation = str(field.type)
        if annotation == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif annotation.startswith("tuple["):
            kwargs["nargs"] = "+"
        elif field.metadata.get("off") and "choices" not in field.metadata:
            kwargs.update(type=int_or_off, metavar=f"{{N,{OFF}}}")
        else:
            scalar = annotation.split("|")[0].strip()
            kwargs["type"] = {"int": int, "float": float, "str": str}[scalar]
            kwargs["choices"] = field.metadata.get("choices")
        parser.add_argument(flag, **kwargs)


@dataclasses.dataclass(frozen=True)
class _KindOptions:
    """The flags of one kind-dependent option set of `TrainConfig`: its
    field (`quantizer_options`), the field naming the kind (`quantizer`),
    the declarations, the flags' prefix and `argparse` destinations."""

    field: str
    kind_field: str
    declarations: Callable[[], dict]
    flag_prefix: str
    dest_prefix: str


_QUANTIZER_OPTIONS = _KindOptions(
    "quantizer_options",
    "quantizer",
    quantizer_option_declarations,
    "--",
    "quantizer_option_",
)
# `--decoder-num-layers`: the flag names the decoder (`--num-layers` alone
# could be the encoder's).
_DECODER_OPTIONS = _KindOptions(
    "decoder_options",
    "decoder",
    decoder_option_declarations,
    "--decoder-",
    "decoder_option_",
)


def _add_option_flags(
    parser: argparse.ArgumentParser, options: _KindOptions
) -> None:
    """One flag per declared option (e.g. `--num-quantizers` of
    `tf_vqvae.options.QUANTIZER_KINDS`), its help naming the kinds that
    take it."""
    for name, (option, kinds) in options.declarations().items():
        flag = options.flag_prefix + name.replace("_", "-")
        shown = OFF if option.default is None else option.default
        if isinstance(shown, tuple):
            shown = " ".join(map(str, shown))
        kwargs = dict(
            default=None,
            dest=options.dest_prefix + name,
            help=f"{option.help} (--{options.kind_field} {'/'.join(kinds)}; "
            f"default: {shown})",
        )
        if option.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif option.type is tuple:
            kwargs.update(type=int, nargs="+", metavar="N")
        elif option.off:
            kwargs.update(type=int_or_off, metavar=f"{{N,{OFF}}}")
        else:
            kwargs.update(type=option.type, choices=option.choices)
            if option.choices is None:
                kwargs["metavar"] = "N" if option.type is int else "X"
        parser.add_argument(flag, **kwargs)


def _kind_options(
    args: argparse.Namespace, base, kind: str, options: _KindOptions
) -> dict:
    """`base`'s options when it has the same kind, then the flags given;
    a flag of another kind's option is an error."""
    same = getattr(base, options.kind_field) == kind
    values = dict(getattr(base, options.field)) if same else {}
    for name, (option, kinds) in options.declarations().items():
        value = getattr(args, options.dest_prefix + name, None)
        if value is None:
            continue
        if kind not in kinds:
            flag = options.flag_prefix + name.replace("_", "-")
            raise ConfigError(
                f"{flag} is an option of --{options.kind_field} "
                f"{' or '.join(kinds)}, not of {kind!r}. "
                f"Received: {name}={value!r}"
            )
        if option.off and value == OFF:
            value = None
        values[name] = tuple(value) if isinstance(value, list) else value
    return values


def config_from_args(
    args: argparse.Namespace, config_class: type = TrainConfig
):
    """The config: `--config` or `--preset`, else the saved one of the run
    being resumed, else the defaults; then every flag that was given."""
    saved = saved_config_path(args.model_dir, config_class)
    if args.config is not None:
        base = load_config(args.config, config_class)
    elif args.preset is not None:
        base = PRESETS[args.preset].config(config_class)
    elif os.path.exists(saved):
        base = load_config(saved, config_class)
    elif config_class is TrainConfig and _is_audio(args.dataset):
        base = audio_train_config()
    else:
        base = config_class()
    overrides = {}
    names = {field.name for field in dataclasses.fields(config_class)}
    kind_options = [
        options
        for options in (_QUANTIZER_OPTIONS, _DECODER_OPTIONS)
        if options.field in names
    ]
    for name in names - {options.field for options in kind_options}:
        value = getattr(args, name)
        if value is not None:
            overrides[name] = tuple(value) if isinstance(value, list) else value
    for options in kind_options:
        kind = overrides.get(
            options.kind_field, getattr(base, options.kind_field)
        )
        overrides[options.field] = _kind_options(args, base, kind, options)
    return dataclasses.replace(base, **overrides)


def _add_wav_arguments(
    parser: argparse.ArgumentParser, verb: str, speaker: dict
) -> None:
    """`input` and `output` WAV files, `--speaker` (argparse keywords
    `speaker`) and `--seed`: what `reconstruct` and `convert` take."""
    parser.add_argument("input", help=f"The WAV file to {verb}.")
    parser.add_argument("output", help="The .wav file to write.")
    parser.add_argument("--speaker", **speaker)
    _add_options(
        parser,
        (
            "--seed",
            int,
            0,
            "Generation seed of a generative decoder (train --decoder "
            "wavenet): the same seed writes the same file.",
        ),
    )


def _is_audio(dataset: str | None) -> bool:
    """Whether `--dataset` names an audio dataset (the audio defaults
    apply: `training.config.AUDIO_DEFAULTS`)."""
    if dataset is None:
        return False
    from tf_vqvae.data import dataset_modality

    return dataset_modality(dataset) == "audio"


def _add_command(
    commands, name: str, help: str, description: str, model_dir: bool = True
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help, description=description)
    if model_dir:
        parser.add_argument(
            "--model-dir", required=True, help="Directory of the run."
        )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="Show the Python traceback of an unexpected error (also "
        f"{DEBUG_VARIABLE}=1).",
    )
    return parser


def _add_options(parser: argparse.ArgumentParser, *options: tuple) -> None:
    """Adds `(flag, type, default, help)` options; the help shows the
    default unless it says one."""
    for flag, kind, default, text in options:
        if default is not None and "default" not in text.lower():
            text += f" (default: {default})"
        parser.add_argument(flag, type=kind, default=default, help=text)


def _add_recover_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recover-config",
        action="store_true",
        help="Only write a lost config.json back from the newest checkpoint "
        "(every checkpoint keeps the run's config), then exit; run the "
        "command again without it to resume.",
    )


def _add_skip_bad_files(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--skip-bad-files",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"Leave out files of {what} (a 'folder:' dataset) that are not "
        "usable images, and print how many; --no-skip-bad-files stops at "
        "the first (default: as the model was trained).",
    )


class _Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one line, like every other
    failure of `vqvae` (argparse prints the whole usage before them).
    Subcommand parsers are of this class too (`add_subparsers` makes them
    of the parser's own class)."""

    # The parsers of the subcommands by name (set on the top-level parser).
    subcommands: dict | None = None

    def error(self, message: str):
        self.exit(
            EXIT_USAGE,
            f"{self.prog}: error: {message} (see {self.prog} --help)\n",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vqvae",
        description="Train, sample, evaluate and export VQ-VAE models.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.subcommands = commands.choices

    train_parser = _add_command(
        commands,
        "train",
        "Train a VQ-VAE (resumes if --model-dir holds a run).",
        "Train a VQ-VAE with model.fit. Running it again on the same "
        "--model-dir resumes from the last checkpoint. Options that can be "
        f"turned off take {OFF!r}.",
    )
    add_config_flags(train_parser, TrainConfig)
    _add_recover_config(train_parser)
    prior_parser = _add_command(
        commands,
        "train-prior",
        "Train a prior on the codes of a trained VQ-VAE (PixelCNN for "
        "images, WaveNet for audio).",
        "Train an autoregressive prior on the codes of --model-dir's VQ-VAE "
        "over its training split: a gated PixelCNN over 2D codes (images), "
        "a WaveNet over 1D codes (audio), over every level of residual VQ "
        f"codes (--quantizer rvq); writes --model-dir/{PRIOR_DIR}. Running "
        "it again resumes.",
    )
    add_config_flags(prior_parser, PriorConfig)
    _add_recover_config(prior_parser)

    sample_parser = _add_command(
        commands,
        "sample",
        "Decode samples of the prior into a PNG grid (audio: WAV files).",
        "Sample codes from the prior and decode them to images, or for an "
        "audio model to 16 kHz WAV files, one per sample.",
    )
    _add_options(
        sample_parser,
        (
            "--n",
            int,
            64,
            f"Number of samples, 1 to {MAX_SAMPLES}, drawn and written "
            f"{SAMPLES_PER_GRID} per PNG grid (more than {SAMPLES_PER_GRID}: "
            "OUTPUT-000.png, OUTPUT-001.png, ... for --output OUTPUT.png); "
            "audio: one WAV file each, OUTPUT-000.wav, ... (-SPEAKER.wav "
            "when a speaker is chosen).",
        ),
        (
            "--seed",
            int,
            0,
            "Sampling seed of the prior and of a generative decoder (the "
            "same seed gives the same files).",
        ),
        ("--temperature", float, 1.0, "Divides the prior's logits."),
        (
            "--output",
            str,
            None,
            f"PNG path (default: MODEL_DIR/{SAMPLES_FILE}); a .wav path "
            f"for audio (default: MODEL_DIR/{AUDIO_SAMPLES_FILE}).",
        ),
        (
            "--label",
            str,
            None,
            "A class of a class-conditional prior (train-prior "
            "--class-conditional): its name or id. Default: N samples of "
            "every class, one row per class. Audio: a speaker (of a "
            "speaker-conditional prior and of a decoder with speakers).",
        ),
    )

    evaluate_parser = _add_command(
        commands,
        "evaluate",
        "Reconstruction, codebook and prior metrics on a split.",
        "Evaluate --model-dir's VQ-VAE (and prior, if trained) on a split "
        "(audio: bits per sample, SNR and, with phoneme alignments, "
        "phoneme discovery on test and test_voices); prints the metrics "
        f"and writes MODEL_DIR/{EVALUATION_FILE}.",
    )
    _add_options(
        evaluate_parser,
        ("--dataset", str, None, "Default: the training dataset."),
        (
            "--data-dir",
            str,
            None,
            "Where TensorFlow Datasets looks for a prepared tfds: dataset "
            "(default: the training run's).",
        ),
        ("--split", str, "test", "The split."),
        (
            "--batch-size",
            int,
            256,
            "Images per batch (audio: segments, at most 2**17 samples).",
        ),
    )
    _add_skip_bad_files(evaluate_parser, "the split")

    inspect_parser = _add_command(
        commands,
        "inspect",
        "What each code stands for: input patches per code, usage plot.",
        "Encode a split with --model-dir's VQ-VAE and write "
        f"MODEL_DIR/{CODES_DIR}/: usage.png (positions per code), "
        "top_codes.png and bottom_codes.png (the most and least used codes, "
        "one row per code of the input patches whose encoder output is "
        "nearest to the code's vector) and usage.json.",
    )
    _add_options(
        inspect_parser,
        ("--dataset", str, None, "Default: the training dataset."),
        (
            "--data-dir",
            str,
            None,
            "Where TensorFlow Datasets looks for a prepared tfds: dataset "
            "(default: the training run's).",
        ),
        ("--split", str, "train", "The split."),
        ("--num-codes", int, 8, "Codes per picture (most / least used)."),
        ("--patches-per-code", int, 16, "Patches in each code's row."),
        ("--max-images", int, 10_000, "Images encoded, spread over the split."),
    )

    export_parser = _add_command(
        commands,
        "export",
        "SavedModel for TF Serving (and TFLite files with --tflite).",
        "Export --model-dir's VQ-VAE (and its prior, when trained) as a "
        "SavedModel at OUT/NAME/VERSION, written under a temporary name and "
        "renamed, with a MANIFEST.json of SHA-256 digests. Reads no dataset.",
    )
    _add_options(
        export_parser,
        ("--out", str, None, f"Default: MODEL_DIR/{EXPORT_DIR}."),
        ("--model-name", str, "vqvae", "The SavedModel's name."),
        ("--version", int, 1, "The SavedModel's version."),
        (
            "--max-batch-size",
            int,
            64,
            "Larger requests are refused in the graph.",
        ),
        (
            "--calibration-data",
            str,
            None,
            "Images that calibrate the int8 decoder: a .npy file (n, "
            "height, width, channels) or a dataset such as folder:PATH "
            f"(default: MODEL_DIR/{CALIBRATION_FILE}, from vqvae train).",
        ),
    )
    export_parser.add_argument(
        "--tflite",
        action="store_true",
        help="Also write builtins-only .tflite files (decoder, encoder, "
        "prior sampler) to OUT/NAME_tflite.",
    )
    export_parser.add_argument(
        "--quantization",
        nargs="+",
        choices=tuple(TFLITE_QUANTIZATIONS),
        default=None,
        help="TFLite decoder variants, with --tflite: "
        f"{describe_choices(TFLITE_QUANTIZATIONS)} (default: all).",
    )
    export_parser.add_argument(
        "--overwrite", action="store_true", help="Replace an existing version."
    )
    _add_skip_bad_files(export_parser, "--calibration-data")

    reconstruct_parser = _add_command(
        commands,
        "reconstruct",
        "Turn a WAV file into its reconstruction by an audio VQ-VAE.",
        "Encode a WAV file (any sample rate, down-mixed, resampled to "
        "16 kHz) with --model-dir's audio VQ-VAE and write the decoded "
        "waveform as a 16 kHz WAV of the same duration; prints its SNR.",
    )
    _add_wav_arguments(
        reconstruct_parser,
        "encode",
        dict(
            default=None,
            help="Speaker-conditioned models (train --speaker-conditioning): "
            "decode as this speaker, a name of MODEL_DIR/speakers.json or an "
            "id (another voice than the input's converts it).",
        ),
    )

    convert_parser = _add_command(
        commands,
        "convert",
        "Say a WAV file's speech again in another voice.",
        "Encode a WAV file (any sample rate, down-mixed, resampled to "
        "16 kHz) with --model-dir's speaker-conditioned audio VQ-VAE "
        "(train --speaker-conditioning) and decode its codes as --speaker: "
        "the same words in that voice, a 16 kHz WAV of the same duration.",
    )
    _add_wav_arguments(
        convert_parser,
        "convert",
        dict(
            required=True,
            help="The target voice: a name of MODEL_DIR/speakers.json or an "
            "id.",
        ),
    )

    verify_parser = _add_command(
        commands,
        "verify",
        "Check an export against its MANIFEST.json and signatures.",
        "Verify a SavedModel version directory, a model directory (all "
        "versions) or a TFLite export directory: every file's SHA-256 and "
        "the signature contract. Exit 0 if it matches, 1 if not.",
        model_dir=False,
    )
    verify_parser.add_argument("path")

    demo = PRESETS["demo"]
    speech_demo = PRESETS["speech-demo"]
    demo_parser = _add_command(
        commands,
        "demo",
        "The whole pipeline on offline photos or speech, in a few minutes.",
        "Train a VQ-VAE on 32x32 tiles of scikit-image's photos (--dataset "
        "speech: on the eSpeak speech corpus), train its prior, sample, "
        "evaluate and export a SavedModel and TFLite files; prints where "
        "each artifact is (speech: the WAV files, and a held-out utterance "
        "with its reconstruction). The configs are `--preset demo` (speech: "
        "`--preset speech-demo`) of train and train-prior. Running it again "
        "resumes.",
        model_dir=False,
    )
    demo_parser.add_argument(
        "--dataset",
        choices=("photos", "speech"),
        default="photos",
        help="photos (images) or speech (audio) (default: photos).",
    )
    demo_parser.add_argument(
        "--precision",
        choices=tuple(PRECISIONS),
        default=None,
        help="Of the VQ-VAE and its prior: "
        f"{describe_choices(PRECISIONS)} (default: the preset's, "
        f"{demo.train.precision}).",
    )
    _add_options(
        demo_parser,
        (
            "--model-dir",
            str,
            None,
            "Directory of the run (default: runs/demo, speech: "
            "runs/speech-demo).",
        ),
        (
            "--epochs",
            int,
            None,
            f"VQ-VAE epochs (default: the preset's: {demo.train.epochs}, "
            f"speech: {speech_demo.train.epochs}).",
        ),
        (
            "--prior-epochs",
            int,
            None,
            f"Prior epochs (default: the preset's: {demo.prior.epochs}, "
            f"speech: {speech_demo.prior.epochs}).",
        ),
        (
            "--steps-per-epoch",
            int,
            None,
            "Default: one pass over the photos (speech: the preset's).",
        ),
    )
    return parser


# ----------------------------------------------------------------- running
def _run_training(args: argparse.Namespace) -> int:
    prior = args.command == "train-prior"
    commands = _commands()
    if args.recover_config:
        path, source = commands.recover_config(args.model_dir, prior=prior)
        print(
            f"vqvae: wrote {path} from {source}; resume with: vqvae "
            f"{args.command} --model-dir {args.model_dir}",
            flush=True,
        )
        return 0
    config = config_from_args(args, PriorConfig if prior else TrainConfig)
    train = commands.train_prior if prior else commands.train
    started = time.time()
    result = train(config, args.model_dir)
    what = "the prior " if prior else ""
    trained = result.step - result.start_step
    if result.start_step == 0:
        summary = f"trained {what}{trained} steps"
    elif trained:
        summary = f"trained {what}{trained} more steps (now at {result.step})"
    else:
        summary = f"trained {what}no more steps (already at {result.step})"
    print(
        f"vqvae: {summary} in {time.time() - started:.0f} s.",
        flush=True,
    )
    _print_artifacts(result.artifacts)
    return 0


def _run_sample(args: argparse.Namespace) -> int:
    paths = _commands().sample(
        args.model_dir,
        n=args.n,
        seed=args.seed,
        temperature=args.temperature,
        output=args.output,
        label=args.label,
    )
    wav = paths[0].endswith(".wav")
    of = f" of class {args.label}" if args.label is not None else ""
    classes = os.path.join(args.model_dir, PRIOR_DIR, CLASSES_FILE)
    if args.label is None and os.path.isfile(classes):
        with open(classes) as file:
            count = len(json.load(file)["class_names"])
        if wav:  # one file per sample; held-out speakers are left out
            count = len(paths) // args.n
        kind = "speakers" if wav else "classes"
        of = f" of each of {count} {kind}" + ("" if wav else " (a row each)")
    where = paths[0]
    if len(paths) > 1:
        kind = "WAV files" if wav else "grids"
        where += f" ... {paths[-1]} ({len(paths)} {kind})"
    print(f"vqvae: {args.n} samples{of} in {where}", flush=True)
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    metrics = _commands().evaluate(
        args.model_dir,
        args.dataset,
        args.split,
        args.batch_size,
        skip_bad_files=args.skip_bad_files,
        data_dir=args.data_dir,
    )
    _print_metrics(metrics)
    print(
        f"vqvae: metrics in {os.path.join(args.model_dir, EVALUATION_FILE)}",
        flush=True,
    )
    return 0


def _run_inspect(args: argparse.Namespace) -> int:
    written = _commands().inspect(
        args.model_dir,
        args.dataset,
        args.split,
        num_codes=args.num_codes,
        patches_per_code=args.patches_per_code,
        max_images=args.max_images,
        data_dir=args.data_dir,
    )
    print("vqvae: codes inspected", flush=True)
    _print_artifacts(written)
    return 0


def _run_export(args: argparse.Namespace) -> int:
    tflite_only = [
        flag
        for flag, value in (
            ("--quantization", args.quantization),
            ("--calibration-data", args.calibration_data),
        )
        if value is not None
    ]
    if tflite_only and not args.tflite:
        are = "are options" if len(tflite_only) > 1 else "is an option"
        print(
            f"vqvae export: error: {' and '.join(tflite_only)} {are} of "
            "--tflite (the TFLite decoders); add --tflite or leave "
            f"{'them' if len(tflite_only) > 1 else 'it'} out.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    exported = _commands().export(
        args.model_dir,
        out_dir=args.out,
        model_name=args.model_name,
        version=args.version,
        tflite=args.tflite,
        quantization=tuple(args.quantization or TFLITE_QUANTIZATIONS),
        max_batch_size=args.max_batch_size,
        overwrite=args.overwrite,
        calibration_data=args.calibration_data,
        skip_bad_files=args.skip_bad_files,
    )
    print("vqvae: exported", flush=True)
    _print_artifacts(exported)
    return 0


def _run_reconstruct(args: argparse.Namespace) -> int:
    result = _commands().reconstruct(
        args.model_dir,
        args.input,
        args.output,
        speaker=args.speaker,
        seed=args.seed,
    )
    speaker = result["speaker"]
    snr = result["snr_db"]
    print(
        f"vqvae: {result['seconds']:.2f} s ({result['codes']} codes) "
        f"reconstructed{f' as speaker {speaker}' if speaker else ''} in "
        f"{result['output']}" + ("" if snr is None else f" (SNR {snr:.1f} dB)"),
        flush=True,
    )
    return 0


def _run_convert(args: argparse.Namespace) -> int:
    result = _commands().convert(
        args.model_dir,
        args.input,
        args.output,
        speaker=args.speaker,
        seed=args.seed,
    )
    print(
        f"vqvae: {result['seconds']:.2f} s ({result['codes']} codes) "
        f"converted to speaker {result['speaker']} in {result['output']}",
        flush=True,
    )
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    commands = _commands()
    try:
        commands.verify(args.path)
    except commands.VerificationError as error:
        print(f"vqvae verify: FAILED: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"vqvae verify: {args.path} matches its manifest", flush=True)
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    result = _commands().demo(
        args.model_dir,
        epochs=args.epochs,
        prior_epochs=args.prior_epochs,
        steps_per_epoch=args.steps_per_epoch,
        dataset=args.dataset,
        precision=args.precision,
    )
    timings = result["timings"]
    print(
        f"vqvae demo: done in {timings['total']:.0f} s (VQ-VAE "
        f"{timings['train']:.0f} s, prior {timings['train_prior']:.0f} s).",
        flush=True,
    )
    _print_metrics(result["metrics"])
    print("vqvae demo: artifacts", flush=True)
    _print_artifacts(result["artifacts"])
    return 0


def _print_metrics(metrics: dict) -> None:
    width = max(len(name) for name in metrics)
    for name, value in metrics.items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        if value is None:
            continue
        print(f"  {name:<{width}}  {shown}", flush=True)


def _print_artifacts(artifacts: dict) -> None:
    width = max(len(name) for name in artifacts)
    for name, path in artifacts.items():
        print(f"  {name:<{width}}  {path}", flush=True)


_RUNNERS = {
    "train": _run_training,
    "train-prior": _run_training,
    "sample": _run_sample,
    "evaluate": _run_evaluate,
    "inspect": _run_inspect,
    "export": _run_export,
    "reconstruct": _run_reconstruct,
    "convert": _run_convert,
    "verify": _run_verify,
    "demo": _run_demo,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        tokens = sys.argv[1:] if argv is None else list(argv)
        command = tokens.index(args.command) if args.command else len(tokens)
        if all(token in tokens[command + 1 :] for token in unknown):
            # Said by the command's parser, whose --help lists its options.
            parser.subcommands[args.command].error(
                f"unrecognized arguments: {' '.join(unknown)}"
            )
        parser.error(
            f"unrecognized arguments: {' '.join(unknown)} (a command's "
            "options go after the command)"
        )
    if args.command is None:
        parser.print_help()
        return 0
    debug = args.debug or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    prefix = f"vqvae {args.command}"
    with noting_interrupts() as interrupts:
        try:
            commands = _commands()
            try:
                return _RUNNERS[args.command](args)
            except commands.USAGE_ERRORS as error:
                if interrupts:
                    raise KeyboardInterrupt from error
                print(f"{prefix}: error: {error}", file=sys.stderr)
                return EXIT_USAGE
            except commands.FAILURES as error:
                if interrupts:
                    raise KeyboardInterrupt from error
                print(f"{prefix}: error: {error}", file=sys.stderr)
                return EXIT_FAILED
        except KeyboardInterrupt as error:
            if debug:
                raise
            # Training's interruption says where it stopped and how to
            # resume; a Ctrl-C anywhere else only that it happened.
            print(f"{prefix}: {str(error) or 'interrupted'}", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as error:
            if debug:
                raise
            if interrupts or is_interrupt(error):
                print(f"{prefix}: interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
            print(
                f"{prefix}: error: {_one_line(error)} (run with --debug for "
                "the traceback)",
                file=sys.stderr,
            )
            return EXIT_FAILED


def _one_line(error: BaseException) -> str:
    """`Type: first line of the message`."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return type(error).__name__ + (f": {lines[0]}" if lines else "")


if __name__ == "__main__":
    sys.exit(main())
