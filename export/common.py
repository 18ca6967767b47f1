"""What the SavedModel and TFLite exporters share.

Both take a `tf_vqvae.contracts.CodeModel` (and optionally a
`tf_vqvae.contracts.CodePrior`) and use only the contract's members. Here:
the checks of the model, prior and image size, the `ExportShapes` every
signature is built from, the metadata each `MANIFEST.json` records, and
`staged_export`, which writes an export directory atomically with its
manifest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator

import keras
import tensorflow as tf

from tf_vqvae import atomic
from tf_vqvae.arg_checks import describe
from tf_vqvae.contracts import CodeModel, CodePrior
from tf_vqvae.export import manifest
from tf_vqvae.version import __version__

# `image_size="auto"`: the size in the model's `example_shape`.
AUTO = "auto"


def check_model(model, audio: bool = False) -> None:
    """Raises unless `model` is a built 2D image `CodeModel` (e.g.
    `VQVAE`), or, where the target supports `audio`, a 1D audio one."""
    if not isinstance(model, CodeModel):
        raise TypeError(
            "`model` must be a tf_vqvae VQVAE (a "
            "tf_vqvae.contracts.CodeModel). "
            f"Received: model={model!r} (of type {type(model).__name__})."
        )
    if not model.built or model.example_shape is None:
        raise ValueError(
            "`model` must be built before export: call it on a batch of "
            "images once, or load it with `keras.saving.load_model`."
        )
    if model.generative_decoder:
        raise ValueError(
            "This export supports one-pass decoders; this model's decoder "
            "generates sample by sample (decoder='wavenet'), which export "
            "does not trace yet. Received: model.generative_decoder=True"
        )
    if audio and model.modality == "audio":
        return
    if model.modality != "image" or len(model.example_shape) != 3:
        supported = "image models (spatial_dims=2)"
        if audio:
            supported += " and audio models (modality='audio')"
        raise ValueError(
            f"This export supports {supported}. Received: "
            f"model.modality={model.modality!r}, "
            f"model.example_shape={model.example_shape}"
        )


@dataclasses.dataclass(frozen=True)
class ExportShapes:
    """The sizes every signature of an export is built from.

    Attributes:
        image_size: `(height, width)`; `None` entries accept any positive
            multiple of `downsampling_factor`. `(samples,)` for audio.
        channels: image channels (1 for audio).
        code_size: the code grid `(h, w)` (`None` where the image size is),
            `(samples / downsampling_factor,)` for audio.
        downsampling_factor: image size / code grid size.
        num_embeddings: K, codes are in `[0, K)`.
        num_levels: codes per latent position (the quantizer's
            `num_levels`): more than 1 adds a trailing level axis to codes.
        modality: `"image"` or `"audio"` (the model's).
        num_speakers: the speakers the decoder is conditioned on, or
            `None`.
    """

    image_size: tuple[int | None, ...]
    channels: int
    code_size: tuple[int | None, ...]
    downsampling_factor: int
    num_embeddings: int
    num_levels: int = 1
    modality: str = "image"
    num_speakers: int | None = None

    @property
    def decode_code_grid(self) -> tuple[int | None | tuple[int, int], ...]:
        """The shape of `decode`'s codes after the batch axis, as
        `checks.check_grid` takes it: `code_size`, then, when there is more
        than one level, the level axis holding the first n of them,
        `(1, num_levels)`."""
        levels = ((1, self.num_levels),) if self.num_levels > 1 else ()
        return (*self.code_size, *levels)

    @property
    def code_axes(self) -> tuple[str, ...]:
        """The names of the axes of `decode_code_grid`."""
        levels = ("levels",) if self.num_levels > 1 else ()
        if self.modality == "audio":
            return ("length", *levels)
        return ("height", "width", *levels)

    def image_spec(self, dtype: tf.DType) -> tf.TensorSpec:
        """`images` `(batch, height, width, channels)` of `dtype`."""
        return tf.TensorSpec(
            (None, *self.image_size, self.channels), dtype, name="images"
        )

    def waveform_spec(self) -> tf.TensorSpec:
        """`waveforms` float32 `(batch, samples)` (audio)."""
        return tf.TensorSpec(
            (None, *self.image_size), tf.float32, name="waveforms"
        )

    def codes_spec(self) -> tf.TensorSpec:
        """`decode`'s `codes` int32 `(batch, h, w)`, or `(batch, h, w, n)`
        with a level axis of any size (a prefix of the levels, n from 1 to
        `num_levels`: a lower bitrate)."""
        levels = (None,) if self.num_levels > 1 else ()
        return tf.TensorSpec(
            (None, *self.code_size, *levels), tf.int32, name="codes"
        )


def export_shapes(model, image_size=AUTO) -> ExportShapes:
    """The `ExportShapes` of a checked `model` for `image_size`.

    Args:
        model: a built `CodeModel`, see `check_model`.
        image_size: `(height, width)` (`(samples,)` or `samples` for
            audio); `None` for any size divisible by the downsampling
            factor; `"auto"` for the model's `example_shape` (any size where
            that is unknown).

    Raises:
        ValueError: for an `image_size` of another form, or sizes not
            divisible by the downsampling factor.
    """
    factor = model.downsampling_factor
    rank = len(model.example_shape) - 1
    axes = "(samples,)" if model.modality == "audio" else "(height, width)"
    if (
        rank == 1
        and isinstance(image_size, int)
        and not isinstance(image_size, bool)
    ):
        # One size alone is the tuple of one that audio takes.
        image_size = (image_size,)
    if isinstance(image_size, str) and image_size == AUTO:
        image_size = tuple(model.example_shape[:rank])
    elif image_size is None:
        image_size = (None,) * rank
    elif (
        not isinstance(image_size, (tuple, list))
        or len(image_size) != rank
        or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 1
            for s in image_size
        )
        or any(s % factor for s in image_size)
    ):
        raise ValueError(
            f"`image_size` must be None or {axes}, positive integers "
            f"divisible by 2**num_downsamples={factor}. "
            f"{describe('image_size', image_size)}"
        )
    channels = int(model.example_shape[-1])
    if None in image_size:
        code_size = (None,) * rank
    else:
        code_size = model.code_shape((*image_size, channels))
    return ExportShapes(
        image_size=tuple(image_size),
        channels=channels,
        code_size=tuple(code_size),
        downsampling_factor=factor,
        num_embeddings=int(model.num_embeddings),
        num_levels=int(model.quantizer.num_levels),
        modality=model.modality,
        num_speakers=model.num_speakers,
    )


def check_prior(prior, shapes: ExportShapes) -> None:
    """Raises unless `prior` is a `CodePrior` over the codes of `shapes`:
    its `grid_shape` the code grid of any rank (`(h, w)` of an image model,
    `(length,)` of an audio one) and its `num_levels` the model's (a prior
    over the levels of residual VQ codes for a multi-level quantizer)."""
    if not isinstance(prior, CodePrior):
        raise TypeError(
            "`prior` must be a tf_vqvae prior (a tf_vqvae.contracts."
            "CodePrior, e.g. PixelCNNPrior or WaveNetPrior). "
            f"Received: prior={prior!r} (of type {type(prior).__name__})."
        )
    prior_levels = int(getattr(prior, "num_levels", 1))
    if prior_levels != shapes.num_levels:
        kind = "PixelCNNPrior" if shapes.modality == "image" else "WaveNetPrior"
        hint = f" (a {kind}(num_levels=...) for residual VQ)"
        raise ValueError(
            f"`prior` must model {shapes.num_levels} code(s) per position, "
            f"the levels of `model`'s codes{hint}. Received: "
            f"prior.num_levels={prior_levels}, "
            f"model num_levels={shapes.num_levels}"
        )
    grid = tuple(prior.grid_shape)
    if (
        prior.num_embeddings != shapes.num_embeddings
        or len(grid) != len(shapes.code_size)
        or any(
            c is not None and c != g
            for c, g in zip(shapes.code_size, grid, strict=True)
        )
    ):
        raise ValueError(
            "`prior` must model the codes of `model`: num_embeddings="
            f"{shapes.num_embeddings} and a code grid of {shapes.code_size}. "
            f"Received: prior.num_embeddings={prior.num_embeddings}, "
            f"prior.grid_shape={grid}"
        )


def metadata(model, shapes: ExportShapes, **fields) -> dict:
    """What a `MANIFEST.json` records about the export, besides its files.

    Versions, the model's class, config and shapes, then `fields` (the
    target's own options).
    """
    return {
        "tf_vqvae_version": __version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "model": {
            "class_name": type(model).__name__,
            "config": model.get_config(),
            "num_embeddings": shapes.num_embeddings,
            "image_size": list(shapes.image_size),
            "image_channels": shapes.channels,
            "code_size": list(shapes.code_size),
            "num_levels": shapes.num_levels,
            "modality": shapes.modality,
            "num_speakers": shapes.num_speakers,
        },
        **fields,
    }


@contextlib.contextmanager
def staged_export(
    path: str | os.PathLike,
    kind: str,
    signature_contract: Callable[[str], dict],
    fields: dict,
    overwrite: bool = False,
) -> Iterator[str]:
    """Yields a staging directory that becomes the export at `path`.

    After the block, `MANIFEST.json` is written (hashes of every file, the
    `signature_contract` of the directory and `fields`, which the block may
    still add to) and the directory renamed into place
    (`tf_vqvae.atomic.staged_directory`): a reader sees a complete export
    or none, with the permissions of a plain `mkdir` under the umask.

    Raises:
        FileExistsError: if `path` exists and `overwrite` is False.
    """
    with atomic.staged_directory(path, overwrite=overwrite) as tmp:
        yield tmp
        manifest.write_manifest(tmp, kind, signature_contract(tmp), fields)
