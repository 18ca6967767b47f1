"""One `MirroredStrategy` per device set per process.

A second `tf.distribute.MirroredStrategy` over the same devices restarts
TensorFlow's collective instance keys, and its all-reduces then collide with
the first one's at run time ("Shape mismatch in the collective instance").
Notebooks, test suites and CLIs that build several models in one process
should take their strategy from here.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

_MIRRORED: dict = {}


def mirrored_strategy(
    devices: Sequence[str] | None = None,
) -> tf.distribute.MirroredStrategy:
    """The process' `MirroredStrategy` over `devices` (all GPUs if `None`).

    Args:
        devices: device names such as `["/gpu:0", "/gpu:1"]`; spellings of
            the same device (`/cpu:0`, `/device:CPU:0`) share one strategy.

    Returns:
        The same strategy object for the same device set on every call.
    """
    key = None
    if devices:
        key = tuple(
            sorted(tf.DeviceSpec.from_string(d).to_string() for d in devices)
        )
    if key not in _MIRRORED:
        _MIRRORED[key] = tf.distribute.MirroredStrategy(
            devices=list(devices) if devices else None
        )
    return _MIRRORED[key]
