"""The `vqvae` command line: train a VQ-VAE, then its prior, sample, evaluate.

    vqvae demo                                        # everything, offline
    vqvae train --model-dir runs/photos               # scikit-image photos
    vqvae train --dataset tfds:cifar10 --model-dir runs/cifar --epochs 50
    vqvae train --model-dir runs/cifar                # again: resumes
    vqvae train --config runs/cifar/config.json --model-dir runs/cifar2
    vqvae train --strategy mirrored ...               # all local GPUs
    TF_CONFIG='{...}' vqvae train --strategy multi-worker ...

`train` writes into `--model-dir`: `config.json` (every option, reloadable
with `--config`), `checkpoints/` (model, optimizer, step: a killed run
started again resumes where it stopped), `logs/` (TensorBoard),
`model.keras` and `reconstructions.png` (originals beside reconstructions).
Defaults live in one place, `training/config.py`.

Exit codes: 0 done, 1 training failed (non-finite loss), 2 bad input (the
message says what to change; nothing is left behind).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
import typing

from tf_vqvae.training.config import (
    CONFIG_FILE,
    PRIOR_STRATEGIES,
    STRATEGIES,
    ConfigError,
    PriorConfig,
    TrainConfig,
    load_config,
    save_config,
    write_atomic,
)
from tf_vqvae.version import __version__

EXIT_FAILED = 1
EXIT_USAGE = 2
MODEL_FILE = "model.keras"
RECONSTRUCTIONS_FILE = "reconstructions.png"
PRIOR_DIR = "prior"
PRIOR_FILE = "prior.keras"
SAMPLES_FILE = "samples.png"
EVALUATION_FILE = "evaluation.json"
LOGS_DIR = "logs"
NUM_VALIDATION_IMAGES = 16


class UsageError(ValueError):
    """Bad input to a command: exit code 2 with a one-line message."""


@dataclasses.dataclass
class TrainResult:
    """What `train` produced.

    Attributes:
        model: the trained `VQVAE`.
        step: global steps trained in total.
        history: per-epoch metrics of this invocation (empty if the run was
            already complete).
        artifacts: name -> path of every file written.
    """

    model: typing.Any
    step: int
    history: dict
    artifacts: dict


# --------------------------------------------------------------------- train
# One multi-worker strategy per process; mirrored ones come from
# `tf_vqvae.distribute.mirrored_strategy`, which also keeps one per device set
# (a second strategy restarts the collective instance keys and collides).
_MULTI_WORKER: list = []


def make_strategy(config: TrainConfig | PriorConfig):
    """The `tf.distribute` strategy that `config.strategy` names (created
    once per process for each kind and device set)."""
    import tensorflow as tf

    from tf_vqvae.distribute import mirrored_strategy

    if config.strategy == "default":
        return tf.distribute.get_strategy()
    if config.strategy == "mirrored":
        return mirrored_strategy(config.devices)
    if not os.environ.get("TF_CONFIG"):
        raise UsageError(
            "`strategy` 'multi-worker' needs the TF_CONFIG environment "
            "variable (cluster and task, see README's Command line). "
            "Received: strategy='multi-worker'"
        )
    if not _MULTI_WORKER:
        _MULTI_WORKER.append(tf.distribute.MultiWorkerMirroredStrategy())
    return _MULTI_WORKER[0]


def _check_batch_splits(config, strategy) -> None:
    replicas = strategy.num_replicas_in_sync
    if config.global_batch_size % replicas:
        raise UsageError(
            f"`global_batch_size` must be divisible by the number of replicas "
            f"({replicas}); pass a multiple of {replicas}. "
            f"Received: global_batch_size={config.global_batch_size}"
        )


def _worker_dir(strategy, model_dir: str) -> tuple[str, bool]:
    """Where this worker writes, and whether it is the chief.

    The chief (task `chief`, else `worker` 0) writes `model_dir`; every
    other worker writes its own `model_dir/workers/TYPE-ID`, as all workers
    must save checkpoints under `MultiWorkerMirroredStrategy`.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type is None:
        return model_dir, True
    task_id = resolver.task_id or 0
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    if task_type == "chief" or (
        task_type == "worker" and task_id == 0 and not has_chief
    ):
        return model_dir, True
    return os.path.join(model_dir, "workers", f"{task_type}-{task_id}"), False


def check_model_dir(config: TrainConfig, model_dir: str) -> TrainConfig | None:
    """The config saved in `model_dir`, if it is compatible with `config`.

    Raises:
        UsageError: if `model_dir` is a file, or holds a run whose config
            differs from `config` in an option that shapes the model, the
            data or their order.
    """
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise UsageError(
            f"`model_dir` must be a directory; {model_dir!r} is a file. "
            f"Received: model_dir={model_dir!r}"
        )
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    saved = load_config(path)
    different = config.incompatible_fields(saved)
    if different:
        name = different[0]
        raise UsageError(
            f"`model_dir` {model_dir!r} holds a run with {name}="
            f"{getattr(saved, name)!r}; resume it with the same options "
            f"(--config {path}) or use a new --model-dir. "
            f"Received: {name}={getattr(config, name)!r}"
        )
    return saved


def train(
    config: TrainConfig, model_dir: str, verbose: int | str = 1
) -> TrainResult:
    """Trains (or resumes) a VQ-VAE as `config` says, writing into `model_dir`.

    Order: strategy, data, `strategy.scope()` (model, optimizer, compile,
    restore), `fit` with callbacks, artifacts. Every check of the input comes
    before the first file is written; if `model_dir` did not exist and setup
    fails, it is removed again.

    Args:
        config: the options.
        model_dir: the run's directory (created; resumed if it holds one).
        verbose: `fit`'s verbosity (1: progress bar).

    Returns:
        A `TrainResult`.

    Raises:
        UsageError, ConfigError, DatasetError: bad input (nothing written).
        NonFiniteLossError: the loss or weights became non-finite; the model
            holds the last good checkpoint's state.
    """
    import keras

    from tf_vqvae import VQVAE
    from tf_vqvae.data import DatasetError, load_images
    from tf_vqvae.training.checkpointing import TrainingState, checkpoint_dir
    from tf_vqvae.vqvae import to_unit_range

    strategy = make_strategy(config)
    _check_batch_splits(config, strategy)
    check_model_dir(config, model_dir)
    write_dir, is_chief = _worker_dir(strategy, model_dir)

    images = load_images(config.dataset, "train", config.data_dir)
    validation = _validation_images(config, images)
    data_steps = images.steps_per_epoch(config.global_batch_size)
    if data_steps < 1:
        raise DatasetError(
            f"`global_batch_size` must be at most the number of training "
            f"images ({images.num_examples}). "
            f"Received: global_batch_size={config.global_batch_size}"
        )
    steps_per_epoch = config.steps_per_epoch or data_steps
    factor = 2**config.num_downsamples
    height, width = images.image_shape[:2]
    if height % factor or width % factor:
        raise UsageError(
            f"`dataset` images are {height}x{width}, not divisible by "
            f"2**num_downsamples={factor}; crop or resize them (e.g. into a "
            "'folder:' dataset) or change --num-downsamples. "
            f"Received: image_shape={images.image_shape}"
        )

    created = not os.path.exists(write_dir)
    os.makedirs(write_dir, exist_ok=True)
    try:
        save_config(config, write_dir)
        previous_policy = keras.mixed_precision.global_policy()
        if config.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            model = VQVAE(**config.model_kwargs())
            model.build((None, *images.image_shape))
            model.compile(
                optimizer=keras.optimizers.Adam(config.learning_rate),
                jit_compile=config.jit_compile,
            )
            if config.strategy == "multi-worker":
                _rank1_step_outputs(model)
            optimizer = model.optimizer
            optimizer.build(model.trainable_variables)
            state = TrainingState(model, optimizer, checkpoint_dir(write_dir))
            start_step = state.restore_latest()
            if start_step is None:
                start_step = 0
                state.save(0)
            optimizer.learning_rate.assign(config.learning_rate)
    except BaseException:
        if created:
            shutil.rmtree(write_dir, ignore_errors=True)
        raise

    from tf_vqvae.training.callbacks import tensorboard_callbacks

    callbacks = tensorboard_callbacks(
        os.path.join(write_dir, LOGS_DIR),
        validation,
        write_graph=False,
    )
    # Keras all-reduces (MEAN) the first batch to build the model
    # symbolically under multi-worker, and collective ops reject uint8:
    # feed the [0, 1] floats the model would compute from it anyway.
    to_float = to_unit_range if config.strategy == "multi-worker" else None
    try:
        step, history = fit_resumable(
            model,
            state,
            images,
            start_step=start_step,
            config=config,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            verbose=verbose,
            map_fn=to_float,
            name=model_dir,
        )
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    artifacts = {
        "config": os.path.join(write_dir, CONFIG_FILE),
        "checkpoints": state.directory,
        "tensorboard": os.path.join(write_dir, LOGS_DIR),
        "model": save_model(model, os.path.join(write_dir, MODEL_FILE)),
        "reconstructions": save_reconstructions(
            model,
            validation[:NUM_VALIDATION_IMAGES],
            os.path.join(write_dir, RECONSTRUCTIONS_FILE),
        ),
    }
    if not is_chief:
        artifacts["chief_model_dir"] = model_dir
    return TrainResult(
        model=model, step=step, history=history, artifacts=artifacts
    )


def fit_resumable(
    model,
    state,
    images,
    start_step: int,
    config,
    steps_per_epoch: int,
    callbacks: list,
    verbose: int | str = 1,
    map_fn=None,
    name: str = "",
) -> tuple[int, dict]:
    """`model.fit` from global step `start_step` to the end of training.

    The data of step `s` is the same whatever step training (re)started at
    (`training_pipeline`), and a resumed run that starts mid-epoch first
    finishes that epoch with a shorter `fit`, so epochs keep their numbers.
    Checkpoints every `config.checkpoint_steps` steps, after each epoch and
    at the end; stops on a non-finite loss or weights.

    Returns:
        `(step, history)`: the final global step and the metrics per epoch.

    Raises:
        NonFiniteLossError: with `model` restored to the last good
            checkpoint.
    """
    from tf_vqvae.data import training_pipeline
    from tf_vqvae.training.checkpointing import (
        CheckpointAndGuard,
        NonFiniteLossError,
    )

    total_steps = config.epochs * steps_per_epoch
    if start_step >= total_steps:
        print(
            f"vqvae: {name} is already trained ({start_step} steps); raise "
            "--epochs to train it longer.",
            flush=True,
        )
    elif start_step:
        print(
            f"vqvae: resuming {name} at step {start_step} of {total_steps}.",
            flush=True,
        )
    guard = CheckpointAndGuard(state, start_step, config.checkpoint_steps)
    history: dict = {}
    step = start_step
    while step < total_steps and guard.failure is None:
        epoch, offset = divmod(step, steps_per_epoch)
        last_epoch = config.epochs if offset == 0 else epoch + 1
        steps = steps_per_epoch - offset
        dataset = training_pipeline(
            images,
            config.global_batch_size,
            config.seed,
            start_step=step,
            end_step=total_steps if offset == 0 else step + steps,
        )
        if map_fn is not None:
            dataset = dataset.map(map_fn)
        fitted = model.fit(
            dataset,
            epochs=last_epoch,
            initial_epoch=epoch,
            steps_per_epoch=steps,
            callbacks=[guard, *callbacks],
            shuffle=False,
            verbose=verbose,
        )
        for key, values in fitted.history.items():
            history.setdefault(key, []).extend(values)
        step = guard.global_step
    if guard.failure is not None:
        good = state.restore_latest()
        raise NonFiniteLossError(
            f"Training stopped {guard.failure}; the model was restored "
            f"to the last good checkpoint (step {good}) in "
            f"{state.directory}; run again with a lower --learning-rate "
            f"(now {config.learning_rate:g}) to resume from there."
        )
    if state.latest_step() != step:
        state.save(step)
    return step, history


def _rank1_step_outputs(model) -> None:
    """Makes `model.fit` work under `MultiWorkerMirroredStrategy`.

    Keras 3 reduces the train step's outputs across workers with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on scalar metrics
    (tensorflow/tensorflow#72388). The metrics are already synchronised, so
    returning them with shape `(1,)` makes that mean the value itself. Only
    this model instance changes; `model.keras` is a plain `VQVAE`.
    """
    import tensorflow as tf

    train_step = model.train_step

    def step(data):
        return {
            name: tf.reshape(value, [1])
            for name, value in train_step(data).items()
        }

    model.train_step = step


def _validation_images(config: TrainConfig, train_images):
    """A fixed batch: images spread evenly over the first 1024 of the test
    split (or of the training split if there is no test split)."""
    import numpy as np

    from tf_vqvae.data import (
        DatasetError,
        first_images,
        load_images,
        parse_dataset,
    )

    _, _, named_split = parse_dataset(config.dataset)
    source = train_images
    if named_split is None:
        try:
            source = load_images(config.dataset, "test", config.data_dir)
        except DatasetError:
            source = train_images
        if source.image_shape != train_images.image_shape:
            source = train_images
    pool = first_images(source, min(source.num_examples, 1024))
    picks = np.linspace(0, len(pool) - 1, NUM_VALIDATION_IMAGES).round()
    return pool[np.unique(picks.astype(int))]


def save_model(model, path: str) -> str:
    """Saves `model` as `.keras` through a temporary file and a rename."""
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(
        directory, f".tmp-{os.getpid()}-{os.path.basename(path)}"
    )
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def save_reconstructions(model, images, path: str) -> str:
    """Writes originals beside their reconstructions as a PNG grid."""
    from tf_vqvae.visualize import save_image_grid, side_by_side

    reconstructions = model(images, training=False)
    save_image_grid(
        path, side_by_side(images, reconstructions.numpy()), ncols=8
    )
    return path


# --------------------------------------------------------------- the prior
def _load_vqvae(model_dir: str):
    """The trained `VQVAE` of `model_dir` and its `TrainConfig`."""
    import keras

    import tf_vqvae  # noqa: F401  (registers the classes for loading)

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


def _load_prior(model_dir: str):
    import keras

    import tf_vqvae  # noqa: F401  (registers the classes for loading)

    path = os.path.join(model_dir, PRIOR_DIR, PRIOR_FILE)
    if not os.path.isfile(path):
        raise UsageError(
            f"`model_dir` {model_dir!r} holds no trained prior "
            f"({PRIOR_DIR}/{PRIOR_FILE}); run `vqvae train-prior --model-dir "
            f"{model_dir}` first. Received: model_dir={model_dir!r}"
        )
    return keras.saving.load_model(path, compile=False)


def encode_images(model, images, batch_size: int = 256):
    """The codes of every image, as `tf_vqvae.data.Images` of int32 grids
    `(h', w')` in the images' order (for `training_pipeline`)."""
    import numpy as np
    import tensorflow as tf

    from tf_vqvae.data import Images, evaluation_batches

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


def train_prior(
    config: PriorConfig, model_dir: str, verbose: int | str = 1
) -> TrainResult:
    """Trains (or resumes) a `PixelCNNPrior` on the codes of `model_dir`'s
    VQ-VAE over its training split, writing into `model_dir/prior`.

    Same order, checkpoints, resume and guards as `train`.

    Returns:
        A `TrainResult` whose `model` is the prior.
    """
    import keras

    from tf_vqvae import PixelCNNPrior
    from tf_vqvae.data import DatasetError, load_images
    from tf_vqvae.training.callbacks import PriorSamples, prior_sample_fn
    from tf_vqvae.training.checkpointing import TrainingState, checkpoint_dir

    strategy = make_strategy(config)
    _check_batch_splits(config, strategy)
    vqvae, train_config = _load_vqvae(model_dir)
    prior_dir = os.path.join(model_dir, PRIOR_DIR)
    saved_path = os.path.join(prior_dir, CONFIG_FILE)
    if os.path.exists(saved_path):
        saved = load_config(saved_path, PriorConfig)
        different = config.incompatible_fields(saved)
        if different:
            name = different[0]
            raise UsageError(
                f"`model_dir` {model_dir!r} holds a prior with {name}="
                f"{getattr(saved, name)!r}; resume it with the same options "
                f"(--config {saved_path}) or delete {prior_dir}. "
                f"Received: {name}={getattr(config, name)!r}"
            )
    images = load_images(train_config.dataset, "train", train_config.data_dir)
    codes = encode_images(vqvae, images)
    data_steps = codes.steps_per_epoch(config.global_batch_size)
    if data_steps < 1:
        raise DatasetError(
            f"`global_batch_size` must be at most the number of training "
            f"images ({codes.num_examples}). "
            f"Received: global_batch_size={config.global_batch_size}"
        )
    steps_per_epoch = config.steps_per_epoch or data_steps

    created = not os.path.exists(prior_dir)
    os.makedirs(prior_dir, exist_ok=True)
    try:
        save_config(config, prior_dir)
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            prior = PixelCNNPrior(
                num_embeddings=vqvae.num_embeddings,
                grid_shape=codes.image_shape,
                **config.prior_kwargs(),
            )
            prior.build((None, *codes.image_shape))
            prior.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
            prior.optimizer.build(prior.trainable_variables)
            state = TrainingState(
                prior, prior.optimizer, checkpoint_dir(prior_dir)
            )
            start_step = state.restore_latest()
            if start_step is None:
                start_step = 0
                state.save(0)
            prior.optimizer.learning_rate.assign(config.learning_rate)
    except BaseException:
        if created:
            shutil.rmtree(prior_dir, ignore_errors=True)
        raise

    logs = os.path.join(prior_dir, LOGS_DIR)
    callbacks = [
        keras.callbacks.TensorBoard(logs, write_graph=False),
        PriorSamples(logs, prior_sample_fn(prior), vqvae),
    ]
    step, history = fit_resumable(
        prior,
        state,
        codes,
        start_step=start_step,
        config=config,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        verbose=verbose,
        name=prior_dir,
    )
    artifacts = {
        "prior_config": saved_path,
        "prior_checkpoints": state.directory,
        "prior_tensorboard": logs,
        "prior": save_model(prior, os.path.join(prior_dir, PRIOR_FILE)),
    }
    return TrainResult(
        model=prior, step=step, history=history, artifacts=artifacts
    )


def sample(
    model_dir: str,
    n: int = 64,
    seed: int = 0,
    temperature: float = 1.0,
    output: str | None = None,
) -> str:
    """Decodes `n` samples of the prior into a PNG grid; returns its path.

    The same `seed` gives the same images.
    """
    from tf_vqvae.visualize import save_image_grid

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UsageError(f"`n` must be a positive integer. Received: n={n!r}")
    if not temperature > 0:
        raise UsageError(
            "`temperature` must be positive. "
            f"Received: temperature={temperature!r}"
        )
    vqvae, _ = _load_vqvae(model_dir)
    prior = _load_prior(model_dir)
    codes = prior.distribution(temperature=temperature).sample(n, seed=seed)
    images = vqvae.decode(codes).numpy()
    output = output or os.path.join(model_dir, SAMPLES_FILE)
    save_image_grid(output, images, ncols=min(8, n))
    return output


def evaluate(
    model_dir: str,
    dataset: str | None = None,
    split: str = "test",
    batch_size: int = 256,
) -> dict:
    """`tf_vqvae.evaluation.evaluate_model` on one split (bits/dim with the
    uniform and, if trained, the PixelCNN prior; MSE, PSNR, perplexity,
    codebook usage) plus `dead_codes`; written to `model_dir/evaluation.json`.
    """
    from tf_vqvae.data import evaluation_batches, load_images
    from tf_vqvae.evaluation import evaluate_model

    vqvae, train_config = _load_vqvae(model_dir)
    dataset = dataset or train_config.dataset
    images = load_images(dataset, split, train_config.data_dir)
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
    prior_path = os.path.join(model_dir, PRIOR_DIR, PRIOR_FILE)
    prior = _load_prior(model_dir) if os.path.isfile(prior_path) else None
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
    write_atomic(
        os.path.join(model_dir, EVALUATION_FILE),
        json.dumps(metrics, indent=2) + "\n",
    )
    return metrics


# -------------------------------------------------------------------- demo
DEMO_TRAIN = TrainConfig(
    dataset="photos",
    global_batch_size=32,
    epochs=8,
    learning_rate=1e-3,
    num_embeddings=128,
    embedding_dim=16,
    num_hiddens=64,
    num_residual_hiddens=32,
    num_residual_blocks=1,
    data_init="kmeans++",
    dead_code_restart_steps=20,
    checkpoint_steps=200,
)
DEMO_PRIOR = PriorConfig(
    global_batch_size=32,
    epochs=8,
    learning_rate=1e-3,
    num_hiddens=32,
    num_layers=4,
    checkpoint_steps=200,
)


def demo(
    model_dir: str = "runs/demo",
    epochs: int | None = None,
    prior_epochs: int | None = None,
    steps_per_epoch: int | None = None,
    verbose: int | str = 1,
) -> dict:
    """The whole pipeline on the offline photos: train, train-prior,
    sample, evaluate, export. Returns name -> path of every artifact (and
    the metrics under `"metrics"`). Running it again resumes or reuses."""
    train_config = dataclasses.replace(
        DEMO_TRAIN,
        epochs=epochs or DEMO_TRAIN.epochs,
        steps_per_epoch=steps_per_epoch,
    )
    prior_config = dataclasses.replace(
        DEMO_PRIOR,
        epochs=prior_epochs or DEMO_PRIOR.epochs,
        steps_per_epoch=steps_per_epoch,
    )
    timings = {}
    started = time.time()
    print(f"vqvae demo: 1/5 train the VQ-VAE in {model_dir}", flush=True)
    artifacts = dict(train(train_config, model_dir, verbose=verbose).artifacts)
    timings["train"] = time.time() - started
    print("vqvae demo: 2/5 train the prior on the codes", flush=True)
    result = train_prior(prior_config, model_dir, verbose=verbose)
    artifacts.update(result.artifacts)
    timings["train_prior"] = time.time() - started - sum(timings.values())
    print("vqvae demo: 3/5 sample", flush=True)
    artifacts["samples"] = sample(model_dir, n=64, seed=0)
    print("vqvae demo: 4/5 evaluate on the held-out photos", flush=True)
    metrics = evaluate(model_dir)
    artifacts["evaluation"] = os.path.join(model_dir, EVALUATION_FILE)
    print("vqvae demo: 5/5 export a SavedModel and TFLite files", flush=True)
    artifacts.update(
        export(
            model_dir,
            tflite=True,
            quantization=("float32", "int8"),
            overwrite=True,
        )
    )
    timings["total"] = time.time() - started
    return {"artifacts": artifacts, "metrics": metrics, "timings": timings}


def export(
    model_dir: str,
    out_dir: str | None = None,
    model_name: str = "vqvae",
    version: int = 1,
    tflite: bool = False,
    quantization: tuple[str, ...] = ("float32", "float16", "int8"),
    max_batch_size: int = 64,
    overwrite: bool = False,
) -> dict:
    """Exports `model_dir`'s VQ-VAE (and prior, when trained) for serving.

    A SavedModel for TF Serving at `out_dir/model_name/version` and, with
    `tflite`, builtins-only `.tflite` files in `out_dir/model_name_tflite`
    (decoder in each of `quantization`, int8 calibrated on codes of real
    training images; float32 encoder; prior sampler). `out_dir` defaults to
    `model_dir/export`. Both carry a `MANIFEST.json` (`vqvae verify`).

    Returns:
        name -> path of each export.

    Raises:
        UsageError: no trained model, or the version exists and not
            `overwrite`.
    """
    from tf_vqvae.data import load_images
    from tf_vqvae.export import export_saved_model, export_tflite

    vqvae, config = _load_vqvae(model_dir)
    prior_path = os.path.join(model_dir, PRIOR_DIR, PRIOR_FILE)
    prior = _load_prior(model_dir) if os.path.isfile(prior_path) else None
    root = out_dir or os.path.join(model_dir, "export")
    images = load_images(config.dataset, "train", config.data_dir)
    image_size = tuple(images.image_shape[:2])
    target = os.path.join(root, model_name, str(version))
    if os.path.exists(target) and not overwrite:
        raise UsageError(
            f"{target!r} exists; pass --overwrite to replace it or choose "
            f"another --version. Received: version={version}"
        )
    artifacts = {
        "saved_model": os.fspath(
            export_saved_model(
                vqvae,
                root,
                model_name,
                version=version,
                prior=prior,
                overwrite=overwrite,
                max_batch_size=max_batch_size,
                image_size=image_size,
            )
        )
    }
    if tflite:
        count = min(images.num_examples, 256)
        stride = max(1, images.num_examples // count)
        calibration = [
            x.numpy() for x in images.dataset.shard(stride, 0).take(count)
        ]
        tflite_dir = os.path.join(root, f"{model_name}_tflite")
        export_tflite(
            vqvae,
            tflite_dir,
            image_size=image_size,
            quantization=tuple(quantization),
            representative_images=calibration,
            prior=prior,
            overwrite=overwrite,
        )
        artifacts["tflite"] = tflite_dir
    return artifacts


# ----------------------------------------------------------------- parsing
def _optional(annotation: str) -> tuple[type, bool]:
    """The scalar type of a config field and whether it is a tuple."""
    names = {"int": int, "float": float, "str": str, "bool": bool}
    base = annotation.split("|")[0].strip()
    if base.startswith("tuple["):
        return str, True
    return names[base], False


def add_config_flags(
    parser: argparse.ArgumentParser, config_class: type = TrainConfig
) -> None:
    """One flag per field of `config_class`, documented by the field's help.

    Defaults are `None` so that only the flags given override the base config
    (`--config`, the model dir's saved config, or the defaults).
    """
    choices = {
        "quantizer": ("ema", "vq"),
        "strategy": (
            PRIOR_STRATEGIES if config_class is PriorConfig else STRATEGIES
        ),
        "data_init": ("random", "kmeans++", "none"),
        "likelihood": ("mse", "discretized_logistic"),
    }
    for field in dataclasses.fields(config_class):
        flag = "--" + field.name.replace("_", "-")
        kind, is_tuple = _optional(str(field.type))
        default = field.default
        shown = "" if default is None else f" (default: {default})"
        help_text = field.metadata["help"] + shown
        if kind is bool:
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        elif is_tuple:
            parser.add_argument(flag, nargs="+", default=None, help=help_text)
        else:
            parser.add_argument(
                flag,
                type=kind,
                default=None,
                choices=choices.get(field.name),
                help=help_text,
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqvae",
        description="Train, sample, evaluate and export VQ-VAE models.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train_parser = commands.add_parser(
        "train",
        help="Train a VQ-VAE (resumes if --model-dir holds a run).",
        description=(
            "Train a VQ-VAE with model.fit. Running it again on the same "
            "--model-dir resumes from the last checkpoint."
        ),
    )
    train_parser.add_argument(
        "--model-dir", required=True, help="Directory of the run."
    )
    train_parser.add_argument(
        "--config",
        default=None,
        help="A config.json of an earlier run; flags given override it.",
    )
    add_config_flags(train_parser, TrainConfig)

    prior_parser = commands.add_parser(
        "train-prior",
        help="Train a PixelCNN prior on the codes of a trained VQ-VAE.",
        description=(
            "Train a gated PixelCNN prior on the codes of --model-dir's "
            "VQ-VAE over its training split; writes --model-dir/prior. "
            "Running it again resumes."
        ),
    )
    prior_parser.add_argument(
        "--model-dir", required=True, help="Directory of a `vqvae train` run."
    )
    prior_parser.add_argument(
        "--config",
        default=None,
        help="A prior/config.json of an earlier run; flags override it.",
    )
    add_config_flags(prior_parser, PriorConfig)

    sample_parser = commands.add_parser(
        "sample",
        help="Decode samples of the prior into a PNG grid.",
        description="Sample codes from the prior and decode them to images.",
    )
    sample_parser.add_argument("--model-dir", required=True)
    sample_parser.add_argument(
        "--n", type=int, default=64, help="Number of samples (default: 64)."
    )
    sample_parser.add_argument(
        "--seed", type=int, default=0, help="Sampling seed (default: 0)."
    )
    sample_parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="Divides the prior's logits (default: 1.0).",
    )
    sample_parser.add_argument(
        "--output",
        default=None,
        help=f"PNG path (default: MODEL_DIR/{SAMPLES_FILE}).",
    )

    evaluate_parser = commands.add_parser(
        "evaluate",
        help="Reconstruction, codebook and prior metrics on a split.",
        description=(
            "Evaluate --model-dir's VQ-VAE (and prior, if trained) on a "
            f"split; prints the metrics and writes MODEL_DIR/{EVALUATION_FILE}."
        ),
    )
    evaluate_parser.add_argument("--model-dir", required=True)
    evaluate_parser.add_argument(
        "--dataset",
        default=None,
        help="Dataset to evaluate on (default: the training dataset).",
    )
    evaluate_parser.add_argument(
        "--split", default="test", help="Split (default: test)."
    )
    evaluate_parser.add_argument(
        "--batch-size", type=int, default=256, help="Batch size (default: 256)."
    )

    export_parser = commands.add_parser(
        "export",
        help="SavedModel for TF Serving (and TFLite files with --tflite).",
        description=(
            "Export --model-dir's VQ-VAE (and its prior, when trained) as a "
            "SavedModel at OUT/NAME/VERSION, written under a temporary name "
            "and renamed, with a MANIFEST.json of SHA-256 digests."
        ),
    )
    export_parser.add_argument("--model-dir", required=True)
    export_parser.add_argument(
        "--out", default=None, help="Default: MODEL_DIR/export."
    )
    export_parser.add_argument(
        "--model-name", default="vqvae", help="Default: vqvae."
    )
    export_parser.add_argument(
        "--version", type=int, default=1, help="Default: 1."
    )
    export_parser.add_argument(
        "--max-batch-size",
        type=int,
        default=64,
        help="Larger requests are refused in the graph (default: 64).",
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
        choices=("float32", "float16", "int8"),
        default=["float32", "float16", "int8"],
        help="TFLite decoder variants (default: all three).",
    )
    export_parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace an existing version.",
    )

    verify_parser = commands.add_parser(
        "verify",
        help="Check an export against its MANIFEST.json and signatures.",
        description=(
            "Verify a SavedModel version directory, a model directory (all "
            "versions) or a TFLite export directory: every file's SHA-256 "
            "and the signature contract. Exit 0 if it matches, 1 if not."
        ),
    )
    verify_parser.add_argument("path")

    demo_parser = commands.add_parser(
        "demo",
        help="The whole pipeline on the offline photos, in a few minutes.",
        description=(
            "Train a VQ-VAE on 32x32 tiles of scikit-image's photos, train "
            "its prior, sample, evaluate and export a SavedModel; prints "
            "where each artifact is. Running it again resumes."
        ),
    )
    demo_parser.add_argument(
        "--model-dir", default="runs/demo", help="Default: runs/demo."
    )
    demo_parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"VQ-VAE epochs (default: {DEMO_TRAIN.epochs}).",
    )
    demo_parser.add_argument(
        "--prior-epochs",
        type=int,
        default=None,
        help=f"Prior epochs (default: {DEMO_PRIOR.epochs}).",
    )
    demo_parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="Steps per epoch (default: one pass over the photos).",
    )
    return parser


def config_from_args(
    args: argparse.Namespace, config_class: type = TrainConfig
):
    """The config: `--config`, else the saved one of the run being resumed,
    else the defaults; then every flag that was given."""
    saved = os.path.join(args.model_dir, CONFIG_FILE)
    if config_class is PriorConfig:
        saved = os.path.join(args.model_dir, PRIOR_DIR, CONFIG_FILE)
    if args.config is not None:
        base = load_config(args.config, config_class)
    elif os.path.exists(saved):
        base = load_config(saved, config_class)
    else:
        base = config_class()
    overrides = {}
    for field in dataclasses.fields(config_class):
        value = getattr(args, field.name)
        if value is not None:
            overrides[field.name] = (
                tuple(value) if isinstance(value, list) else value
            )
    return dataclasses.replace(base, **overrides)


def _run_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    started = time.time()
    result = train(config, args.model_dir)
    print(
        f"vqvae: trained {result.step} steps in {time.time() - started:.0f} s.",
        flush=True,
    )
    _print_artifacts(result.artifacts)
    return 0


def _run_train_prior(args: argparse.Namespace) -> int:
    config = config_from_args(args, PriorConfig)
    started = time.time()
    result = train_prior(config, args.model_dir)
    print(
        f"vqvae: trained the prior {result.step} steps in "
        f"{time.time() - started:.0f} s.",
        flush=True,
    )
    _print_artifacts(result.artifacts)
    return 0


def _run_sample(args: argparse.Namespace) -> int:
    path = sample(
        args.model_dir,
        n=args.n,
        seed=args.seed,
        temperature=args.temperature,
        output=args.output,
    )
    print(f"vqvae: {args.n} samples in {path}", flush=True)
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    metrics = evaluate(
        args.model_dir, args.dataset, args.split, args.batch_size
    )
    _print_metrics(metrics)
    print(
        f"vqvae: metrics in {os.path.join(args.model_dir, EVALUATION_FILE)}",
        flush=True,
    )
    return 0


def _run_export(args: argparse.Namespace) -> int:
    artifacts = export(
        args.model_dir,
        out_dir=args.out,
        model_name=args.model_name,
        version=args.version,
        tflite=args.tflite,
        quantization=tuple(args.quantization),
        max_batch_size=args.max_batch_size,
        overwrite=args.overwrite,
    )
    print("vqvae: exported", flush=True)
    _print_artifacts(artifacts)
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from tf_vqvae.export import manifest

    if not os.path.exists(args.path):
        raise UsageError(
            f"`path` must be an export directory. Received: path={args.path!r}"
        )
    try:
        manifest.verify(args.path)
    except manifest.VerificationError as error:
        print(f"vqvae verify: FAILED: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"vqvae verify: {args.path} matches its manifest", flush=True)
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    result = demo(
        args.model_dir,
        epochs=args.epochs,
        prior_epochs=args.prior_epochs,
        steps_per_epoch=args.steps_per_epoch,
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tf_vqvae.data import DatasetError
    from tf_vqvae.training.checkpointing import (
        CheckpointError,
        NonFiniteLossError,
    )

    runners = {
        "train": _run_train,
        "train-prior": _run_train_prior,
        "sample": _run_sample,
        "evaluate": _run_evaluate,
        "export": _run_export,
        "verify": _run_verify,
        "demo": _run_demo,
    }
    try:
        return runners[args.command](args)
    except (UsageError, ConfigError, DatasetError, CheckpointError) as error:
        print(f"vqvae {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except NonFiniteLossError as error:
        print(f"vqvae {args.command}: error: {error}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
