"""Reading a model dir back: the trained models, the calibration sample.

The file names are in `tf_vqvae.training.layout`.
"""

from __future__ import annotations

import os
import sys

import keras
import numpy as np

# Loading a `.keras` file needs the classes registered: importing their
# modules (`prior`, `vqvae`) registers them.
from tf_vqvae import atomic, prior, vqvae  # noqa: F401
from tf_vqvae.data import Images, load_images
from tf_vqvae.training.config import load_config
from tf_vqvae.training.layout import (
    CALIBRATION_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    PRIOR_DIR,
    PRIOR_FILE,
)
from tf_vqvae.training.runs import UsageError

NUM_CALIBRATION_IMAGES = 256


def load_vqvae(model_dir: str):
    """The trained `VQVAE` of `model_dir` and its `TrainConfig`.

    Raises:
        UsageError: if `model_dir` holds no `model.keras`.
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
    return keras.saving.load_model(path), config


def load_prior(model_dir: str):
    """The trained `PixelCNNPrior` of `model_dir`.

    Raises:
        UsageError: if `model_dir` holds no `prior/prior.keras`.
    """
    path = os.path.join(model_dir, PRIOR_DIR, PRIOR_FILE)
    if not os.path.isfile(path):
        raise UsageError(
            f"`model_dir` {model_dir!r} holds no trained prior "
            f"({PRIOR_DIR}/{PRIOR_FILE}); run `vqvae train-prior --model-dir "
            f"{model_dir}` first. Received: model_dir={model_dir!r}"
        )
    return keras.saving.load_model(path, compile=False)


def trained_prior(model_dir: str):
    """`load_prior(model_dir)` if the prior is trained, else `None`."""
    if os.path.isfile(os.path.join(model_dir, PRIOR_DIR, PRIOR_FILE)):
        return load_prior(model_dir)
    return None


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
    images = load_images(
        dataset, split, data_dir, skip_bad_files=skip_bad_files
    )
    summary = images.skipped_summary()
    if summary is not None:
        print(f"vqvae: {summary}", file=sys.stderr, flush=True)
    return images


def spread_sample(images: Images, count: int) -> np.ndarray:
    """Up to `count` images spread evenly over `images`, in their order:
    every `num_examples // count`-th one (uint8 numpy)."""
    count = min(images.num_examples, count)
    stride = max(1, images.num_examples // count)
    sample = images.dataset.shard(stride, 0).take(count)
    return np.stack([image.numpy() for image in sample])


def write_calibration_sample(images: Images, model_dir: str) -> str:
    """Writes `model_dir/calibration.npy` (`spread_sample` of the training
    images) atomically; returns its path."""
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
            must have it.
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
    if source.endswith(".npy") or os.path.isfile(source):
        images = _load_npy(source)
    else:
        loaded = load_split(source, "train", data_dir, skip_bad_files)
        images = spread_sample(loaded, NUM_CALIBRATION_IMAGES)
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(example_shape):
        raise UsageError(
            "`calibration_data` must hold images of the model's shape "
            f"(n, {', '.join(map(str, example_shape))}). "
            f"Received: calibration_data={source!r} of shape {images.shape}"
        )
    if images.dtype != np.uint8 and images.dtype.kind != "f":
        raise UsageError(
            "`calibration_data` must hold uint8 images or floats in [0, 1]. "
            f"Received: calibration_data={source!r} of dtype {images.dtype}"
        )
    return images


def _load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0][:200]
        raise UsageError(
            "`calibration_data` must be a readable .npy file of images "
            f"({reason}). Received: calibration_data={path!r}"
        ) from None
