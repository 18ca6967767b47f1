"""Finite scalar quantization: `FiniteScalarQuantizer` (Mentzer et al.,
2023)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_vqvae.arg_checks import describe, is_number
from tf_vqvae.quantizers.grid import MAX_CODES, GridQuantizer
from tf_vqvae.quantizers.vector import _all_reduce_sum, _straight_through

# The reference code's margin: bounded values stay this fraction inside
# the outermost rounding boundaries.
_EPSILON = 1e-3
# `saturation_penalty` acts where the tanh's argument leaves [-2, 2]
# (tanh' < 0.071 there; for L <= 8 the outermost level starts below
# |u| = 1.3, so the penalty never keeps a vector from any level).
SATURATION_THRESHOLD = 2.0


def _check_levels(levels) -> tuple[int, ...]:
    valid = (
        isinstance(levels, Sequence)
        and not isinstance(levels, str)
        and len(levels) > 0
        and all(
            isinstance(v, (int, np.integer))
            and not isinstance(v, bool)
            and v >= 2
            for v in levels
        )
    )
    if not valid:
        raise ValueError(
            "`levels` must be a non-empty sequence of integers >= 2. "
            f"{describe('levels', levels)}"
        )
    levels = tuple(int(v) for v in levels)
    if np.prod(levels, dtype=object) > MAX_CODES:
        raise ValueError(
            "`levels` must have a product (the number of codes) of at most "
            f"2**31 - 1, for int32 codes. {describe('levels', levels)}"
        )
    return levels


@keras.saving.register_keras_serializable(package="tf_vqvae")
class FiniteScalarQuantizer(GridQuantizer):
    """Finite scalar quantization (FSQ): each channel rounded to a few values.

    "VQ-VAE made simple" [1]: no codebook, no codebook loss, no collapse.
    With `L_i = levels[i]` and the reference code's bound (eps = 1e-3)

        h_i = (L_i - 1) (1 - eps) / 2,   o_i = 0.5 if L_i is even else 0
        bound(z)_i = tanh(z_i + tan(o_i / h_i)) h_i - o_i
        z_q_i = round(bound(z)_i) / (L_i // 2)

    each channel takes `L_i` values in [-1, 1] (even `L_i`: -1 to
    1 - 2 / L_i). `round` passes its gradient straight through, so the
    encoder learns through `bound`. The code of a vector is the mixed-radix
    number of its digits `d_i = round(bound(z)_i) + L_i // 2` in
    `[0, L_i)`: `index = sum_i d_i prod_{j<i} L_j` (channel 0 least
    significant), a bijection onto `[0, K)`, `K = prod(levels)`.

    With `embedding_dim != len(levels)`, learned `Dense` projections map
    the input to `len(levels)` channels before the bound and `z_q` back to
    `embedding_dim` after it (float32 under any precision policy).

    Data init (`data_init=True`, the default): a learned per-channel
    affine `z * scale + shift` comes before the bound, set at the first
    training batch so that each channel has mean 0 and variance 1 over the
    batch (as Glow's ActNorm; the statistics are all-reduced, so N replicas
    start where one device would). Without it, an encoder whose outputs
    are small next to the rounding steps (|z| << 1 / L_i, common at
    initialisation) puts every vector in the middle cell: one code, a
    constant decoder input and no signal to grow out of it.

    Saturation penalty (`saturation_penalty=w`, default 0: off): the layer
    adds, through `add_loss`,

        w * mean(max(|u| - 2, 0)^2),   u = z_i + tan(o_i / h_i)

    (`u` the tanh's argument, after the data init's affine). It keeps
    channels out of the tanh's flat tails, where Adam can drive them when
    the straight-through gradient keeps pointing outwards (vectors that
    want a value beyond the outermost level: Adam's steps do not shrink
    with the tanh's derivative, and a channel stuck in one level codes
    nothing). With the data init that did not happen on CIFAR-10, where the
    penalty cost test MSE instead (BENCHMARKS.md, section 9: 0.1 against
    0), so it is off by default: turn it on if a channel's usage collapses
    onto its outermost levels.

    Args:
        levels: `L`, the number of values of each channel, integers >= 2
            (default `(8, 5, 5, 5)`, K = 1000; the paper's recommendations:
            `(8, 6, 5)` for K = 240, `(8, 5, 5, 5)` for 1000,
            `(7, 5, 5, 5, 5)` for 4375, `(8, 8, 8, 6, 5)` for 15360,
            `(8, 8, 8, 5, 5, 5)` for 64000).
        embedding_dim: D, the size of the input vectors; `None` (default)
            means `len(levels)` (no projections).
        data_init: standardise each channel from the first training batch
            (see above; default `True`). `False`: the bound sees the
            (projected) inputs as they are, as in the paper's code.
        saturation_penalty: `w` above, a non-negative number (default 0:
            no loss, as in the paper).
        seed: seeds the projections' initial kernels.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `z_e`, float tensor `(batch, ..., embedding_dim)` of any
            rank >= 2, e.g. `(batch, height, width, embedding_dim)`.
        training: the first call with `training=True` (and a non-empty
            batch) sets the data init's scale and shift.

    Returns:
        `z_q`: same shape as `inputs`, in the layer's compute dtype. The
        arithmetic (projections, bound, rounding) is float32 under mixed
        precision policies.

    Losses: the saturation penalty, if `saturation_penalty > 0` (no
    codebook loss: there is no codebook to keep alive).

    Metrics (in `model.fit`'s progress bar and History): `perplexity`,
    `codebook_usage`, `epoch_perplexity`, `epoch_codebook_usage`,
    `dead_codes` (`tf_vqvae.CodebookUsage`), from code counts all-reduced
    across replicas.

    Implements `tf_vqvae.contracts.Quantizer`: `num_embeddings` (K),
    `embedding_dim`, `num_levels` (1), `encode(z)` (int32 codes
    `(batch, ...)`, TFLite builtins: TANH, ROUND, CAST, MUL, ADD, SUM),
    `lookup(codes)`, `codebook()` (the `K` grid points in [-1, 1], before
    the output projection if any: float32 `(K, len(levels))`, `None` for
    K > 65536).

    Raises:
        ValueError: for invalid arguments, or inputs whose last dimension is
            not `embedding_dim`.
        TypeError: for inputs that are not float (any float dtype), or
            `lookup` codes that are not integers.

    Example:

    >>> fsq = FiniteScalarQuantizer(levels=(8, 5, 5, 5), embedding_dim=64)
    >>> z_q = fsq(keras.random.normal((8, 16, 16, 64)))    # (8, 16, 16, 64)
    >>> codes = fsq.encode(keras.random.normal((8, 16, 16, 64)))
    >>> codes.shape                                        # (8, 16, 16)
    >>> vectors = fsq.lookup(codes)                        # (8, 16, 16, 64)

    References:
        [1] Mentzer, Minnen, Agustsson, Tschannen. Finite Scalar
            Quantization: VQ-VAE Made Simple. ICLR 2024 (arXiv:2309.15505).
    """

    def __init__(
        self,
        levels: Sequence[int] = (8, 5, 5, 5),
        embedding_dim: int | None = None,
        data_init: bool = True,
        saturation_penalty: float = 0.0,
        seed: int = 0,
        **kwargs,
    ):
        levels = _check_levels(levels)
        if not isinstance(data_init, (bool, np.bool_)):
            raise TypeError(
                "`data_init` must be True or False. "
                f"{describe('data_init', data_init)}"
            )
        if not is_number(saturation_penalty) or saturation_penalty < 0:
            raise ValueError(
                "`saturation_penalty` must be a non-negative finite number. "
                f"{describe('saturation_penalty', saturation_penalty)}"
            )
        super().__init__(levels, embedding_dim, seed, **kwargs)
        self.levels = levels
        self.data_init = bool(data_init)
        self.saturation_penalty = float(saturation_penalty)
        levels = np.asarray(levels)
        half_range = (levels - 1) * (1 - _EPSILON) / 2
        offset = np.where(levels % 2 == 0, 0.5, 0.0)
        self._half_range = half_range.astype(np.float32)
        self._offset = offset.astype(np.float32)
        # The reference code's tan (atanh would centre even levels exactly,
        # but is undefined for L = 2); the two agree to 1e-3 for L >= 4.
        self._shift = np.tan(offset / half_range).astype(np.float32)
        self._half_width = (levels // 2).astype(np.int32)
        # One constant for `_values` and `_quantize`, whose products must
        # agree exactly.
        self._inverse_half_width = (1 / (levels // 2)).astype(np.float32)

    def build(self, input_shape):
        super().build(input_shape)
        if not self.data_init:
            return
        # Assigned in a replica context at the first training batch, hence
        # an aggregation; float32 under any precision policy.
        common = dict(
            shape=(self.codebook_dim,),
            dtype="float32",
            autocast=False,
            aggregation="only_first_replica",
        )
        self.input_scale = self.add_weight(
            name="input_scale", initializer="ones", **common
        )
        self.input_shift = self.add_weight(
            name="input_shift", initializer="zeros", **common
        )
        self.initialized = self.add_weight(
            name="initialized",
            shape=(),
            initializer="zeros",
            dtype="int64",
            trainable=False,
            autocast=False,
            aggregation="only_first_replica",
        )

    def bound(self, z) -> tf.Tensor:
        """`bound(z)`: float32 `[..., len(levels)]` before rounding, of
        projected inputs `z` `[..., len(levels)]` (after the data init's
        scale and shift, if any). `encode` computes the same function with
        the affine folded into the projection, so at a rounding boundary
        the two can differ by float rounding."""
        return self._bound_of_argument(self._tanh_argument(z))

    def _tanh_argument(self, z) -> tf.Tensor:
        z = tf.cast(z, "float32")
        if self.data_init:
            if not self.built:
                self.build(tuple(z.shape[:-1]) + (self.embedding_dim,))
            return z * self.input_scale + (self.input_shift + self._shift)
        return z + self._shift

    def _bound_of_argument(self, u: tf.Tensor) -> tf.Tensor:
        return tf.tanh(u) * self._half_range - self._offset

    def call(self, inputs, training=None):
        if training and self.data_init:
            self._check_inputs(inputs)
            self._initialize_from(tf.stop_gradient(tf.cast(inputs, "float32")))
        return super().call(inputs, training)

    def _project_in(self, x: tf.Tensor) -> tf.Tensor:
        """The tanh's argument `u` of inputs `x`: the projection, the data
        init's affine and the shift. With both a projection and the data
        init, the affine is folded into the projection's kernel and bias,
        `(x W + b) s + t = x (W s) + (b s + t)`, a `(D, C)` product instead
        of arithmetic on every vector (forward and backward)."""
        if self.project_in is None:
            return self._tanh_argument(x)
        if not self.data_init:
            return self.project_in(x) + self._shift
        if not self._can_fold():
            return self._tanh_argument(self.project_in(x))
        kernel = self.project_in.kernel * self.input_scale
        bias = self.project_in.bias * self.input_scale + (
            self.input_shift + self._shift
        )
        return keras.ops.matmul(x, kernel) + bias

    def _can_fold(self) -> bool:
        """Whether `project_in`'s weights can be read here as they are: not
        under a mixed precision policy (inside this layer's call Keras
        would autocast them to its compute dtype; `Dense`'s own call keeps
        them float32) and not quantized by `Model.quantize`."""
        return (
            self.compute_dtype == self.variable_dtype
            and getattr(self.project_in, "quantization_mode", None) is None
        )

    def _digits(self, u: tf.Tensor) -> tf.Tensor:
        return self._digits_of_bound(self._bound_of_argument(u))

    def _digits_of_bound(self, bounded: tf.Tensor) -> tf.Tensor:
        return self._digits_of_rounded(tf.round(bounded))

    def _digits_of_rounded(self, rounded: tf.Tensor) -> tf.Tensor:
        return tf.cast(rounded, tf.int32) + self._half_width

    def _values(self, digits: tf.Tensor) -> tf.Tensor:
        # `round(bound) / (L // 2)`, as `_quantize` computes it (the same
        # multiplication, so `lookup(encode(z))` equals `call(z)`).
        half_width = self._half_width.astype(np.float32)
        digits = tf.cast(digits, "float32")
        return (digits - half_width) * self._inverse_half_width

    def _quantize(self, u: tf.Tensor, training):
        if self.saturation_penalty:
            excess = tf.nn.relu(tf.abs(u) - SATURATION_THRESHOLD)
            size = tf.maximum(tf.cast(tf.size(u), "float32"), 1.0)
            self.add_loss(
                self.saturation_penalty
                * tf.reduce_sum(tf.square(excess))
                / size
            )
        bounded = self._bound_of_argument(u)
        rounded = tf.round(bounded)
        scale = self._inverse_half_width
        z_q = _straight_through(bounded * scale, rounded * scale)
        return z_q, self._digits_of_rounded(rounded)

    # The assignments stay outside `tf.cond`, and the all-reduces run on
    # every training step: tf.distribute allows neither inside control flow.
    # Only the statistics over the batch sit in a `tf.cond`, so that an
    # initialised layer (every step but the first) skips them.
    def _initialize_from(self, x: tf.Tensor) -> None:
        """Per-channel mean 0 and variance 1 of `project_in(x)` (`x` the
        layer's float32 inputs) over the global batch, at the first
        non-empty training batch (two passes, all-reduced; the projection
        runs in each pass, on the first batch only)."""
        x = tf.reshape(x, [-1, self.embedding_dim])
        pending = tf.equal(self.initialized, 0)
        size = self.codebook_dim + 1

        def projected():
            return x if self.project_in is None else self.project_in(x)

        def moments():
            count = tf.cast(tf.shape(x)[:1], "float32")
            return tf.concat([count, tf.reduce_sum(projected(), 0)], 0)

        def skipped():
            return tf.zeros([size])

        sums = _all_reduce_sum(tf.cond(pending, moments, skipped))
        count = sums[0]
        safe_count = tf.maximum(count, 1.0)
        mean = sums[1:] / safe_count
        squares = _all_reduce_sum(
            tf.cond(
                pending,
                lambda: tf.reduce_sum(tf.square(projected() - mean), 0),
                lambda: tf.zeros([self.codebook_dim]),
            )
        )
        scale = tf.math.rsqrt(squares / safe_count + 1e-6)
        first = tf.logical_and(pending, count > 0)
        self.input_scale.assign(
            tf.where(first, scale, tf.convert_to_tensor(self.input_scale))
        )
        self.input_shift.assign(
            tf.where(
                first, -mean * scale, tf.convert_to_tensor(self.input_shift)
            )
        )
        self.initialized.assign(
            tf.where(first, tf.constant(1, "int64"), self.initialized)
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            levels=list(self.levels),
            data_init=self.data_init,
            saturation_penalty=self.saturation_penalty,
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Files saved before these options existed have no scale and shift
        # and no penalty.
        config.setdefault("data_init", False)
        config.setdefault("saturation_penalty", 0.0)
        return cls(**config)
