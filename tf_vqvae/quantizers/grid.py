"""Quantizers whose codebook is an implicit grid: the machinery FSQ and LFQ
share.

Each of `codebook_dim` channels is rounded on its own to one of
`radices[i]` scalar values (its digit); a code is the tuple of digits and
its index the mixed-radix number

    index = sum_i digit_i * basis_i,   basis = (1, r_0, r_0 r_1, ...)

(channel 0 the least significant), so `K = prod(radices)` codes need no
stored codebook and no nearest-code search. Learned `Dense` projections map
`embedding_dim` to `codebook_dim` channels and back when they differ.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tf_vqvae import codebook_ops
from tf_vqvae.arg_checks import check_int, describe
from tf_vqvae.metrics import CodebookUsage
from tf_vqvae.quantizers.vector import _all_reduce_sum, _QuantizerChecks

# `codebook()` returns the implicit codebook up to this many codes (a
# 65536 x C float32 matrix is 256 KiB per channel); above it, `None`.
MAX_IMPLICIT_CODEBOOK = 2**16
# Codes are int32.
MAX_CODES = 2**31 - 1


def mixed_radix_basis(radices) -> np.ndarray:
    """int32 `(1, r_0, r_0 r_1, ...)`: the place value of each digit."""
    return np.concatenate([[1], np.cumprod(radices[:-1])]).astype(np.int32)


def digits_to_codes(digits: tf.Tensor, radices) -> tf.Tensor:
    """int32 indices `[...]` of int32 digits `[..., len(radices)]`."""
    basis = tf.constant(mixed_radix_basis(radices))
    return tf.reduce_sum(tf.cast(digits, tf.int32) * basis, axis=-1)


def codes_to_digits(codes: tf.Tensor, radices) -> tf.Tensor:
    """int32 digits `[..., len(radices)]` of int indices `[...]`."""
    basis = tf.constant(mixed_radix_basis(radices))
    radices = tf.constant(np.asarray(radices, np.int32))
    return (tf.cast(codes, tf.int32)[..., None] // basis) % radices


class GridQuantizer(_QuantizerChecks, keras.layers.Layer):
    """Base of `FiniteScalarQuantizer` and `LookupFreeQuantizer`; not public.

    Subclasses define `_digits(z)` (int32 digits of float32 `z`
    `[..., codebook_dim]`, the encoding), `_values(digits)` (the float32
    grid values of digits) and `_quantize(z, training)` (the
    straight-through `z_q` of `z` and its digits, adding the losses), whose
    forward values must be the ones `_values` gives for those digits, with
    the same arithmetic: then `lookup(encode(z))` equals
    `call(z, training=False)`. Both see `z` as `_project_in` returns it (a
    subclass may fold a transform of its own into it: FSQ's `z` is the
    tanh's argument).
    """

    # One code per position (a residual quantizer has several levels).
    num_levels = 1

    def __init__(
        self,
        radices: tuple[int, ...],
        embedding_dim: int | None,
        seed: int,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if embedding_dim is not None:
            check_int("embedding_dim", embedding_dim)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(
                f"`seed` must be an integer. {describe('seed', seed)}"
            )
        self._radices = tuple(radices)
        self.codebook_dim = len(self._radices)
        self.num_embeddings = math.prod(self._radices)
        self.embedding_dim = (
            self.codebook_dim if embedding_dim is None else embedding_dim
        )
        self.seed = seed
        self.usage = CodebookUsage(self.num_embeddings, name="codebook")
        self.project_in = self.project_out = None
        if self.embedding_dim != self.codebook_dim:
            # float32 under any policy: the rounding sees float32 inputs.
            self.project_in = keras.layers.Dense(
                self.codebook_dim,
                kernel_initializer=keras.initializers.GlorotUniform(seed),
                dtype="float32",
                name="project_in",
            )
            self.project_out = keras.layers.Dense(
                self.embedding_dim,
                kernel_initializer=keras.initializers.GlorotUniform(seed + 1),
                dtype="float32",
                name="project_out",
            )

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self._check_shape(input_shape)
        if self.project_in is not None:
            self.project_in.build(input_shape)
            self.project_out.build(input_shape[:-1] + (self.codebook_dim,))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    # ------------------------------------------------------------ public API
    def encode(self, inputs) -> tf.Tensor:
        """Codes of `inputs` `(batch, ..., embedding_dim)`: int32
        `(batch, ...)`, values in `[0, num_embeddings)`.

        Elementwise ops, a projection and a sum over channels (no search,
        memory linear in the batch): TFLite converts them to builtins.
        """
        inputs = tf.convert_to_tensor(inputs)
        self._check_inputs(inputs)
        if not self.built:
            self.build(inputs.shape)
        z = self._project_in(tf.cast(inputs, "float32"))
        return digits_to_codes(self._digits(z), self._radices)

    def lookup(self, codes) -> tf.Tensor:
        """The vectors of int `codes` `(batch, ...)`: `(batch, ...,
        embedding_dim)` in the layer's compute dtype."""
        codes = self._checked_codes(codes)
        return tf.cast(self._vectors(codes), self.compute_dtype)

    def codebook(self) -> tf.Tensor | None:
        """The implicit codebook as the rounding sees it: float32
        `(num_embeddings, codebook_dim)`, row k the grid values of code k
        (before the output projection, like a factorised
        `VectorQuantizer`'s low-dimensional codes; without projections row k
        is `lookup(k)`). `None` above `MAX_IMPLICIT_CODEBOOK` codes."""
        if self.num_embeddings > MAX_IMPLICIT_CODEBOOK:
            return None
        codes = tf.range(self.num_embeddings)
        return self._values(codes_to_digits(codes, self._radices))

    # ------------------------------------------------------------------ call
    def call(self, inputs, training=None):
        self._check_inputs(inputs)
        z = self._project_in(tf.cast(inputs, "float32"))
        z_q, digits = self._quantize(z, training)
        codes = digits_to_codes(digits, self._radices)
        counts = codebook_ops.code_counts(codes, self.num_embeddings)
        self.usage.update_state(_all_reduce_sum(counts))
        return tf.cast(self._project_out(z_q), inputs.dtype)

    # ------------------------------------------------------------- internals
    def _project_in(self, z: tf.Tensor) -> tf.Tensor:
        return z if self.project_in is None else self.project_in(z)

    def _project_out(self, z_q: tf.Tensor) -> tf.Tensor:
        return z_q if self.project_out is None else self.project_out(z_q)

    def _vectors(self, codes) -> tf.Tensor:
        if self.project_out is not None and not self.built:
            raise ValueError(
                f"`{self.name}` must be built (called on inputs once, or "
                "loaded) before `lookup` and `codebook`."
            )
        digits = codes_to_digits(tf.convert_to_tensor(codes), self._radices)
        return self._project_out(self._values(digits))

    def _digits(self, z: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def _values(self, digits: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def _quantize(self, z: tf.Tensor, training):
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update(embedding_dim=self.embedding_dim, seed=self.seed)
        return config
