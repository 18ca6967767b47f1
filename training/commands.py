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

import dataclasses
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tf_vqvae import atomic
from tf_vqvae.arg_checks import check_int
from tf_vqvae.data import (
    BadImageFileError,
    DatasetError,
    Images,
    evaluation_batches,
    first_images,
    parse_dataset,
)
from tf_vqvae.evaluation import evaluate_model
from tf_vqvae.export import (
    VerificationError,
    export_saved_model,
    export_tflite,
)
from tf_vqvae.export import verify as verify_export
from tf_vqvae.export.saved_model import check_names
from tf_vqvae.options import TFLITE_QUANTIZATIONS
from tf_vqvae.prior import PixelCNNPrior
from tf_vqvae.training import artifacts
from tf_vqvae.training.callbacks import (
    PriorSamples,
    prior_sample_fn,
    tensorboard_callbacks,
)
from tf_vqvae.training.checkpointing import CheckpointError, NonFiniteLossError
from tf_vqvae.training.config import (
    MAX_SAMPLES,
    MAX_SEED,
    PRESETS,
    SAMPLES_PER_GRID,
    ConfigError,
    PriorConfig,
    TrainConfig,
)
from tf_vqvae.training.layout import (
    CALIBRATION_FILE,
    EVALUATION_FILE,
    EXPORT_DIR,
    MODEL_FILE,
    PRIOR_DIR,
    PRIOR_FILE,
    RECONSTRUCTIONS_FILE,
    SAMPLES_FILE,
)
from tf_vqvae.training.runs import Run, TrainResult, UsageError
from tf_vqvae.visualize import save_image_grid, side_by_side
from tf_vqvae.vqvae import VQVAE, to_unit_range

# What a command raises for bad input (exit code 2) and for a failed run
# (exit code 1).
USAGE_ERRORS = (UsageError, ConfigError, DatasetError, CheckpointError)
FAILURES = (NonFiniteLossError,)
NUM_VALIDATION_IMAGES = 16

__all__ = [
    "FAILURES",
    "USAGE_ERRORS",
    "TrainResult",
    "UsageError",
    "VerificationError",
    "demo",
    "encode_images",
    "evaluate",
    "export",
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
    compile, restore), `fit` with TensorBoard callbacks, artifacts
    (`model.keras`, `calibration.npy`, `reconstructions.png`). Every check of
    the input comes before the first file is written.

    Args:
        config: the options.
        model_dir: the run's directory (created; resumed if it holds one).
        verbose: `fit`'s verbosity (1: progress bar).

    Returns:
        A `TrainResult`.

    Raises:
        UsageError, ConfigError, DatasetError, CheckpointError: bad input
            (nothing written).
        NonFiniteLossError: the loss or weights became non-finite; the model
            holds the last good checkpoint's state.
    """
    run = Run(config, model_dir)
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
        dtype_policy="mixed_float16" if config.mixed_precision else None,
        jit_compile=config.jit_compile,
    )
    callbacks = tensorboard_callbacks(
        run.logs_dir, validation, write_graph=False
    )
    # Keras all-reduces (MEAN) the first batch to build the model
    # symbolically under multi-worker, and collective ops reject uint8:
    # feed the [0, 1] floats the model would compute from it anyway.
    to_float = to_unit_range if config.strategy == "multi-worker" else None
    step, history = run.fit(images, callbacks, verbose, map_fn=to_float)
    written = run.finish("model", MODEL_FILE)
    written["calibration"] = os.path.join(run.write_dir, CALIBRATION_FILE)
    if not os.path.isfile(written["calibration"]):
        artifacts.write_calibration_sample(images, run.write_dir)
    written["reconstructions"] = _save_reconstructions(
        model,
        validation,
        os.path.join(run.write_dir, RECONSTRUCTIONS_FILE),
    )
    return TrainResult(
        model=model, step=step, history=history, artifacts=written
    )


def train_prior(
    config: PriorConfig, model_dir: str, verbose: int | str = 1
) -> TrainResult:
    """Trains (or resumes) a `PixelCNNPrior` on the codes of `model_dir`'s
    VQ-VAE over its training split, writing into `model_dir/prior`.

    The same lifecycle (`Run`) as `train`: checks, checkpoints, resume,
    strategies and the non-finite guard.

    Returns:
        A `TrainResult` whose `model` is the prior.
    """
    run = Run(config, model_dir, part=PRIOR_DIR)
    vqvae, train_config = artifacts.load_vqvae(model_dir, fallback=True)
    images = artifacts.load_split(
        train_config.dataset,
        "train",
        train_config.data_dir,
        config.skip_bad_files or train_config.skip_bad_files,
    )
    codes = encode_images(vqvae, images)
    run.steps_per_epoch(codes)
    prior = run.start(
        lambda: PixelCNNPrior(
            num_embeddings=vqvae.num_embeddings,
            grid_shape=codes.image_shape,
            **config.prior_kwargs(),
        ),
        codes.image_shape,
    )
    callbacks = [
        keras.callbacks.TensorBoard(run.logs_dir, write_graph=False),
        PriorSamples(run.logs_dir, prior_sample_fn(prior), vqvae),
    ]
    step, history = run.fit(codes, callbacks, verbose)
    written = run.finish("prior", PRIOR_FILE)
    return TrainResult(
        model=prior, step=step, history=history, artifacts=written
    )


def encode_images(model, images: Images, batch_size: int = 256) -> Images:
    """The codes of every image, as `Images` of int32 grids `(h', w')` in
    the images' order (for `training_pipeline`)."""
    encode = tf.function(model.encode, reduce_retracing=True)
    codes = np.concatenate(
        [
            encode(batch).numpy()
            for batch in evaluation_batches(images, batch_size)
        ]
    ).astype("int32")
    return Images(
        dataset=tf.data.Dataset.from_tensor_slices(codes),
        num_examples=len(codes),
        image_shape=tuple(int(d) for d in codes.shape[1:]),
        name=f"codes of {images.name}",
        split=images.split,
    )


def sample(
    model_dir: str,
    n: int = 64,
    seed: int = 0,
    temperature: float = 1.0,
    output: str | None = None,
) -> list[str]:
    """Decodes `n` samples of the prior into PNG grids; returns their paths.

    Samples are drawn, decoded and written `SAMPLES_PER_GRID` (64) at a
    time, so memory does not grow with `n`: one grid `output` (default
    `model_dir/samples.png`) for up to 64 samples, else `samples-000.png`,
    `samples-001.png`, ... beside it. Batch `i` is drawn with the seed
    `[seed, i]`, so the same `seed` gives the same images (and the first 64
    do not depend on `n` beyond them).

    Raises:
        UsageError: `n` not in [1, MAX_SAMPLES], `temperature` not
            positive, `output` not a `.png` file in an existing directory,
            or no trained model or prior.
    """
    if (
        isinstance(n, bool)
        or not isinstance(n, int)
        or not 1 <= n <= MAX_SAMPLES
    ):
        raise UsageError(
            f"`n` must be an integer from 1 to {MAX_SAMPLES}. Received: n={n!r}"
        )
    if (
        isinstance(seed, bool)
        or not isinstance(seed, int)
        or not 0 <= seed <= MAX_SEED
    ):
        raise UsageError(
            f"`seed` must be an integer from 0 to {MAX_SEED}. "
            f"Received: seed={seed!r}"
        )
    if not temperature > 0 or temperature == float("inf"):
        raise UsageError(
            "`temperature` must be a positive number. "
            f"Received: temperature={temperature!r}"
        )
    if output is not None and (
        not output.lower().endswith(".png")
        or not os.path.isdir(os.path.dirname(output) or ".")
    ):
        raise UsageError(
            "`output` must be a .png path in an existing directory. "
            f"Received: output={output!r}"
        )
    vqvae, _ = artifacts.load_vqvae(model_dir, fallback=True)
    prior = artifacts.load_prior(model_dir, fallback=True)
    output = output or os.path.join(model_dir, SAMPLES_FILE)
    distribution = prior.distribution(temperature=temperature)
    count = -(-n // SAMPLES_PER_GRID)
    paths = [output]
    if count > 1:
        stem = output[: -len(".png")]
        digits = max(3, len(str(count - 1)))
        paths = [f"{stem}-{i:0{digits}d}.png" for i in range(count)]
    for i, path in enumerate(paths):
        size = min(SAMPLES_PER_GRID, n - i * SAMPLES_PER_GRID)
        codes = distribution.sample(size, seed=tf.constant([seed, i]))
        save_image_grid(path, vqvae.decode(codes).numpy(), ncols=min(8, size))
    return paths


def evaluate(
    model_dir: str,
    dataset: str | None = None,
    split: str = "test",
    batch_size: int = 256,
    skip_bad_files: bool = False,
) -> dict:
    """`tf_vqvae.evaluation.evaluate_model` on one split (bits/dim with the
    uniform and, if trained, the PixelCNN prior; MSE, PSNR, perplexity,
    codebook usage) plus `dead_codes`; written to `model_dir/evaluation.json`.

    Bad image files of a `folder:` dataset are left out (and counted) with
    `skip_bad_files` or when the model was trained with it.
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
    images = artifacts.load_split(
        dataset,
        split,
        train_config.data_dir,
        skip_bad_files or train_config.skip_bad_files,
    )
    expected = (vqvae.image_channels,)
    if images.image_shape[-1:] != expected:
        kind = {1: "grayscale", 3: "RGB"}
        raise UsageError(
            f"`dataset` {dataset!r} has {images.image_shape[-1]}-channel "
            f"images but the model in {model_dir!r} was trained on "
            f"{vqvae.image_channels}-channel "
            f"({kind.get(vqvae.image_channels, 'other')}) images; evaluate "
            "it on a dataset like the one it was trained on. "
            f"Received: image_shape={images.image_shape}"
        )
    prior = artifacts.trained_prior(model_dir, fallback=True)
    results = evaluate_model(
        vqvae, evaluation_batches(images, batch_size), prior=prior
    )
    used = round(results["codebook_usage"] * vqvae.num_embeddings)
    metrics = {
        "dataset": dataset,
        "split": images.split,
        **results,
        "dead_codes": vqvae.num_embeddings - used,
    }
    atomic.write_text(
        os.path.join(model_dir, EVALUATION_FILE),
        json.dumps(metrics, indent=2) + "\n",
    )
    return metrics


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
    skip_bad_files: bool = False,
) -> dict:
    """Exports `model_dir`'s VQ-VAE (and prior, when trained) for serving.

    A SavedModel for TF Serving at `out_dir/model_name/version` and, with
    `tflite`, builtins-only `.tflite` files in `out_dir/model_name_tflite`
    (decoder in each of `quantization`; float32 encoder; prior sampler).
    `out_dir` defaults to `model_dir/export`. Both carry a `MANIFEST.json`
    (`vqvae verify`). Reads no dataset: the int8 decoder is calibrated on
    `calibration_data` (a `.npy` file of images or a dataset string), by
    default the sample `vqvae train` wrote to `model_dir/calibration.npy`
    (bad files of a `folder:` dataset are left out with `skip_bad_files`
    or when the model was trained with it).

    Returns:
        name -> path of each export.

    Raises:
        UsageError: bad `model_name`, `version`, `max_batch_size` or
            `out_dir`, no trained model, the version exists and not
            `overwrite`, or int8 without calibration images.
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
    prior = artifacts.trained_prior(model_dir, fallback=True)
    target = os.path.join(root, model_name, str(version))
    if os.path.exists(target) and not overwrite:
        raise UsageError(
            f"{target!r} exists; pass --overwrite to replace it or choose "
            f"another --version. Received: version={version}"
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
            skip_bad_files or config.skip_bad_files,
        )
        if calibration is None:
            raise UsageError(
                "`quantization` 'int8' needs calibration images, and "
                f"{os.path.join(model_dir, CALIBRATION_FILE)} (written "
                "by `vqvae train`) is missing; pass --calibration-data (a "
                ".npy file of images or a dataset such as folder:PATH) or "
                "leave out int8. "
                f"Received: quantization={tuple(quantization)}"
            )
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
        export_tflite(
            vqvae,
            tflite_dir,
            quantization=tuple(quantization),
            representative_images=calibration,
            prior=prior,
            overwrite=overwrite,
        )
        exported["tflite"] = tflite_dir
    return exported


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
    model_dir: str = "runs/demo",
    epochs: int | None = None,
    prior_epochs: int | None = None,
    steps_per_epoch: int | None = None,
    verbose: int | str = 1,
) -> dict:
    """The whole pipeline on the offline photos with `PRESETS["demo"]`:
    train, train-prior, sample, evaluate, export. Returns name -> path of
    every artifact (and the metrics under `"metrics"`, the times under
    `"timings"`). Running it again resumes or reuses."""
    preset = PRESETS["demo"]
    train_config = dataclasses.replace(
        preset.train,
        epochs=epochs or preset.train.epochs,
        steps_per_epoch=steps_per_epoch,
    )
    prior_config = dataclasses.replace(
        preset.prior,
        epochs=prior_epochs or preset.prior.epochs,
        steps_per_epoch=steps_per_epoch,
    )
    timings = {}
    started = time.time()
    print(f"vqvae demo: 1/5 train the VQ-VAE in {model_dir}", flush=True)
    written = dict(train(train_config, model_dir, verbose=verbose).artifacts)
    timings["train"] = time.time() - started
    print("vqvae demo: 2/5 train the prior on the codes", flush=True)
    result = train_prior(prior_config, model_dir, verbose=verbose)
    written.update(result.artifacts)
    timings["train_prior"] = time.time() - started - sum(timings.values())
    print("vqvae demo: 3/5 sample", flush=True)
    (written["samples"],) = sample(model_dir, n=64, seed=0)
    print("vqvae demo: 4/5 evaluate on the held-out photos", flush=True)
    metrics = evaluate(model_dir)
    written["evaluation"] = os.path.join(model_dir, EVALUATION_FILE)
    print("vqvae demo: 5/5 export a SavedModel and TFLite files", flush=True)
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


def _save_reconstructions(model, images, path: str) -> str:
    """Writes originals beside their reconstructions as a PNG grid."""
    reconstructions = model(images, training=False)
    save_image_grid(
        path, side_by_side(images, reconstructions.numpy()), ncols=8
    )
    return path
