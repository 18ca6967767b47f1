"""Vector quantization layers: `VectorQuantizer` and `VectorQuantizerEMA`.

The distance, nearest-code search and codebook lookup are written once, in
`_BaseVectorQuantizer`; the two public layers differ only in how the codebook
learns (gradients vs. exponential moving averages) and in the loss they add.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_vqvae import codebook_ops
from tf_vqvae.arg_checks import check_int, describe, is_number
from tf_vqvae.metrics import CodebookUsage
from tf_vqvae.options import DATA_INITS, DISTANCES

_DATA_INIT_CHOICES = (None, *DATA_INITS)
# Below this norm a vector has no direction: the rotation trick's unit
# vectors treat it as zero instead of dividing by it.
_MIN_NORM = 1e-12


def check_latent_shape(layer: keras.layers.Layer, shape) -> None:
    """Raises `ValueError` unless `shape` is `(batch, ..., D)` with `D` the
    quantizer `layer`'s `embedding_dim`."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(
            f"`{layer.name}` expects inputs of shape (batch, ..., "
            f"{layer.embedding_dim}) with rank >= 2. "
            f"Received: inputs.shape={shape}"
        )
    if shape[-1] != layer.embedding_dim:
        raise ValueError(
            f"`{layer.name}` expects inputs of shape (batch, ..., "
            f"{layer.embedding_dim}): the last dimension must equal "
            f"embedding_dim={layer.embedding_dim}. "
            f"Received: inputs.shape={shape}"
        )


def _shape_text(shape: tf.TensorShape) -> str:
    return "unknown" if shape.rank is None else str(tuple(shape))


class _QuantizerChecks:
    """The input checks every quantizer kind shares (a mixin of the layers
    with `name`, `embedding_dim` and `num_embeddings`).

    Static: a dtype, and a shape as far as it is known when tracing, so
    they cost nothing per step.
    """

    def _check_shape(self, shape) -> None:
        check_latent_shape(self, shape)

    def _check_inputs(self, inputs) -> None:
        """Raises unless `inputs` are float `(batch, ..., embedding_dim)`:
        integer inputs would be cast and quantized as if they were latents,
        or give integer zeros."""
        dtype = tf.as_dtype(inputs.dtype)
        if not dtype.is_floating:
            raise TypeError(
                f"`inputs` of `{self.name}` must be a float tensor (batch, "
                f"..., embedding_dim={self.embedding_dim}). Received: inputs "
                f"of dtype {dtype.name} and shape {_shape_text(inputs.shape)}."
            )
        self._check_shape(inputs.shape)

    def _checked_codes(self, codes) -> tf.Tensor:
        """`codes` as a tensor, refused unless integer: a float code would
        be truncated to another code without a word."""
        codes = tf.convert_to_tensor(codes)
        if not codes.dtype.is_integer:
            k = self.num_embeddings
            raise TypeError(
                f"`codes` of `{self.name}` must be an integer tensor, values "
                f"in [0, num_embeddings={k}). Received: codes of dtype "
                f"{codes.dtype.name} and shape {_shape_text(codes.shape)}."
            )
        return codes


def _check_non_negative_float(name: str, value) -> None:
    if not is_number(value) or value < 0:
        raise ValueError(
            f"`{name}` must be a non-negative finite number. "
            f"{describe(name, value)}"
        )


@tf.custom_gradient
def _straight_through(z_e: tf.Tensor, z_q: tf.Tensor):
    """Returns `z_q`; the gradient at the output goes to `z_e` unchanged.

    `z_q` (the looked-up codebook vectors) receives no gradient from this path:
    the codebook learns only from the codebook loss (or from EMA updates).
    """

    def grad(upstream):
        return upstream, None

    return tf.identity(z_q), grad


@tf.custom_gradient
def _rotation_trick(z_e: tf.Tensor, z_q: tf.Tensor):
    """Returns `z_q` `[N, C]`; the gradient at the output reaches `z_e`
    through the rotation and rescaling that maps `z_e` to `z_q`.

    Fifty et al. (2024): `z_q = sg[lambda R] z_e` with
    `lambda = ||z_q|| / ||z_e||` and `R = I - 2 r r^T + 2 q e^T`, where
    `e = z_e / ||z_e||`, `q = z_q / ||z_q||`, `r = (e + q) / ||e + q||`
    (`R e = q`). The gradient is `(lambda R)^T g = lambda (g - 2 r (r.g)
    + 2 e (q.g))`, computed per row without a `C x C` matrix (and `g` for a
    zero `z_e`). `z_q` gets no gradient from this path, as with the
    straight-through estimator.
    """

    def grad(upstream):
        e_norm = tf.norm(z_e, axis=-1, keepdims=True)
        q_norm = tf.norm(z_q, axis=-1, keepdims=True)
        e_hat = z_e / tf.maximum(e_norm, _MIN_NORM)
        q_hat = z_q / tf.maximum(q_norm, _MIN_NORM)
        r = e_hat + q_hat
        r = r / tf.maximum(tf.norm(r, axis=-1, keepdims=True), _MIN_NORM)
        scale = q_norm / tf.maximum(e_norm, _MIN_NORM)
        rotated = (
            upstream
            - 2.0 * r * tf.reduce_sum(r * upstream, axis=-1, keepdims=True)
            + 2.0
            * e_hat
            * tf.reduce_sum(q_hat * upstream, axis=-1, keepdims=True)
        )
        # A zero `z_e` has no direction to rotate: straight through.
        return tf.where(e_norm > _MIN_NORM, scale * rotated, upstream), None

    return tf.identity(z_q), grad


def _vq_loss(
    z_e: tf.Tensor,
    z_q: tf.Tensor,
    codebook_weight: float,
    commitment_weight: float,
) -> tf.Tensor:
    """`codebook_weight * mean((sg[z_e] - z_q)^2)
    + commitment_weight * mean((z_e - sg[z_q])^2)` in one pass over `z_e - z_q`.

    Both terms have the value `mean((z_e - z_q)^2)`; their gradients are that
    difference scaled, to `z_e` for the commitment term and (negated) to
    `z_q` for the codebook term. Written out, autodiff would compute the
    difference, square and mean twice and the gradient passes twice.
    """

    @tf.custom_gradient
    def loss(z_e, z_q):
        diff = z_e - z_q
        value = (codebook_weight + commitment_weight) * tf.reduce_mean(
            tf.square(diff)
        )

        def grad(upstream):
            scale = upstream * 2.0 / tf.cast(tf.size(diff), diff.dtype)
            grad_z_q = None
            if codebook_weight:
                grad_z_q = (-codebook_weight * scale) * diff
            return (commitment_weight * scale) * diff, grad_z_q

        return value, grad

    return loss(z_e, z_q)


class _BaseVectorQuantizer(_QuantizerChecks, keras.layers.Layer):
    """Shared machinery of the two quantizers; not public."""

    # One code per position: codes are `(batch, *grid)`.
    num_levels = 1
    # A residual quantizer's stages leave the usage metrics to it.
    _reports_usage = True

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        commitment_cost: float = 0.25,
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
        check_int("num_embeddings", num_embeddings)
        check_int("embedding_dim", embedding_dim)
        _check_non_negative_float("commitment_cost", commitment_cost)
        if data_init not in _DATA_INIT_CHOICES:
            raise ValueError(
                "`data_init` must be one of None, 'random' or 'kmeans++'. "
                f"{describe('data_init', data_init)}"
            )
        if dead_code_restart_steps is not None:
            check_int("dead_code_restart_steps", dead_code_restart_steps)
        check_int("max_distance_elements", max_distance_elements)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(
                f"`seed` must be an integer. {describe('seed', seed)}"
            )
        if not isinstance(rotation_trick, bool):
            raise TypeError(
                "`rotation_trick` must be a boolean. "
                f"{describe('rotation_trick', rotation_trick)}"
            )
        if distance not in DISTANCES:
            raise ValueError(
                "`distance` must be one of 'l2' or 'cosine'. "
                f"{describe('distance', distance)}"
            )
        if codebook_dim is not None:
            check_int("codebook_dim", codebook_dim)
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.commitment_cost = float(commitment_cost)
        self.data_init = data_init
        self.dead_code_restart_steps = dead_code_restart_steps
        self.max_distance_elements = max_distance_elements
        self.check_finite = bool(check_finite)
        self.seed = seed
        self.rotation_trick = rotation_trick
        self.distance = distance
        self.codebook_dim = codebook_dim
        # C, the size of the code vectors the search compares.
        self.code_dim = embedding_dim if codebook_dim is None else codebook_dim
        self.project_in = self.project_out = None
        if codebook_dim is not None:
            # float32 like the codebook, under any mixed precision policy.
            self.project_in = self._projection(codebook_dim, "project_in")
            self.project_out = self._projection(embedding_dim, "project_out")
        # The paper's path: straight-through in the inputs' dtype, exactly
        # as before these options existed.
        self._plain = (
            not rotation_trick and distance == "l2" and codebook_dim is None
        )
        self.usage = None
        if self._reports_usage:
            self.usage = CodebookUsage(num_embeddings, name="codebook")

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
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.num_embeddings, self.code_dim),
            initializer=self._embeddings_initializer(),
            trainable=self._embeddings_trainable,
            autocast=False,
            dtype="float32",
            aggregation="only_first_replica",
        )
        state = dict(
            trainable=False,
            autocast=False,
            aggregation="only_first_replica",
        )
        # Number of training updates applied: seeds the stateless random
        # choices of data init and restarts, identically on every replica.
        self.update_count = self.add_weight(
            name="update_count",
            shape=(),
            initializer="zeros",
            dtype="int64",
            **state,
        )
        if self.dead_code_restart_steps is not None:
            self.steps_since_used = self.add_weight(
                name="steps_since_used",
                shape=(self.num_embeddings,),
                initializer="zeros",
                dtype="int64",
                **state,
            )
        self._build_state(state)
        if self.project_in is not None:
            self.project_in.build((None, self.embedding_dim))
            self.project_out.build((None, self.code_dim))

    def _build_state(self, state: dict) -> None:
        """Creates subclass state (EMA statistics)."""

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    # ------------------------------------------------------------ public API
    def distances(self, inputs) -> tf.Tensor:
        """Squared L2 distances to every code, `[..., num_embeddings]`.

        `||z||^2 - 2 z.E^T + ||E||^2`: one matmul, in the space the search
        compares (after the projection in and, for `distance="cosine"`, the
        normalisation of both sides). Materialises the whole distance
        tensor; `encode` never does.
        """
        inputs = tf.convert_to_tensor(inputs)
        self._check_inputs(inputs)
        flat = self._search_inputs(inputs)
        d = codebook_ops.squared_distances(flat, self._codes())
        out_shape = tf.concat(
            [tf.shape(inputs)[:-1], [self.num_embeddings]], axis=0
        )
        return tf.reshape(d, out_shape)

    def encode(self, inputs) -> tf.Tensor:
        """Index of the nearest code: int32 of shape `inputs.shape[:-1]`.

        Row-chunked (never more than `max_distance_elements` distances at
        once) and built from ops the TFLite converter maps to builtins, so
        exports trace this method as it is.
        """
        inputs = tf.convert_to_tensor(inputs)
        self._check_inputs(inputs)
        if not self.built:
            self.build(inputs.shape)
        codes = self._nearest(self._search_inputs(inputs))
        return tf.reshape(codes, _reshape_target(inputs.shape[:-1], inputs))

    def lookup(self, codes) -> tf.Tensor:
        """Codebook vectors for integer `codes`: `[..., embedding_dim]`.

        With `codebook_dim`, the code vectors projected out to
        `embedding_dim`. Returned in the layer's compute dtype.
        """
        codes = self._checked_codes(codes)
        vectors = tf.gather(self._codes(), tf.cast(codes, "int32"))
        if self.project_out is not None:
            vectors = self.project_out(vectors)
        return tf.cast(vectors, self.compute_dtype)

    def codebook(self) -> tf.Tensor:
        """The code vectors the search compares: float32
        `(num_embeddings, codebook_dim or embedding_dim)`, unit rows for
        `distance="cosine"`."""
        return tf.convert_to_tensor(self._codes())

    # ------------------------------------------------------------------ call
    def call(self, inputs, training=None):
        self._check_inputs(inputs)
        z_e = inputs
        if self.check_finite:
            z_e = tf.debugging.assert_all_finite(
                z_e, f"`{self.name}` received non-finite inputs"
            )
        flat = self._search_inputs(z_e)
        samples = self._begin_step(flat, training)
        codes = self._nearest(flat)
        counts = codebook_ops.code_counts(codes, self.num_embeddings)
        counts = _all_reduce_sum(counts)
        if self.usage is not None:
            self.usage.update_state(counts)

        z_q_flat = tf.gather(self._codes(), codes)
        self._add_losses(flat, z_q_flat)
        if training:
            self._after_search(flat, codes, counts, samples)

        if self._plain:
            z_q = tf.reshape(z_q_flat, tf.shape(inputs))
            return _straight_through(z_e, tf.cast(z_q, z_e.dtype))
        rule = _rotation_trick if self.rotation_trick else _straight_through
        out = rule(flat, z_q_flat)
        if self.project_out is not None:
            out = self.project_out(out)
        return tf.cast(tf.reshape(out, tf.shape(inputs)), z_e.dtype)

    # ------------------------------------------------------------- internals
    # The steps of `call`, also driven level by level by
    # `ResidualVectorQuantizer`: `_to_search_space`, `_begin_step`,
    # `_nearest`, `_add_losses`, `_after_search`.
    def _codes(self):
        """The code vectors the search compares (normalised for cosine)."""
        if self.distance == "cosine":
            return tf.math.l2_normalize(self.embeddings, axis=-1)
        return self.embeddings

    def _search_inputs(self, inputs) -> tf.Tensor:
        """`inputs` `(..., embedding_dim)` as float32 rows `[N, C]` in the
        search space."""
        flat = tf.reshape(tf.cast(inputs, "float32"), (-1, self.embedding_dim))
        return self._to_search_space(flat)

    def _to_search_space(self, flat: tf.Tensor) -> tf.Tensor:
        if self.project_in is not None:
            flat = self.project_in(flat)
        if self.distance == "cosine":
            flat = tf.math.l2_normalize(flat, axis=-1)
        return flat

    def _nearest(self, flat: tf.Tensor) -> tf.Tensor:
        return codebook_ops.nearest_codes(
            flat, self._codes(), self.max_distance_elements
        )

    def _begin_step(self, flat: tf.Tensor, training):
        """Data init before a training search; returns the candidate rows'
        source for `_after_search` (`None` when not training)."""
        if not training:
            return None
        samples = None
        if (
            self.data_init is not None
            or self.dead_code_restart_steps is not None
        ):
            samples = self._sample_source(tf.stop_gradient(flat))
        self._before_search(samples)
        return samples

    def _num_candidates(self) -> int:
        # k-means++ spreads its K picks better over more candidates.
        factor = 4 if self.data_init == "kmeans++" else 1
        return factor * self.num_embeddings

    def _sample_source(self, flat: tf.Tensor):
        """A function returning the candidate rows for data init/restarts.

        On one device the rows are picked inside the `tf.cond` branch that
        needs them (no cost on other steps). Under tf.distribute they are
        gathered on every step, outside any `tf.cond` (tf.distribute does
        not allow a cross-replica sync inside control flow), and only
        `_num_candidates()` rows per replica cross the interconnect instead
        of the whole batch.
        """
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return lambda: self._candidate_rows(flat, None)
        rows = self._candidate_rows(flat, context)
        return lambda: rows

    def _candidate_rows(self, flat: tf.Tensor, context) -> tf.Tensor:
        """Up to `_num_candidates()` rows of the global batch, in random
        order: the same rows whether the batch is on one device or split
        evenly over replicas.

        Each row of the global batch gets a random key from the step's
        stateless seed and its global index; the rows with the smallest
        keys win. Each replica keeps its local winners, and the global
        winners are among their union.
        """
        num = self._num_candidates()
        local_rows = tf.shape(flat)[0]
        replicas, replica = 1, 0
        if context is not None:
            replicas = context.num_replicas_in_sync
            replica = context.replica_id_in_sync_group
        keys = tf.random.stateless_uniform(
            [local_rows * replicas], seed=self._stateless_seed(3)
        )
        keys = keys[replica * local_rows : (replica + 1) * local_rows]
        _, index = tf.math.top_k(-keys, k=tf.minimum(num, local_rows))
        rows = tf.gather(flat, index)
        if context is None:
            return rows
        keys = context.all_gather(tf.gather(keys, index), axis=0)
        rows = context.all_gather(rows, axis=0)
        _, index = tf.math.top_k(-keys, k=tf.minimum(num, tf.shape(keys)[0]))
        return tf.gather(rows, index)

    # Variable assignments stay outside `tf.cond`: under MirroredStrategy
    # assigning a mirrored variable is a cross-replica sync, which
    # tf.distribute does not allow inside control flow.
    def _before_search(self, samples) -> None:
        """Data-dependent initialisation at the first training batch."""
        if self.data_init is None:
            return
        codebook = tf.cond(
            tf.equal(self.update_count, 0),
            lambda: codebook_ops.sample_codebook(
                samples(),
                self.num_embeddings,
                method=self.data_init,
                seed=self._stateless_seed(1),
            ),
            lambda: tf.convert_to_tensor(self.embeddings),
        )
        self.embeddings.assign(codebook)

    def _after_search(self, flat, codes, counts, samples) -> None:
        self._update_codebook(flat, codes, counts)
        if self.dead_code_restart_steps is not None:
            self._restart_dead_codes(samples, counts)
        self.update_count.assign_add(1)

    def _restart_dead_codes(self, samples, counts) -> None:
        steps = tf.where(
            counts > 0,
            tf.zeros_like(self.steps_since_used),
            self.steps_since_used + 1,
        )
        dead = steps >= self.dead_code_restart_steps
        replacement = tf.cond(
            tf.reduce_any(dead),
            lambda: codebook_ops.sample_rows(
                samples(), self.num_embeddings, self._stateless_seed(2)
            ),
            lambda: tf.convert_to_tensor(self.embeddings),
        )
        self.embeddings.assign(
            tf.where(dead[:, None], replacement, self.embeddings)
        )
        self._on_restart(dead)
        self.steps_since_used.assign(
            tf.where(dead, tf.zeros_like(steps), steps)
        )

    def _stateless_seed(self, stream: int) -> tf.Tensor:
        return tf.stack(
            [
                tf.constant(self.seed * 1000003 + stream, "int64"),
                tf.cast(self.update_count, "int64"),
            ]
        )

    def _embeddings_initializer(self):
        # U(-sqrt(3 / D), sqrt(3 / D)) for both quantizers, Sonnet's choice:
        # on the scale of the encoder's early outputs, so codes get picked.
        # (Keras' fan_in of a (K, D) matrix is K; its fan_out is D.)
        return keras.initializers.VarianceScaling(
            scale=1.0, mode="fan_out", distribution="uniform", seed=self.seed
        )

    def _add_losses(self, flat, z_q_flat) -> None:
        raise NotImplementedError

    def _update_codebook(self, flat, codes, counts) -> None:
        """Codebook learning besides gradients (EMA)."""

    def _on_restart(self, dead) -> None:
        """Resets subclass state of restarted codes."""

    def get_config(self):
        config = super().get_config()
        config.update(
            rotation_trick=self.rotation_trick,
            distance=self.distance,
            codebook_dim=self.codebook_dim,
            num_embeddings=self.num_embeddings,
            embedding_dim=self.embedding_dim,
            commitment_cost=self.commitment_cost,
            data_init=self.data_init,
            dead_code_restart_steps=self.dead_code_restart_steps,
            max_distance_elements=self.max_distance_elements,
            check_finite=self.check_finite,
            seed=self.seed,
        )
        return config


def _reshape_target(shape: tf.TensorShape, tensor: tf.Tensor) -> list:
    """`shape` as a `tf.reshape` target, static where known.

    Known sizes stay constants (and one unknown size becomes -1), so
    converters that infer shapes from the target alone, like TFLite's, keep
    them: an encoder's codes stay `(-1, h, w)` rather than `(-1, -1, -1)`.
    """
    dims = list(shape)
    if dims.count(None) <= 1 and 0 not in dims:
        return [-1 if d is None else d for d in dims]
    runtime = tf.shape(tensor)
    return [runtime[i] if d is None else d for i, d in enumerate(dims)]


def _all_reduce_sum(value: tf.Tensor) -> tf.Tensor:
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce("sum", value)


_SHARED_DOC = """
    Args:
        num_embeddings: K, the number of codes.
        embedding_dim: D, the size of each code vector.
        commitment_cost: beta, the weight of the commitment loss
            `||z_e - sg[z_q]||^2`. The paper uses 0.25.
        data_init: `"random"` (default), `"kmeans++"` or `None` (the
            paper: keep the initial random codebook). At the first training
            batch (while `update_count` is 0), replace the codebook by encoder
            outputs picked at random or by k-means++ seeding (over 4 K
            random candidates). Under `tf.distribute` the candidates are the
            same rows of the global batch as on one device, gathered from all
            replicas, so every replica gets the one-device codebook. Set
            `None` when you assign a codebook yourself before training.
        dead_code_restart_steps: a positive integer n (default 100) or
            `None` (never, the paper): a code that no vector picked in n
            consecutive training steps is re-seeded from a random encoder
            output of the current (global) batch. Under `tf.distribute`, K
            candidate rows per replica are gathered on each training step
            (not the whole batch). The two defaults keep the
            codebook alive: on CIFAR-10 at Sonnet's example config the paper's
            settings ended with 34 of 512 codes in use, these with all 512
            (BENCHMARKS.md, section 6).
        max_distance_elements: above this many entries the `N x K` distance
            matrix is computed in row chunks, so memory stays bounded for large
            K (K = 65536 works on a laptop).
        check_finite: if `True`, raise `InvalidArgumentError` on non-finite
            inputs (off by default: it costs a pass over the inputs).
        seed: seeds the random choices of `data_init` and restarts (and the
            projections' initialisers).
        rotation_trick: if `True`, the gradient at `z_q` reaches `z_e`
            through the rotation and rescaling that maps `z_e` onto `z_q`
            (Fifty et al. [2]: `z_q = sg[lambda R] z_e`, `R` two Householder
            reflections computed per vector, `lambda = ||z_q|| / ||z_e||`)
            instead of unchanged; the forward output is still `z_q`. The
            default `False` is the paper's straight-through estimator.
        distance: `"l2"` (default, the paper) or `"cosine"`: inputs and
            code vectors are l2-normalised where they are compared, so the
            nearest code is the one of largest cosine similarity, and the
            losses and the output are the unit vectors. The codebook
            variable holds unnormalised vectors (EMA: the moving averages
            of unit inputs) and is normalised whenever it is used.
        codebook_dim: `None` (default) or C: factorised codes (ViT-VQGAN
            [3]). A learned dense projection `D -> C` (with bias) maps the
            inputs into the space of a `(num_embeddings, C)` codebook, and
            another `C -> D` maps the code vectors back, so `lookup` and
            the output are `(..., embedding_dim)`. The search, the codebook
            and commitment losses, data init, restarts and EMA statistics
            all live in the C space (ViT-VQGAN's "low-dimensional"
            lookup, combined with `distance="cosine"` there). The projection
            in learns from the commitment loss and the straight-through
            gradient, the projection out from the output's gradient.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `z_e`, float tensor `(batch, ..., embedding_dim)` of any rank
            >= 2: `(batch, time, D)`, `(batch, height, width, D)`,
            `(batch, time, height, width, D)`.
        training: Python bool. State (EMA statistics, data init, restarts)
            changes only when `True`.

    Returns:
        `z_q`: same shape as `inputs`, in the layer's compute dtype: each vector
        replaced by its nearest code (squared L2). The forward value is exactly
        the codebook vector (projected out with `codebook_dim`); the gradient
        passes straight through to `z_e` (or through the rotation trick)
        (`tf.custom_gradient`), and the codebook gets no gradient from it.
        Quantizer state and arithmetic stay float32 under mixed precision.

    Metrics (in `model.fit`'s progress bar and History):
        `perplexity`, `codebook_usage` for each batch (averaged over the
        epoch), `epoch_perplexity`, `epoch_codebook_usage` and `dead_codes`
        from the code counts pooled over the whole epoch (or the whole
        `evaluate` dataset). Under `tf.distribute` counts are all-reduced, so
        the numbers describe the global batch.

    Implements `tf_vqvae.contracts.Quantizer`: `encode(z)` (int32 codes),
    `lookup(codes)`, `codebook()`, `num_embeddings`, `embedding_dim`,
    `num_levels` (1).

    Raises:
        ValueError: for invalid arguments, or inputs whose last dimension is not
            `embedding_dim`.
        TypeError: for inputs that are not float (any float dtype), or
            `lookup` codes that are not integers.
"""


@keras.saving.register_keras_serializable(package="tf_vqvae")
class VectorQuantizer(_BaseVectorQuantizer):
    # Assembled from shared text, so set explicitly (a concatenation is
    # not a docstring).
    __doc__ = (
        """Vector quantization layer trained by gradients (VQ-VAE, eq. 3).

    Snaps each input vector `z_e` to its nearest codebook vector
    `e_k, k = argmin_j ||z_e - e_j||^2` and adds, through `add_loss`,

        mean((sg[z_e] - z_q)^2) + commitment_cost * mean((z_e - sg[z_q])^2)

    with means over all elements (Sonnet's convention). The first term moves
    the codebook towards the encoder outputs, the second keeps the encoder
    committed to its codes.
    """
        + _SHARED_DOC
        + """
    Example:

    >>> vq = VectorQuantizer(num_embeddings=512, embedding_dim=64)
    >>> z_q = vq(keras.random.normal((8, 16, 16, 64)))   # (8, 16, 16, 64)
    >>> codes = vq.encode(keras.random.normal((8, 16, 16, 64)))  # (8, 16, 16)
    >>> vectors = vq.lookup(codes)                          # (8, 16, 16, 64)

    References:
        [1] van den Oord, Vinyals, Kavukcuoglu. Neural Discrete Representation
            Learning. NeurIPS 2017.
        [2] Fifty et al. Restructuring Vector Quantization with the
            Rotation Trick. arXiv:2410.06424, 2024.
        [3] Yu et al. Vector-quantized Image Modeling with Improved VQGAN.
            ICLR 2022.
    """
    )

    _embeddings_trainable = True

    def _add_losses(self, flat, z_q_flat) -> None:
        self.add_loss(_vq_loss(flat, z_q_flat, 1.0, self.commitment_cost))


@keras.saving.register_keras_serializable(package="tf_vqvae")
class VectorQuantizerEMA(_BaseVectorQuantizer):
    # Assembled from shared text, so set explicitly (a concatenation is
    # not a docstring).
    __doc__ = (
        """Vector quantization with a codebook learned by moving averages.

    The paper's appendix A.1: the codebook is not trained by gradients (it is
    not in `trainable_weights`). For each training batch with `n_i` vectors
    assigned to code i and their sum `s_i`:

        N_i <- decay * N_i + (1 - decay) * n_i
        m_i <- decay * m_i + (1 - decay) * s_i
        e_i <- m_i / N~_i
        N~_i = (N_i + epsilon) / (sum(N) + K epsilon) * sum(N)

    (`N~` is N with Laplace smoothing, as in Sonnet). `N` and `m` start at
    zero and are not debiased; a code whose `N_i` is still below `epsilon`
    (never picked) keeps its vector instead of collapsing to zero, the failure
    of a zero-started debiased average. Counts and sums are all-reduced across
    replicas before the update, so N replicas with a global batch B give the
    codebook of one device with batch B. Only the commitment loss
    `commitment_cost * mean((z_e - sg[z_q])^2)` is added.
    """
        + _SHARED_DOC.replace(
            "        data_init:",
            "        decay: gamma, the moving-average decay (paper: 0.99)."
            "\n"
            "        epsilon: Laplace smoothing of the cluster sizes.\n"
            "        data_init:",
        )
        + """
    Example:

    >>> vq = VectorQuantizerEMA(num_embeddings=512, embedding_dim=64)
    >>> z_q = vq(keras.random.normal((8, 16, 16, 64)), training=True)
    >>> len(vq.trainable_weights)
    0

    References: [2] and [3] of `VectorQuantizer`.
    """
    )

    _embeddings_trainable = False

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        commitment_cost: float = 0.25,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        **kwargs,
    ):
        if not is_number(decay) or not 0.0 <= decay < 1.0:
            raise ValueError(
                "`decay` must be a number in [0, 1). "
                f"{describe('decay', decay)}"
            )
        if not is_number(epsilon) or not epsilon > 0:
            raise ValueError(
                "`epsilon` must be a positive number. "
                f"{describe('epsilon', epsilon)}"
            )
        super().__init__(
            num_embeddings, embedding_dim, commitment_cost, **kwargs
        )
        self.decay = float(decay)
        self.epsilon = float(epsilon)

    def _build_state(self, state: dict) -> None:
        self.ema_cluster_size = self.add_weight(
            name="ema_cluster_size",
            shape=(self.num_embeddings,),
            initializer="zeros",
            dtype="float32",
            **state,
        )
        self.ema_sum = self.add_weight(
            name="ema_sum",
            shape=(self.num_embeddings, self.code_dim),
            initializer="zeros",
            dtype="float32",
            **state,
        )

    def _add_losses(self, flat, z_q_flat) -> None:
        z_q_flat = tf.stop_gradient(z_q_flat)
        self.add_loss(_vq_loss(flat, z_q_flat, 0.0, self.commitment_cost))

    def _update_codebook(self, flat, codes, counts) -> None:
        sums = tf.math.unsorted_segment_sum(
            tf.stop_gradient(flat), codes, self.num_embeddings
        )
        sums = _all_reduce_sum(sums)
        decay = self.decay
        cluster_size = decay * self.ema_cluster_size + (1.0 - decay) * counts
        ema_sum = decay * self.ema_sum + (1.0 - decay) * sums
        self.ema_cluster_size.assign(cluster_size)
        self.ema_sum.assign(ema_sum)
        self.embeddings.assign(
            codebook_ops.ema_codebook(
                cluster_size, ema_sum, self.embeddings, self.epsilon
            )
        )

    def _on_restart(self, dead) -> None:
        self.ema_cluster_size.assign(tf.where(dead, 0.0, self.ema_cluster_size))
        self.ema_sum.assign(tf.where(dead[:, None], 0.0, self.ema_sum))

    def get_config(self):
        config = super().get_config()
        config.update(decay=self.decay, epsilon=self.epsilon)
        return config
