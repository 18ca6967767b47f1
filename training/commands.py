"""The `vqvae` commands as Python functions: train, train a prior, sample,
evaluate, export, and the demo that runs them all.

    from tf_vqvae.training import commands
    from tf_vqvae.training.config import PRESETS

    result = commands.train(PRESETS["demo"].train, "runs/photos")
    commands.train_prior(PRESETS["demo"].prior, "runs/photos")
    commands.sample("runs/photos", n=64, seed=0)   # [runs/photos/samples.png]
    metrics = commands.evaluate("runs/photos")
    commands.export("runs/photos", tflite=True)

`tf_vqvae.training.cli` parses the flags into these calls and prints their
results. Bad input raises `UsageError`, `ConfigError`, `DatasetError` or
`CheckpointError` (the CLI's exit code 2) before anything is written; a
non-finite loss raises `NonFiniteLossError` (exit code 1). A damaged
`model.keras` or `prior.keras` is rebuilt from the run's newest readable
checkpoint, with a line on stderr (`artifacts.load_vqvae(fallback=True)`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from tf_vqvae import atomic, sampling
from tf_vqvae import audio as audio_io
from tf_vqvae.arg_checks import check_int
from tf_vqvae.audio import write_wav
from tf_vqvae.data import (
    BadAudioFileError,
    BadImageFileError,
    DatasetError,
    Images,
    Utterances,
    audio_pipeline,
    dataset_modality,
    evaluation_batches,
    first_images,
    load_labels,
    parse_dataset,
)
from tf_vqvae.evaluation import (
    codes_dataset,
    evaluate_audio_model,
    evaluate_model,
    nearest_positions,
    utterance_codes,
)
from tf_vqvae.export import (
    VerificationError,
    export_saved_model,
    export_tflite,
)
from tf_vqvae.export import verify as verify_export
from tf_vqvae.export.common import check_model
from tf_vqvae.export.saved_model import check_names
from tf_vqvae.options import OFF, TFLITE_QUANTIZATIONS
from tf_vqvae.precision import resolve as resolve_precision
from tf_vqvae.speech_metrics import (
    fit_code_to_phoneme,
    phoneme_accuracy,
    phonemes_per_code,
)
from tf_vqvae.training import artifacts
from tf_vqvae.training.callbacks import (
    CodebookHealth,
    PriorSamples,
    prior_sample_fn,
    tensorboard_callbacks,
)
from tf_vqvae.training.checkpointing import (
    CheckpointError,
    NonFiniteLossError,
    TrainingInterrupted,
    WriteError,
)
from tf_vqvae.training.config import (
    MAX_SAMPLES,
    MAX_SEED,
    PRESETS,
    SAMPLES_PER_GRID,
    ConfigError,
    PriorConfig,
    TrainConfig,
    load_config,
    saved_config_path,
)
from tf_vqvae.training.layout import (
    AUDIO_SAMPLES_FILE,
    CALIBRATION_FILE,
    CLASSES_FILE,
    CODEBOOK_HEALTH_FILE,
    CODES_DIR,
    EVALUATION_FILE,
    EXPORT_DIR,
    MODEL_FILE,
    PRIOR_DIR,
    PRIOR_FILE,
    RECONSTRUCTIONS_AUDIO_FILE,
    RECONSTRUCTIONS_FILE,
    SAMPLES_FILE,
)
from tf_vqvae.training.locking import (
    DirectoryLock,
    LockedError,
    NotWritableError,
)
from tf_vqvae.training.runs import (
    AudioSegments,
    Run,
    TrainResult,
    UsageError,
)
from tf_vqvae.training.runs import recover_config as recover_run_config
from tf_vqvae.visualize import (
    code_grid,
    save_image_grid,
    side_by_side,
    usage_plot,
)
from tf_vqvae.vqvae import VQVAE, to_unit_range


class CodebookCollapseError(RuntimeError):
    """`vqvae train --on-collapse stop` stopped a run whose codebook
    collapsed (exit code 1)."""


# What a command raises for bad input (exit code 2), for a failed run (exit
# code 1), and for Ctrl-C (exit code 130, `TrainingInterrupted` is a
# `KeyboardInterrupt`).
USAGE_ERRORS = (
    UsageError,
    ConfigError,
    DatasetError,
    CheckpointError,
    LockedError,
    NotWritableError,
)
FAILURES = (NonFiniteLossError, WriteError, CodebookCollapseError)
NUM_VALIDATION_IMAGES = 16
# Audio segments per batch when encoding a split (the prior's codes), and
# waveform samples per batch at most when decoding (`sample`, `evaluate`:
# the decoder's logits hold 256 floats for each).
AUDIO_BATCH_SIZE = 32
AUDIO_SAMPLES_PER_BATCH = 2**17
# Validation segments of an audio run (TensorBoard, reconstructions.wav).
NUM_VALIDATION_CLIPS = 4
# `vqvae demo --dataset D`: the preset of each dataset.
DEMO_PRESETS = {"photos": "demo", "speech": "speech-demo"}
# Where the speech demo writes its held-out utterance and reconstruction.
DEMO_DIR = "demo"

__all__ = [
    "FAILURES",
    "CodebookCollapseError",
    "USAGE_ERRORS",
    "TrainResult",
    "TrainingInterrupted",
    "UsageError",
    "VerificationError",
    "convert",
    "demo",
    "encode_images",
    "evaluate",
    "export",
    "inspect",
    "reconstruct",
    "recover_config",
    "sample",
    "train",
    "train_prior",
    "verify",
]


def train(
    config: TrainConfig, model_dir: str, verbose: int | str = 1
) -> TrainResult:
    """Trains (or resumes) a VQ-VAE as `config` says, writing into `model_dir`.

    Order: the run's checks (`Run`), data, `Run.start` (model, optimizer,
    compile, restore), `fit` with TensorBoard callbacks and `CodebookHealth`
    (`config.on_collapse`; its verdicts in `codebook_health.json`), artifacts
    (`model.keras`, `calibration.npy`, `reconstructions.png`). Every check of
    the input comes before the first file is written.

    The dataset says the modality (`tf_vqvae.data.dataset_modality`). On
    audio the model is a 1D `VQVAE(modality="audio")` trained on random
    crops of `config.segment_length` samples (`AudioSegments`), with the
    dataset's speakers (`speakers.json`) conditioning the decoder when
    `config.speaker_conditioning`; TensorBoard gets the clips
    (`ReconstructionAudio`) and the run `reconstructions.wav` (each
    original segment, then its reconstruction) instead of pictures.

    Args:
        config: the options.
        model_dir: the run's directory (created; resumed if it holds one).
        verbose: `fit`'s verbosity (1: progress bar).

    Returns:
        A `TrainResult`.

    Raises:
        UsageError, ConfigError, DatasetError, CheckpointError: bad input
            (nothing written).
        LockedError: another command holds `model_dir`.
        NotWritableError: `model_dir` cannot be created or written.
        NonFiniteLossError: the loss or weights became non-finite; the model
            holds the last good checkpoint's state.
        WriteError: a checkpoint or artifact could not be written (disk
            full); the previous checkpoint stays the newest.
        TrainingInterrupted: Ctrl-C; a checkpoint was saved.
        CodebookCollapseError: `config.on_collapse == "stop"` and an
            epoch's code usage fell below the thresholds (checkpointed; no
            `model.keras`).
    """
    with Run(config, model_dir) as run:
        return _train(run, config, verbose)


def _train(run: Run, config: TrainConfig, verbose: int | str) -> TrainResult:
    modality = dataset_modality(config.dataset, config.data_dir)
    problem = config.modality_errors(modality)
    if problem is not None:
        raise UsageError(problem)
    if modality == "audio":
        return _train_audio(run, config, verbose)
    images = artifacts.load_split(
        config.dataset, "train", config.data_dir, config.skip_bad_files
    )
    validation = _validation_images(config, images)
    run.steps_per_epoch(images)
    factor = 2**config.num_downsamples
    height, width = images.image_shape[:2]
    if height % factor or width % factor:
        raise UsageError(
            f"`dataset` images are {height}x{width}, not divisible by "
            f"2**num_downsamples={factor}; crop or resize them (e.g. into a "
            "'folder:' dataset) or change --num-downsamples. "
            f"Received: image_shape={images.image_shape}"
        )
    model = run.start(
        lambda: VQVAE(**config.model_kwargs()),
        images.image_shape,
        jit_compile=config.jit_compile,
    )
    callbacks = tensorboard_callbacks(
        run.logs_dir, validation, write_graph=False
    )
    # Keras all-reduces (MEAN) the first batch to build the model
    # symbolically under multi-worker, and collective ops reject uint8:
    # feed the [0, 1] floats the model would compute from it anyway.
    to_float = to_unit_range if config.strategy == "multi-worker" else None
    step, history, written = _fit_and_save(
        run, config, images, callbacks, verbose, map_fn=to_float
    )
    written["calibration"] = os.path.join(run.write_dir, CALIBRATION_FILE)
    if not os.path.isfile(written["calibration"]):
        artifacts.write_calibration_sample(images, run.write_dir)
    written["reconstructions"] = _save_reconstructions(
        model,
        validation,
        os.path.join(run.write_dir, RECONSTRUCTIONS_FILE),
    )
    return TrainResult(
        model=model,
        step=step,
        history=history,
        artifacts=written,
        start_step=run.start_step,
    )


def _fit_and_save(
    run: Run, config: TrainConfig, data, callbacks, verbose, map_fn=None
) -> tuple[int, dict, dict]:
    """`run.fit` with `CodebookHealth` (unless `on_collapse` is off), then
    `model.keras`; returns `(step, history, artifacts)`."""
    health = None
    if config.on_collapse != OFF:
        health = CodebookHealth(
            config.on_collapse,
            min_usage=config.min_code_usage,
            min_perplexity=config.min_perplexity,
            log_dir=run.logs_dir,
            summary_path=os.path.join(run.write_dir, CODEBOOK_HEALTH_FILE),
        )
        callbacks = [*callbacks, health]
    step, history = run.fit(data, callbacks, verbose, map_fn=map_fn)
    if health is not None and health.stopped_epoch is not None:
        raise CodebookCollapseError(
            f"Training stopped after epoch {health.stopped_epoch + 1} of "
            f"{config.epochs} (step {step}, checkpointed in "
            f"{run.state.directory}). {health.verdict.message} Train again "
            "in a new --model-dir with those options, or resume this one "
            "with --on-collapse warn."
        )
    written = run.finish("model", MODEL_FILE)
    if health is not None:
        written["codebook_health"] = health.summary_path
    return step, history, written


def _train_audio(
    run: Run, config: TrainConfig, verbose: int | str
) -> TrainResult:
    utterances = artifacts.load_audio_split(
        config.dataset, "train", config.data_dir, config.skip_bad_files
    )
    data = AudioSegments(utterances, config.segment_length)
    waveforms, speakers = _validation_audio(config, utterances)
    run.steps_per_epoch(data)
    names = utterances.speaker_names
    example_shape = data.example_shape
    if config.speaker_conditioning:
        example_shape = {"audio": example_shape, "speaker": ()}
    model = run.start(
        lambda: VQVAE(**config.model_kwargs("audio", len(names))),
        example_shape,
        jit_compile=config.jit_compile,
    )
    trained = sorted(set(np.asarray(utterances.speakers).tolist()))
    speakers_path = artifacts.write_speaker_names(
        names, config.dataset, run.write_dir, tuple(names[i] for i in trained)
    )
    callbacks = tensorboard_callbacks(
        run.logs_dir,
        waveforms,
        write_graph=False,
        speakers=speakers,
        seed=config.seed,
    )
    step, history, written = _fit_and_save(
        run, config, data, callbacks, verbose
    )
    written["speakers"] = speakers_path
    written["calibration"] = os.path.join(run.write_dir, CALIBRATION_FILE)
    if not os.path.isfile(written["calibration"]):
        artifacts.write_calibration_sample(
            utterances, run.write_dir, config.segment_length
        )
    written["reconstructions"] = _save_audio_reconstructions(
        model,
        waveforms,
        speakers,
        os.path.join(run.write_dir, RECONSTRUCTIONS_AUDIO_FILE),
        config.seed,
    )
    return TrainResult(
        model=model,
        step=step,
        history=history,
        artifacts=written,
        start_step=run.start_step,
    )


def _validation_audio(
    config: TrainConfig, train: Utterances
) -> tuple[np.ndarray, np.ndarray]:
    """A fixed batch of `NUM_VALIDATION_CLIPS` segments spread over the
    test split (the training split without one), and their speakers. A
    bad file in the test split is an error like one in the training
    split."""
    _, _, named_split = parse_dataset(config.dataset)
    source = train
    if named_split is None:
        try:
            source = artifacts.load_audio_split(
                config.dataset, "test", config.data_dir, config.skip_bad_files
            )
        except BadAudioFileError:
            raise
        except DatasetError:
            source = train
        if len(source) == 0:
            source = train
    return artifacts.audio_segments(
        source, config.segment_length, NUM_VALIDATION_CLIPS
    )


def _save_audio_reconstructions(
    model, waveforms: np.ndarray, speakers: np.ndarray, path: str, seed: int
) -> str:
    """Writes one WAV: each original segment, 0.25 s of silence, its
    reconstruction (generated from `seed` by a generative decoder), 0.75 s
    of silence."""
    speaker = speakers if model.num_speakers else None
    reconstructions = model.decode(
        model.encode(waveforms),
        speaker=speaker,
        **sampling.decode_seed(model, seed, 0, len(waveforms)),
    )
    short = np.zeros(audio_io.SAMPLE_RATE // 4, np.float32)
    long = np.zeros(3 * audio_io.SAMPLE_RATE // 4, np.float32)
    pieces = []
    for original, reconstruction in zip(
        waveforms[..., 0], np.asarray(reconstructions)[..., 0]
    ):
        pieces += [original, short, reconstruction, long]
    return audio_io.write_wav(path, np.concatenate(pieces))


def reconstruct(
    model_dir: str,
    input_path: str,
    output_path: str,
    speaker: str | int | None = None,
    seed: int = 0,
) -> dict:
    """Turns a WAV file into its reconstruction by `model_dir`'s audio
    VQ-VAE: `decode(encode(x))`; a generative decoder (`decoder="wavenet"`)
    generates it from `seed` (the same seed, the same file).

    The input may have any sample rate and channels: it is down-mixed,
    resampled to 16 kHz (`tf_vqvae.audio.read_wav`, `resample`), clipped
    to [-1, 1], zero-padded to a multiple of the model's
    `downsampling_factor` (64 samples per code) and the output trimmed
    back to its length, written as 16 kHz PCM16 (`tf_vqvae.audio`).

    Args:
        model_dir: an audio run of `vqvae train`.
        input_path: a WAV file.
        output_path: the `.wav` to write (its directory must exist).
        speaker: for a speaker-conditioned model (required): a name from
            `speakers.json` or an id; decoding as another speaker than the
            one speaking converts the voice (`convert`).
        seed: 0 to `MAX_SEED`, the generation seed of a generative decoder
            (`sampling.example_seeds(seed, 0, 1)`); one-pass decoders do
            not use it.

    Returns:
        `{"output", "seconds", "codes", "speaker", "snr_db"}`: the written
        path, its duration, the number of codes, the speaker name used (or
        `None`) and the reconstruction's SNR against the 16 kHz input.

    Raises:
        UsageError: no trained model, an image model, a WAV that cannot be
            read, a bad `output_path`, an unknown `speaker`, `speaker` for a
            model without speakers or none for one with them, a bad `seed`.
    """
    _check_seed(seed)
    return _decode_wav(
        model_dir, input_path, output_path, speaker, "reconstruct", seed
    )


def convert(
    model_dir: str,
    input_path: str,
    output_path: str,
    speaker: str | int,
    seed: int = 0,
) -> dict:
    """Says a WAV file's speech again in another voice: `model_dir`'s
    speaker-conditioned audio VQ-VAE encodes it and decodes its codes as
    `speaker` (`VQVAE.convert_voice`; section 4.3 of the paper).

    The input is read, resampled and padded as by `reconstruct`; the output
    has the input's duration, 16 kHz PCM16.

    Args:
        model_dir: an audio run of `vqvae train --speaker-conditioning`.
        input_path: a WAV file (any voice: the codes do not depend on it).
        output_path: the `.wav` to write (its directory must exist).
        speaker: the target voice: a name from `model_dir/speakers.json`
            or an id in `[0, num_speakers)`.
        seed: the generation seed of a generative decoder (as in
            `reconstruct`).

    Returns:
        `{"output", "seconds", "codes", "speaker"}`: the written path, its
        duration, the number of codes and the target speaker's name.

    Raises:
        UsageError: no trained model, an image model, a model without
            speakers, an unknown `speaker`, a WAV that cannot be read, a
            bad `output_path` or a bad `seed`.
    """
    _check_seed(seed)
    result = _decode_wav(
        model_dir, input_path, output_path, speaker, "convert", seed
    )
    del result["snr_db"]  # against the input's voice: not a quality measure
    return result


def _decode_wav(
    model_dir: str,
    input_path: str,
    output_path: str,
    speaker,
    command: str,
    seed: int,
) -> dict:
    """`reconstruct`'s and `convert`'s work: WAV in, decoded WAV out."""
    if not str(output_path).lower().endswith(".wav") or not os.path.isdir(
        os.path.dirname(output_path) or "."
    ):
        raise UsageError(
            "`output` must be a .wav path in an existing directory. "
            f"Received: output={output_path!r}"
        )
    vqvae, _ = artifacts.load_vqvae(model_dir, fallback=True)
    if vqvae.modality != "audio":
        raise UsageError(
            f"`model_dir` {model_dir!r} holds an image model; `vqvae "
            f"{command}` takes a run trained on audio (e.g. --dataset "
            f"speech). Received: model_dir={model_dir!r}"
        )
    if command == "convert" and vqvae.num_speakers is None:
        raise UsageError(
            f"`vqvae convert` needs a speaker-conditioned model, and "
            f"{model_dir!r}'s decoder has no speakers (train with "
            "--speaker-conditioning; `vqvae reconstruct` decodes without "
            f"one). Received: model_dir={model_dir!r}"
        )
    speaker_id, speaker_name = _speaker_id(model_dir, vqvae, speaker)
    try:
        waveform, rate = audio_io.read_wav(input_path)
    except audio_io.AudioFileError as error:
        raise UsageError(
            f"`input` must be a readable WAV file: {error}. "
            f"Received: input={input_path!r}"
        ) from None
    waveform = np.clip(audio_io.resample(waveform, rate), -1.0, 1.0)
    length = len(waveform)
    if length == 0:
        raise UsageError(
            f"`input` holds no samples. Received: input={input_path!r}"
        )
    generation = sampling.decode_seed(vqvae, seed, 0, 1)
    if speaker_id is None:
        factor = vqvae.downsampling_factor
        padded = np.pad(waveform, (0, -length % factor))[None, :, None]
        decoded = vqvae.decode(vqvae.encode(padded), **generation)
        output = np.asarray(decoded)[0, :length, 0]
    else:
        output = np.asarray(
            vqvae.convert_voice(waveform, speaker_id, **generation)
        )
    output = np.clip(output, -1.0, 1.0)
    audio_io.write_wav(output_path, output)
    noise = float(np.sum((output - waveform) ** 2))
    signal = float(np.sum(waveform**2))
    snr = 10 * np.log10(signal / noise) if noise > 0 and signal > 0 else None
    factor = vqvae.downsampling_factor
    return {
        "output": output_path,
        "seconds": length / audio_io.SAMPLE_RATE,
        "codes": -(-length // factor),
        "speaker": speaker_name,
        "snr_db": None if snr is None else float(snr),
    }


def _speaker_id(
    model_dir: str, vqvae, speaker
) -> tuple[int | None, str | None]:
    """`(id, name)` of `reconstruct`'s `speaker` (a name from
    `speakers.json`, else an id), `(None, None)` for a model without
    speakers."""
    if vqvae.num_speakers is None:
        if speaker is not None:
            raise UsageError(
                f"`speaker` needs a speaker-conditioned model, and "
                f"{model_dir!r}'s decoder has no speakers (train with "
                "--speaker-conditioning); leave out --speaker. "
                f"Received: speaker={speaker!r}"
            )
        return None, None
    names = artifacts.speaker_names(model_dir)
    if names is None or len(names) != vqvae.num_speakers:
        names = tuple(str(i) for i in range(vqvae.num_speakers))
    shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    if speaker is None:
        raise UsageError(
            f"`speaker` is needed: {model_dir!r}'s decoder is conditioned "
            f"on {len(names)} speakers; pass --speaker with a name ({shown}) "
            f"or an id in [0, {len(names)}). Received: speaker=None"
        )
    text = str(speaker).strip()
    if text in names:
        speaker_id = names.index(text)
    elif text.isdigit() and int(text) < len(names):
        speaker_id = int(text)
    else:
        raise UsageError(
            f"`speaker` must be a speaker name of {model_dir!r} ({shown}) or "
            f"an id in [0, {len(names)}). Received: speaker={speaker!r}"
        )
    _check_trained_speaker(model_dir, names, speaker_id, "speaker", speaker)
    return speaker_id, names[speaker_id]


def _check_trained_speaker(
    model_dir: str, names: tuple[str, ...], speaker_id: int, what: str, value
) -> None:
    """Refuses a speaker the training split does not have: its embedding
    (the decoder's, a speaker-conditional prior's) never trained."""
    trained = _trained_ids(model_dir, names)
    if speaker_id in trained:
        return
    shown = ", ".join(names[i] for i in trained[:10])
    shown += ", ..." if len(trained) > 10 else ""
    raise UsageError(
        f"`{what}` {names[speaker_id]!r} is not among the speakers of "
        f"{model_dir!r}'s training split, so its embedding never trained (a "
        "dataset's speaker table also holds its held-out voices); pass one "
        f"of the {len(trained)} trained speakers ({shown}). "
        f"Received: {what}={value!r}"
    )


def _trained_ids(model_dir: str, names: tuple[str, ...]) -> np.ndarray:
    """int32 ids of the trained speakers among `names`: all of them unless
    `names` are the run's `speakers.json` names (not ids standing in for
    them) and it says which trained."""
    trained = artifacts.trained_speaker_ids(model_dir)
    if not trained or artifacts.speaker_names(model_dir) != tuple(names):
        return np.arange(len(names), dtype="int32")
    return np.asarray(trained, "int32")


def _sample_speakers(
    model_dir: str, vqvae, class_names: tuple[str, ...] | None
) -> np.ndarray | None:
    """The label and speaker ids `PriorSamples` draws in turn: the trained
    speakers (a held-out voice's embeddings never trained), every class of
    an image prior, `None` (all) when nothing says which."""
    names = class_names
    if names is None and vqvae.num_speakers:
        names = artifacts.speaker_names(model_dir)
    return None if names is None else _trained_ids(model_dir, tuple(names))


def train_prior(
    config: PriorConfig, model_dir: str, verbose: int | str = 1
) -> TrainResult:
    """Trains (or resumes) a prior on the codes of `model_dir`'s VQ-VAE
    over its training split, writing into `model_dir/prior`.

    The kind of prior follows the rank of the code grid
    (`tf_vqvae.options.PRIOR_KINDS`, `artifacts.new_prior`): a
    `PixelCNNPrior` over the 2D codes of images, a `WaveNetPrior` over the
    1D codes of audio. An audio model's training utterances are cut into
    consecutive segments as long as its training examples (the last one of
    each utterance zero-padded), so the prior models code sequences of
    `model.code_shape(model.example_shape)` and its samples decode to
    waveforms of that length.

    The same lifecycle (`Run`) as `train`: checks, lock, checkpoints,
    resume, Ctrl-C, strategies and the non-finite guard.

    With `config.class_conditional`, the prior is conditioned on the
    training images' classes (`tf_vqvae.data.load_labels`) or on the
    utterances' speakers, whose names are written to
    `model_dir/prior/classes.json`.

    Returns:
        A `TrainResult` whose `model` is the prior.
    """
    with Run(config, model_dir, part=PRIOR_DIR) as run:
        vqvae, train_config = artifacts.load_vqvae(model_dir, fallback=True)
        codes, class_names = _training_codes(vqvae, train_config, config)
        # Residual VQ codes carry a trailing level axis.
        levels = vqvae.quantizer.num_levels
        example_shape = codes.image_shape
        grid_shape = example_shape[:-1] if levels > 1 else example_shape
        if class_names is not None:
            example_shape = {"codes": example_shape, "labels": ()}
        run.steps_per_epoch(codes)
        prior = run.start(
            lambda: artifacts.new_prior(
                vqvae.num_embeddings,
                grid_shape,
                None if class_names is None else len(class_names),
                config,
                num_levels=levels,
            ),
            example_shape,
        )
        if class_names is not None:
            artifacts.write_class_names(
                class_names, train_config.dataset, run.write_dir
            )
        ids = _sample_speakers(model_dir, vqvae, class_names)
        callbacks = [
            keras.callbacks.TensorBoard(run.logs_dir, write_graph=False),
            PriorSamples(
                run.logs_dir,
                prior_sample_fn(
                    prior, labels=None if class_names is None else ids
                ),
                vqvae,
                seed=config.seed,
                speakers=ids if vqvae.num_speakers else None,
            ),
        ]
        step, history = run.fit(codes, callbacks, verbose)
        written = run.finish("prior", PRIOR_FILE)
        if class_names is not None:
            written["prior_classes"] = os.path.join(run.write_dir, CLASSES_FILE)
    return TrainResult(
        model=prior,
        step=step,
        history=history,
        artifacts=written,
        start_step=run.start_step,
    )


def _training_codes(
    vqvae, train_config: TrainConfig, config: PriorConfig
) -> tuple[Images, tuple[str, ...] | None]:
    """The codes of the VQ-VAE's training split (`Images` of int32 grids,
    of `{"codes", "labels"}` dicts when class-conditional) and the class
    names (`None` unless `config.class_conditional`)."""
    skip = config.skip_bad_files or train_config.skip_bad_files
    if vqvae.modality == "audio":
        utterances = artifacts.load_audio_split(
            train_config.dataset, "train", train_config.data_dir, skip
        )
        segment = int(vqvae.example_shape[0])
        segments = audio_pipeline(
            utterances,
            segment,
            _audio_batch_size(segment, AUDIO_BATCH_SIZE),
            seed=config.seed,
            training=False,
        )
        codes = encode_images(
            vqvae, segments, with_labels=config.class_conditional
        )
        codes = dataclasses.replace(
            codes, name=f"codes of {utterances.name}", split="train"
        )
        names = utterances.speaker_names if config.class_conditional else None
        return codes, names
    images = artifacts.load_split(
        train_config.dataset, "train", train_config.data_dir, skip
    )
    codes = encode_images(vqvae, images)
    if not config.class_conditional:
        return codes, None
    classes = load_labels(
        train_config.dataset,
        "train",
        train_config.data_dir,
        skip_bad_files=skip,
    )
    labelled = tf.data.Dataset.zip(
        codes.dataset, tf.data.Dataset.from_tensor_slices(classes.labels)
    ).map(lambda c, label: {"codes": c, "labels": label})
    return dataclasses.replace(codes, dataset=labelled), classes.class_names


def _audio_batch_size(segment_length: int, requested: int) -> int:
    """`requested` segments a batch, fewer for long segments: at most
    `AUDIO_SAMPLES_PER_BATCH` waveform samples (at least one segment)."""
    return max(1, min(requested, AUDIO_SAMPLES_PER_BATCH // segment_length))


def recover_config(model_dir: str, prior: bool = False) -> tuple[str, str]:
    """Writes a lost `config.json` of `model_dir` (or of its prior) back
    from the newest checkpoint, which keeps it (`runs.recover_config`).

    Returns:
        `(config_path, checkpoint_path)`.
    """
    if prior:
        return recover_run_config(PriorConfig, model_dir, PRIOR_DIR)
    return recover_run_config(TrainConfig, model_dir)


def encode_images(
    model,
    images: Images | tf.data.Dataset,
    batch_size: int = 256,
    with_labels: bool | None = None,
) -> Images:
    """The codes of every example, in order, as `Images` of int32 grids
    `(*code_grid)` (for `training_pipeline`).

    Args:
        model: a built `tf_vqvae.contracts.CodeModel`.
        images: `Images`, or a batched dataset of anything
            `tf_vqvae.evaluation.codes_dataset` encodes (image batches,
            `(images, labels)` pairs, the audio pipeline's `{"audio",
            "speaker"}` dicts).
        batch_size: images per batch of `Images`.
        with_labels: as in `codes_dataset`; with labels, the returned
            dataset yields `{"codes": ..., "labels": ...}` (a
            class-conditional prior's inputs).
    """
    name, split = "a dataset", ""
    if isinstance(images, Images):
        name, split = images.name, images.split
        images = evaluation_batches(images, batch_size)
    codes, labels = [], []
    for element in codes_dataset(model, images, with_labels=with_labels):
        if isinstance(element, dict):
            codes.append(element["codes"].numpy())
            labels.append(element["labels"].numpy())
        else:
            codes.append(element.numpy())
    codes = np.concatenate(codes).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices(codes)
    if labels:
        dataset = tf.data.Dataset.from_tensor_slices(
            {"codes": codes, "labels": np.concatenate(labels).astype("int32")}
        )
    return Images(
        dataset=dataset,
        num_examples=len(codes),
        image_shape=tuple(int(d) for d in codes.shape[1:]),
        name=f"codes of {name}",
        split=split,
    )


def sample(
    model_dir: str,
    n: int = 64,
    seed: int = 0,
    temperature: float = 1.0,
    output: str | None = None,
    label: str | int | None = None,
) -> list[str]:
    """Decodes `n` samples of the prior into PNG grids; returns their paths.

    Samples are drawn, decoded and written `SAMPLES_PER_GRID` (64) at a
    time, so memory does not grow with `n`: one grid `output` (default
    `model_dir/samples.png`) for up to 64 samples, else `samples-000.png`,
    `samples-001.png`, ... beside it. Batch `i` is drawn with the seed
    `[seed, i]`, so the same `seed` gives the same images (and the first 64
    do not depend on `n` beyond them).

    A class-conditional prior draws `n` samples of class `label` (a name
    from `prior/classes.json` or an id), or without `label`, `n` samples of
    every class (`n` at most 64), one row per class (named on the left),
    in one grid.

    An audio model's samples are WAV files instead (16 kHz PCM16, one per
    sample, `output` default `model_dir/samples.wav` naming their stem:
    `samples-000.wav`, ...; `_sample_waveforms`); `label` then names a
    speaker (of a speaker-conditional prior and, when it has speakers, of
    the decoder).

    Raises:
        UsageError: `n` not in [1, MAX_SAMPLES], `temperature` not
            positive, `output` not a `.png` (audio: `.wav`) file in an
            existing directory,
            no trained model or prior, `label` for an unconditional prior,
            or an unknown `label`.
    """
    if (
        isinstance(n, bool)
        or not isinstance(n, int)
        or not 1 <= n <= MAX_SAMPLES
    ):
        raise UsageError(
            f"`n` must be an integer from 1 to {MAX_SAMPLES}. Received: n={n!r}"
        )
    _check_seed(seed)
    if not temperature > 0 or temperature == float("inf"):
        raise UsageError(
            "`temperature` must be a positive number. "
            f"Received: temperature={temperature!r}"
        )
    vqvae, _ = artifacts.load_vqvae(model_dir, fallback=True)
    suffix = ".wav" if vqvae.modality == "audio" else ".png"
    if output is not None and (
        not output.lower().endswith(suffix)
        or not os.path.isdir(os.path.dirname(output) or ".")
    ):
        raise UsageError(
            f"`output` must be a {suffix} path in an existing directory "
            f"(the model in {model_dir!r} is an {vqvae.modality} model). "
            f"Received: output={output!r}"
        )
    prior = artifacts.load_prior(model_dir, fallback=True)
    if vqvae.modality == "audio":
        output = output or os.path.join(model_dir, AUDIO_SAMPLES_FILE)
        return _sample_waveforms(
            vqvae, prior, model_dir, n, seed, temperature, output, label
        )
    output = output or os.path.join(model_dir, SAMPLES_FILE)
    if label is None and prior.num_classes is not None:
        if n > SAMPLES_PER_GRID:
            raise UsageError(
                f"`n` must be at most {SAMPLES_PER_GRID} for a class-"
                "conditional prior without --label (n samples of each class "
                f"in one grid). Received: n={n}"
            )
        labels = np.repeat(np.arange(prior.num_classes, dtype="int32"), n)
        distribution = prior.distribution(
            labels=labels, temperature=temperature
        )
        codes = distribution.sample(seed=tf.constant([seed, 0]))
        save_image_grid(
            output,
            _picture(vqvae.decode(codes)),
            ncols=n,
            row_labels=_class_names(model_dir, prior),
        )
        return [output]
    labels = None if label is None else _class_id(model_dir, prior, label)
    distribution = prior.distribution(labels=labels, temperature=temperature)
    count = -(-n // SAMPLES_PER_GRID)
    paths = [output]
    if count > 1:
        stem = output[: -len(".png")]
        digits = max(3, len(str(count - 1)))
        paths = [f"{stem}-{i:0{digits}d}.png" for i in range(count)]
    for i, path in enumerate(paths):
        size = min(SAMPLES_PER_GRID, n - i * SAMPLES_PER_GRID)
        codes = distribution.sample(size, seed=tf.constant([seed, i]))
        save_image_grid(path, _picture(vqvae.decode(codes)), ncols=min(8, size))
    return paths


def _check_seed(seed) -> None:
    """Raises `UsageError` unless `seed` is an integer in [0, MAX_SEED]."""
    if (
        isinstance(seed, bool)
        or not isinstance(seed, int)
        or not 0 <= seed <= MAX_SEED
    ):
        raise UsageError(
            f"`seed` must be an integer from 0 to {MAX_SEED}. "
            f"Received: seed={seed!r}"
        )


def _sample_waveforms(
    vqvae, prior, model_dir, n, seed, temperature, output, label
) -> list[str]:
    """`sample` for an audio model: one WAV file per sample.

    Samples are drawn and decoded in batches of at most
    `SAMPLES_PER_GRID`, fewer for long sequences (about
    `AUDIO_SAMPLES_PER_BATCH` waveform samples per batch: the decoder's
    logits are 256 floats per sample), and batch `i` is drawn with the seed
    `[seed, i]`. A generative decoder (`decoder="wavenet"`) draws sample
    `k`'s waveform from `sampling.example_seeds(seed, k, 1)`, so the same
    `seed` gives the same files. Each sample is written to
    `STEM-NNN.wav` (`NNN` counts the samples) or `STEM-NNN-SPEAKER.wav`
    when a speaker is chosen: by
    `label` (a speaker-conditional prior and/or a decoder with speakers),
    every trained speaker in turn (a speaker-conditional prior without
    `label`, `n` samples each) or the trained speakers in turn, one sample
    each (only the decoder has speakers); "trained": those of the training
    split (`artifacts.trained_speaker_ids`), a `label` of another is
    refused. One sample with no speaker is `output` itself.
    """
    conditional = prior.num_classes is not None
    speakers = vqvae.num_speakers
    names = _speaker_names(model_dir, prior, vqvae, label)
    if label is not None:
        if not conditional and not speakers:
            raise UsageError(
                f"`label` needs a speaker-conditional prior or a decoder "
                f"with speakers, and {model_dir}'s prior is unconditional "
                "and its decoder has none; train one with `vqvae "
                "train-prior --class-conditional` or leave out --label. "
                f"Received: label={label!r}"
            )
        label_id = _label_id(model_dir, names, label)
        _check_trained_speaker(model_dir, names, label_id, "label", label)
        labels = np.full(n, label_id, "int32")
    elif conditional:
        ids = _trained_ids(model_dir, names)
        if n * len(ids) > MAX_SAMPLES:
            raise UsageError(
                f"`n` times the {len(ids)} speakers of the prior must be at "
                f"most {MAX_SAMPLES} (without --label, n samples of each "
                f"speaker). Received: n={n}"
            )
        labels = np.repeat(ids, n)
    elif speakers:
        ids = _trained_ids(model_dir, names)
        labels = ids[np.arange(n) % len(ids)]
    else:
        labels = None
    total = n if labels is None else len(labels)
    samples = vqvae.downsampling_factor * int(np.prod(prior.grid_shape))
    batch_size = _audio_batch_size(samples, SAMPLES_PER_GRID)
    stem = output[: -len(".wav")]
    digits = max(3, len(str(total - 1)))
    paths = []
    for i, start in enumerate(range(0, total, batch_size)):
        size = min(batch_size, total - start)
        batch_labels = None if labels is None else labels[start : start + size]
        distribution = prior.distribution(
            labels=batch_labels if conditional else None,
            temperature=temperature,
        )
        batch_seed = tf.constant([seed, i])
        codes = (
            distribution.sample(seed=batch_seed)
            if conditional
            else distribution.sample(size, seed=batch_seed)
        )
        decoded = vqvae.decode(
            codes,
            speaker=batch_labels if speakers else None,
            **sampling.decode_seed(vqvae, seed, start, size),
        )
        for j, waveform in enumerate(np.asarray(decoded)[..., 0]):
            index = start + j
            if batch_labels is None:
                path = (
                    output if total == 1 else f"{stem}-{index:0{digits}d}.wav"
                )
            else:
                name = _file_safe(names[batch_labels[j]])
                path = f"{stem}-{index:0{digits}d}-{name}.wav"
            paths.append(write_wav(path, waveform))
    return paths


def _speaker_names(model_dir: str, prior, vqvae, label) -> tuple[str, ...]:
    """Speaker names by id: the speaker-conditional prior's
    (`classes.json`), else, for a decoder with speakers, the run's
    (`speakers.json`), or those of the training dataset when `label` is a
    name (ids as names otherwise)."""
    if prior.num_classes is not None:
        return _class_names(model_dir, prior)
    count = vqvae.num_speakers or 0
    names = artifacts.speaker_names(model_dir)
    if names is not None and len(names) == count:
        return names
    text = "" if label is None else str(label).strip()
    if text and not text.isdigit():
        _, config = artifacts.load_vqvae(model_dir, fallback=True)
        names = artifacts.load_audio_split(
            config.dataset, "train", config.data_dir, config.skip_bad_files
        ).speaker_names
        if len(names) == count:
            return names
    return tuple(str(i) for i in range(count))


def _label_id(model_dir: str, names: tuple[str, ...], label) -> int:
    """The id of `label` (a name of `names`, else an id) for `sample`."""
    text = str(label).strip()
    if text in names:
        return names.index(text)
    if text.isdigit() and int(text) < len(names):
        return int(text)
    shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    raise UsageError(
        f"`label` must be a speaker name of {model_dir}'s model ({shown}) "
        f"or an id in [0, {len(names)}). Received: label={label!r}"
    )


def _file_safe(name: str) -> str:
    """`name` with every character but letters, digits and `+-._` as `_`."""
    return "".join(c if c.isalnum() or c in "+-._" else "_" for c in name)


def _class_names(model_dir: str, prior) -> tuple[str, ...]:
    """The prior's class names (`classes.json`), or its ids as names."""
    names = artifacts.class_names(model_dir)
    if names is None or len(names) != prior.num_classes:
        names = tuple(str(i) for i in range(prior.num_classes))
    return names


def _class_id(model_dir: str, prior, label) -> int:
    """The id of `label` (a class name, else an id) for `sample`."""
    if prior.num_classes is None:
        raise UsageError(
            f"`label` needs a class-conditional prior, and {model_dir}'s "
            "prior is unconditional; train one with `vqvae train-prior "
            "--class-conditional` or leave out --label. "
            f"Received: label={label!r}"
        )
    names = _class_names(model_dir, prior)
    text = str(label).strip()
    if text in names:
        return names.index(text)
    if text.isdigit() and int(text) < prior.num_classes:
        return int(text)
    shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    raise UsageError(
        f"`label` must be a class name of {model_dir}'s prior ({shown}) or "
        f"an id in [0, {prior.num_classes}). Received: label={label!r}"
    )


def evaluate(
    model_dir: str,
    dataset: str | None = None,
    split: str = "test",
    batch_size: int = 256,
    skip_bad_files: bool | None = None,
    data_dir: str | None = None,
) -> dict:
    """`tf_vqvae.evaluation.evaluate_model` on one split (bits/dim with the
    uniform and, if trained, the PixelCNN prior; MSE, PSNR, perplexity,
    codebook usage) plus `dead_codes`; written to `model_dir/evaluation.json`.

    An audio model gets `evaluate_audio_model` instead (bits per sample
    with the uniform and, if trained, the WaveNet prior; MSE and SNR of the
    decoded waveforms; perplexity, codebook usage) on the split cut into
    segments as long as its training examples, and, when the dataset has
    phoneme alignments, phoneme discovery (`_phoneme_discovery`: a code ->
    phoneme mapping fitted on `train`, its accuracy on `test` and
    `test_voices` beside the most-frequent-phoneme baseline).

    Bad image files of a `folder:` dataset are left out (and counted) with
    `skip_bad_files`, by default (`None`) when the model was trained so.
    `data_dir`: where tfds finds `dataset` (default: the training run's).
    """
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 1
    ):
        raise UsageError(
            "`batch_size` must be a positive integer. "
            f"Received: batch_size={batch_size!r}"
        )
    vqvae, train_config = artifacts.load_vqvae(model_dir, fallback=True)
    dataset = dataset or train_config.dataset
    data_dir = data_dir or train_config.data_dir
    _check_modality(vqvae, dataset, data_dir, model_dir, "evaluate")
    if skip_bad_files is None:
        skip_bad_files = train_config.skip_bad_files
    if vqvae.modality == "audio":
        metrics = _evaluate_audio(
            vqvae,
            model_dir,
            dataset,
            split,
            data_dir,
            skip_bad_files,
            batch_size,
        )
        atomic.write_text(
            os.path.join(model_dir, EVALUATION_FILE),
            json.dumps(metrics, indent=2) + "\n",
        )
        return metrics
    images = artifacts.load_split(
        dataset,
        split,
        data_dir,
        skip_bad_files,
    )
    _check_channels(vqvae, images, model_dir, dataset, "evaluate it on")
    prior = artifacts.trained_prior(model_dir, fallback=True)
    batches = evaluation_batches(images, batch_size)
    if prior is not None and prior.num_classes is not None:
        labels = load_labels(
            dataset,
            split,
            data_dir,
            class_names=_class_names(model_dir, prior),
            skip_bad_files=skip_bad_files,
        ).labels
        batches = tf.data.Dataset.zip(
            batches,
            tf.data.Dataset.from_tensor_slices(labels).batch(batch_size),
        )
    metrics = _evaluation_metrics(
        dataset,
        images.split,
        evaluate_model(vqvae, batches, prior=prior),
        vqvae,
    )
    atomic.write_text(
        os.path.join(model_dir, EVALUATION_FILE),
        json.dumps(metrics, indent=2) + "\n",
    )
    return metrics


def _check_modality(vqvae, dataset, data_dir, model_dir, command) -> None:
    """Refuses a dataset of the other modality than the model's."""
    holds = dataset_modality(dataset, data_dir)
    if holds != vqvae.modality:
        what = {"image": "images"}.get(holds, holds)
        raise UsageError(
            f"`dataset` {dataset!r} holds {what}, and {model_dir!r} holds "
            f"an {vqvae.modality} model; {command} it on {vqvae.modality} "
            f"data (default: its training dataset). Received: "
            f"dataset={dataset!r}"
        )


def _evaluation_metrics(dataset: str, split: str, results: dict, vqvae) -> dict:
    """What `evaluate` reports: the dataset and split, `results`, and the
    number of codes the split never used (`dead_codes`)."""
    used = round(results["codebook_usage"] * vqvae.num_embeddings)
    return {
        "dataset": dataset,
        "split": split,
        **results,
        "dead_codes": vqvae.num_embeddings - used,
    }


def _evaluate_audio(
    vqvae, model_dir, dataset, split, data_dir, skip_bad_files, batch_size
) -> dict:
    """`evaluate` of an audio model: `evaluate_audio_model` on the split cut
    into segments as long as the model's examples (batches of at most
    `AUDIO_SAMPLES_PER_BATCH` samples), plus `dead_codes` and, when the
    dataset has phoneme alignments, `_phoneme_discovery`."""
    utterances = artifacts.load_audio_split(
        dataset, split, data_dir, skip_bad_files
    )
    segment = int(vqvae.example_shape[0])
    batch_size = _audio_batch_size(segment, batch_size)
    prior = artifacts.trained_prior(model_dir, fallback=True)
    batches = audio_pipeline(
        utterances, segment, batch_size, seed=0, training=False
    )
    metrics = _evaluation_metrics(
        dataset,
        utterances.split,
        evaluate_audio_model(vqvae, batches, prior=prior),
        vqvae,
    )
    metrics.update(
        _phoneme_discovery(
            vqvae, dataset, data_dir, skip_bad_files, segment, batch_size
        )
    )
    return metrics


def _phoneme_discovery(
    vqvae, dataset, data_dir, skip_bad_files, segment, batch_size
) -> dict:
    """Unsupervised phoneme discovery (the paper's section 4.3), when the
    dataset has phoneme alignments (the speech corpus; an audio folder with
    sidecars), else `{}`.

    Each code is mapped to the phoneme it most often covers on the `train`
    split (`tf_vqvae.speech_metrics`: the phoneme at each code's centre
    sample); the mapping is scored on `test` (held-out sentences) and
    `test_voices` (held-out voices), when the dataset has them, next to
    the most-frequent-phoneme baseline and the number of phoneme classes
    present: `phoneme_accuracy_SPLIT`, `phoneme_baseline_accuracy_SPLIT`,
    `phoneme_num_classes_SPLIT`, `phoneme_num_scored_SPLIT`.
    """
    _, _, named_split = parse_dataset(dataset)
    base = dataset if named_split is None else dataset[: -len(named_split) - 1]
    train = artifacts.load_audio_split(base, "train", data_dir, skip_bad_files)
    if train.alignments is None:
        return {}
    factor = vqvae.downsampling_factor

    def codes_and_phonemes(utterances):
        codes = utterance_codes(vqvae, utterances, segment, batch_size)
        return codes, phonemes_per_code(utterances.alignments, codes, factor)

    mapping = fit_code_to_phoneme(
        *codes_and_phonemes(train), vqvae.num_embeddings
    )
    metrics = {"phoneme_mapping_split": "train"}
    for split in ("test", "test_voices"):
        try:
            held_out = artifacts.load_audio_split(
                base, split, data_dir, skip_bad_files
            )
        except BadAudioFileError:
            raise
        except DatasetError:
            continue
        if held_out.alignments is None or not len(held_out):
            continue
        scores = phoneme_accuracy(mapping, *codes_and_phonemes(held_out))
        metrics.update(
            {
                f"phoneme_accuracy_{split}": scores.accuracy,
                f"phoneme_baseline_accuracy_{split}": scores.baseline_accuracy,
                f"phoneme_num_classes_{split}": scores.num_classes,
                f"phoneme_num_scored_{split}": scores.num_scored,
            }
        )
    return metrics


def inspect(
    model_dir: str,
    dataset: str | None = None,
    split: str = "train",
    num_codes: int = 8,
    patches_per_code: int = 16,
    max_images: int = 10_000,
    batch_size: int = 256,
    data_dir: str | None = None,
) -> dict:
    """What each code stands for: writes `model_dir/codes/` (image models;
    `data_dir`: where tfds finds `dataset`, default the training run's).

    Encodes up to `max_images` images of the split (spread evenly over it)
    and writes `usage.png` (`tf_vqvae.visualize.usage_plot`: positions per
    code index), `top_codes.png` and `bottom_codes.png` (the `num_codes`
    most and least used codes among those used, one row per code: the
    `patches_per_code` input patches, with their context, whose encoder
    output is nearest to the code's vector, nearest first:
    `tf_vqvae.evaluation.nearest_positions`, `tf_vqvae.visualize.code_grid`)
    and `usage.json` (the counts, the codes shown and, per code shown, its
    patches' positions `(image, i, j)` among the encoded images and their
    distances). For a quantizer with several levels (residual VQ) the
    counts and the codes are the first level's. Uses only the `CodeModel`
    contract (`encode`, `latents`, `quantizer.lookup`,
    `downsampling_factor`, `num_embeddings`).

    Returns:
        name -> path of each file.

    Raises:
        UsageError: bad counts, no trained model, or images of another
            number of channels.
    """
    for name, value in (
        ("num_codes", num_codes),
        ("patches_per_code", patches_per_code),
        ("max_images", max_images),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(
                f"`{name}` must be a positive integer. "
                f"Received: {name}={value!r}"
            )
    vqvae, train_config = artifacts.load_vqvae(model_dir, fallback=True)
    if vqvae.modality != "image":
        raise UsageError(
            f"`vqvae inspect` draws the image patches of each code, and "
            f"{model_dir!r} holds an {vqvae.modality} model (`vqvae "
            "evaluate` reports its code usage). "
            f"Received: model_dir={model_dir!r}"
        )
    dataset = dataset or train_config.dataset
    data_dir = data_dir or train_config.data_dir
    _check_modality(vqvae, dataset, data_dir, model_dir, "inspect")
    loaded = artifacts.load_split(
        dataset, split, data_dir, train_config.skip_bad_files
    )
    _check_channels(vqvae, loaded, model_dir, dataset, "inspect it on")
    images = artifacts.spread_sample(loaded, max_images)
    batches = [
        images[start : start + batch_size]
        for start in range(0, len(images), batch_size)
    ]
    codes = np.concatenate([vqvae.encode(batch).numpy() for batch in batches])
    if vqvae.quantizer.num_levels > 1:
        codes = codes[..., 0]
    k = vqvae.num_embeddings
    counts = np.bincount(codes.reshape(-1), minlength=k)
    by_use = np.argsort(-counts, kind="stable")
    used = by_use[counts[by_use] > 0]
    selections = {
        "top_codes": used[:num_codes],
        "bottom_codes": used[::-1][:num_codes],
    }
    shown = np.unique(np.concatenate(list(selections.values())))
    positions, distances = nearest_positions(
        vqvae, batches, shown, patches_per_code
    )
    nearest = {int(code): row for row, code in enumerate(shown)}
    out_dir = os.path.join(model_dir, CODES_DIR)
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for name, selected in selections.items():
        grid = code_grid(
            images,
            [positions[nearest[int(code)]] for code in selected],
            [f"code {code}: {counts[code]}" for code in selected],
            vqvae.downsampling_factor,
            patches_per_code=patches_per_code,
        )
        written[name] = _write_png(os.path.join(out_dir, f"{name}.png"), grid)
    written["usage"] = _write_png(
        os.path.join(out_dir, "usage.png"), usage_plot(counts)
    )
    summary = {
        "dataset": dataset,
        "split": loaded.split,
        "num_images": len(images),
        "counts": counts.tolist(),
        "top_codes": selections["top_codes"].tolist(),
        "bottom_codes": selections["bottom_codes"].tolist(),
        "nearest": {
            str(code): {
                "positions": positions[row].tolist(),
                "distances": distances[row].tolist(),
            }
            for code, row in nearest.items()
        },
    }
    written["counts"] = atomic.write_text(
        os.path.join(out_dir, "usage.json"), json.dumps(summary) + "\n"
    )
    return written


def _write_png(path: str, pixels: np.ndarray) -> str:
    return atomic.write_bytes(path, tf.io.encode_png(pixels).numpy())


def _check_channels(
    vqvae, images: Images, model_dir: str, dataset: str, advice: str
) -> None:
    """Raises `UsageError` unless `images` have the model's channels."""
    expected = (vqvae.image_channels,)
    if images.image_shape[-1:] != expected:
        kind = {1: "grayscale", 3: "RGB"}
        raise UsageError(
            f"`dataset` {dataset!r} has {images.image_shape[-1]}-channel "
            f"images but the model in {model_dir!r} was trained on "
            f"{vqvae.image_channels}-channel "
            f"({kind.get(vqvae.image_channels, 'other')}) images; {advice} "
            "a dataset like the one it was trained on. "
            f"Received: image_shape={images.image_shape}"
        )


def export(
    model_dir: str,
    out_dir: str | None = None,
    model_name: str = "vqvae",
    version: int = 1,
    tflite: bool = False,
    quantization: tuple[str, ...] = tuple(TFLITE_QUANTIZATIONS),
    max_batch_size: int = 64,
    overwrite: bool = False,
    calibration_data: str | None = None,
    skip_bad_files: bool | None = None,
) -> dict:
    """Exports `model_dir`'s VQ-VAE (and prior, when trained) for serving.

    A SavedModel for TF Serving at `out_dir/model_name/version` and, with
    `tflite`, builtins-only `.tflite` files in `out_dir/model_name_tflite`
    (decoder in each of `quantization`; float32 encoder; prior sampler).
    `out_dir` defaults to `model_dir/export`. Both carry a `MANIFEST.json`
    (`vqvae verify`). Reads no dataset: the int8 decoder is calibrated on
    `calibration_data` (a `.npy` file of images or a dataset string), by
    default the sample `vqvae train` wrote to `model_dir/calibration.npy`
    (bad files of a `folder:` dataset are left out with `skip_bad_files`,
    by default (`None`) when the model was trained so). All or nothing for
    a new version: if the TFLite files fail (or Ctrl-C), the SavedModel
    version this call created is removed again (with `overwrite` of an
    existing version, the new SavedModel stays: the old one is gone).

    Returns:
        name -> path of each export.

    Raises:
        UsageError: bad `model_name`, `version`, `max_batch_size` or
            `out_dir`, no trained model, a model whose decoder generates
            (`decoder="wavenet"`), the version exists and not `overwrite`,
            or int8 without calibration images.
        LockedError: another export into `out_dir` runs.
        NotWritableError: `out_dir` cannot be created or written.
    """
    try:
        check_names(model_name, version)
        check_int("max_batch_size", max_batch_size)
    except ValueError as error:
        raise UsageError(str(error)) from None
    root = out_dir or os.path.join(model_dir, EXPORT_DIR)
    if os.path.exists(root) and not os.path.isdir(root):
        raise UsageError(
            f"`out` must be a directory; {root!r} is a file. "
            f"Received: out={root!r}"
        )
    vqvae, config = artifacts.load_vqvae(model_dir, fallback=True)
    try:
        # A model no target exports (a generative decoder): one line, exit
        # code 2, before anything is written.
        check_model(vqvae, audio=True)
    except ValueError as error:
        raise UsageError(str(error)) from None
    prior = artifacts.trained_prior(model_dir, fallback=True)
    # One export at a time into `root`: its checks hold until it ends.
    with _locked_output(root):
        target = os.path.join(root, model_name, str(version))
        if os.path.exists(target) and not overwrite:
            raise UsageError(
                f"{target!r} exists; pass --overwrite to replace it or "
                f"choose another --version. Received: version={version}"
            )
        tflite_dir = os.path.join(root, f"{model_name}_tflite")
        if tflite and os.path.exists(tflite_dir) and not overwrite:
            raise UsageError(
                f"{tflite_dir!r} exists; pass --overwrite to replace it or "
                f"choose another --out. Received: out={root!r}"
            )
        calibration = None
        if tflite and "int8" in quantization:
            calibration = artifacts.calibration_images(
                model_dir,
                calibration_data,
                vqvae.example_shape,
                config.data_dir,
                (
                    config.skip_bad_files
                    if skip_bad_files is None
                    else skip_bad_files
                ),
            )
            if calibration is None:
                raise UsageError(
                    "`quantization` 'int8' needs calibration images, "
                    f"and {os.path.join(model_dir, CALIBRATION_FILE)} "
                    "(written by `vqvae train`) is missing; pass "
                    "--calibration-data (a .npy file of images or a "
                    "dataset such as folder:PATH) or leave out int8. "
                    f"Received: quantization={tuple(quantization)}"
                )
        new_version = not os.path.exists(target)
        exported = {
            "saved_model": os.fspath(
                export_saved_model(
                    vqvae,
                    root,
                    model_name,
                    version=version,
                    prior=prior,
                    overwrite=overwrite,
                    max_batch_size=max_batch_size,
                )
            )
        }
        if tflite:
            try:
                export_tflite(
                    vqvae,
                    tflite_dir,
                    quantization=tuple(quantization),
                    representative_images=calibration,
                    prior=prior,
                    overwrite=overwrite,
                )
            except BaseException:
                if new_version:
                    # All or nothing: the same command again (after Ctrl-C
                    # or a fix) must not find the version this one wrote.
                    _remove_new_version(exported["saved_model"])
                raise
            exported["tflite"] = tflite_dir
        return exported


def _remove_new_version(version_dir: str) -> None:
    """Removes a version directory this export created, and its model
    directory if that is left empty."""
    shutil.rmtree(version_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(version_dir))


def verify(path: str) -> None:
    """Checks an export (a SavedModel version, a model directory of
    versions, or a TFLite directory) against its `MANIFEST.json`.

    Raises:
        UsageError: `path` is not a directory.
        VerificationError: a file or signature does not match.
    """
    if not os.path.isdir(path):
        raise UsageError(
            f"`path` must be an export directory. Received: path={path!r}"
        )
    verify_export(path)


def demo(
    model_dir: str | None = None,
    epochs: int | None = None,
    prior_epochs: int | None = None,
    steps_per_epoch: int | None = None,
    verbose: int | str = 1,
    dataset: str = "photos",
    precision: str | None = None,
) -> dict:
    """The whole pipeline offline: train, train-prior, sample, evaluate,
    export. Returns name -> path of every artifact (and the metrics under
    `"metrics"`, the times under `"timings"`). Running it again resumes or
    reuses.

    `dataset` `"photos"` uses `PRESETS["demo"]` (default `model_dir`
    `runs/demo`); `"speech"` uses `PRESETS["speech-demo"]` (default
    `runs/speech-demo`): an audio VQ-VAE and WaveNet prior on the eSpeak
    corpus, which also reconstructs a held-out utterance
    (`reconstruct`), and whose samples are WAV files. `precision`, when
    given, replaces the preset's for both models (`tf_vqvae.precision`);
    when not, a demo already in `model_dir` resumes in its own.

    Raises:
        UsageError: another `dataset`.
    """
    if dataset not in DEMO_PRESETS:
        raise UsageError(
            f"`dataset` of the demo must be one of {sorted(DEMO_PRESETS)}. "
            f"Received: dataset={dataset!r}"
        )
    preset = PRESETS[DEMO_PRESETS[dataset]]
    model_dir = model_dir or f"runs/{DEMO_PRESETS[dataset]}"
    audio = dataset == "speech"
    train_config = dataclasses.replace(
        preset.train,
        epochs=epochs or preset.train.epochs,
        steps_per_epoch=steps_per_epoch or preset.train.steps_per_epoch,
        precision=_demo_precision(model_dir, preset.train, precision),
    )
    prior_config = dataclasses.replace(
        preset.prior,
        epochs=prior_epochs or preset.prior.epochs,
        steps_per_epoch=steps_per_epoch or preset.prior.steps_per_epoch,
        precision=_demo_precision(model_dir, preset.prior, precision),
    )
    steps = 6 if audio else 5
    held_out = "speech" if audio else "photos"
    timings = {}
    started = time.time()
    print(f"vqvae demo: 1/{steps} train the VQ-VAE in {model_dir}", flush=True)
    written = dict(train(train_config, model_dir, verbose=verbose).artifacts)
    timings["train"] = time.time() - started
    print(f"vqvae demo: 2/{steps} train the prior on the codes", flush=True)
    result = train_prior(prior_config, model_dir, verbose=verbose)
    written.update(result.artifacts)
    timings["train_prior"] = time.time() - started - sum(timings.values())
    print(f"vqvae demo: 3/{steps} sample", flush=True)
    if audio:
        paths = sample(model_dir, n=4, seed=0)
        written.update({f"sample_{i}": path for i, path in enumerate(paths)})
    else:
        (written["samples"],) = sample(model_dir, n=64, seed=0)
    print(
        f"vqvae demo: 4/{steps} evaluate on the held-out {held_out}",
        flush=True,
    )
    metrics = evaluate(model_dir)
    written["evaluation"] = os.path.join(model_dir, EVALUATION_FILE)
    if audio:
        print(
            f"vqvae demo: 5/{steps} reconstruct a held-out utterance",
            flush=True,
        )
        written.update(_demo_reconstruction(model_dir, train_config))
    print(
        f"vqvae demo: {steps}/{steps} export a SavedModel and TFLite files",
        flush=True,
    )
    written.update(
        export(
            model_dir,
            tflite=True,
            quantization=("float32", "int8"),
            overwrite=True,
        )
    )
    timings["total"] = time.time() - started
    return {"artifacts": written, "metrics": metrics, "timings": timings}


def _demo_precision(
    model_dir: str, config, precision: str | None = None
) -> str:
    """The precision of the run of `config`'s kind already in `model_dir`
    (a demo run again without `--precision` resumes in it), else
    `precision` or `config`'s.

    Raises:
        UsageError: `precision` is given and is not the saved run's.
    """
    path = saved_config_path(model_dir, type(config))
    if not os.path.exists(path):
        return precision or config.precision
    saved = load_config(path, type(config)).precision
    chosen = resolve_precision(precision).precision if precision else saved
    if chosen != saved:
        raise UsageError(
            f"`model_dir` {model_dir!r} holds a demo trained in {saved}; run "
            f"`vqvae demo` without --precision to resume it, or pass a new "
            f"--model-dir. Received: precision={precision!r}"
        )
    return saved


def _demo_reconstruction(model_dir: str, config: TrainConfig) -> dict:
    """The first utterance of the test split as `demo/original.wav` and
    its reconstruction as `demo/reconstruction.wav` (as its own speaker)."""
    utterances = artifacts.load_audio_split(
        config.dataset, "test", config.data_dir, config.skip_bad_files
    )
    out_dir = os.path.join(model_dir, DEMO_DIR)
    os.makedirs(out_dir, exist_ok=True)
    original = audio_io.write_wav(
        os.path.join(out_dir, "original.wav"), utterances.waveforms[0]
    )
    speaker = None
    if config.speaker_conditioning:
        speaker = int(utterances.speakers[0])
    result = reconstruct(
        model_dir,
        original,
        os.path.join(out_dir, "reconstruction.wav"),
        speaker=speaker,
    )
    return {"original": original, "reconstruction": result["output"]}


@contextlib.contextmanager
def _locked_output(root: str):
    """Holds the lock on an export's output directory, created if needed;
    one created here is removed again if it stays empty."""
    created = not os.path.exists(root)
    try:
        with DirectoryLock(root, what="export directory (--out)"):
            yield
    finally:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(root)  # only if empty


def _validation_images(config: TrainConfig, train_images: Images):
    """A fixed batch: images spread evenly over the first 1024 of the test
    split (or of the training split if there is no test split). A bad file
    in the test split is an error like one in the training split."""
    _, _, named_split = parse_dataset(config.dataset)
    source = train_images
    if named_split is None:
        try:
            source = artifacts.load_split(
                config.dataset,
                "test",
                config.data_dir,
                config.skip_bad_files,
            )
        except BadImageFileError:
            raise
        except DatasetError:
            source = train_images
        if source.image_shape != train_images.image_shape:
            source = train_images
    pool = first_images(source, min(source.num_examples, 1024))
    picks = np.linspace(0, len(pool) - 1, NUM_VALIDATION_IMAGES).round()
    return pool[np.unique(picks.astype(int))]


def _picture(images) -> np.ndarray:
    """Decoded images clipped to [0, 1]: the mean image of the `"mse"`
    likelihood is not bounded (a young model's overshoots), and the
    picture functions refuse floats far outside [0, 1]."""
    return np.clip(np.asarray(images), 0.0, 1.0)


def _save_reconstructions(model, images, path: str) -> str:
    """Writes originals beside their reconstructions as a PNG grid."""
    reconstructions = model(images, training=False)
    save_image_grid(
        path, side_by_side(images, _picture(reconstructions)), ncols=8
    )
    return path
