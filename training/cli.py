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
import os
import shutil
import sys
import time
import typing

from tf_vqvae.training.config import (
    CONFIG_FILE,
    ConfigError,
    TrainConfig,
    load_config,
    save_config,
)
from tf_vqvae.version import __version__

EXIT_FAILED = 1
EXIT_USAGE = 2
MODEL_FILE = "model.keras"
RECONSTRUCTIONS_FILE = "reconstructions.png"
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
def make_strategy(config: TrainConfig):
    """The `tf.distribute` strategy that `config.strategy` names."""
    import tensorflow as tf

    if config.strategy == "mirrored":
        devices = list(config.devices) if config.devices else None
        return tf.distribute.MirroredStrategy(devices=devices)
    if config.strategy == "multi-worker":
        if not os.environ.get("TF_CONFIG"):
            raise UsageError(
                "`strategy` 'multi-worker' needs the TF_CONFIG environment "
                "variable (cluster and task, see README's Command line). "
                "Received: strategy='multi-worker'"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


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
    from tf_vqvae.data import DatasetError, load_images, training_pipeline
    from tf_vqvae.training.checkpointing import (
        CheckpointAndGuard,
        NonFiniteLossError,
        TrainingState,
        checkpoint_dir,
    )
    from tf_vqvae.vqvae import to_unit_range

    strategy = make_strategy(config)
    replicas = strategy.num_replicas_in_sync
    if config.global_batch_size % replicas:
        raise UsageError(
            f"`global_batch_size` must be divisible by the number of replicas "
            f"({replicas}); pass a multiple of {replicas}. "
            f"Received: global_batch_size={config.global_batch_size}"
        )
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
    total_steps = config.epochs * steps_per_epoch

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

    if start_step:
        print(
            f"vqvae: resuming {model_dir} at step {start_step} of "
            f"{total_steps}.",
            flush=True,
        )
    guard = CheckpointAndGuard(state, start_step, config.checkpoint_steps)
    callbacks = [guard] + tensorboard_callbacks(
        os.path.join(write_dir, LOGS_DIR),
        validation,
        write_graph=False,
    )
    history: dict = {}
    step = start_step
    try:
        while step < total_steps and guard.failure is None:
            epoch, offset = divmod(step, steps_per_epoch)
            last_epoch = config.epochs if offset == 0 else epoch + 1
            steps = steps_per_epoch - offset
            end_step = total_steps if offset == 0 else step + steps
            dataset = training_pipeline(
                images,
                config.global_batch_size,
                config.seed,
                start_step=step,
                end_step=end_step,
            )
            if config.strategy == "multi-worker":
                # Keras all-reduces (MEAN) the first batch to build the
                # model symbolically, and collective ops reject uint8: feed
                # the [0, 1] floats the model would compute from it anyway.
                dataset = dataset.map(to_unit_range)
            fitted = model.fit(
                dataset,
                epochs=last_epoch,
                initial_epoch=epoch,
                steps_per_epoch=steps,
                callbacks=callbacks,
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
                f"(now {config.learning_rate:g}) "
                "to resume from there."
            )
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    if guard._last_saved != step:
        state.save(step)
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
    """A fixed batch from the test split, or the first training images."""
    from tf_vqvae.data import (
        DatasetError,
        first_images,
        load_images,
        parse_dataset,
    )

    kind, _, named_split = parse_dataset(config.dataset)
    source = train_images
    if named_split is None:
        try:
            source = load_images(config.dataset, "test", config.data_dir)
        except DatasetError:
            source = train_images
        if source.image_shape != train_images.image_shape:
            source = train_images
    return first_images(source, NUM_VALIDATION_IMAGES)


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


# ----------------------------------------------------------------- parsing
def _optional(annotation: str) -> tuple[type, bool]:
    """The scalar type of a config field and whether it is a tuple."""
    names = {"int": int, "float": float, "str": str, "bool": bool}
    base = annotation.split("|")[0].strip()
    if base.startswith("tuple["):
        return str, True
    return names[base], False


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per `TrainConfig` field, documented by the field's help.

    Defaults are `None` so that only the flags given override the base config
    (`--config`, the model dir's saved config, or the defaults).
    """
    choices = {
        "quantizer": ("ema", "vq"),
        "strategy": ("default", "mirrored", "multi-worker"),
        "data_init": ("random", "kmeans++"),
    }
    for field in dataclasses.fields(TrainConfig):
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
    add_config_flags(train_parser)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The config: `--config`, else the model dir's saved one, else the
    defaults; then every flag that was given."""
    if args.config is not None:
        base = load_config(args.config)
    elif os.path.exists(os.path.join(args.model_dir, CONFIG_FILE)):
        base = load_config(os.path.join(args.model_dir, CONFIG_FILE))
    else:
        base = TrainConfig()
    overrides = {}
    for field in dataclasses.fields(TrainConfig):
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

    runners = {"train": _run_train}
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
