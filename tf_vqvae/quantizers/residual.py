"""Residual vector quantization: `ResidualVectorQuantizer`.

A stack of vector quantizers, each quantizing what the ones before it left
(SoundStream, EnCodec). The stages are `VectorQuantizer` or
`VectorQuantizerEMA` layers driven step by step (data init, search, losses,
updates), so they keep all of those layers' machinery.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_vqvae import codebook_ops
from tf_vqvae.arg_checks import check_int, describe, is_number
from tf_vqvae.metrics import CodebookUsage
from tf_vqvae.quantizers.vector import (
    VectorQuantizer,
    VectorQuantizerEMA,
    _all_reduce_sum,
    _QuantizerChecks,
    _reshape_target,
    _rotation_trick,
    _straight_through,
)


class _Stage(VectorQuantizer):
    """A level of a residual quantizer, which reports usage for it."""

    _reports_usage = False


class _StageEMA(VectorQuantizerEMA):
    """A level of a residual quantizer, which reports usage for it."""

    _reports_usage = False


# `ResidualVectorQuantizer(quantizer=...)`: how each level's codebook learns.
_STAGES = {"ema": _StageEMA, "vq": _Stage}
# Stream of the stateless seed that draws the levels of quantizer dropout
# (the stages use streams 1-3 of their own seeds).
_DROPOUT_STREAM = 4


@keras.saving.register_keras_serializable(package="tf_vqvae")
class ResidualVectorQuantizer(_QuantizerChecks, keras.layers.Layer):
    """Residual vector quantization: a stack of codebooks, one per level.

    Level i quantizes the residual that levels < i left, and the output is
    the sum of the levels' code vectors (Zeghidour et al. [1], algorithm 1):

        r_0 = z_e,  k_i = argmin_k ||r_i - e^(i)_k||,
        r_{i+1} = r_i - e^(i)_{k_i},  z_q = sum_{i < n} e^(i)_{k_i}

    so each position gets `num_quantizers` codes, coarse to fine, and the
    first n of them decode to a coarser `z_q` (a lower bitrate:
    `n * log2(num_embeddings)` bits per position). Each level is a
    `VectorQuantizer` (`quantizer="vq"`) or `VectorQuantizerEMA` (`"ema"`)
    with that layer's options and machinery: data init from the first
    batch (of its residuals), dead-code restarts, codes counts and EMA
    statistics all-reduced across replicas, float32 state under mixed
    precision, and a row-chunked nearest-code search.

    Gradients: the output is `z_e + sg[z_q - z_e]` over the total (or the
    rotation trick over the total, `rotation_trick=True`), so the encoder
    gets the decoder's gradient unchanged; each level adds its own losses
    on its own residual (`r_i` with the earlier levels' vectors under
    `sg`): the commitment loss `commitment_cost * mean((r_i - sg[e])^2)`
    and, for `"vq"`, the codebook loss `mean((sg[r_i] - e)^2)`. The losses
    of the levels are summed.

    Args:
        num_quantizers: the number of levels, `num_levels`.
        num_embeddings: K, the number of codes of each level.
        embedding_dim: D, the size of the input vectors.
        quantizer: `"ema"` (default) or `"vq"`: how each level's codebook
            learns, as in `VectorQuantizerEMA` / `VectorQuantizer`.
        shared_codebook: if `True`, one codebook of K codes serves every
            level (one set of EMA statistics and dead-code counters, updated
            once per step from all levels' residuals and codes; data init
            from the first level's inputs). Default: one per level.
        quantizer_dropout: probability in [0, 1] (SoundStream): with this
            probability a training batch uses only the first n levels, n
            uniform in 1..num_quantizers, so one model serves every
            bitrate. The draw depends only on `seed` and the number of
            training steps taken, so every replica makes the same one.
            Dropped levels still search, add their losses and update their
            codebooks (their residuals do not depend on the later levels);
            only the output leaves them out. Inference uses all levels.
        commitment_cost: beta, the weight of each level's commitment loss.
        decay, epsilon: the EMA decay and Laplace smoothing (`"ema"` only;
            ignored for `"vq"`).
        data_init, dead_code_restart_steps, max_distance_elements,
            distance: each level's, as in `VectorQuantizer`.
        check_finite: if `True`, raise `InvalidArgumentError` on non-finite
            inputs.
        seed: seeds the levels' random choices (level i uses `seed + i`),
            the projections and the quantizer dropout draw.
        rotation_trick: the gradient rule over the total (Fifty et al., see
            `VectorQuantizer`) instead of the straight-through estimator.
        codebook_dim: `None` or C: one learned projection `D -> C` before
            the first level and one `C -> D` after the sum (as
            vector-quantize-pytorch's `ResidualVQ`), so every level, its
            codebook `(K, C)`, residuals and losses live in the C space.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `z_e`, float tensor `(batch, ..., embedding_dim)`.
        training: Python bool. State changes and quantizer dropout only when
            `True`.

    Returns:
        `z_q`, the sum of the levels' code vectors: same shape and dtype as
        `inputs`.

    Metrics (in `model.fit`'s progress bar and History): for each level l,
    `perplexity_l`, `codebook_usage_l`, `epoch_perplexity_l`,
    `epoch_codebook_usage_l` and `dead_codes_l` (see `CodebookUsage`);
    without the suffix, the same pooled over the rows of `codebook()`
    (the `num_quantizers * K` codes of all levels, or the K shared codes).

    Implements `tf_vqvae.contracts.Quantizer` with `num_levels =
    num_quantizers`: `encode(z, num_quantizers=None)` gives int32 codes
    `(batch, ..., n)`; `lookup(codes)` takes codes of the first n levels
    `(batch, ..., n)`, `1 <= n <= num_quantizers`; `codebook()` is float32
    `(num_quantizers * K, C)`, the levels' code vectors one level after the
    other (row `l * K + k` is code k of level l), or `(K, C)` when shared.

    Raises:
        ValueError: for invalid arguments, or inputs whose last dimension is
            not `embedding_dim`.
        TypeError: for a non-boolean `shared_codebook` or `rotation_trick`,
            a non-integer `seed`, inputs that are not float (any float
            dtype), or `lookup` codes that are not integers.

    Example:

    >>> rvq = ResidualVectorQuantizer(8, 1024, 64)
    >>> z = keras.random.normal((4, 100, 64))
    >>> z_q = rvq(z, training=True)                  # (4, 100, 64)
    >>> codes = rvq.encode(z)                        # (4, 100, 8) int32
    >>> coarse = rvq.lookup(codes[..., :2])          # 2 levels: (4, 100, 64)

    References:
        [1] Zeghidour, Luebs, Omran, Skoglund, Tagliasacchi. SoundStream: An
            End-to-End Neural Audio Codec. arXiv:2107.03312, 2021.
        [2] Defossez, Copet, Synnaeve, Adi. High Fidelity Neural Audio
            Compression (EnCodec). TMLR 2023.
    """

    def __init__(
        self,
        num_quantizers: int,
        num_embeddings: int,
        embedding_dim: int,
        quantizer: str = "ema",
        shared_codebook: bool = False,
        quantizer_dropout: float = 0.0,
        commitment_cost: float = 0.25,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        data_init: str | None = "random",
        dead_code_restart_steps: int | None = 100,
        max_distance_elements: int = 2**24,
        check_finite: bool = False,
        seed: int = 0,
        rotation_trick: bool = False,
        distance: str = "l2",
        codebook_dim: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_int("num_quantizers", num_quantizers)
        check_int("num_embeddings", num_embeddings)
        check_int("embedding_dim", embedding_dim)
        if quantizer not in _STAGES:
            raise ValueError(
                "`quantizer` must be one of 'ema' or 'vq'. "
                f"{describe('quantizer', quantizer)}"
            )
        for name, value in (
            ("shared_codebook", shared_codebook),
            ("rotation_trick", rotation_trick),
        ):
            if not isinstance(value, bool):
                raise TypeError(
                    f"`{name}` must be a boolean. {describe(name, value)}"
                )
        if not is_number(quantizer_dropout) or not (
            0.0 <= quantizer_dropout <= 1.0
        ):
            raise ValueError(
                "`quantizer_dropout` must be a number in [0, 1]. "
                f"{describe('quantizer_dropout', quantizer_dropout)}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(
                f"`seed` must be an integer. {describe('seed', seed)}"
            )
        if codebook_dim is not None:
            check_int("codebook_dim", codebook_dim)
        self.num_quantizers = num_quantizers
        self.num_levels = num_quantizers
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.quantizer = quantizer
        self.shared_codebook = shared_codebook
        self.quantizer_dropout = float(quantizer_dropout)
        self.commitment_cost = commitment_cost
        self.decay = decay
        self.epsilon = epsilon
        self.data_init = data_init
        self.dead_code_restart_steps = dead_code_restart_steps
        self.max_distance_elements = max_distance_elements
        self.check_finite = bool(check_finite)
        self.seed = seed
        self.rotation_trick = rotation_trick
        self.distance = distance
        self.codebook_dim = codebook_dim
        self.code_dim = embedding_dim if codebook_dim is None else codebook_dim

        options = dict(
            commitment_cost=commitment_cost,
            data_init=data_init,
            dead_code_restart_steps=dead_code_restart_steps,
            max_distance_elements=max_distance_elements,
            distance=distance,
            dtype=self.dtype_policy,
        )
        if quantizer == "ema":
            options.update(decay=decay, epsilon=epsilon)
        self.stages = [
            _STAGES[quantizer](
                num_embeddings,
                self.code_dim,
                seed=seed + level,
                name=f"stage_{level}",
                **options,
            )
            for level in range(1 if shared_codebook else num_quantizers)
        ]
        self.project_in = self.project_out = None
        if codebook_dim is not None:
            self.project_in = self._projection(codebook_dim, "project_in")
            self.project_out = self._projection(embedding_dim, "project_out")
        self.level_usage = [
            CodebookUsage(num_embeddings, name=f"codebook_{level}", level=level)
            for level in range(num_quantizers)
        ]
        pooled = num_embeddings * len(self.stages)
        self.usage = CodebookUsage(pooled, name="codebook")

    def _projection(self, units: int, name: str) -> keras.layers.Dense:
        return keras.layers.Dense(
            units,
            kernel_initializer=keras.initializers.GlorotUniform(self.seed),
            dtype="float32",
            name=name,
        )

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        self._check_shape(input_shape)
        for stage in self.stages:
            stage.build((None, self.code_dim))
        if self.project_in is not None:
            self.project_in.build((None, self.embedding_dim))
            self.project_out.build((None, self.code_dim))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    # ------------------------------------------------------------ public API
    def encode(self, inputs, num_quantizers: int | None = None) -> tf.Tensor:
        """Codes of the first `num_quantizers` levels (default: all):
        int32 `inputs.shape[:-1] + (n,)`.

        Builtins-only graph ops with each level's row-chunked search, so
        exports trace this method as it is.
        """
        n = self._check_levels("num_quantizers", num_quantizers)
        inputs = tf.convert_to_tensor(inputs)
        self._check_inputs(inputs)
        if not self.built:
            self.build(inputs.shape)
        residual = self._project_inputs(inputs)
        codes = []
        for level in range(n):
            stage = self._stage(level)
            level_codes = stage._nearest(stage._to_search_space(residual))
            residual = residual - tf.gather(stage._codes(), level_codes)
            codes.append(level_codes)
        codes = tf.stack(codes, axis=-1)
        shape = tf.TensorShape([*inputs.shape[:-1], n])
        return tf.reshape(codes, _reshape_target(shape, inputs))

    def lookup(self, codes) -> tf.Tensor:
        """The sum of the code vectors of the first n levels for codes
        `(..., n)`: `(..., embedding_dim)` in the layer's compute dtype.

        The level axis may be of unknown static size (a serving signature
        taking any prefix): then every level is looked up and those at or
        past the runtime n contribute zero, and the caller checks
        `1 <= n <= num_quantizers` (levels past `num_quantizers` are not
        read)."""
        codes = tf.cast(self._checked_codes(codes), "int32")
        rank = codes.shape.rank
        levels = codes.shape[-1] if rank else None
        if not rank or (
            levels is not None and not 1 <= levels <= self.num_quantizers
        ):
            raise ValueError(
                f"`{self.name}` expects codes of shape (..., n) with a "
                f"level axis n in [1, {self.num_quantizers}]. "
                f"Received: codes.shape={tuple(codes.shape)}"
            )
        if levels is not None:
            vectors = tf.add_n(
                [
                    tf.gather(self._stage(level)._codes(), codes[..., level])
                    for level in range(levels)
                ]
            )
        else:
            n = tf.shape(codes)[-1]
            vectors = tf.add_n(
                [
                    tf.gather(
                        self._stage(level)._codes(),
                        tf.gather(codes, tf.minimum(level, n - 1), axis=-1),
                    )
                    * tf.cast(level < n, "float32")
                    for level in range(self.num_quantizers)
                ]
            )
        if self.project_out is not None:
            vectors = self.project_out(vectors)
        return tf.cast(vectors, self.compute_dtype)

    def codebook(self) -> tf.Tensor:
        """The levels' code vectors: float32 `(num_quantizers * K, C)`
        (level after level), or `(K, C)` with `shared_codebook`."""
        return tf.concat([stage.codebook() for stage in self.stages], axis=0)

    # ------------------------------------------------------------------ call
    def call(self, inputs, training=None):
        self._check_inputs(inputs)
        z_e = inputs
        if self.check_finite:
            z_e = tf.debugging.assert_all_finite(
                z_e, f"`{self.name}` received non-finite inputs"
            )
        flat = self._project_inputs(z_e)
        used = self._levels_used(training)
        shared = self.stages[0]
        shared_samples = None
        if self.shared_codebook:
            shared_samples = shared._begin_step(
                shared._to_search_space(flat), training
            )

        residual = flat
        total = tf.zeros_like(flat)
        searched, codes, samples = [], [], []
        for level in range(self.num_quantizers):
            stage = self._stage(level)
            x = stage._to_search_space(residual)
            if not self.shared_codebook:
                samples.append(stage._begin_step(x, training))
            level_codes = stage._nearest(x)
            z_q = tf.gather(stage._codes(), level_codes)
            stage._add_losses(x, z_q)
            z_q = tf.stop_gradient(z_q)
            if used is None:
                total += z_q
            else:
                total += z_q * tf.cast(level < used, z_q.dtype)
            residual = residual - z_q
            searched.append(x)
            codes.append(level_codes)

        counts = tf.stack(
            [codebook_ops.code_counts(c, self.num_embeddings) for c in codes]
        )
        counts = _all_reduce_sum(counts)
        for level, metric in enumerate(self.level_usage):
            metric.update_state(counts[level])
        if self.shared_codebook:
            self.usage.update_state(tf.reduce_sum(counts, axis=0))
        else:
            self.usage.update_state(tf.reshape(counts, [-1]))

        if training and self.shared_codebook:
            shared._after_search(
                tf.concat(searched, axis=0),
                tf.concat(codes, axis=0),
                tf.reduce_sum(counts, axis=0),
                shared_samples,
            )
        elif training:
            for level, stage in enumerate(self.stages):
                stage._after_search(
                    searched[level], codes[level], counts[level], samples[level]
                )

        rule = _rotation_trick if self.rotation_trick else _straight_through
        out = rule(flat, total)
        if self.project_out is not None:
            out = self.project_out(out)
        return tf.cast(tf.reshape(out, tf.shape(inputs)), z_e.dtype)

    # ------------------------------------------------------------- internals
    def _stage(self, level: int):
        return self.stages[0 if self.shared_codebook else level]

    def _project_inputs(self, inputs) -> tf.Tensor:
        flat = tf.reshape(tf.cast(inputs, "float32"), (-1, self.embedding_dim))
        if self.project_in is not None:
            flat = self.project_in(flat)
        return flat

    def _check_levels(self, name: str, value) -> int:
        if value is None:
            return self.num_quantizers
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 1 <= value <= self.num_quantizers
        ):
            raise ValueError(
                f"`{name}` must be an integer in [1, {self.num_quantizers}]. "
                f"{describe(name, value)}"
            )
        return value

    def _levels_used(self, training):
        """How many levels the output sums: `None` for all, else an int32
        scalar (quantizer dropout), the same on every replica."""
        if not training or not self.quantizer_dropout:
            return None
        if self.num_quantizers == 1:
            return None
        # The first stage's update count is the number of training steps.
        seed = tf.stack(
            [
                tf.constant(self.seed * 1000003 + _DROPOUT_STREAM, "int64"),
                tf.cast(self.stages[0].update_count, "int64"),
            ]
        )
        draw = tf.random.stateless_uniform([2], seed=seed)
        levels = 1 + tf.cast(tf.floor(draw[1] * self.num_quantizers), "int32")
        levels = tf.minimum(levels, self.num_quantizers)
        return tf.where(
            draw[0] < self.quantizer_dropout, levels, self.num_quantizers
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            num_quantizers=self.num_quantizers,
            num_embeddings=self.num_embeddings,
            embedding_dim=self.embedding_dim,
            quantizer=self.quantizer,
            shared_codebook=self.shared_codebook,
            quantizer_dropout=self.quantizer_dropout,
            commitment_cost=self.commitment_cost,
            decay=self.decay,
            epsilon=self.epsilon,
            data_init=self.data_init,
            dead_code_restart_steps=self.dead_code_restart_steps,
            max_distance_elements=self.max_distance_elements,
            check_finite=self.check_finite,
            seed=self.seed,
            rotation_trick=self.rotation_trick,
            distance=self.distance,
            codebook_dim=self.codebook_dim,
        )
        return config
