"""The life of one training run, shared by `vqvae train` and `train-prior`.

A run is a directory (`model_dir`, or `model_dir/prior` for the prior)
holding `config.json`, `checkpoints/` and `logs/`, trained from a config
(`TrainConfig` or `PriorConfig`) on fixed-size examples (`Images`). `Run`
does everything that does not depend on the model:

    with Run(config, model_dir) as run: # strategy, batch split, model-dir
                                        # checks: nothing written yet; the
                                        # lock on an existing dir
        steps = run.steps_per_epoch(data)   # one batch or more
        model = run.start(make_model, data.image_shape)
                                        # dir + lock, config.json, seed,
                                        # scope: build + compile, optimizer,
                                        # restore the newest readable
                                        # checkpoint or save step 0; a new
                                        # dir is removed again if this fails
        step, history = run.fit(data, callbacks)  # resumable fit, NaN
                                        # guard, Ctrl-C
        artifacts = run.finish("model", "model.keras")
                                        # leaving the block: lock released

Bad input raises `UsageError` (or `ConfigError`, `DatasetError`,
`CheckpointError`, `LockedError` when another command holds the directory,
`NotWritableError`) before anything is written; a non-finite loss raises
`NonFiniteLossError` with the model restored to the last good checkpoint; a
checkpoint that cannot be written (disk full) `WriteError`, the previous one
kept; Ctrl-C `TrainingInterrupted` after a checkpoint at the end of the
current step (a second Ctrl-C ends the process at once).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import signal
import threading
import typing
from collections.abc import Callable

import keras
import tensorflow as tf

from tf_vqvae import atomic, precision
from tf_vqvae.data import (
    DatasetError,
    Images,
    Utterances,
    audio_pipeline,
    training_pipeline,
)
from tf_vqvae.distribute import mirrored_strategy
from tf_vqvae.training.checkpointing import (
    CheckpointAndGuard,
    NonFiniteLossError,
    TrainingInterrupted,
    TrainingState,
    WriteError,
    checkpoint_dir,
    checkpoint_paths,
    error_reason,
    is_storage_error,
    read_saved_config,
)
from tf_vqvae.training.config import ConfigError, load_config, save_config
from tf_vqvae.training.interrupts import is_interrupt
from tf_vqvae.training.layout import (
    CONFIG_FILE,
    LOGS_DIR,
    PRIOR_DIR,
    WORKERS_DIR,
)
from tf_vqvae.training.locking import (
    DirectoryLock,
    writable_error,
)


class UsageError(ValueError):
    """Bad input to a command: exit code 2 with a one-line message."""


@dataclasses.dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        model: the trained model.
        step: global steps trained in total.
        history: per-epoch metrics of this invocation (empty if the run was
            already complete).
        artifacts: name -> path of every file written.
        start_step: the step this invocation started (resumed) at.
    """

    model: typing.Any
    step: int
    history: dict
    artifacts: dict
    start_step: int = 0


# The resumable options that say how a run's steps were trained (the other
# resumable ones say where its data is and how to run it).
_TRAINED_WITH = ("epochs", "learning_rate")

# One multi-worker strategy per process; mirrored ones come from
# `tf_vqvae.distribute.mirrored_strategy`, which also keeps one per device set
# (a second strategy restarts the collective instance keys and collides).
_MULTI_WORKER: list = []


def make_strategy(config) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy that `config.strategy` names (created
    once per process for each kind and device set)."""
    if config.strategy == "default":
        return tf.distribute.get_strategy()
    if config.strategy == "mirrored":
        # A list: the message shows the names as the command line gave them.
        devices = list(config.devices) if config.devices else None
        try:
            return mirrored_strategy(devices)
        except (TypeError, ValueError) as error:
            raise UsageError(str(error)) from None
    if not os.environ.get("TF_CONFIG"):
        raise UsageError(
            "`strategy` 'multi-worker' needs the TF_CONFIG environment "
            "variable (cluster and task, see README's Command line). "
            "Received: strategy='multi-worker'"
        )
    if not _MULTI_WORKER:
        _MULTI_WORKER.append(tf.distribute.MultiWorkerMirroredStrategy())
    return _MULTI_WORKER[0]


def worker_dir(strategy, run_dir: str) -> tuple[str, bool]:
    """Where this worker writes, and whether it is the chief.

    The chief (task `chief`, else `worker` 0) writes `run_dir`; every other
    worker writes its own `run_dir/workers/TYPE-ID`, as all workers must
    save checkpoints under `MultiWorkerMirroredStrategy`.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type is None:
        return run_dir, True
    task_id = resolver.task_id or 0
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    if task_type == "chief" or (
        task_type == "worker" and task_id == 0 and not has_chief
    ):
        return run_dir, True
    return os.path.join(run_dir, WORKERS_DIR, f"{task_type}-{task_id}"), False


def build_for_examples(model: keras.Model, example_shape) -> None:
    """Builds `model` for batches of examples of `example_shape`: a shape,
    or a dict of shapes for models with several inputs."""
    if isinstance(example_shape, dict):
        model.build({k: (None, *v) for k, v in example_shape.items()})
    else:
        model.build((None, *example_shape))


@dataclasses.dataclass(frozen=True)
class AudioSegments:
    """The training examples of an audio run: random crops of
    `segment_length` samples of `utterances` (`data.audio_pipeline`).

    An epoch is one pass over the audio: as many segments as the split's
    samples fill (`num_examples`). The stream of batches depends only on
    the seed, so the batch of global step `s` is the same whether training
    started at 0 or resumed at `s`.
    """

    utterances: Utterances
    segment_length: int

    @property
    def num_examples(self) -> int:
        return self.utterances.num_samples // self.segment_length

    @property
    def example_shape(self) -> tuple[int, int]:
        return (self.segment_length, 1)

    def steps_per_epoch(self, global_batch_size: int) -> int:
        """Full batches of segments in one pass over the audio."""
        return self.num_examples // global_batch_size

    def batches(
        self,
        global_batch_size: int,
        seed: int,
        start_step: int = 0,
        end_step: int | None = None,
    ) -> tf.data.Dataset:
        """Batches `{"audio", "speaker"}` of global steps `start_step` to
        `end_step` (default: the end of the epoch `start_step` is in)."""
        if end_step is None:
            steps = self.steps_per_epoch(global_batch_size)
            end_step = (start_step // steps + 1) * steps
        stream = audio_pipeline(
            self.utterances, self.segment_length, global_batch_size, seed=seed
        )
        return stream.skip(int(start_step)).take(
            int(end_step) - int(start_step)
        )


def training_batches(
    data,
    global_batch_size: int,
    seed: int,
    start_step: int = 0,
    end_step: int | None = None,
) -> tf.data.Dataset:
    """The batches of global steps `start_step` to `end_step` of `data`
    (`Images` through `data.training_pipeline`, or `AudioSegments`)."""
    if isinstance(data, AudioSegments):
        return data.batches(global_batch_size, seed, start_step, end_step)
    return training_pipeline(
        data, global_batch_size, seed, start_step=start_step, end_step=end_step
    )


class Run:
    """One training run in a directory: set-up, resume, fit, artifacts.

    Creating it checks what needs no data: the strategy (and that it splits
    `config.global_batch_size` evenly), that `run_dir` is not a file nor
    below one, that a run already in `run_dir` has a config compatible with
    `config`, and that checkpoints there come with their `config.json`.
    Use it as a context manager: entering locks the directory this process
    writes (`DirectoryLock`; a new one is locked by `start`), leaving
    releases it.
    `config.precision` `"auto"` becomes the precision it picks here
    (`tf_vqvae.precision.resolve`, kept in `precision`), and so is saved.

    Args:
        config: a `TrainConfig` or `PriorConfig` (`strategy`, `devices`,
            `global_batch_size`, `epochs`, `steps_per_epoch`, `seed`,
            `learning_rate`, `checkpoint_steps`).
        model_dir: the model dir named on the command line.
        part: a folder inside `model_dir` this run owns (`"prior"`), or
            `None` when the run is `model_dir` itself. Names the artifacts
            (`prior_config`, ...) and the messages.

    Raises:
        UsageError, ConfigError: bad input (nothing written).
        LockedError: another command holds the directory (on entering).
    """

    def __init__(self, config, model_dir: str, part: str | None = None):
        self.config = config
        self.model_dir = model_dir
        self.part = part
        self.run_dir = os.path.join(model_dir, part) if part else model_dir
        command = "train-prior" if part == PRIOR_DIR else "train"
        self.resume_command = (
            f"vqvae {command} --model-dir {shlex.quote(model_dir)}"
        )
        self.precision = precision.resolve(config.precision)
        if config.precision != self.precision.precision:
            # `auto` is saved as what it chose, so a resume elsewhere keeps
            # the run's arithmetic (or says that it differs).
            self.config = config = dataclasses.replace(
                config, precision=self.precision.precision
            )
        self.strategy = make_strategy(config)
        replicas = self.strategy.num_replicas_in_sync
        if config.global_batch_size % replicas:
            raise UsageError(
                "`global_batch_size` must be divisible by the number of "
                f"replicas ({replicas}); pass a multiple of {replicas}. "
                f"Received: global_batch_size={config.global_batch_size}"
            )
        self._check_run_dir()
        self.write_dir, self.is_chief = worker_dir(self.strategy, self.run_dir)
        self.logs_dir = os.path.join(self.write_dir, LOGS_DIR)
        self.state: TrainingState | None = None
        self.start_step = 0
        self._previous_policy = None
        # Each worker locks the directory it writes: the chief `run_dir`,
        # the others their own `workers/TYPE-ID`.
        self._lock = DirectoryLock(self.write_dir, what="`model_dir`")

    def __enter__(self) -> Run:
        """Locks the run's directory if it exists (`start` locks a new one)
        and checks it again under the lock."""
        if os.path.isdir(self.write_dir):
            self._lock_and_check()
        return self

    def __exit__(self, kind, error, traceback) -> None:
        """Releases the lock; a plain Ctrl-C (outside `fit`) becomes
        `TrainingInterrupted` and a file-system error (disk full,
        read-only) `WriteError`, each saying how to resume."""
        self.close()
        latest = None
        if self.state is not None:
            latest = self.state.latest_checkpoint
        kept = (
            f"{latest} is kept as the newest checkpoint"
            if latest
            else "no checkpoint was written"
        )
        if is_interrupt(error) and not isinstance(error, TrainingInterrupted):
            raise TrainingInterrupted(
                f"interrupted; {kept}; resume with: {self.resume_command}"
            ) from None
        if error is not None and is_storage_error(error):
            where = getattr(error, "filename", None)
            raise WriteError(
                f"{error_reason(error)}"
                + (f": {where}" if where else "")
                + f"; {kept}; fix the cause and run again: "
                + self.resume_command
            ) from None

    def close(self) -> None:
        """Releases the lock on the run's directory."""
        self._lock.release()

    def _lock_and_check(self) -> None:
        if self._lock.held:
            return
        self._lock.acquire()
        try:
            self._check_run_dir()
        except BaseException:
            self._lock.release()
            raise

    def _check_run_dir(self) -> None:
        model_dir = self.model_dir
        if os.path.exists(self.run_dir) and not os.path.isdir(self.run_dir):
            raise UsageError(
                f"`model_dir` must be a directory; {self.run_dir!r} is a "
                f"file. Received: model_dir={model_dir!r}"
            )
        parent = os.path.dirname(os.path.abspath(self.run_dir))
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise UsageError(
                f"`model_dir` must be a directory path; {self.run_dir!r} is "
                f"below {parent!r}, which is a file. "
                f"Received: model_dir={model_dir!r}"
            )
        path = os.path.join(self.run_dir, CONFIG_FILE)
        self._saved_config = None
        if not os.path.exists(path):
            if checkpoint_paths(checkpoint_dir(self.run_dir)):
                raise UsageError(
                    f"`model_dir` {model_dir!r} holds checkpoints but no "
                    f"{path}; write it back from the newest checkpoint with "
                    f"`{self.resume_command} --recover-config`, then run "
                    f"again. Received: model_dir={model_dir!r}"
                )
            return
        saved = load_config(path, type(self.config))
        self._saved_config = saved
        different = self.config.incompatible_fields(saved)
        if different:
            name = different[0]
            remedy = (
                f"delete {self.run_dir}"
                if self.part
                else "use a new --model-dir"
            )
            raise UsageError(
                f"`model_dir` {model_dir!r} holds a {self.part or 'run'} "
                f"with {name}={getattr(saved, name)!r}; resume it with the "
                f"same options (--config {path}) or {remedy}. "
                f"Received: {name}={getattr(self.config, name)!r}"
            )

    def steps_per_epoch(self, data: Images | AudioSegments) -> int:
        """`config.steps_per_epoch`, or full batches in one pass over `data`.

        Raises:
            DatasetError: if `data` holds fewer examples than one batch.
        """
        data_steps = data.steps_per_epoch(self.config.global_batch_size)
        if data_steps < 1:
            what = (
                f"segments of {data.segment_length} samples the training "
                "audio fills"
                if isinstance(data, AudioSegments)
                else "training images"
            )
            raise DatasetError(
                f"`global_batch_size` must be at most the number of {what} "
                f"({data.num_examples}). "
                f"Received: global_batch_size={self.config.global_batch_size}"
            )
        return self.config.steps_per_epoch or data_steps

    def start(
        self,
        make_model: Callable[[], keras.Model],
        example_shape: tuple,
        dtype_policy: str | None = None,
        **compile_kwargs,
    ) -> keras.Model:
        """Creates the run's directory and model, resumed if it holds one.

        Writes `config.json`, seeds Keras with `config.seed`, and inside the
        strategy's scope makes the model, builds it for examples of
        `example_shape`, compiles it with Adam at `config.learning_rate`,
        builds the optimizer, and restores the newest readable checkpoint
        (or saves step 0). If anything fails and the directory is new, it is
        removed again.

        Args:
            make_model: `() -> keras.Model`, unbuilt.
            example_shape: the shape of one training example, or a dict of
                shapes for dict examples (e.g. `{"codes": (8, 8), "labels":
                ()}`).
            dtype_policy: a Keras global dtype policy (e.g.
                `"mixed_float16"`) for building and fitting (default: the
                one of `config.precision`); the previous one is restored
                when `fit` ends.
            **compile_kwargs: more `model.compile` arguments.

        Returns:
            The model.

        Raises:
            ConfigError: the model refuses its arguments (nothing is left
                behind in a new directory).
            LockedError: another command holds the directory.
            NotWritableError: the directory cannot be created or written.
            CheckpointError: checkpoints exist but none can be read.
        """
        created = not os.path.exists(self.write_dir)
        # Creates the directory; nothing to remove if another command holds
        # it, as that one may have created it.
        self._lock_and_check()
        self._previous_policy = keras.mixed_precision.global_policy()
        print(
            f"vqvae: precision {self.precision.precision} "
            f"({self.precision.reason}; Keras policy "
            f"{dtype_policy or self.precision.policy}).",
            flush=True,
        )
        try:
            try:
                save_config(self.config, self.write_dir)
            except OSError as error:
                raise writable_error(
                    self.write_dir, error, "`model_dir`"
                ) from None
            keras.mixed_precision.set_global_policy(
                dtype_policy or self.precision.policy
            )
            keras.utils.set_random_seed(self.config.seed)
            with self.strategy.scope():
                try:
                    model = make_model()
                except (ValueError, TypeError) as error:
                    # The library's argument checks (e.g. a quantizer option
                    # out of range) end with what they received: bad input,
                    # one line. Anything else is a bug and keeps its
                    # traceback.
                    if "Received:" not in str(error):
                        raise
                    raise ConfigError(str(error).strip()) from error
                build_for_examples(model, example_shape)
                model.compile(
                    optimizer=keras.optimizers.Adam(self.config.learning_rate),
                    **compile_kwargs,
                )
                if self.config.strategy == "multi-worker":
                    _rank1_step_outputs(model)
                    _per_input_symbolic_build(model)
                model.optimizer.build(model.trainable_variables)
                self.state = TrainingState(
                    model,
                    model.optimizer,
                    checkpoint_dir(self.write_dir),
                    config_json=self.config.to_json(),
                )
                start_step = self.state.restore_latest()
                if start_step is None:
                    start_step = 0
                    self.state.save(0)
                model.optimizer.learning_rate.assign(self.config.learning_rate)
        except BaseException:
            keras.mixed_precision.set_global_policy(self._previous_policy)
            if created:
                shutil.rmtree(self.write_dir, ignore_errors=True)
            raise
        self.start_step = start_step
        return model

    def fit(
        self,
        data: Images,
        callbacks: list,
        verbose: int | str = 1,
        map_fn: Callable | None = None,
    ) -> tuple[int, dict]:
        """`model.fit` from the restored step to the end of training.

        The batch of step `s` is the same whatever step training (re)started
        at (`training_pipeline`), and a run resumed mid-epoch first finishes
        that epoch with a shorter `fit`, so epochs keep their numbers.
        Checkpoints every `config.checkpoint_steps` steps, after each epoch
        and at the end; stops on a non-finite loss or weights, and when a
        callback sets `model.stop_training` (checkpointing that step).

        Args:
            data: the training examples.
            callbacks: `fit` callbacks besides the checkpoint guard.
            verbose: `fit`'s verbosity (1: progress bar).
            map_fn: applied to every batch.

        Returns:
            `(step, history)`: the final global step and the metrics per
            epoch.

        Raises:
            NonFiniteLossError: with the model restored to the last good
                checkpoint.
            WriteError: a checkpoint could not be written (disk full); the
                previous one stays the newest.
            TrainingInterrupted: Ctrl-C, after a checkpoint at the end of
                the current step (a second Ctrl-C ends the process at once).
        """
        try:
            return self._fit(data, callbacks, verbose, map_fn)
        finally:
            keras.mixed_precision.set_global_policy(self._previous_policy)

    def _on_ctrl_c(self, guard: CheckpointAndGuard):
        """Installs a SIGINT handler that stops `guard`'s `fit` at the end
        of the step; returns the handler it replaced (or `None` when not
        installed: off the main thread, or under multi-worker, where every
        worker must stop at the same step)."""
        if (
            threading.current_thread() is not threading.main_thread()
            or self.config.strategy == "multi-worker"
        ):
            return None

        def on_sigint(signum, frame):
            guard.interrupt()
            # A second Ctrl-C ends the process at once, even inside an op.
            signal.signal(signal.SIGINT, signal.SIG_DFL)

        return signal.signal(signal.SIGINT, on_sigint)

    def _fit(self, data, callbacks, verbose, map_fn) -> tuple[int, dict]:
        config, state = self.config, self.state
        steps_per_epoch = self.steps_per_epoch(data)
        total_steps = config.epochs * steps_per_epoch
        start_step = self.start_step
        if start_step >= total_steps:
            print(
                f"vqvae: {self.run_dir} is already trained ({start_step} "
                "steps); raise --epochs to train it longer.",
                flush=True,
            )
            # No step runs: config.json keeps how the run was trained
            # (`start` wrote this invocation's, e.g. another learning rate);
            # where its data is and how to run it stay as given now.
            saved = self._saved_config
            if saved is not None:
                kept = dataclasses.replace(
                    config,
                    **{name: getattr(saved, name) for name in _TRAINED_WITH},
                )
                if kept != config:
                    save_config(kept, self.write_dir)
        elif start_step:
            print(
                f"vqvae: resuming {self.run_dir} at step {start_step} of "
                f"{total_steps}.",
                flush=True,
            )
        guard = CheckpointAndGuard(state, start_step, config.checkpoint_steps)
        previous_handler = self._on_ctrl_c(guard)
        try:
            step, history = self._fit_loop(
                data, callbacks, verbose, map_fn, guard, total_steps
            )
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
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
        if guard.interrupted:
            raise TrainingInterrupted(
                f"interrupted at step {step} of {total_steps}; saved "
                f"{state.latest_checkpoint}; resume with: "
                f"{self.resume_command}"
            )
        return step, history

    def _fit_loop(self, data, callbacks, verbose, map_fn, guard, total_steps):
        config, state = self.config, self.state
        steps_per_epoch = self.steps_per_epoch(data)
        history: dict = {}
        step = self.start_step
        while (
            step < total_steps
            and guard.failure is None
            and not guard.interrupted
        ):
            epoch, offset = divmod(step, steps_per_epoch)
            last_epoch = config.epochs if offset == 0 else epoch + 1
            steps = steps_per_epoch - offset
            dataset = training_batches(
                data,
                config.global_batch_size,
                config.seed,
                start_step=step,
                end_step=total_steps if offset == 0 else step + steps,
            )
            if map_fn is not None:
                dataset = dataset.map(map_fn)
            fitted = state.model.fit(
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
            if state.model.stop_training:
                break  # A callback stopped training (e.g. CodebookHealth).
        return step, history

    def finish(self, model_name: str, filename: str) -> dict:
        """Saves the model as `filename` in the run's directory.

        Returns:
            name -> path of the run's artifacts: its config, checkpoints,
            TensorBoard logs and `model_name` (the saved model); names
            start with `part_` for a part of a model dir.
        """
        prefix = f"{self.part}_" if self.part else ""
        path = os.path.join(self.write_dir, filename)
        try:
            atomic.write_file(path, self.state.model.save)
        except OSError as error:
            raise WriteError(
                f"could not write {path} ({error_reason(error)}); the "
                "checkpoints are complete: fix the cause and run the same "
                f"command again to write it: {self.resume_command}"
            ) from None
        artifacts = {
            f"{prefix}config": os.path.join(self.write_dir, CONFIG_FILE),
            f"{prefix}checkpoints": self.state.directory,
            f"{prefix}tensorboard": self.logs_dir,
            model_name: path,
        }
        if not self.is_chief:
            artifacts["chief_model_dir"] = self.model_dir
        return artifacts


def recover_config(
    config_class: type, model_dir: str, part: str | None = None
) -> tuple[str, str]:
    """Writes a lost `config.json` back from the newest checkpoint.

    Every checkpoint keeps the run's config; this writes the one of the
    newest checkpoint that holds one to `model_dir[/part]/config.json`,
    under the run's lock.

    Args:
        config_class: `TrainConfig` or `PriorConfig`.
        model_dir: the model dir.
        part: `"prior"` for the prior's run.

    Returns:
        `(config_path, checkpoint_path)`: what was written, from where.

    Raises:
        UsageError: `config.json` exists, or no checkpoint holds a config.
    """
    run_dir = os.path.join(model_dir, part) if part else model_dir
    path = os.path.join(run_dir, CONFIG_FILE)
    directory = checkpoint_dir(run_dir)
    if os.path.exists(path):
        raise UsageError(
            f"`model_dir` {model_dir!r} holds {path}: nothing to recover. "
            f"Received: model_dir={model_dir!r}"
        )
    if not checkpoint_paths(directory):
        raise UsageError(
            f"`model_dir` {model_dir!r} holds no checkpoint in {directory} "
            f"to recover a config from. Received: model_dir={model_dir!r}"
        )
    with DirectoryLock(run_dir, what="`model_dir`"):
        found = read_saved_config(directory)
        if found is None:
            raise UsageError(
                f"no checkpoint in {directory} holds a config (they were "
                "written before checkpoints kept it, or cannot be read); "
                f"write {path} by hand with the run's options. "
                f"Received: model_dir={model_dir!r}"
            )
        text, source = found
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(
                f"the config kept in {source} is not valid JSON ({error}). "
                f"Received: model_dir={model_dir!r}"
            ) from None
        save_config(config_class.from_dict(values, source=source), run_dir)
    return path, source


def _rank1_step_outputs(model: keras.Model) -> None:
    """Makes `model.fit` work under `MultiWorkerMirroredStrategy`.

    Keras 3 reduces the train step's outputs across workers with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on scalar metrics
    (tensorflow/tensorflow#72388). The metrics are already synchronised, so
    returning them with shape `(1,)` makes that mean the value itself. Only
    this model instance changes; the saved `.keras` file is a plain model.
    """
    train_step = model.train_step

    def step(data):
        return {
            name: tf.reshape(value, [1])
            for name, value in train_step(data).items()
        }

    model.train_step = step


def _per_input_symbolic_build(model: keras.Model) -> None:
    """Makes `model.fit` take dict batches under `MultiWorkerMirroredStrategy`.

    Before training, Keras averages the first distributed batch across
    replicas (`strategy.reduce("MEAN", batch, axis=None)`) for the shapes of
    a symbolic build. `MirroredStrategy` reduces a nested batch input by
    input; `MultiWorkerMirroredStrategy` tries to convert the whole dict to
    one tensor and fails ("Attempt to convert a value ({'audio': PerReplica
    ...}) with an unsupported type (<class 'dict'>)"), as on every audio run
    (`{"audio", "speaker"}`). This reduces each input on its own, as
    `MirroredStrategy` does; only this model instance changes.
    """
    strategy = model.distribute_strategy
    symbolic_build = model._maybe_symbolic_build

    def mean(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.reduce("MEAN", value, axis=None)
        return value

    def build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(mean, next(batches))
                break
        symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = build
