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

from tf_vqvae.arg_checks import describe

_MIRRORED: dict = {}


def _device_key(name: str) -> tuple[str, int] | None:
    """`("CPU", 0)` for `/cpu:0`, `/device:CPU:0`...; `None` if `name` is
    no device name."""
    try:
        spec = tf.DeviceSpec.from_string(name)
    except ValueError:
        return None
    if spec.device_type is None:
        return None
    return spec.device_type.upper(), spec.device_index or 0


def _check_devices(devices) -> None:
    """Raises unless `devices` is `None` or a list of distinct names of
    this machine's devices (TensorFlow would otherwise place the work
    elsewhere without a word).

    Raises:
        TypeError: `devices` is not a list or tuple of strings.
        ValueError: a name of no device of this machine, or a device named
            twice.
    """
    if devices is None:
        return
    if not isinstance(devices, (list, tuple)) or not all(
        isinstance(name, str) for name in devices
    ):
        raise TypeError(
            "`devices` must be a list of device names such as '/gpu:0', or "
            f"None. {describe('devices', devices)}"
        )
    present = {_device_key(d.name) for d in tf.config.list_logical_devices()}
    keys = [_device_key(name) for name in devices]
    if any(key not in present for key in keys):
        names = sorted(f"/{kind.lower()}:{i}" for kind, i in present)
        raise ValueError(
            f"`devices` must name devices of this machine "
            f"({', '.join(names)}). {describe('devices', devices)}"
        )
    if len(set(keys)) < len(keys):
        raise ValueError(
            "`devices` must name each device once. "
            f"{describe('devices', devices)}"
        )


def mirrored_strategy(
    devices: Sequence[str] | None = None,
) -> tf.distribute.MirroredStrategy:
    """The process' `MirroredStrategy` over `devices` (all GPUs if `None`).

    Args:
        devices: device names such as `["/gpu:0", "/gpu:1"]`; spellings of
            the same device (`/cpu:0`, `/device:CPU:0`) share one strategy.

    Returns:
        The same strategy object for the same device set on every call.

    Raises:
        TypeError: `devices` is not `None` or a list of strings.
        ValueError: `devices` names a device this machine does not have, or
            one device twice.
    """
    _check_devices(devices)
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
