"""Reading a model dir back: the trained models, the calibration sample.

A `.keras` file has no checksum of its own: `load_vqvae` and `load_prior`
check its zip archive (every member's CRC-32) and call one that cannot be
read "damaged" (`DamagedModelError`), where Keras says "File not found";
with `fallback=True` (what the `vqvae` commands use) they rebuild the model
from the config and the newest readable checkpoint of the run instead, and
say so on stderr.

The file names are in `tf_vqvae.training.layout`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import zipfile

import keras
import numpy as np
import tensorflow as tf

# Loading a `.keras` file needs the classes registered: importing their
# modules (`prior`, `vqvae`) registers them.
from tf_vqvae import atomic, precision, prior, priors, vqvae  # noqa: F401
from tf_vqvae.data import (
    Images,
    Utterances,
    audio_pipeline,
    dataset_modality,
    load_audio,
    load_images,
)
from tf_vqvae.options import prior_kind_for_rank
from tf_vqvae.training.checkpointing import checkpoint_dir
from tf_vqvae.training.config import PriorConfig, load_config
from tf_vqvae.training.layout import (
    CALIBRATION_FILE,
    CLASSES_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    PRIOR_DIR,
    PRIOR_FILE,
    SPEAKERS_FILE,
)
from tf_vqvae.training.runs import UsageError, build_for_examples

NUM_CALIBRATION_IMAGES = 256
# Image channels a VQ-VAE can have (grayscale, RGB, RGBA), tried in this
# order when rebuilding one whose image shape nothing records.
_CHANNELS = (3, 1, 4)


class DamagedModelError(UsageError):
    """A `.keras` file of a model dir that cannot be read (truncated,
    corrupted) and no checkpoint to rebuild the model from."""


def load_vqvae(model_dir: str, fallback: bool = False):
    """The trained `VQVAE` of `model_dir` and its `TrainConfig`.

    Args:
        model_dir: a model dir written by `vqvae train`.
        fallback: if `model.keras` is damaged, rebuild the model from the
            config and the newest readable checkpoint (weights and codebook;
            the image shape from `calibration.npy`), saying so on stderr.

    Raises:
        UsageError: if `model_dir` holds no `model.keras`.
        DamagedModelError: if `model.keras` is damaged (and, with
            `fallback`, no checkpoint can be read either).
    """
    path = os.path.join(model_dir, MODEL_FILE)
    if not os.path.isfile(path):
        raise UsageError(
            f"`model_dir` {model_dir!r} holds no trained VQ-VAE "
            f"({MODEL_FILE}); run `vqvae train --model-dir {model_dir}` "
            "first. "
            f"Received: model_dir={model_dir!r}"
        )
    config = load_config(os.path.join(model_dir, CONFIG_FILE))

    def rebuild():
        modality = dataset_modality(config.dataset, config.data_dir)
        recorded = _recorded_image_shape(model_dir)
        kwargs = config.model_kwargs()
        if modality == "audio":
            names = speaker_names(model_dir) or ()
            kwargs = config.model_kwargs("audio", len(names) or None)
            shape = recorded or (config.segment_length, 1)
            shapes = [shape]
            if kwargs.get("num_speakers"):
                shapes = [{"audio": shape, "speaker": ()}]
        elif recorded:
            shapes = [recorded]
        else:
            shapes = [(None, None, c) for c in _CHANNELS]
        policy = precision.resolve(config.precision).policy
        for shape in shapes:
            yield _as_trained(
                lambda: vqvae.VQVAE(**kwargs),
                shape,
                config.learning_rate,
                policy,
            )

    model = _load_or_rebuild(
        path, model_dir, model_dir, rebuild if fallback else None
    )
    return model, config


def load_prior(model_dir: str, fallback: bool = False):
    """The trained prior of `model_dir` (a `tf_vqvae.contracts.CodePrior`:
    `PixelCNNPrior` over 2D codes, `WaveNetPrior` over 1D codes).

    Args:
        model_dir: a model dir written by `vqvae train` and `train-prior`.
        fallback: as in `load_vqvae`, for `prior/prior.keras` (the code grid
            comes from the VQ-VAE's example shape).

    Raises:
        UsageError: if `model_dir` holds no `prior/prior.keras`.
        DamagedModelError: if `prior/prior.keras` is damaged (and, with
            `fallback`, no checkpoint can be read either).
    """
    prior_dir = os.path.join(model_dir, PRIOR_DIR)
    path = os.path.join(prior_dir, PRIOR_FILE)
    if not os.path.isfile(path):
        raise UsageError(
            f"`model_dir` {model_dir!r} holds no trained prior "
            f"({PRIOR_DIR}/{PRIOR_FILE}); run `vqvae train-prior --model-dir "
            f"{model_dir}` first. Received: model_dir={model_dir!r}"
        )

    def rebuild():
        model, _ = load_vqvae(model_dir, fallback=True)
        config = load_config(os.path.join(prior_dir, CONFIG_FILE), PriorConfig)
        shape = model.example_shape
        if shape is None or None in shape:
            return
        grid_shape = model.code_shape(tuple(shape))
        levels = model.quantizer.num_levels
        names = class_names(model_dir) if config.class_conditional else None
        example_shape = grid_shape + ((levels,) if levels > 1 else ())
        if names is not None:
            example_shape = {"codes": example_shape, "labels": ()}
        yield _as_trained(
            lambda: new_prior(
                model.num_embeddings,
                grid_shape,
                None if names is None else len(names),
                config,
                num_levels=levels,
            ),
            example_shape,
            config.learning_rate,
            precision.resolve(config.precision).policy,
        )

    return _load_or_rebuild(
        path,
        prior_dir,
        model_dir,
        rebuild if fallback else None,
        compile=False,
    )


def new_prior(
    num_embeddings: int,
    grid_shape: tuple,
    num_classes: int | None,
    config: PriorConfig,
    num_levels: int = 1,
):
    """An unbuilt prior over `grid_shape` (and `num_levels` codes per
    position) of the kind for its rank (`tf_vqvae.priors.make_prior`), with
    `config`'s options for that kind: what `vqvae train-prior` trains and a
    damaged `prior.keras` is rebuilt as."""
    kind = prior_kind_for_rank(len(grid_shape))
    return priors.make_prior(
        num_embeddings,
        grid_shape,
        num_classes=num_classes,
        num_levels=num_levels,
        **config.prior_kwargs(kind),
    )


def write_class_names(
    class_names: tuple[str, ...], dataset: str, prior_dir: str
) -> str:
    """Writes `prior_dir/classes.json` (the classes a class-conditional
    prior was trained on, in label order) atomically; returns its path."""
    content = {"dataset": dataset, "class_names": list(class_names)}
    return atomic.write_text(
        os.path.join(prior_dir, CLASSES_FILE),
        json.dumps(content, indent=2) + "\n",
    )


def class_names(model_dir: str) -> tuple[str, ...] | None:
    """The class names of `model_dir`'s class-conditional prior, in label
    order (`None` when the prior has none: unconditional, or not trained
    by `vqvae train-prior`)."""
    path = os.path.join(model_dir, PRIOR_DIR, CLASSES_FILE)
    try:
        with open(path) as file:
            return tuple(str(name) for name in json.load(file)["class_names"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(
            f"`model_dir` holds an unreadable {path} ({error}); train the "
            f"prior again. Received: model_dir={model_dir!r}"
        ) from None


def write_speaker_names(
    speaker_names: tuple[str, ...],
    dataset: str,
    model_dir: str,
    trained: tuple[str, ...] | None = None,
) -> str:
    """Writes `model_dir/speakers.json` (an audio dataset's speaker names
    in id order: the ids a speaker-conditioned decoder takes, and the
    `trained` ones, those the training split has) atomically; returns its
    path."""
    content = {"dataset": dataset, "speaker_names": list(speaker_names)}
    if trained is not None:
        content["trained_speakers"] = list(trained)
    return atomic.write_text(
        os.path.join(model_dir, SPEAKERS_FILE),
        json.dumps(content, indent=2) + "\n",
    )


def speaker_names(model_dir: str) -> tuple[str, ...] | None:
    """The speaker names of `model_dir`'s audio run, in id order (`None`
    for an image run, or one written before runs kept them)."""
    content = _speakers_file(model_dir)
    return None if content is None else content[0]


def trained_speaker_ids(model_dir: str) -> tuple[int, ...] | None:
    """The ids of the speakers `model_dir`'s training split has (the others'
    embeddings never trained: a dataset's speaker table also holds its
    held-out voices), in id order; `None` when `speakers.json` does not
    say (an image run, or a run written before it kept them)."""
    content = _speakers_file(model_dir)
    if content is None or content[1] is None:
        return None
    names, trained = content
    return tuple(i for i, name in enumerate(names) if name in trained)


def _speakers_file(model_dir: str) -> tuple[tuple, set | None] | None:
    """`speakers.json`'s names and its trained names (`None` if absent)."""
    path = os.path.join(model_dir, SPEAKERS_FILE)
    try:
        with open(path) as file:
            content = json.load(file)
        names = tuple(str(n) for n in content["speaker_names"])
        trained = content.get("trained_speakers")
        if trained is not None:
            trained = {str(n) for n in trained}
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UsageError(
            f"`model_dir` holds an unreadable {path} ({error}); train the "
            f"model again. Received: model_dir={model_dir!r}"
        ) from None
    return names, trained


def trained_prior(model_dir: str, fallback: bool = False):
    """`load_prior(model_dir, fallback)` if the prior is trained, else
    `None`."""
    if os.path.isfile(os.path.join(model_dir, PRIOR_DIR, PRIOR_FILE)):
        return load_prior(model_dir, fallback)
    return None


def _load_or_rebuild(path, run_dir, model_dir, rebuild, **load_kwargs):
    """`keras.saving.load_model(path)`; if the file is damaged, the first
    model of `rebuild()` (candidates, built) that the newest readable
    checkpoint of `run_dir` restores, or `DamagedModelError`."""
    reason = _damage(path)
    if reason is None:
        try:
            return keras.saving.load_model(path, **load_kwargs)
        except Exception as error:  # Keras raises assorted types.
            lines = str(error).strip().splitlines() or [""]
            reason = f"{type(error).__name__}: {lines[0][:200]}"
    name = os.path.relpath(path, model_dir)
    retrain = "train-prior" if run_dir != model_dir else "train"
    if rebuild is not None:
        restored = _restore_newest(rebuild, checkpoint_dir(run_dir))
        if restored is not None:
            model, checkpoint, step = restored
            print(
                f"vqvae: {name} is damaged ({reason}); using the newest "
                f"readable checkpoint instead, {checkpoint} (step {step}).",
                file=sys.stderr,
                flush=True,
            )
            return model
    raise DamagedModelError(
        f"`model_dir` {model_dir!r}: {name} is damaged ({reason})"
        + ("" if rebuild is None else " and no checkpoint can be read")
        + f"; `vqvae {retrain} --model-dir {model_dir}` writes it again "
        "from the newest checkpoint. "
        f"Received: model_dir={model_dir!r}"
    )


def _damage(path: str) -> str | None:
    """Why `path` is not a readable `.keras` zip archive, or `None`."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as error:
        return f"not a complete zip archive: {error}; truncated?"
    except (OSError, EOFError) as error:
        return f"{type(error).__name__}: {error}"
    if bad is not None:
        return f"bad CRC-32 for {bad}"
    return None


def _checkpoints(directory: str) -> list[tuple[int, str]]:
    """`(step, prefix)` of every `ckpt-N` in `directory`, newest first
    (found on disk: the `checkpoint` index file is not needed)."""
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        match = re.fullmatch(r"ckpt-(\d+)\.index", name)
        if match:
            found.append(
                (int(match.group(1)), os.path.join(directory, name[:-6]))
            )
    return sorted(found, reverse=True)


def _as_trained(
    make_model, example_shape: tuple, learning_rate: float, dtype_policy=None
) -> keras.Model:
    """A model built and compiled as `training.runs.Run.start` does, so
    that its checkpoints restore into it: they reach some layers' weights
    only through the optimizer's variables."""
    previous = keras.mixed_precision.global_policy()
    try:
        if dtype_policy is not None:
            keras.mixed_precision.set_global_policy(dtype_policy)
        model = make_model()
        build_for_examples(model, example_shape)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate))
        model.optimizer.build(model.trainable_variables)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return model


def _restore_newest(rebuild, directory: str):
    """`(model, checkpoint, step)`: the first model of `rebuild()` that the
    newest readable checkpoint in `directory` restores, or `None`."""
    for step, prefix in _checkpoints(directory):
        for model in rebuild():
            try:
                checkpoint = tf.train.Checkpoint(
                    model=model, optimizer=model.optimizer
                )
                status = checkpoint.restore(prefix)
                status.expect_partial()
                status.assert_existing_objects_matched()
            except (tf.errors.OpError, ValueError, AssertionError):
                continue
            return model, prefix, step
    return None


def _recorded_image_shape(model_dir: str) -> tuple | None:
    """`(height, width, channels)` of `model_dir/calibration.npy` (read from
    its header only), or `None`."""
    try:
        sample = np.load(
            os.path.join(model_dir, CALIBRATION_FILE),
            mmap_mode="r",
            allow_pickle=False,
        )
    except (OSError, ValueError):
        return None
    if sample.ndim not in (3, 4):
        return None
    return tuple(int(d) for d in sample.shape[1:])


def _say_skipped(split):
    """`split` (`Images` or `Utterances`), after saying on stderr which bad
    files it left out, if any."""
    summary = split.skipped_summary()
    if summary is not None:
        print(f"vqvae: {summary}", file=sys.stderr, flush=True)
    return split


def load_split(
    dataset: str,
    split: str = "train",
    data_dir: str | None = None,
    skip_bad_files: bool = False,
) -> Images:
    """`tf_vqvae.data.load_images`, saying on stderr how many bad image
    files were left out (`skip_bad_files`), e.g. `vqvae: Skipped 2 bad
    image files of 'folder:d' split 'train' (first: ...).`

    Raises:
        BadImageFileError: a bad file, unless `skip_bad_files`.
        DatasetError: a dataset that cannot be loaded.
    """
    return _say_skipped(
        load_images(dataset, split, data_dir, skip_bad_files=skip_bad_files)
    )


def load_audio_split(
    dataset: str,
    split: str = "train",
    data_dir: str | None = None,
    skip_bad_files: bool = False,
) -> Utterances:
    """`tf_vqvae.data.load_audio`, saying on stderr how many bad audio
    files were left out (`skip_bad_files`), as `load_split` does.

    Raises:
        BadAudioFileError: a bad file, unless `skip_bad_files`.
        DatasetError: a dataset that cannot be loaded.
    """
    return _say_skipped(
        load_audio(dataset, split, data_dir, skip_bad_files=skip_bad_files)
    )


def audio_segments(
    utterances: Utterances, segment_length: int, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Up to `count` consecutive segments spread evenly over every segment
    of `utterances` (`audio_pipeline(training=False)`, in order): float32
    waveforms `(n, segment_length, 1)` and their int32 speaker ids."""
    waves, speakers = [], []
    for batch in audio_pipeline(
        utterances, segment_length, 256, seed=0, training=False
    ):
        waves.append(batch["audio"].numpy())
        speakers.append(batch["speaker"].numpy())
    waves, speakers = np.concatenate(waves), np.concatenate(speakers)
    picks = np.unique(np.linspace(0, len(waves) - 1, count).round())
    picks = picks.astype(int)
    return waves[picks], speakers[picks]


def spread_sample(images: Images, count: int) -> np.ndarray:
    """Up to `count` images spread evenly over `images`, in their order:
    every `num_examples // count`-th one (uint8 numpy)."""
    count = min(images.num_examples, count)
    stride = max(1, images.num_examples // count)
    sample = images.dataset.shard(stride, 0).take(count)
    return np.stack([image.numpy() for image in sample])


def write_calibration_sample(
    images: Images | Utterances,
    model_dir: str,
    segment_length: int | None = None,
) -> str:
    """Writes `model_dir/calibration.npy` (`spread_sample` of the training
    images, or for audio `audio_segments` of `segment_length` samples)
    atomically; returns its path."""
    if isinstance(images, Utterances):
        sample, _ = audio_segments(
            images, segment_length, NUM_CALIBRATION_IMAGES
        )
    else:
        sample = spread_sample(images, NUM_CALIBRATION_IMAGES)
    return atomic.write_file(
        os.path.join(model_dir, CALIBRATION_FILE),
        lambda path: np.save(path, sample),
    )


def calibration_images(
    model_dir: str,
    calibration_data: str | None,
    example_shape: tuple,
    data_dir: str | None = None,
    skip_bad_files: bool = False,
) -> np.ndarray | None:
    """Images that calibrate an int8 export of `model_dir`'s VQ-VAE.

    Args:
        model_dir: the model dir (its `calibration.npy` is the default).
        calibration_data: a `.npy` file of images `(n, height, width,
            channels)` (uint8, or float in [0, 1]), or a dataset string
            (`folder:PATH`, `tfds:NAME`, ...) whose training split is
            sampled; `None` for `model_dir/calibration.npy`.
        example_shape: the model's `(height, width, channels)`; the images
            must have it. Audio models: `(samples, 1)`, and the data are
            float waveforms `(n, samples, 1)` in [-1, 1] (`calibration.npy`
            of an audio run, or an audio dataset's training split).
        data_dir: where TensorFlow Datasets looks for a `tfds:` dataset.
        skip_bad_files: leave out bad files of a `folder:` dataset
            (`load_split`).

    Returns:
        The images, or `None` when `calibration_data` is `None` and the
        model dir holds no sample.

    Raises:
        UsageError: unreadable file, or images of another shape.
        DatasetError: a dataset string that cannot be loaded (or holds a
            bad file: `BadImageFileError`).
    """
    source = calibration_data
    if source is None:
        source = os.path.join(model_dir, CALIBRATION_FILE)
        if not os.path.isfile(source):
            return None
    if os.path.isdir(source):
        raise UsageError(
            "`calibration_data` must be a .npy file of images or a dataset "
            f"string; {source!r} is a directory (for a folder of images "
            f"laid out {source}/train/LABEL/*.png, pass folder:{source}). "
            f"Received: calibration_data={source!r}"
        )
    audio = len(example_shape) == 2
    if source.endswith(".npy") or os.path.isfile(source):
        images = _load_npy(source)
    elif audio:
        loaded = load_audio_split(source, "train", data_dir, skip_bad_files)
        images, _ = audio_segments(
            loaded, example_shape[0], NUM_CALIBRATION_IMAGES
        )
    else:
        loaded = load_split(source, "train", data_dir, skip_bad_files)
        images = spread_sample(loaded, NUM_CALIBRATION_IMAGES)
    if images.ndim != len(example_shape) + 1 or tuple(
        images.shape[1:]
    ) != tuple(example_shape):
        what = "waveforms" if audio else "images"
        raise UsageError(
            f"`calibration_data` must hold {what} of the model's shape "
            f"(n, {', '.join(map(str, example_shape))}). "
            f"Received: calibration_data={source!r} of shape {images.shape}"
        )
    if audio and images.dtype.kind != "f":
        raise UsageError(
            "`calibration_data` must hold float waveforms in [-1, 1]. "
            f"Received: calibration_data={source!r} of dtype {images.dtype}"
        )
    if images.dtype != np.uint8 and images.dtype.kind != "f":
        raise UsageError(
            "`calibration_data` must hold uint8 images or floats in [0, 1]. "
            f"Received: calibration_data={source!r} of dtype {images.dtype}"
        )
    return images


def _load_npy(path: str) -> np.ndarray:
    try:
        with open(path, "rb") as file:
            start = file.read(6)
    except OSError:
        start = None  # np.load says why below.
    if start is not None and start != b"\x93NUMPY":
        raise UsageError(
            "`calibration_data` must be a .npy file of images (n, height, "
            "width, channels) or a dataset such as folder:PATH; the file "
            f"is not a .npy file (its first bytes: {start!r}). "
            f"Received: calibration_data={path!r}"
        )
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0][:200]
        raise UsageError(
            "`calibration_data` must be a readable .npy file of images "
            f"({reason}). Received: calibration_data={path!r}"
        ) from None
