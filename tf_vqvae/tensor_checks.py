"""Checks of tensor arguments shared by the models, priors and exporters.

Eagerly each raises at once (`TypeError`/`ValueError`); in a graph (`fit`'s
train step, a `tf.function`, an export) the value checks are
`tf.debugging.Assert` ops that fail with the same text as an
`InvalidArgumentError` (XLA compiles them away; the TFLite converter strips
them). Every message names the argument and what came.
"""

from __future__ import annotations

import tensorflow as tf


def as_tensor(value, name: str) -> tf.Tensor:
    """`value` as a tensor; what cannot be one (`None`, a string, ragged
    nested lists) is a `TypeError` naming the argument."""
    problem = f"`{name}` must be a tensor or an array of numbers. Received: "
    if value is None:
        raise TypeError(f"{problem}{name}=None.")
    try:
        tensor = tf.convert_to_tensor(value)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{problem}{name}={value!r:.80} (of type "
            f"{type(value).__name__}): {error}"
        ) from None
    if tensor.dtype == tf.string:
        raise TypeError(f"{problem}{name}.dtype=string.")
    return tensor


def as_integer_tensor(value, name: str, expected: str) -> tf.Tensor:
    """`value` as an integer tensor (any int dtype), else a `TypeError`:
    "`codes` must be {expected}. Received: codes.dtype=float32"."""
    tensor = as_tensor(value, name)
    if not tensor.dtype.is_integer:
        raise TypeError(
            f"`{name}` must be {expected}. "
            f"Received: {name}.dtype={tensor.dtype.name}"
        )
    return tensor


def check_range(
    values: tf.Tensor, bounds: tuple, message: str, hint: str, name: str
) -> tf.Tensor:
    """`values` after checking they lie in `bounds` (inclusive): "{message}
    {min} to {max}{hint}." One min and one max over `values`; NaN is out
    of range, an empty tensor passes. `name` names the graph's Assert op."""
    low = tf.reduce_min(values)
    high = tf.reduce_max(values)
    if tf.executing_eagerly():
        # Ints as ints (a code of 1000000, not 1e+06).
        text = str if values.dtype.is_integer else "{:g}".format
        low, high = low.numpy().item(), high.numpy().item()
        # An empty batch gives low=inf, high=-inf (ints: their max and min):
        # nothing out of range.
        if not (low >= bounds[0] and high <= bounds[1]):
            raise ValueError(f"{message} {text(low)} to {text(high)}{hint}.")
        return values
    check = tf.debugging.Assert(
        tf.logical_and(low >= bounds[0], high <= bounds[1]),
        [message, low, "to", high],
        name=name,
    )
    with tf.control_dependencies([check]):
        return tf.identity(values)


_RANGE_MESSAGE = (
    "Images must be uint8 in [0, 255] or floating point in [0, 1]. "
    "Received: floating point images with values from"
)


_WAVEFORM_RANGE_MESSAGE = (
    "Waveforms must be floating point in [-1, 1]. Received: values from"
)


def check_unit_range(images: tf.Tensor) -> tf.Tensor:
    """Returns float `images` after checking they lie in [0, 1].

    Eagerly a `ValueError`; in a graph (`fit`, `tf.function`, exports) an
    `InvalidArgumentError` from a `tf.debugging.Assert` with the same text,
    which XLA compiles away. NaN is out of range. Costs one min and one max
    over the batch.
    """
    return check_range(
        images,
        (0.0, 1.0),
        _RANGE_MESSAGE,
        " (divide 8-bit images by 255, or pass them as uint8)",
        "check_images_range",
    )


def check_waveform_range(waveforms: tf.Tensor) -> tf.Tensor:
    """Returns float `waveforms` after checking they lie in [-1, 1]; errors
    as `check_unit_range`."""
    return check_range(
        waveforms,
        (-1.0, 1.0),
        _WAVEFORM_RANGE_MESSAGE,
        " (divide 16-bit PCM by 32768)",
        "check_waveforms_range",
    )


def check_ids(values: tf.Tensor, name: str, bound: str, size: int) -> tf.Tensor:
    """Integer `values` (codes, labels) after checking they lie in `[0,
    size)`, `size` being the argument `bound`: "`codes` must be in [0,
    num_embeddings=16). Received: codes from -1 to 15."."""
    return check_range(
        values,
        (0, size - 1),
        f"`{name}` must be in [0, {bound}={size}). Received: {name} from",
        "",
        f"check_{name}_range",
    )


def assert_at_run_time(
    tensor: tf.Tensor, condition, data: list, name: str
) -> tf.Tensor:
    """`tensor` after asserting `condition` at run time, failing with
    `data` (strings and tensors, e.g. a runtime shape): the part of a shape
    check that static shapes leave open (Keras retraces `fit`'s step on a
    new input shape with `None` sizes or an unknown rank)."""
    # `summarize`: whole shapes in the message (the default shows 3 values).
    check = tf.debugging.Assert(condition, data, summarize=8, name=name)
    with tf.control_dependencies([check]):
        return tf.identity(tensor)
