"""TensorBoard callbacks for VQ-VAE training: pictures, code usage, codebook.

Each callback writes real event files with `tf.summary` into its own run
directory under `log_dir`, so TensorBoard lists them side by side with the
`train` and `validation` runs of `keras.callbacks.TensorBoard`:

    log_dir/train, log_dir/validation   keras.callbacks.TensorBoard scalars
                                        (`epoch_loss`, `epoch_perplexity`,
                                        `epoch_dead_codes`, ...)
    log_dir/images          `reconstructions`: originals | reconstructions
    log_dir/audio           audio runs: `originals` and `reconstructions`
                            (`tf.summary.audio`, 16 kHz)
    log_dir/codebook        `code_usage` histogram (and `code_usage/level_i`
                            per level of a residual VQ), `codebook/*`
                            scalars, and the codebook in the embedding
                            projector (for quantizers that have one)
    log_dir/prior_samples   `prior_samples`: decoded samples of the prior

`tensorboard_callbacks(log_dir, validation_images)` returns the usual set
(`modality="audio"` with waveforms: audio instead of pictures).
`CodebookHealth` acts on the epoch's code usage: it warns (or stops
training) when the codebook collapses, and writes its verdict to
`log_dir/codebook` and to a JSON summary.

Example:

    >>> callbacks = tensorboard_callbacks("runs/cifar", images[:16])
    >>> model.fit(dataset, epochs=10, callbacks=callbacks)
    >>> prior.fit(codes, callbacks=[PriorSamples(
    ...     "runs/cifar", sample_fn=prior_sample_fn(prior),
    ...     decode_fn=model.decode)])

then `tensorboard --logdir runs/cifar`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.projector import projector_config_pb2

from tf_vqvae import atomic, codebook_ops, sampling
from tf_vqvae.arg_checks import describe
from tf_vqvae.audio import SAMPLE_RATE
from tf_vqvae.contracts import CodePrior
from tf_vqvae.evaluation import level_code_counts
from tf_vqvae.options import ON_COLLAPSE
from tf_vqvae.visualize import image_grid, save_image_grid, side_by_side

__all__ = [
    "CodeUsage",
    "CodebookHealth",
    "CodebookVerdict",
    "CodebookProjector",
    "PriorSamples",
    "ReconstructionAudio",
    "ReconstructionImages",
    "image_grid",
    "prior_sample_fn",
    "save_image_grid",
    "side_by_side",
    "tensorboard_callbacks",
    "write_histogram",
]

# Metrics of `VQVAE` (see `CodebookUsage`) copied as `codebook/<name>`
# scalars, with every log entry whose name contains one (per-level metrics
# of a residual VQ too).
CODEBOOK_METRICS = (
    "perplexity",
    "codebook_usage",
    "epoch_perplexity",
    "epoch_codebook_usage",
    "dead_codes",
)
PROJECTOR_TENSOR_NAME = "codebook/.ATTRIBUTES/VARIABLE_VALUE"


def _check_every(every_n_epochs) -> None:
    if (
        isinstance(every_n_epochs, bool)
        or not isinstance(every_n_epochs, int)
        or every_n_epochs < 1
    ):
        raise ValueError(
            "`every_n_epochs` must be a positive integer. "
            f"Received: every_n_epochs={every_n_epochs!r} "
            f"(of type {type(every_n_epochs).__name__})."
        )


def _check_images(images) -> np.ndarray:
    """A fixed batch of images `(batch, height, width, channels)`, or of
    float waveforms `(batch, samples, 1)` for an audio model."""
    images = np.asarray(images)
    if images.ndim == 3 and images.shape[0] and images.shape[-1] == 1:
        if not np.issubdtype(images.dtype, np.floating):
            raise TypeError(
                "`images` of shape (batch, samples, 1) are waveforms and "
                "must be floating point in [-1, 1]; one image needs its "
                "batch axis (images[None]). "
                f"Received: images.shape={images.shape}, "
                f"images.dtype={images.dtype}"
            )
        return images
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(
            "`images` must be a non-empty batch of shape (batch, height, "
            f"width, channels). Received: images.shape={images.shape}"
        )
    if images.dtype != np.uint8 and not np.issubdtype(
        images.dtype, np.floating
    ):
        raise TypeError(
            "`images` must be uint8 in [0, 255] or floating point in [0, 1]. "
            f"Received: images.dtype={images.dtype}"
        )
    return images


# What a fixed batch holds for a model of each modality, and the callback
# that shows its reconstructions.
_BATCHES = {
    "audio": "waveforms (batch, samples, 1)",
    "image": "images (batch, height, width, channels)",
}
_PICTURES = {"audio": "ReconstructionAudio", "image": "ReconstructionImages"}


def _check_modality(
    callback: str, name: str, batch: np.ndarray, model, shows=None
) -> None:
    """`batch` (and the callback, for one that `shows` one modality) suit
    `model`'s modality: one line now, not a shape error after an epoch."""
    modality = getattr(model, "modality", None)
    if modality not in _BATCHES:
        return
    given = "audio" if batch.ndim == 3 else "image"
    # A single image (height, width, 1) reads as a batch of waveforms.
    single = (
        " (one image: add the batch axis, images[None])"
        if modality == "image" and given == "audio"
        else ""
    )
    received = f"Received: {name}.shape={batch.shape}"
    if shows is not None and shows != modality:
        raise ValueError(
            f"`{callback}` is for {shows} models; the model is an "
            f"{modality} model (modality={modality!r}): use "
            f"`{_PICTURES[modality]}` with {_BATCHES[modality]}, or "
            f"`tensorboard_callbacks` with them{single}. {received}"
        )
    if given != modality:
        raise ValueError(
            f"`{callback}` needs {_BATCHES[modality]} for an {modality} "
            f"model (modality={modality!r}), and was given "
            f"{_BATCHES[given]}{single}. {received}"
        )


class _SummaryCallback(keras.callbacks.Callback):
    """Owns one `tf.summary` writer for `log_dir/run_name`."""

    def __init__(self, log_dir: str, run_name: str, every_n_epochs: int):
        super().__init__()
        _check_every(every_n_epochs)
        self.log_dir = os.path.expanduser(os.fspath(log_dir))
        self.run_name = run_name
        self.every_n_epochs = every_n_epochs
        self._writer = None
        self.vqvae = None

    def _check_model(self, model) -> None:
        """Raises if the callback cannot show `model` (the VQ-VAE)."""

    def on_train_begin(self, logs=None):
        # Mistakes fail here, before the first epoch, not at its end.
        self._check_model(self.vqvae or self.model)

    @property
    def run_dir(self) -> str:
        return os.path.join(self.log_dir, self.run_name)

    @property
    def writer(self) -> tf.summary.SummaryWriter:
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.run_dir)
        return self._writer

    def _due(self, epoch: int) -> bool:
        return (epoch + 1) % self.every_n_epochs == 0

    def on_epoch_end(self, epoch, logs=None):
        if self._due(epoch):
            with self.writer.as_default(step=epoch):
                self.write(epoch, logs or {})
            self.writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write(self, epoch: int, logs: dict) -> None:
        raise NotImplementedError


class ReconstructionImages(_SummaryCallback):
    """Each epoch, a fixed batch's reconstructions beside the originals.

    Writes the image summary `reconstructions` to `log_dir/images`: a grid
    whose tiles alternate original, reconstruction (so each reconstruction is
    right of its original), `pairs_per_row` pairs per row.

    Args:
        log_dir: the TensorBoard log directory.
        images: a fixed batch `(batch, height, width, channels)`, uint8 or float
            in [0, 1], e.g. the first validation images. Keep it small (8-32).
        every_n_epochs: write every n-th epoch (1: every epoch).
        pairs_per_row: original/reconstruction pairs per grid row.
        model: the VQ-VAE to call; default the model being trained.
    """

    def __init__(
        self,
        log_dir: str,
        images,
        every_n_epochs: int = 1,
        pairs_per_row: int = 4,
        model: keras.Model | None = None,
    ):
        super().__init__(log_dir, "images", every_n_epochs)
        self.images = _check_images(images)
        self.pairs_per_row = pairs_per_row
        self.vqvae = model
        if model is not None:
            self._check_model(model)

    def _check_model(self, model) -> None:
        _check_modality(
            "ReconstructionImages", "images", self.images, model, "image"
        )

    def grid(self) -> np.ndarray:
        """The uint8 grid of the fixed batch and its reconstructions."""
        model = self.vqvae or self.model
        reconstructions = model.decode(model.encode(self.images))
        # The mean of an `mse` decoder is unbounded: shown clipped.
        reconstructions = np.clip(np.asarray(reconstructions), 0.0, 1.0)
        pairs = side_by_side(self.images, reconstructions)
        return image_grid(pairs, ncols=2 * self.pairs_per_row)

    def write(self, epoch, logs):
        tf.summary.image(
            "reconstructions",
            self.grid()[None],
            description="Fixed batch: each original, then its reconstruction.",
        )


class ReconstructionAudio(_SummaryCallback):
    """Each epoch, a fixed batch of waveforms and their reconstructions.

    Writes the audio summaries `originals` and `reconstructions` to
    `log_dir/audio` (`tf.summary.audio` at `sample_rate`, one clip per
    waveform; the originals once, at the first epoch written, as they do
    not change). A reconstruction is `model.decode(model.encode(x))`, with
    the waveform's speaker for a speaker-conditioned decoder; a generative
    decoder (`decoder="wavenet"`) generates waveform `i` from
    `sampling.example_seeds(seed, i, 1)`, the same every epoch.

    Args:
        log_dir: the TensorBoard log directory.
        waveforms: a fixed batch `(batch, samples, 1)`, float in [-1, 1].
            Keep it small (a few clips).
        speakers: int speaker ids `(batch,)` (needed when the model is
            conditioned on speakers; ignored otherwise).
        every_n_epochs: write every n-th epoch.
        sample_rate: Hz (16,000, `tf_vqvae.audio.SAMPLE_RATE`).
        model: the VQ-VAE to call; default the model being trained.
        seed: the generation seed of a generative decoder.
    """

    def __init__(
        self,
        log_dir: str,
        waveforms,
        speakers=None,
        every_n_epochs: int = 1,
        sample_rate: int = SAMPLE_RATE,
        model: keras.Model | None = None,
        seed: int = 0,
    ):
        super().__init__(log_dir, "audio", every_n_epochs)
        waveforms = np.asarray(waveforms)
        if (
            waveforms.ndim != 3
            or waveforms.shape[0] == 0
            or waveforms.shape[-1] != 1
            or not np.issubdtype(waveforms.dtype, np.floating)
        ):
            raise ValueError(
                "`waveforms` must be a non-empty float batch of shape "
                f"(batch, samples, 1). Received: waveforms.shape="
                f"{waveforms.shape}, dtype={waveforms.dtype}"
            )
        self.waveforms = waveforms.astype(np.float32)
        self.speakers = (
            None if speakers is None else np.asarray(speakers, np.int32)
        )
        self._given_speakers = speakers  # checked once the model is known
        self.sample_rate = sample_rate
        self.vqvae = model
        self.seed = seed
        self._originals_written = False
        if model is not None:
            self._check_model(model)

    def _check_model(self, model) -> None:
        _check_modality(
            "ReconstructionAudio", "waveforms", self.waveforms, model, "audio"
        )
        num_speakers = getattr(model, "num_speakers", None)
        if not num_speakers:
            return  # `speakers` are ignored.
        if self._given_speakers is None:
            raise ValueError(
                "`speakers` must be given for a model conditioned on "
                f"speakers (num_speakers={num_speakers}): one id per "
                "waveform. Received: speakers=None"
            )
        ids = _ids_in_turn(
            self._given_speakers, num_speakers, "speakers", "num_speakers"
        )
        if len(ids) != len(self.waveforms):
            raise ValueError(
                f"`speakers` must hold one id per waveform "
                f"({len(self.waveforms)}). "
                f"Received: speakers={self._given_speakers!r}"
            )

    def reconstructions(self) -> np.ndarray:
        """float32 `(batch, samples, 1)`: the fixed batch reconstructed."""
        model = self.vqvae or self.model
        speaker = self.speakers if model.num_speakers else None
        codes = model.encode(self.waveforms)
        seed = sampling.decode_seed(model, self.seed, 0, len(self.waveforms))
        return np.asarray(
            model.decode(codes, speaker=speaker, **seed), np.float32
        )

    def write(self, epoch, logs):
        count = len(self.waveforms)
        if not self._originals_written:
            tf.summary.audio(
                "originals",
                self.waveforms,
                self.sample_rate,
                max_outputs=count,
                description="Fixed batch of validation waveforms.",
            )
            self._originals_written = True
        tf.summary.audio(
            "reconstructions",
            np.clip(self.reconstructions(), -1.0, 1.0),
            self.sample_rate,
            max_outputs=count,
            description="decode(encode(x)) of the fixed batch, in order.",
        )


def write_histogram(tag: str, counts, description: str = "") -> None:
    """Writes `counts[k]` as the height of bucket `[k, k + 1)`.

    TensorBoard's histogram format (`(left, right, count)` rows), with one
    bucket per code, so the plot reads directly as usage per code index.
    Must run under a default `tf.summary` writer with a step.
    """
    counts = tf.cast(tf.reshape(counts, [-1]), tf.float64)
    left = tf.range(tf.size(counts), dtype=tf.float64)
    buckets = tf.stack([left, left + 1.0, counts], axis=1)
    metadata = histogram_metadata.create_summary_metadata(
        display_name=tag, description=description
    )
    tf.summary.write(tag, buckets, metadata=metadata.SerializeToString())


class CodeUsage(_SummaryCallback):
    """Each epoch, how often each code is used, and codebook health scalars.

    Writes to `log_dir/codebook`:

    - `code_usage`: a histogram with one bucket per code (x: code index,
      height: how many latent positions of the fixed batch picked it,
      pooled over the levels of a quantizer with several), and for such a
      quantizer (`quantizer.num_levels > 1`, residual VQ) one
      `code_usage/level_<i>` histogram per level;
    - `codebook/batch_perplexity`, `codebook/batch_dead_codes`: perplexity
      `exp(-sum p log p)` and number of unused codes on the fixed batch;
    - `codebook/<metric>` for the model's `perplexity`, `codebook_usage`,
      `epoch_perplexity`, `epoch_codebook_usage` and `dead_codes` found in
      the epoch logs (training, and `val_*` ones as `codebook/val_<metric>`;
      also every logged metric whose name contains one of these, such as a
      residual VQ's per-level metrics).

    Args:
        log_dir: the TensorBoard log directory.
        images: the fixed batch to encode, uint8 or float in [0, 1].
        every_n_epochs: write every n-th epoch.
        model: the VQ-VAE; default the model being trained.
    """

    def __init__(
        self,
        log_dir: str,
        images,
        every_n_epochs: int = 1,
        model: keras.Model | None = None,
    ):
        super().__init__(log_dir, "codebook", every_n_epochs)
        self.images = _check_images(images)
        self.vqvae = model
        if model is not None:
            self._check_model(model)

    def _check_model(self, model) -> None:
        _check_modality("CodeUsage", "images", self.images, model)

    def level_counts(self) -> tf.Tensor:
        """float32 `[num_levels, num_embeddings]` code counts over the fixed
        batch, one row per level of the quantizer."""
        model = self.vqvae or self.model
        codes = model.encode(self.images)
        return level_code_counts(
            codes, model.num_embeddings, model.quantizer.num_levels
        )

    def counts(self) -> tf.Tensor:
        """float32 `[num_embeddings]` code counts over the fixed batch,
        pooled over the levels."""
        return tf.reduce_sum(self.level_counts(), axis=0)

    def write(self, epoch, logs):
        level_counts = self.level_counts()
        counts = tf.reduce_sum(level_counts, axis=0)
        write_histogram(
            "code_usage",
            counts,
            description="Latent positions of the fixed batch per code index.",
        )
        if level_counts.shape[0] > 1:
            for level, level_count in enumerate(level_counts):
                write_histogram(
                    f"code_usage/level_{level}",
                    level_count,
                    description=f"Codes of residual level {level} of the "
                    "fixed batch per code index.",
                )
        tf.summary.scalar(
            "codebook/batch_perplexity", codebook_ops.perplexity(counts)
        )
        tf.summary.scalar(
            "codebook/batch_dead_codes",
            tf.reduce_sum(tf.cast(counts == 0, tf.float32)),
        )
        for key, value in logs.items():
            if any(name in key for name in CODEBOOK_METRICS):
                tf.summary.scalar(f"codebook/{key}", float(value))


class CodebookProjector(keras.callbacks.Callback):
    """The codebook in TensorBoard's embedding projector.

    Keras 3's `TensorBoard(embeddings_freq=...)` cannot write the projector
    config (keras#20210), so this callback writes, in `log_dir/codebook`:

    - a checkpoint holding only the `(num_embeddings, embedding_dim)`
      codebook (under `PROJECTOR_TENSOR_NAME`), through
      `tf.train.CheckpointManager` (atomic; the latest one is kept);
    - `codebook_metadata.tsv`: one row per code, its index and how many
      latent positions of `images` picked it (when `images` are given);
    - `projector_config.pbtxt` pointing at both.

    Args:
        log_dir: the TensorBoard log directory.
        images: optional fixed batch; its code counts label the points.
        every_n_epochs: write every n-th epoch.
        model: the VQ-VAE; default the model being trained.
    """

    def __init__(
        self,
        log_dir: str,
        images=None,
        every_n_epochs: int = 1,
        model: keras.Model | None = None,
    ):
        super().__init__()
        _check_every(every_n_epochs)
        self.log_dir = os.path.expanduser(os.fspath(log_dir))
        self.images = None if images is None else _check_images(images)
        self.every_n_epochs = every_n_epochs
        self.vqvae = model
        self._variable = None
        self._manager = None
        if model is not None:
            self._check_model(model)

    def _check_model(self, model) -> None:
        if self.images is not None:
            _check_modality("CodebookProjector", "images", self.images, model)

    def on_train_begin(self, logs=None):
        self._check_model(self.vqvae or self.model)

    @property
    def run_dir(self) -> str:
        return os.path.join(self.log_dir, "codebook")

    def write_projector(self, step: int) -> str | None:
        """Writes checkpoint, metadata and config; returns the config path.

        Writes nothing (and returns `None`) when the model's quantizer has
        no explicit codebook (`quantizer.codebook()` is `None`).
        """
        model = self.vqvae or self.model
        codebook = model.quantizer.codebook()
        if codebook is None:
            return None
        tf.io.gfile.makedirs(self.run_dir)
        if self._variable is None:
            self._variable = tf.Variable(codebook, trainable=False)
            self._manager = tf.train.CheckpointManager(
                tf.train.Checkpoint(codebook=self._variable),
                self.run_dir,
                max_to_keep=1,
                checkpoint_name="codebook",
            )
        else:
            self._variable.assign(codebook)
        self._manager.save(checkpoint_number=step)

        config = projector_config_pb2.ProjectorConfig()
        embedding = config.embeddings.add()
        embedding.tensor_name = PROJECTOR_TENSOR_NAME
        if self.images is not None:
            counts = level_code_counts(
                model.encode(self.images),
                model.num_embeddings,
                model.quantizer.num_levels,
            ).numpy()
            # One row per code vector: per level when each level has its
            # own codebook rows, else pooled.
            rows = int(codebook.shape[0])
            counts = (
                counts.reshape(-1) if rows == counts.size else counts.sum(0)
            )
            rows = ["code\tcount"] + [
                f"{k}\t{int(c)}" for k, c in enumerate(counts)
            ]
            atomic.write_text(
                os.path.join(self.run_dir, "codebook_metadata.tsv"),
                "\n".join(rows) + "\n",
            )
            embedding.metadata_path = "codebook_metadata.tsv"
        path = os.path.join(self.run_dir, "projector_config.pbtxt")
        atomic.write_text(path, text_format.MessageToString(config))
        return path

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs == 0:
            self.write_projector(epoch)


def prior_sample_fn(prior, labels=None, **sample_kwargs) -> Callable:
    """`(num, seed) -> int32 codes` for a prior with a `distribution()`.

    Works with `PixelCNNPrior` (`prior.distribution().sample(num, seed=...)`)
    or anything with the same method; extra keyword arguments are passed to
    `sample`. A class-conditional prior (`num_classes` set) draws the
    classes in turn: sample `i` is of class `labels[i % len(labels)]`,
    `labels` (int ids) defaulting to every class (e.g. only the trained
    speakers of a speaker-conditional prior).
    """
    num_classes = getattr(prior, "num_classes", None)
    labels = _ids_in_turn(labels, num_classes, "labels", "num_classes")

    def sample(num: int, seed: int) -> tf.Tensor:
        if num_classes is None:
            distribution = prior.distribution()
            codes = distribution.sample(num, seed=seed, **sample_kwargs)
        else:
            distribution = prior.distribution(
                labels=labels[np.arange(num) % len(labels)]
            )
            codes = distribution.sample(seed=seed, **sample_kwargs)
        return tf.cast(codes, tf.int32)

    return sample


def _ids_in_turn(ids, count: int | None, name: str, count_name: str):
    """int32 `ids` (every id below `count` by default) checked to be
    non-empty and below `count`; `None` when `count` is `None` (then `ids`
    must be `None`: nothing takes them)."""
    if count is None:
        if ids is not None:
            raise ValueError(
                f"`{name}` are only for a model with `{count_name}` set, and "
                f"it has none. Received: {name}={ids!r}"
            )
        return None
    if ids is None:
        return np.arange(count, dtype="int32")
    array = np.asarray(ids)
    if (
        array.ndim != 1
        or array.size == 0
        or not np.issubdtype(array.dtype, np.integer)
        or array.min() < 0
        or array.max() >= count
    ):
        raise ValueError(
            f"`{name}` must be a non-empty sequence of ints in [0, "
            f"{count_name}={count}). Received: {name}={ids!r}"
        )
    return array.astype("int32")


class PriorSamples(_SummaryCallback):
    """Each epoch, samples of the prior being trained, decoded.

    For an image model, the image summary `prior_samples` (a grid); for an
    audio model (`decode_fn` a `CodeModel` with `modality == "audio"`), the
    audio summary `prior_samples` (`tf.summary.audio`, one clip per sample
    at 16 kHz). A decoder conditioned on speakers (`num_speakers`) decodes
    sample `i` as speaker `speakers[i % len(speakers)]`, the labels
    `prior_sample_fn(prior, labels=speakers)` gives a speaker-conditional
    prior. Written to `log_dir/prior_samples`.
    The same `seed` every epoch, so the summaries show how the prior
    changes rather than sampling noise; a generative decoder
    (`decoder="wavenet"`) generates sample `i` from
    `sampling.example_seeds(seed, i, 1)`.

    Args:
        log_dir: the TensorBoard log directory.
        sample_fn: `(num, seed) -> int codes (num, *code_grid)`, e.g.
            `prior_sample_fn(prior)`.
        decode_fn: the `VQVAE` (its `decode` is used), or `codes -> images
            in [0, 1]`, e.g. `vqvae.decode`.
        num_samples: images per grid, or audio clips.
        seed: the sampling seed.
        ncols: images per grid row.
        every_n_epochs: write every n-th epoch.
        speakers: int speaker ids decoded in turn (a decoder with speakers;
            default all of them), e.g. only those the training split has:
            a held-out voice's embedding never trained.
    """

    def __init__(
        self,
        log_dir: str,
        sample_fn: Callable,
        decode_fn,
        num_samples: int = 16,
        seed: int = 0,
        ncols: int = 8,
        every_n_epochs: int = 1,
        speakers=None,
    ):
        super().__init__(log_dir, "prior_samples", every_n_epochs)
        if not callable(sample_fn):
            raise TypeError(
                "`sample_fn` must be callable as sample_fn(num, seed). "
                f"Received: sample_fn={sample_fn!r} "
                f"(of type {type(sample_fn).__name__})."
            )
        # A prior (a Keras model: callable, on codes) in its place would
        # fail only at the first epoch's end.
        if isinstance(sample_fn, (CodePrior, keras.layers.Layer)):
            raise TypeError(
                "`sample_fn` must be a function (num, seed) -> codes, such "
                "as prior_sample_fn(prior), not the prior itself. "
                f"{describe('sample_fn', sample_fn)}"
            )
        # The model whose `decode` is called, when known (`decode_fn` the
        # model or its bound `decode`): its modality, its speakers, and a
        # generative decoder takes per-sample seeds.
        self._code_model = getattr(decode_fn, "__self__", decode_fn)
        self.modality = getattr(self._code_model, "modality", "image")
        self.num_speakers = getattr(self._code_model, "num_speakers", None)
        self.speakers = _ids_in_turn(
            speakers, self.num_speakers or None, "speakers", "num_speakers"
        )
        if hasattr(decode_fn, "decode"):
            decode_fn = decode_fn.decode
        if not callable(decode_fn) or isinstance(decode_fn, CodePrior):
            raise TypeError(
                "`decode_fn` must be callable on codes, or a VQVAE. "
                f"Received: decode_fn={decode_fn!r} "
                f"(of type {type(decode_fn).__name__})."
            )
        if (
            isinstance(num_samples, bool)
            or not isinstance(num_samples, int)
            or num_samples < 1
        ):
            raise ValueError(
                "`num_samples` must be a positive integer. "
                f"Received: num_samples={num_samples!r} "
                f"(of type {type(num_samples).__name__})."
            )
        self.sample_fn = sample_fn
        self.decode_fn = decode_fn
        self.num_samples = num_samples
        self.seed = seed
        self.ncols = ncols

    def decoded(self) -> np.ndarray:
        """The decoded samples: images `(num, *spatial, channels)` in
        [0, 1], or waveforms `(num, samples, 1)` in [-1, 1]."""
        codes = tf.cast(self.sample_fn(self.num_samples, self.seed), tf.int32)
        seed = sampling.decode_seed(
            self._code_model, self.seed, 0, self.num_samples
        )
        if self.speakers is not None:
            speakers = self.speakers[
                np.arange(self.num_samples) % len(self.speakers)
            ]
            return np.asarray(self.decode_fn(codes, speaker=speakers, **seed))
        return np.asarray(self.decode_fn(codes, **seed))

    def grid(self) -> np.ndarray:
        """The uint8 grid of decoded samples (image models)."""
        # The mean of an `mse` decoder is unbounded: shown clipped.
        return image_grid(np.clip(self.decoded(), 0.0, 1.0), ncols=self.ncols)

    def write(self, epoch, logs):
        description = f"Decoded prior samples, seed {self.seed}."
        if self.modality == "audio":
            tf.summary.audio(
                "prior_samples",
                self.decoded(),
                sample_rate=SAMPLE_RATE,
                max_outputs=self.num_samples,
                description=description,
            )
            return
        tf.summary.image(
            "prior_samples", self.grid()[None], description=description
        )


def tensorboard_callbacks(
    log_dir: str,
    validation_images,
    every_n_epochs: int = 1,
    projector: bool = True,
    speakers=None,
    seed: int = 0,
    **tensorboard_kwargs,
) -> list[keras.callbacks.Callback]:
    """The usual TensorBoard set for training a VQ-VAE.

    `keras.callbacks.TensorBoard` (scalars of every metric, in `train` and
    `validation` runs), `ReconstructionImages` (for waveforms
    `ReconstructionAudio`), `CodeUsage` and, if `projector`,
    `CodebookProjector`, all on the same fixed batch.

    Args:
        log_dir: the TensorBoard log directory.
        validation_images: the fixed batch, e.g. 16 validation images, or
            float waveforms `(batch, samples, 1)` of an audio model.
        speakers: the waveforms' speaker ids (`ReconstructionAudio`).
        seed: the generation seed of a generative decoder
            (`ReconstructionAudio`).
        every_n_epochs: how often the pictures, histogram and projector are
            written (scalars are written every epoch).
        projector: whether to write the codebook for the projector.
        **tensorboard_kwargs: passed to `keras.callbacks.TensorBoard`.

    Returns:
        A list of callbacks for `fit`.
    """
    log_dir = os.path.expanduser(os.fspath(log_dir))
    validation_images = _check_images(validation_images)
    if validation_images.ndim == 3:
        pictures = ReconstructionAudio(
            log_dir, validation_images, speakers, every_n_epochs, seed=seed
        )
    else:
        pictures = ReconstructionImages(
            log_dir, validation_images, every_n_epochs
        )
    callbacks = [
        keras.callbacks.TensorBoard(log_dir, **tensorboard_kwargs),
        pictures,
        CodeUsage(log_dir, validation_images, every_n_epochs),
    ]
    if projector:
        callbacks.append(
            CodebookProjector(log_dir, validation_images, every_n_epochs)
        )
    return callbacks


@dataclasses.dataclass(frozen=True)
class CodebookVerdict:
    """`CodebookHealth`'s verdict on one epoch.

    Attributes:
        epoch: the epoch (0-based, as Keras counts).
        num_embeddings: K.
        used_codes: codes picked at least once during the epoch.
        dead_codes: codes never picked during the epoch (`K - used_codes`).
        perplexity: `exp(-sum p log p)` of the epoch's pooled code counts.
        healthy: whether every threshold held.
        message: the one-line warning (`""` when healthy).
    """

    epoch: int
    num_embeddings: int
    used_codes: int
    dead_codes: int
    perplexity: float
    healthy: bool
    message: str

    @property
    def usage(self) -> float:
        """`used_codes / num_embeddings`."""
        return self.used_codes / self.num_embeddings


def _check_fraction(name: str, value) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0.0 <= value <= 1.0
    ):
        raise ValueError(
            f"`{name}` must be a number in [0, 1] (a fraction of "
            f"num_embeddings). Received: {name}={value!r} "
            f"(of type {type(value).__name__})."
        )
    return float(value)


def _pooled_codes(model) -> int:
    """The number of codes the pooled epoch metrics count: K, or
    `num_levels * K` for a multi-level quantizer with a codebook per level
    (the rows of `quantizer.codebook()`, as `CodebookUsage` pools them)."""
    quantizer = getattr(model, "quantizer", None)
    built = getattr(quantizer, "built", False)
    codebook = quantizer.codebook() if built else None
    if codebook is None:
        return int(model.num_embeddings)
    return int(codebook.shape[0])


class CodebookHealth(keras.callbacks.Callback):
    """After each epoch, checks the codebook's usage and acts on a collapse.

    Reads the codebook metrics the model reports for the epoch (see
    `tf_vqvae.metrics.CodebookUsage`: counts pooled over every training step
    of the epoch and, under `tf.distribute`, over all replicas):

        used codes  = epoch_codebook_usage * K
        dead codes  = dead_codes             (= K - used codes)
        perplexity  = epoch_perplexity       (exp of the entropy of the
                                              pooled code distribution)

    The codebook has *collapsed* when `used / K < min_usage` or
    `perplexity / K < min_perplexity`. (A dead code is one no latent
    position picked during the epoch, so the fraction of dead codes is
    `1 - usage`: `min_usage` is also the dead-code threshold, at most
    `1 - min_usage` of K dead.) The defaults suit the paper's K=512: at
    least 128 codes used and a perplexity of at least 25.6. The demo
    (`PRESETS["demo"]`, K=128) used all 128 codes in each of its 8 epochs
    (perplexity 71 to 94); the same config with the paper's plain algorithm
    (no data init, no restarts) used 11 codes in its first epoch.

    On a collapse it prints one line to stderr naming the numbers and what
    to try (a data-dependent codebook init, dead-code restarts, whichever of
    them the model has off, a lower learning rate, FSQ), e.g.

        CodebookHealth: epoch 1: codebook collapse: 11 of 128 codes used
        (8.6% < 25%), 117 dead; try --data-init kmeans++,
        --dead-code-restart-steps 100, a lower --learning-rate (now 0.001)
        or --quantizer fsq (no codebook to collapse).

    (a low perplexity adds `perplexity P (x% of K < 5%)`)

    and, with `on_collapse="stop"`, stops training (`model.stop_training`;
    `stopped_epoch` says when).

    Each verdict (`verdicts`, the latest as `verdict`) is also written:
    with `log_dir`, as the scalar `codebook/healthy` (1 or 0) and the text
    `codebook/health` in `log_dir/codebook`; with `summary_path`, as JSON
    `{"healthy": ..., "min_usage": ..., "min_perplexity": ...,
    "on_collapse": ..., "epochs": [verdict, ...]}` (written atomically after
    every epoch; the epochs of an earlier, resumed invocation are kept).

    Under `tf.distribute` the metrics are all-reduced, so every replica and
    every worker judges the same counts: the verdict is one device's on the
    same global batches. Each worker writes its own files: under
    `MultiWorkerMirroredStrategy` give each its own `log_dir` and
    `summary_path`, as `vqvae train` does (the chief writes
    `MODEL_DIR/codebook_health.json`, worker N
    `MODEL_DIR/workers/worker-N/codebook_health.json`).

    Args:
        on_collapse: `"warn"` or `"stop"`.
        min_usage: the least fraction of the K codes the epoch must use.
        min_perplexity: the least epoch perplexity, as a fraction of K.
        log_dir: the TensorBoard log directory, or `None`.
        summary_path: a JSON file for the verdicts, or `None`.
        model: the VQ-VAE; default the model being trained (it must report
            `epoch_codebook_usage`, `dead_codes` and `epoch_perplexity`,
            and have `num_embeddings`).

    Raises:
        ValueError: for an unknown `on_collapse` or a threshold outside
            [0, 1].

    Example:

    >>> health = CodebookHealth(on_collapse="stop")
    >>> model.fit(images, epochs=10, callbacks=[health])
    >>> health.verdict.healthy, health.verdict.used_codes
    """

    METRICS = ("epoch_codebook_usage", "dead_codes", "epoch_perplexity")

    def __init__(
        self,
        on_collapse: str = "warn",
        min_usage: float = 0.25,
        min_perplexity: float = 0.05,
        log_dir: str | None = None,
        summary_path: str | None = None,
        model: keras.Model | None = None,
    ):
        super().__init__()
        if on_collapse not in ON_COLLAPSE:
            choices = " or ".join(repr(name) for name in ON_COLLAPSE)
            raise ValueError(
                f"`on_collapse` must be {choices}. "
                f"Received: on_collapse={on_collapse!r} "
                f"(of type {type(on_collapse).__name__})."
            )
        self.on_collapse = on_collapse
        self.min_usage = _check_fraction("min_usage", min_usage)
        self.min_perplexity = _check_fraction("min_perplexity", min_perplexity)
        self.log_dir = (
            None if log_dir is None else os.path.expanduser(os.fspath(log_dir))
        )
        self.summary_path = (
            None
            if summary_path is None
            else os.path.expanduser(os.fspath(summary_path))
        )
        self.vqvae = model
        self.verdicts: list[CodebookVerdict] = []
        self.stopped_epoch: int | None = None
        self._writer = None
        self._pending = ""

    @property
    def verdict(self) -> CodebookVerdict | None:
        """The latest epoch's verdict (`None` before the first epoch)."""
        return self.verdicts[-1] if self.verdicts else None

    def judge(self, epoch: int, logs: dict) -> CodebookVerdict:
        """The verdict on an epoch from its logs (no side effects)."""
        missing = [name for name in self.METRICS if name not in logs]
        if missing:
            raise ValueError(
                "`CodebookHealth` needs the model's epoch codebook metrics "
                f"{list(self.METRICS)} (see tf_vqvae.metrics.CodebookUsage); "
                f"the epoch's logs have none of {missing}. "
                f"Received: logs keys {sorted(logs)}"
            )
        model = self.vqvae or self.model
        k = _pooled_codes(model)
        used = int(round(float(logs["epoch_codebook_usage"]) * k))
        dead = int(round(float(logs["dead_codes"])))
        perplexity = float(logs["epoch_perplexity"])
        problems = []
        if used < self.min_usage * k:
            problems.append(
                f"{used} of {k} codes used ({used / k:.1%} < "
                f"{self.min_usage:.0%}), {dead} dead"
            )
        if perplexity < self.min_perplexity * k:
            problems.append(
                f"perplexity {perplexity:.3g} ({perplexity / k:.1%} of K < "
                f"{self.min_perplexity:.0%})"
            )
        message = ""
        if problems:
            if len(problems) == 1 and problems[0].startswith("perplexity"):
                problems.insert(0, f"{used} of {k} codes used, {dead} dead")
            message = (
                f"CodebookHealth: epoch {epoch + 1}: codebook collapse: "
                f"{', '.join(problems)}; try {self._remedies(model)}."
            )
        return CodebookVerdict(
            epoch=epoch,
            num_embeddings=k,
            used_codes=used,
            dead_codes=dead,
            perplexity=perplexity,
            healthy=not problems,
            message=message,
        )

    @staticmethod
    def _remedies(model) -> str:
        remedies = []
        # Data init and restarts are options of the codebook quantizers.
        kind = getattr(model, "quantizer_type", None)
        if kind in ("vq", "ema", "rvq"):
            if getattr(model, "data_init", "off") is None:
                remedies.append("--data-init kmeans++")
            if getattr(model, "dead_code_restart_steps", "off") is None:
                remedies.append("--dead-code-restart-steps 100")
        if kind == "fsq":
            quantizer = getattr(model, "quantizer", None)
            if getattr(quantizer, "data_init", True) is False:
                remedies.append("--fsq-data-init")
            if getattr(quantizer, "saturation_penalty", None) == 0:
                remedies.append("--fsq-saturation-penalty 0.1")
        learning_rate = ""
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None:
            rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            learning_rate = f" (now {rate:g})"
        remedies.append(f"a lower --learning-rate{learning_rate}")
        if kind != "fsq":
            remedies.append("--quantizer fsq (no codebook to collapse)")
        if len(remedies) == 1:
            return remedies[0]
        return ", ".join(remedies[:-1]) + " or " + remedies[-1]

    def on_epoch_end(self, epoch, logs=None):
        verdict = self.judge(epoch, logs or {})
        self.verdicts.append(verdict)
        if not verdict.healthy:
            # Printed once the progress bar has finished the epoch's line.
            self._pending = verdict.message
            if self.on_collapse == "stop":
                self.model.stop_training = True
                self.stopped_epoch = epoch
        if self.log_dir is not None:
            self._write_summaries(verdict)
        if self.summary_path is not None:
            self._write_json()

    def _write_summaries(self, verdict: CodebookVerdict) -> None:
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(
                os.path.join(self.log_dir, "codebook")
            )
        text = verdict.message or (
            f"healthy: {verdict.used_codes} of {verdict.num_embeddings} "
            f"codes used, {verdict.dead_codes} dead, perplexity "
            f"{verdict.perplexity:.3g}"
        )
        with self._writer.as_default(step=verdict.epoch):
            tf.summary.scalar(
                "codebook/healthy",
                float(verdict.healthy),
                description="1 if the epoch's code usage passed "
                "CodebookHealth's thresholds, else 0.",
            )
            tf.summary.text("codebook/health", text)
        self._writer.flush()

    def _write_json(self) -> None:
        epochs = {}
        try:
            with open(self.summary_path) as file:
                for entry in json.load(file)["epochs"]:
                    epochs[int(entry["epoch"])] = entry
        except (OSError, ValueError, KeyError, TypeError):
            pass  # No summary yet (or an unreadable one): start afresh.
        for verdict in self.verdicts:
            epochs[verdict.epoch] = dataclasses.asdict(verdict)
        summary = {
            "healthy": self.verdict.healthy,
            "min_usage": self.min_usage,
            "min_perplexity": self.min_perplexity,
            "on_collapse": self.on_collapse,
            "epochs": [epochs[epoch] for epoch in sorted(epochs)],
        }
        atomic.write_text(
            self.summary_path, json.dumps(summary, indent=2) + "\n"
        )

    def _print_pending(self) -> None:
        if self._pending:
            print(self._pending, file=sys.stderr, flush=True)
            self._pending = ""

    def on_epoch_begin(self, epoch, logs=None):
        self._print_pending()

    def on_train_end(self, logs=None):
        self._print_pending()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
