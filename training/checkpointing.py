"""Full-state checkpoints and the non-finite loss guard.

`TrainingState` keeps every variable a resumed run needs, through
`tf.train.CheckpointManager` (temp file + rename, CRC32C-checked reads): the
model (weights, EMA statistics, the quantizer's update counter that seeds its
random choices), the optimizer (moments, iterations, learning rate) and the
global step. With a data order that depends only on `(seed, epoch)` (see
`tf_vqvae.data.training_pipeline`) a run killed mid-epoch and started again
ends with the same weights, bit for bit, as one that never stopped.

Keras' `BackupAndRestore` is not used: it restores only the epoch and writes
its file in place.

The `checkpoint` index file is only a hint: checkpoints are found on disk
(`ckpt-N.index`) as well, so a missing, empty or garbled index (set aside as
`checkpoint.unreadable`) resumes from the newest readable one, and never
prunes the older ones. Each checkpoint also holds the run's config as JSON
(`read_saved_config`), to rebuild a lost `config.json`.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import math
import os
import re
import shutil
import sys

import keras
import tensorflow as tf

from tf_vqvae.training.layout import CHECKPOINT_DIR


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss or the weights became non-finite."""


class CheckpointError(ValueError):
    """No checkpoint in a model dir could be read."""


class WriteError(RuntimeError):
    """A checkpoint or artifact could not be written (disk full, read-only
    file system) mid-run: exit code 1, the previous checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C (SIGINT) after saving a checkpoint."""


# The name of the config inside each checkpoint (`tf.train.Checkpoint`'s
# key for `_ConfigText`).
CONFIG_KEY = "config/.ATTRIBUTES/py_state"
INDEX_FILE = "checkpoint"
_CHECKPOINT_FILE = re.compile(r"^ckpt-(\d+)\.index$")


def _step_of(path: str) -> int:
    return int(path.rsplit("-", 1)[-1])


def checkpoint_paths(directory: str, listed=()) -> list[str]:
    """Every checkpoint prefix in `directory`, oldest first: those the index
    lists (`listed`) and every `ckpt-N` with an `.index` file on disk."""
    by_step = {_step_of(path): path for path in listed}
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            match = _CHECKPOINT_FILE.match(name)
            if match:
                step = int(match[1])
                by_step.setdefault(
                    step, os.path.join(directory, f"ckpt-{step}")
                )
    return [by_step[step] for step in sorted(by_step)]


@contextlib.contextmanager
def _quiet_tf_logging():
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _set_aside_bad_index(directory: str) -> str | None:
    """What is wrong with `directory`'s index ("missing", "unreadable") when
    checkpoints are on disk; an unreadable index is renamed
    `checkpoint.unreadable` so that `CheckpointManager` starts a new one."""
    if not checkpoint_paths(directory):
        return None
    path = os.path.join(directory, INDEX_FILE)
    if not os.path.exists(path):
        return "missing"
    try:
        with _quiet_tf_logging():
            state = tf.train.get_checkpoint_state(directory)
    except (ValueError, tf.errors.OpError, UnicodeDecodeError):
        state = None
    if state is not None and state.model_checkpoint_path:
        return None
    os.replace(path, path + ".unreadable")
    return "unreadable"


def read_saved_config(directory: str) -> tuple[str, str] | None:
    """The config JSON kept in the newest checkpoint of `directory` that
    holds one, and that checkpoint's path; `None` if none does."""
    for path in reversed(checkpoint_paths(directory)):
        try:
            value = tf.train.load_checkpoint(path).get_tensor(CONFIG_KEY)
        except (tf.errors.OpError, ValueError, KeyError, RuntimeError):
            continue
        return value.decode("utf-8"), path
    return None


class _ConfigText(tf.train.experimental.PythonState):
    """The run's config JSON, written into every checkpoint and read back
    only by `read_saved_config` (a string, not a variable: no strategy
    mirrors or all-reduces it)."""

    def __init__(self, text: str):
        self.text = text

    def serialize(self) -> str:
        return self.text

    def deserialize(self, string_value) -> None:
        """Restoring keeps the current config."""


class TrainingState:
    """Model, optimizer and step, checkpointed under `directory`.

    Args:
        model: a built model.
        optimizer: its optimizer, built (`optimizer.build(...)`), so that
            its variables exist before a restore.
        directory: where checkpoints go (`model_dir/checkpoints`).
        max_to_keep: checkpoints kept; older ones are deleted.
        config_json: the run's config, saved in every checkpoint.
    """

    def __init__(
        self,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        directory: str,
        max_to_keep: int = 3,
        config_json: str = "",
    ):
        self.model = model
        self.optimizer = optimizer
        self.directory = directory
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint = tf.train.Checkpoint(
            model=model,
            optimizer=optimizer,
            step=self.step,
            config=_ConfigText(config_json),
        )
        # Restores without the config, so that checkpoints written before
        # it was kept in them still match every object.
        self._restorer = tf.train.Checkpoint(
            model=model, optimizer=optimizer, step=self.step
        )
        self.index_problem = _set_aside_bad_index(directory)
        self._restored: str | None = None
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=max_to_keep
        )

    def restore_latest(self) -> int | None:
        """Restores the newest readable checkpoint; returns its step.

        Candidates are the checkpoints the index lists and those on disk.
        A checkpoint that cannot be read (truncated, corrupted, missing
        files) is reported on stderr and the previous one is tried. Returns
        `None` when the directory holds no checkpoint.

        Raises:
            CheckpointError: if checkpoints exist but none can be read.
        """
        paths = checkpoint_paths(self.directory, self.manager.checkpoints)
        for index, path in enumerate(reversed(paths)):
            try:
                status = self._restorer.restore(path)
                status.assert_existing_objects_matched()
                # The config in the checkpoint is read only on recovery.
                status.expect_partial()
            except (
                tf.errors.OpError,
                ValueError,
                AssertionError,
                IndexError,
                KeyError,
            ) as error:
                reason = str(error).strip().splitlines()[0][:200]
                remaining = len(paths) - index - 1
                then = (
                    f"falling back to {paths[remaining - 1]}"
                    if remaining
                    else "no older checkpoint is left"
                )
                print(
                    f"vqvae: checkpoint {path} is unreadable "
                    f"({type(error).__name__}: {reason}); {then}.",
                    file=sys.stderr,
                )
                continue
            if self.index_problem:
                print(
                    f"vqvae: the checkpoint index "
                    f"{os.path.join(self.directory, INDEX_FILE)} is "
                    f"{self.index_problem}; restored {path}, the newest "
                    "readable checkpoint on disk (older ones are kept).",
                    file=sys.stderr,
                )
            self._restored = path
            return int(self.step.numpy())
        if paths:
            raise CheckpointError(
                f"`model_dir` holds no readable checkpoint in "
                f"{self.directory}; move the model dir away and train again. "
                f"Received: checkpoints={paths}"
            )
        return None

    def save(self, step: int) -> str:
        """Writes a checkpoint for global `step` (atomically).

        Raises:
            WriteError: it could not be written (disk full, ...); what it
                left is removed and the previous checkpoint stays the newest.
        """
        self.step.assign(step)
        previous = self.latest_checkpoint
        try:
            return self.manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as error:
            prefix = os.path.join(self.directory, f"ckpt-{step}")
            for path in glob.glob(glob.escape(prefix) + "[._]*"):
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.remove(path)
            raise WriteError(
                f"could not write checkpoint {prefix} "
                f"({error_reason(error)}); {previous or 'no checkpoint'} "
                "is kept as the newest: free space (or fix the file "
                "system) and run the same command again to resume from it."
            ) from None

    @property
    def latest_checkpoint(self) -> str | None:
        """The newest checkpoint saved or restored (its path prefix); the
        one restored may be newer than the index knows."""
        paths = [self.manager.latest_checkpoint, self._restored]
        return max(filter(None, paths), key=_step_of, default=None)

    def latest_step(self) -> int | None:
        """The step of the newest checkpoint saved or restored."""
        path = self.latest_checkpoint
        return None if path is None else _step_of(path)


_STORAGE_ERRNOS = (
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EIO,
)


def error_reason(error: BaseException) -> str:
    """The first line of an error's message (at most 200 characters)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(getattr(error, "message", "") or error)
    for code in _STORAGE_ERRNOS:
        if os.strerror(code) in text:
            return os.strerror(code)
    text = re.sub(r"\{\{[^}]*\}\}", "", text).strip()
    return (text.splitlines() or [type(error).__name__])[0][:200]


def is_storage_error(error: BaseException) -> bool:
    """Whether `error` (an `OSError`, or a TensorFlow `OpError` from its
    file system) says a file could not be written: disk full, quota,
    read-only, permissions, I/O."""
    if isinstance(error, OSError):
        return error.errno in _STORAGE_ERRNOS
    if isinstance(error, tf.errors.OpError):
        text = str(error)
        return any(os.strerror(code) in text for code in _STORAGE_ERRNOS)
    return False


def all_finite(variables) -> bool:
    """Whether every floating-point variable holds only finite values."""
    checks = [
        tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(v)))
        for v in variables
        if tf.as_dtype(v.dtype).is_floating
    ]
    return bool(tf.reduce_all(checks)) if checks else True


class CheckpointAndGuard(keras.callbacks.Callback):
    """Checkpoints every `every_steps` steps and after each epoch; stops on
    a non-finite loss before any damaged state is checkpointed.

    The loss is checked after every batch and the weights before every
    checkpoint, so the newest checkpoint always holds finite weights. On a
    non-finite value training stops (`model.stop_training`), `failure`
    says where, and the caller restores the last good checkpoint. After
    `interrupt()` (Ctrl-C) it checkpoints at the end of the current batch
    and stops.

    Args:
        state: the `TrainingState` to save.
        start_step: global step of the first batch of this `fit`.
        every_steps: checkpoint interval in steps.
    """

    def __init__(self, state: TrainingState, start_step: int, every_steps: int):
        super().__init__()
        self.state = state
        self.global_step = start_step
        self.every_steps = every_steps
        self.failure: str | None = None
        self.interrupted = False
        self._last_saved = state.latest_step()

    def interrupt(self) -> None:
        """Checkpoint and stop at the end of the current batch."""
        self.interrupted = True
        if self.model is not None:
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        self.global_step += 1
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._fail(f"the loss is not finite (loss={float(loss)})")
            return
        if self.interrupted or self.global_step % self.every_steps == 0:
            self._save()
        if self.interrupted:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.failure is None:
            self._save()

    def _save(self) -> None:
        if self._last_saved == self.global_step:
            return
        if not all_finite(self.state.model.variables):
            self._fail("the weights are not finite")
            return
        self.state.save(self.global_step)
        self._last_saved = self.global_step

    def _fail(self, what: str) -> None:
        self.failure = f"at step {self.global_step}: {what}"
        self.model.stop_training = True


def checkpoint_dir(model_dir: str) -> str:
    return os.path.join(model_dir, CHECKPOINT_DIR)
