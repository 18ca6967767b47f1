"""Finite scalar quantization: `FiniteScalarQuantizer` (Mentzer et al.,
2023)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_vqvae.arg_checks import describe
from tf_vqvae.quantizers.grid import MAX_CODES, GridQuantizer

# The reference code's margin: bounded values stay this fraction inside
# the outermost rounding boundaries.
_EPSILON = 1e-3


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

    Args:
        levels: `L`, the number of values of each channel, integers >= 2
            (default `(8, 5, 5, 5)`, K = 1000; the paper's recommendations:
            `(8, 6, 5)` for K = 240, `(8, 5, 5, 5)` for 1000,
            `(7, 5, 5, 5, 5)` for 4375, `(8, 8, 8, 6, 5)` for 15360,
            `(8, 8, 8, 5, 5, 5)` for 64000).
        embedding_dim: D, the size of the input vectors; `None` (default)
            means `len(levels)` (no projections).
        seed: seeds the projections' initial kernels.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `z_e`, float tensor `(batch, ..., embedding_dim)` of any
            rank >= 2, e.g. `(batch, height, width, embedding_dim)`.
        training: unused (FSQ has no state); accepted for the contract.

    Returns:
        `z_q`: same shape as `inputs`, in the layer's compute dtype. The
        arithmetic (projections, bound, rounding) is float32 under mixed
        precision policies.

    Losses: none (the paper's point: nothing to keep a codebook alive).

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
        seed: int = 0,
        **kwargs,
    ):
        levels = _check_levels(levels)
        super().__init__(levels, embedding_dim, seed, **kwargs)
        self.levels = levels
        levels = np.asarray(levels)
        half_range = (levels - 1) * (1 - _EPSILON) / 2
        offset = np.where(levels % 2 == 0, 0.5, 0.0)
        self._half_range = half_range.astype(np.float32)
        self._offset = offset.astype(np.float32)
        # The reference code's tan (atanh would centre even levels exactly,
        # but is undefined for L = 2); the two agree to 1e-3 for L >= 4.
        self._shift = np.tan(offset / half_range).astype(np.float32)
        self._half_width = (levels // 2).astype(np.int32)

    def bound(self, z) -> tf.Tensor:
        """`bound(z)`: float32 `[..., len(levels)]` before rounding."""
        z = tf.cast(z, "float32")
        return tf.tanh(z + self._shift) * self._half_range - self._offset

    def _digits(self, z: tf.Tensor) -> tf.Tensor:
        return self._digits_of_bound(self.bound(z))

    def _digits_of_bound(self, bounded: tf.Tensor) -> tf.Tensor:
        return tf.cast(tf.round(bounded), tf.int32) + self._half_width

    def _values(self, digits: tf.Tensor) -> tf.Tensor:
        half_width = self._half_width.astype(np.float32)
        return (tf.cast(digits, "float32") - half_width) / half_width

    def _quantize(self, z: tf.Tensor, training):
        bounded = self.bound(z)
        normalized = bounded / self._half_width.astype(np.float32)
        return self._snap(normalized, self._digits_of_bound(bounded))

    def get_config(self):
        config = super().get_config()
        config.update(levels=list(self.levels))
        return config
