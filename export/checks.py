"""In-graph request validation for exported serving signatures.

TF Serving feeds request tensors to the graph without checking them against
the signature's shapes: a wrong shape reaches the convolution kernel and fails
as an oneDNN `Aborted` error (HTTP 409), an out-of-range code fails in
`tf.gather` on CPU and silently returns zeros on GPU. These checks run first
and turn each bad request into `InvalidArgumentError` (HTTP 400) whose message
names the problem, e.g.

    assertion failed: [`images` must have shape (batch, 32, 32, 3).
    Received: images.shape=(2, 16, 16, 3)]

They are `tf.debugging.Assert` ops: kept in SavedModels, stripped by the
TFLite converter (so `.tflite` apps validate their own inputs).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


def shape_string(shape: tf.Tensor) -> tf.Tensor:
    """A runtime shape as Python writes a tuple: `(2, 16, 16, 3)`, `(5,)`."""
    parts = tf.strings.as_string(shape)
    joined = tf.strings.reduce_join(parts, separator=", ")
    one = tf.equal(runtime_rank(shape), 1)
    return tf.strings.join(["(", joined, tf.where(one, ",)", ")")])


def _assert(condition: tf.Tensor, message: Sequence, name: str) -> tf.Operation:
    """`Assert` whose failure message is exactly the joined `message`.

    Messages avoid quotes: the Assert kernel escapes them.
    """
    return tf.debugging.Assert(
        condition, [tf.strings.join(list(message))], name=name
    )


def runtime_rank(shape: tf.Tensor) -> tf.Tensor:
    """The length of a runtime shape vector, computed from its values.

    `tf.size(shape)` or `tf.rank(x)` would be constant-folded by Grappler
    from the signature's static rank, yet TF Serving feeds tensors of any
    rank: counting entries (all >= 0) cannot be folded.
    """
    return tf.reduce_sum(tf.cast(shape >= 0, tf.int32))


# A dimension `check_grid` expects: a size, `None` (any positive multiple of
# its `multiple`) or an inclusive range `(low, high)`.
Dim = int | None | tuple[int, int]


def _describe_dims(names: Sequence[str], dims: Sequence[Dim]) -> str:
    return ", ".join(
        str(dim) if isinstance(dim, int) else name
        for name, dim in zip(names, dims, strict=True)
    )


def check_grid(
    tensor: tf.Tensor,
    name: str,
    dim_names: Sequence[str],
    dims: Sequence[Dim],
    multiple: int,
    max_batch_size: int,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Checks `(batch, *dims)` at run time.

    `dims` are the expected sizes after the batch axis; `None` means any
    positive multiple of `multiple`, `(low, high)` any size from `low` to
    `high`. The batch must be in `[1, max_batch_size]`.

    Every condition is computed without ops that can fail on a bad shape
    (the shape is zero-padded before indexing), and each later check passes
    whenever an earlier one fails, so the message always names the first
    problem.

    Returns:
        `(tensor, ok)`: `tensor` after the checks, and a scalar bool that is
        true when they passed (for chaining further checks).
    """
    shape = tf.shape(tensor)
    received = tf.strings.join(
        [f"Received: {name}.shape=", shape_string(shape)]
    )
    rank = len(dims) + 1
    expected = f"(batch, {_describe_dims(dim_names, dims)})"
    dynamic = [n for n, d in zip(dim_names, dims, strict=True) if d is None]
    clauses = []
    if dynamic and multiple > 1:
        clauses.append(
            f"{' and '.join(dynamic)} positive multiples of {multiple}"
        )
    elif dynamic:
        clauses.append(f"{' and '.join(dynamic)} positive")
    clauses += [
        f"{n} from {d[0]} to {d[1]}"
        for n, d in zip(dim_names, dims, strict=True)
        if isinstance(d, tuple)
    ]
    requirement = f"`{name}` must have shape {expected}"
    if clauses:
        requirement += f" with {', '.join(clauses)}"
    padded = tf.pad(shape, [[0, rank]])
    shape_ok = tf.equal(runtime_rank(shape), rank)
    for axis, dim in enumerate(dims, start=1):
        if dim is None:
            ok = tf.logical_and(
                padded[axis] > 0, tf.equal(padded[axis] % multiple, 0)
            )
        elif isinstance(dim, tuple):
            ok = tf.logical_and(padded[axis] >= dim[0], padded[axis] <= dim[1])
        else:
            ok = tf.equal(padded[axis], dim)
        shape_ok = tf.logical_and(shape_ok, ok)
    check_shape = _assert(
        shape_ok, [requirement, ". ", received], f"check_{name}_shape"
    )
    batch_ok = tf.logical_and(padded[0] >= 1, padded[0] <= max_batch_size)
    check_batch = _assert(
        tf.logical_or(tf.logical_not(shape_ok), batch_ok),
        [
            f"`{name}` must have a batch size from 1 to {max_batch_size} "
            "(max_batch_size of this export). ",
            received,
        ],
        f"check_{name}_batch_size",
    )
    with tf.control_dependencies([check_shape, check_batch]):
        return tf.identity(tensor), tf.logical_and(shape_ok, batch_ok)


def check_finite(
    tensor: tf.Tensor, name: str, valid: tf.Tensor | bool = True
) -> tf.Tensor:
    """Rejects NaN and infinite values; returns `tensor` after the check.

    Passes when `valid` (the result of earlier checks) is false, so only
    the first problem of a request is reported.
    """
    # Reductions over a flat view: axis=None would use the static rank.
    bad = tf.logical_not(tf.math.is_finite(tf.reshape(tensor, [-1])))
    count = tf.reduce_sum(tf.cast(bad, tf.int64))
    check = _assert(
        tf.logical_or(tf.logical_not(valid), tf.equal(count, 0)),
        [
            f"`{name}` must be finite (no NaN or infinity). Received: ",
            tf.strings.as_string(count),
            " non-finite values.",
        ],
        f"check_{name}_finite",
    )
    with tf.control_dependencies([check]):
        return tf.identity(tensor)


def _check_range(
    tensor: tf.Tensor,
    name: str,
    valid: tf.Tensor | bool,
    bounds: tuple[float, float],
    hint: str,
) -> tf.Tensor:
    """Rejects values outside `bounds`, saying `hint` (what the range is
    for); returns `tensor` after the check."""
    # Over a flat view (axis=None would use the static rank); an empty
    # request gives min=inf, max=-inf, which pass.
    flat = tf.reshape(tensor, [-1])
    low = tf.reduce_min(flat)
    high = tf.reduce_max(flat)
    check = _assert(
        tf.logical_or(
            tf.logical_not(valid),
            tf.logical_and(low >= bounds[0], high <= bounds[1]),
        ),
        [
            f"`{name}` must be in [{bounds[0]:g}, {bounds[1]:g}] ({hint}). "
            "Received: min=",
            tf.strings.as_string(low, shortest=True),
            ", max=",
            tf.strings.as_string(high, shortest=True),
            ".",
        ],
        f"check_{name}_range",
    )
    with tf.control_dependencies([check]):
        return tf.identity(tensor)


def check_unit_range(
    tensor: tf.Tensor, name: str, valid: tf.Tensor | bool = True
) -> tf.Tensor:
    """Rejects float values outside [0, 1]; returns `tensor` after the check.

    Passes when `valid` (the result of earlier checks, e.g. finiteness) is
    false, so only the first problem of a request is reported.
    """
    return _check_range(
        tensor,
        name,
        valid,
        (0.0, 1.0),
        "float pixels; uint8 images go to the _uint8 signatures",
    )


def check_waveform_range(
    tensor: tf.Tensor, name: str, valid: tf.Tensor | bool = True
) -> tf.Tensor:
    """Rejects samples outside [-1, 1]; returns `tensor` after the check.

    Passes when `valid` is false, as `check_unit_range`.
    """
    return _check_range(
        tensor, name, valid, (-1.0, 1.0), "divide 16-bit PCM by 32768"
    )


def check_codes(
    codes: tf.Tensor,
    num_embeddings: int,
    valid: tf.Tensor | bool = True,
    num_levels: int = 1,
) -> tf.Tensor:
    """Rejects codes outside `[0, num_embeddings)`; returns `codes` after.

    With `num_levels > 1` the last axis holds the levels (the first n of
    them, `n <= num_levels`, checked by `check_grid`), and the message names
    the first level holding a bad code. On CPU `tf.gather` would fail with a
    less helpful message; on GPU it returns zeros, and `keras.ops.take`
    silently maps -1 to the last code. Passes when `valid` (the result of
    earlier checks) is false.
    """
    flat = tf.reshape(codes, [-1])
    # Per-level minimum and maximum by segment (an entry's level is its
    # index modulo the last axis' size n): no reshape that a bad shape
    # could fail, and n clipped to [1, num_levels] (a bad n fails
    # `check_grid`, which `valid` carries).
    shape = tf.shape(codes)
    last = tf.gather(
        tf.pad(shape, [[0, 1]]), tf.maximum(runtime_rank(shape) - 1, 0)
    )
    levels = tf.range(tf.size(flat)) % tf.clip_by_value(last, 1, num_levels)
    low = tf.math.unsorted_segment_min(flat, levels, num_levels)
    high = tf.math.unsorted_segment_max(flat, levels, num_levels)
    # An empty request (or level) gives min=int max, max=int min: passes.
    bad = tf.logical_and(
        tf.logical_or(low < 0, high >= num_embeddings), low <= high
    )
    ok = tf.logical_not(tf.reduce_any(bad))
    first = tf.argmax(tf.cast(bad, tf.int32), output_type=tf.int32)
    if num_levels > 1:
        where = [
            f"`codes` must be integers in [0, {num_embeddings}) at each of "
            f"the {num_levels} levels (num_embeddings={num_embeddings}). "
            "Received: level ",
            tf.strings.as_string(first),
            " has min=",
        ]
    else:
        where = [
            f"`codes` must be integers in [0, {num_embeddings}) "
            f"(num_embeddings={num_embeddings}). Received: min=",
        ]
    check = _assert(
        tf.logical_or(tf.logical_not(valid), ok),
        [
            *where,
            tf.strings.as_string(tf.gather(low, first)),
            ", max=",
            tf.strings.as_string(tf.gather(high, first)),
            ".",
        ],
        "check_codes_range",
    )
    with tf.control_dependencies([check]):
        return tf.identity(codes)


def runtime_size(tensor: tf.Tensor) -> tf.Tensor:
    """The number of elements of `tensor`, computed from its values.

    For a scalar signature input Grappler replaces `tf.shape(x)` and
    `tf.size(x)` by constants (the static shape is fully known), yet TF
    Serving feeds whatever shape the request has. `tf.where` on the values
    has a data-dependent output shape, which cannot be folded.
    """
    flat = tf.reshape(tensor, [-1])
    return tf.shape(tf.where(flat >= flat.dtype.min), out_type=tf.int32)[0]


def check_scalar_range(
    value: tf.Tensor, name: str, low: int, high: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """Checks a scalar input holds one integer in `[low, high]`.

    Returns:
        `(scalar, ok)`: the value as a scalar after the checks, and whether
        they passed.
    """
    count = runtime_size(value)
    count_ok = tf.equal(count, 1)
    check_count = _assert(
        count_ok,
        [
            f"`{name}` must be a single integer. Received: ",
            tf.strings.as_string(count),
            " values.",
        ],
        f"check_{name}_size",
    )
    # The first element (0 if empty): never fails, whatever the shape.
    scalar = tf.pad(tf.reshape(value, [-1]), [[0, 1]])[0]
    range_ok = tf.logical_and(scalar >= low, scalar <= high)
    check_range = _assert(
        tf.logical_or(tf.logical_not(count_ok), range_ok),
        [
            f"`{name}` must be an integer from {low} to {high}. "
            f"Received: {name}=",
            tf.strings.as_string(scalar),
            ".",
        ],
        f"check_{name}_range",
    )
    with tf.control_dependencies([check_count, check_range]):
        return tf.identity(scalar), tf.logical_and(count_ok, range_ok)


def check_labels(
    labels: tf.Tensor,
    num: tf.Tensor,
    num_classes: int,
    valid: tf.Tensor | bool = True,
    name: str = "labels",
    classes_name: str = "num_classes",
    count_name: str = "num",
) -> tf.Tensor:
    """Checks class labels: shape `(num,)`, values in `[0, num_classes)`
    (also speaker ids `(batch,)`: `name="speaker"`,
    `classes_name="num_speakers"`, `count_name="batch"`)."""
    shape = tf.shape(labels)
    padded = tf.pad(shape, [[0, 1]])
    shape_ok = tf.logical_and(
        tf.equal(runtime_rank(shape), 1), tf.equal(padded[0], num)
    )
    check_shape = _assert(
        tf.logical_or(tf.logical_not(valid), shape_ok),
        [
            f"`{name}` must have shape ({count_name},). Received: "
            f"{name}.shape=",
            shape_string(shape),
            f", {count_name}=",
            tf.strings.as_string(num),
            ".",
        ],
        f"check_{name}_shape",
    )
    flat = tf.reshape(labels, [-1])
    low = tf.reduce_min(tf.pad(flat, [[0, 1]]))
    high = tf.reduce_max(tf.pad(flat, [[0, 1]]))
    range_ok = tf.logical_and(low >= 0, high < num_classes)
    check_range = _assert(
        tf.logical_or(
            tf.logical_not(tf.logical_and(valid, shape_ok)), range_ok
        ),
        [
            f"`{name}` must be integers in [0, {num_classes}) "
            f"({classes_name}={num_classes}). Received: min=",
            tf.strings.as_string(low),
            ", max=",
            tf.strings.as_string(high),
            ".",
        ],
        f"check_{name}_range",
    )
    with tf.control_dependencies([check_shape, check_range]):
        return tf.identity(labels)
