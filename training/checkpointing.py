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
"""

from __future__ import annotations

import math
import os
import sys

import keras
import tensorflow as tf

from tf_vqvae.training.layout import CHECKPOINT_DIR


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss or the weights became non-finite."""


class CheckpointError(ValueError):
    """No checkpoint in a model dir could be read."""


class TrainingState:
    """Model, optimizer and step, checkpointed under `directory`.

    Args:
        model: a built model.
        optimizer: its optimizer, built (`optimizer.build(...)`), so that
            its variables exist before a restore.
        directory: where checkpoints go (`model_dir/checkpoints`).
        max_to_keep: checkpoints kept; older ones are deleted.
    """

    def __init__(
        self,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        directory: str,
        max_to_keep: int = 3,
    ):
        self.model = model
        self.optimizer = optimizer
        self.directory = directory
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, step=self.step
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=max_to_keep
        )

    def restore_latest(self) -> int | None:
        """Restores the newest readable checkpoint; returns its step.

        A checkpoint that cannot be read (truncated, corrupted, missing
        files) is reported on stderr and the previous one is tried. Returns
        `None` when the directory holds no checkpoint.

        Raises:
            CheckpointError: if checkpoints exist but none can be read.
        """
        paths = list(self.manager.checkpoints)
        for index, path in enumerate(reversed(paths)):
            try:
                status = self.checkpoint.restore(path)
                status.assert_existing_objects_matched()
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
            return int(self.step.numpy())
        if paths:
            raise CheckpointError(
                f"`model_dir` holds no readable checkpoint in "
                f"{self.directory}; move the model dir away and train again. "
                f"Received: checkpoints={paths}"
            )
        return None

    def save(self, step: int) -> str:
        """Writes a checkpoint for global `step` (atomically)."""
        self.step.assign(step)
        return self.manager.save(checkpoint_number=step)

    def latest_step(self) -> int | None:
        path = self.manager.latest_checkpoint
        if path is None:
            return None
        return int(path.rsplit("-", 1)[-1])


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
    says where, and the caller restores the last good checkpoint.

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
        self._last_saved = state.latest_step()

    def on_train_batch_end(self, batch, logs=None):
        self.global_step += 1
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._fail(f"the loss is not finite (loss={float(loss)})")
            return
        if self.global_step % self.every_steps == 0:
            self._save()

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
